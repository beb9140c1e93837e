"""`stackyard run --check / --data-dir`: real SQLite files that outlive the process."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def stackyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackyard.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
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
