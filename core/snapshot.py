"""Turning the engine's live state into a Snapshot and a run summary (plain data)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stackyard.core.model.compute import RUNNING, Container
from stackyard.core.protocol import Event, NodeState, Snapshot

if TYPE_CHECKING:
    from stackyard.core.engine import Engine
    from stackyard.core.model.world import World

TREND = 30
"""Seconds of per-second history carried in a node's ``info["trend"]``."""


def _r(x: float, digits: int = 6) -> float:
    return round(float(x), digits)


def kpis(world: World, active_faults: int) -> dict[str, float]:
    now = world.kernel.now
    p50, p95, p99 = world.recent.quantiles(now, (0.5, 0.95, 0.99))
    done = world.done.series.rate(now, 5)
    errs = world.errors_meter.series.rate(now, 5)
    hits = sum(sum(e.hit_meter.series.values(10, now)) for e in world.edges.values())
    lookups = sum(sum(e.lookup_meter.series.values(10, now)) for e in world.edges.values())
    return {
        "rps": _r(world.arrivals.series.rate(now, 5)),
        "p50": _r(p50),
        "p95": _r(p95),
        "p99": _r(p99),
        "error_rate": _r(errs / (done + errs) if done + errs else 0.0),
        "slo_good": _r(world.slo.good_ratio),
        "slo_budget": _r(world.slo.budget_remaining),
        "cdn_hit_ratio": _r(hits / lookups if lookups else 0.0),
        "arrived": world.arrived,
        "completed": world.completed,
        "failed": world.failed,
        "in_flight": world.in_flight,
        "active_faults": active_faults,
    }


def container_state(world: World, c: Container) -> str:
    """What a viewer should call it: the container's own state, or the balancer's verdict."""
    b = world.balancer.backends.get(c.id)
    if c.state == RUNNING and b is not None:
        if b.ejected_until > world.kernel.now:
            return "ejected"
        if not b.healthy:
            return "unhealthy"
    return c.state


def nodes(world: World) -> list[NodeState]:
    now = world.kernel.now
    out: list[NodeState] = []
    for edge in world.edges.values():
        hits = sum(edge.hit_meter.series.values(10, now))
        looks = sum(edge.lookup_meter.series.values(10, now))
        out.append(NodeState(
            id=edge.id, tier="network", kind="edge", state="up" if edge.up else "down",
            metrics={
                "rps": _r(edge.requests.series.rate(now, 5)),
                "hit_ratio": _r(hits / looks if looks else 0.0),
                "objects": len(edge.cache),
                "fetches": edge.fetches,
                "collapsed": edge.collapsed,
            },
            info={"trend": edge.requests.series.values(TREND, now)},
        ))
    bal = world.balancer
    for i, node in enumerate(bal.nodes):
        if not node.up:
            state = "down"
        elif i == bal.active_node:
            state = "takeover" if now < bal.takeover_until else "active"
        else:
            state = "standby"
        out.append(NodeState(id=node.id, tier="network", kind="balancer", state=state,
                             metrics={"inflight": bal.inflight if i == bal.active_node else 0}))
    for link in world.links.values():
        degraded = link.loss > 0 or link.latency > world.scenario.network.links[link.name].latency
        out.append(NodeState(
            id=link.name, tier="network", kind="link",
            state="partitioned" if link.partitioned else "degraded" if degraded else "ok",
            metrics={"latency": _r(link.latency), "jitter": _r(link.jitter),
                     "loss": _r(link.loss)},
        ))
    for host in world.cluster.hosts:
        out.append(NodeState(id=host.id, tier="app", kind="host",
                             state="up" if host.up else "down",
                             metrics={"steal": _r(host.steal), "vms": len(host.vms),
                                      "cores": host.cores}))
    for vm in world.cluster.vms.values():
        out.append(NodeState(id=vm.id, tier="app", kind="vm", state=vm.state, parent=vm.host.id,
                             metrics={"load": _r(vm.load), "vcpus": vm.vcpus,
                                      "containers": len(vm.containers)}))
    total_share = sum(b.meter.series.rate(now, 5) for b in bal.backends.values())
    for c in sorted(world.cluster.containers.values(), key=lambda c: int(c.id.split("-")[1])):
        b = bal.backends.get(c.id)
        sent = b.meter.series.rate(now, 5) if b is not None else 0.0
        out.append(NodeState(
            id=c.id, tier="app", kind="container", state=container_state(world, c),
            parent=c.vm.id if c.vm else "",
            metrics={
                "busy": c.busy,
                "workers": c.workers,
                "queue": len(c.queue),
                "queue_cap": c.qcap,
                "cpu": _r(c.cpu_series.rate(now, 5)),
                "memory_mb": _r(c.memory()),
                "memory_limit_mb": c.mem_limit,
                "rps": _r(c.done_meter.series.rate(now, 5)),
                "errors": _r(c.error_meter.series.rate(now, 5)),
                "share": _r(sent / total_share if total_share else 0.0),
                "restarts": c.restarts,
                "active": b.active if b is not None else 0,
                "ewma": _r(b.ewma if b is not None else 0.0),
            },
            info={"trend": c.done_meter.series.values(TREND, now)},
        ))
    db = world.db
    if db is not None:
        for n in db.nodes.values():
            lag_lsn, lag_s = db.lag(n)
            out.append(NodeState(
                id=n.id, tier="database", kind="db", state=n.label(),
                parent=db.leader if n.id != db.leader else "",
                metrics={
                    "lsn": len(n.log),
                    "applied": n.applied,
                    "lag_lsn": lag_lsn,
                    "lag_s": _r(lag_s),
                    "pool_busy": n.busy,
                    "pool_size": n.pool,
                    "queue": len(n.queue),
                    "ops": _r(n.ops.series.rate(now, 5)),
                    "reads": n.reads,
                    "writes": n.writes,
                    "stale_reads": n.stale_reads,
                    "timeline": n.timeline,
                    "disk": _r(n.disk),
                    "skew": _r(n.skew),
                    "apply_rate": _r(n.apply_rate),
                },
                info={"partition": n.partition, "trend": n.ops.series.values(TREND, now)},
            ))
    return out


def database_info(world: World) -> dict[str, Any]:
    db = world.db
    if db is None:
        return {"enabled": False}
    backups = world.backups
    assert backups is not None
    return {
        "enabled": True,
        "mode": db.mode + (" (fell back to async)" if db.degraded else ""),
        "sync_replicas": db.k,
        "fencing": db.fencing,
        "leader": db.leader,
        "lease_s": _r(max(db.lease_expiry - world.kernel.now, 0.0)),
        "acked_writes": db.acked,
        "lost_writes": db.lost_writes,
        "conflicts": db.conflicts,
        "rewound": db.rewound,
        "stale_reads": db.stale_reads,
        "failovers": db.failovers,
        "last_promotion": dict(db.last_promotion),
        "backups": backups.taken,
        "last_backup": backups.base[-1][0],
        "archive_lsn": backups.archive_lsn,
        "archived_at": _r(backups.archived_at),
        "restoring": db.restoring,
        "last_restore": dict(backups.last_restore),
    }


def build(engine: Engine, seq: int, events: tuple[Event, ...]) -> Snapshot:
    world = engine.world
    a = world.autoscaler
    bal = world.balancer
    info: dict[str, Any] = {
        "scenario": engine.scenario.run.name,
        "seed": engine.seed,
        "balancer": {
            "algorithm": bal.algorithm,
            "active": bal.active_id(),
            "retries": bal.retries,
            "retry_budget": bal.retry_budget,
            "timeout": bal.timeout,
            "ejections": bal.ejection_count,
        },
        "autoscaler": {
            "enabled": a.enabled,
            "replicas": world.cluster.replicas,
            "ready": sum(1 for c in world.cluster.containers.values() if c.state == RUNNING),
            "recommendation": a.recommendation,
            "utilisation": _r(a.utilisation),
            "target": a.target,
            "last_decision": a.last_decision,
        },
        "database": database_info(world),
        "regions": {
            name: {"rate": _r(r.rate), "multiplier": _r(r.multiplier), "edge": f"edge-{name}"}
            for name, r in world.regions.items()
        },
        "series": {
            "rps": world.arrivals.series.values(TREND, world.kernel.now),
            "errors": world.errors_meter.series.values(TREND, world.kernel.now),
            "p99": world.p99_series.values(TREND, world.kernel.now),
        },
    }
    return Snapshot(
        time=_r(world.kernel.now),
        seq=seq,
        kpis=kpis(world, len(engine.faults)),
        nodes=tuple(nodes(world)),
        events=events,
        faults=tuple(f.to_dict() for f in engine.faults.values()),
        info=info,
    )


def summary(engine: Engine) -> dict[str, Any]:
    world = engine.world
    now = world.kernel.now
    h = world.recent.all_time()
    edges = world.edges.values()
    hits = sum(e.hits for e in edges)
    misses = sum(e.misses for e in edges)
    finished = world.completed + world.failed
    bal = world.balancer
    a = world.autoscaler
    return {
        "scenario": engine.scenario.run.name,
        "seed": engine.seed,
        "duration": _r(now),
        "requests": {
            "arrived": world.arrived,
            "completed": world.completed,
            "failed": world.failed,
            "in_flight": world.in_flight,
        },
        "rps": _r(world.arrived / now if now else 0.0),
        "latency": {
            "mean": _r(h.mean),
            "p50": _r(h.quantile(0.5)),
            "p95": _r(h.quantile(0.95)),
            "p99": _r(h.quantile(0.99)),
        },
        "mean_sojourn": _r(world.sojourn_total / finished if finished else 0.0),
        "error_rate": _r(world.failed / finished if finished else 0.0),
        "errors": dict(sorted(world.errors.items())),
        "cdn": {
            "hit_ratio": _r(hits / (hits + misses) if hits + misses else 0.0),
            "hits": hits,
            "misses": misses,
            "collapsed": sum(e.collapsed for e in edges),
            "origin_fetches": sum(e.fetches for e in edges),
        },
        "autoscaler": {
            "actions": a.scale_ups + a.scale_downs,
            "scale_ups": a.scale_ups,
            "scale_downs": a.scale_downs,
            "replicas": world.cluster.replicas,
            "max_replicas": a.max_replicas,
            "vm_boots": world.cluster.vm_boots,
            "vm_shutdowns": world.cluster.vm_shutdowns,
        },
        "balancer": {
            "algorithm": bal.algorithm,
            "ejections": bal.ejection_count,
            "health_changes": bal.health_changes,
            "retries": bal.retried,
            "timeouts": bal.timeouts,
            "retries_denied_by_budget": bal.budget_denied,
        },
        "slo": {
            "target": world.slo.target,
            "good_ratio": _r(world.slo.good_ratio),
            "budget_remaining": _r(world.slo.budget_remaining),
        },
        "database": database_info(world),
        "faults": list(engine.fault_log),
        "events": engine.event_count,
    }
