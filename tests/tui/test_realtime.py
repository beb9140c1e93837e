"""The real-time driver and the local session, paced by a manual clock (no wall-time waits)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from stackyard.core.engine import Engine
from stackyard.core.protocol import Command, Snapshot
from stackyard.core.realtime import MAX_SPEED, MIN_SPEED, RealtimeDriver, clamp_speed, next_speed
from stackyard.core.run import open_run
from stackyard.core.scenario import resolve
from stackyard.core.session import SessionError


class ManualClock:
    """Wall time that moves only when the driver sleeps (or ``cost`` per reading, to play a
    slow CPU)."""

    def __init__(self, cost: float = 0.0) -> None:
        self.now = 100.0
        self.cost = cost

    def __call__(self) -> float:
        self.now += self.cost
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


async def until(condition: Callable[[], bool], limit: int = 100_000) -> None:
    """Yield to the event loop until ``condition`` holds (bounded by a count, not by time)."""
    for _ in range(limit):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def engine() -> Engine:
    return Engine(resolve("default"), seed=3)


def driver(clock: ManualClock, published: list[Snapshot], **kwargs: object) -> RealtimeDriver:
    return RealtimeDriver(engine(), published.append, clock=clock, sleep=clock.sleep,
                          **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("speed", [0.25, 1.0, 4.0])
async def test_keeps_pace_with_the_clock(speed: float) -> None:
    clock = ManualClock()
    published: list[Snapshot] = []
    d = driver(clock, published, speed=speed, publish_hz=5.0)
    start = clock.now
    task = asyncio.create_task(d.run())
    await until(lambda: len(published) >= 20)
    task.cancel()
    wall = clock.now - start
    assert d.engine.now == pytest.approx(wall * speed, abs=0.2 * speed + 1e-9)
    assert d.status.achieved == pytest.approx(speed, rel=0.15)
    assert not d.status.behind
    times = [s.time for s in published]
    assert times == sorted(times) and len(set(times)) == len(times)


async def test_reports_achieved_speed_when_the_cpu_cannot_keep_up() -> None:
    clock = ManualClock(cost=0.02)  # every clock reading costs 20 ms: a very slow machine
    published: list[Snapshot] = []
    d = driver(clock, published, speed=100.0, publish_hz=5.0)
    task = asyncio.create_task(d.run())
    await until(lambda: len(published) >= 10)
    task.cancel()
    status = d.status
    assert status.behind
    assert 0 < status.achieved < 100.0


async def test_pause_stops_time_and_resume_continues() -> None:
    clock = ManualClock()
    published: list[Snapshot] = []
    d = driver(clock, published, speed=1.0)
    task = asyncio.create_task(d.run())
    await until(lambda: len(published) >= 5)
    d.pause()
    frozen = d.engine.now
    count = len(published)
    clock.now += 50.0
    for _ in range(100):
        await asyncio.sleep(0)
    assert d.engine.now == frozen and len(published) == count
    assert d.status.paused and d.status.achieved == 0.0
    d.resume()
    await until(lambda: len(published) >= count + 5)
    task.cancel()
    assert d.engine.now > frozen
    assert d.engine.now - frozen < 5.0, "the pause must not be caught up afterwards"


def test_step_and_step_event() -> None:
    published: list[Snapshot] = []
    d = RealtimeDriver(engine(), published.append, step_seconds=1.0)
    d.step()
    assert d.paused and d.engine.now == 1.0
    d.step(0.25)
    assert d.engine.now == 1.25 and published[-1].time == 1.25
    ran_before = d.engine.kernel.events_run
    assert d.step_event()
    assert d.engine.kernel.events_run == ran_before + 1


def test_speeds_are_clamped_and_stepped() -> None:
    assert clamp_speed(1000) == MAX_SPEED and clamp_speed(0.01) == MIN_SPEED
    assert next_speed(1.0, 1) == 2.0 and next_speed(1.0, -1) == 0.5
    assert next_speed(100.0, 1) == 100.0 and next_speed(0.25, -1) == 0.25
    assert next_speed(3.0, 1) == 5.0 and next_speed(3.0, -1) == 2.0
    d = RealtimeDriver(engine(), lambda s: None)
    assert d.set_speed(500) == 100.0


async def test_session_send_publishes_the_consequence_at_once() -> None:
    session = open_run("default", seed=3).session(paused=True)
    seen: list[Snapshot] = []
    unsubscribe = session.subscribe(seen.append)
    session.advance(5)
    reply = await session.send(Command("kill_container", "app-1"))
    assert reply.ok and reply.result == "f1"
    assert seen[-1].node("app-1").state == "backoff"
    assert any(e.kind == "fault" for e in seen[-1].events)
    bad = await session.send(Command("kill_container", "app-99"))
    assert not bad.ok and "app-99" in bad.error
    assert [r.ok for _, r in session.sent] == [True, False]
    unsubscribe()
    session.advance(1)
    assert seen[-1].time == 5.0
    await session.close()


async def test_session_catalogue_describes_faults_controls_and_driving() -> None:
    session = open_run("default", seed=3).session(paused=True)
    names = {a.name: a for a in session.catalogue}
    assert names["link_latency"].targets == ("link",) and names["link_latency"].group == "fault"
    assert names["kill_container"].reversible is False
    algorithm = names["set_algorithm"].param("name")
    assert algorithm is not None and algorithm.choices[0] == "round_robin"
    assert names["undo"].group == "control" and names["speed"].group == "driver"
    assert {"pause", "resume", "speed", "step"} <= set(names)


async def test_driver_commands_go_through_send() -> None:
    session = open_run("default", seed=3).session(paused=True)
    assert (await session.send(Command("speed", params={"x": 4}))).ok
    assert session.status.speed == 4.0
    assert (await session.send(Command("step", params={"seconds": 2.5}))).ok
    assert session.engine.now == 2.5 and session.status.paused
    assert (await session.send(Command("resume"))).ok and not session.status.paused
    assert (await session.send(Command("pause"))).ok and session.status.paused
    refused = await session.send(Command("speed", params={"x": 0}))
    assert not refused.ok and refused.error.startswith("speed.x: expected a speed between")
    assert session.status.speed == 4.0


async def test_session_query_reads_a_nodes_rows_and_refuses_writes() -> None:
    run = open_run("default", seed=3, storage=True)
    session = run.session(paused=True)
    await session.start()
    try:
        session.advance(3)
        assert run.storage is not None
        await run.storage.flush()
        result = await session.query("db-1", "SELECT count(*) FROM writes")
        assert result.columns == ("count(*)",) and result.rows[0][0] > 0
        with pytest.raises(SessionError, match="read-only"):
            await session.query("db-1", "DELETE FROM writes")
    finally:
        await session.close()


async def test_session_without_storage_says_so() -> None:
    session = open_run("default", seed=3).session(paused=True)
    with pytest.raises(SessionError, match="without storage"):
        await session.query("db-1", "SELECT 1")
