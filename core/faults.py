"""The fault catalogue: what can break, on which targets, with which parameters, and how it heals.

Each fault is one :class:`~core.commands.Action` of group ``fault``: its targets, typed
parameters, keys, an ``inject`` that calls verbs on the model (``edge.fail(now)``,
``link.set_delay(...)``) and returns the event's *why*, and, if reversible, a ``clear``. A new
kind of fault is one entry here; the engine, help, palette and keys pick it up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stackyard.core.commands import DURATION, Action, Key, Param
from stackyard.core.model.compute import Container, Host, Vm
from stackyard.core.model.database import DbNode
from stackyard.core.model.network import Edge, Link
from stackyard.core.model.world import World
from stackyard.core.protocol import FaultState, finite


class FaultError(ValueError):
    """A fault that cannot apply to its target as things stand (e.g. it is already down)."""


@dataclass
class ActiveFault:
    """A reversible fault in force; ``saved`` holds what ``clear`` restores."""

    id: str
    kind: str
    target: str
    params: dict[str, Any]
    since: float
    until: float | None
    saved: dict[str, Any] = field(default_factory=dict)

    def state(self) -> FaultState:
        return FaultState(id=self.id, kind=self.kind, target=self.target,
                          params={k: float(v) for k, v in self.params.items()},
                          since=finite(self.since),
                          until=None if self.until is None else finite(self.until))


# -- helpers ---------------------------------------------------------------------------------


def _container(w: World, target: str) -> Container:
    c = w.find("container", target)
    if not isinstance(c, Container):
        raise FaultError(f"no running container {target!r}")
    return c


def _link(w: World, target: str) -> Link:
    link = w.find("link", target)
    if not isinstance(link, Link):
        raise FaultError(f"no link {target!r}")
    return link


def _host(w: World, target: str) -> Host:
    host = w.find("host", target)
    if not isinstance(host, Host):
        raise FaultError(f"no host {target!r}")
    return host


def _db(w: World, target: str) -> DbNode:
    if w.db is None:
        raise FaultError("this scenario has no database tier")
    node = w.db.nodes.get(target) if target else w.db.leader_node()
    if node is None:
        raise FaultError(f"no database node {target!r}")
    return node


def _regions(w: World, target: str) -> list[Any]:
    return [w.regions[target]] if target else list(w.regions.values())


# -- the application tier --------------------------------------------------------------------


def _kill_container(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    c = _container(w, target)
    if c.state not in ("running", "starting", "draining"):
        raise FaultError(f"{target} has no process to kill (it is {c.state})")
    c.crash("killed", "killed by the user")
    return "its process was killed; the restart policy brings it back after a back-off"


def _kill_vm(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    vm = w.find("vm", target)
    assert isinstance(vm, Vm)
    if vm.state == "down":
        raise FaultError(f"{target} is already down")
    w.cluster.kill_vm(vm, "killed by the user")
    return "its containers are gone; the deployment reschedules them and the VM reboots"


def _kill_host(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    host = _host(w, target)
    if not host.up:
        raise FaultError(f"{target} is already down")
    w.cluster.kill_host(host, "killed by the user")
    return "every VM on it is down until it reboots; containers are rescheduled"


def _crash_loop(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    _container(w, target).start_crash_loop(float(p["after"]))
    return f"it exits {p['after']:g} s after each start; restarts back off"


def _crash_loop_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    c = w.cluster.containers.get(target)
    if c is not None:
        c.stop_crash_loop()


def _leak(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    c = _container(w, target)
    c.set_leak(float(p["rate"]))
    return f"memory grows {p['rate']:g} MB/s until the OOM killer fires at {c.mem_limit:g} MB"


def _leak_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    c = w.cluster.containers.get(target)
    if c is not None:
        c.stop_leak()


def _hog(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    c = _container(w, target)
    c.hog_cpu(float(p["cores"]))
    return f"a runaway thread burns {p['cores']:g} core(s) inside its {c.cpu:g}-core limit"


def _hog_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    c = w.cluster.containers.get(target)
    if c is not None:
        c.stop_hog()


def _neighbour(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    host = _host(w, target)
    host.set_steal(float(p["steal"]))
    return (f"another tenant steals {host.steal:.0%} of the CPU: every container on "
            f"{host.id} runs {host.slowdown:.1f}x slower")


def _neighbour_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    _host(w, target).set_steal(0.0)


# -- the network tier ------------------------------------------------------------------------


def _latency(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    link = _link(w, target)
    f.saved = {"latency": link.latency, "jitter": link.jitter}
    link.set_delay(float(p["latency"]), float(p["jitter"]))
    return f"every message on {target} now takes {link.latency * 1000:g} ms one way"


def _latency_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    _link(w, target).set_delay(f.saved["latency"], f.saved["jitter"])


def _loss(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    link = _link(w, target)
    f.saved = {"loss": link.loss}
    link.set_loss(float(p["loss"]))
    return f"{link.loss:.0%} of packets are lost; each loss costs a retransmission timeout"


def _loss_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    _link(w, target).set_loss(f.saved["loss"])


def _bandwidth(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    link = _link(w, target)
    f.saved = {"bandwidth": link.bandwidth}
    link.set_bandwidth(float(p["rate"]))
    return (f"{target} carries at most {p['rate']:g} messages/s; beyond that they queue and "
            "every hop across it waits")


def _bandwidth_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    _link(w, target).set_bandwidth(f.saved["bandwidth"])


PARTITIONABLE = ("container", "link", "edge", "db")


def _reachable(w: World, target: str) -> object:
    for kind in PARTITIONABLE:
        node = w.find(kind, target)
        if node is not None:
            return node
    raise FaultError(f"no node or link {target!r} (any more)")


def _partition(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    node = _reachable(w, target)
    w.cut(node)
    if isinstance(node, DbNode):
        return "cut off from the application, its peers and the lease store"
    return "nothing crosses the partition; connections time out"


def _partition_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    w.heal(_reachable(w, target))  # FaultError if it is gone (a container scaled in)


def _lb_fail(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    f.target = target or w.balancer.active_id()
    w.balancer.fail_node(f.target)
    return "the VIP moves to the standby if it is up"


def _lb_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    w.balancer.restore_node(f.target)


def _edge_down(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    edge = w.find("edge", target)
    assert isinstance(edge, Edge)
    w.fail_edge(edge)
    return f"its clients fail until DNS sends them elsewhere ({w.dns_failover:g} s)"


def _edge_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    edge = w.find("edge", target)
    assert isinstance(edge, Edge)
    w.recover_edge(edge)


def _purge(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    edges = [w.edges[target]] if target else list(w.edges.values())
    n = sum(e.purge() for e in edges)
    return f"{n} cached objects dropped: every request misses until the cache refills"


def _spike(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    for r in _regions(w, target):
        r.scale(float(p["factor"]))
    return f"arrivals x{p['factor']:g}" + (f" from {target}" if target else " in every region")


def _spike_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    for r in _regions(w, target):
        r.scale(1.0 / float(p["factor"]))


def _region_down(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    w.region_outage(target)
    edge = w.edge_of(target)
    return (f"{edge.id} and its uplink are gone; {target} clients fail until DNS fails them "
            f"over ({w.dns_failover:g} s), then pay cross-region latency")


def _region_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    w.region_recovers(target)


def _retry_storm(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    b = w.balancer
    f.saved = {"retries": b.retries, "budget": b.retry_budget, "timeout": b.timeout}
    b.set_retries(int(p["retries"]), float(p["budget"]),
                  float(p["timeout"]) if p["timeout"] > 0 else None)
    return (f"{b.retries} retries per request with a {b.retry_budget:g}x budget: "
            "failures multiply the load")


def _retry_storm_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    w.balancer.set_retries(f.saved["retries"], f.saved["budget"], f.saved["timeout"])


# -- the database tier -----------------------------------------------------------------------


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
    node.throttle(float(p["rate"]))
    return f"it applies only {node.apply_rate:g} log records/s: lag and stale reads grow"


def _replica_lag_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    node = _db(w, target)
    node.throttle(f.saved["rate"])
    assert w.db is not None
    w.db.kick_apply(node)


def _slow_disk(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    node = _db(w, target)
    node.set_disk(float(p["factor"]))
    return (f"reads and fsyncs take {node.disk:g}x longer; requests hold application workers "
            "meanwhile")


def _slow_disk_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    _db(w, target).set_disk(1.0)


def _skew(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> str:
    node = _db(w, target)
    node.set_skew(float(p["seconds"]))
    return (f"its clock runs {node.skew:g} s behind: its commit timestamps are off and, as a "
            "primary, it notices an expired lease late")


def _skew_clear(w: World, target: str, p: dict[str, Any], f: ActiveFault) -> None:
    _db(w, target).set_skew(0.0)


# -- what a reversible fault takes over ------------------------------------------------------


def _reach(w: World, target: str) -> frozenset[str]:
    # A link's id can also be an edge's (edge-eu): partitioning either cuts the same uplink.
    return frozenset({f"reach:{target}"})


def _edge_claim(w: World, target: str) -> frozenset[str]:
    return frozenset({f"edge:{target}"})


def _region_claim(w: World, target: str) -> frozenset[str]:
    edge = w.edge_of(target).id
    return frozenset({f"edge:{edge}", f"reach:{edge}"})


def _lb_claim(w: World, target: str) -> frozenset[str]:
    return frozenset({f"lb:{target or w.balancer.active_id()}"})


def _stacks(w: World, target: str) -> frozenset[str]:
    return frozenset()  # spikes multiply, so they stack and clear in any order


# -- the catalogue ---------------------------------------------------------------------------


# -- when a fault that heals on its own is over ----------------------------------------------


def _container_back(w: World, target: str) -> bool:
    c = w.cluster.containers.get(target)
    return c is None or c.state in ("running", "terminated")


def _vm_back(w: World, target: str) -> bool:
    vm = w.cluster.vms.get(target)
    return vm is None or vm.state in ("ready", "terminated")


def _host_back(w: World, target: str) -> bool:
    host = w.find("host", target)
    return not isinstance(host, Host) or (host.up and all(v.state == "ready" for v in host.vms))


def _db_back(w: World, target: str) -> bool:
    node = w.db.nodes.get(target) if w.db is not None else None
    return node is None or (node.up and not node.state)


def _fault(name: str, targets: tuple[Any, ...], description: str, inject: Any,
           clear: Any = None, params: tuple[Param, ...] = (), keys: tuple[Key, ...] = (),
           default: str = "", claims: Any = None, phrase: str = "",
           healed: Any = None) -> Action:
    if clear is not None:
        params = (*params, DURATION)
    return Action(name, "fault", description, inject, targets=targets,
                  target_optional=bool(default), params=params, keys=keys, clear=clear,
                  claims=claims, phrase=phrase, default_target=default, healed=healed)


FAULTS: dict[str, Action] = {
    a.name: a
    for a in (
        _fault("kill_container", ("container",), "kill a container's process",
               _kill_container, healed=_container_back,
               keys=(Key("d", "kill", "node"),)),
        _fault("kill_vm", ("vm",), "kill a VM and everything on it", _kill_vm,
               healed=_vm_back,
               keys=(Key("d", "kill", "node"),)),
        _fault("kill_host", ("host",), "power off a physical host", _kill_host,
               healed=_host_back,
               keys=(Key("d", "kill", "node"),)),
        _fault("crash_loop", ("container",), "the container exits soon after every start",
               _crash_loop, _crash_loop_clear,
               (Param("after", default=2.0, min=0.01, max=3600.0, unit="s",
                      help="seconds from start to exit"),),
               (Key("c", "crash", "node"),)),
        _fault("memory_leak", ("container",), "memory grows until the OOM killer fires",
               _leak, _leak_clear,
               (Param("rate", default=5.0, min=0.1, max=100_000.0, unit="MB/s",
                      presets=(20.0,), help="megabytes leaked per second"),),
               (Key("m", "leak", "node"),)),
        _fault("cpu_hog", ("container",), "a runaway thread burns CPU inside the container",
               _hog, _hog_clear,
               (Param("cores", default=1.0, min=0.0, max=1024.0, unit="cores",
                      presets=(0.5, 2.0)),),
               (Key("h", "hog", "node"),)),
        _fault("noisy_neighbour", ("host",), "another tenant steals CPU from the host",
               _neighbour, _neighbour_clear,
               (Param("steal", default=0.5, min=0.0, max=0.95, unit="fraction",
                      presets=(0.25, 0.75)),),
               (Key("n", "neighbour", "node"),)),
        _fault("link_latency", ("link",), "add latency and jitter to a link",
               _latency, _latency_clear,
               (Param("latency", default=0.2, min=0.0, max=60.0, unit="s",
                      presets=(0.05, 0.1, 0.5, 1.0), help="one-way delay"),
                Param("jitter", default=0.02, min=0.0, max=60.0, unit="s")),
               (Key("l", "latency", "node"),)),
        _fault("packet_loss", ("link",), "drop a fraction of packets on a link",
               _loss, _loss_clear,
               (Param("loss", default=0.05, min=0.0, max=1.0, unit="fraction",
                      presets=(0.01, 0.2, 0.5)),),
               (Key("o", "loss", "node"),)),
        _fault("bandwidth_cap", ("link",), "cap the messages per second a link carries",
               _bandwidth, _bandwidth_clear,
               (Param("rate", default=100.0, min=1.0, max=1_000_000.0, unit="msg/s",
                      presets=(20.0, 500.0, 2000.0), help="messages per second before queueing"),),
               (Key("w", "bandwidth", "node"),)),
        _fault("partition", PARTITIONABLE, "cut a container, edge, link or database node off",
               _partition, _partition_clear,
               keys=(Key("p", "partition", "node", kinds=("container", "link", "edge")),),
               claims=_reach),
        _fault("lb_failure", ("balancer",), "fail a balancer (default: the active one)",
               _lb_fail, _lb_clear, default="on the active balancer", claims=_lb_claim,
               keys=(Key("f", "fail", "node"), Key("F", "fail LB", "global"))),
        _fault("edge_outage", ("edge",), "take a CDN edge down", _edge_down, _edge_clear,
               keys=(Key("e", "outage", "node"),), claims=_edge_claim),
        _fault("cache_purge", ("edge",), "empty a CDN edge's cache (default: every edge)",
               _purge, default="everywhere", keys=(Key("P", "cdn purge", "global"),)),
        _fault("traffic_spike", ("region",), "multiply arrivals (default: every region)",
               _spike, _spike_clear,
               (Param("factor", default=3.0, min=1e-6, max=1000.0, unit="factor",
                      presets=(2.0, 5.0, 10.0), what="a multiplier > 0 and <= 1000"),),
               (Key("S", "spike", "global"),), default="everywhere", claims=_stacks),
        _fault("region_outage", ("region",), "a region's edge and uplink go dark",
               _region_down, _region_clear, keys=(Key("O", "region out", "global"),),
               claims=_region_claim),
        _fault("kill_db", ("db",), "kill a database node (default: the primary)", _kill_db,
               default="on the primary", healed=_db_back,
               keys=(Key("d", "kill", "node"), Key("D", "kill primary", "global"))),
        _fault("db_partition", ("db",), "cut a database node from its peers and the lease "
               "store (the application still reaches it)", _db_partition, _db_partition_clear,
               keys=(Key("p", "partition", "node"),), claims=_reach),
        _fault("replica_lag", ("db",), "throttle a replica's log apply rate",
               _replica_lag, _replica_lag_clear,
               (Param("rate", default=10.0, min=0.1, max=1_000_000.0, unit="records/s"),),
               (Key("r", "lag", "node"),)),
        _fault("slow_disk", ("db",), "make a database node's disk slow",
               _slow_disk, _slow_disk_clear,
               (Param("factor", default=50.0, min=1.0, max=1000.0, unit="factor",
                      presets=(10.0, 200.0)),),
               (Key("w", "slow disk", "node"),)),
        _fault("clock_skew", ("db",), "set a database node's clock behind",
               _skew, _skew_clear,
               (Param("seconds", default=30.0, min=0.0, max=86_400.0, unit="s",
                      presets=(5.0, 120.0)),),
               (Key("z", "skew", "node"),)),
        _fault("retry_storm", (), "aggressive retries with no budget",
               _retry_storm, _retry_storm_clear,
               (Param("retries", "integer", 3, min=0, max=10, what="a count between 0 and 10"),
                Param("budget", default=10.0, min=0.0, max=100.0,
                      what="a ratio between 0 and 100"),
                Param("timeout", default=0.0, min=0.0, max=600.0, unit="s",
                      help="per-attempt timeout (0: keep the balancer's)")),
               (Key("R", "retry storm", "global"),)),
    )
}
