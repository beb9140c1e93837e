"""The autoscaler against the real engine, with Kubernetes HPA semantics (DESIGN.md §3):
desired = ceil(current x utilisation / target) every 15 s, tolerance, bounded scale-up,
a 300 s scale-down stabilisation window, and VMs booting when the fleet is full."""

from __future__ import annotations

import math
from typing import Any

import pytest

from stackyard.core.config import Scenario
from stackyard.core.engine import Engine
from stackyard.core.model.compute import PENDING, RUNNING
from stackyard.core.protocol import Command, Event

from .conftest import merge, scenario

SEED = 7
PERIOD = 15.0
TARGET = 0.6


def reads(cores: float, demand: float = 0.01, **sections: Any) -> Scenario:
    """Read-only traffic offering ``cores`` of CPU in total (two regions, exponential demand of
    ``demand`` seconds per request), four containers to start with and never fewer."""
    per_region = cores / demand / 2.0
    base = {
        "traffic": {
            "regions": {"eu": {"rate": per_region}, "us": {"rate": per_region}},
            "mix": {"static": 0.0, "read": 1.0, "write": 0.0},
        },
        "app": {"service": {"read": demand}, "autoscaler": {"initial": 4, "min": 4}},
    }
    return scenario(**merge(base, sections))


def events(engine: Engine, kind: str, component: str | None = None) -> list[Event]:
    return [
        e
        for e in engine.events
        if e.kind == kind and (component is None or e.component == component)
    ]


def running(engine: Engine) -> int:
    return sum(c.state == RUNNING for c in engine.world.cluster.containers.values())


def cpu_seconds(engine: Engine) -> float:
    return sum(c.cpu_seconds for c in engine.world.cluster.containers.values())


def test_doubling_the_load_reaches_the_hpa_target_within_two_periods_plus_start() -> None:
    engine = Engine(reads(1.65), seed=SEED)
    engine.run_for(15.0)
    cpu0 = cpu_seconds(engine)
    engine.run_for(45.0)  # t = 60: a sync has just run
    cluster = engine.world.cluster
    current = cluster.replicas
    assert current == 4
    before = (cpu_seconds(engine) - cpu0) / (current * 45.0)
    want = 2.0 * current * before / TARGET
    assert 0.2 < want % 1.0 < 0.8, f"{want:.2f} is too near a whole number to test exactly"
    expected = math.ceil(want)
    assert expected > current

    spike = engine.now
    engine.apply(Command("traffic_spike", "", {"factor": 2.0}))
    start = engine.scenario.app.container.start
    deadline = spike + 2 * PERIOD + start
    peak = current
    while engine.now < deadline:
        engine.run_for(0.5)
        peak = max(peak, cluster.replicas)
    assert cluster.replicas == expected
    assert running(engine) == expected, "the new containers are up by then"
    assert peak == expected, "no overshoot on the way"
    assert events(engine, "scale_up")[0].time <= spike + 2 * PERIOD


def test_scale_down_waits_out_the_stabilisation_window() -> None:
    engine = Engine(reads(1.65, demand=0.04), seed=SEED)
    engine.run_for(60.0)
    spike = engine.apply(Command("traffic_spike", "", {"factor": 2.0}))
    engine.run_for(60.0)  # t = 120, just after a sync
    cluster = engine.world.cluster
    high = cluster.replicas
    assert high >= 6
    dropped = engine.now
    engine.apply(Command("clear", spike))
    window = engine.scenario.app.autoscaler.stabilization
    while engine.now < dropped + window:
        engine.run_for(PERIOD)
        assert cluster.replicas == high, f"scaled down at {engine.now} inside the window"
    assert engine.world.autoscaler.recommendation < high, "the load really dropped"
    engine.run_for(PERIOD)
    (down,) = events(engine, "scale_down")
    assert dropped + window < down.time <= dropped + window + PERIOD
    assert cluster.replicas == 4  # min replicas: ceil(6 x ~0.28 / 0.6) = 3 is below it


def test_stabilisation_window_also_covers_the_start_of_a_run() -> None:
    # Kubernetes seeds the window with the current replica count when the HPA starts
    # (recordInitialRecommendation), so light load at start-up does not scale down at once.
    engine = Engine(reads(1.2, demand=0.04, app={"autoscaler": {"min": 1}}), seed=SEED)
    engine.run_for(PERIOD)
    assert engine.world.autoscaler.recommendation < 4, "light load: the HPA wants fewer"
    window = engine.scenario.app.autoscaler.stabilization
    engine.run_for(window - PERIOD)
    assert not events(engine, "scale_down"), [e.message for e in events(engine, "scale_down")]
    assert engine.world.cluster.replicas == 4
    engine.run_for(2 * PERIOD)
    assert engine.world.cluster.replicas < 4


def test_no_action_within_the_tolerance() -> None:
    engine = Engine(reads(2.48), seed=SEED)  # ~0.62 per container: 3% above target
    autoscaler = engine.world.autoscaler
    ratios = []
    for _ in range(8):
        engine.run_for(PERIOD)
        ratios.append(autoscaler.utilisation / TARGET)
        assert engine.world.cluster.replicas == 4
    assert all(abs(r - 1.0) <= 0.1 for r in ratios), ratios
    assert sum(math.ceil(4 * r) > 4 for r in ratios) >= 4, (
        "without the tolerance these periods would have scaled up"
    )
    assert autoscaler.scale_ups == autoscaler.scale_downs == 0


@pytest.mark.parametrize(
    ("current", "util", "expected"),
    [
        (4, 0.65, 4),  # ratio 1.083: within the tolerance, though ceil(4 x 1.083) = 5
        (4, 0.70, 5),  # ratio 1.167: ceil(4.67)
        (4, 0.90, 6),  # ratio 1.5
        (20, 0.57, 20),  # ratio 0.95: within, though ceil(20 x 0.95) = 19
        (20, 0.50, 17),  # ratio 0.833: ceil(16.67), once the start has left the window
        (4, 0.06, 2),  # ceil(0.4) clamped to min replicas
        (30, 1.0, 40),  # ceil(50) clamped to max replicas
    ],
)
def test_hpa_decision(current: int, util: float, expected: int) -> None:
    engine = Engine(
        reads(0.1, app={"autoscaler": {"enabled": False, "initial": current, "min": 2}}), seed=SEED
    )
    if expected < current:  # let the starting count leave the stabilisation window
        engine.run_for(301.0)
    engine.world.autoscaler.decide(util, engine.now)
    assert engine.world.cluster.replicas == expected


def test_scale_up_is_bounded_by_double_or_four_more_per_period() -> None:
    engine = Engine(
        reads(0.1, app={"autoscaler": {"enabled": False, "initial": 1, "min": 1, "target": 0.05}}),
        seed=SEED,
    )
    autoscaler = engine.world.autoscaler
    seen = [engine.world.cluster.replicas]
    for _ in range(5):
        autoscaler.decide(1.0, engine.now)  # wants 20x the replicas every time
        seen.append(engine.world.cluster.replicas)
    # +4 wins below 4 replicas, +100% above; the last step stops at max replicas
    assert seen == [1, 5, 10, 20, 40, 40]


def test_scale_up_steps_stay_within_the_bound_in_a_run() -> None:
    engine = Engine(
        reads(1.65, app={"autoscaler": {"initial": 2, "min": 2, "target": 0.1}}), seed=SEED
    )
    engine.run_for(6 * PERIOD)
    steps = []
    for e in events(engine, "scale_up"):
        a, b = (int(x) for x in e.message.split()[2:5:2])
        steps.append((a, b))
    assert steps, "a target of 10% should scale up"
    for a, b in steps:
        assert a < b <= max(2 * a, a + 4), steps
    assert steps[0] == (2, 6), "the first step is bounded (the load wants ~17)"


def test_full_vms_boot_a_vm_and_its_capacity_arrives_late() -> None:
    # 2-vCPU VMs hold two 1-core containers: the initial two VMs are full with four.
    engine = Engine(reads(1.65, demand=0.04, app={"vm": {"vcpus": 2}}), seed=SEED)
    engine.run_for(60.0)
    cluster = engine.world.cluster
    assert all(len(vm.containers) == 2 for vm in cluster.vms.values())
    engine.apply(Command("traffic_spike", "", {"factor": 2.0}))
    engine.run_for(PERIOD)
    (up,) = events(engine, "scale_up")
    boots = events(engine, "vm_boot")
    assert boots and boots[0].time == up.time
    vm = cluster.vms[boots[0].component]
    late = [c for c in cluster.containers.values() if c.state == PENDING]
    assert late, "containers wait for a VM"
    boot = engine.scenario.app.vm.boot
    start = engine.scenario.app.container.start
    while engine.now < up.time + boot - 1.0:
        engine.run_for(1.0)
        assert running(engine) == 4, "no new capacity while the VM boots"
        assert vm.state == "booting"
    engine.run_for(boot + start + 1.0 - (engine.now - up.time))
    (ready,) = events(engine, "vm_ready", vm.id)
    assert ready.time - up.time == pytest.approx(boot)
    on_vm = [c.id for c in vm.containers]
    assert on_vm
    for cid in on_vm:
        (came,) = events(engine, "container_up", cid)
        assert came.time == pytest.approx(ready.time + start)


def test_pending_containers_do_not_inflate_the_recommendation() -> None:
    # While new containers wait for a booting VM they serve nothing; Kubernetes counts such
    # pods as 0% used on scale-up, so the recommendation stays ceil(total CPU / target).
    engine = Engine(reads(1.65, demand=0.04, app={"vm": {"vcpus": 2}}), seed=SEED)
    engine.run_for(60.0)
    engine.apply(Command("traffic_spike", "", {"factor": 2.0}))
    need = math.ceil(2 * 1.65 / TARGET)  # 6
    most = 0
    for _ in range(4):  # the first new VM is ready after three periods
        engine.run_for(PERIOD)
        most = max(most, engine.world.cluster.replicas)
    assert most <= need + 1, [e.message for e in events(engine, "scale_up")]
