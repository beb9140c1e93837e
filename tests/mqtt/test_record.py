"""``attach --record``: an attached viewer records what it receives over a real broker, and the
file replays (the screens the viewer saw), re-simulates (with the run's whole command log,
other viewers' commands included; otherwise it refuses in one line) and exports.

The served run is paused and stepped by whole simulated seconds from the test, so the viewer
receives a snapshot at each second and the file holds exactly those (no wall-clock timing)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from stackyard.core.mqtt.config import BrokerConfig
from stackyard.core.mqtt.record import ViewerRecording
from stackyard.core.mqtt.remote import RemoteOptions, RemoteSession
from stackyard.core.mqtt.server import MqttServer
from stackyard.core.protocol import Command
from stackyard.core.recording import Recording
from stackyard.core.replay import ReplaySession
from stackyard.core.rerun import rerun
from stackyard.core.session import LocalSession
from stackyard.tui.app import StackyardApp
from tests.mqtt.conftest import Mosquitto, served, until
from tests.test_cli import ROOT
from tests.tui.test_replay import REPLAY_SIZE, SIZE, panes_and_events
from tests.tui.test_tmux import Tmux, _up, tmux  # noqa: F401 - the fixture

CLI = [sys.executable, "-m", "stackyard.cli"]


def stepped(broker: BrokerConfig, run_id: str,
            **options: object) -> contextlib.AbstractAsyncContextManager[
                tuple[LocalSession, MqttServer]]:
    """``default`` served as ``run_id``, paused: the test steps it."""
    return served(broker, run_id=run_id, storage=False, paused=True, **options)


async def step_to(local: LocalSession, t: float, *viewers: RemoteSession) -> None:
    """Run the served run to ``t`` and wait until every viewer has its snapshot."""
    local.advance(t - local.engine.now)
    for viewer in viewers:
        await until(lambda v=viewer: v.latest is not None and v.latest.time == t,  # type: ignore[misc]
                    f"{viewer.viewer} to receive {t:g} s")


async def recording_viewer(broker: BrokerConfig, run_id: str, name: str,
                           path: Path) -> tuple[RemoteSession, ViewerRecording]:
    """``attach --record``'s pieces: a session that follows the command log, and its
    recording, the file created (the session not started yet)."""
    viewer = RemoteSession(broker, run_id, viewer=name, options=RemoteOptions(command_log=True))
    await viewer.open()
    record = ViewerRecording(viewer, path)
    await record.open()
    return viewer, record


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


async def test_a_viewers_recording_holds_the_whole_log_and_reruns_exactly(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    path = tmp_path / "ann.db"
    broker = mosquitto.config
    async with stepped(broker, "rec") as (local, _), \
            RemoteSession(broker, "rec", viewer="bo") as bo:
        await bo.start()
        await step_to(local, 3.0, bo)
        assert (await bo.send(Command("kill_container", "app-1"))).ok
        await step_to(local, 5.0, bo)
        # ann attaches after bo's command: the history brings it.
        ann, record = await recording_viewer(broker, "rec", "ann", path)
        await ann.start()
        await step_to(local, 8.0, ann, bo)
        assert local.apply(Command("cpu_hog", "app-2", origin="key")).ok  # the server's own key
        await step_to(local, 12.0, ann, bo)
        spike = await ann.send(Command("traffic_spike", "", {"factor": 3.0, "duration": 20.0}))
        refused = await ann.send(Command("kill_db", "db-9"))
        assert spike.ok and not refused.ok
        await step_to(local, 15.0, ann, bo)
        assert (await bo.send(Command("db_partition", "db-2"))).ok
        await step_to(local, 20.0, ann, bo)
        assert (await ann.send(Command("clear_all"))).ok
        await step_to(local, 30.0, ann, bo)
        await record.close()
        await ann.close()
        applied = list(local.engine.commands)
    assert record.error is None
    assert [(c.kind, c.origin) for _, c in applied] == [
        ("kill_container", "remote:bo"), ("cpu_hog", "key"), ("traffic_spike", "remote:ann"),
        ("db_partition", "remote:bo"), ("clear_all", "remote:ann")]
    with Recording.open(path) as rec:
        meta = rec.meta
        assert (meta.source, meta.schema, meta.end_time) == ("viewer", 2, 30.0)
        assert (meta.rows["viewer"], meta.rows["run_id"], meta.rows["commands"]) == \
            ("ann", "rec", "complete")
        # The history from before ann attached (at 5 s), then every step.
        assert rec.times == [0.0, 3.0, 5.0, 8.0, 12.0, 15.0, 20.0, 30.0]
        assert meta.attached_at == 5.0
        assert [(t, c) for t, c, _ in rec.commands_seen()] == applied
        sent = [(c.kind, c.origin, r.ok, r.error) for _, c, r in rec.sent()]
        assert sent == [("traffic_spike", "remote:ann", True, ""),
                        ("kill_db", "remote:ann", False, refused.error),
                        ("clear_all", "remote:ann", True, "")]
        assert "db-9" in refused.error
        assert [m.label for m in rec.markers() if m.kind != "slo"] == [
            "kill_container app-1 (remote:bo)", "cpu_hog app-2 (key)",
            "traffic_spike (remote:ann)", "db_partition db-2 (remote:bo)",
            "clear_all (remote:ann)"]
        result = rerun(rec)
        assert result.identical, result.divergence
        assert result.commands == 5 and result.snapshots == len(rec.times)
    done = cli("rerun", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{path}: identical: {len(rec.times)} snapshots from ")
    done = cli("export", str(path), "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    commands = (tmp_path / "ann.commands.jsonl").read_text().splitlines()
    assert [json.loads(line)["origin"] for line in commands] == [
        "remote:bo", "key", "remote:ann", "remote:bo", "remote:ann"]
    series = (tmp_path / "ann.series.jsonl").read_text().splitlines()
    assert len(series) > 100


async def test_without_the_whole_log_it_replays_and_exports_but_refuses_to_rerun(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    path = tmp_path / "late.db"
    broker = mosquitto.config
    async with stepped(broker, "short", command_log=2) as (local, _):
        for t, target in ((2.0, "app-1"), (4.0, "app-2"), (6.0, "app-3")):
            local.advance(t - local.engine.now)
            assert local.apply(Command("cpu_hog", target, origin="key")).ok
        await step_to(local, 8.0)
        late, record = await recording_viewer(broker, "short", "cy", path)
        await late.start()
        await step_to(local, 15.0, late)
        await record.close()
        await late.close()
    with Recording.open(path) as rec:
        assert rec.meta.rows["commands"] == "incomplete: 2 of 3"
        assert [c.target for _, c, _ in rec.commands_seen()] == ["app-2", "app-3"]
    expected = f"stackyard: {path}: a viewer's recording (cy on run 'short', 0:00:0"
    for args in (("rerun", str(path)), ("rerun", str(path), "--from", "10s")):
        done = cli(*args)
        lines = done.stderr.splitlines()
        assert done.returncode == 2 and len(lines) == 1 and done.stdout == "", done.stderr
        assert lines[0].startswith(expected), lines
        assert lines[0].endswith("holds numbers 1-2 of the run's 3 commands, not its whole "
                                 "command log, so it replays and exports but cannot be "
                                 "re-simulated; 'stackyard serve --record FILE' records a run "
                                 "that can"), lines
    done = cli("export", str(path))
    assert done.returncode == 0, done.stderr
    replay = ReplaySession(Recording.open(path), paused=True)
    try:
        assert replay.apply(Command("seek", params={"time": 15.0})).ok
        assert replay.latest is not None and replay.latest.time == 15.0
        fault = replay.apply(Command("kill_container", "app-1"))
        assert not fault.ok and "cannot fork a live run" in fault.error
    finally:
        replay.rec.close()


async def test_the_viewers_screens_replay_from_its_recording(mosquitto: Mosquitto,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "screens.db"
    broker = mosquitto.config
    seen: dict[float, list[str]] = {}
    async with stepped(broker, "tui") as (local, _):
        viewer, record = await recording_viewer(broker, "tui", "dee", path)
        app = StackyardApp(viewer, theme_dir=tmp_path / "themes")
        async with app.run_test(size=SIZE) as pilot:
            await until(lambda: viewer.latest is not None, "the app to go live")
            for t, command in ((4.0, Command("kill_container", "app-2")),
                               (9.0, Command("db_partition", "db-2")),
                               (14.0, None), (21.0, Command("clear_all")), (26.0, None)):
                await step_to(local, t, viewer)
                await until(lambda t=t: app._pending is None and app._time == t,  # type: ignore[misc]
                            f"the app to show {t:g} s")
                await pilot.pause()
                seen[t] = panes_and_events(app)
                if command is not None:
                    reply = await app.send_command(command)
                    assert reply.ok, reply.error
        await record.close()
    assert record.error is None
    with Recording.open(path) as rec:
        assert all(t in rec.times for t in seen)
        assert rerun(rec).identical
    replay = StackyardApp(ReplaySession(Recording.open(path), paused=True),
                          theme_dir=tmp_path / "themes")
    async with replay.run_test(size=REPLAY_SIZE) as pilot:
        for t, screen in seen.items():
            await replay.send_command(Command("seek", params={"time": t}))
            await pilot.pause()
            assert panes_and_events(replay) == screen, t


def _rows(path: Path, table: str) -> int:
    """Rows another process has committed to ``table`` of ``path`` so far."""
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_an_attached_recorder_killed_mid_run_leaves_a_file_that_replays_and_reruns(
        mosquitto: Mosquitto, tmux: Tmux, tmp_path: Path) -> None:  # noqa: F811
    """The real binaries: ``serve``, and ``attach --record`` in a terminal, SIGKILLed."""
    path = tmp_path / "killed.db"
    serve = subprocess.Popen([*CLI, "serve", "default", "--broker", mosquitto.url, "--run-id",
                              "k", "--allow-control", "--speed", "10", "--seed", "3"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        assert serve.stdout is not None
        while "attach with: " not in (line := serve.stdout.readline()):
            assert line, serve.stderr.read() if serve.stderr else ""
        tmux.start("attach", "--broker", mosquitto.url, "--run-id", "k", "--name", "ann",
                   "--record", str(path), size=(80, 24))
        tmux.wait(_up, "the three panes")
        tmux.keys("d")  # kill the selected container, from the viewer's key
        tmux.wait(lambda s: "kill_container on app-1" in s, "the fault")
        end = time.monotonic() + 60
        while _rows(path, "snapshots") < 15 or _rows(path, "sent") < 1:
            assert time.monotonic() < end, "the viewer's recorder committed too little in time"
            time.sleep(0.05)
        pid = int(tmux.flags("pane_pid")[0])
        assert "attach" in Path(f"/proc/{pid}/cmdline").read_text()
        os.kill(pid, signal.SIGKILL)
        tmux.wait_dead()
    finally:
        serve.send_signal(signal.SIGINT)
        serve.communicate(timeout=30)
    with Recording.open(path) as rec:
        assert rec.meta.end_time is None and rec.meta.source == "viewer"  # cut short
        last = rec.end
        assert len(rec.times) >= 15
        ((_, command, reply),) = rec.sent()
        assert (command.kind, command.target, command.origin, reply.ok) == \
            ("kill_container", "app-1", "remote:ann", True)
        assert [(c.kind, c.origin) for _, c, _ in rec.commands_seen()] == \
            [("kill_container", "remote:ann")]
    replay = ReplaySession(Recording.open(path), paused=True)
    try:
        assert replay.apply(Command("seek", params={"time": last})).ok
        assert replay.latest is not None and replay.latest.time == round(last, 6)
    finally:
        replay.rec.close()
    done = cli("rerun", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "identical" in done.stdout and "1 command re-simulated" in done.stdout


def test_attach_record_refuses_a_file_that_exists_before_connecting(tmp_path: Path) -> None:
    path = tmp_path / "taken.db"
    path.write_bytes(b"keep me")
    done = cli("attach", "--broker", "mqtt://127.0.0.1:9", "--run-id", "r", "--record",
               str(path))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [f"stackyard: --record: {path}: already exists; "
                                        "record to a new file"]
    assert path.read_bytes() == b"keep me"
