"""``--record``, ``replay``, ``rerun`` and ``export`` as a user runs them: real subprocesses,
real files, hostile files, and a recorder killed with SIGKILL mid-run."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stackyard.core.protocol import Command
from stackyard.core.recording import Recording
from stackyard.core.replay import ReplaySession
from tests.test_cli import ROOT, error_lines, stackyard

DEADLINE = 60.0


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recording of two simulated minutes of ``default`` made by ``stackyard run``."""
    path = tmp_path_factory.mktemp("rec") / "two-minutes.db"
    done = stackyard("run", "default", "--duration", "2m", "--seed", "5", "--record", str(path))
    assert done.returncode == 0, done.stderr
    assert path.exists() and not Path(f"{path}-wal").exists()
    return path


def test_rerun_of_a_recorded_run_is_identical(recording: Path) -> None:
    done = stackyard("rerun", str(recording))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{recording}: identical: 121 snapshots from 0:00:00 to "
                                  "0:02:00")
    assert "from seed 5" in done.stdout


def test_rerun_exits_1_at_the_first_divergence(recording: Path, tmp_path: Path) -> None:
    copy = tmp_path / "changed.db"
    shutil.copy(recording, copy)
    db = sqlite3.connect(copy)
    db.execute("UPDATE meta SET value = '6' WHERE key = 'seed'")
    db.commit()
    db.close()
    done = stackyard("rerun", str(copy))
    assert done.returncode == 1, done.stderr
    assert done.stdout.strip() == (f"{copy}: diverges at 0:00:00 (0 s simulated): "
                                   "snapshot.seed: recorded 5, re-simulated 6")


def test_export_writes_three_tables_and_keeps_existing_files(recording: Path,
                                                             tmp_path: Path) -> None:
    done = stackyard("export", str(recording), "--format", "jsonl", "--output", str(tmp_path))
    assert done.returncode == 0, done.stderr
    names = [Path(line).name for line in done.stdout.splitlines()]
    assert names == ["two-minutes.series.jsonl", "two-minutes.events.jsonl",
                     "two-minutes.commands.jsonl"]
    again = stackyard("export", str(recording), "--format", "jsonl", "--output", str(tmp_path))
    assert "already exists (--force replaces it)" in error_lines(again)[0]
    assert not list(tmp_path.glob(".*partial"))


def test_record_refuses_an_existing_file(recording: Path) -> None:
    before = recording.read_bytes()
    done = stackyard("run", "mmc", "--duration", "5s", "--record", str(recording))
    assert error_lines(done) == [f"stackyard: --record: {recording}: already exists; record "
                                 "to a new file"]
    assert recording.read_bytes() == before


def _truncated(src: Path, dst: Path) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])


def _corrupted(src: Path, dst: Path) -> None:
    data = bytearray(src.read_bytes())
    middle = len(data) // 2 // 4096 * 4096
    data[middle: middle + 4096] = b"\xff" * 4096
    dst.write_bytes(bytes(data))


def _empty(src: Path, dst: Path) -> None:
    dst.write_bytes(b"")


def _foreign(src: Path, dst: Path) -> None:
    db = sqlite3.connect(dst)
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    db.execute("INSERT INTO notes (text) VALUES ('not a recording')")
    db.commit()
    db.close()


def _text(src: Path, dst: Path) -> None:
    dst.write_text("[run]\nname = 'a scenario, not a recording'\n")


def _future(src: Path, dst: Path) -> None:
    shutil.copy(src, dst)
    db = sqlite3.connect(dst)
    db.execute("PRAGMA user_version=99")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    db.commit()
    db.close()


HOSTILE: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "truncated": (_truncated, "damaged"),
    "corrupted": (_corrupted, "damaged"),
    "empty": (_empty, "empty file, expected a stackyard recording"),
    "foreign": (_foreign, "an SQLite database but not a stackyard recording"),
    "text": (_text, "not an SQLite file, expected a stackyard recording"),
    "future": (_future, "recorded with schema version 99; this stackyard reads up to 2 "
                        "(upgrade stackyard)"),
}


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("command", [("replay",), ("rerun",), ("export", "--format", "csv"),
                                     ("rerun", "--from", "30s")])
def test_hostile_files_get_one_line_and_exit_2(recording: Path, tmp_path: Path, kind: str,
                                               command: tuple[str, ...]) -> None:
    make, expected = HOSTILE[kind]
    bad = tmp_path / f"{kind}.db"
    make(recording, bad)
    done = stackyard(command[0], str(bad), *command[1:])
    lines = error_lines(done)
    assert len(lines) == 1 and lines[0].startswith(f"stackyard: {bad}: "), lines
    assert expected in lines[0], lines
    assert done.stdout == ""


def test_missing_file_and_out_of_range_times(recording: Path, tmp_path: Path) -> None:
    missing = stackyard("replay", str(tmp_path / "nope.db"))
    assert error_lines(missing) == [f"stackyard: {tmp_path / 'nope.db'}: no such file"]
    late = stackyard("replay", str(recording), "--at", "1:00:00")
    assert error_lines(late) == ["stackyard: --at: expected a time between 0:00:00 and 0:02:00 "
                                 "(the recording's span), got 1:00:00"]
    bad = stackyard("rerun", str(recording), "--from", "soon")
    assert "expected a simulated time such as 90s, 12m or 1:02:30" in error_lines(bad)[0]
    lone = stackyard("rerun", str(recording), "--record", str(tmp_path / "x.db"))
    assert error_lines(lone) == ["stackyard: rerun: --record records a fork: give --from T "
                                 "too"]


def _committed(path: Path) -> int:
    """Snapshots another process has committed to ``path`` so far (0 before it exists)."""
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT count(*) FROM snapshots").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_a_recorder_killed_mid_run_leaves_a_file_that_replays_to_its_last_commit(
        tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    env = {k: v for k, v in os.environ.items() if k != "STACKYARD_DEBUG"}
    proc = subprocess.Popen([sys.executable, "-m", "stackyard.cli", "run", "default",
                             "--duration", "2h", "--record", str(path)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + DEADLINE
        while _committed(path) < 30:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < end, "the recorder committed nothing in time"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with Recording.open(path) as rec:
        assert rec.meta.end_time is None  # cut short
        last = rec.end
        assert rec.times == [float(t) for t in range(len(rec.times))] and last >= 29.0
    replay = ReplaySession(Recording.open(path), paused=True)
    try:
        assert replay.apply(Command("seek", params={"time": 1e6})).ok is False  # over its end
        assert replay.apply(Command("seek", params={"time": last})).ok
        assert replay.latest is not None and replay.latest.time == last
    finally:
        replay.rec.close()
    done = stackyard("rerun", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "identical" in done.stdout


SCHEMA_1 = Path(__file__).parent / "data" / "schema1-default.db"
"""15 s of ``default`` (seed 2, a key's and the palette's command) recorded by the stackyard
that wrote schema 1, before viewers' recordings (schema 2) existed."""


def test_a_schema_1_recording_still_opens_replays_reruns_and_exports(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copy(SCHEMA_1, path)  # never open the fixture itself: reading may recover a WAL
    with Recording.open(path) as rec:
        assert (rec.meta.schema, rec.meta.source, rec.meta.seed) == (1, "run", 2)
        assert rec.times == [float(t) for t in range(16)]
        assert [(c.kind, c.origin) for _, c in rec.commands()] == [
            ("kill_container", "key"), ("traffic_spike", "palette")]
        assert rec.sent() == [] and rec.rerunnable() is None
    replay = ReplaySession(Recording.open(path), paused=True)
    try:
        assert replay.forkable
        assert replay.apply(Command("jump", params={"to": "next"})).ok
        # The fault at 4 s shows first in the snapshot after it.
        assert replay.latest is not None and replay.latest.time == 5.0
    finally:
        replay.rec.close()
    done = stackyard("rerun", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"{path}: identical: 16 snapshots from 0:00:00 to 0:00:15")
    done = stackyard("export", str(path), "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert [Path(line).name for line in done.stdout.splitlines()] == [
        "old.series.csv", "old.events.csv", "old.commands.csv"]


@pytest.fixture(scope="module")
def viewers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A viewer's recording of 20 s of ``default`` with the run's whole command log (fed as
    ``serve`` publishes; tests/mqtt/test_record.py makes them over a broker)."""
    import asyncio

    from stackyard.core.engine import Engine
    from tests.core.conftest import scenario
    from tests.core.test_feed_recorder import SEED, Served, fed

    path = tmp_path_factory.mktemp("viewer") / "viewer.db"

    async def make() -> None:
        engine = Engine(scenario("default"), seed=SEED)
        rec = fed(path, engine)
        await rec.open()
        Served(rec, engine).run(20.0)
        await rec.close()

    asyncio.run(make())
    done = stackyard("rerun", str(path))
    assert done.returncode == 0 and "identical" in done.stdout, done.stdout + done.stderr
    return path


def _sql(*statements: str) -> Callable[[Path, Path], None]:
    def make(src: Path, dst: Path) -> None:
        shutil.copy(src, dst)
        db = sqlite3.connect(dst)
        for statement in statements:
            db.execute(statement)
        db.commit()
        db.close()

    return make


VIEWER_HOSTILE: dict[str, tuple[Callable[[Path, Path], None], str, tuple[str, ...]]] = {
    # kind: (make, expected in the line, commands that must refuse the file)
    "source": (_sql("UPDATE meta SET value = 'martian' WHERE key = 'source'"),
               "meta.source: expected run or viewer, got 'martian'", ("replay", "rerun",
                                                                      "export")),
    "schema": (_sql("UPDATE meta SET value = '1' WHERE key = 'schema'"),
               "meta.schema: a viewer's recording has schema 2 or later, this one says 1",
               ("replay", "rerun", "export")),
    "events_from": (_sql("INSERT OR REPLACE INTO meta VALUES ('events_from', 'soon')"),
                    "meta.events_from: expected a number, got 'soon'",
                    ("replay", "rerun", "export")),
    "no sent": (_sql("DROP TABLE sent"), "a viewer's recording without its tables (no such "
                "table: sent)", ("replay", "rerun", "export")),
    "seen": (_sql("UPDATE commands SET seen = 'later' WHERE id = 2"),
             "commands.seen: expected a snapshot seq, got 'later'", ("rerun",)),
    "total": (_sql("UPDATE meta SET value = 'many' WHERE key = 'commands_total'"),
              "meta.commands_total: expected a count of commands, got 'many'", ("rerun",)),
    "hole": (_sql("DELETE FROM commands WHERE id = 2"),
             "holds numbers 0-4 of the run's 5 commands, not its whole command log", ("rerun",)),
    "far": (_sql("UPDATE commands SET time = 1e300 WHERE id = 1"),
            "commands: kill_container at 1e+300 s is shown first by the snapshot at", ("rerun",)),
}


@pytest.mark.parametrize("kind", VIEWER_HOSTILE)
def test_hostile_viewers_recordings_get_one_line_and_exit_2(viewers: Path, tmp_path: Path,
                                                            kind: str) -> None:
    make, expected, refusing = VIEWER_HOSTILE[kind]
    bad = tmp_path / f"{kind}.db"
    make(viewers, bad)
    for command in refusing:
        done = stackyard(command, str(bad))
        lines = error_lines(done)
        assert len(lines) == 1 and lines[0].startswith(f"stackyard: {bad}: "), (command, lines)
        assert expected in lines[0], (command, lines)
        assert done.stdout == ""
    if "export" not in refusing:  # what export does not read cannot stop it
        done = stackyard("export", str(bad), "--force")
        assert done.returncode == 0, done.stderr
