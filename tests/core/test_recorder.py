"""The flight recorder: sampling leaves the run alone, files re-simulate exactly, a tampered
file is caught at the first divergence, forks continue like the original, back-pressure bounds
the queue, and exports hold every row."""

from __future__ import annotations

import contextlib
import csv
import json
import sqlite3
from pathlib import Path

import pytest

from stackyard.core.engine import CommandError, Engine
from stackyard.core.export import ExportError, export
from stackyard.core.protocol import Command
from stackyard.core.recorder import Recorder, RecorderError
from stackyard.core.recording import Recording
from stackyard.core.rerun import ForkSession, rerun
from stackyard.core.run import open_run

from .conftest import scenario

SCRIPT = [
    (5.0, Command("kill_container", "app-1", origin="key")),
    (9.5, Command("traffic_spike", "", {"factor": 2.0, "duration": 10.0}, origin="palette")),
    (12.0, Command("kill_db", "db-3", origin="key")),
    (12.0, Command("kill_db", "db-3", origin="key")),  # fails: already down
    (14.25, Command("set_replicas", "", {"n": "next"}, origin="key")),
    (15.0, Command("link_latency", "lb-app", {"latency": 0.05}, at=21.0, origin="remote:x")),
    (16.0, Command("clear", "f99", at=22.0, origin="remote:x")),  # fails when it runs: an event
    (25.0, Command("undo", origin="key")),
]


async def record(path: Path, *, until: float = 30.0, script: list[tuple[float, Command]]
                 | None = None, base: str = "default", high_water: int = 240,
                 **sections: object) -> Engine:
    """Record a run of ``until`` simulated seconds, sending ``script`` as a user would."""
    rec = Recorder(path, scenario_text="# test", high_water=high_water)
    run = open_run(scenario(base, **sections), seed=4, record=rec)
    async with run:
        for t, cmd in script if script is not None else SCRIPT:
            await run.advance(t - run.engine.now)
            with contextlib.suppress(CommandError):  # refusals are part of a real session
                run.engine.apply(cmd)
        await run.advance(until - run.engine.now)
    assert rec.error is None
    return run.engine


def test_sampling_leaves_the_run_unchanged() -> None:
    seen: list[float] = []
    sampled, plain = Engine(scenario("default"), seed=3), Engine(scenario("default"), seed=3)
    sampled.sample_every(0.7, lambda e: seen.append(e.now))
    for t in (3.3, 9.0, 20.0):
        sampled.run_until(t)
        plain.run_until(t)
    assert seen == [k * 0.7 for k in range(29)]  # 0 to 19.6, at exact multiples
    assert sampled.summary() == plain.summary()
    assert sampled.snapshot().to_json() == plain.snapshot().to_json()


async def test_a_recording_reruns_identically(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    live = await record(path)
    with Recording.open(path) as rec:
        assert rec.meta.seed == 4 and rec.meta.end_time == 30.0
        assert rec.times == [float(t) for t in range(31)]
        assert [c.origin for _, c in rec.commands()] == \
            ["key", "palette", "key", "key", "key", "remote:x", "remote:x", "key"]
        kinds = [m.kind for m in rec.markers()]
        assert kinds.count("fault") == 5 and "command" in kinds
        assert rec.snapshot_at(30.0).nodes == live.snapshot().nodes
        skipped = [e for _, e in rec.all_events() if e.kind == "command_skipped"]
        assert [e.time for e in skipped] == [22.0]  # the scheduled clear that failed
        result = rerun(rec)
    assert result.identical, result.divergence
    assert result.snapshots == 31 and result.commands == 8 and result.events >= 15


async def test_scenario_file_faults_are_not_applied_twice(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    faults = [{"kind": "kill_container", "target": "app-2", "at": "4s"},
              {"kind": "cache_purge", "at": "0s"}]
    await record(path, until=10.0, script=[], faults=faults)
    with Recording.open(path) as rec:
        assert [c.origin for _, c in rec.commands()] == ["file", "file"]
        assert rerun(rec).identical


async def test_a_tampered_recording_diverges_where_it_was_changed(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    await record(path)
    db = sqlite3.connect(path)
    data = json.loads(db.execute("SELECT data FROM commands WHERE id = 1").fetchone()[0])
    data["target"] = "app-2"
    db.execute("UPDATE commands SET data = ? WHERE id = 1", (json.dumps(data),))
    db.commit()
    db.close()
    with Recording.open(path) as rec:
        result = rerun(rec)
    d = result.divergence
    assert d is not None and d.time == 6.0  # the first snapshot after the kill at 5 s
    assert d.path.startswith("snapshot.") and d.recorded != d.resimulated, d
    assert d.line().startswith(f"diverges at 0:00:06 (6 s simulated): {d.path}: recorded ")


async def test_a_fork_continues_like_the_original_given_the_same_commands(
        tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    await record(path)
    with Recording.open(path) as rec:
        commands = rec.commands()
        original = rec.snapshot_at(30.0)
        scenario_ = rec.scenario
    session = ForkSession(open_run(scenario_, seed=4), commands, 13.0, paused=True)
    assert not session.apply(Command("undo")).ok  # still re-simulating
    await session.start()
    try:
        assert session.engine.now == 13.0
        for t, cmd in commands:
            if t >= 13.0 and cmd.at is None:
                session.advance(t - session.engine.now)
                session.apply(cmd)
            elif t >= 13.0:
                session.apply(cmd)
        session.advance(30.0 - session.engine.now)
        forked = session.latest
        assert forked is not None and forked.time == 30.0
        assert forked.nodes == original.nodes and forked.kpis == original.kpis
        assert forked.faults == original.faults
    finally:
        await session.close()


async def test_back_pressure_bounds_the_queue(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "run.db", high_water=2)
    run = open_run(scenario("mmc"), seed=1, record=rec)
    async with run:
        await run.advance(40.0)
    assert rec.backpressure_waits > 0
    assert rec.peak_pending <= 3 + 1  # high water, the slice that passed it, the closing bundle
    with Recording.open(rec.path) as r:
        assert len(r.times) == 41


async def test_a_recording_never_replaces_a_file(tmp_path: Path) -> None:
    path = tmp_path / "taken.db"
    path.write_text("mine")
    rec = Recorder(path)
    run = open_run(scenario("mmc"), seed=1, record=rec)
    with pytest.raises(RecorderError, match="already exists"):
        await run.start()
    assert path.read_text() == "mine"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_export_writes_every_series_event_and_command(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "run.db"
    live = await record(path, until=12.0, script=SCRIPT[:2])
    with Recording.open(path) as rec:
        files = export(rec, tmp_path, fmt)
        with pytest.raises(ExportError, match="already exists"):
            export(rec, tmp_path, fmt)
        assert export(rec, tmp_path, fmt, force=True) == files

    def rows(table: str) -> list[dict[str, object]]:
        f = tmp_path / f"run.{table}.{fmt}"
        with f.open() as fh:
            return list(csv.DictReader(fh)) if fmt == "csv" else \
                [json.loads(line) for line in fh]

    series = rows("series")
    final = live.snapshot()
    node_rows = {(r["node"], r["metric"]): r["value"] for r in series
                 if float(r["time"]) == 12.0}  # type: ignore[arg-type]
    for node in final.nodes:
        for metric, value in node.metrics().items():
            assert float(node_rows[(node.id, metric)]) == value  # type: ignore[arg-type]
    assert len({r["time"] for r in series}) == 13
    commands = rows("commands")
    assert [c["kind"] for c in commands] == ["kill_container", "traffic_spike"]
    params = commands[1]["params"]
    assert (json.loads(params) if isinstance(params, str) else params) == \
        {"duration": 10.0, "factor": 2.0}
    events = rows("events")
    assert any(e["kind"] == "fault" and "kill_container" in str(e["message"]) for e in events)
