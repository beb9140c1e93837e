"""Whole-engine properties: determinism, conservation, Little's law, commands."""

from __future__ import annotations

import pytest

from stackyard.core.engine import CommandError, Engine
from stackyard.core.faults import FAULTS
from stackyard.core.protocol import Command, Snapshot, decode, encode

from .conftest import live_requests, scenario

FAULTY = [
    (5.0, Command("kill_container", "app-1")),
    (8.0, Command("cache_purge")),
    (10.0, Command("link_latency", "lb-app", {"latency": 0.3, "duration": 10.0})),
    (12.0, Command("traffic_spike", "", {"factor": 3.0, "duration": 20.0})),
    (15.0, Command("lb_failure", "lb-1", {"duration": 10.0})),
    (18.0, Command("partition", "app-2", {"duration": 12.0})),
    (20.0, Command("packet_loss", "edge-us", {"loss": 0.2, "duration": 10.0})),
    (22.0, Command("edge_outage", "edge-eu", {"duration": 40.0})),
    (25.0, Command("memory_leak", "app-3", {"rate": 40.0, "duration": 30.0})),
    (27.0, Command("retry_storm", "", {"duration": 15.0})),
    (30.0, Command("kill_vm", "vm-2")),
    (32.0, Command("noisy_neighbour", "host-1", {"steal": 0.7, "duration": 20.0})),
    (34.0, Command("crash_loop", "app-4", {"duration": 30.0})),
    (40.0, Command("kill_host", "host-2")),
    (45.0, Command("region_outage", "us", {"duration": 20.0})),
]


def run_with(
    commands: list[tuple[float, Command]], seed: int, seconds: float, every: float = 0.25
) -> list[Snapshot]:
    engine = Engine(scenario("default"), seed=seed)
    for at, cmd in commands:
        engine.apply(Command(cmd.kind, cmd.target, cmd.params, at=at))
    snaps = []
    t = 0.0
    while t < seconds:
        t += every
        engine.run_until(t)
        snaps.append(engine.snapshot())
    return snaps


def test_same_seed_and_commands_give_identical_snapshots() -> None:
    a = [s.to_json() for s in run_with(FAULTY, seed=3, seconds=60.0, every=1.0)]
    b = [s.to_json() for s in run_with(FAULTY, seed=3, seconds=60.0, every=1.0)]
    assert a == b


def test_another_seed_gives_different_results() -> None:
    a = run_with([], seed=3, seconds=20.0, every=5.0)[-1]
    b = run_with([], seed=4, seconds=20.0, every=5.0)[-1]
    assert a.kpis != b.kpis


def test_summary_is_json_and_deterministic() -> None:
    def summary(seed: int) -> str:
        engine = Engine(scenario("default"), seed=seed)
        engine.run_for(30.0)
        return encode(engine.summary()).decode()

    assert summary(11) == summary(11)
    assert summary(11) != summary(12)


def test_conservation_at_every_snapshot_of_a_faulty_run() -> None:
    engine = Engine(scenario("default"), seed=5)
    for at, cmd in FAULTY:
        engine.apply(Command(cmd.kind, cmd.target, cmd.params, at=at))
    t = 0.0
    checked = 0
    while t < 90.0:
        t += 0.25
        engine.run_until(t)
        snap = engine.snapshot()
        k = snap.kpis
        live = live_requests(engine)
        assert k.arrived == k.completed + k.failed + len(live), f"at {t}"
        assert k.in_flight == len(live)
        checked += 1
    assert checked == 360
    assert engine.world.failed > 0, "the faults should have failed some requests"
    causes = set(engine.world.errors)
    assert {"edge_down", "partition"} <= causes


def test_littles_law_on_default() -> None:
    engine = Engine(scenario("default"), seed=2)
    engine.run_for(20.0)  # warm up
    arrived0 = engine.world.arrived
    sojourn0 = engine.world.sojourn_total
    finished0 = engine.world.completed + engine.world.failed
    area = 0.0
    dt = 0.05
    steps = int(200.0 / dt)
    for _ in range(steps):
        engine.run_for(dt)
        area += engine.world.in_flight * dt
    span = steps * dt
    mean_in_system = area / span
    lam = (engine.world.arrived - arrived0) / span
    finished = engine.world.completed + engine.world.failed - finished0
    w = (engine.world.sojourn_total - sojourn0) / finished
    assert mean_in_system == pytest.approx(lam * w, rel=0.03)


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_every_fault_injects_clears_and_explains(kind: str) -> None:
    targets = {
        "container": "app-2",
        "vm": "vm-1",
        "host": "host-1",
        "link": "lb-app",
        "edge": "edge-eu",
        "balancer": "lb-1",
        "region": "us",
        "db": "db-2",
    }
    fk = FAULTS[kind]
    target = targets[fk.targets[0]] if fk.targets else ""
    engine = Engine(scenario("default"), seed=1)
    engine.run_for(10.0)
    fid = engine.apply(Command(kind, target))
    engine.run_for(5.0)
    fault_events = [e for e in engine.events if e.kind == "fault"]
    assert len(fault_events) == 1
    assert fault_events[0].why, "every fault explains itself"
    snap = engine.snapshot()
    if fk.clear is not None:
        assert [f.id for f in snap.faults] == [fid]
        engine.apply(Command("clear", fid))
        assert engine.snapshot().faults == ()
        assert any(e.kind == "fault_cleared" for e in engine.events)
    else:
        assert snap.faults == ()
    engine.run_for(5.0)
    k = engine.snapshot().kpis
    assert k.arrived == k.completed + k.failed + len(live_requests(engine))


def test_fault_with_duration_clears_itself() -> None:
    engine = Engine(scenario("default"), seed=1)
    engine.apply(Command("edge_outage", "edge-eu", {"duration": 5.0}))
    engine.run_for(4.9)
    assert engine.world.edges["edge-eu"].up is False
    engine.run_for(0.2)
    assert engine.world.edges["edge-eu"].up is True
    assert engine.snapshot().faults == ()


def test_undo_clears_the_latest_fault_and_clear_all_the_rest() -> None:
    engine = Engine(scenario("default"), seed=1)
    engine.apply(Command("cpu_hog", "app-1"))
    second = engine.apply(Command("packet_loss", "lb-app"))
    assert engine.apply(Command("undo")) == second
    assert [f.kind for f in engine.snapshot().faults] == ["cpu_hog"]
    engine.apply(Command("clear_all"))
    assert engine.snapshot().faults == ()
    assert engine.world.cluster.containers["app-1"].hog == 0.0


@pytest.mark.parametrize(
    ("cmd", "message"),
    [
        (Command("explode", "app-1"), "command.kind: expected one of"),
        (Command("kill_container", "app-99"), "kill_container.target: expected a container id"),
        (Command("kill_container", "db"), "kill_container.target: expected a container id"),
        (Command("link_latency", "nowhere"), "link_latency.target: expected one of"),
        (Command("packet_loss", "lb-app", {"loss": "lots"}), "packet_loss.loss: expected a number"),
        (Command("packet_loss", "lb-app", {"los": 0.1}), "unknown parameter 'los'"),
        (Command("retry_storm", "app-1"), "expected no target"),
        (Command("clear", "f42"), "clear.target: expected an active fault id"),
        (Command("set_algorithm", "", {"name": "fastest"}), "set_algorithm.name: expected one of"),
        (Command("set_replicas", "", {"n": -1}), "set_replicas.n"),
        (Command("edge_outage", "edge-eu", {"duration": -1}), "duration: expected seconds"),
    ],
)
def test_bad_commands_are_refused_with_a_clear_message(cmd: Command, message: str) -> None:
    engine = Engine(scenario("default"), seed=1)
    before = engine.snapshot()
    with pytest.raises(CommandError, match=message.replace(".", r"\.").replace("(", r"\(")):
        engine.apply(cmd)
    assert engine.snapshot().faults == before.faults == ()


def test_control_commands_change_the_model() -> None:
    engine = Engine(scenario("default"), seed=1)
    engine.apply(Command("set_algorithm", "", {"name": "power_of_two"}))
    engine.apply(Command("set_autoscaler", "", {"enabled": False}))
    engine.apply(Command("set_replicas", "", {"n": 6}))
    engine.apply(Command("set_timeout", "", {"seconds": 0.5}))
    engine.apply(Command("set_retries", "", {"retries": 2, "budget": 0.5}))
    engine.run_for(10.0)
    snap = engine.snapshot()
    assert snap.balancer is not None and snap.autoscaler is not None
    assert snap.balancer.algorithm == "power_of_two"
    assert snap.balancer.timeout == 0.5
    assert snap.balancer.retries == 2
    assert snap.autoscaler.enabled is False
    assert snap.autoscaler.replicas == 6
    assert snap.autoscaler.ready == 6


def test_scheduled_command_applies_at_its_time() -> None:
    engine = Engine(scenario("default"), seed=1)
    engine.apply(Command("kill_container", "app-1", at=12.5))
    engine.run_for(12.4)
    assert engine.world.cluster.containers["app-1"].state == "running"
    engine.run_for(0.2)
    assert engine.world.cluster.containers["app-1"].state == "backoff"
    assert engine.commands[-1][0] == 12.5


def test_snapshot_round_trips_through_json() -> None:
    engine = Engine(scenario("default"), seed=1)
    engine.apply(Command("cpu_hog", "app-1"))
    engine.run_for(10.0)
    snap = engine.snapshot()
    again = decode(Snapshot, snap.to_json())
    assert again == snap
    tiers = {n.tier for n in snap.nodes}
    assert tiers == {"network", "app", "database"}
