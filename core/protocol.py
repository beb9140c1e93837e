"""The one seam between the engine and any viewer: Snapshot, Event, Command.

All three are immutable and JSON-serialisable (``to_dict`` / ``from_dict`` round-trip exactly),
so a viewer fed over MQTT or from a recording sees the same thing as one fed in-process.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["info", "warning", "error"]
Json = Any


class ProtocolError(ValueError):
    """A payload that is not a valid Snapshot, Event or Command."""


def _require(data: Json, kind: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ProtocolError(f"{kind}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ProtocolError(f"{kind}: missing field {missing[0]!r}")
    return data


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
        if d["severity"] not in ("info", "warning", "error"):
            raise ProtocolError(
                f"event.severity: expected info, warning or error, got {d['severity']!r}"
            )
        return cls(
            time=float(d["time"]),
            severity=d["severity"],
            component=str(d["component"]),
            kind=str(d["kind"]),
            message=str(d["message"]),
            why=str(d.get("why", "")),
        )


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
        if not isinstance(d["kind"], str) or not d["kind"]:
            raise ProtocolError(f"command.kind: expected a non-empty string, got {d['kind']!r}")
        params = d.get("params") or {}
        if not isinstance(params, dict):
            raise ProtocolError(f"command.params: expected an object, got {params!r}")
        at = d.get("at")
        if at is not None and not isinstance(at, int | float):
            raise ProtocolError(f"command.at: expected a number or null, got {at!r}")
        return cls(kind=d["kind"], target=str(d.get("target") or ""), params=params, at=at)


@dataclass(frozen=True)
class NodeState:
    """One node as a viewer sees it: identity, state, and its current figures."""

    id: str
    tier: Literal["network", "app", "database"]
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
        return cls(
            id=d["id"],
            tier=d["tier"],
            kind=d["kind"],
            state=d["state"],
            parent=d.get("parent", ""),
            metrics=dict(d.get("metrics", {})),
            info=dict(d.get("info", {})),
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
        return cls(
            time=float(d["time"]),
            seq=int(d["seq"]),
            kpis=dict(d["kpis"]),
            nodes=tuple(NodeState.from_dict(n) for n in d["nodes"]),
            events=tuple(Event.from_dict(e) for e in d.get("events", [])),
            faults=tuple(dict(f) for f in d.get("faults", [])),
            info=dict(d.get("info", {})),
        )

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"snapshot: not JSON ({exc.msg} at char {exc.pos})") from exc
        return cls.from_dict(data)
