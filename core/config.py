"""The scenario schema: frozen dataclasses with the defaults of DESIGN.md §3.

Every field is something a scenario file may set. Field metadata drives validation in
:mod:`core.scenario`: ``unit="duration"`` fields accept seconds or strings like ``"200ms"``,
``"45s"``, ``"10m"``; ``min``/``max`` bound numbers; ``Literal`` types list the choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from stackyard.core.protocol import CheckOver

ALGORITHMS = (
    "round_robin",
    "weighted_round_robin",
    "least_connections",
    "random",
    "power_of_two",
    "consistent_hash",
    "peak_ewma",
)
Algorithm = Literal[
    "round_robin",
    "weighted_round_robin",
    "least_connections",
    "random",
    "power_of_two",
    "consistent_hash",
    "peak_ewma",
]
PatternKind = Literal["constant", "ramp", "diurnal", "spike"]
ArrivalKind = Literal["poisson", "batch", "mmpp"]
DistributionKind = Literal["exponential", "deterministic", "lognormal", "gamma", "pareto"]
ENDPOINTS = ("static", "read", "write")


MAX_DURATION = 366 * 86400.0
"""The longest duration any field takes (a year): long enough for any experiment, short enough
that arithmetic on it never overflows."""
MAX_NUMBER = 1e9
"""The largest value a number field takes unless it says otherwise."""
MAX_RATE = 100_000.0
"""Total arrivals per second a scenario may ask for at its peak (rate x pattern x scheduled
spikes); the engine simulates roughly 25,000 requests per CPU second."""
MAX_FAULTS = 1000
"""Faults one scenario file may schedule (and actions, and rollbacks)."""
MAX_CHECKS = 100
"""Steady-state checks one scenario may carry."""


def dur(default: float, *, min: float = 0.0, max: float = MAX_DURATION) -> Any:
    """A duration field (seconds; files may write ``"250ms"``, ``"30s"``, ``"10m"``, ``"1h"``)."""
    return field(default=default, metadata={"unit": "duration", "min": min, "max": max})


def num(default: float | int, *, min: float | None = None, max: float = MAX_NUMBER) -> Any:
    """A bounded number field."""
    return field(default=default, metadata={"min": min, "max": max})


def text(default: str, *, max_len: int = 100) -> Any:
    """A string field of at most ``max_len`` characters."""
    return field(default=default, metadata={"max_len": max_len})


# A table (dict) or array field may say ``max_len`` (entries); a table of numbers may also say
# ``min`` and ``max`` for its entries.


@dataclass(frozen=True)
class RunConfig:
    name: str = text("custom")
    description: str = text("", max_len=1000)
    duration: float = dur(600.0, min=0.001)
    seed: int = num(1, min=-(2**63), max=2**63 - 1)
    snapshot_interval: float = dur(0.25, min=0.01)
    lesson: str = text("", max_len=300)
    """What the scenario teaches, in one line (shown by ``stackyard scenarios`` and ``run``)."""


@dataclass(frozen=True)
class PatternConfig:
    """A rate multiplier over time: ``constant`` 1; ``ramp`` from 1 to ``factor`` over
    [start, start+length]; ``diurnal`` 1 + amplitude*sin(2*pi*t/period); ``spike`` ``factor``
    during [start, start+length]."""

    kind: PatternKind = "constant"
    start: float = dur(0.0)
    length: float = dur(60.0)
    factor: float = num(2.0, min=0.0, max=1000.0)
    amplitude: float = num(0.5, min=0.0, max=1.0)
    period: float = dur(600.0, min=1.0)


@dataclass(frozen=True)
class ArrivalConfig:
    """How a region's requests arrive around its mean rate: ``poisson`` (independent);
    ``batch``, groups of requests at the same instant (geometric sizes, mean ``batch``);
    ``mmpp``, a two-state Markov-modulated Poisson process that spends ``burst_share`` of the
    time in bursts of mean length ``burst_length`` at ``burst_factor`` times the quiet rate.
    Either way the long-run mean rate is the region's ``rate`` x its pattern."""

    kind: ArrivalKind = "poisson"
    batch: float = num(4.0, min=1.0, max=1000.0)
    burst_factor: float = num(5.0, min=1.0, max=100.0)
    burst_share: float = num(0.1, min=0.001, max=0.9)
    burst_length: float = dur(5.0, min=0.01, max=86_400.0)


@dataclass(frozen=True)
class RegionConfig:
    rate: float = num(200.0, min=0.0, max=MAX_RATE)
    """Requests per second at multiplier 1."""
    pattern: PatternConfig = field(default_factory=PatternConfig)
    arrivals: ArrivalConfig = field(default_factory=ArrivalConfig)


@dataclass(frozen=True)
class MixConfig:
    """Endpoint mix: fractions of requests; they are normalised to sum to 1."""

    static: float = num(0.5, min=0.0, max=1e6)
    read: float = num(0.35, min=0.0, max=1e6)
    write: float = num(0.15, min=0.0, max=1e6)


def _default_regions() -> dict[str, RegionConfig]:
    return {"eu": RegionConfig(rate=200.0), "us": RegionConfig(rate=200.0)}


@dataclass(frozen=True)
class TrafficConfig:
    regions: dict[str, RegionConfig] = field(
        default_factory=_default_regions, metadata={"max_len": 16})
    mix: MixConfig = field(default_factory=MixConfig)
    keys: int = num(10_000, min=1, max=1_000_000)
    """Distinct objects/items; popularity follows Zipf(zipf_s)."""
    zipf_s: float = num(1.0, min=0.0, max=5.0)
    sticky_clients: int = num(5_000, min=1, max=10_000_000)
    """Distinct client ids (consistent hashing keys on the client)."""


@dataclass(frozen=True)
class LinkConfig:
    latency: float = dur(0.005)
    jitter: float = dur(0.001)
    loss: float = num(0.0, min=0.0, max=1.0)
    """Packet loss probability; a lost packet costs a TCP retransmission timeout."""
    bandwidth: float = num(0.0, min=0.0, max=1e7)
    """Messages per second the link carries before queueing (0 = unlimited); see Link.delay."""


def _default_links() -> dict[str, LinkConfig]:
    return {
        "client-eu": LinkConfig(latency=0.015, jitter=0.003),
        "client-us": LinkConfig(latency=0.020, jitter=0.004),
        "edge-eu": LinkConfig(latency=0.010, jitter=0.002),
        "edge-us": LinkConfig(latency=0.045, jitter=0.004),
        "lb-app": LinkConfig(latency=0.0005, jitter=0.0001),
        "app-db": LinkConfig(latency=0.0005, jitter=0.0001),
        "db-repl": LinkConfig(latency=0.0005, jitter=0.0001),
    }


@dataclass(frozen=True)
class NetworkConfig:
    links: dict[str, LinkConfig] = field(
        default_factory=_default_links, metadata={"max_len": 64})
    """``client-<region>`` (client to its edge), ``edge-<region>`` (edge to the balancer),
    ``lb-app`` (balancer to containers), ``app-db`` (containers to the database), ``db-repl``
    (between database nodes: replication and the leader lease)."""
    rto: float = dur(0.2, min=0.001)
    """TCP retransmission timeout paid per lost packet (doubles per consecutive loss)."""
    connect_timeout: float = dur(1.0, min=0.001)
    """How long a connection attempt across a partition waits before it fails."""


@dataclass(frozen=True)
class CdnConfig:
    enabled: bool = True
    capacity: int = num(2_000, min=0, max=1_000_000)
    """Objects each edge can hold (LRU)."""
    ttl: float = dur(300.0, min=0.0)
    collapse: bool = True
    """Concurrent misses on one key share one origin fetch."""
    stale_if_error: bool = False
    hit_latency: float = dur(0.001)
    dns_failover: float = dur(30.0)
    """How long clients of a region keep trying a dead edge before DNS sends them elsewhere."""


@dataclass(frozen=True)
class HealthConfig:
    interval: float = dur(2.0, min=0.01)
    fall: int = num(3, min=1, max=10_000)
    rise: int = num(2, min=1, max=10_000)
    timeout: float = dur(1.0, min=0.001)


@dataclass(frozen=True)
class EjectionConfig:
    enabled: bool = True
    consecutive_5xx: int = num(5, min=1, max=10_000)
    base_time: float = dur(30.0)
    max_percent: float = num(0.10, min=0.0, max=1.0)


@dataclass(frozen=True)
class BalancerConfig:
    algorithm: Algorithm = "round_robin"
    vip_takeover: float = dur(3.0)
    timeout: float = dur(2.0)
    """Per-attempt timeout (0 = none)."""
    retries: int = num(1, min=0, max=10)
    retry_budget: float = num(0.2, min=0.0, max=10.0)
    """Retries in flight may be at most this fraction of requests in flight."""
    retry_backoff: float = dur(0.025)
    health: HealthConfig = field(default_factory=HealthConfig)
    ejection: EjectionConfig = field(default_factory=EjectionConfig)
    slow_start: float = dur(30.0)
    drain_timeout: float = dur(30.0)
    ewma_decay: float = dur(10.0, min=0.001)
    hash_replicas: int = num(64, min=1, max=1000)
    weights: dict[str, float] = field(
        default_factory=dict, metadata={"max_len": 1000, "min": 0.0, "max": 1e6})
    """weighted_round_robin: weight per VM name (containers inherit); default 1."""


@dataclass(frozen=True)
class HostConfig:
    count: int = num(4, min=1, max=1000)
    cores: int = num(16, min=1, max=1024)
    memory_gb: float = num(64.0, min=0.1, max=65_536.0)
    reboot: float = dur(180.0)


@dataclass(frozen=True)
class VmConfig:
    vcpus: int = num(4, min=1, max=1024)
    memory_gb: float = num(16.0, min=0.1, max=65_536.0)
    boot: float = dur(45.0)
    initial: int = num(2, min=0, max=1000)
    min: int = num(1, min=0, max=1000)
    max: int = num(16, min=1, max=1000)
    idle_shutdown: float = dur(300.0)


@dataclass(frozen=True)
class ContainerConfig:
    cpu: float = num(1.0, min=0.01, max=1024.0)
    """CPU limit in cores (also the HPA's utilisation denominator)."""
    memory_mb: float = num(512.0, min=1.0, max=1_048_576.0)
    base_memory_mb: float = num(200.0, min=0.0, max=1_048_576.0)
    memory_per_request_mb: float = num(4.0, min=0.0, max=1_048_576.0)
    workers: int = num(8, min=1, max=1000)
    queue: int = num(64, min=0, max=100_000)
    start: float = dur(3.0)
    backoff_initial: float = dur(10.0)
    backoff_max: float = dur(300.0)


@dataclass(frozen=True)
class DistributionConfig:
    """The shape of an endpoint's CPU demand around its mean."""

    kind: DistributionKind = "exponential"
    cv: float = num(1.0, min=0.05, max=10.0)
    """lognormal, gamma: coefficient of variation (standard deviation / mean)."""
    alpha: float = num(1.5, min=0.5, max=5.0)
    """pareto: tail index; the smaller, the heavier the tail."""
    max_ratio: float = num(1000.0, min=2.0, max=100_000.0)
    """pareto: the largest demand, as a multiple of the mean (a bounded Pareto)."""


@dataclass(frozen=True)
class ServiceConfig:
    """Mean CPU demand per endpoint; exponentially distributed unless ``distribution`` gives
    the endpoint another shape."""

    static: float = dur(0.002)
    read: float = dur(0.008)
    write: float = dur(0.012)
    distribution: dict[str, DistributionConfig] = field(default_factory=dict)
    """Per endpoint (static, read, write): its distribution; endpoints left out are
    exponential."""


@dataclass(frozen=True)
class AutoscalerConfig:
    enabled: bool = True
    initial: int = num(4, min=0, max=1000)
    min: int = num(2, min=0, max=1000)
    max: int = num(40, min=1, max=1000)
    target: float = num(0.6, min=0.01, max=1.0)
    tolerance: float = num(0.1, min=0.0, max=1.0)
    period: float = dur(15.0, min=0.1)
    stabilization: float = dur(300.0)
    max_up_percent: float = num(1.0, min=0.0, max=100.0)
    max_up_pods: int = num(4, min=0, max=1000)


@dataclass(frozen=True)
class AppConfig:
    hosts: HostConfig = field(default_factory=HostConfig)
    vm: VmConfig = field(default_factory=VmConfig)
    container: ContainerConfig = field(default_factory=ContainerConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    autoscaler: AutoscalerConfig = field(default_factory=AutoscalerConfig)


Replication = Literal["async", "sync", "semi_sync"]


@dataclass(frozen=True)
class FailoverConfig:
    """Patroni-like leader election."""

    ttl: float = dur(30.0, min=0.1)
    """Leader lease: without a renewal for this long, the replicas may take over."""
    loop_wait: float = dur(10.0, min=0.1)
    maximum_lag_on_failover: int = num(1000, min=0)
    """A replica further behind than this many LSNs is never promoted."""
    fencing: bool = True
    """A primary that cannot renew its lease demotes itself (off: split brain is possible)."""
    promote_time: float = dur(2.0)
    restart: float = dur(60.0)
    """How long a killed database node takes to come back."""


@dataclass(frozen=True)
class BackupConfig:
    interval: float = dur(300.0, min=1.0)
    """A full base backup this often."""
    archive_interval: float = dur(10.0, min=0.1)
    """The log archive is shipped this often (the PITR recovery point lags by up to this)."""
    restore_base: float = dur(20.0)
    """Fixed time to lay down a base backup."""
    replay_rate: float = num(5000.0, min=1.0, max=1e7)
    """Archived log records replayed per second during a restore."""
    retention: int = num(2, min=1, max=100)
    """Base backups kept (the empty database at 0 s counts while it is among them); the
    archive keeps the log from the oldest one on, so earlier points are no longer restorable."""


@dataclass(frozen=True)
class DatabaseConfig:
    """A primary and replicas; every node's data is real, in SQLite."""

    enabled: bool = True
    replicas: int = num(2, min=0, max=8)
    pool: int = num(20, min=1, max=10_000)
    """Connections per node: queries beyond this queue."""
    read: float = dur(0.002)
    """Mean query time of a read (exponential), before disk slowness."""
    write: float = dur(0.001)
    """Mean CPU time of a write, before its commit's fsync."""
    fsync: float = dur(0.002)
    """Disk flush latency paid by every commit (and by replicas confirming)."""
    apply_rate: float = num(2000.0, min=0.1, max=1e7)
    """Log records per second a replica applies."""
    wal_keep: int = num(100_000, min=100, max=10_000_000)
    """Log records a node keeps for replicas that have not applied them yet (PostgreSQL's
    max_slot_wal_keep_size); a replica further behind is re-cloned from the primary."""
    replication: Replication = "async"
    sync_replicas: int = num(1, min=1, max=8)
    """sync / semi_sync: a write is acknowledged after this many replicas confirm it."""
    semi_sync_timeout: float = dur(10.0, min=0.001)
    reads_from: Literal["replicas", "primary"] = "replicas"
    read_your_writes: bool = True
    """A client's read goes to the primary while replicas lag behind its own last write."""
    timeout: float = dur(5.0)
    """The application's statement timeout: it gives up on a query after this (0 = never)."""
    failover: FailoverConfig = field(default_factory=FailoverConfig)
    backup: BackupConfig = field(default_factory=BackupConfig)


@dataclass(frozen=True)
class SloConfig:
    target: float = num(0.999, min=0.0, max=1.0)
    """Fraction of requests that must be good (succeeded within ``latency``)."""
    latency: float = dur(1.0, min=0.0)
    window: float = dur(300.0, min=1.0, max=30 * 86400.0)
    """The rolling window the error budget and its burn rate are judged over."""


@dataclass(frozen=True)
class FaultSpec:
    """A fault a scenario schedules: inject ``kind`` on ``target`` at ``at`` for ``duration``."""

    kind: str = text("")
    at: float = dur(0.0)
    target: str = text("")
    duration: float = dur(0.0)
    """0 = until cleared."""
    params: dict[str, float | str | bool] = field(
        default_factory=dict, metadata={"max_len": 16})


@dataclass(frozen=True)
class ActionSpec:
    """A control a scenario schedules (``restore``, ``set_algorithm``, ``backup``...): like a
    fault, but something an operator does."""

    kind: str = text("")
    at: float = dur(0.0)
    target: str = text("")
    params: dict[str, float | str | bool] = field(
        default_factory=dict, metadata={"max_len": 16})


@dataclass(frozen=True)
class RollbackSpec:
    """Clear the active faults that match ``kind`` and ``target`` ('' matches any) at ``at``."""

    at: float = dur(0.0)
    kind: str = text("")
    target: str = text("")


@dataclass(frozen=True)
class CheckSpec:
    """A steady-state check: ``expect`` (``"p99 < 300ms"``) must hold ``over`` part of the run."""

    expect: str = text("", max_len=200)
    name: str = text("")
    """What tables and reports call it ('' = the expression)."""
    over: CheckOver = "run"
    start: float = dur(0.0)
    """``window`` and ``continuously``: where the window starts."""
    end: float = dur(0.0)
    """``window`` and ``continuously``: where it ends (0 = the end of the run)."""
    grace: float = dur(0.0)
    """``after``: seconds after the last fault before measuring starts."""


@dataclass(frozen=True)
class Scenario:
    run: RunConfig = field(default_factory=RunConfig)
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    cdn: CdnConfig = field(default_factory=CdnConfig)
    balancer: BalancerConfig = field(default_factory=BalancerConfig)
    app: AppConfig = field(default_factory=AppConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    slo: SloConfig = field(default_factory=SloConfig)
    faults: list[FaultSpec] = field(default_factory=list, metadata={"max_len": MAX_FAULTS})
    actions: list[ActionSpec] = field(default_factory=list, metadata={"max_len": MAX_FAULTS})
    rollbacks: list[RollbackSpec] = field(default_factory=list,
                                          metadata={"max_len": MAX_FAULTS})
    checks: list[CheckSpec] = field(default_factory=list, metadata={"max_len": MAX_CHECKS})


class ScenarioError(Exception):
    """A scenario that cannot be used. Each problem is one line ``key.path: what is wrong``;
    ``lines()`` prefixes them with the source (a file path or a built-in's name)."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        prefix = f"{self.source}: " if self.source else ""
        return [prefix + p for p in self.problems]
