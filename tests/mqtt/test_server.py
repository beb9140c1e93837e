"""``stackyard serve``'s bridge against a real mosquitto: what it publishes, and how it answers
everything that arrives on the command topic."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import msgspec

from stackyard.core.catalogue import actions
from stackyard.core.mqtt.remote import RemoteSession
from stackyard.core.mqtt.topics import History, ServerStatus, Topics
from stackyard.core.protocol import (
    ActionInfo,
    Command,
    DriverStatus,
    Event,
    Reply,
    Snapshot,
    decode,
    encode,
)
from stackyard.core.session import SessionError
from tests.mqtt.conftest import Mosquitto, Watcher, publish_all, served, until

T = Topics("test")


def replies(watcher: Watcher) -> list[Reply]:
    return [decode(Reply, p) for p in watcher.on(T.reply)]


async def mosquitto_pub(broker: Mosquitto, *args: str, stdin: bytes = b"") -> None:
    """Publish with the mosquitto client, from another process (so the flood does not share
    the server's event loop)."""
    exe = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
    proc = await asyncio.create_subprocess_exec(
        exe, "-h", "127.0.0.1", "-p", str(broker.port), "-t", T.cmd, *args,
        stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode == 0, err


async def test_the_run_is_published_retained_with_its_status_and_catalogue(
        mosquitto: Mosquitto) -> None:
    async with served(mosquitto.config, metrics_interval=0.0) as (local, server):
        local.advance(5)
        local.apply(Command("cpu_hog", "app-1", origin="key"))
        await until(lambda: server.counts["snapshots"] >= 2, "two snapshots published")
        async with Watcher(mosquitto.config, f"{T.base}/#") as w:
            await until(lambda: bool(w.on(T.snapshot) and w.on(T.driver) and w.on(T.history)
                                     and w.on(T.metric("kpis", "rps"))),
                        "the retained topics")
            kept = (T.status, T.catalogue, T.snapshot, T.driver, T.history)
            async with Watcher(mosquitto.config, *kept) as late:  # what the broker retained
                await until(lambda: {t for t, _, r in late.messages if r} == set(kept),
                            "every retained topic, for a subscriber that comes later")
            status = decode(ServerStatus, w.on(T.status)[0])
            assert (status.state, status.run, status.version, status.scenario, status.seed,
                    status.birth, status.control) == ("online", "test", "test", "default", 7,
                                                      1, True)
            catalogue = decode(tuple[ActionInfo, ...], w.on(T.catalogue)[0])
            assert catalogue == actions()
            snap = decode(Snapshot, w.on(T.snapshot)[-1])
            assert snap.scenario == "default" and snap.seed == 7 and snap.faults
            driver = decode(DriverStatus, w.on(T.driver)[-1])
            assert driver.control and not driver.paused
            assert decode(History, w.on(T.history)[-1]).snapshots
            # One plain number per node and metric; an id two kinds share gets its kind.
            assert float(w.on(T.metric("app-1", "cpu"))[-1]) >= 0
            assert float(w.on(T.metric("edge-eu", "hit_ratio"))[-1]) >= 0
            assert float(w.on(T.metric("edge-eu.link", "latency"))[-1]) > 0
            assert int(w.on(T.metric("kpis", "arrived"))[-1]) > 0
            # Events are not retained: they come as they happen.
            assert not w.on(T.events)
            local.apply(Command("kill_container", "app-2", origin="key"))
            await until(lambda: any(decode(Event, p).kind == "fault" for p in w.on(T.events)),
                        "the fault's event")
            assert not any(r for t, _, r in w.messages if t == T.events)
    async with Watcher(mosquitto.config, T.status) as w:
        await until(lambda: bool(w.on(T.status)), "the retained status")
        gone = decode(ServerStatus, w.on(T.status)[-1])
        assert gone.state == "offline" and gone.reason == "shut down"


async def test_without_control_every_command_is_refused_saying_so(mosquitto: Mosquitto) -> None:
    async with served(mosquitto.config, allow_control=False) as (local, server), \
            Watcher(mosquitto.config, T.reply) as w:
        commands = [Command(a.name, id=f"c{i}", origin="remote:eve")
                    for i, a in enumerate(actions())]
        async with RemoteSession(mosquitto.config, "test", viewer="eve") as session:
            for cmd in commands:
                reply = await session.send(cmd)
                assert not reply.ok and reply.id == cmd.id and reply.kind == cmd.kind
                assert reply.error.startswith("control is off"), reply
            # Reading is not acting: queries are answered without control.
            result = await session.query("db-1", "SELECT count(*) FROM writes")
            assert result.columns == ("count(*)",)
        ids = {c.id for c in commands}
        await until(lambda: {r.id for r in replies(w)} >= ids, "every reply on the topic")
        assert not local.sent and not local.engine.commands and not local.status.paused
        assert server.counts["refused"] == len(commands)
        assert "control" not in [e.component for e in local.engine.events]


async def test_garbage_on_the_command_topic_is_answered_and_the_clock_keeps_pace(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with served(mosquitto.config) as (local, server), \
            Watcher(mosquitto.config, T.reply) as w:
        big = tmp_path / "big"
        big.write_bytes(b'{"id":"huge","kind":"' + b"x" * 1_000_000 + b'"}')
        await mosquitto_pub(mosquitto, "-f", str(big))
        await until(lambda: len(w.on(T.reply)) == 1, "the oversized payload's reply")
        (reply,) = replies(w)
        assert reply.id == "huge" and "over the 16384-byte limit" in reply.error
        samples = [
            b"not json at all",
            b'{"kind": 5, "id": "types"}',
            b'{"kind": "kill_container", "params": [1], "id": "params"}',
            b'{"kind": "explode", "id": "unknown"}',
            b'{"kind": "kill_container", "target": "app-99", "id": "target"}',
            b'{"kind": "link_latency", "target": "lb-app", "params": {"latency": 1e400}, '
            b'"id": "inf"}',
            b'{"kind": "link_latency", "target": "lb-app", "params": {"latency": 61}, '
            b'"id": "bound"}',
            b'{"kind": "step", "params": {"seconds": 3600}, "id": "step"}',
            b'{"kind": "pause", "at": 5, "id": "later"}',
            b'{"kind": "query", "target": "db-1", "params": {"sql": 7}, "id": "sql"}',
        ]
        await mosquitto_pub(mosquitto, "-l", stdin=b"\n".join(samples) + b"\n")
        await until(lambda: len(w.on(T.reply)) == 1 + len(samples), "a reply to each")
        answers = {r.id: r for r in replies(w)[1:]}
        assert not any(r.ok for r in answers.values())
        assert answers[""].error.startswith("command: not JSON")
        assert answers["types"].error == "command.kind: expected str, got int"
        assert answers["params"].error == "command.params: expected object, got array"
        assert answers["unknown"].error == ("command.kind: unknown command 'explode' (the "
                                            "catalogue topic lists them)")
        assert answers["target"].error.startswith("kill_container.target: expected")
        assert answers["inf"].error == "command.params[...]: number out of range"
        assert answers["bound"].error.startswith("link_latency.latency: expected seconds")
        assert "step at most 60 s" in answers["step"].error
        assert "remote commands apply now" in answers["later"].error
        assert answers["sql"].error.startswith("query.params.sql: expected")
        # A burst of 10,000: each answered, and the simulated clock keeps pace meanwhile.
        burst = [b'{"kind": "no_such_command", "id": "b%d"}' % i for i in range(10_000)]
        wall0, sim0 = time.monotonic(), local.engine.now
        await mosquitto_pub(mosquitto, "-l", stdin=b"\n".join(burst) + b"\n")
        await until(lambda: len(w.on(T.reply)) == 1 + len(samples) + len(burst),
                    "a reply to every message of the burst", timeout=60)
        wall, sim = time.monotonic() - wall0, local.engine.now - sim0
        ids = {r.id for r in replies(w)[1 + len(samples):]}
        assert ids == {f"b{i}" for i in range(10_000)}
        assert sim >= 0.5 * wall, f"{sim:.2f} simulated s in {wall:.2f} wall s at 1x"
        # Only the well-formed commands of known kinds reached the session, each refused.
        assert [c.id for c, r in local.sent if not r.ok] == ["target", "bound"]
        assert local.engine.commands == [] and server.link == "connected"


async def test_control_applies_commands_and_names_the_viewer(mosquitto: Mosquitto) -> None:
    async with served(mosquitto.config) as (local, _), \
            RemoteSession(mosquitto.config, "test", viewer="frank bar/#") as session:
        reply = await session.send(Command("kill_container", "app-3", id="k1"))
        assert reply.ok and reply.id == "k1" and reply.result.startswith("f")
        assert local.sent[-1][0].origin == "remote:frank_bar"
        assert any(e.message == "frank_bar sent kill_container on app-3"
                   for e in local.engine.events)
        # The shared clock: with control, a viewer may pause it for everyone.
        assert (await session.send(Command("pause"))).ok
        await until(lambda: session.status.paused, "the pause to reach the viewer")
        assert local.status.paused


async def test_remote_sql_has_the_local_consoles_limits(mosquitto: Mosquitto) -> None:
    async with served(mosquitto.config, allow_control=False) as (local, _), \
            RemoteSession(mosquitto.config, "test", viewer="gina") as session:
        local.advance(30)
        sql = "SELECT * FROM writes ORDER BY lsn"
        remote = await session.query("db-1", sql)
        here = await local.query("db-1", sql)
        assert remote.truncated and here.truncated and len(remote.rows) == len(here.rows) == 200
        assert remote.columns == here.columns and remote.rows == here.rows
        for bad in ("DELETE FROM writes", "SELECT * FROM nowhere", ""):
            try:
                await local.query("db-1", bad)
            except SessionError as exc:
                expected = str(exc)
            try:
                await session.query("db-1", bad)
            except SessionError as exc:
                assert str(exc) == expected
            else:
                raise AssertionError(f"{bad!r} was not refused")
        try:
            await session.query("db-9", "SELECT 1")
        except SessionError as exc:
            assert "no database node 'db-9'" in str(exc)


async def test_a_viewer_survives_garbage_and_strays_on_its_topics(mosquitto: Mosquitto) -> None:
    async with served(mosquitto.config, allow_control=False) as (local, _), \
            RemoteSession(mosquitto.config, "test", viewer="jo") as session:
        delivered: list[Snapshot] = []
        session.subscribe(delivered.append)
        await session.start()
        await until(lambda: len(delivered) >= 2, "live snapshots")
        stray = encode(Snapshot(time=0.0, seq=10**9, scenario="forged"))
        for topic, payload in ((T.snapshot, b"{not json"), (T.driver, b'{"paused": "yes"}'),
                               (T.status, b"[]"), (T.reply, b"\xff\xfe"), (T.snapshot, stray)):
            await publish_all(mosquitto.config, topic, [payload])
        await until(lambda: session.bad_payloads == 4, "the bad payloads to be counted")
        # The forged snapshot got through (it is a valid record), but the run's own stream, now
        # "going backwards", is followed again after three snapshots.
        await until(lambda: delivered[-1].scenario == "default" and
                    any(s.scenario == "forged" for s in delivered), "the stream to resume")
        seq = delivered[-1].seq
        await until(lambda: delivered[-1].seq > seq, "the stream to move on")
        assert session.status.link == "connected" and session.server is not None
        assert session.server.state == "online"
        assert not local.sent


def test_payloads_in_the_docs_decode() -> None:
    """Every JSON example in docs/mqtt.md that names a record decodes as that record."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "mqtt.md").read_text()
    kinds = {"status": ServerStatus, "snapshot": Snapshot, "command": Command, "reply": Reply,
             "event": Event, "driver": DriverStatus}
    checked = 0
    for block in text.split("```json")[1:]:
        header, _, body = block.partition("\n")
        body = body.split("```")[0]
        kind = header.strip()
        if kind in kinds:
            json.loads(body)
            decode(kinds[kind], body)
            checked += 1
    assert checked >= 5
    assert msgspec.json.decode(encode(Reply(ok=True)))["ok"] is True
