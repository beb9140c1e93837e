"""The fault catalogue: what can break, on which targets, with which parameters, and how it heals.

Each fault kind has a target type, parameters with defaults, an ``inject`` and (if reversible) a
``clear``. The engine turns Commands into :class:`ActiveFault` records and schedules their end.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stackyard.core.model.compute import TERMINATED
from stackyard.core.model.database import DbNode
from stackyard.core.model.world import World


class FaultError(ValueError):
    """A fault command that cannot apply: unknown kind, bad target or bad parameter."""


@dataclass
class ActiveFault:
    id: str
    kind: str
    target: str
    params: dict[str, Any]
    since: float
    until: float | None
    saved: dict[str, Any] = field(default_factory=dict)
    """What ``clear`` restores (e.g. a link's original latency)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "params": dict(self.params),
            "since": self.since,
            "until": self.until,
        }


Inject = Callable[[World, str, dict[str, Any], ActiveFault], str]
"""Returns the event's *why* text."""
Clear = Callable[[World, str, dict[str, Any], ActiveFault], None]


@dataclass(frozen=True)
class FaultKind:
    name: str
    target: str
    """container, vm, host, link, edge, balancer, region, db, node (any of those) or none; a
    trailing ? makes the target optional."""
    description: str
    params: dict[str, float]
    inject: Inject
    clear: Clear | None = None
    """None: instantaneous (the system heals on its own, e.g. a killed container restarts)."""


# -- targets ---------------------------------------------------------------------------------

_PATTERNS = {
    "container": (re.compile(r"^app-\d+$"), "a container id such as app-1"),
    "vm": (re.compile(r"^vm-\d+$"), "a VM id such as vm-1"),
}


def target_problem(world: World | None, kind: FaultKind, target: str, strict: bool) -> str | None:
    """Why ``target`` does not fit ``kind`` (None if it does). Containers and VMs come and go, so
    outside ``strict`` mode only their id pattern is checked."""
    t = kind.target
    if t == "none":
        return None if not target else f"expected no target for {kind.name}, got {target!r}"
    optional = t.endswith("?")
    t = t.rstrip("?")
    if not target:
        return None if optional else f"expected {_describe(world, t)}, got nothing"
    if world is None:
        return None
    ok: bool
    if t in _PATTERNS:
        pattern, _ = _PATTERNS[t]
        ok = bool(pattern.match(target))
        if ok and strict:
            ok = _lookup(world, t, target) is not None
    else:
        ok = _lookup(world, t, target) is not None
    return None if ok else f"expected {_describe(world, t)}, got {target!r}"


def _describe(world: World | None, t: str) -> str:
    if t in _PATTERNS:
        return _PATTERNS[t][1]
    if world is None:
        return f"a {t}"
    names = {
        "host": [h.id for h in world.cluster.hosts],
        "link": list(world.links),
        "edge": list(world.edges),
        "balancer": ["lb-1", "lb-2"],
        "region": list(world.regions),
        "db": list(world.db.nodes) if world.db is not None else [],
        "node": ["a container, edge, link or database node id"],
    }.get(t, [])
    return f"one of {', '.join(names)}" if names else f"a {t}"


def _lookup(world: World, t: str, target: str) -> object | None:
    if t == "container":
        c = world.cluster.containers.get(target)
        return c if c is not None and c.state != TERMINATED else None
    if t == "vm":
        return world.cluster.vms.get(target)
    if t == "host":
        return next((h for h in world.cluster.hosts if h.id == target), None)
    if t == "link":
        return world.links.get(target)
    if t == "edge":
        return world.edges.get(target)
    if t == "balancer":
        return target if target in ("lb-1", "lb-2") else None
    if t == "region":
        return world.regions.get(target)
    if t == "db":
        return world.db.nodes.get(target) if world.db is not None else None
    if t == "node":
        for sub in ("container", "link", "edge", "db"):
            found = _lookup(world, sub, target)
            if found is not None:
                return found
    return None


# -- the faults ------------------------------------------------------------------------------


def _container(w: World, target: str) -> Any:
    c = _lookup(w, "container", target)
    if c is None:
        raise FaultError(f"no running container {target!r}")
    return c


def _kill_container(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    c = _container(w, target)
    if c.state not in ("running", "starting", "draining"):
        raise FaultError(f"{target} has no process to kill (it is {c.state})")
    c.crash("killed", "killed by the user")
    return "its process was killed; the restart policy brings it back after a back-off"


def _kill_vm(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    vm = w.cluster.vms[target]
    if vm.state == "down":
        raise FaultError(f"{target} is already down")
    w.cluster.kill_vm(vm, "killed by the user")
    return "its containers are gone; the deployment reschedules them and the VM reboots"


def _kill_host(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    host = next(h for h in w.cluster.hosts if h.id == target)
    if not host.up:
        raise FaultError(f"{target} is already down")
    w.cluster.kill_host(host, "killed by the user")
    return "every VM on it is down until it reboots; containers are rescheduled"


def _crash_loop(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    c = _container(w, target)
    c.crash_loop = True
    c.crash_after = float(p["after"])
    c.crash("crash", "a bad release: the process exits right after start")
    return f"it exits {p['after']:g} s after each start; restarts back off"


def _crash_loop_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    c = w.cluster.containers.get(target)
    if c is not None:
        c.crash_loop = False


def _leak(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    c = _container(w, target)
    c.set_leak(float(p["rate"]))
    return f"memory grows {p['rate']:g} MB/s until the OOM killer fires at {c.mem_limit:g} MB"


def _leak_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    c = w.cluster.containers.get(target)
    if c is not None:
        c.set_leak(0.0)
        c.leaked = 0.0


def _hog(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    c = _container(w, target)
    c.hog_fault = float(p["cores"])
    c.set_hog(c.hog_fault if c.state in ("running", "draining") else 0.0)
    return f"a runaway thread burns {p['cores']:g} core(s) inside its {c.cpu:g}-core limit"


def _hog_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    c = w.cluster.containers.get(target)
    if c is not None:
        c.hog_fault = 0.0
        c.set_hog(0.0)


def _neighbour(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    host = next(h for h in w.cluster.hosts if h.id == target)
    host.set_steal(float(p["steal"]))
    return (f"another tenant steals {host.steal:.0%} of the CPU: every container on "
            f"{host.id} runs {host.slowdown:.1f}x slower")


def _neighbour_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    next(h for h in w.cluster.hosts if h.id == target).set_steal(0.0)


def _latency(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    link = w.links[target]
    f.saved = {"latency": link.latency, "jitter": link.jitter}
    link.latency = float(p["latency"])
    link.jitter = float(p["jitter"])
    return f"every message on {target} now takes {link.latency * 1000:g} ms one way"


def _latency_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    link = w.links[target]
    link.latency = f.saved["latency"]
    link.jitter = f.saved["jitter"]


def _loss(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    link = w.links[target]
    f.saved = {"loss": link.loss}
    link.loss = float(p["loss"])
    return f"{link.loss:.0%} of packets are lost; each loss costs a retransmission timeout"


def _loss_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    w.links[target].loss = f.saved["loss"]


def _partition(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    node = _lookup(w, "node", target)
    if node is None:
        raise FaultError(f"no node or link {target!r} to partition")
    if isinstance(node, DbNode):
        assert w.failover is not None
        w.failover.set_partition(node, "all")
        return "cut off from the application, its peers and the lease store"
    if hasattr(node, "partitioned"):
        node.partitioned = True
    w.balancer.invalidate()
    return "nothing crosses the partition; connections time out"


def _partition_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    node = _lookup(w, "node", target)
    if isinstance(node, DbNode):
        assert w.failover is not None
        w.failover.set_partition(node, "")
        return
    if node is not None and hasattr(node, "partitioned"):
        node.partitioned = False
    w.balancer.invalidate()


def _lb_fail(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    node = target or w.balancer.active_id()
    f.target = node
    w.balancer.fail_node(node)
    return "the VIP moves to the standby if it is up"


def _lb_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    w.balancer.restore_node(f.target)


def _edge_down(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    edge = w.edges[target]
    edge.up = False
    edge.down_since = w.kernel.now
    return f"its clients fail until DNS sends them elsewhere ({w.dns_failover:g} s)"


def _edge_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    w.edges[target].up = True


def _purge(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    edges = [w.edges[target]] if target else list(w.edges.values())
    n = sum(e.purge() for e in edges)
    return f"{n} cached objects dropped: every request misses until the cache refills"


def _spike(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    regions = [w.regions[target]] if target else list(w.regions.values())
    for r in regions:
        r.multiplier *= float(p["factor"])
        r.reschedule()
    return f"arrivals x{p['factor']:g}" + (f" from {target}" if target else " in every region")


def _spike_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    regions = [w.regions[target]] if target else list(w.regions.values())
    for r in regions:
        r.multiplier /= float(p["factor"])
        r.reschedule()


def _region_down(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    edge = w.edges[f"edge-{target}"]
    edge.up = False
    edge.down_since = w.kernel.now
    w.edge_links[target].partitioned = True
    return (f"{edge.id} and its uplink are gone; {target} clients fail until DNS fails them "
            f"over ({w.dns_failover:g} s), then pay cross-region latency")


def _region_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    w.edges[f"edge-{target}"].up = True
    w.edge_links[target].partitioned = False


def _retry_storm(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    b = w.balancer
    f.saved = {"retries": b.retries, "budget": b.retry_budget, "timeout": b.timeout}
    b.retries = int(p["retries"])
    b.retry_budget = float(p["budget"])
    if p["timeout"] > 0:
        b.timeout = float(p["timeout"])
    return (f"{b.retries} retries per request with a {b.retry_budget:g}x budget: "
            "failures multiply the load")


def _retry_storm_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    b = w.balancer
    b.retries = f.saved["retries"]
    b.retry_budget = f.saved["budget"]
    b.timeout = f.saved["timeout"]


def _db(w: World, target: str) -> DbNode:
    if w.db is None:
        raise FaultError("this scenario has no database tier")
    node = w.db.nodes.get(target) if target else w.db.leader_node()
    if node is None:
        raise FaultError(f"no database node {target!r}")
    return node


def _kill_db(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    node = _db(w, target)
    if not node.up:
        raise FaultError(f"{node.id} is already down")
    f.target = node.id
    assert w.failover is not None
    was = node.role
    w.failover.kill(node)
    if was == "primary":
        return (f"writes fail until the lease expires (up to {w.failover.cfg.ttl:g} s) and a "
                "replica is promoted")
    return "reads move to the other replicas"


def _db_partition(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    node = _db(w, target)
    assert w.failover is not None and w.db is not None
    w.failover.set_partition(node, "cluster")
    if node.role == "primary":
        return ("it cannot renew its lease or ship its log; "
                + ("it demotes itself when the lease runs out" if w.db.fencing else
                   "with fencing off it keeps taking writes: split brain ahead"))
    return "it stops receiving the log: its lag grows until the partition heals"


def _db_partition_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    assert w.failover is not None
    w.failover.set_partition(_db(w, target), "")


def _replica_lag(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    node = _db(w, target)
    f.saved = {"rate": node.apply_rate}
    node.apply_rate = max(float(p["rate"]), 0.1)
    return f"it applies only {node.apply_rate:g} log records/s: lag and stale reads grow"


def _replica_lag_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    node = _db(w, target)
    node.apply_rate = f.saved["rate"]
    assert w.db is not None
    w.db.kick_apply(node)


def _slow_disk(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    node = _db(w, target)
    node.disk = max(float(p["factor"]), 1.0)
    return (f"reads and fsyncs take {node.disk:g}x longer; requests hold application workers "
            "meanwhile")


def _slow_disk_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    _db(w, target).disk = 1.0


def _skew(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    node = _db(w, target)
    node.skew = float(p["seconds"])
    return (f"its clock runs {node.skew:g} s behind: its commit timestamps are off and, as a "
            "primary, it notices an expired lease late")


def _skew_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    _db(w, target).skew = 0.0


CATALOGUE: dict[str, FaultKind] = {
    k.name: k
    for k in (
        FaultKind("kill_container", "container", "kill a container's process", {}, _kill_container),
        FaultKind("kill_vm", "vm", "kill a VM and everything on it", {}, _kill_vm),
        FaultKind("kill_host", "host", "power off a physical host", {}, _kill_host),
        FaultKind("crash_loop", "container", "the container exits soon after every start",
                  {"after": 2.0}, _crash_loop, _crash_loop_clear),
        FaultKind("memory_leak", "container", "memory grows until the OOM killer fires",
                  {"rate": 5.0}, _leak, _leak_clear),
        FaultKind("cpu_hog", "container", "a runaway thread burns CPU inside the container",
                  {"cores": 1.0}, _hog, _hog_clear),
        FaultKind("noisy_neighbour", "host", "another tenant steals CPU from the host",
                  {"steal": 0.5}, _neighbour, _neighbour_clear),
        FaultKind("link_latency", "link", "add latency and jitter to a link",
                  {"latency": 0.2, "jitter": 0.02}, _latency, _latency_clear),
        FaultKind("packet_loss", "link", "drop a fraction of packets on a link",
                  {"loss": 0.05}, _loss, _loss_clear),
        FaultKind("partition", "node", "cut a container, edge, link or database node off", {},
                  _partition, _partition_clear),
        FaultKind("lb_failure", "balancer?", "fail a balancer (default: the active one)", {},
                  _lb_fail, _lb_clear),
        FaultKind("edge_outage", "edge", "take a CDN edge down", {}, _edge_down, _edge_clear),
        FaultKind("cache_purge", "edge?", "empty a CDN edge's cache (default: every edge)", {},
                  _purge),
        FaultKind("traffic_spike", "region?", "multiply arrivals (default: every region)",
                  {"factor": 3.0}, _spike, _spike_clear),
        FaultKind("region_outage", "region", "a region's edge and uplink go dark", {},
                  _region_down, _region_clear),
        FaultKind("kill_db", "db?", "kill a database node (default: the primary)", {},
                  _kill_db),
        FaultKind("db_partition", "db", "cut a database node from its peers and the lease "
                  "store (the application still reaches it)", {}, _db_partition,
                  _db_partition_clear),
        FaultKind("replica_lag", "db", "throttle a replica's log apply rate",
                  {"rate": 10.0}, _replica_lag, _replica_lag_clear),
        FaultKind("slow_disk", "db", "make a database node's disk slow",
                  {"factor": 50.0}, _slow_disk, _slow_disk_clear),
        FaultKind("clock_skew", "db", "set a database node's clock behind",
                  {"seconds": 30.0}, _skew, _skew_clear),
        FaultKind("retry_storm", "none", "aggressive retries with no budget",
                  {"retries": 3.0, "budget": 10.0, "timeout": 0.0}, _retry_storm,
                  _retry_storm_clear),
    )
}


LIMITS: dict[str, tuple[float, float, str]] = {
    "factor": (1e-6, 1000.0, "a multiplier > 0 and <= 1000"),
    "rate": (0.1, 1e6, "a rate between 0.1 and 1000000 per second"),
    "loss": (0.0, 1.0, "a fraction between 0 and 1"),
    "steal": (0.0, 0.95, "a fraction between 0 and 0.95"),
    "retries": (0.0, 10.0, "a count between 0 and 10"),
    "budget": (0.0, 100.0, "a ratio between 0 and 100"),
    "cores": (0.0, 1024.0, "a number of cores between 0 and 1024"),
}
"""Bounds of parameters whose range is narrower than any finite number >= 0."""
MAX_PARAM = 1e6


def resolve_params(kind: FaultKind, given: dict[str, Any]) -> dict[str, Any]:
    """The kind's defaults overlaid with ``given``; unknown, non-numeric, non-finite or
    out-of-range values raise."""
    params: dict[str, Any] = dict(kind.params)
    for key, value in given.items():
        if key not in kind.params:
            known = ", ".join(kind.params) or "none"
            raise FaultError(f"{kind.name}: unknown parameter {key!r} (parameters: {known})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FaultError(f"{kind.name}.{key}: expected a number, got {value!r}")
        lo, hi, what = LIMITS.get(key, (0.0, MAX_PARAM, f"a number between 0 and {MAX_PARAM:g}"))
        if not math.isfinite(value) or not lo <= value <= hi:
            raise FaultError(f"{kind.name}.{key}: expected {what}, got {value!r}")
        params[key] = float(value)
    return params


def claims(kind: str, target: str, world: World) -> set[str]:
    """What a reversible fault takes over; two active faults may not claim the same thing,
    since each restores what it replaced when it clears."""
    if kind == "traffic_spike":
        return set()  # spikes multiply, so they stack and clear in any order
    if kind == "edge_outage":
        return {f"edge:{target}"}
    if kind in ("partition", "db_partition"):
        return {f"reach:{target}"}  # an edge's id is also its uplink's: one key covers both
    if kind == "region_outage":
        return {f"edge:edge-{target}", f"reach:edge-{target}"}
    if kind == "lb_failure":
        return {f"lb:{target or world.balancer.active_id()}"}
    return {f"{kind}:{target}"}
