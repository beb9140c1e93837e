"""The flight recorder: a run's snapshots, events and commands, written to one SQLite file.

A :class:`Recorder` attaches to an engine (``open_run(record=...)`` does it; a session's run is
an engine too, so ``serve`` records the same way) and samples it at every multiple of
:data:`INTERVAL` simulated seconds through :meth:`Engine.sample_every`, which schedules
nothing: a recorded run is the same run. Each sample becomes one *bundle* — a snapshot, the
events and commands since the previous sample, and the markers they make — queued for an
asyncio writer task that compresses them in a worker thread and commits them with aiosqlite, so
the event loop (the TUI's) never waits on the disk. When the queue passes its high-water mark,
:meth:`relieve` (awaited between engine slices) makes the engine wait: back-pressure, not
unbounded memory. Each commit ends on a bundle boundary, so a file cut short by a crash ends
cleanly at its last sample.

The file is WAL-mode SQLite, readable with any SQLite tool (see :data:`SCHEMA`): snapshots as
msgspec MessagePack compressed with zstd, every ``KEY_EVERY``-th one on its own and the rest
against it as a dictionary (consecutive snapshots share most of their bytes, so this halves the
size); events and commands as the seam's JSON records beside plain columns to query; the
scenario as text and JSON and the seed, so the file alone re-simulates the run exactly.

The file side — creating it, the queue, compression, the writer task, back-pressure and
crash-safety — is :class:`RecordingWriter`, which :class:`Recorder` shares with
:class:`~core.feed_recorder.FeedRecorder`, the recorder fed snapshots as a viewer receives them
(``stackyard attach --record``) instead of sampling an engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import sqlite3
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Final

import aiosqlite
import msgspec
import zstandard

from stackyard.core import snapshot as views
from stackyard.core.catalogue import CATALOGUE
from stackyard.core.protocol import Command, Event, encode
from stackyard.core.scenario import builtin_names, scenario_to_dict

if TYPE_CHECKING:
    from stackyard.core.engine import Engine

log = logging.getLogger(__name__)

APPLICATION_ID: Final = 0x53594152
"""``PRAGMA application_id`` of a recording ('SYAR'): tells it from any other SQLite file."""
FORMAT: Final = "stackyard-recording"
SCHEMA_VERSION: Final = 2
"""The newest schema this stackyard reads. Bumped when a reader of an older version could not
read a file correctly; each file says the oldest schema that reads it right (``RUN_SCHEMA`` or
``FED_SCHEMA``), so a run's recording stays readable by the stackyard that introduced them."""
RUN_SCHEMA: Final = 1
"""A run's own recording: snapshots sampled on the grid of ``interval``."""
FED_SCHEMA: Final = 2
"""A viewer's recording: snapshots as they arrived (off the grid), each command with the
server's ``seq`` of the first snapshot that showed it, and the viewer's own commands."""
INTERVAL: Final = 1.0
"""Simulated seconds between recorded snapshots."""
KEY_EVERY: Final = 60
"""A snapshot compressed on its own every this many; those between use it as a dictionary."""
HIGH_WATER: Final = 240
"""Bundles queued before the engine waits for the writer (about 2 MB of snapshots)."""
BATCH: Final = 64
"""Bundles per transaction at most."""
GROUP: Final = 16
"""Bundles the writer waits for before it commits (each commit costs the engine thread hops)..."""
GROUP_WAIT: Final = 0.5
"""...or this many wall seconds after the first of them, whichever comes first: a killed
process loses at most this much of its recording."""
SLO_WINDOW: Final = 10
"""Samples over which the SLO is judged for breach markers."""
MAX_LABEL: Final = 120

SCHEMA: Final = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE snapshots (
    seq INTEGER PRIMARY KEY,   -- sample number: time = seq * interval
    time REAL NOT NULL,
    ref INTEGER,               -- the key snapshot this one is compressed against (NULL: a key)
    data BLOB NOT NULL         -- zstd(MessagePack(Snapshot)), events left out (see events)
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    sample INTEGER NOT NULL,   -- the snapshot it arrived with (emitted before that sample)
    time REAL NOT NULL,
    severity TEXT NOT NULL,
    component TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL         -- the Event as JSON
);
CREATE INDEX events_sample ON events (sample);
CREATE TABLE commands (
    id INTEGER PRIMARY KEY,    -- in a viewer's recording: the command's place in the run's log + 1
    time REAL NOT NULL,        -- simulated time it was applied
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    origin TEXT NOT NULL,      -- key, palette, file, remote:NAME
    data TEXT NOT NULL,        -- the Command as JSON (at is null unless it was scheduled)
    seen INTEGER               -- a viewer's recording: seq of the first snapshot showing it
);
CREATE TABLE sent (            -- a viewer's recording: the commands this viewer sent
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,        -- simulated time of the viewer's snapshot when answered
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    ok INTEGER NOT NULL,       -- 1 applied, 0 refused
    data TEXT NOT NULL,        -- the Command as JSON
    reply TEXT NOT NULL        -- the Reply as JSON
);
CREATE TABLE markers (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    kind TEXT NOT NULL,        -- command, fault or slo
    label TEXT NOT NULL
);
"""

_MSGPACK = msgspec.msgpack.Encoder()


class RecorderError(Exception):
    """The recording cannot be made; the message is one line naming the file."""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("stackyard")
    except PackageNotFoundError:
        return "unknown"


def source_text(name_or_path: str) -> str:
    """The TOML text of a built-in scenario or a scenario file ('' if it cannot be read)."""
    try:
        if name_or_path in builtin_names():
            pkg = resources.files("stackyard.core.scenarios")
            return pkg.joinpath(f"{name_or_path}.toml").read_text("utf-8")
        return Path(name_or_path).read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def check_path(path: Path) -> None:
    """Raise RecorderError unless a new recording can be created at ``path``."""
    if path.exists() or path.is_symlink():
        raise RecorderError(f"{path}: already exists; record to a new file")
    if not path.parent.is_dir():
        raise RecorderError(f"{path}: no such directory {str(path.parent)!r}")


CommandRow = tuple[int | None, float, str, str, str, str, int | None]
"""``commands`` row: id (None: the next), time, kind, target, origin, Command JSON, seen."""
SentRow = tuple[float, str, str, int, str, str]
"""``sent`` row: time, kind, target, ok, Command JSON, Reply JSON."""


@dataclass
class Bundle:
    """What one sample adds to the file, committed together."""

    seq: int
    time: float
    snapshot: bytes | None
    """MessagePack of the snapshot (None: the closing bundle, events and commands only)."""
    events: list[tuple[int, float, str, str, str, str]] = field(default_factory=list)
    commands: list[CommandRow] = field(default_factory=list)
    markers: list[tuple[float, str, str]] = field(default_factory=list)
    sent: list[SentRow] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    """Metadata to set with this bundle (so a file cut short says what it had seen)."""


def event_row(sample: int, e: Event) -> tuple[int, float, str, str, str, str]:
    return sample, e.time, e.severity, e.component, e.kind, encode(e).decode()


def command_row(t: float, cmd: Command, *, number: int | None = None,
                seen: int | None = None) -> CommandRow:
    return (None if number is None else number + 1, t, cmd.kind, cmd.target, cmd.origin,
            encode(cmd).decode(), seen)


def command_marker(t: float, cmd: Command) -> tuple[float, str, str]:
    """The marker a command makes: ``fault`` for a fault, else ``command``."""
    action = CATALOGUE.get(cmd.kind)
    kind = "fault" if action is not None and action.group == "fault" else "command"
    what = " ".join(p for p in (cmd.kind, cmd.target) if p)
    label = f"{what} ({cmd.origin})" if cmd.origin else what
    return t, kind, label[:MAX_LABEL]


class SloWatch:
    """Breach markers: where the SLO's good ratio over the last ``window`` samples first falls
    below its target (and again only after it has recovered), from the run's cumulative good
    and total request counts."""

    def __init__(self, target: float, window: int = SLO_WINDOW) -> None:
        self.target = target
        self._counts: deque[tuple[int, int, float]] = deque(maxlen=window + 1)
        self._breach = False

    def sample(self, t: float, good: int, total: int) -> tuple[float, str, str] | None:
        counts = self._counts
        if counts and total < counts[-1][1]:
            counts.clear()  # counters were reset
        counts.append((good, total, t))
        good0, total0, t0 = counts[0]
        done = total - total0
        if done <= 0:
            return None
        ratio = (good - good0) / done
        if ratio < self.target and not self._breach:
            self._breach = True
            return (t, "slo", f"SLO breach: {ratio:.1%} good over {t - t0:g} s "
                              f"(target {self.target:.1%})")
        if ratio >= self.target:
            self._breach = False
        return None


class _Compressor:
    """Key snapshots on their own, the ones between against the last key (in a worker
    thread: zstd releases the GIL)."""

    def __init__(self) -> None:
        self.plain = zstandard.ZstdCompressor(level=3, write_checksum=True)
        self.key_seq: int | None = None
        self.against: zstandard.ZstdCompressor | None = None

    def rows(self, batch: list[Bundle]) -> list[tuple[int, float, int | None, bytes]]:
        out: list[tuple[int, float, int | None, bytes]] = []
        for b in batch:
            if b.snapshot is None:
                continue
            if self.against is None or self.key_seq is None or b.seq % KEY_EVERY == 0 or \
                    b.seq - self.key_seq >= KEY_EVERY:
                self.key_seq = b.seq
                d = zstandard.ZstdCompressionDict(b.snapshot,
                                                  dict_type=zstandard.DICT_TYPE_RAWCONTENT)
                self.against = zstandard.ZstdCompressor(level=3, dict_data=d,
                                                        write_checksum=True)
                out.append((b.seq, b.time, None, self.plain.compress(b.snapshot)))
            else:
                out.append((b.seq, b.time, self.key_seq, self.against.compress(b.snapshot)))
        return out


_INSERT_SNAPSHOTS = "INSERT INTO snapshots (seq, time, ref, data) VALUES (?, ?, ?, ?)"
_INSERT_EVENTS = ("INSERT INTO events (sample, time, severity, component, kind, data) "
                  "VALUES (?, ?, ?, ?, ?, ?)")
_INSERT_COMMANDS = ("INSERT INTO commands (id, time, kind, target, origin, data, seen) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)")
_INSERT_MARKERS = "INSERT INTO markers (time, kind, label) VALUES (?, ?, ?)"
_INSERT_SENT = ("INSERT INTO sent (time, kind, target, ok, data, reply) "
                "VALUES (?, ?, ?, ?, ?, ?)")
_INSERT_META = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"


class RecordingWriter:
    """The file side of a recorder: creates ``path`` (a new file), takes :class:`Bundle` s on
    a queue and commits them from an asyncio task — compressed in a worker thread, written
    with aiosqlite, one transaction per batch ending on a bundle boundary, so a process killed
    at any moment leaves a file that reads up to its last commit. A write that fails stops the
    recording and leaves the reason in :attr:`error`; what is being recorded goes on.

    Subclasses say what the file holds (:meth:`_meta`) and fill the queue; how they bound it
    is theirs: :class:`Recorder` makes its engine wait (:meth:`relieve`), a fed recorder drops
    what does not fit and says so."""

    schema: int = RUN_SCHEMA
    """The oldest schema that reads this recorder's files right (``PRAGMA user_version``)."""

    def __init__(self, path: Path, *, interval: float = INTERVAL,
                 high_water: int = HIGH_WATER) -> None:
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"interval: expected seconds > 0, got {interval!r}")
        self.path = Path(path)
        self.interval = interval
        self.high_water = max(1, high_water)
        self.error: str | None = None
        self.written = 0
        """Bundles committed so far."""
        self.backpressure_waits = 0
        self.peak_pending = 0
        self._pending: deque[Bundle] = deque()
        self._db: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._hurry = 0  # flush() callers waiting: commit what there is at once
        self._compressor = _Compressor()

    # -- for subclasses ---------------------------------------------------------------------

    def _meta(self) -> dict[str, str]:
        """The metadata the file starts with; raises RecorderError if it cannot be made yet."""
        raise NotImplementedError

    def _stopped(self) -> None:
        """Called once when a write fails: stop producing bundles."""

    @property
    def pending(self) -> int:
        """Bundles waiting for the writer."""
        return len(self._pending)

    def _base_meta(self) -> dict[str, str]:
        return {
            "format": FORMAT,
            "schema": str(self.schema),
            "stackyard_version": version(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "interval": repr(self.interval),
            "key_every": str(KEY_EVERY),
            "codec": "msgpack+zstd",
        }

    def _push(self, bundle: Bundle) -> None:
        self._pending.append(bundle)
        self.peak_pending = max(self.peak_pending, len(self._pending))
        self._drained.clear()
        if len(self._pending) == 1 or len(self._pending) >= GROUP:
            self._wake.set()  # the first starts the writer's wait; a group ends it

    # -- the file ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the file, write its metadata and start the writer."""
        if self._db is not None:
            return
        meta = self._meta()
        try:
            with self.path.open("xb"):
                pass
        except FileExistsError:
            raise RecorderError(f"{self.path}: already exists; record to a new file") from None
        except OSError as exc:
            raise RecorderError(f"{self.path}: cannot create: {exc.strerror or exc}") from None
        try:
            db = await aiosqlite.connect(self.path)
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            await db.execute(f"PRAGMA user_version={self.schema}")
            await db.executescript(SCHEMA)
            await db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                                 list(meta.items()))
            await db.commit()
        except sqlite3.Error as exc:
            raise RecorderError(f"{self.path}: cannot write: {exc}") from None
        self._db = db
        self._task = asyncio.create_task(self._writer(db), name="stackyard-recorder")

    async def _writer(self, db: aiosqlite.Connection) -> None:
        # The connection is passed in: the task may first run after close() has taken
        # self._db (a recorder opened and closed without the loop turning in between).
        try:
            while True:
                if not self._pending:
                    self._drained.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if len(self._pending) < GROUP and not self._hurry:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), GROUP_WAIT)
                batch = [self._pending.popleft()
                         for _ in range(min(BATCH, len(self._pending)))]
                rows = await asyncio.to_thread(self._compressor.rows, batch)
                meta = {k: v for b in batch for k, v in b.meta.items()}
                for sql, values in (
                        (_INSERT_SNAPSHOTS, rows),
                        (_INSERT_EVENTS, [e for b in batch for e in b.events]),
                        (_INSERT_COMMANDS, [c for b in batch for c in b.commands]),
                        (_INSERT_MARKERS, [m for b in batch for m in b.markers]),
                        (_INSERT_SENT, [x for b in batch for x in b.sent]),
                        (_INSERT_META, list(meta.items()))):
                    if values:  # each call is a round trip to aiosqlite's thread
                        await db.executemany(sql, values)
                await db.commit()
                self.written += len(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # disk full, file removed...: stop recording, keep running
            self._fail(f"{self.path}: recording stopped: {exc}")
        finally:
            self._drained.set()  # however the writer ends, nobody waits for it forever

    def _fail(self, message: str) -> None:
        log.error("%s", message)
        self.error = " ".join(message.split())
        self._stopped()
        self._pending.clear()
        self._drained.set()

    async def relieve(self) -> None:
        """Between engine slices: wait for the writer while the queue is past high water."""
        if len(self._pending) > self.high_water and self._task is not None:
            self.backpressure_waits += 1
            await self.flush()
        else:
            await asyncio.sleep(0)

    async def flush(self) -> None:
        """Wait until every bundle so far is committed (or the recording has failed)."""
        if self._task is None or self._task.done():
            return
        self._hurry += 1
        try:
            self._wake.set()
            await self._drained.wait()
        finally:
            self._hurry -= 1

    async def _finish(self, final: dict[str, str]) -> None:
        """Write what is queued and the closing metadata (unless the recording failed), and
        close the file. Safe to call twice."""
        db, self._db = self._db, None
        if db is None:
            return
        try:
            await self.flush()
            if self.error is None:
                final = {**final, "ended_at": datetime.now(UTC).isoformat(timespec="seconds")}
                await db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                     list(final.items()))
                await db.commit()
        except sqlite3.Error as exc:
            self._fail(f"{self.path}: recording stopped: {exc}")
        finally:
            task, self._task = self._task, None
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await db.close()


class Recorder(RecordingWriter):
    """Records one engine's run to ``path`` (a new file).

    :meth:`attach` starts sampling (call it before the run starts to record it all; commands
    are taken from the engine's log, so even a late recorder can re-simulate); :meth:`open`
    creates the file and starts the writer; :meth:`close` writes what is left and closes it.
    Past ``high_water`` queued bundles the engine waits for the disk (:meth:`relieve`)."""

    def __init__(self, path: Path, *, scenario_text: str = "", interval: float = INTERVAL,
                 high_water: int = HIGH_WATER) -> None:
        super().__init__(path, interval=interval, high_water=high_water)
        self.scenario_text = scenario_text
        self.engine: Engine | None = None
        self.samples = 0
        self.events_lost = 0
        self._events_seen = 0
        self._commands_seen = 0
        self._last_seq = -1
        self._attached_at = 0.0
        self._slo: SloWatch | None = None

    # -- sampling (on the engine's thread, inside its run) ----------------------------------

    def attach(self, engine: Engine) -> None:
        """Sample ``engine`` from now on (its current state first, if now is a sample time)."""
        if self.engine is not None:
            raise RecorderError(f"{self.path}: the recorder is already attached to a run")
        self.engine = engine
        self._attached_at = engine.now
        self._slo = SloWatch(engine.world.slo.target)
        # From the start of the engine's event memory: all of a run attached before it starts.
        self._events_seen = max(0, engine.event_count - len(engine.events))
        engine.sample_every(self.interval, self._sample)

    def _sample(self, engine: Engine) -> None:
        if self.error is not None:
            return
        seq = round(engine.now / self.interval)
        snap = views.build(engine, seq, ())
        bundle = Bundle(seq, snap.time, _MSGPACK.encode(snap))
        self._collect(engine, bundle)
        assert self._slo is not None
        slo = engine.world.slo
        marker = self._slo.sample(bundle.time, slo.good, slo.total)
        if marker is not None:
            bundle.markers.append(marker)
        self._last_seq = bundle.seq
        self._push(bundle)
        self.samples += 1

    def _collect(self, engine: Engine, bundle: Bundle) -> None:
        """The events and commands since the last bundle, and their markers."""
        fresh = engine.event_count - self._events_seen
        self._events_seen = engine.event_count
        if fresh > 0:
            events = engine.events
            kept = list(itertools.islice(events, len(events) - fresh, None)) \
                if fresh <= len(events) else list(events)
            if fresh > len(kept):
                self.events_lost += fresh - len(kept)
                kept.insert(0, Event(time=engine.now, severity="warning", component="recorder",
                                     kind="events_lost",
                                     message=f"{fresh - len(kept)} events not recorded",
                                     why="more events in one sample than the engine keeps"))
            bundle.events = [event_row(bundle.seq, e) for e in kept]
        log_ = engine.commands
        for t, cmd in log_[self._commands_seen:]:
            bundle.commands.append(command_row(t, cmd))
            bundle.markers.append(command_marker(t, cmd))
        self._commands_seen = len(log_)

    def _stopped(self) -> None:
        if self.engine is not None:
            self.engine.sample_every(self.interval, None)

    # -- the file ---------------------------------------------------------------------------

    def _meta(self) -> dict[str, str]:
        engine = self.engine
        if engine is None:
            raise RecorderError(f"{self.path}: attach the recorder to a run first")
        sc = engine.scenario
        return {
            **self._base_meta(),
            "source": "run",
            "scenario_name": sc.run.name,
            "scenario_toml": self.scenario_text,
            "scenario_json": json.dumps(scenario_to_dict(sc), separators=(",", ":")),
            "seed": str(engine.seed),
            "attached_at": repr(self._attached_at),
        }

    async def close(self) -> None:
        """Write the events and commands since the last sample, mark the file complete and
        close it. Safe to call twice."""
        engine = self.engine
        if engine is not None and self.error is None:
            engine.sample_every(self.interval, None)
        if engine is not None and self.error is None and self._db is not None:
            bundle = Bundle(self._last_seq + 1, engine.now, None)
            self._collect(engine, bundle)
            if bundle.events or bundle.commands:
                self._push(bundle)
        await self._finish({"end_time": repr(engine.now)} if engine is not None else {})
