"""The seam's records: every message type round-trips through JSON unchanged, and every
malformed payload is refused with one line naming the field path."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackyard.core.commands import CommandError
from stackyard.core.protocol import (
    NODE_TYPES,
    ActionInfo,
    AnyNode,
    Command,
    DbNode,
    DriverStatus,
    EdgeNode,
    Event,
    FaultState,
    ProtocolError,
    QueryResult,
    Reply,
    RunSummary,
    Snapshot,
    decode,
    encode,
)
from stackyard.core.run import open_run

RECORDS: list[Any] = [Snapshot, Event, Command, Reply, ActionInfo, DriverStatus, QueryResult,
                      RunSummary, FaultState, *NODE_TYPES]


# -- a strategy for any record, built from its declared types ---------------------------------


def strategy(info: msgspec.inspect.Type) -> st.SearchStrategy[Any]:
    """Values of a msgspec type (finite floats only: JSON has no NaN or infinity)."""
    mi = msgspec.inspect
    if isinstance(info, mi.StructType):
        fields = {f.name: strategy(f.type) for f in info.fields}
        return st.builds(info.cls, **fields)
    if isinstance(info, mi.UnionType):
        return st.one_of([strategy(t) for t in info.types])
    if isinstance(info, mi.LiteralType):
        return st.sampled_from(info.values)
    if isinstance(info, mi.BoolType):
        return st.booleans()
    if isinstance(info, mi.IntType):
        return st.integers(-(2**53), 2**53)
    if isinstance(info, mi.FloatType):
        return st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(info, mi.StrType):
        return st.text(max_size=12)
    if isinstance(info, mi.NoneType):
        return st.none()
    if isinstance(info, mi.VarTupleType):
        return st.lists(strategy(info.item_type), max_size=3).map(tuple)
    if isinstance(info, mi.TupleType):
        return st.tuples(*(strategy(t) for t in info.item_types))
    if isinstance(info, mi.DictType):
        return st.dictionaries(st.text(max_size=8), strategy(info.value_type), max_size=3)
    raise AssertionError(f"no strategy for {info!r}")


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
@settings(max_examples=60, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_record_round_trips_through_json_unchanged(cls: Any, data: st.DataObject) -> None:
    record = data.draw(strategy(msgspec.inspect.type_info(cls)))
    payload = encode(record)
    back = decode(cls, payload, limit=1 << 30)
    assert back == record
    assert encode(back) == payload
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(record), type=cls) == record


def test_a_real_snapshot_and_summary_round_trip() -> None:
    run = open_run("default", seed=3)
    run.engine.apply(Command("cpu_hog", "app-1"))
    run.engine.run_for(20.0)
    snap = run.engine.snapshot()
    assert decode(Snapshot, snap.to_json()) == snap
    assert {n.tier for n in snap.nodes} == {"network", "app", "database"}
    summary = run.summary()
    assert decode(RunSummary, summary.to_json()) == summary
    assert json.loads(summary.to_json())["requests"]["arrived"] == summary.requests.arrived


def test_nodes_are_a_tagged_union_with_typed_fields() -> None:
    nodes = decode(Snapshot, b'{"time":1,"seq":2,"nodes":[{"kind":"edge","id":"edge-eu",'
                             b'"state":"down","region":"eu","hit_ratio":0.5},'
                             b'{"kind":"db","id":"db-2","state":"replica","lag_s":3.5}]}').nodes
    edge, db = nodes
    assert isinstance(edge, EdgeNode) and edge.kind == "edge" and edge.tier == "network"
    assert edge.region == "eu" and edge.hit_ratio == 0.5
    assert isinstance(db, DbNode) and db.tier == "database" and db.lag_s == 3.5
    assert db.metrics()["lag_s"] == 3.5 and "state" not in db.metrics()


def test_older_viewers_ignore_fields_they_do_not_know() -> None:
    event = decode(Event, b'{"time":1,"severity":"info","component":"x","kind":"k",'
                          b'"message":"m","added_later":{"a":[1,2]}}')
    assert event == Event(time=1.0, severity="info", component="x", kind="k", message="m")


# -- malformed payloads ----------------------------------------------------------------------

SNAP = b'{"time":1,"seq":2,"nodes":[]}'


@pytest.mark.parametrize(
    ("cls", "payload", "message"),
    [
        (Snapshot, b"[1, 2", "snapshot: expected object, got array"),
        (Snapshot, b"{", "snapshot: not JSON ("),
        (Snapshot, b"\xff\xfe", "snapshot: not JSON ("),
        (Snapshot, b"", "snapshot: not JSON ("),
        (Snapshot, b'{"time":"noon","seq":1}', "snapshot.time: expected float, got str"),
        (Snapshot, b'{"seq":1}', "snapshot: missing field time"),
        (Snapshot, b'{"time":1,"seq":true}', "snapshot.seq: expected int, got bool"),
        (Snapshot, b'{"time":1,"seq":1,"nodes":[{"kind":"edge","id":"e","state":"sideways"}]}',
         "snapshot.nodes[0].state: invalid enum value 'sideways'"),
        (Snapshot, b'{"time":1,"seq":1,"nodes":[{"kind":"toaster","id":"t"}]}',
         "snapshot.nodes[0].kind: invalid value 'toaster'"),
        (Snapshot, b'{"time":1,"seq":1,"nodes":[{"id":"t"}]}',
         "snapshot.nodes[0]: missing field kind"),
        (Snapshot, b'{"time":1,"seq":1,"kpis":{"rps":1e999}}',
         "snapshot.kpis.rps: number out of range"),
        (Snapshot, b'{"time":1,"seq":1,"kpis":{"rps":NaN}}', "snapshot: not JSON ("),
        (Snapshot, b"[" * 5000 + b"]" * 5000, "snapshot: expected object, got array"),
        (Snapshot, b'{"time":1,"seq":1,"nodes":' + b"[" * 5000 + b"]" * 5000 + b"}",
         "snapshot.nodes[0]: expected object, got array"),
        (Snapshot, b'{"time":1,"seq":1,"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
         "snapshot: not JSON (maximum recursion depth"),
        (Event, b'{"time":1,"severity":"fatal","component":"c","kind":"k","message":"m"}',
         "event.severity: invalid enum value 'fatal'"),
        (Command, b'{"kind":5}', "command.kind: expected str, got int"),
        (Command, b'{"target":"app-1"}', "command: missing field kind"),
        (Command, b'{"kind":"cpu_hog","params":{"cores":[1]}}',
         "command.params[...]: expected bool | int | float | str, got array"),
        (Command, b'{"kind":"cpu_hog","at":"soon"}', "command.at: expected float | null, got str"),
        (Command, b'{"kind":"' + b"x" * 20_000 + b'"}',
         "command: payload of 20011 bytes is over the 16384-byte limit"),
        (Reply, b'{"ok":"yes"}', "reply.ok: expected bool, got str"),
        (QueryResult, b'{"node":"db-1","columns":[],"rows":[[{}]],"truncated":false,'
                      b'"elapsed":0}', "result.rows[0][0]: expected int | float | str | null"),
    ],
)
def test_malformed_payloads_are_refused_in_one_line(cls: Any, payload: bytes,
                                                    message: str) -> None:
    with pytest.raises(ProtocolError) as err:
        decode(cls, payload)
    text = str(err.value)
    assert text.startswith(message), text
    assert "\n" not in text and len(text) <= 240


def test_a_huge_bad_value_is_not_echoed_whole() -> None:
    payload = b'{"time":1,"seq":1,"nodes":[{"kind":"edge","id":"e","state":"' + b"x" * 50_000 + \
        b'"}]}'
    with pytest.raises(ProtocolError) as err:
        decode(Snapshot, payload)
    assert len(str(err.value)) < 160


def test_a_payload_over_the_limit_is_refused_unread() -> None:
    with pytest.raises(ProtocolError, match="over the 100-byte limit"):
        decode(Snapshot, SNAP + b" " * 100, limit=100)
    assert decode(Snapshot, SNAP).seq == 2


def test_non_finite_figures_never_reach_a_snapshot() -> None:
    from stackyard.core.protocol import finite

    assert finite(math.nan) == 0.0 and finite(math.inf) == 1e12 and finite(-math.inf) == -1e12
    assert finite(0.1234567891) == 0.123457


# -- commands that decode but cannot apply ---------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b'{"kind":"explode","target":"app-1"}', "command.kind: expected one of"),
        (b'{"kind":"kill_container","target":"app-99"}',
         "kill_container.target: expected a container id such as app-1, got 'app-99'"),
        (b'{"kind":"link_latency","target":"nowhere"}', "link_latency.target: expected one of"),
        (b'{"kind":"link_latency","target":"app-db","params":{"latency":1e30}}',
         "link_latency.latency: expected seconds between 0 and 60, got 1e+30"),
        (b'{"kind":"packet_loss","target":"lb-app","params":{"loss":"lots"}}',
         "packet_loss.loss: expected a number between 0 and 1, got 'lots'"),
        (b'{"kind":"packet_loss","target":"lb-app","params":{"los":0.1}}',
         "packet_loss: unknown parameter 'los' (parameters: loss, duration)"),
        (b'{"kind":"retry_storm","target":"app-1"}', "retry_storm.target: expected no target"),
        (b'{"kind":"set_timeout","params":{"seconds":1e30}}',
         "set_timeout.seconds: expected seconds between 0 and 600, got 1e+30"),
        (b'{"kind":"set_retries","params":{"retries":-1}}',
         "set_retries.retries: expected a count between 0 and 10, got -1"),
        (b'{"kind":"set_retries","params":{"budget":0.5}}',
         "set_retries.retries: missing (expected a count between 0 and 10)"),
        (b'{"kind":"set_algorithm","params":{"name":"fastest"}}',
         "set_algorithm.name: expected one of round_robin"),
        (b'{"kind":"speed","params":{"x":1000}}', "speed.x: expected a speed between 0.25 and 100"),
        (b'{"kind":"step","params":{"seconds":-1}}', "step.seconds: expected seconds between"),
        (b'{"kind":"pause","target":"db-1"}', "pause.target: expected no target"),
        (b'{"kind":"clear","target":"f42"}', "clear.target: expected an active fault id"),
        (b'{"kind":"restore","params":{"time":1e300}}', "restore.time: expected seconds"),
    ],
    ids=lambda x: x.decode()[:40] if isinstance(x, bytes) else None,
)
def test_commands_are_checked_against_the_catalogue(payload: bytes, message: str) -> None:
    session = open_run("default", seed=1).session(paused=True)
    reply = session.apply(decode(Command, payload))
    assert not reply.ok
    assert reply.error.startswith(message), reply.error
    assert "\n" not in reply.error


def test_relative_values_resolve_against_the_current_setting() -> None:
    session = open_run("default", seed=1).session(paused=True)
    first = session.apply(Command("set_algorithm", params={"name": "next"}))
    assert first.ok and first.result == "weighted_round_robin"
    assert session.apply(Command("set_replicas", params={"n": "next"})).result == "5"
    assert session.apply(Command("set_autoscaler", params={"enabled": "toggle"})).result == "off"
    assert session.apply(Command("speed", params={"x": "next"})).result == "2"
    assert session.apply(Command("pause", params={"paused": "toggle"})).result == "running"
    with pytest.raises(CommandError, match=r"set_retries\.retries: expected"):
        session.engine.apply(Command("set_retries", params={"retries": "next"}))


def test_replies_carry_the_clients_id() -> None:
    session = open_run("default", seed=1).session(paused=True)
    reply = session.apply(Command("kill_container", "app-1", id="abc-1"))
    assert reply == Reply(ok=True, id="abc-1", kind="kill_container", result="f1")
    assert session.apply(Command("nope", id="n-2")).id == "n-2"


def test_snapshot_lookup_by_id_and_kind() -> None:
    snap = open_run("default", seed=1).engine.snapshot()
    node: AnyNode = snap.node("edge-eu", "link")
    assert node.kind == "link" and snap.node("edge-eu").kind == "edge"
    assert snap.find("nope") is None
    with pytest.raises(KeyError):
        snap.node("nope")


async def test_started_runs_keep_their_worlds_from_the_collector_until_the_last_closes() -> None:
    """Run.start freezes what is alive (gc.freeze: full collections then skip the world);
    the last run to close thaws it, so a process that runs many (a sweep) frees them."""
    import gc

    from stackyard.core import run as runs

    before = runs._frozen_runs  # another test's run may still be open in this process
    first, second = runs.open_run("default", seed=1), runs.open_run("default", seed=2)
    await first.start()
    await second.start()
    assert runs._frozen_runs == before + 2 and gc.get_freeze_count() > 0
    await first.close()
    assert runs._frozen_runs == before + 1 and gc.get_freeze_count() > 0
    await second.close()
    await second.close()  # twice is harmless
    assert runs._frozen_runs == before
    if before == 0:
        assert gc.get_freeze_count() == 0
