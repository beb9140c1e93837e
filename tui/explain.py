"""A node's state in plain words, one line: what it is, how it is doing, what that means.

Pure functions of the typed records (no widgets): the main screen shows the line for the
selected node, the detail screen under the node's name.
"""

from __future__ import annotations

from stackyard.core.protocol import (
    AnyNode,
    BalancerNode,
    ContainerNode,
    DbNode,
    EdgeNode,
    HostNode,
    LinkNode,
    Snapshot,
    VmNode,
)
from stackyard.tui.format import count, ms, pct, plural, rate

SMALL_LAG = 0.1
"""Replication lag (seconds) below which a replica counts as keeping up."""


def explain(node: AnyNode, snap: Snapshot | None = None) -> str:
    """``node``'s state in plain words (``snap`` adds context such as the primary's id)."""
    if isinstance(node, EdgeNode):
        return _edge(node)
    if isinstance(node, BalancerNode):
        return _balancer(node)
    if isinstance(node, LinkNode):
        return _link(node)
    if isinstance(node, HostNode):
        return _host(node)
    if isinstance(node, VmNode):
        return _vm(node)
    if isinstance(node, ContainerNode):
        return _container(node)
    return _db(node, snap)


def _edge(n: EdgeNode) -> str:
    if n.state == "down":
        return (f"CDN edge of the {n.region} region, down: its clients fail until DNS sends "
                "them to another edge")
    return (f"CDN edge of the {n.region} region: {rate(n.rps)} req/s, {pct(n.hit_ratio)} "
            "answered from its cache; misses go on to the balancer")


def _balancer(n: BalancerNode) -> str:
    return {
        "active": f"active load balancer: holds the VIP, {plural(n.inflight, 'request')} in "
                  "flight through it",
        "takeover": "load balancer taking over the VIP: new connections wait a moment",
        "standby": "standby load balancer: takes over the VIP if the active one fails",
        "down": "load balancer down: the other one must hold the VIP",
    }.get(n.state, f"load balancer, {n.state}")


def _link(n: LinkNode) -> str:
    if n.state == "partitioned":
        return f"link {n.id} cut: nothing crosses it, so connections across it time out"
    text = f"link {n.id}: {ms(n.latency)} ±{ms(n.jitter)} one way"
    if n.loss:
        text += f", {pct(n.loss)} of packets lost (each costs a retransmission timeout)"
    if n.bandwidth:
        text += f", at most {rate(n.bandwidth)} messages/s before they queue"
    return text + (" (degraded by a fault)" if n.state == "degraded" else "")


def _host(n: HostNode) -> str:
    if n.state == "down":
        return "physical host, down: its VMs are down until it reboots"
    text = f"physical host with {n.cores} cores running {plural(n.vms, 'vm')}"
    if n.steal:
        text += (f"; a noisy neighbour steals {pct(n.steal)} of its CPU, so everything on it "
                 "runs slower")
    return text


def _vm(n: VmNode) -> str:
    if n.state == "booting":
        return (f"VM booting on {n.parent}: its capacity arrives only when the boot finishes "
                "(cold start)")
    if n.state in ("down", "terminated"):
        return f"VM on {n.parent}, {n.state}: its containers were rescheduled elsewhere"
    vcpus = n.vcpus or 1
    return (f"VM on {n.parent}: {plural(n.containers, 'container')}, load {n.load:.1f} of "
            f"{vcpus} vCPUs ({pct(n.load / vcpus)})" +
            ("; oversubscribed, so its containers run slower" if n.load > vcpus else ""))


def _container(n: ContainerNode) -> str:
    where = f" on {n.parent}" if n.parent else ""
    if n.state == "running":
        queue = f", {count(n.queue)} queued" if n.queue else ""
        return (f"app container{where}: {rate(n.rps)} req/s ({pct(n.share)} of traffic), "
                f"{n.busy}/{n.workers} workers busy{queue}")
    return {
        "pending": "container waiting for a VM with room: it starts once one is ready",
        "starting": f"container starting{where}: it takes traffic once it passes readiness",
        "draining": f"container draining{where}: it finishes its requests, then stops",
        "backoff": (f"container crashed{where}: it restarts after a back-off "
                    f"({plural(n.restarts, 'restart')} so far)"),
        "terminated": "container gone",
        "ejected": (f"container{where} ejected by the balancer after consecutive errors: no "
                    "traffic until its ejection ends"),
        "unhealthy": (f"container{where} failing its health checks: the balancer sends it "
                      "nothing until they pass again"),
    }.get(n.state, f"container, {n.state}")


def _db(n: DbNode, snap: Snapshot | None) -> str:
    primary = n.parent or (snap.database.leader if snap is not None and snap.database else "")
    if n.state == "down":
        return f"database node, down ({n.role}): it restarts and rejoins by itself"
    if n.state == "fenced":
        return ("old primary that could not renew its lease: it demoted itself and refuses "
                "writes (fencing prevents split brain)")
    if n.state in ("promoting", "demoting", "rewinding", "restoring"):
        return {
            "promoting": "replica being promoted: it opens for writes once promotion finishes",
            "demoting": "primary handing over (switchover): it stops taking writes",
            "rewinding": "old primary rewinding its divergent writes before it follows the "
                         "new primary",
            "restoring": "restoring from a backup: the database is unavailable meanwhile",
        }[n.state]
    if n.role == "primary":
        return (f"primary: takes every write (at lsn {count(n.lsn)}); the replicas copy its "
                "log" + (f"; its disk is {n.disk:g}x slower" if n.disk > 1 else ""))
    primary = primary or "the primary"
    if n.lag_s >= SMALL_LAG:
        return (f"replica, {ms(n.lag_s)} ({plural(n.lag_lsn, 'write')}) behind {primary}: "
                "reads here may be stale")
    if n.lag_lsn:
        return (f"replica, {ms(n.lag_s)} behind {primary} (the usual replication delay): "
                "reads here are all but current")
    return f"replica, in step with {primary}: reads here are current"
