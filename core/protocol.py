"""The one seam between the engine and any viewer: typed, immutable records.

Everything that crosses it — snapshots, events, commands, replies, the catalogue of commands, the
driver's status, SQL query results, the run summary — is a frozen :mod:`msgspec` Struct. msgspec
gives each record a JSON and a MessagePack encoding and a strict decoder that checks every field
against its type (closed sets of states and kinds included) in one pass of C code; a viewer fed
over MQTT or from a recording sees exactly what one fed in-process sees, and reads typed fields
(``snap.database.mode``), never agreed dict keys.

:func:`decode` turns a payload into a record or raises :class:`ProtocolError` with one line that
begins with the field's path (``snapshot.nodes[2].state: invalid value 'sideways'``). Unknown
fields are ignored, so an older viewer reads a newer engine's payloads.
"""

from __future__ import annotations

import math
import re
import typing
from typing import Any, ClassVar, Final, Literal, TypeVar

import msgspec

Severity = Literal["info", "warning", "error"]
Tier = Literal["network", "app", "database"]
NodeKind = Literal["edge", "balancer", "link", "host", "vm", "container", "db"]
TargetKind = Literal["edge", "balancer", "link", "host", "vm", "container", "db", "region",
                     "fault"]
"""What a command may target: a node of a kind, a client region, or an active fault's id."""
ActionGroup = Literal["fault", "control", "driver"]
ParamType = Literal["number", "integer", "bool", "choice"]
ReplicationMode = Literal["async", "semi_sync", "sync"]
Scalar = bool | int | float | str
"""A command parameter's value."""
Cell = int | float | str | None
"""One value of an SQL result row (blobs arrive as hex text)."""

REPLICATION_MODES: Final[tuple[ReplicationMode, ...]] = ("async", "semi_sync", "sync")
"""The replication modes in the order ``next`` steps through them."""

MAX_COMMAND_BYTES = 16 * 1024
"""A command payload larger than this is refused unread."""
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
"""Any other payload larger than this is refused unread."""
MAX_ERROR_CHARS = 240
"""Error lines are cut to this length, so a hostile value never floods a log."""


class ProtocolError(ValueError):
    """A payload that is not a valid record; the message is one line naming the field path."""


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every record: immutable, keyword-constructed, JSON- and MessagePack-encodable."""

    def to_json(self) -> bytes:
        return _JSON.encode(self)

    def to_builtins(self) -> Any:
        """Plain dicts, lists and scalars (for ``json.dumps`` or a template)."""
        return msgspec.to_builtins(self)

    def numbers(self) -> dict[str, float]:
        """Every int or float field by name (for charts and one-value-per-topic consumers)."""
        out: dict[str, float] = {}
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if type(value) in (int, float):
                out[name] = float(value)
        return out


# -- events, commands, replies ---------------------------------------------------------------


class Event(Record, frozen=True, kw_only=True):
    """A notable happening: what, where, how bad, and a short *why*."""

    time: float
    severity: Severity
    component: str
    kind: str
    message: str
    why: str = ""
    cause: str = ""
    """The id of the fault that led to it (``f3``): the fault itself, or the one its effect is
    traced back to; '' when none is known."""


class Command(Record, frozen=True, kw_only=False):
    """Something a user does. ``kind`` names it (an entry of the catalogue: a fault kind, a
    control such as ``set_algorithm``, or a driver control such as ``pause``); ``target`` is a
    node id, region or fault id where the entry takes one; ``params`` its parameters; ``at`` the
    simulated time it applies (None: as soon as the engine sees it). ``id`` is chosen by a
    remote client to match the reply; ``origin`` says where it came from (key, palette, file,
    remote:NAME) for logs and recordings."""

    kind: str
    target: str = ""
    params: dict[str, Scalar] = msgspec.field(default_factory=dict)
    at: float | None = None
    id: str = ""
    origin: str = ""


class Reply(Record, frozen=True, kw_only=True):
    """The outcome of a command: ``result`` (e.g. a fault id) when ``ok``, else ``error``."""

    ok: bool
    id: str = ""
    kind: str = ""
    result: str = ""
    error: str = ""
    query: QueryResult | None = None
    """What a ``query`` command (a read-only SQL query sent to a remote run) returned."""


# -- the catalogue ---------------------------------------------------------------------------


class ParamInfo(Record, frozen=True, kw_only=True):
    """One parameter of a catalogue entry, with its type, bounds and the values worth offering.

    Besides a plain value, a ``choice`` parameter accepts ``next`` / ``previous`` (step through
    ``choices``), an ``integer`` or a ``number`` with ``steps`` accepts them too (one step up or
    down), and a ``bool`` accepts ``toggle``: keys send these, the engine resolves them against
    the current setting."""

    name: str
    type: ParamType
    default: Scalar | None = None
    """None: the parameter is optional and has no fixed default (the engine decides)."""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    steps: tuple[float, ...] = ()
    """An ordered scale ``next`` / ``previous`` walk (e.g. the speeds)."""
    relative: bool = False
    """Accepts ``next`` / ``previous`` (or ``toggle`` for a bool)."""
    required: bool = False
    unit: str = ""
    """How to show a value: ``s`` (seconds), ``fraction`` (a percentage), ``factor`` (x3), ``x``
    (a speed: 2x), or a word appended to the number (``cores``, ``MB/s``)."""
    presets: tuple[Scalar, ...] = ()
    """Values the command palette offers besides the default."""
    help: str = ""


class KeyInfo(Record, frozen=True, kw_only=True):
    """A key that sends a catalogue entry. ``scope`` ``node``: the key acts on the selected node
    when the entry can target it; ``global``: the key acts without a selection (an optional
    target left empty, a region taken from the selection); ``selection``: the selected node if
    the entry can target it, else no target."""

    key: str
    label: str
    scope: Literal["node", "global", "selection"] = "global"
    params: dict[str, Scalar] = msgspec.field(default_factory=dict)
    kinds: tuple[TargetKind, ...] = ()
    """The node kinds the key acts on, when fewer than the action's targets (empty: all)."""
    footer: bool = False
    """Worth a place in a footer besides the keys of the selected node."""


class ActionInfo(Record, frozen=True, kw_only=True):
    """One kind of command a viewer may send: the catalogue is a tuple of these."""

    name: str
    group: ActionGroup
    description: str
    targets: tuple[TargetKind, ...] = ()
    """What it can target; empty: nothing (a global action)."""
    target_optional: bool = False
    params: tuple[ParamInfo, ...] = ()
    reversible: bool = False
    """A fault that stays active until cleared (undo can clear it); False for one that heals on
    its own, e.g. a killed container restarts."""
    keys: tuple[KeyInfo, ...] = ()
    phrase: str = ""
    """How the palette words it, with ``{param}`` and ``{target}`` placeholders."""
    default_target: str = ""
    """What an optional target left empty means, in words ("everywhere", "on the primary")."""

    def param(self, name: str) -> ParamInfo | None:
        return next((p for p in self.params if p.name == name), None)


# -- the driver and the SQL console ----------------------------------------------------------


class DriverStatus(Record, frozen=True, kw_only=True):
    """How the run is being driven, for a viewer's header."""

    paused: bool
    speed: float
    """The speed asked for (simulated seconds per wall second)."""
    achieved: float
    """The speed reached over the last couple of seconds (0 while paused)."""
    behind: bool
    """True when the CPU could not keep up with ``speed`` recently."""
    link: str = ""
    """For a remote run: how the link to it stands ('' for a local run)."""
    control: bool = True
    """Whether this viewer may send commands."""
    replay: bool = False
    """True when the snapshots come from a recording."""


class QueryResult(Record, frozen=True, kw_only=True):
    """What a read-only SQL query on a database node returned."""

    node: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    truncated: bool
    """More rows existed than the row limit."""
    elapsed: float


# -- nodes -----------------------------------------------------------------------------------


class NodeState(Record, tag_field="kind", frozen=True, kw_only=True):
    """One node as a viewer sees it: identity, state and its current figures. A tagged union on
    ``kind``: each kind is a subclass with typed fields and a closed set of states."""

    TIER: ClassVar[Tier] = "network"
    CAPACITY: ClassVar[frozenset[str]] = frozenset()
    """Fields that are capacities or settings: shown once, not charted."""

    id: str
    state: str
    """Subclasses narrow it to their own closed set of states."""
    parent: str = ""
    """The node it runs on or follows (a container's VM, a replica's primary)."""
    region: str = ""
    """The client region it serves, where it has one."""
    trend: tuple[float, ...] = ()
    """Its main rate per simulated second over the last half minute, oldest first."""

    @property
    def kind(self) -> NodeKind:
        tag: NodeKind = self.__struct_config__.tag  # type: ignore[assignment]
        return tag

    @property
    def tier(self) -> Tier:
        return self.TIER

    def metrics(self) -> dict[str, float]:
        """Every numeric field by name, for charts and one-value-per-topic consumers."""
        return self.numbers()

    @classmethod
    def states(cls) -> tuple[str, ...]:
        """The closed set of states a node of this kind can be in."""
        hint = typing.get_type_hints(cls).get("state")
        return tuple(str(a) for a in typing.get_args(hint))


class EdgeNode(NodeState, tag="edge", frozen=True, kw_only=True):
    """A CDN edge."""

    state: Literal["up", "down"]
    rps: float = 0.0
    hit_ratio: float = 0.0
    objects: int = 0
    fetches: int = 0
    collapsed: int = 0


class BalancerNode(NodeState, tag="balancer", frozen=True, kw_only=True):
    """One of the load-balancer pair."""

    state: Literal["active", "takeover", "standby", "down"]
    inflight: int = 0


class LinkNode(NodeState, tag="link", frozen=True, kw_only=True):
    """A network link between two hops."""

    CAPACITY: ClassVar[frozenset[str]] = frozenset({"bandwidth"})
    state: Literal["ok", "degraded", "partitioned"]
    latency: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    bandwidth: float = 0.0
    """Requests per second it carries before they queue (0 = unlimited)."""


class HostNode(NodeState, tag="host", frozen=True, kw_only=True):
    """A physical host."""

    TIER: ClassVar[Tier] = "app"
    CAPACITY: ClassVar[frozenset[str]] = frozenset({"cores"})
    state: Literal["up", "down"]
    steal: float = 0.0
    vms: int = 0
    cores: int = 0


class VmNode(NodeState, tag="vm", frozen=True, kw_only=True):
    """A virtual machine on a host."""

    TIER: ClassVar[Tier] = "app"
    CAPACITY: ClassVar[frozenset[str]] = frozenset({"vcpus"})
    state: Literal["booting", "ready", "down", "terminated"]
    load: float = 0.0
    vcpus: int = 0
    containers: int = 0


class ContainerNode(NodeState, tag="container", frozen=True, kw_only=True):
    """An application container (its state includes the balancer's verdict on it)."""

    TIER: ClassVar[Tier] = "app"
    CAPACITY: ClassVar[frozenset[str]] = frozenset({"workers", "queue_cap", "memory_limit_mb"})
    state: Literal["pending", "starting", "running", "draining", "backoff", "terminated",
                   "ejected", "unhealthy"]
    busy: int = 0
    workers: int = 0
    queue: int = 0
    queue_cap: int = 0
    cpu: float = 0.0
    memory_mb: float = 0.0
    memory_limit_mb: float = 0.0
    rps: float = 0.0
    errors: float = 0.0
    share: float = 0.0
    restarts: int = 0
    active: int = 0
    ewma: float = 0.0


class DbNode(NodeState, tag="db", frozen=True, kw_only=True):
    """A database node; ``parent`` is the primary it follows (empty on the primary)."""

    TIER: ClassVar[Tier] = "database"
    CAPACITY: ClassVar[frozenset[str]] = frozenset({"pool_size", "timeline"})
    state: Literal["primary", "replica", "promoting", "demoting", "rewinding", "fenced",
                   "restoring", "down"]
    role: Literal["primary", "replica"] = "replica"
    lsn: int = 0
    applied: int = 0
    lag_lsn: int = 0
    lag_s: float = 0.0
    pool_busy: int = 0
    pool_size: int = 0
    queue: int = 0
    ops: float = 0.0
    reads: int = 0
    writes: int = 0
    stale_reads: int = 0
    timeline: int = 1
    disk: float = 1.0
    skew: float = 0.0
    apply_rate: float = 0.0
    partition: Literal["", "cluster", "all"] = ""


AnyNode = EdgeNode | BalancerNode | LinkNode | HostNode | VmNode | ContainerNode | DbNode
NODE_TYPES: Final[tuple[type[NodeState], ...]] = (EdgeNode, BalancerNode, LinkNode, HostNode,
                                                  VmNode, ContainerNode, DbNode)


# -- the snapshot ----------------------------------------------------------------------------


class Kpis(Record, frozen=True, kw_only=True):
    """The run's headline figures (rates over the last few simulated seconds)."""

    rps: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    error_rate: float = 0.0
    slo_good: float = 1.0
    """Fraction of good requests over the SLO's rolling window (``slo_window`` seconds)."""
    slo_budget: float = 1.0
    """Share of the window's error budget left, 0..1 (0: spent)."""
    slo_burn: float = 0.0
    """How fast the window spends its budget: the error rate as a multiple of what the
    target allows (1: exactly sustainable; above 1 the budget runs out)."""
    slo_window: float = 300.0
    """Seconds of the rolling window."""
    cdn_hit_ratio: float = 0.0
    arrived: int = 0
    completed: int = 0
    failed: int = 0
    in_flight: int = 0
    active_faults: int = 0
    """Reversible faults in force (``Snapshot.faults``)."""
    recovering: int = 0
    """Faults that heal on their own (kills) whose target has not recovered yet: with
    ``active_faults``, the faults a user is living with."""


class FaultState(Record, frozen=True, kw_only=True):
    """An active fault: what, where, with what, since when and until when (None: cleared by
    hand)."""

    id: str
    kind: str
    target: str = ""
    params: dict[str, float] = msgspec.field(default_factory=dict)
    since: float = 0.0
    until: float | None = None


class BalancerInfo(Record, frozen=True, kw_only=True):
    algorithm: str
    active: str
    """The balancer node holding the VIP."""
    retries: int = 0
    retry_budget: float = 0.0
    timeout: float = 0.0
    ejections: int = 0


class AutoscalerInfo(Record, frozen=True, kw_only=True):
    enabled: bool
    replicas: int
    """Containers the deployment wants."""
    ready: int = 0
    recommendation: int = 0
    utilisation: float = 0.0
    target: float = 0.0
    last_decision: str = ""


class Promotion(Record, frozen=True, kw_only=True):
    """The last failover or switchover: who was promoted, from whom, at which LSN."""

    node: str
    time: float
    lsn: int
    previous: str
    """The former primary."""
    leader_optime: int = 0
    """The former primary's last LSN known to the lease store."""
    lost: int = 0


class RestoreInfo(Record, frozen=True, kw_only=True):
    """The last point-in-time restore and what it cost."""

    recovery_point: float
    started: float
    finished: float | None = None
    rto: float = 0.0
    rpo: float = 0.0
    base_backup: float = 0.0
    restored: int = 0
    discarded: int = 0
    target: float | None = None
    window_start: float = 0.0
    """The earliest time a restore could reach then (older base backups had expired)."""


class DatabaseInfo(Record, frozen=True, kw_only=True):
    mode: ReplicationMode
    degraded: bool = False
    """Semi-sync has fallen back to async until a replica catches up."""
    sync_replicas: int = 1
    fencing: bool = True
    leader: str = ""
    lease_s: float = 0.0
    acked_writes: int = 0
    lost_writes: int = 0
    conflicts: int = 0
    rewound: int = 0
    stale_reads: int = 0
    failovers: int = 0
    last_promotion: Promotion | None = None
    backups: int = 0
    last_backup: float | None = None
    """Simulated time of the last base backup (None before the first after the initial one)."""
    archive_lsn: int = 0
    archived_at: float = 0.0
    restorable_from: float = 0.0
    """The earliest time a point-in-time restore can reach now (backup retention)."""
    restoring: bool = False
    last_restore: RestoreInfo | None = None


class RegionInfo(Record, frozen=True, kw_only=True):
    name: str
    edge: str
    """The CDN edge that serves it."""
    rate: float = 0.0
    multiplier: float = 1.0


class KpiSeries(Record, frozen=True, kw_only=True):
    """Per-second KPI history over the last half minute (the last value is the second in
    progress)."""

    rps: tuple[float, ...] = ()
    errors: tuple[float, ...] = ()
    p99: tuple[float, ...] = ()


class Snapshot(Record, frozen=True, kw_only=True):
    """The whole visible state at one simulated instant."""

    time: float
    seq: int
    """Increases by one per snapshot: a viewer that sees a jump missed some."""
    scenario: str = ""
    seed: int = 0
    kpis: Kpis = msgspec.field(default_factory=Kpis)
    nodes: tuple[AnyNode, ...] = ()
    events: tuple[Event, ...] = ()
    """Events since the previous snapshot."""
    faults: tuple[FaultState, ...] = ()
    balancer: BalancerInfo | None = None
    autoscaler: AutoscalerInfo | None = None
    database: DatabaseInfo | None = None
    """None when the scenario has no database tier."""
    regions: tuple[RegionInfo, ...] = ()
    series: KpiSeries = msgspec.field(default_factory=KpiSeries)

    def node(self, node_id: str, kind: str = "") -> AnyNode:
        for n in self.nodes:
            if n.id == node_id and (not kind or n.kind == kind):
                return n
        raise KeyError(node_id)

    def find(self, node_id: str, kind: str = "") -> AnyNode | None:
        for n in self.nodes:
            if n.id == node_id and (not kind or n.kind == kind):
                return n
        return None

    def region(self, name: str) -> RegionInfo | None:
        return next((r for r in self.regions if r.name == name), None)


# -- the run summary -------------------------------------------------------------------------


class RequestCounts(Record, frozen=True, kw_only=True):
    arrived: int = 0
    completed: int = 0
    failed: int = 0
    in_flight: int = 0


class LatencySummary(Record, frozen=True, kw_only=True):
    mean: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0


class CdnSummary(Record, frozen=True, kw_only=True):
    hit_ratio: float = 0.0
    hits: int = 0
    misses: int = 0
    collapsed: int = 0
    origin_fetches: int = 0


class AutoscalerSummary(Record, frozen=True, kw_only=True):
    actions: int = 0
    scale_ups: int = 0
    scale_downs: int = 0
    replicas: int = 0
    max_replicas: int = 0
    vm_boots: int = 0
    vm_shutdowns: int = 0


class BalancerSummary(Record, frozen=True, kw_only=True):
    algorithm: str = ""
    ejections: int = 0
    health_changes: int = 0
    retries: int = 0
    timeouts: int = 0
    retries_denied_by_budget: int = 0


class SloSummary(Record, frozen=True, kw_only=True):
    """The SLO over the whole run and over its last rolling window."""

    target: float = 0.0
    latency: float = 0.0
    """A request is good when it succeeds within this many seconds."""
    window: float = 300.0
    good_ratio: float = 1.0
    """Over the whole run."""
    budget_remaining: float = 1.0
    """Share of the whole run's error budget left, 0..1 (0: spent; ``burn_rate`` says by how
    much)."""
    burn_rate: float = 0.0
    """The whole run's error rate as a multiple of what the target allows."""
    window_good_ratio: float = 1.0
    window_budget_remaining: float = 1.0
    window_burn_rate: float = 0.0
    """The same three figures over the last ``window`` seconds."""


class StorageSummary(Record, frozen=True, kw_only=True):
    rows_written: int = 0
    batches: int = 0
    backpressure_waits: int = 0
    peak_queue: int = 0
    data_dir: str | None = None


class Consistency(Record, frozen=True, kw_only=True):
    ok: bool
    problems: tuple[str, ...] = ()


CheckOver = Literal["run", "window", "before", "after", "continuously"]
"""Where a check is measured: the whole run, a window, before the first fault, after the last
fault, or every simulated second (of the run or of a window)."""
CheckUnit = Literal["s", "fraction", "count", "rps"]


class CheckCause(Record, frozen=True, kw_only=True):
    """What most likely made a check fail: a fault (``fault`` is its id) or, with no fault to
    blame, the scenario's traffic pattern (``fault`` is '')."""

    fault: str
    kind: str
    target: str = ""
    at: float = 0.0
    """When the fault was injected (or the pattern began)."""
    text: str = ""
    """In words: ``f2 link_latency on app-db at 60.0s``."""


class CheckResult(Record, frozen=True, kw_only=True):
    """One steady-state check of a run: what was expected, where, what was measured, and the
    verdict. ``value`` None means there was nothing to measure (no request finished in the
    window) or the metric never settled (a recovery that did not happen)."""

    name: str
    expect: str
    """The expression in canonical form: ``p99 < 300ms``."""
    metric: str
    op: Literal["<", "<=", ">", ">=", "=="]
    threshold: float
    unit: CheckUnit
    over: CheckOver
    start: float
    """The window measured, in simulated seconds."""
    end: float
    value: float | None
    passed: bool
    failed_at: float | None = None
    """The end of the first simulated second that broke the expectation."""
    cause: CheckCause | None = None
    note: str = ""


class RunSummary(Record, frozen=True, kw_only=True):
    """A run's figures, deterministic for a scenario, seed and command log."""

    scenario: str
    seed: int
    duration: float
    requests: RequestCounts
    rps: float
    latency: LatencySummary
    mean_sojourn: float
    error_rate: float
    errors: dict[str, int]
    cdn: CdnSummary
    autoscaler: AutoscalerSummary
    balancer: BalancerSummary
    slo: SloSummary
    database: DatabaseInfo | None = None
    faults: tuple[str, ...] = ()
    events: int = 0
    storage: StorageSummary | None = None
    consistency: Consistency | None = None
    lesson: str = ""
    """What the scenario teaches, in one line (built-ins have one)."""
    checks: tuple[CheckResult, ...] = ()
    """The scenario's steady-state checks, and any given on the command line."""

    @property
    def passed(self) -> bool:
        """Whether every check held (True when there are none)."""
        return all(c.passed for c in self.checks)


# -- encoding and strict decoding ------------------------------------------------------------

R = TypeVar("R", bound=Record)

_JSON = msgspec.json.Encoder()
_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}
_NAMES = {Snapshot: "snapshot", Event: "event", Command: "command", Reply: "reply",
          ActionInfo: "action", DriverStatus: "status", QueryResult: "result",
          RunSummary: "summary"}
_ENUM = re.compile(r"^(invalid (?:enum )?value )'(.*)'$", re.S)
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def encode(record: Any) -> bytes:
    """Compact JSON for any record, or tuple or list of records."""
    return _JSON.encode(record)


def name_of(cls: Any) -> str:
    """The word error messages use for records of ``cls`` (snapshot, command, ...)."""
    return _NAMES.get(cls) or getattr(cls, "__name__", "payload").lower()


def decode(cls: type[R] | Any, payload: str | bytes | bytearray | memoryview,
           *, limit: int | None = None) -> Any:
    """Parse ``payload`` (JSON text, or UTF-8 bytes as an MQTT message arrives) as ``cls``.

    Raises ProtocolError with one line ``<record>.<field path>: <what is wrong>`` for anything
    that is not a valid ``cls``: not JSON, a wrong type, a missing field, a value outside a
    closed set, a non-finite number, or a payload over ``limit`` bytes."""
    kind = name_of(cls)
    if not isinstance(payload, str | bytes | bytearray | memoryview):
        raise ProtocolError(f"{kind}: expected JSON as str or bytes, got {type(payload).__name__}")
    cap = limit if limit is not None else (MAX_COMMAND_BYTES if cls is Command
                                           else MAX_PAYLOAD_BYTES)
    size = len(payload.encode() if isinstance(payload, str) else payload)
    if size > cap:
        raise ProtocolError(f"{kind}: payload of {size} bytes is over the {cap}-byte limit")
    decoder = _DECODERS.get(cls)
    if decoder is None:
        decoder = _DECODERS[cls] = msgspec.json.Decoder(cls)
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise ProtocolError(_one_line(kind, str(exc))) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(_one_line(kind, f"not JSON ({exc})")) from None
    except (RecursionError, UnicodeError, ValueError) as exc:
        raise ProtocolError(_one_line(kind, f"not JSON ({exc})")) from None


def _one_line(kind: str, text: str) -> str:
    """msgspec's ``Expected `int`, got `str` - at `$.seq``` as ``snapshot.seq: expected int,
    got str``, on one line and cut short."""
    m = _AT.match(text.strip())
    msg, path = (m.group("msg"), m.group("path") or "") if m else (text, "")
    msg = msg.replace("`", "")
    msg = msg[:1].lower() + msg[1:]
    msg = msg.replace("object missing required field ", "missing field ")
    msg = _ENUM.sub(lambda m: f"{m.group(1)}{show(m.group(2))}", msg)
    line = " ".join(f"{kind}{path}: {msg}".split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


def show(value: object, width: int = 60) -> str:
    """``repr(value)`` cut short enough to keep an error message on one line."""
    text = repr(value)
    return text if len(text) <= width else f"{text[: width - 3]}..."


def finite(x: float, digits: int = 6) -> float:
    """``x`` rounded, with NaN as 0 and infinities as +-1e12: JSON has no non-finite numbers."""
    x = float(x)
    if math.isfinite(x):
        return round(x, digits)
    return 0.0 if x != x else math.copysign(1e12, x)
