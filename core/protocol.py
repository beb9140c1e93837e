"""The one seam between the engine and any viewer: Snapshot, Event, Command.

All three are immutable and JSON-serialisable (``to_dict`` / ``from_dict`` round-trip exactly),
so a viewer fed over MQTT or from a recording sees the same thing as one fed in-process.

``from_dict`` and ``from_json`` check every field and raise :class:`ProtocolError` with a
one-line message that starts with the field's path (``snapshot.nodes[2]: node.tier: ...``).
Optional fields may be missing or null; either way they take their default. Unknown keys are
ignored so older viewers can read newer payloads.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NoReturn, TypeGuard

Severity = Literal["info", "warning", "error"]
Tier = Literal["network", "app", "database"]
Json = Any

_SEVERITIES = ("info", "warning", "error")
_TIERS = ("network", "app", "database")


class ProtocolError(ValueError):
    """A payload that is not a valid Snapshot, Event or Command."""


def _show(value: object) -> str:
    """``repr(value)`` cut short enough to keep an error message on one line."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _fail(path: str, expected: str, value: object) -> NoReturn:
    raise ProtocolError(f"{path}: expected {expected}, got {_show(value)}")


def _require(data: Json, kind: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ProtocolError(f"{kind}: expected a JSON object, got {type(data).__name__}")
    for key in keys:
        if key not in data:
            raise ProtocolError(f"{kind}: missing field {key!r}")
    return data


def _loads(text: str | bytes, kind: str) -> Json:
    """Parse JSON text, or UTF-8/16/32 bytes as an MQTT payload arrives, for ``kind``."""
    if not isinstance(text, str | bytes | bytearray):
        raise ProtocolError(f"{kind}: expected JSON as str or bytes, got {type(text).__name__}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"{kind}: not JSON ({exc.msg} at char {exc.pos})") from exc
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{kind}: not JSON (not {exc.encoding} at byte {exc.start})") from exc
    except (ValueError, RecursionError) as exc:  # an over-long integer; nesting too deep
        raise ProtocolError(f"{kind}: not JSON ({exc})") from exc


def _is_number(value: object) -> TypeGuard[int | float]:
    """An int or float but not a bool; the exact types JSON gives are checked first, cheaply."""
    cls = type(value)
    return cls is float or cls is int or (isinstance(value, int | float) and cls is not bool)


def _str(value: object, path: str) -> str:
    if not isinstance(value, str):
        _fail(path, "a string", value)
    return value


def _time(value: object, path: str) -> float:
    """A finite number of simulated seconds, as a float."""
    if _is_number(value) and math.isfinite(value):
        return float(value)
    _fail(path, "a finite number", value)


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{key!r}]"


def _object(value: object, path: str) -> dict[str, Any]:
    """A copy of a JSON object with string keys; its values are not checked."""
    if not isinstance(value, dict):
        _fail(path, "an object", value)
    for key in value:
        if not isinstance(key, str):
            _fail(path, "string keys", key)
    return dict(value)


def _numbers(value: object, path: str) -> dict[str, float]:
    """A copy of a JSON object of numbers (non-finite ones allowed: figures can be inf)."""
    if not isinstance(value, dict):
        _fail(path, "an object of numbers", value)
    for key, number in value.items():
        if not isinstance(key, str):
            _fail(path, "string keys", key)
        if not _is_number(number):
            _fail(_key(path, key), "a number", number)
    return dict(value)


def _array(value: object, path: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        _fail(path, "an array", value)
    return value


@dataclass(frozen=True)
class Event:
    """A notable happening: what, where, how bad, and a short *why*."""

    time: float
    severity: Severity
    component: str
    kind: str
    message: str
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Json) -> Event:
        d = _require(data, "event", ("time", "severity", "component", "kind", "message"))
        time = _time(d["time"], "event.time")
        severity = d["severity"]
        if severity not in _SEVERITIES:
            _fail("event.severity", "info, warning or error", severity)
        why = d.get("why")
        return cls(
            time=time,
            severity=severity,
            component=_str(d["component"], "event.component"),
            kind=_str(d["kind"], "event.kind"),
            message=_str(d["message"], "event.message"),
            why="" if why is None else _str(why, "event.why"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        """Parse JSON text or an MQTT payload (UTF-8 bytes)."""
        return cls.from_dict(_loads(text, "event"))


@dataclass(frozen=True)
class Command:
    """Something a user does. ``kind`` names it (a fault kind, ``clear``, ``set_algorithm``...);
    ``target`` is a node id where one applies; ``params`` its parameters; ``at`` the simulated
    time it applies (None = as soon as the engine sees it)."""

    kind: str
    target: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "params": dict(self.params),
            "at": self.at,
        }

    @classmethod
    def from_dict(cls, data: Json) -> Command:
        d = _require(data, "command", ("kind",))
        kind = d["kind"]
        if not isinstance(kind, str) or not kind:
            _fail("command.kind", "a non-empty string", kind)
        target = d.get("target")
        params = d.get("params")
        at = d.get("at")
        return cls(
            kind=kind,
            target="" if target is None else _str(target, "command.target"),
            params={} if params is None else _object(params, "command.params"),
            at=None if at is None else _time(at, "command.at"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Command:
        """Parse JSON text or an MQTT payload (UTF-8 bytes)."""
        return cls.from_dict(_loads(text, "command"))


@dataclass(frozen=True)
class NodeState:
    """One node as a viewer sees it: identity, state, and its current figures."""

    id: str
    tier: Tier
    kind: str
    state: str
    parent: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tier": self.tier,
            "kind": self.kind,
            "state": self.state,
            "parent": self.parent,
            "metrics": dict(self.metrics),
            "info": dict(self.info),
        }

    @classmethod
    def from_dict(cls, data: Json) -> NodeState:
        d = _require(data, "node", ("id", "tier", "kind", "state"))
        tier = d["tier"]
        if tier not in _TIERS:
            _fail("node.tier", "one of network, app, database", tier)
        parent = d.get("parent")
        metrics = d.get("metrics")
        info = d.get("info")
        return cls(
            id=_str(d["id"], "node.id"),
            tier=tier,
            kind=_str(d["kind"], "node.kind"),
            state=_str(d["state"], "node.state"),
            parent="" if parent is None else _str(parent, "node.parent"),
            metrics={} if metrics is None else _numbers(metrics, "node.metrics"),
            info={} if info is None else _object(info, "node.info"),
        )


@dataclass(frozen=True)
class Snapshot:
    """The whole visible state at one simulated instant."""

    time: float
    seq: int
    kpis: dict[str, float]
    nodes: tuple[NodeState, ...]
    events: tuple[Event, ...] = ()
    """Events since the previous snapshot."""
    faults: tuple[dict[str, Any], ...] = ()
    """Active faults: ``{"id", "kind", "target", "params", "since", "until"}``."""
    info: dict[str, Any] = field(default_factory=dict)
    """Balancer, autoscaler and run facts (algorithm, desired replicas, last decision...)."""

    def node(self, node_id: str) -> NodeState:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "seq": self.seq,
            "kpis": dict(self.kpis),
            "nodes": [n.to_dict() for n in self.nodes],
            "events": [e.to_dict() for e in self.events],
            "faults": [dict(f) for f in self.faults],
            "info": dict(self.info),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Json) -> Snapshot:
        d = _require(data, "snapshot", ("time", "seq", "kpis", "nodes"))
        time = _time(d["time"], "snapshot.time")
        seq = d["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool):
            _fail("snapshot.seq", "an integer", seq)
        kpis = _numbers(d["kpis"], "snapshot.kpis")
        nodes: list[NodeState] = []
        for i, node in enumerate(_array(d["nodes"], "snapshot.nodes")):
            try:
                nodes.append(NodeState.from_dict(node))
            except ProtocolError as exc:
                raise ProtocolError(f"snapshot.nodes[{i}]: {exc}") from exc
        events: list[Event] = []
        raw = d.get("events")
        for i, event in enumerate(() if raw is None else _array(raw, "snapshot.events")):
            try:
                events.append(Event.from_dict(event))
            except ProtocolError as exc:
                raise ProtocolError(f"snapshot.events[{i}]: {exc}") from exc
        raw = d.get("faults")
        faults = () if raw is None else _array(raw, "snapshot.faults")
        info = d.get("info")
        return cls(
            time=time,
            seq=seq,
            kpis=kpis,
            nodes=tuple(nodes),
            events=tuple(events),
            faults=tuple(_object(f, f"snapshot.faults[{i}]") for i, f in enumerate(faults)),
            info={} if info is None else _object(info, "snapshot.info"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Snapshot:
        """Parse JSON text or an MQTT payload (UTF-8 bytes)."""
        return cls.from_dict(_loads(text, "snapshot"))
