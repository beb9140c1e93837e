"""Tests for core.protocol: Snapshot, Event and Command round-trip and reject bad payloads."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from stackyard.core.engine import Engine
from stackyard.core.protocol import Command, Event, NodeState, ProtocolError, Snapshot

from .conftest import scenario

EVENT = Event(
    time=12.5,
    severity="warning",
    component="db.replica1",
    kind="replica_lag",
    message="replica1 is 4.2 s behind",
    why="apply rate 800/s < write rate 950/s",
)
SNAPSHOT = Snapshot(
    time=12.75,
    seq=51,
    kpis={"rps": 412.0, "p50": 0.031, "p95": 0.12, "p99": 0.48, "error_rate": 0.002},
    nodes=(
        NodeState(id="lb.a", tier="network", kind="balancer", state="active"),
        NodeState(
            id="c-3",
            tier="app",
            kind="container",
            state="running",
            parent="vm-1",
            metrics={"busy": 6.0, "queue": 2.0, "rps": 51.5},
            info={"app": "api", "restarts": 1, "tags": ["a", "b"]},
        ),
        NodeState(
            id="db.primary",
            tier="database",
            kind="postgres",
            state="primary",
            metrics={"lsn": 10422.0},
        ),
    ),
    events=(
        EVENT,
        Event(time=12.6, severity="error", component="c-3", kind="oom", message="OOM killed"),
    ),
    faults=(
        {
            "id": "f1",
            "kind": "slow_disk",
            "target": "db.primary",
            "params": {"factor": 10.0},
            "since": 5.0,
            "until": None,
        },
    ),
    info={"algorithm": "peak_ewma", "desired_replicas": 6, "last_decision": {"at": 10.0}},
)
COMMANDS = [
    Command(kind="pause"),
    Command(kind="kill_container", target="c-3"),
    Command(kind="link_latency", target="cdn.eu", params={"ms": 200, "jitter": 0.1}, at=30.0),
    Command(kind="set_speed", params={"speed": 4.0}, at=0.0),
]


def through_json(data: dict[str, Any]) -> Any:
    return json.loads(json.dumps(data))


# -- round trips -------------------------------------------------------------------------------


def test_snapshot_round_trips_through_a_dict() -> None:
    assert Snapshot.from_dict(SNAPSHOT.to_dict()) == SNAPSHOT


def test_snapshot_round_trips_through_json() -> None:
    text = SNAPSHOT.to_json()
    back = Snapshot.from_json(text)
    assert back == SNAPSHOT
    assert back.to_json() == text
    assert back.node("c-3").metrics["busy"] == 6.0
    assert back.events[0].why == EVENT.why
    assert back.faults[0]["until"] is None


def test_snapshot_json_does_not_depend_on_dict_order() -> None:
    reordered = Snapshot(
        time=SNAPSHOT.time,
        seq=SNAPSHOT.seq,
        kpis=dict(reversed(list(SNAPSHOT.kpis.items()))),
        nodes=SNAPSHOT.nodes,
        events=SNAPSHOT.events,
        faults=tuple(dict(reversed(list(f.items()))) for f in SNAPSHOT.faults),
        info=dict(reversed(list(SNAPSHOT.info.items()))),
    )
    assert reordered.to_json() == SNAPSHOT.to_json()
    assert "\n" not in SNAPSHOT.to_json()


def test_snapshot_optional_fields_default() -> None:
    minimal = {"time": 1, "seq": 2, "kpis": {}, "nodes": []}
    snap = Snapshot.from_dict(minimal)
    assert snap == Snapshot(time=1.0, seq=2, kpis={}, nodes=())
    assert (snap.events, snap.faults, snap.info) == ((), (), {})


def test_snapshot_node_lookup() -> None:
    assert SNAPSHOT.node("db.primary").tier == "database"
    with pytest.raises(KeyError):
        SNAPSHOT.node("nope")


def test_event_round_trips() -> None:
    assert Event.from_dict(EVENT.to_dict()) == EVENT
    assert Event.from_dict(through_json(EVENT.to_dict())) == EVENT


def test_event_why_is_optional() -> None:
    data = EVENT.to_dict()
    del data["why"]
    assert Event.from_dict(data).why == ""


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.kind)
def test_command_round_trips(command: Command) -> None:
    assert Command.from_dict(command.to_dict()) == command
    assert Command.from_dict(through_json(command.to_dict())) == command


def test_command_defaults() -> None:
    assert Command.from_dict({"kind": "pause"}) == Command(kind="pause", target="", params={})
    assert Command.from_dict({"kind": "pause", "target": None, "params": None}).params == {}


def test_to_dict_copies_so_callers_cannot_mutate_the_original() -> None:
    data = SNAPSHOT.to_dict()
    data["kpis"]["rps"] = -1.0
    data["info"]["algorithm"] = "random"
    assert SNAPSHOT.kpis["rps"] == 412.0
    assert SNAPSHOT.info["algorithm"] == "peak_ewma"
    cmd = COMMANDS[2].to_dict()
    cmd["params"]["ms"] = 0
    assert COMMANDS[2].params["ms"] == 200


# -- bad payloads ------------------------------------------------------------------------------


def without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


def snapshot_with_node(**node: Any) -> dict[str, Any]:
    data = SNAPSHOT.to_dict()
    data["nodes"] = [node]
    return data


BAD: list[tuple[str, Callable[[Any], object], Any, str]] = [
    ("snapshot-list", Snapshot.from_dict, [1, 2], "snapshot: expected a JSON object, got list"),
    ("snapshot-null", Snapshot.from_dict, None, "snapshot: expected a JSON object"),
    ("event-string", Event.from_dict, "boom", "event: expected a JSON object, got str"),
    ("command-number", Command.from_dict, 3, "command: expected a JSON object, got int"),
    *[
        (f"snapshot-no-{k}", Snapshot.from_dict, without(SNAPSHOT.to_dict(), k), repr(k))
        for k in ("time", "seq", "kpis", "nodes")
    ],
    *[
        (f"event-no-{k}", Event.from_dict, without(EVENT.to_dict(), k), repr(k))
        for k in ("time", "severity", "component", "kind", "message")
    ],
    ("command-no-kind", Command.from_dict, {"target": "c-1"}, "'kind'"),
    (
        "node-no-tier",
        Snapshot.from_dict,
        snapshot_with_node(id="x", kind="vm", state="up"),
        "node: missing field 'tier'",
    ),
    (
        "node-not-object",
        Snapshot.from_dict,
        {**SNAPSHOT.to_dict(), "nodes": [7]},
        "node: expected a JSON object, got int",
    ),
    (
        "nested-event-bad-severity",
        Snapshot.from_dict,
        {**SNAPSHOT.to_dict(), "events": [{**EVENT.to_dict(), "severity": "fatal"}]},
        "event.severity",
    ),
    ("event-severity", Event.from_dict, {**EVENT.to_dict(), "severity": "fatal"}, "severity"),
    ("event-severity-case", Event.from_dict, {**EVENT.to_dict(), "severity": "INFO"}, "severity"),
    ("command-kind-empty", Command.from_dict, {"kind": ""}, "command.kind"),
    ("command-kind-number", Command.from_dict, {"kind": 5}, "command.kind"),
    ("command-params-list", Command.from_dict, {"kind": "x", "params": [1]}, "command.params"),
    ("command-at-string", Command.from_dict, {"kind": "x", "at": "soon"}, "command.at"),
]


@pytest.mark.parametrize(
    ("parse", "payload", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_payload_raises_protocol_error_naming_the_field(
    parse: Callable[[Any], object], payload: Any, message: str
) -> None:
    with pytest.raises(ProtocolError, match=re.escape(message)):
        parse(payload)


@pytest.mark.parametrize("text", ["", "{", "{'time': 1}", "[1,", "nan?", "snapshot"])
def test_non_json_text_raises_protocol_error(text: str) -> None:
    with pytest.raises(ProtocolError, match=r"^snapshot: not JSON \("):
        Snapshot.from_json(text)


def test_json_that_is_not_an_object_raises_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="snapshot: expected a JSON object, got list"):
        Snapshot.from_json("[]")


def test_protocol_error_is_a_value_error() -> None:
    assert issubclass(ProtocolError, ValueError)


WRONG_TYPES: list[tuple[str, Callable[[Any], object], Any, str]] = [
    ("event-time-text", Event.from_dict, {**EVENT.to_dict(), "time": "abc"}, "event.time"),
    ("event-time-null", Event.from_dict, {**EVENT.to_dict(), "time": None}, "event.time"),
    ("snapshot-seq-text", Snapshot.from_dict, {**SNAPSHOT.to_dict(), "seq": "x"}, "snapshot.seq"),
    ("snapshot-kpis-number", Snapshot.from_dict, {**SNAPSHOT.to_dict(), "kpis": 5}, "kpis"),
    ("snapshot-nodes-number", Snapshot.from_dict, {**SNAPSHOT.to_dict(), "nodes": 5}, "nodes"),
    ("snapshot-events-number", Snapshot.from_dict, {**SNAPSHOT.to_dict(), "events": 5}, "events"),
    ("snapshot-faults-items", Snapshot.from_dict, {**SNAPSHOT.to_dict(), "faults": [5]}, "faults"),
    ("snapshot-info-number", Snapshot.from_dict, {**SNAPSHOT.to_dict(), "info": 5}, "info"),
    (
        "node-tier-unknown",
        Snapshot.from_dict,
        snapshot_with_node(id="x", tier="storage", kind="vm", state="up"),
        "tier",
    ),
    (
        "node-metrics-number",
        Snapshot.from_dict,
        snapshot_with_node(id="x", tier="app", kind="vm", state="up", metrics=5),
        "metrics",
    ),
    ("command-at-bool", Command.from_dict, {"kind": "x", "at": True}, "command.at"),
    ("command-params-zero", Command.from_dict, {"kind": "x", "params": 0}, "command.params"),
    ("snapshot-bytes-not-utf8", Snapshot.from_json, b"\xff{}", "snapshot: not JSON"),
]


@pytest.mark.parametrize(
    ("parse", "payload", "message"), [w[1:] for w in WRONG_TYPES], ids=[w[0] for w in WRONG_TYPES]
)
def test_wrong_typed_field_raises_protocol_error_naming_it(
    parse: Callable[[Any], object], payload: Any, message: str
) -> None:
    with pytest.raises(ProtocolError, match=re.escape(message)):
        parse(payload)


def message_of(parse: Callable[[Any], object], payload: Any) -> str:
    with pytest.raises(ProtocolError) as caught:
        parse(payload)
    return str(caught.value)


@pytest.mark.parametrize(
    ("parse", "payload", "message"),
    [
        (
            Snapshot.from_dict,
            snapshot_with_node(id="x", tier="storage", kind="vm", state="up"),
            "snapshot.nodes[0]: node.tier: expected one of network, app, database, got 'storage'",
        ),
        (
            Snapshot.from_dict,
            snapshot_with_node(id="x", tier="app", kind="vm", state="up", metrics={"busy": "hi"}),
            "snapshot.nodes[0]: node.metrics.busy: expected a number, got 'hi'",
        ),
        (
            Snapshot.from_dict,
            snapshot_with_node(id=7, tier="app", kind="vm", state="up"),
            "snapshot.nodes[0]: node.id: expected a string, got 7",
        ),
        (
            Snapshot.from_dict,
            {**SNAPSHOT.to_dict(), "events": [EVENT.to_dict(), {**EVENT.to_dict(), "time": "1"}]},
            "snapshot.events[1]: event.time: expected a finite number, got '1'",
        ),
        (
            Snapshot.from_dict,
            {**SNAPSHOT.to_dict(), "kpis": {"p99": None}},
            "snapshot.kpis.p99: expected a number, got None",
        ),
        (
            Snapshot.from_dict,
            {**SNAPSHOT.to_dict(), "kpis": {"p 99": True}},
            "snapshot.kpis['p 99']: expected a number, got True",
        ),
        (
            Snapshot.from_dict,
            {**SNAPSHOT.to_dict(), "time": float("nan")},
            "snapshot.time: expected a finite number, got nan",
        ),
        (
            Snapshot.from_dict,
            {**SNAPSHOT.to_dict(), "seq": True},
            "snapshot.seq: expected an integer, got True",
        ),
        (
            Snapshot.from_dict,
            {**SNAPSHOT.to_dict(), "nodes": None},
            "snapshot.nodes: expected an array, got None",
        ),
        (
            Snapshot.from_dict,
            {**SNAPSHOT.to_dict(), "events": 0},
            "snapshot.events: expected an array, got 0",
        ),
        (
            Snapshot.from_dict,
            {**SNAPSHOT.to_dict(), "faults": [{}, "f2"]},
            "snapshot.faults[1]: expected an object, got 'f2'",
        ),
        (
            Snapshot.from_dict,
            {**SNAPSHOT.to_dict(), "info": {1: "x"}},
            "snapshot.info: expected string keys, got 1",
        ),
        (Event.from_dict, {**EVENT.to_dict(), "why": 3}, "event.why: expected a string, got 3"),
        (
            Event.from_dict,
            {**EVENT.to_dict(), "time": float("inf")},
            "event.time: expected a finite number, got inf",
        ),
        (
            Command.from_dict,
            {"kind": "x", "at": float("nan")},
            "command.at: expected a finite number, got nan",
        ),
        (
            Command.from_dict,
            {"kind": "x", "at": True},
            "command.at: expected a finite number, got True",
        ),
        (
            Command.from_dict,
            {"kind": "x", "params": 0},
            "command.params: expected an object, got 0",
        ),
        (
            Command.from_dict,
            {"kind": "x", "params": []},
            "command.params: expected an object, got []",
        ),
        (Command.from_dict, {"kind": "x", "target": 3}, "command.target: expected a string, got 3"),
    ],
)
def test_error_message_is_exact_and_starts_with_the_field_path(
    parse: Callable[[Any], object], payload: Any, message: str
) -> None:
    assert message_of(parse, payload) == message


def test_error_message_stays_on_one_short_line() -> None:
    message = message_of(Command.from_dict, {"kind": "x", "target": ["line\n"] * 100})
    assert "\n" not in message
    assert message.startswith("command.target: expected a string, got ['line\\n', ")
    assert message.endswith("...")
    assert len(message) < 120


def test_null_optional_fields_take_their_defaults() -> None:
    node = NodeState(id="a", tier="app", kind="vm", state="up")
    data = {
        "time": 1,
        "seq": 2,
        "kpis": {},
        "nodes": [{**node.to_dict(), "parent": None, "metrics": None, "info": None}],
        "events": None,
        "faults": None,
        "info": None,
    }
    expected = Snapshot(time=1.0, seq=2, kpis={}, nodes=(node,))
    assert Snapshot.from_dict(data) == expected
    assert Event.from_dict({**EVENT.to_dict(), "why": None}).why == ""
    assert Command.from_dict({"kind": "x", "at": None}).at is None


def test_figures_may_be_ints_or_non_finite() -> None:
    data = {**SNAPSHOT.to_dict(), "kpis": {"arrived": 12, "wq": float("inf")}}
    assert Snapshot.from_json(json.dumps(data)).kpis == {"arrived": 12, "wq": float("inf")}


def test_from_dict_copies_so_the_payload_cannot_mutate_the_result() -> None:
    params = {"ms": 200}
    command = Command.from_dict({"kind": "link_latency", "params": params})
    params["ms"] = 0
    assert command.params == {"ms": 200}
    data = SNAPSHOT.to_dict()
    snap = Snapshot.from_dict(data)
    data["kpis"]["rps"] = -1.0
    data["info"]["algorithm"] = "random"
    data["faults"][0]["id"] = "f9"
    data["nodes"][1]["metrics"]["busy"] = -1.0
    data["nodes"][1]["info"]["app"] = "web"
    assert snap == SNAPSHOT


# -- JSON text and MQTT payloads ---------------------------------------------------------------


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_from_json_reads_text_and_utf8_bytes(as_bytes: bool) -> None:
    event = Event(time=1.0, severity="info", component="c-1", kind="note", message="café ☕")
    texts: list[tuple[Callable[[Any], object], str, object]] = [
        (Snapshot.from_json, SNAPSHOT.to_json(), SNAPSHOT),
        (Event.from_json, json.dumps(event.to_dict(), ensure_ascii=False), event),
        *[(Command.from_json, json.dumps(c.to_dict()), c) for c in COMMANDS],
    ]
    for parse, text, expected in texts:
        assert parse(text.encode() if as_bytes else text) == expected


@pytest.mark.parametrize(
    ("parse", "payload", "message"),
    [
        (Snapshot.from_json, b"\xff{}", "snapshot: not JSON (not utf-8 at byte 0)"),
        (Event.from_json, b'{"kind": "\xc3"}', "event: not JSON (not utf-8 at byte 10)"),
        (
            Event.from_json,
            "{",
            "event: not JSON (Expecting property name enclosed in double quotes",
        ),
        (Command.from_json, b"", "command: not JSON (Expecting value at char 0)"),
        (Command.from_json, "[]", "command: expected a JSON object, got list"),
        (Command.from_json, '{"kind": "x", "params": 0}', "command.params: expected an object"),
        (Command.from_json, None, "command: expected JSON as str or bytes, got NoneType"),
        (Snapshot.from_json, "[" * 100_000, "snapshot: not JSON (maximum recursion depth"),
        (
            Snapshot.from_json,
            '{"seq": ' + "9" * 5000 + "}",
            "snapshot: not JSON (Exceeds the limit",
        ),
    ],
)
def test_bad_json_raises_protocol_error(
    parse: Callable[[Any], object], payload: Any, message: str
) -> None:
    assert message_of(parse, payload).startswith(message)


def test_engine_snapshots_round_trip_through_mqtt_bytes() -> None:
    engine = Engine(scenario("retry-storm"), seed=7)
    engine.run_for(20)
    snap = engine.snapshot()
    assert snap.events and snap.faults
    assert Snapshot.from_json(snap.to_json().encode()) == snap
