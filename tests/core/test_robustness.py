"""Commands that once broke the engine, and a fuzz over random command sequences."""

from __future__ import annotations

import contextlib
import math
import random

import pytest

from stackyard.core.config import LinkConfig
from stackyard.core.engine import CommandError, Engine
from stackyard.core.faults import FAULTS
from stackyard.core.model.network import BUFFER, BUFFER_MESSAGES, RESEND_LIMIT, Link
from stackyard.core.protocol import Command

from .conftest import live_requests, scenario


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"factor": 0.0}, "traffic_spike.factor: expected a multiplier > 0"),
        ({"factor": math.nan}, "traffic_spike.factor: expected a multiplier"),
        ({"factor": math.inf}, "traffic_spike.factor: expected a multiplier"),
        ({"factor": 2.0, "duration": math.nan}, "traffic_spike.duration: expected seconds"),
        ({"factor": 2.0, "duration": math.inf}, "traffic_spike.duration: expected seconds"),
    ],
)
def test_non_finite_or_zero_parameters_are_refused(params: dict[str, float], message: str) -> None:
    engine = Engine(scenario("default"), seed=1)
    with pytest.raises(CommandError, match=message):
        engine.apply(Command("traffic_spike", "", params))
    assert engine.snapshot().faults == ()


def test_replica_count_is_bounded_by_what_the_vms_hold() -> None:
    engine = Engine(scenario("default"), seed=1)
    with pytest.raises(CommandError, match=r"set_replicas\.n: expected 0\.\.64"):
        engine.apply(Command("set_replicas", "", {"n": 100_000}))


def test_a_cpu_hog_leaves_no_load_behind_on_its_vm() -> None:
    engine = Engine(scenario("default", app={"autoscaler": {"enabled": False}}), seed=1)
    engine.apply(Command("cpu_hog", "app-1", {"cores": 1.0}))
    vm = engine.world.cluster.containers["app-1"].vm
    assert vm is not None
    engine.apply(Command("set_replicas", "", {"n": 0}))
    engine.run_for(40.0)
    assert not vm.containers
    assert vm.load == pytest.approx(0.0, abs=1e-9)


def test_killing_a_draining_container_does_not_bring_it_back() -> None:
    engine = Engine(scenario("default", app={"autoscaler": {"enabled": False}}), seed=1)
    engine.apply(Command("link_latency", "app-db", {"latency": 1.0, "jitter": 0.0}))
    engine.run_for(5.0)
    engine.apply(Command("set_replicas", "", {"n": 3}))
    draining = [c for c in engine.world.cluster.containers.values() if c.state == "draining"]
    assert len(draining) == 1
    engine.apply(Command("kill_container", draining[0].id))
    engine.run_for(60.0)
    assert len(engine.world.cluster.live()) == 3


def test_a_slow_balancer_link_does_not_hold_workers_in_transit() -> None:
    def mean_busy(latency: float | None) -> float:
        engine = Engine(scenario("default", app={"autoscaler": {"enabled": False}}), seed=1)
        if latency is not None:
            engine.apply(Command("link_latency", "lb-app", {"latency": latency, "jitter": 0.0}))
        total = 0
        for _ in range(40):
            engine.run_for(0.5)
            total += sum(c.busy for c in engine.world.cluster.containers.values())
        assert "queue_full" not in engine.world.errors
        return total / 40

    # a request holds a worker only once it reaches the container: a 1 s trip changes nothing
    assert mean_busy(1.0) == pytest.approx(mean_busy(None), rel=0.3)


async def test_restore_during_a_switchover_acknowledges_nothing_it_then_drops() -> None:
    engine = Engine(scenario("default"), seed=1)
    db = engine.world.db
    assert db is not None
    acked_while_restoring = []
    db.on_ack = lambda w: acked_while_restoring.append(w) if db.restoring else None
    engine.run_for(30.0)
    engine.apply(Command("switchover", "db-2"))
    engine.apply(Command("restore", "", {"time": 20.0}))
    engine.run_for(60.0)
    assert acked_while_restoring == []
    assert not db.restoring and db.leader_node().role == "primary"


def test_sync_writes_on_the_new_primary_are_acknowledged_during_split_brain() -> None:
    sc = scenario("default", database={"replication": "sync", "failover": {"fencing": False}})
    engine = Engine(sc, seed=1)
    engine.apply(Command("db_partition", "db-1", {"duration": 120.0}, at=10.0))
    engine.run_for(80.0)
    db = engine.world.db
    assert db is not None and db.leader != "db-1"
    leader = db.leader_node()
    assert len(leader.waiting) < 10
    assert db.acked_lsn > db.last_promotion["lsn"]  # type: ignore[operator]


def test_a_fenced_primary_gets_no_writes() -> None:
    engine = Engine(scenario("default"), seed=1)
    engine.apply(Command("db_partition", "db-1", {"duration": 100.0}, at=10.0))
    engine.run_for(45.0)
    db = engine.world.db
    assert db is not None and db.nodes["db-1"].state == "fenced" and db.leader != "db-1"
    before = engine.world.errors.get("db_read_only", 0)
    engine.run_for(30.0)
    assert engine.world.errors.get("db_read_only", 0) == before


def test_a_lower_timeout_applies_to_new_attempts_at_once() -> None:
    engine = Engine(scenario("default", balancer={"timeout": "30s"}), seed=1)
    engine.apply(Command("link_latency", "app-db", {"latency": 1.0, "jitter": 0.0}))
    engine.run_for(2.0)
    engine.apply(Command("set_timeout", "", {"seconds": 0.5}))
    engine.run_for(3.0)
    assert engine.world.balancer.timeouts > 50


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (Command("link_latency", "lb-app"), Command("link_latency", "lb-app")),
        (Command("edge_outage", "edge-us"), Command("region_outage", "us")),
        (Command("partition", "db-2"), Command("db_partition", "db-2")),
        (Command("retry_storm"), Command("retry_storm")),
    ],
)
def test_faults_that_would_undo_each_other_are_refused(first: Command, second: Command) -> None:
    engine = Engine(scenario("default"), seed=1)
    fid = engine.apply(first)
    with pytest.raises(CommandError, match=f"already active on .* as {fid}; clear it first"):
        engine.apply(second)


def test_spikes_stack_and_clear_in_any_order() -> None:
    engine = Engine(scenario("default"), seed=1)
    a = engine.apply(Command("traffic_spike", "", {"factor": 2.0}))
    b = engine.apply(Command("traffic_spike", "eu", {"factor": 3.0}))
    engine.apply(Command("clear", a))
    engine.apply(Command("clear", b))
    assert all(r.multiplier == pytest.approx(1.0) for r in engine.world.regions.values())


def test_killing_what_is_already_down_is_refused() -> None:
    engine = Engine(scenario("default"), seed=1)
    engine.apply(Command("kill_db", "db-3"))
    with pytest.raises(CommandError, match="db-3 is already down"):
        engine.apply(Command("kill_db", "db-3"))
    engine.apply(Command("kill_vm", "vm-1"))
    with pytest.raises(CommandError, match="vm-1 is already down"):
        engine.apply(Command("kill_vm", "vm-1"))


def test_a_rebooted_vm_waits_for_its_own_boot() -> None:
    engine = Engine(scenario("default"), seed=1)
    engine.apply(Command("set_replicas", "", {"n": 12}))
    engine.run_for(1.0)
    booting = [v for v in engine.world.cluster.vms.values() if v.state == "booting"]
    assert booting
    vm = booting[0]
    engine.run_for(20.0)
    engine.apply(Command("kill_vm", vm.id))
    engine.run_for(30.0)  # the first boot would have finished by now
    assert vm.state == "booting"
    engine.run_for(20.0)
    assert vm.state == "ready"


def test_replaying_the_command_log_reproduces_the_run() -> None:
    live = Engine(scenario("default"), seed=9)
    live.run_until(30.0)
    live.apply(Command("set_replicas", "", {"n": 6}))
    live.run_until(47.0)
    live.apply(Command("kill_container", "app-2"))
    live.run_until(90.0)
    replay = Engine(scenario("default"), seed=9)
    for at, cmd in live.commands:
        replay.apply(Command(cmd.kind, cmd.target, cmd.params, at=at))
    replay.run_until(90.0)
    assert replay.summary() == live.summary()
    assert replay.snapshot().to_json() == live.snapshot().to_json()


@pytest.mark.parametrize(("base", "seed"), [("default", 1), ("default", 2), ("mmc", 3)])
def test_random_command_sequences_keep_every_invariant(base: str, seed: int) -> None:
    engine = Engine(scenario(base), seed=seed)
    rng = random.Random(seed)
    kinds = [*FAULTS, "clear", "undo", "set_algorithm", "set_replicas", "switchover",
             "set_replication", "restore", "clear_all"]
    for second in range(1, 121):
        if rng.random() < 0.3:
            kind = rng.choice(kinds)
            nodes = [n.id for n in engine.snapshot().nodes]
            faults = [f.id for f in engine.snapshot().faults]
            target = rng.choice(["", *nodes, *faults, "eu", "us"])
            params = {
                "set_algorithm": {"name": rng.choice(["random", "peak_ewma", "round_robin"])},
                "set_replicas": {"n": rng.randint(0, 10)},
                "set_replication": {"mode": rng.choice(["async", "sync", "semi_sync"])},
                "restore": {"time": rng.uniform(0, second)},
            }.get(kind, {"duration": rng.uniform(1, 30)} if rng.random() < 0.5 else {})
            with contextlib.suppress(CommandError):
                engine.apply(Command(kind, target, params))
        engine.run_until(float(second))
        k = engine.snapshot().kpis
        assert k.arrived == k.completed + k.failed + len(live_requests(engine))
        for c in engine.world.cluster.containers.values():
            assert c.busy >= 0 and c.cpu_busy >= 0
        for vm in engine.world.cluster.vms.values():
            assert vm.load >= -1e-9
        b = engine.world.balancer
        assert b.inflight >= 0 and b.retries_inflight >= 0
        assert all(x.active >= 0 for x in b.backends.values())
        if engine.world.db is not None:
            assert all(n.busy >= 0 for n in engine.world.db.nodes.values())


def test_clearing_a_partition_of_a_container_that_is_gone_is_harmless() -> None:
    engine = Engine(scenario("default", app={"autoscaler": {"enabled": False}}), seed=1)
    fid = engine.apply(Command("partition", "app-1", {"duration": 60.0}))
    engine.apply(Command("set_replicas", "", {"n": 3}))
    engine.run_for(70.0)  # app-1 scaled in, then the partition's duration ended
    assert engine.world.find("container", "app-1") is None
    assert fid not in engine.faults
    cleared = [e for e in engine.events if e.kind == "fault_cleared"]
    assert cleared and "nothing to restore" in cleared[-1].why


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (Command("set_timeout", "", {"seconds": math.nan}), r"set_timeout\.seconds: expected"),
        (Command("set_timeout", "", {"seconds": math.inf}), r"set_timeout\.seconds: expected"),
        (Command("set_timeout", "", {"seconds": 1e30}), r"set_timeout\.seconds: expected"),
        (Command("set_retries", "", {"retries": math.nan}), r"set_retries\.retries: expected"),
        (Command("set_retries", "", {"retries": -1}), r"set_retries\.retries: expected"),
        (Command("set_retries", "", {"retries": 1e30}), r"set_retries\.retries: expected"),
        (Command("set_retries", "", {"retries": 1, "budget": -0.5}),
         r"set_retries\.budget: expected"),
        (Command("set_retries", "", {"retries": 1, "budget": -math.inf}),
         r"set_retries\.budget: expected"),
        (Command("restore", "", {"time": math.nan}), r"restore\.time: expected"),
        (Command("set_replicas", "", {"n": math.inf}), r"set_replicas\.n: expected"),
        (Command("traffic_spike", "", {"factor": 2.0}, at=math.nan),
         r"traffic_spike\.at: expected"),
    ],
)
def test_control_commands_are_bounded_whatever_their_source(command: Command,
                                                            message: str) -> None:
    engine = Engine(scenario("default"), seed=1)
    engine.run_for(5.0)
    before = engine.snapshot()
    with pytest.raises(CommandError, match=message):
        engine.apply(command)
    after = engine.snapshot()
    assert (after.balancer, after.autoscaler, after.database) == \
        (before.balancer, before.autoscaler, before.database)


def test_a_capped_link_queues_in_order_below_its_buffer() -> None:
    link = Link("l", LinkConfig(latency=0.01, jitter=0.0, bandwidth=100.0), 0.2,
                random.Random(1))
    delays = [link.delay(0.0) for _ in range(100)]  # one second of the link's work: it fits
    assert delays == pytest.approx([0.01 + 0.01 * (i + 1) for i in range(100)])


def test_a_slow_capped_link_still_queues_a_buffer_of_messages() -> None:
    link = Link("l", LinkConfig(latency=0.01, jitter=0.0, bandwidth=1.0), 0.2,
                random.Random(1))
    delays = [link.delay(0.0) for _ in range(BUFFER_MESSAGES)]
    assert delays == pytest.approx([0.01 + i + 1.0 for i in range(BUFFER_MESSAGES)])


def _retries(rto: float) -> float:
    """The retransmission timeouts a message can wait through before it is given up."""
    total = 0.0
    while rto < RESEND_LIMIT:
        total, rto = total + rto, rto * 2.0
    return total


def test_a_capped_link_drops_what_its_buffer_cannot_hold_and_stays_bounded() -> None:
    link = Link("l", LinkConfig(latency=0.01, jitter=0.0, bandwidth=100.0), 0.2,
                random.Random(1))
    delays = [link.delay(0.0) for _ in range(100_000)]  # 1,000 s of work offered at once
    bound = BUFFER + _retries(0.2) + 0.01
    assert link.busy_until <= bound  # not 1,000 s: the rest was dropped and sent again
    assert all(math.isfinite(d) and d <= 0.01 + bound for d in delays)
    given_up = [d for d in delays if d == pytest.approx(0.01 + _retries(0.2))]
    assert 0 < len(given_up) < len(delays)  # what no retransmission got in arrives after all


def test_a_tight_bandwidth_cap_does_not_grow_the_event_heap_with_time() -> None:
    """Capped at 1 message/s under ~400 requests/s for 20 simulated minutes: what waits on the
    link is bounded by its buffer and the retransmission timeouts, not by the cap's duration."""
    engine = Engine(scenario(), seed=5)
    engine.run_until(30.0)
    engine.apply(Command("bandwidth_cap", "client-eu", {"rate": 1.0}))
    sizes = []
    for t in (300.0, 600.0, 900.0, 1200.0):
        engine.run_until(t)
        sizes.append(len(engine.kernel._heap))
    assert max(sizes[1:]) <= 1.2 * sizes[0] + 100, sizes
    link = engine.world.links["client-eu"]
    assert link.busy_until - engine.now <= BUFFER_MESSAGES + _retries(link.rto) + 1.0
