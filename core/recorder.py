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
"""

from __future__ import annotations

import asyncio
import contextlib
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
from stackyard.core.protocol import Event, encode
from stackyard.core.scenario import builtin_names, scenario_to_dict

if TYPE_CHECKING:
    from stackyard.core.engine import Engine

log = logging.getLogger(__name__)

APPLICATION_ID: Final = 0x53594152
"""``PRAGMA application_id`` of a recording ('SYAR'): tells it from any other SQLite file."""
FORMAT: Final = "stackyard-recording"
SCHEMA_VERSION: Final = 1
"""Bumped when a reader of an older version could not read the file correctly."""
INTERVAL: Final = 1.0
"""Simulated seconds between recorded snapshots."""
KEY_EVERY: Final = 60
"""A snapshot compressed on its own every this many; those between use it as a dictionary."""
HIGH_WATER: Final = 240
"""Bundles queued before the engine waits for the writer (about 2 MB of snapshots)."""
BATCH: Final = 64
"""Bundles per transaction at most."""
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
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,        -- simulated time it was applied
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    origin TEXT NOT NULL,      -- key, palette, file, remote:NAME
    data TEXT NOT NULL         -- the Command as JSON (at is null unless it was scheduled)
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


@dataclass
class Bundle:
    """What one sample adds to the file."""

    seq: int
    time: float
    snapshot: bytes | None
    """MessagePack of the snapshot (None: the closing bundle, events and commands only)."""
    events: list[tuple[int, float, str, str, str, str]] = field(default_factory=list)
    commands: list[tuple[float, str, str, str, str]] = field(default_factory=list)
    markers: list[tuple[float, str, str]] = field(default_factory=list)


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


class Recorder:
    """Records one engine's run to ``path`` (a new file).

    :meth:`attach` starts sampling (call it before the run starts to record it all; commands
    are taken from the engine's log, so even a late recorder can re-simulate); :meth:`open`
    creates the file and starts the writer; :meth:`close` writes what is left and closes it.
    A write that fails stops the recording and leaves the reason in :attr:`error`; the run
    goes on."""

    def __init__(self, path: Path, *, scenario_text: str = "", interval: float = INTERVAL,
                 high_water: int = HIGH_WATER) -> None:
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"interval: expected seconds > 0, got {interval!r}")
        self.path = Path(path)
        self.scenario_text = scenario_text
        self.interval = interval
        self.high_water = max(1, high_water)
        self.engine: Engine | None = None
        self.error: str | None = None
        self.samples = 0
        self.written = 0
        """Bundles committed so far."""
        self.backpressure_waits = 0
        self.peak_pending = 0
        self.events_lost = 0
        self._pending: deque[Bundle] = deque()
        self._events_seen = 0
        self._commands_seen = 0
        self._last_seq = -1
        self._attached_at = 0.0
        self._slo: deque[tuple[int, int]] = deque(maxlen=SLO_WINDOW + 1)
        self._breach = False
        self._db: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._compressor = _Compressor()

    # -- sampling (on the engine's thread, inside its run) ----------------------------------

    def attach(self, engine: Engine) -> None:
        """Sample ``engine`` from now on (its current state first, if now is a sample time)."""
        if self.engine is not None:
            raise RecorderError(f"{self.path}: the recorder is already attached to a run")
        self.engine = engine
        self._attached_at = engine.now
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
        self._slo_marker(engine, bundle)
        self._push(bundle)
        self.samples += 1

    def _collect(self, engine: Engine, bundle: Bundle) -> None:
        """The events and commands since the last bundle, and their markers."""
        fresh = engine.event_count - self._events_seen
        self._events_seen = engine.event_count
        if fresh > 0:
            kept = list(engine.events)[-fresh:] if fresh <= len(engine.events) \
                else list(engine.events)
            if fresh > len(kept):
                self.events_lost += fresh - len(kept)
                kept.insert(0, Event(time=engine.now, severity="warning", component="recorder",
                                     kind="events_lost",
                                     message=f"{fresh - len(kept)} events not recorded",
                                     why="more events in one sample than the engine keeps"))
            bundle.events = [(bundle.seq, e.time, e.severity, e.component, e.kind,
                              encode(e).decode()) for e in kept]
        log_ = engine.commands
        for t, cmd in log_[self._commands_seen:]:
            bundle.commands.append((t, cmd.kind, cmd.target, cmd.origin, encode(cmd).decode()))
            action = CATALOGUE.get(cmd.kind)
            kind = "fault" if action is not None and action.group == "fault" else "command"
            what = " ".join(p for p in (cmd.kind, cmd.target) if p)
            label = f"{what} ({cmd.origin})" if cmd.origin else what
            bundle.markers.append((t, kind, label[:MAX_LABEL]))
        self._commands_seen = len(log_)

    def _slo_marker(self, engine: Engine, bundle: Bundle) -> None:
        """A marker where the SLO's good ratio over the last SLO_WINDOW samples first falls
        below its target (and again only after it has recovered)."""
        slo = engine.world.slo
        if self._slo and slo.total < self._slo[-1][1]:
            self._slo.clear()  # counters were reset
        self._slo.append((slo.good, slo.total))
        good0, total0 = self._slo[0]
        total = slo.total - total0
        if total <= 0:
            return
        ratio = (slo.good - good0) / total
        if ratio < slo.target and not self._breach:
            self._breach = True
            span = (len(self._slo) - 1) * self.interval
            bundle.markers.append((bundle.time, "slo",
                                   f"SLO breach: {ratio:.1%} good over {span:g} s "
                                   f"(target {slo.target:.1%})"))
        elif ratio >= slo.target:
            self._breach = False

    def _push(self, bundle: Bundle) -> None:
        self._last_seq = bundle.seq
        self._pending.append(bundle)
        self.peak_pending = max(self.peak_pending, len(self._pending))
        self._drained.clear()
        self._wake.set()

    # -- the file ---------------------------------------------------------------------------

    def _meta(self) -> dict[str, str]:
        engine = self.engine
        assert engine is not None
        sc = engine.scenario
        return {
            "format": FORMAT,
            "schema": str(SCHEMA_VERSION),
            "stackyard_version": version(),
            "scenario_name": sc.run.name,
            "scenario_toml": self.scenario_text,
            "scenario_json": json.dumps(scenario_to_dict(sc), separators=(",", ":")),
            "seed": str(engine.seed),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "interval": repr(self.interval),
            "key_every": str(KEY_EVERY),
            "codec": "msgpack+zstd",
            "attached_at": repr(self._attached_at),
        }

    async def open(self) -> None:
        """Create the file, write its metadata and start the writer."""
        if self.engine is None:
            raise RecorderError(f"{self.path}: attach the recorder to a run first")
        if self._db is not None:
            return
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
            await db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            await db.executescript(SCHEMA)
            await db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                                 list(self._meta().items()))
            await db.commit()
        except sqlite3.Error as exc:
            raise RecorderError(f"{self.path}: cannot write: {exc}") from None
        self._db = db
        self._task = asyncio.create_task(self._writer(), name="stackyard-recorder")

    async def _writer(self) -> None:
        db = self._db
        assert db is not None
        try:
            while True:
                if not self._pending:
                    self._drained.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch = [self._pending.popleft()
                         for _ in range(min(BATCH, len(self._pending)))]
                rows = await asyncio.to_thread(self._compressor.rows, batch)
                await db.executemany(
                    "INSERT INTO snapshots (seq, time, ref, data) VALUES (?, ?, ?, ?)", rows)
                await db.executemany(
                    "INSERT INTO events (sample, time, severity, component, kind, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)", [e for b in batch for e in b.events])
                await db.executemany(
                    "INSERT INTO commands (time, kind, target, origin, data) "
                    "VALUES (?, ?, ?, ?, ?)", [c for b in batch for c in b.commands])
                await db.executemany(
                    "INSERT INTO markers (time, kind, label) VALUES (?, ?, ?)",
                    [m for b in batch for m in b.markers])
                await db.commit()
                self.written += len(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # disk full, file removed...: stop recording, keep running
            self._fail(f"{self.path}: recording stopped: {exc}")

    def _fail(self, message: str) -> None:
        log.error("%s", message)
        self.error = " ".join(message.split())
        if self.engine is not None:
            self.engine.sample_every(self.interval, None)
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
        self._wake.set()
        await self._drained.wait()

    async def close(self) -> None:
        """Write the events and commands since the last sample, mark the file complete and
        close it. Safe to call twice."""
        engine = self.engine
        if engine is not None and self.error is None:
            engine.sample_every(self.interval, None)
            bundle = Bundle(self._last_seq + 1, engine.now, None)
            self._collect(engine, bundle)
            if bundle.events or bundle.commands:
                self._push(bundle)
        db, self._db = self._db, None
        if db is None:
            return
        try:
            await self.flush()
            if self.error is None and engine is not None:
                await db.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [("end_time", repr(engine.now)),
                     ("ended_at", datetime.now(UTC).isoformat(timespec="seconds"))])
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
