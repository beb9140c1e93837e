"""What each figure means and how it is written: labels, units and one-line meanings.

Used by the detail screen (chart labels and values with units) and the help screen (a legend
per pane), so a number on screen always says what it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stackyard.tui.format import count, ms, pct, rate


def _mb(x: float) -> str:
    return f"{count(x)} MB"


def _factor(x: float) -> str:
    return f"{x:g}x"


def _seconds(x: float) -> str:
    return ms(x)


@dataclass(frozen=True)
class Field:
    label: str
    meaning: str
    show: Callable[[float], str] = count


FIELDS: dict[str, Field] = {
    "rps": Field("req/s", "requests answered per second", lambda x: f"{rate(x)}/s"),
    "hit_ratio": Field("cache hits", "share of requests answered from the cache", pct),
    "objects": Field("cached", "objects in the cache", count),
    "fetches": Field("origin fetches", "misses fetched from the origin (total)", count),
    "collapsed": Field("collapsed", "misses that waited on another's fetch (total)", count),
    "inflight": Field("in flight", "requests inside the balancer now", count),
    "latency": Field("latency", "one-way delay", _seconds),
    "jitter": Field("jitter", "random extra delay, up to", _seconds),
    "loss": Field("loss", "share of packets lost", pct),
    "bandwidth": Field("bandwidth", "messages per second before queueing (0: unlimited)",
                       lambda x: f"{rate(x)}/s" if x else "unlimited"),
    "steal": Field("steal", "CPU taken by another tenant", pct),
    "vms": Field("VMs", "virtual machines on the host", count),
    "cores": Field("cores", "physical cores", count),
    "load": Field("load", "busy vCPUs (above vcpus: oversubscribed)", lambda x: f"{x:.2f}"),
    "vcpus": Field("vCPUs", "virtual CPUs", count),
    "containers": Field("containers", "containers on the VM", count),
    "busy": Field("busy workers", "worker slots serving a request", count),
    "workers": Field("workers", "worker slots", count),
    "queue": Field("queued", "requests waiting for a worker or connection", count),
    "queue_cap": Field("queue cap", "queued requests beyond this get a 503", count),
    "cpu": Field("cpu", "CPU used, of its limit", pct),
    "memory_mb": Field("memory", "memory in use", _mb),
    "memory_limit_mb": Field("memory limit", "the OOM killer fires above this", _mb),
    "errors": Field("errors/s", "failed requests per second", lambda x: f"{rate(x)}/s"),
    "share": Field("share", "share of the balancer's traffic it gets", pct),
    "restarts": Field("restarts", "restarts since it last ran steadily", count),
    "active": Field("open", "requests the balancer has open on it", count),
    "ewma": Field("ewma", "the balancer's latency estimate (peak EWMA)", _seconds),
    "lsn": Field("lsn", "log records (writes) received", count),
    "applied": Field("applied", "log records applied (what its reads see)", count),
    "lag_lsn": Field("lag (writes)", "writes the primary has that it has not applied", count),
    "lag_s": Field("lag", "how far behind the primary its data is", _seconds),
    "pool_busy": Field("busy conns", "connections running a query", count),
    "pool_size": Field("pool", "connections; queries beyond wait", count),
    "ops": Field("queries/s", "reads and writes per second", lambda x: f"{rate(x)}/s"),
    "reads": Field("reads", "reads served (total)", count),
    "writes": Field("writes", "writes committed (total)", count),
    "stale_reads": Field("stale reads", "reads that missed a newer write (total)", count),
    "timeline": Field("timeline", "bumps at each promotion", count),
    "disk": Field("disk", "slowness of its disk (1x: normal)", _factor),
    "skew": Field("clock skew", "how far its clock runs behind", _seconds),
    "apply_rate": Field("apply rate", "log records it can apply per second",
                        lambda x: f"{rate(x)}/s"),
}


def field(name: str) -> Field:
    return FIELDS.get(name) or Field(name.replace("_", " "), "", count)


HEADER = [
    ("▶ / ⏸", "running or paused, the simulated clock and the speed (got: achieved)"),
    ("req/s", "requests arriving per second (last 5 s)"),
    ("p50 p95 p99", "latency percentiles of requests completed in the last 10 s"),
    ("err", "share of requests that failed (last 5 s)"),
    ("slo N%", "share of the error budget left over the SLO's rolling window"),
    ("burn Nx", "how fast that budget burns: 1x lasts the window exactly, 10x spends it in a "
                "tenth of it"),
    ("faults N", "faults in force: active ones plus kills not yet recovered"),
]
"""The header's figures."""

PANES = {
    "Network": [
        ("edge", "CDN edge: req/s answered; hit = share from its cache; bar = hit ratio"),
        ("lb", "balancer pair: active holds the VIP; req = requests in flight"),
        ("link", "one-way latency (± jitter), loss when any; cut off = partitioned"),
        ("summary", "active balancer and algorithm; cdn hits, ejections, per-try timeout"),
    ],
    "Application": [
        ("app-N", "container: req/s it answered; bar = busy workers of its slots"),
        ("vm-N", "VM: cpu = load of its vCPUs; booting = cold start, capacity not yet there"),
        ("host-N", "physical host: its VMs; steal = CPU taken by a noisy neighbour"),
        ("summary", "ready/wanted replicas, the autoscaler's recommendation and CPU use, "
                    "and its last decision"),
    ],
    "Database": [
        ("db-N", "primary: lsn = writes in its log; replica: lag behind the primary"),
        ("bar", "busy connections of its pool"),
        ("summary", "replication mode, primary, fencing; writes lost on failover, stale "
                    "reads, split-brain conflicts, rewound writes; backups, failovers, the "
                    "last restore's RPO and RTO"),
    ],
}
"""What each pane's lines mean."""

STATES = [
    ("● ◐ ✖", "fine, in transition, failed"),
    ("!", "a fault is active on this node"),
    ("gone / cut off", "terminated / partitioned"),
]
