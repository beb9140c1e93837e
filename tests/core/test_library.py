"""The scenario library: each built-in's lesson emerges from the model.

Every test runs the built-in file as shipped (cut short where the point has been made) and
compares it with itself before and after its fault, or with the same file changed in the one
setting its lesson is about. No test reaches into a special case: the figures are the ones any
run keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stackyard.core.engine import Engine
from stackyard.core.metrics import mmc_mean_wait
from stackyard.core.model.database import Write
from stackyard.core.protocol import CheckResult, RunSummary
from stackyard.core.scenario import builtin_names, load_builtin, scenario_with

LIBRARY = ("default", "mmc", "flash-crowd", "diurnal", "cdn-purge", "retry-storm",
           "async-failover", "sync-failover", "noisy-neighbour", "slow-disk", "split-brain",
           "region-outage", "backup-restore")


def run(name: str, until: float, seed: int = 1, **changes: Any) -> Engine:
    scenario = load_builtin(name)
    if changes:
        scenario = scenario_with(scenario, changes, name)
    engine = Engine(scenario, seed=seed)
    engine.run_until(until)
    return engine


def lighter(name: str, k: int = 8) -> dict[str, Any]:
    """Changes that keep a scenario's utilisation with ``k`` times fewer requests: each region
    at a ``k``-th of its rate, every request ``k`` times the CPU. The autoscaler sees
    utilisation, so its story is the same, told in fewer events."""
    s = load_builtin(name)
    svc = s.app.service
    return {"traffic": {"regions": {r: {"rate": cfg.rate / k}
                                    for r, cfg in s.traffic.regions.items()}},
            "app": {"service": {"static": svc.static * k, "read": svc.read * k,
                                "write": svc.write * k}}}


def checks(e: Engine) -> dict[str, CheckResult]:
    return {c.name: c for c in e.summary().checks}


class Window:
    """Requests finished and failed between two instants of a run."""

    def __init__(self, e: Engine, start: float, end: float,
                 also: Callable[[Engine], float] | None = None) -> None:
        e.run_until(start)
        w = e.world
        c0, f0 = w.completed, w.failed
        a0 = also(e) if also else 0.0
        e.run_until(end)
        self.completed = w.completed - c0
        self.failed = w.failed - f0
        self.also = (also(e) - a0) if also else 0.0
        self.seconds = end - start

    @property
    def error_rate(self) -> float:
        done = self.completed + self.failed
        return self.failed / done if done else 0.0


def test_the_library_is_every_builtin() -> None:
    assert sorted(LIBRARY) == sorted(builtin_names())
    assert len(LIBRARY) >= 11


def test_default_is_healthy() -> None:
    e = run("default", 60.0)
    s = e.summary()
    assert s.requests.failed == 0 and s.latency.p99 < 0.5
    assert s.autoscaler.actions == 0 and not e.faults


def test_mmc_waits_as_erlang_c_says() -> None:
    e = run("mmc", 120.0)
    s = e.summary()
    expected = mmc_mean_wait(4, 320.0, 100.0) + 0.010
    assert s.mean_sojourn == pytest.approx(expected, rel=0.15)
    (mean,) = checks(e).values()
    assert mean.passed


def test_flash_crowd_meets_the_old_capacity_until_vms_boot() -> None:
    e = run("flash-crowd", 60.0, **lighter("flash-crowd", 4))
    cluster = e.world.cluster
    assert e.world.failed == 0
    crowd = Window(e, 60.0, 100.0)
    assert crowd.error_rate > 0.2  # the crowd is shed: capacity is what it was
    running = sum(c.state == "running" for c in cluster.containers.values())
    assert running <= cluster.vm_capacity() * load_builtin("flash-crowd").app.vm.initial
    e.run_until(175.0)
    boots = [ev.time for ev in e.events if ev.kind == "vm_boot"]
    ready = [ev.time for ev in e.events if ev.kind == "vm_ready"]
    assert boots and min(boots) >= 60.0  # asked for only once the crowd came
    assert ready and min(ready) >= min(boots) + 45.0  # cold start: capacity comes late
    later = Window(e, 150.0, 175.0)
    assert sum(c.state == "running" for c in cluster.containers.values()) > running
    assert later.error_rate < crowd.error_rate
    availability = checks(e)["availability >= 99.9%"]
    assert not availability.passed and availability.cause is not None
    assert availability.cause.kind == "traffic_pattern"


def test_diurnal_scales_up_with_the_day_and_down_only_after_the_window() -> None:
    e = run("diurnal", 840.0, **lighter("diurnal"), faults=[])
    ups = [ev for ev in e.events if ev.kind == "scale_up"]
    downs = [ev for ev in e.events if ev.kind == "scale_down"]
    assert ups and ups[0].time < 300.0  # up as the day rises to its peak at 5m
    assert downs and downs[0].time > 300.0 + 300.0  # down only once the peak left the window
    assert e.world.autoscaler.max_replicas > 4


def test_cdn_purge_stampedes_the_origin_until_the_cache_refills() -> None:
    e = run("cdn-purge", 90.0)

    def fetches(e: Engine) -> float:
        return float(sum(edge.fetches for edge in e.world.edges.values()))

    warm = Window(e, 90.0, 120.0, fetches)
    stampede = Window(e, 120.0, 150.0, fetches)
    later = Window(e, 200.0, 230.0, fetches)
    assert stampede.also > 1.3 * warm.also  # every hit turned into an origin fetch
    assert warm.failed == 0 and stampede.error_rate > 0.02  # the origin overloads
    assert later.failed == 0 and later.also < stampede.also
    collapsed = sum(edge.collapsed for edge in e.world.edges.values())
    assert collapsed > 0
    (check,) = checks(e).values()
    assert not check.passed and check.cause is not None and check.cause.kind == "cache_purge"


@pytest.mark.parametrize(("budget", "recovers"), [(10.0, False), (0.2, True)])
def test_retry_storm_outlives_its_trigger_without_a_retry_budget(budget: float,
                                                                  recovers: bool) -> None:
    scenario = load_builtin("retry-storm")
    data = [{"kind": f.kind, "at": f.at, "target": f.target, "duration": f.duration,
             "params": dict(f.params)} for f in scenario.faults]
    assert data[0]["kind"] == "retry_storm"
    data[0]["params"]["budget"] = budget
    e = run("retry-storm", 30.0, faults=data)
    assert e.world.failed == 0
    slow = Window(e, 30.0, 60.0)
    after = Window(e, 90.0, 120.0)  # half a minute after the link is fast again
    assert slow.error_rate > 0.2
    if recovers:
        assert after.error_rate < 0.01
    else:
        assert after.error_rate > 0.3


def _failover(name: str) -> tuple[RunSummary, list[float]]:
    delays: list[float] = []
    scenario = load_builtin(name)
    e = Engine(scenario, seed=1)
    assert e.world.db is not None

    def acked(w: Write) -> None:
        assert w.acked_at is not None
        delays.append(w.acked_at - w.committed_at)

    e.world.db.on_ack = acked
    e.run_until(100.0)
    return e.summary(), delays


def test_async_failover_loses_acknowledged_writes() -> None:
    s, delays = _failover("async-failover")
    assert s.database is not None and s.database.failovers == 1
    assert s.database.lost_writes > 0
    assert max(delays) == 0.0  # acknowledged at commit
    lost = next(c for c in s.checks if c.metric == "lost_writes")
    assert not lost.passed and lost.cause is not None and lost.cause.kind == "kill_db"


def test_sync_failover_loses_nothing_and_every_write_waits_for_a_replica() -> None:
    s, delays = _failover("sync-failover")
    assert s.database is not None and s.database.failovers == 1
    assert s.database.lost_writes == 0
    assert min(delays) >= 0.18  # a round trip to a replica 100 ms away (less the jitter)
    lost = next(c for c in s.checks if c.metric == "lost_writes")
    assert lost.passed


@pytest.mark.parametrize("algorithm", ["round_robin", "power_of_two", "peak_ewma"])
def test_noisy_neighbour_is_routed_around_by_load_aware_balancing(algorithm: str) -> None:
    e = run("noisy-neighbour", 40.0, balancer={"algorithm": algorithm})
    w = e.world
    before = {b.id: b.picks for b in w.balancer.backends.values()}
    e.run_until(100.0)
    slow = {c.id for vm in w.cluster.hosts[0].vms for c in vm.containers}
    picks = {b.id: b.picks - before.get(b.id, 0) for b in w.balancer.backends.values()}
    share = sum(n for cid, n in picks.items() if cid in slow) / sum(picks.values())
    fair = len(slow) / len(picks)
    p99 = next(iter(checks(e).values()))
    if algorithm == "round_robin":
        assert share == pytest.approx(fair, abs=0.01)  # keeps feeding the slow ones
        assert not p99.passed and p99.cause is not None and p99.cause.target == "host-1"
    else:
        assert share < 0.8 * fair  # steers around them
        assert p99.passed


def test_slow_disk_exhausts_the_application_workers_upstream() -> None:
    e = run("slow-disk", 80.0)
    w = e.world
    held = [att for c in w.cluster.containers.values() for att in c.jobs]
    waiting = [att for att in held if not att.cpu]
    assert len(held) >= 16 and len(waiting) / len(held) > 0.8  # waiting on the database
    assert any(len(c.queue) > 0 for c in w.cluster.containers.values())
    e.run_until(120.0)
    assert w.errors.get("queue_full", 0) > 0  # the application tier fails first
    assert not any(cause.startswith("db_") for cause in w.errors)
    after = Window(e, 130.0, 150.0)
    assert after.failed == 0  # the disk is back, and so is everything upstream
    rate = checks(e)["error_rate <= 1%"]
    assert not rate.passed and rate.cause is not None and rate.cause.kind == "slow_disk"


@pytest.mark.parametrize("fencing", [False, True])
def test_split_brain_needs_fencing_off(fencing: bool) -> None:
    e = run("split-brain", 130.0, database={"failover": {"fencing": fencing}})
    s = e.summary()
    kinds = {ev.kind for ev in e.events}
    assert s.database is not None and s.database.failovers == 1
    if fencing:
        assert s.database.conflicts == 0 and "fenced" in kinds and "split_brain" not in kinds
    else:
        assert s.database.conflicts > 0 and "split_brain" in kinds
        (conflicts,) = s.checks
        assert conflicts.cause is not None and conflicts.cause.kind == "db_partition"


def test_region_outage_fails_clients_until_dns_moves_them() -> None:
    e = run("region-outage", 60.0)
    clients = e.world.client_links["eu"]
    before = e.world.recent.quantile(60.0, 0.5)
    dark = Window(e, 62.0, 88.0)
    assert dark.error_rate > 0.3  # eu clients fail: roughly half of all requests
    moved = Window(e, 95.0, 125.0)
    assert moved.failed == 0
    assert e.world.recent.quantile(125.0, 0.5) > before  # the cross-region round trip
    assert clients.latency == load_builtin("region-outage").network.links["client-eu"].latency
    recovery = checks(e)["recovery_time < 45s"]
    assert recovery.passed and recovery.value is not None
    assert 30.0 <= recovery.value <= 33.0  # cdn.dns_failover, and a second or two


def test_backup_restore_rto_grows_with_the_log_replayed_since_the_base_backup() -> None:
    cfg = load_builtin("backup-restore").database.backup
    rtos = []
    for at in (130.0, 210.0):  # 10 s and 90 s after the base backup at 2m
        e = run("backup-restore", at + 40.0, actions=[{"kind": "restore", "at": at,
                                                       "params": {"ago": 10.0}}])
        s = e.summary()
        assert s.database is not None and s.database.last_restore is not None
        r = s.database.last_restore
        assert (r.base_backup, r.recovery_point, r.rpo) == (120.0, at - 10.0, 10.0)
        rpo, rto = (c.value for c in s.checks)
        assert (rto, rpo) == (r.rto, r.rpo)
        assert rto is not None and rto >= cfg.restore_base
        rtos.append(rto)
    # the replay after the base backup: eighty more seconds of writes to apply
    assert rtos[1] - rtos[0] > 5.0
