"""`stackyard run --check / --data-dir`: real SQLite files that outlive the process."""

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

import pytest

ROOT = Path(__file__).resolve().parent.parent


def stackyard(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackyard.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_data_dir_files_reopen_after_exit_with_the_same_rows(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = stackyard("run", "default", "--duration", "40s", "--seed", "3", "--json",
                     "--check", "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["consistency"] == {"ok": True, "problems": []}
    db = summary["database"]
    files = sorted(p.name for p in data.iterdir() if p.suffix == ".sqlite")
    assert files == ["db-1.sqlite", "db-2.sqlite", "db-3.sqlite"]
    leader = sqlite3.connect(data / f"{db['leader']}.sqlite")
    try:
        count, top = leader.execute("SELECT count(*), max(lsn) FROM writes").fetchone()
        keys = leader.execute("SELECT count(*) FROM items").fetchone()[0]
    finally:
        leader.close()
    assert count == top == db["acked_writes"] > 0
    assert 0 < keys <= count
    assert summary["storage"]["rows_written"] >= count


def test_data_dir_of_an_earlier_run_is_not_overwritten_silently(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert stackyard("run", "default", "--duration", "5s", "--data-dir", str(data)).returncode == 0
    before = (data / "db-1.sqlite").read_bytes()
    again = stackyard("run", "default", "--duration", "5s", "--data-dir", str(data))
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"stackyard: {data / 'db-1.sqlite'}: already holds a run's data; use another "
        "--data-dir or --overwrite"
    ]
    assert (data / "db-1.sqlite").read_bytes() == before
    replaced = stackyard("run", "default", "--duration", "5s", "--data-dir", str(data),
                         "--overwrite", "--check")
    assert replaced.returncode == 0, replaced.stderr


def test_check_needs_a_database(tmp_path: Path) -> None:
    done = stackyard("run", "mmc", "--duration", "5s", "--check")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "stackyard: --check and --data-dir need a scenario with a database tier"
    )


def test_data_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    done = stackyard("run", "default", "--duration", "5s", "--data-dir", str(target))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == f"stackyard: {target}: expected a directory for --data-dir"


# -- interruption: every node keeps a gap-free prefix of what the model committed ----------


def committed_lsns(path: Path) -> list[int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT lsn FROM writes ORDER BY lsn")]
    finally:
        db.close()


def wait_for_rows(path: Path, rows: int, proc: subprocess.Popen[str], deadline: float) -> None:
    """Poll (against a deadline) until the run has committed ``rows`` rows to ``path``: the
    writer is then busy batch after batch, as when a user gives up on a long run."""
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        with contextlib.suppress(sqlite3.Error):
            if path.exists() and len(committed_lsns(path)) >= rows:
                return
        time.sleep(0.02)
    raise AssertionError(f"not {rows} rows in {path} before the deadline")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=lambda s: signal.Signals(s).name)
def test_interrupted_run_leaves_every_node_a_gap_free_prefix(tmp_path: Path, sig: int) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "stackyard.cli", "run", "default", "--duration", "4h",
         "--data-dir", str(data)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for_rows(data / "db-3.sqlite", 3000, proc, time.monotonic() + 120)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    name = signal.Signals(sig).name
    assert proc.returncode == 128 + sig, err
    assert err.splitlines() == ["stackyard: interrupted" + ("" if name == "SIGINT" else
                                                             f" ({name})")]
    assert out == ""
    tops = {}
    for node in ("db-1", "db-2", "db-3"):
        rows = committed_lsns(data / f"{node}.sqlite")
        assert rows == list(range(1, len(rows) + 1)), f"{node} has a hole"
        tops[node] = len(rows)
    assert tops["db-1"] >= max(tops.values()) > 0, "replicas hold no more than the primary"


# -- a data directory that cannot be used: one line, exit 2, no hang -----------------------


def immutable(path: Path) -> None:
    if os.geteuid() != 0:
        path.chmod(0o555 if path.is_dir() else 0o444)
        return
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"root cannot make {path} immutable here: {done.stderr.strip()}")


def mutable(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    else:
        path.chmod(0o755 if path.is_dir() else 0o644)


def our_earlier_run(data: Path) -> None:
    assert stackyard("run", "default", "--duration", "2s", "--data-dir", str(data)).returncode == 0


def foreign(path: Path, table: str) -> None:
    db = sqlite3.connect(path)
    db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, note TEXT)")
    db.execute(f"INSERT INTO {table} (note) VALUES ('keep me')")
    db.commit()
    db.close()


BAD_DATA_DIRS = {
    "garbage": (lambda d: (d / "db-1.sqlite").write_bytes(os.urandom(5000)),
                "db-1.sqlite: not an SQLite database"),
    "symlink-to-text": (lambda d: ((d / "notes.txt").write_text("notes\n"),
                                   (d / "db-1.sqlite").symlink_to("notes.txt")),
                        "db-1.sqlite: is a symbolic link"),
    "foreign-writes-table": (lambda d: foreign(d / "db-1.sqlite", "writes"),
                             "db-1.sqlite: an SQLite database stackyard did not write"),
    "other-application": (lambda d: foreign(d / "db-2.sqlite", "customers"),
                          "db-2.sqlite: an SQLite database stackyard did not write"),
    "fifo": (lambda d: os.mkfifo(d / "db-1.sqlite"), "db-1.sqlite: not a regular file"),
    "wal-fifo": (lambda d: (our_earlier_run(d), os.mkfifo(d / "db-3.sqlite-wal")),
                 "db-3.sqlite-wal: not a regular file"),
    "immutable-file": (lambda d: (our_earlier_run(d), immutable(d / "db-2.sqlite")),
                       "db-2.sqlite: cannot open its database"),
    "immutable-dir": (lambda d: immutable(d), "db-1.sqlite: cannot open its database"),
}


@pytest.mark.parametrize("case", list(BAD_DATA_DIRS))
def test_a_data_dir_that_cannot_be_used_is_one_line(tmp_path: Path, case: str) -> None:
    make, message = BAD_DATA_DIRS[case]
    data = tmp_path / "data"
    data.mkdir()
    make(data)
    before = {p.name: p.read_bytes() for p in data.iterdir()
              if p.is_file() and not p.is_symlink() and p.suffix == ".sqlite"}
    try:
        done = stackyard("run", "default", "--duration", "5s", "--data-dir", str(data),
                         "--overwrite", timeout=60)
        after = {p.name: p.read_bytes() for p in data.iterdir()
                 if p.is_file() and not p.is_symlink() and p.suffix == ".sqlite"}
    finally:
        for p in [data, *data.iterdir()]:
            mutable(p)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"stackyard: {data}/") and message in done.stderr
    assert done.stdout == ""
    if case != "immutable-dir":
        assert {k: v for k, v in after.items() if k in before} == before, "nothing was touched"


@pytest.mark.parametrize(
    ("data_dir", "message"),
    [
        ("a" * 300, "cannot use it as --data-dir (File name too long)"),
        ("/".join(["a"] * 2000), "path too long for SQLite"),
        ("", "argument --data-dir: expected a directory, got an empty path"),
    ],
    ids=["300-char-name", "2000-components", "empty"],
)
def test_a_data_dir_path_that_cannot_be_used_is_one_line(
    tmp_path: Path, data_dir: str, message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stackyard.cli", "run", "default", "--duration", "5s",
         "--data-dir", data_dir],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and message in done.stderr, done.stderr
    assert len(done.stderr) < 300
    assert list(tmp_path.iterdir()) == [], "nothing was created"
