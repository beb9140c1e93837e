"""The recorder fed snapshots (a viewer's): it re-simulates exactly with the whole command log,
marks what it missed, never waits for its writer, and makes the markers a run's recorder
makes.

The run is driven here as ``serve`` drives it — uneven slices, a snapshot after each and after
each command — and its commands are numbered and stamped by the server's own history keeper,
so these tests need no broker (tests/mqtt/test_record.py has the same through one)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from stackyard.core.engine import CommandError, Engine
from stackyard.core.feed_recorder import FeedRecorder
from stackyard.core.mqtt.history import Bounds, Keeper
from stackyard.core.protocol import Command, Snapshot
from stackyard.core.recorder import Recorder
from stackyard.core.recording import Recording, RecordingError
from stackyard.core.rerun import rerun
from stackyard.core.run import open_run
from stackyard.core.scenario import scenario_to_dict

from .conftest import scenario

SEED = 4
COMMANDS = {
    4.07: Command("kill_container", "app-1", origin="remote:ann"),
    9.5: Command("traffic_spike", "", {"factor": 2.0, "duration": 10.0}, origin="remote:bo"),
    12.61: Command("kill_db", "db-3", origin="remote:ann"),
    12.62: Command("kill_db", "db-3", origin="remote:ann"),  # refused: already down
    17.3: Command("undo", origin="key"),
}


class Served:
    """An engine driven like ``serve``'s: snapshots after uneven slices and after each command,
    commands stamped by the server's keeper, all fed to ``recorder``."""

    def __init__(self, recorder: FeedRecorder, engine: Engine) -> None:
        self.recorder = recorder
        self.engine = engine
        self.keeper = Keeper(Bounds())
        self.skip: set[int] = set()
        """Snapshot seqs not delivered (a link gap)."""

    def publish(self) -> Snapshot:
        snap = self.engine.snapshot()
        for a in self.keeper.log(self.engine.commands, snap.seq):
            self.recorder.command(a.n, a.time, a.command, a.seen)
        self.recorder.log_length(self.keeper.commands_total)
        if snap.seq not in self.skip:
            self.recorder.feed(snap, self.engine.now)
        return snap

    def run(self, until: float, step: float = 0.37) -> None:
        pending = sorted(COMMANDS.items())
        while self.engine.now < until:
            self.engine.run_until(min(until, self.engine.now + step))
            self.publish()
            while pending and pending[0][0] <= self.engine.now:
                _, cmd = pending.pop(0)
                try:
                    self.engine.apply(cmd)
                except CommandError:  # refusals are part of a real session
                    continue
                self.publish()


def fed(path: Path, engine: Engine, **kwargs: object) -> FeedRecorder:
    return FeedRecorder(path, scenario=engine.scenario, seed=engine.seed,
                        scenario_json=json.dumps(scenario_to_dict(engine.scenario)),
                        meta={"viewer": "test", "run_id": "r"}, **kwargs)  # type: ignore[arg-type]


async def test_a_fed_recording_reruns_exactly_and_skips_only_what_it_missed(
        tmp_path: Path) -> None:
    path = tmp_path / "fed.db"
    engine = Engine(scenario("default"), seed=SEED)
    rec = fed(path, engine)
    served = Served(rec, engine)
    rec.mark_live(served.publish())  # live from the first snapshot on
    await rec.open()
    served.skip = {40, 41, 42}  # a gap of three snapshots around 14 s
    served.run(30.0)
    forged = Snapshot(time=31.0, seq=10**6, scenario="forged", seed=SEED)
    assert not rec.feed(forged)
    await rec.close()
    assert (rec.gaps, rec.missed, rec.foreign, rec.snapshots_dropped) == (1, 3, 1, 0)
    with Recording.open(path) as r:
        meta = r.meta
        assert meta.source == "viewer" and meta.rows["viewer"] == "test"
        assert meta.rows["commands"] == "complete" and meta.rows["seq_gaps"] == "1"
        assert json.loads(meta.rows["seq_gap_list"])[0][1:] == [40, 42]
        # The bundle after going live may carry events from before it: whole from the next.
        assert meta.events_from == 2 and meta.end_time == r.times[-1] == 30.0
        # The first snapshot at or after each simulated second (one may have been all in the
        # gap), with its exact time on file.
        seconds = [int(t) for t in r.times]
        assert len(seconds) >= 29 and seconds == sorted(set(seconds)) and seconds[-1] == 30
        assert all(r.snapshot(i).time == round(t, 6) for i, t in enumerate(r.times))
        commands = r.commands_seen()
        assert [(t, c) for t, c, _ in commands] == engine.commands
        assert [c.origin for _, c, _ in commands].count("remote:ann") == 3
        gap = [e for _, e in r.all_events() if e.component == "recorder"]
        assert [e.kind for e in gap] == ["gap"] and "missed snapshots 40-42" in gap[0].message
        assert r.rerunnable() is None
        result = rerun(r)
    assert result.identical, result.divergence
    assert result.snapshots == len(seconds) and result.commands == len(engine.commands)
    assert result.events >= 10


async def test_a_fed_recording_diverges_where_a_command_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "fed.db"
    engine = Engine(scenario("default"), seed=SEED)
    rec = fed(path, engine)
    await rec.open()
    served = Served(rec, engine)
    served.run(20.0)
    await rec.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE commands SET data = replace(data, 'app-1', 'app-2') WHERE id = 1")
    db.commit()
    db.close()
    with Recording.open(path) as r:
        result = rerun(r)
    d = result.divergence
    assert d is not None and 4.0 < d.time < 6.0 and d.path.startswith("snapshot."), d
    # Without the first command the log is not whole: the file replays but does not rerun.
    db = sqlite3.connect(path)
    db.execute("DELETE FROM commands WHERE id = 1")
    db.commit()
    db.close()
    with Recording.open(path) as r:
        reason = r.rerunnable()
        total = len(engine.commands)
        assert reason is not None and \
            f"holds numbers 1-{total - 1} of the run's {total} commands" in reason
        with pytest.raises(RecordingError, match="cannot be re-simulated; 'stackyard serve "
                                                 "--record FILE' records a run that can"):
            rerun(r)


async def test_the_queue_is_bounded_and_what_was_dropped_is_on_file(tmp_path: Path) -> None:
    path = tmp_path / "fed.db"
    engine = Engine(scenario("default"), seed=SEED)
    rec = fed(path, engine, high_water=3)
    events = 0
    for _ in range(10):  # the writer is not running: nothing drains the queue
        engine.run_until(engine.now + 1.0)
        snap = engine.snapshot()
        events += len(snap.events)
        rec.feed(snap, engine.now)
    assert rec.kept == 3 and rec.snapshots_dropped == 7 and rec.pending == 3
    await rec.open()
    await rec.flush()
    engine.run_until(engine.now + 1.0)
    last = engine.snapshot()
    events += len(last.events)
    assert rec.feed(last, engine.now)
    await rec.close()
    with Recording.open(path) as r:
        assert len(r.times) == 4 and r.meta.rows["snapshots_dropped"] == "7"
        recorded = list(r.all_events())
        notes = [e for _, e in recorded if e.component == "recorder"]
        assert [e.message for e in notes] == ["7 snapshots not recorded before this one"]
        # The events of the snapshots dropped rode on the next one kept: none is lost.
        assert len(recorded) - len(notes) == events


async def test_fed_snapshots_make_the_slo_markers_a_run_recorder_makes(tmp_path: Path) -> None:
    spike = Command("traffic_spike", "", {"factor": 5.0, "duration": 10.0})
    by_engine = Recorder(tmp_path / "run.db")
    run = open_run(scenario("default"), seed=SEED, record=by_engine)
    async with run:
        await run.advance(5.0)
        run.engine.apply(spike)
        await run.advance(25.0)
    engine = Engine(scenario("default"), seed=SEED)
    rec = fed(tmp_path / "fed.db", engine)
    await rec.open()
    for t in range(31):
        engine.run_until(float(t))
        if t == 5:
            engine.apply(spike)
        rec.feed(engine.snapshot(), engine.now)
    await rec.close()
    with Recording.open(tmp_path / "run.db") as a, Recording.open(tmp_path / "fed.db") as b:
        slo = [m for m in a.markers() if m.kind == "slo"]
        assert slo and slo == [m for m in b.markers() if m.kind == "slo"]
