"""The link's life: a broker that restarts, credentials, the last will, and the real ``serve`` and
``attach`` commands."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import trustme

from stackyard.core.mqtt.config import BrokerConfig
from stackyard.core.mqtt.remote import RemoteSession
from stackyard.core.mqtt.topics import ServerStatus, Topics
from stackyard.core.protocol import Command, Snapshot, decode
from tests.mqtt.conftest import Mosquitto, Watcher, served, until

CLI = [sys.executable, "-m", "stackyard.cli"]


async def start_serve(*args: str, importtime: bool = False) -> asyncio.subprocess.Process:
    options = ["-X", "importtime"] if importtime else []
    return await asyncio.create_subprocess_exec(
        sys.executable, *options, "-m", "stackyard.cli", "serve", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def finish(proc: asyncio.subprocess.Process, timeout: float = 30) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def read_line(proc: asyncio.subprocess.Process, prefix: str, timeout: float = 30) -> str:
    """The first line of the process's output that starts with ``prefix``."""
    assert proc.stdout is not None

    async def scan() -> str:
        assert proc.stdout is not None
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"the output ended before a line starting {prefix!r}")
            if line.startswith(prefix):
                return line

    return await asyncio.wait_for(scan(), timeout)


def status_of(watcher: Watcher, run: str) -> ServerStatus | None:
    payloads = watcher.on(Topics(run).status)
    return decode(ServerStatus, payloads[-1]) if payloads else None


async def test_both_sides_recover_when_the_broker_restarts(mosquitto: Mosquitto) -> None:
    # At most two snapshots wait for the link: a longer outage merges them (seq jumps).
    async with served(mosquitto.config, max_snapshots=2) as (local, server), \
            RemoteSession(mosquitto.config, "test", viewer="hal") as session:
        delivered: list[Snapshot] = []
        session.subscribe(delivered.append)
        await session.start()
        await until(lambda: len(delivered) >= 3, "live snapshots")
        await asyncio.to_thread(mosquitto.stop)
        await until(lambda: server.link == "reconnecting", "the server to notice", timeout=20)
        await until(lambda: session.status.link == "reconnecting", "the viewer to notice",
                    timeout=20)
        refused = await session.send(Command("pause"))
        assert not refused.ok and "not connected" in refused.error
        # The run goes on without the broker, and nothing piles up for it.
        down_at, seq_down = local.engine.now, delivered[-1].seq
        fault = local.apply(Command("cpu_hog", "app-3", origin="key")).result
        await until(lambda: local.engine.now >= down_at + 2.0, "the clock to keep running")
        assert not server._replies and len(server._events) <= server.options.max_events
        await asyncio.to_thread(mosquitto.start)
        await until(lambda: server.link == "connected" and server.birth == 2,
                    "the server to reconnect", timeout=20)
        await until(lambda: session.status.link == "connected" and delivered[-1].seq > seq_down,
                    "the viewer to resume", timeout=20)
        # The viewer saw the jump in seq, carried on from the newest snapshot and said so.
        assert session.gaps >= 1 and session.missed >= 1 and server.counts["coalesced"] >= 1
        assert any(e.component == "link" and e.kind == "gap" for s in delivered
                   for e in s.events)
        # The fault injected during the outage is in the state the viewer resumed from.
        assert any(f.id == fault for f in delivered[-1].faults)
        assert session.server is not None and session.server.birth == 2
        reply = await session.send(Command("kill_container", "app-1"))
        assert reply.ok, reply


async def test_the_last_will_marks_a_killed_server_offline(mosquitto: Mosquitto) -> None:
    async with Watcher(mosquitto.config, Topics("will").status) as watcher:
        proc = await start_serve("default", "--broker", mosquitto.url, "--run-id", "will")
        await until(lambda: (s := status_of(watcher, "will")) is not None and
                    s.state == "online", "the server's birth", timeout=30)
        proc.send_signal(signal.SIGKILL)
        await finish(proc)
        await until(lambda: (s := status_of(watcher, "will")) is not None and
                    s.state == "offline", "the broker to publish the last will")
        will = status_of(watcher, "will")
        assert will is not None and will.reason == "lost" and will.scenario == "default"
    # Retained: a viewer that comes later reads it too.
    async with Watcher(mosquitto.config, Topics("will").status) as late:
        await until(lambda: status_of(late, "will") is not None, "the retained status")
        assert status_of(late, "will") == will


async def test_credentials_from_a_password_file(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path, users={"alice": "s3cret"})
    broker.start()
    try:
        good, bad = tmp_path / "good", tmp_path / "bad"
        good.write_text("s3cret\n")
        bad.write_text("guess\n")
        auth = ["--broker", broker.url, "--username", "alice"]
        # A wrong password: one line, exit 2, from serve and from attach alike.
        for command in (["serve", "default"], ["attach"]):
            proc = await asyncio.create_subprocess_exec(
                *CLI, *command, *auth, "--password-file", str(bad),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            code, _, err = await finish(proc)
            assert code == 2 and err.count("\n") == 1, err
            assert err.startswith(f"stackyard: {broker.url} refused the credentials (user "
                                  "'alice')"), err
        # Anonymous clients are refused too.
        proc = await asyncio.create_subprocess_exec(
            *CLI, "attach", "--broker", broker.url, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        code, _, err = await finish(proc)
        assert code == 2 and "refused the credentials (anonymous clients)" in err
        # The right password: the run goes online, and attach finds it (then stops for want of
        # a terminal, which shows it got that far).
        config = BrokerConfig(host="127.0.0.1", port=broker.port, username="alice",
                              password="s3cret")
        async with Watcher(config, Topics("default").status) as watcher:
            serve = await start_serve("default", *auth, "--password-file", str(good))
            await until(lambda: (s := status_of(watcher, "default")) is not None
                        and s.state == "online", "the run online", timeout=30)
            proc = await asyncio.create_subprocess_exec(
                *CLI, "attach", *auth, "--password-file", str(good),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            code, _, err = await finish(proc)
            assert code == 2 and "the app needs a terminal" in err, err
            serve.send_signal(signal.SIGTERM)
            code, _, err = await finish(serve)
            assert code == 0, err
            await until(lambda: (s := status_of(watcher, "default")) is not None
                        and s.state == "offline", "the clean shutdown's offline")
    finally:
        broker.stop()


async def test_tls_with_a_ca_file(tmp_path: Path) -> None:
    ca = trustme.CA()
    issued = ca.issue_cert("localhost", "127.0.0.1")
    files = (tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key")
    ca.cert_pem.write_to_path(str(files[0]))
    files[1].write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(files[2]))
    broker = Mosquitto(tmp_path, tls=files)
    broker.start()
    url = f"mqtts://localhost:{broker.port}"
    try:
        # The broker's certificate is signed by nobody the system trusts: one line, exit 2.
        proc = await asyncio.create_subprocess_exec(
            *CLI, "serve", "default", "--broker", url, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        code, _, err = await finish(proc)
        assert code == 2 and err.count("\n") == 1 and "certificate verify failed" in err, err
        # With its CA the run goes online, and a viewer over TLS attaches.
        serve = await start_serve("default", "--broker", url, "--tls-ca", str(files[0]))
        config = BrokerConfig(host="localhost", port=broker.port, tls=True, ca_file=files[0])
        try:
            await read_line(serve, "attach with: ")
            async with RemoteSession(config, "default", viewer="tls") as session:
                assert session.server is not None and session.server.state == "online"
                assert session.latest is None and session.catalogue
        finally:
            serve.send_signal(signal.SIGINT)
            code, _, err = await finish(serve)
        assert code == 0, err
    finally:
        broker.stop()


async def test_serve_without_a_broker_starts_the_embedded_one() -> None:
    proc = await start_serve("default", "--speed", "2", "--run-id", "solo", importtime=True)
    try:
        line = await read_line(proc, "attach with: ")
        match = re.search(r"--broker mqtt://127\.0\.0\.1:(\d+) --run-id solo$", line.strip())
        assert match, line
        config = BrokerConfig(host="127.0.0.1", port=int(match.group(1)))
        async with RemoteSession(config, "solo", viewer="ivy") as session:
            assert session.server is not None and session.server.state == "online"
            assert not session.status.control
            snaps: list[Snapshot] = []
            session.subscribe(snaps.append)
            await session.start()
            await until(lambda: len(snaps) >= 2 and snaps[-1].time > snaps[0].time,
                        "the run to advance")
            assert snaps[-1].scenario == "default"
    finally:
        proc.send_signal(signal.SIGINT)
        code, _, err = await finish(proc)
    assert code == 0, err
    # serve never imports the TUI's toolkit (``-X importtime`` lists every module imported).
    imported = {line.split("|")[-1].strip().split(".")[0] for line in err.splitlines()
                if line.startswith("import time:")}
    assert "aiomqtt" in imported and "amqtt" in imported
    assert not imported & {"textual", "rich"}
    assert "stopped run 'solo'" in err


async def test_attach_without_a_run_says_so(mosquitto: Mosquitto) -> None:
    for args, expected in (([], "no run is online on"),
                           (["--run-id", "ghost"], "no run 'ghost' on")):
        proc = await asyncio.create_subprocess_exec(
            *CLI, "attach", "--broker", mosquitto.url, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        code, _, err = await finish(proc)
        assert code == 2 and err.count("\n") == 1 and expected in err, err


async def test_serve_records_the_run_with_remote_commands(mosquitto: Mosquitto,
                                                          tmp_path: Path) -> None:
    """``serve --record``: the file holds the run and what viewers sent, and re-simulates
    exactly."""
    record = tmp_path / "served.db"
    proc = await start_serve("default", "--broker", mosquitto.url, "--run-id", "rec",
                             "--allow-control", "--speed", "4", "--record", str(record))
    try:
        await read_line(proc, "attach with: ")
        async with RemoteSession(mosquitto.config, "rec", viewer="zoe") as session:
            await session.start()
            await until(lambda: session.latest is not None and session.latest.time > 2,
                        "the run to advance")
            reply = await session.send(Command("cpu_hog", "app-1"))
            assert reply.ok, reply.error
            await until(lambda: session.latest is not None and session.latest.time > 6,
                        "the run to go on")
    finally:
        proc.send_signal(signal.SIGINT)
        code, _, err = await finish(proc)
    assert code == 0, err
    rerun = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stackyard.cli", "rerun", str(record),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, errs = await asyncio.wait_for(rerun.communicate(), 120)
    assert rerun.returncode == 0, errs.decode()
    assert "identical" in out.decode() and "1 command re-simulated" in out.decode()
    from stackyard.core.recording import Recording

    with Recording.open(record) as recording:
        (command,) = [c for _, c in recording.commands()]
    assert (command.kind, command.target, command.origin) == ("cpu_hog", "app-1", "remote:zoe")
