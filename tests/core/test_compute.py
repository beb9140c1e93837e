"""The application tier against the real engine: bounded queues answer 503, memory leaks end in
OOM kills, crash loops back off, and a dead VM's containers are rescheduled (DESIGN.md §3)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from stackyard.core.config import Scenario
from stackyard.core.engine import Engine
from stackyard.core.model.compute import BACKOFF, RUNNING
from stackyard.core.protocol import Command, Event

from .conftest import merge, scenario

SEED = 7


def quiet(replicas: int = 4, **sections: Any) -> Scenario:
    """The default scenario at 100 rps with the autoscaler off and ``replicas`` containers."""
    base = {
        "traffic": {"regions": {"eu": {"rate": 50.0}, "us": {"rate": 50.0}}},
        "app": {"autoscaler": {"enabled": False, "initial": replicas, "min": 1, "max": replicas}},
    }
    return scenario(**merge(base, sections))


def events(engine: Engine, kind: str, component: str | None = None) -> list[Event]:
    return [
        e
        for e in engine.events
        if e.kind == kind and (component is None or e.component == component)
    ]


def mmck_blocking(lam: float, mu: float, c: int, k: int) -> float:
    """Probability that an arrival finds all ``k`` places of an M/M/c/k system taken."""
    a = lam / mu
    p = [
        a**n / math.factorial(n) if n <= c else a**n / (math.factorial(c) * c ** (n - c))
        for n in range(k + 1)
    ]
    return p[k] / sum(p)


def test_a_full_queue_answers_503() -> None:
    # One container, 4 workers of 10 ms and room for 4 more, offered 600 rps (capacity 400).
    engine = Engine(
        scenario(
            "mmc",
            traffic={"regions": {"eu": {"rate": 600.0}}},
            app={"container": {"queue": 4}},
            balancer={"health": {"fall": 1000}},
        ),
        seed=SEED,
    )
    (container,) = engine.world.cluster.containers.values()
    longest = 0
    for _ in range(2000):
        engine.run_for(0.01)
        longest = max(longest, len(container.queue))
        assert len(container.queue) <= 4
    assert longest == 4
    world = engine.world
    assert set(world.errors) == {"queue_full"}
    assert world.arrived == world.completed + world.errors["queue_full"] + world.in_flight
    assert container.failed == world.errors["queue_full"]
    # an M/M/4/8 loss system: the 503 fraction matches its blocking probability
    blocked = world.errors["queue_full"] / (world.completed + world.failed)
    assert blocked == pytest.approx(mmck_blocking(600.0, 100.0, 4, 8), rel=0.05)


def test_a_memory_leak_ends_in_an_oom_kill_and_a_restart_with_back_off() -> None:
    engine = Engine(quiet(), seed=SEED)
    engine.run_for(10.0)
    engine.apply(Command("memory_leak", "app-1", {"rate": 50.0}))
    container = engine.world.cluster.containers["app-1"]
    limit = container.mem_limit
    peak = 0.0
    while not events(engine, "oom_kill", "app-1"):
        engine.run_for(0.5)
        if container.state == RUNNING:
            peak = max(peak, container.memory())
        assert engine.now < 30.0, "the leak never hit the limit"
    (oom,) = events(engine, "oom_kill", "app-1")
    # 200 MB base + 4 MB per request held + 50 MB per one-second leak step passes 512 MB at
    # the sixth step (with four or more requests held) or the seventh
    assert oom.time - 10.0 in (6.0, 7.0)
    assert peak <= limit
    assert oom.message == "app-1 OOM-killed; restart in 10 s"
    assert container.state == BACKOFF and container.restarts == 1
    assert container.memory() < limit, "the restarted process starts with fresh memory"
    start = engine.scenario.app.container.start
    engine.run_for(30.0)
    (up,) = [e for e in events(engine, "container_up", "app-1") if e.time > oom.time]
    assert up.time == pytest.approx(oom.time + 10.0 + start)
    # the leak goes on in the new process: a second kill, with a doubled back-off
    second = events(engine, "oom_kill", "app-1")[1]
    assert second.message == "app-1 OOM-killed; restart in 20 s"
    assert second.time - up.time in (6.0, 7.0)


@pytest.mark.parametrize(
    ("backoff_max", "backoffs"), [(300.0, [10, 20, 40, 80]), (25.0, [10, 20, 25, 25])]
)
def test_crash_loop_back_off_doubles_up_to_its_cap(backoff_max: float, backoffs: list[int]) -> None:
    engine = Engine(quiet(app={"container": {"backoff_max": backoff_max}}), seed=SEED)
    engine.run_for(10.0)
    engine.apply(Command("crash_loop", "app-2", {"after": 2.0}))
    start = engine.scenario.app.container.start
    engine.run_for(sum(backoffs[:3]) + 3 * (start + 2.0) + 1.0)
    crashes = events(engine, "container_crash", "app-2")
    assert [e.message for e in crashes] == [f"app-2 crashed; restart in {b} s" for b in backoffs]
    # each crash comes back-off + start + 2 s (the crash-loop delay) after the previous one
    gaps = [b.time - a.time for a, b in itertools.pairwise(crashes)]
    assert gaps == pytest.approx([b + start + 2.0 for b in backoffs[:3]])
    assert crashes[0].time == 10.0


@pytest.mark.parametrize(("fault", "target"), [("kill_vm", "vm-1"), ("kill_host", "host-1")])
def test_a_dead_vms_containers_are_rescheduled_elsewhere(fault: str, target: str) -> None:
    engine = Engine(quiet(), seed=SEED)
    engine.run_for(20.0)
    cluster = engine.world.cluster
    vm1 = cluster.vms["vm-1"]
    lost = sorted(c.id for c in vm1.containers)
    assert lost == ["app-1", "app-3"]
    engine.apply(Command(fault, target))
    assert vm1.state == "down"
    for cid in lost:
        assert cid not in cluster.containers
        assert events(engine, "container_gone", cid)
    start = engine.scenario.app.container.start
    engine.run_for(start + 0.01)
    live = [c for c in cluster.containers.values() if c.state == RUNNING]
    assert len(live) == 4
    replacements = [c for c in live if c.id not in ("app-2", "app-4")]
    assert sorted(c.id for c in replacements) == ["app-5", "app-6"]
    for c in replacements:
        assert c.vm is not None and c.vm.id != "vm-1" and c.vm.state == "ready"
    assert {b.id for b in engine.world.balancer.backends.values()} == {c.id for c in live}


def test_a_dead_full_vms_containers_come_back_once_a_vm_is_ready() -> None:
    engine = Engine(quiet(8), seed=SEED)  # two VMs of four containers: no room anywhere
    engine.run_for(20.0)
    cluster = engine.world.cluster
    killed = engine.now
    engine.apply(Command("kill_vm", "vm-1"))
    boot = engine.scenario.app.vm.boot
    start = engine.scenario.app.container.start
    engine.run_for(boot - 1.0)
    assert sum(c.state == RUNNING for c in cluster.containers.values()) == 4
    engine.run_for(start + 2.0)
    assert sum(c.state == RUNNING for c in cluster.containers.values()) == 8
    ready = [e for e in events(engine, "vm_ready") if e.time > killed]
    assert ready and ready[0].time == pytest.approx(killed + boot)


def test_a_dead_hosts_containers_get_a_new_vm_on_a_live_host() -> None:
    # host-1 stays down for its 180 s reboot; hosts 3 and 4 are empty, so the VM group should
    # boot a VM there rather than wait for host-1 to come back.
    engine = Engine(quiet(8), seed=SEED)
    engine.run_for(20.0)
    cluster = engine.world.cluster
    killed = engine.now
    engine.apply(Command("kill_host", "host-1"))
    boot = engine.scenario.app.vm.boot
    start = engine.scenario.app.container.start
    engine.run_for(boot + start + 2.0)
    live = [c for c in cluster.containers.values() if c.state == RUNNING]
    assert len(live) == 8, [e.message for e in engine.events if e.time >= killed]
    assert all(c.vm is not None and c.vm.host.id != "host-1" for c in live)


# -- processor sharing: exact shares, recomputed as requests come and go --------------------


def sharing(cores: float = 1.0, workers: int = 8) -> Engine:
    """One container, deterministic 10 ms reads, no network delay and no arrivals of its own:
    the test sends each request itself."""
    return Engine(scenario(
        "mmc",
        traffic={"regions": {"eu": {"rate": 0.0}}},
        app={"container": {"cpu": cores, "workers": workers},
             "service": {"distribution": {"read": {"kind": "deterministic"}}}},
    ), seed=SEED)


def send_at(engine: Engine, *times: float) -> None:
    region = engine.world.regions["eu"]
    for t in times:
        engine.kernel.call_at(t, lambda _: engine.world.arrive(region))


@pytest.mark.parametrize(
    ("cores", "sends", "total"),
    [
        # two together on one core: each gets half of it, both finish at 20 ms
        (1.0, (1.0, 1.0), 0.040),
        # a third joins at 5 ms: 2.5 ms done each, then thirds until the first two finish at
        # 27.5 ms (the third has 7.5 ms), which then runs alone until 30 ms
        (1.0, (1.0, 1.0, 1.005), 0.0275 * 2 + 0.025),
        # two cores: two requests do not share, a third makes it 2/3 of a core each
        (2.0, (1.0, 1.0), 0.020),
        (2.0, (1.0, 1.0, 1.0), 3 * 0.015),
    ],
)
def test_requests_share_the_cores_exactly(
    cores: float, sends: tuple[float, ...], total: float
) -> None:
    engine = sharing(cores)
    send_at(engine, *sends)
    engine.run_until(2.0)
    assert engine.world.completed == len(sends)
    assert engine.world.sojourn_total == pytest.approx(total, abs=1e-9)
    assert engine.kernel.pending() < 10, "no timer left behind"


@pytest.mark.parametrize(
    ("fault", "target", "params", "total"),
    [
        # a 1-core hog takes its fair share: a request on one core gets half of it
        ("cpu_hog", "app-1", {"cores": 1.0}, 0.020),
        # steal of half the host: everything on it runs at half speed
        ("noisy_neighbour", "host-1", {"steal": 0.5}, 0.020),
    ],
)
def test_hogs_and_steal_take_their_share(
    fault: str, target: str, params: dict[str, Any], total: float
) -> None:
    engine = sharing()
    engine.run_until(0.5)
    engine.apply(Command(fault, target, params))
    send_at(engine, 1.0)
    engine.run_until(2.0)
    assert engine.world.sojourn_total == pytest.approx(total, abs=1e-9)


def test_a_share_change_mid_request_re_times_it() -> None:
    engine = sharing()
    send_at(engine, 1.0)
    engine.apply(Command("noisy_neighbour", "host-1", {"steal": 0.5}, at=1.004))
    engine.apply(Command("clear", "f1", at=1.008))
    engine.run_until(2.0)
    # 4 ms at full speed, 4 ms at half (2 ms of work), then the last 4 ms at full speed
    assert engine.world.sojourn_total == pytest.approx(0.012, abs=1e-9)


def test_sharing_costs_one_timer_per_container_not_one_per_request() -> None:
    engine = sharing(workers=64)
    send_at(engine, *[1.0 + i * 1e-4 for i in range(50)])
    engine.run_until(1.0 + 49e-4)
    (container,) = engine.world.cluster.containers.values()
    assert container.cpu_busy == 50
    live = [e for e in engine.kernel._heap if e[2] is not None and e[0] > engine.now]
    assert sum(1 for e in live if getattr(e[2], "__self__", None) is container) == 1
