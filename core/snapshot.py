"""Turning the engine's live state into typed records: a Snapshot and a RunSummary."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, TypeVar

from stackyard.core.model.compute import RUNNING, Container
from stackyard.core.protocol import (
    AnyNode,
    AutoscalerInfo,
    AutoscalerSummary,
    BalancerInfo,
    BalancerNode,
    BalancerSummary,
    CdnSummary,
    ContainerNode,
    DatabaseInfo,
    DbNode,
    EdgeNode,
    Event,
    HostNode,
    Kpis,
    KpiSeries,
    LatencySummary,
    LinkNode,
    Promotion,
    RegionInfo,
    RequestCounts,
    RestoreInfo,
    RunSummary,
    SloSummary,
    Snapshot,
    VmNode,
    finite,
)

if TYPE_CHECKING:
    from stackyard.core.engine import Engine
    from stackyard.core.model.world import World

TREND = 30
"""Seconds of per-second history carried in a node's ``trend``."""

_r = finite
_isfinite = math.isfinite


def _trend_value(x: float) -> float:
    # finite() inlined, and skipped for whole numbers (per-second counts mostly are), which it
    # leaves as they are: a snapshot carries hundreds of trend values (a recorder's main cost,
    # with Series.window remembering those it worked out a second before).
    v = float(x)
    return v if v.is_integer() else round(v, 6) if _isfinite(v) else _r(v)


_LINKS: dict[tuple[object, ...], LinkNode] = {}
_HOSTS: dict[tuple[object, ...], HostNode] = {}
"""Nodes that change seldom, by everything they show: frozen records, so one serves every
snapshot (and every run) that shows the same."""
N = TypeVar("N")


def _remember(memo: dict[tuple[object, ...], N], key: tuple[object, ...], node: N) -> N:
    if len(memo) >= 4096:  # a bound: faults that keep changing a link's figures
        memo.clear()
    memo[key] = node
    return node


def _budget(burn: float) -> float:
    """The share of an error budget left after burning at ``burn``, within 0..1."""
    return min(max(1.0 - burn, 0.0), 1.0)


def kpis(world: World, active_faults: int, recovering: int = 0) -> Kpis:
    now = world.kernel.now
    p50, p95, p99 = world.recent.quantiles(now, (0.5, 0.95, 0.99))
    done = world.done.series.rate(now, 5)
    errs = world.errors_meter.series.rate(now, 5)
    hits = sum([e.hit_meter.series.total(10, now) for e in world.edges.values()])
    lookups = sum([e.lookup_meter.series.total(10, now) for e in world.edges.values()])
    slo = world.slo
    bad, total = slo.recent(now)  # once: it walks the window's buckets
    burn = slo.burn(bad, total)
    return Kpis(
        rps=_r(world.arrivals.series.rate(now, 5)),
        p50=_r(p50),
        p95=_r(p95),
        p99=_r(p99),
        error_rate=_r(errs / (done + errs) if done + errs else 0.0),
        slo_good=_r(1.0 - bad / total if total else 1.0),
        slo_budget=_r(_budget(burn)),
        slo_burn=_r(burn),
        slo_window=_r(world.slo.window),
        cdn_hit_ratio=_r(hits / lookups if lookups else 0.0),
        arrived=world.arrived,
        completed=world.completed,
        failed=world.failed,
        in_flight=world.in_flight,
        active_faults=active_faults,
        recovering=recovering,
    )


def container_state(world: World, c: Container) -> str:
    """What a viewer should call it: the container's own state, or the balancer's verdict."""
    b = world.balancer.backends.get(c.id)
    if c.state == RUNNING and b is not None:
        if b.ejected_until > world.kernel.now:
            return "ejected"
        if not b.healthy:
            return "unhealthy"
    return c.state


def nodes(world: World) -> list[AnyNode]:
    now = world.kernel.now
    out: list[AnyNode] = []
    for edge in world.edges.values():
        hits = edge.hit_meter.series.total(10, now)
        looks = edge.lookup_meter.series.total(10, now)
        out.append(EdgeNode(
            id=edge.id, state="up" if edge.up else "down", region=edge.region,
            rps=_r(edge.requests.series.rate(now, 5)),
            hit_ratio=_r(hits / looks if looks else 0.0),
            objects=len(edge.cache), fetches=edge.fetches, collapsed=edge.collapsed,
            trend=edge.requests.series.window(TREND, now, _trend_value),
        ))
    bal = world.balancer
    for i, node in enumerate(bal.nodes):
        if not node.up:
            state = "down"
        elif i == bal.active_node:
            state = "takeover" if now < bal.takeover_until else "active"
        else:
            state = "standby"
        out.append(BalancerNode(id=node.id, state=state,  # type: ignore[arg-type]
                                inflight=bal.inflight if i == bal.active_node else 0))
    regions = {f"{kind}-{r}": r for r in world.regions for kind in ("client", "edge")}
    bases = world.scenario.network.links
    for link in world.links.values():
        base = bases[link.name]
        degraded = (link.loss > 0 or link.latency > base.latency
                    or link.bandwidth != base.bandwidth)
        key = (link.name, regions.get(link.name, ""),
               "partitioned" if link.partitioned else "degraded" if degraded else "ok",
               link.latency, link.jitter, link.loss, link.bandwidth)
        lnode = _LINKS.get(key)
        if lnode is None:
            lnode = _remember(_LINKS, key, LinkNode(
                id=key[0], region=key[1], state=key[2],  # type: ignore[arg-type]
                latency=_r(link.latency), jitter=_r(link.jitter), loss=_r(link.loss),
                bandwidth=_r(link.bandwidth)))
        out.append(lnode)
    for host in world.cluster.hosts:
        hkey = (host.id, host.up, host.steal, len(host.vms), host.cores)
        hnode = _HOSTS.get(hkey)
        if hnode is None:
            hnode = _remember(_HOSTS, hkey, HostNode(
                id=host.id, state="up" if host.up else "down", steal=_r(host.steal),
                vms=len(host.vms), cores=host.cores))
        out.append(hnode)
    for vm in world.cluster.vms.values():
        out.append(VmNode(id=vm.id, state=vm.state, parent=vm.host.id,  # type: ignore[arg-type]
                          load=_r(vm.load), vcpus=vm.vcpus, containers=len(vm.containers)))
    total_share = sum(b.meter.series.rate(now, 5) for b in bal.backends.values())
    for c in sorted(world.cluster.containers.values(), key=lambda c: int(c.id.split("-")[1])):
        b = bal.backends.get(c.id)
        sent = b.meter.series.rate(now, 5) if b is not None else 0.0
        out.append(ContainerNode(
            id=c.id, state=container_state(world, c),  # type: ignore[arg-type]
            parent=c.vm.id if c.vm else "",
            busy=c.busy,
            workers=c.workers,
            queue=len(c.queue),
            queue_cap=c.qcap,
            cpu=_r(c.cpu_series.rate(now, 5)),
            memory_mb=_r(c.memory()),
            memory_limit_mb=_r(c.mem_limit),
            rps=_r(c.done_meter.series.rate(now, 5)),
            errors=_r(c.error_meter.series.rate(now, 5)),
            share=_r(sent / total_share if total_share else 0.0),
            restarts=c.restarts,
            active=b.active if b is not None else 0,
            ewma=_r(b.ewma if b is not None else 0.0),
            trend=c.done_meter.series.window(TREND, now, _trend_value),
        ))
    db = world.db
    if db is not None:
        for n in db.nodes.values():
            lag_lsn, lag_s = db.lag(n)
            out.append(DbNode(
                id=n.id, state=n.label(), role=n.role,  # type: ignore[arg-type]
                parent=db.leader if n.id != db.leader else "",
                lsn=n.lsn,
                applied=n.applied,
                lag_lsn=lag_lsn,
                lag_s=_r(lag_s),
                pool_busy=n.busy,
                pool_size=n.pool,
                queue=len(n.queue),
                ops=_r(n.ops.series.rate(now, 5)),
                reads=n.reads,
                writes=n.writes,
                stale_reads=n.stale_reads,
                timeline=n.timeline,
                disk=_r(n.disk),
                skew=_r(n.skew),
                apply_rate=_r(n.apply_rate),
                partition=n.partition,  # type: ignore[arg-type]
                trend=n.ops.series.window(TREND, now, _trend_value),
            ))
    return out


def database_info(world: World) -> DatabaseInfo | None:
    db = world.db
    if db is None:
        return None
    backups = world.backups
    assert backups is not None
    promo = db.last_promotion
    restore = backups.last_restore
    return DatabaseInfo(
        mode=db.mode,  # type: ignore[arg-type]
        degraded=db.degraded,
        sync_replicas=db.k,
        fencing=db.fencing,
        leader=db.leader,
        lease_s=_r(max(db.lease_expiry - world.kernel.now, 0.0)),
        acked_writes=db.acked,
        lost_writes=db.lost_writes,
        conflicts=db.conflicts,
        rewound=db.rewound,
        stale_reads=db.stale_reads,
        failovers=db.failovers,
        last_promotion=Promotion(
            node=str(promo["node"]), time=_r(float(promo["time"])),  # type: ignore[arg-type]
            lsn=int(promo["lsn"]), previous=str(promo["from"]),  # type: ignore[call-overload]
            leader_optime=int(promo.get("optime", 0)),  # type: ignore[call-overload]
            lost=int(promo.get("lost", 0)),  # type: ignore[call-overload]
        ) if promo else None,
        backups=backups.taken,
        last_backup=_r(backups.base[-1].time) if backups.taken else None,
        archive_lsn=backups.archive_lsn,
        restorable_from=_r(backups.window()[0]),
        archived_at=_r(backups.archived_at),
        restoring=db.restoring,
        last_restore=RestoreInfo(
            recovery_point=_r(restore["recovery_point"]),
            started=_r(restore["started"]),
            finished=None if restore.get("finished") is None else _r(restore["finished"]),
            rto=_r(restore["rto"]),
            rpo=_r(restore["rpo"]),
            base_backup=_r(restore["base_backup"]),
            restored=int(restore["restored"]),
            discarded=int(restore["discarded"]),
            target=None if restore.get("target") is None else _r(restore["target"]),
            window_start=_r(restore["window"][0]) if "window" in restore else 0.0,
        ) if restore else None,
    )


def build(engine: Engine, seq: int, events: tuple[Event, ...]) -> Snapshot:
    world = engine.world
    a = world.autoscaler
    bal = world.balancer
    now = world.kernel.now
    return Snapshot(
        time=_r(now),
        seq=seq,
        scenario=engine.scenario.run.name,
        seed=engine.seed,
        kpis=kpis(world, len(engine.faults), engine.still_recovering()),
        nodes=tuple(nodes(world)),
        events=events,
        faults=tuple(f.state() for f in engine.faults.values()),
        balancer=BalancerInfo(
            algorithm=bal.algorithm,
            active=bal.active_id(),
            retries=bal.retries,
            retry_budget=_r(bal.retry_budget),
            timeout=_r(bal.timeout),
            ejections=bal.ejection_count,
        ),
        autoscaler=AutoscalerInfo(
            enabled=a.enabled,
            replicas=world.cluster.replicas,
            ready=sum(1 for c in world.cluster.containers.values() if c.state == RUNNING),
            recommendation=a.recommendation,
            utilisation=_r(a.utilisation),
            target=_r(a.target),
            last_decision=a.last_decision,
        ),
        database=database_info(world),
        regions=tuple(
            RegionInfo(name=name, edge=world.edge_of(name).id, rate=_r(r.rate),
                       multiplier=_r(r.multiplier))
            for name, r in world.regions.items()
        ),
        series=KpiSeries(
            rps=world.arrivals.series.window(TREND, now, _trend_value),
            errors=world.errors_meter.series.window(TREND, now, _trend_value),
            p99=world.p99_series.window(TREND, now, _trend_value),
        ),
    )


def summary(engine: Engine) -> RunSummary:
    world = engine.world
    now = world.kernel.now
    h = world.recent.all_time()
    edges = world.edges.values()
    hits = sum(e.hits for e in edges)
    misses = sum(e.misses for e in edges)
    finished = world.completed + world.failed
    bal = world.balancer
    a = world.autoscaler
    return RunSummary(
        scenario=engine.scenario.run.name,
        seed=engine.seed,
        duration=_r(now),
        requests=RequestCounts(arrived=world.arrived, completed=world.completed,
                               failed=world.failed, in_flight=world.in_flight),
        rps=_r(world.arrived / now if now else 0.0),
        latency=LatencySummary(mean=_r(h.mean), p50=_r(h.quantile(0.5)),
                               p95=_r(h.quantile(0.95)), p99=_r(h.quantile(0.99))),
        mean_sojourn=_r(world.sojourn_total / finished if finished else 0.0),
        error_rate=_r(world.failed / finished if finished else 0.0),
        errors=dict(sorted(world.errors.items())),
        cdn=CdnSummary(
            hit_ratio=_r(hits / (hits + misses) if hits + misses else 0.0),
            hits=hits,
            misses=misses,
            collapsed=sum(e.collapsed for e in edges),
            origin_fetches=sum(e.fetches for e in edges),
        ),
        autoscaler=AutoscalerSummary(
            actions=a.scale_ups + a.scale_downs,
            scale_ups=a.scale_ups,
            scale_downs=a.scale_downs,
            replicas=world.cluster.replicas,
            max_replicas=a.max_replicas,
            vm_boots=world.cluster.vm_boots,
            vm_shutdowns=world.cluster.vm_shutdowns,
        ),
        balancer=BalancerSummary(
            algorithm=bal.algorithm,
            ejections=bal.ejection_count,
            health_changes=bal.health_changes,
            retries=bal.retried,
            timeouts=bal.timeouts,
            retries_denied_by_budget=bal.budget_denied,
        ),
        slo=SloSummary(
            target=world.slo.target,
            latency=_r(world.slo.latency),
            window=_r(world.slo.window),
            good_ratio=_r(world.slo.good_ratio),
            budget_remaining=_r(_budget(world.slo.burn(world.slo.bad, world.slo.total))),
            burn_rate=_r(world.slo.burn(world.slo.bad, world.slo.total)),
            window_good_ratio=_r(world.slo.window_good_ratio(now)),
            window_budget_remaining=_r(_budget(world.slo.window_burn(now))),
            window_burn_rate=_r(world.slo.window_burn(now)),
        ),
        database=database_info(world),
        faults=tuple(engine.fault_log),
        events=engine.event_count,
        lesson=engine.scenario.run.lesson,
        checks=engine.experiment.results() if engine.experiment is not None else (),
    )
