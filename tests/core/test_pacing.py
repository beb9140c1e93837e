"""Real-time pacing on a clock that charges for the engine's work, so a slow CPU is played
exactly and no test waits on wall time."""

from __future__ import annotations

import asyncio

import pytest

from stackyard.core.engine import Engine
from stackyard.core.protocol import Snapshot
from stackyard.core.realtime import RealtimeDriver
from stackyard.core.scenario import resolve


class WorkClock:
    """Wall time = time slept + ``cost`` seconds per kernel event run + ``tick`` per reading:
    a CPU that needs ``cost`` per event and a little for everything else."""

    def __init__(self, engine: Engine, cost: float, tick: float = 1e-6) -> None:
        self.engine = engine
        self.cost = cost
        self.tick = tick
        self.readings = 0
        self.slept = 0.0

    def __call__(self) -> float:
        self.readings += 1
        return (1000.0 + self.slept + self.engine.kernel.events_run * self.cost
                + self.readings * self.tick)

    async def sleep(self, seconds: float) -> None:
        self.slept += max(0.0, seconds)
        await asyncio.sleep(0)


async def drive(speed: float, capacity: float, ticks: int = 60) -> tuple[float, float, float]:
    """Run ``default`` at ``speed`` on a CPU that manages ``capacity`` x real time: (achieved
    as reported, simulated seconds per wall second overall, share of wall time spent idle)."""
    engine = Engine(resolve("default"), seed=3)
    engine.run_for(30.0)  # warm up, then measure the events per simulated second
    events = engine.kernel.events_run
    engine.run_for(30.0)
    per_second = (engine.kernel.events_run - events) / 30.0
    clock = WorkClock(engine, 1.0 / (capacity * per_second))
    published: list[Snapshot] = []
    driver = RealtimeDriver(engine, published.append, speed=speed, publish_hz=5.0,
                            clock=clock, sleep=clock.sleep)
    task = asyncio.create_task(driver.run())
    for _ in range(1000):  # warm the driver up: 2 s of wall time
        await asyncio.sleep(0)
        if driver.ticks >= 10:
            break
    wall0, sim0, slept0 = clock(), engine.now, clock.slept
    while driver.ticks < 10 + ticks:
        await asyncio.sleep(0)
    task.cancel()
    wall = clock() - wall0
    return driver.status.achieved, (engine.now - sim0) / wall, (clock.slept - slept0) / wall


@pytest.mark.parametrize("capacity", [60.0, 90.0])
async def test_a_cpu_that_cannot_keep_up_works_all_the_time_and_says_how_fast(
    capacity: float,
) -> None:
    achieved, overall, idle = await drive(100.0, capacity)
    assert idle < 0.02, "behind, the driver never idles a tick away"
    assert overall == pytest.approx(capacity, rel=0.05)
    assert achieved == pytest.approx(overall, rel=0.05), "the reported speed is the real one"


async def test_a_cpu_with_room_keeps_the_speed_and_idles_the_rest() -> None:
    achieved, overall, idle = await drive(100.0, 150.0)
    assert overall == pytest.approx(100.0, rel=0.03)
    assert achieved == pytest.approx(100.0, rel=0.05)
    assert idle == pytest.approx(1.0 - 100.0 / 150.0, abs=0.05)


@pytest.mark.parametrize("speed", [1.0, 10.0])
async def test_a_driver_that_keeps_up_sleeps_between_ticks(speed: float) -> None:
    achieved, overall, idle = await drive(speed, 150.0, ticks=20)
    assert overall == pytest.approx(speed, rel=0.03)
    assert achieved == pytest.approx(speed, rel=0.05)
    assert idle > 1.0 - 1.5 * speed / 150.0, "it does not chase the clock between ticks"


@pytest.mark.parametrize("speed", [1.0, 10.0])
async def test_the_simulation_keeps_its_speed_whatever_the_screens_rate(speed: float) -> None:
    """A viewer asking for 1 frame a second or 30 (``--fps``) changes how often snapshots are
    taken, never how fast simulated time passes."""
    advanced = {}
    for hz in (1.0, 30.0):
        engine = Engine(resolve("default"), seed=3)
        engine.run_for(5.0)
        clock = WorkClock(engine, 1e-7)
        published: list[Snapshot] = []
        driver = RealtimeDriver(engine, published.append, speed=speed, publish_hz=hz,
                                clock=clock, sleep=clock.sleep)
        task = asyncio.create_task(driver.run())
        await asyncio.sleep(0)
        wall0, sim0 = clock(), engine.now
        while clock() - wall0 < 12.0:
            await asyncio.sleep(0)
        task.cancel()
        advanced[hz] = (engine.now - sim0) / (clock() - wall0)
        assert len(published) == pytest.approx(12 * hz, abs=2)
    assert advanced[1.0] == pytest.approx(speed, rel=0.1)
    assert advanced[30.0] == pytest.approx(speed, rel=0.1)
