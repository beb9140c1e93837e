"""Reading a recording made by :mod:`core.recorder`: checked on opening, then random access.

:meth:`Recording.open` refuses anything that is not a complete-enough recording with one line
naming the file and what is wrong: a missing, empty, non-SQLite, truncated or damaged file, an
SQLite database of another application, a recording from a newer schema, or metadata that does
not describe a run. After that, :meth:`Recording.snapshot_at` finds the snapshot for any
simulated time by bisecting an in-memory index of sample times and reading one or two rows
(a key snapshot and the one compressed against it), so seeking costs the same anywhere in a long
recording. Reads are plain ``sqlite3`` calls of one indexed row each (well under a millisecond);
the writer, which is the side that must never hold the event loop up, uses aiosqlite.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec
import zstandard

from stackyard.core.config import Scenario, ScenarioError
from stackyard.core.protocol import (
    Command,
    Event,
    ProtocolError,
    Record,
    Reply,
    Snapshot,
    decode,
)
from stackyard.core.recorder import APPLICATION_ID, FED_SCHEMA, FORMAT, SCHEMA_VERSION
from stackyard.core.scenario import scenario_from_dict

MarkerKind = Literal["command", "fault", "slo"]
_HEADER = b"SQLite format 3\x00"
_SNAPSHOT = msgspec.msgpack.Decoder(Snapshot)
MAX_FRAME_BYTES = 64 * 1024 * 1024
"""A snapshot that decompresses to more than this is refused (a hostile file)."""


class RecordingError(Exception):
    """A file that cannot be read as a recording; the message is one line naming it."""


class Marker(Record, frozen=True, kw_only=True):
    """A moment worth jumping to: a command, a fault or the start of an SLO breach."""

    time: float
    kind: MarkerKind
    label: str


@dataclass(frozen=True)
class Meta:
    """What a recording says about itself."""

    schema: int
    stackyard_version: str
    scenario_name: str
    scenario_toml: str
    scenario_json: str
    seed: int
    started_at: str
    interval: float
    attached_at: float
    end_time: float | None
    """Simulated time the recorder was closed at (None: it was cut short, e.g. killed)."""
    source: Literal["run", "viewer"] = "run"
    """``run``: sampled from the engine; ``viewer``: the snapshots a viewer received."""
    events_from: int | None = None
    """A viewer's recording: the first sample whose events are whole (None: none is)."""
    rows: Mapping[str, str] = field(default_factory=dict)
    """Every metadata entry, as text (run id, broker, viewer, gaps... for a viewer's)."""


class Recording:
    """A recording opened for reading. Use :meth:`open`; close it (or use ``with``)."""

    def __init__(self, path: Path, db: sqlite3.Connection, meta: Meta, scenario: Scenario,
                 seqs: list[int], times: list[float]) -> None:
        self.path = path
        self.db = db
        self.meta = meta
        self.scenario = scenario
        self.seqs = seqs
        self.times = times
        """Sample numbers and simulated times of every snapshot, in order."""
        self._keys: dict[int, zstandard.ZstdDecompressor] = {}
        self._plain = zstandard.ZstdDecompressor()

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> Recording:
        """Open and check ``path``; raises RecordingError with one line if it is no use."""
        p = Path(path)
        _check_file(p)
        db = _connect(p)
        try:
            return cls._checked(p, db)
        except RecordingError:
            db.close()
            raise
        except sqlite3.Error as exc:
            db.close()
            raise _damaged(p, exc) from None

    @classmethod
    def _checked(cls, p: Path, db: sqlite3.Connection) -> Recording:
        try:
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc):
                raise RecordingError(f"{p}: not a stackyard recording ({_reason(exc)})") \
                    from None
            raise _damaged(p, exc) from None
        user_version = db.execute("PRAGMA user_version").fetchone()[0]
        if app_id != APPLICATION_ID:
            raise RecordingError(f"{p}: an SQLite database but not a stackyard recording")
        if user_version > SCHEMA_VERSION:
            raise RecordingError(f"{p}: recorded with schema version {user_version}; this "
                                 f"stackyard reads up to {SCHEMA_VERSION} (upgrade stackyard)")
        check = db.execute("PRAGMA quick_check(1)").fetchone()[0]
        if check != "ok":
            raise RecordingError(f"{p}: damaged ({' '.join(str(check).split())[:160]})")
        try:
            rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError:
            raise RecordingError(f"{p}: not a stackyard recording (no meta table)") from None
        meta = _meta(p, rows)
        try:
            data = json.loads(meta.scenario_json)
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            scenario = scenario_from_dict(data, "scenario")
        except (ValueError, ScenarioError) as exc:
            reason = " ".join(str(exc).split())[:160]
            raise RecordingError(f"{p}: meta.scenario_json: {reason}") from None
        if meta.source == "viewer":
            try:
                db.execute("SELECT seen FROM commands LIMIT 0")
                db.execute("SELECT time, data, reply FROM sent LIMIT 0")
            except sqlite3.OperationalError as exc:
                raise RecordingError(f"{p}: a viewer's recording without its tables "
                                     f"({_reason(exc)})") from None
        index = db.execute("SELECT seq, time FROM snapshots ORDER BY seq").fetchall()
        if not index:
            raise RecordingError(f"{p}: holds no snapshots (the recorder stopped before its "
                                 "first commit)")
        seqs = [int(s) for s, _ in index]
        times = [float(t) for _, t in index]
        if any(not math.isfinite(t) for t in times) or \
                any(b <= a for a, b in itertools.pairwise(times)):
            raise RecordingError(f"{p}: snapshots.time: expected increasing finite times")
        rec = cls(p, db, meta, scenario, seqs, times)
        rec.snapshot(len(seqs) - 1)  # the codec works, on the last one at least
        return rec

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the timeline -----------------------------------------------------------------------

    @property
    def start(self) -> float:
        return self.times[0]

    @property
    def end(self) -> float:
        return self.times[-1]

    def index_at(self, t: float) -> int:
        """The index of the snapshot showing simulated time ``t``: the last one at or before
        it (the first one for earlier times)."""
        return max(0, bisect.bisect_right(self.times, t + 1e-9) - 1)

    def snapshot_at(self, t: float) -> Snapshot:
        return self.snapshot(self.index_at(t))

    def snapshot(self, index: int) -> Snapshot:
        """Snapshot number ``index`` (0-based, in time order), without its events."""
        seq = self.seqs[index]
        try:
            row = self.db.execute("SELECT ref, data FROM snapshots WHERE seq = ?",
                                  (seq,)).fetchone()
            if row is None:
                raise RecordingError(f"{self.path}: snapshot {seq} is missing")
            ref, data = row
            raw = self._decompressor(ref).decompress(data, max_output_size=MAX_FRAME_BYTES)
            return _SNAPSHOT.decode(raw)
        except RecordingError:
            raise
        except sqlite3.Error as exc:
            raise _damaged(self.path, exc) from None
        except (zstandard.ZstdError, msgspec.DecodeError, msgspec.ValidationError,
                TypeError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:160]
            raise RecordingError(f"{self.path}: snapshot {seq} is damaged ({reason})") from None

    def _decompressor(self, ref: int | None) -> zstandard.ZstdDecompressor:
        if ref is None:
            return self._plain
        found = self._keys.get(ref)
        if found is not None:
            return found
        row = self.db.execute("SELECT ref, data FROM snapshots WHERE seq = ?",
                              (ref,)).fetchone()
        if row is None or row[0] is not None:
            raise RecordingError(f"{self.path}: key snapshot {ref} is missing")
        key = self._plain.decompress(row[1], max_output_size=MAX_FRAME_BYTES)
        d = zstandard.ZstdCompressionDict(key, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        if len(self._keys) >= 4:
            self._keys.pop(next(iter(self._keys)))
        found = self._keys[ref] = zstandard.ZstdDecompressor(dict_data=d)
        return found

    # -- events, commands, markers ----------------------------------------------------------

    def events(self, after: int, upto: int, limit: int = 1000) -> list[Event]:
        """The last ``limit`` events that arrived with samples ``after`` (excluded) to
        ``upto`` (included), oldest first."""
        rows = self._rows("SELECT data FROM events WHERE sample > ? AND sample <= ? "
                          "ORDER BY id DESC LIMIT ?", (after, upto, limit))
        return [self._record(Event, r[0], "events") for r in reversed(rows)]

    def all_events(self) -> Iterator[tuple[int, Event]]:
        """Every event with the sample it arrived with, in order."""
        for sample, data in self._rows("SELECT sample, data FROM events ORDER BY id", ()):
            yield int(sample), self._record(Event, data, "events")

    def commands(self) -> list[tuple[float, Command]]:
        """Every command the run applied, with the simulated time it applied at."""
        rows = self._rows("SELECT time, data FROM commands ORDER BY id", ())
        return [(float(t), self._record(Command, d, "commands")) for t, d in rows]

    def commands_seen(self) -> list[tuple[float, Command, int]]:
        """A viewer's recording: every command with the time it applied at and the ``seq`` of
        the first snapshot that showed it, in the order of the run's log."""
        rows = self._rows("SELECT time, data, seen FROM commands ORDER BY id", ())
        out = []
        for t, d, seen in rows:
            if not isinstance(seen, int):
                raise RecordingError(f"{self.path}: commands.seen: expected a snapshot seq, "
                                     f"got {str(seen)[:40]!r}")
            out.append((float(t), self._record(Command, d, "commands"), seen))
        return out

    def sent(self) -> list[tuple[float, Command, Reply]]:
        """A viewer's recording: the commands this viewer sent, each with its reply and the
        simulated time it showed when answered (empty for a run's recording)."""
        if self.meta.source != "viewer":
            return []
        rows = self._rows("SELECT time, data, reply FROM sent ORDER BY id", ())
        return [(float(t), self._record(Command, d, "sent"), self._record(Reply, r, "sent"))
                for t, d, r in rows]

    def rerunnable(self) -> str | None:
        """Why the file cannot be re-simulated exactly (None: it can). A run's recording
        always can; a viewer's only with the run's whole command log from its start."""
        meta = self.meta
        if meta.source != "viewer":
            return None
        rows = meta.rows
        what = (f"{self.path}: a viewer's recording ({rows.get('viewer', '?')} on run "
                f"{rows.get('run_id', '?')!r}, {clock(self.start)} to {clock(self.end)})")
        ids = self._rows("SELECT min(id), max(id), count(*) FROM commands", ())[0]
        first, last, count = ids
        try:
            total = int(rows.get("commands_total", ""))
        except ValueError:
            return (f"{self.path}: meta.commands_total: expected a count of commands, got "
                    f"{rows.get('commands_total', 'nothing')[:40]!r}")
        held = "none" if not count else f"numbers {first - 1}-{last - 1}"
        if total < 0 or count != total or (count and (first != 1 or last != count)):
            return (f"{what} that holds {held} of the run's {max(total, 0)} commands, not its "
                    "whole command log, so it replays and exports but cannot be re-simulated; "
                    "'stackyard serve --record FILE' records a run that can")
        return None

    def markers(self) -> list[Marker]:
        rows = self._rows("SELECT time, kind, label FROM markers ORDER BY time, id", ())
        out = []
        for t, kind, label in rows:
            if kind not in ("command", "fault", "slo") or not isinstance(label, str) or \
                    not isinstance(t, int | float):
                raise RecordingError(f"{self.path}: markers: unexpected row {kind!r}")
            out.append(Marker(time=float(t), kind=kind, label=label))
        return out

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise _damaged(self.path, exc) from None

    def _record(self, cls: Any, data: object, table: str) -> Any:
        if not isinstance(data, str | bytes):
            raise RecordingError(f"{self.path}: {table}.data: expected JSON text")
        try:
            return decode(cls, data)
        except ProtocolError as exc:
            raise RecordingError(f"{self.path}: {table}: {exc}") from None


# -- checks ----------------------------------------------------------------------------------


def _check_file(p: Path) -> None:
    try:
        if p.is_dir():
            raise RecordingError(f"{p}: is a directory, expected a recording")
        with p.open("rb") as f:
            head = f.read(len(_HEADER))
    except FileNotFoundError:
        raise RecordingError(f"{p}: no such file") from None
    except PermissionError:
        raise RecordingError(f"{p}: cannot read: permission denied") from None
    except OSError as exc:
        raise RecordingError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if not head:
        raise RecordingError(f"{p}: empty file, expected a stackyard recording")
    if head != _HEADER:
        raise RecordingError(f"{p}: not an SQLite file, expected a stackyard recording")


def _connect(p: Path) -> sqlite3.Connection:
    """Read-write without creating (so a crashed recorder's WAL is recovered), else
    read-only; nothing is ever written."""
    uri = p.resolve().as_uri()
    last: sqlite3.Error | None = None
    for mode in ("rw", "ro"):
        try:
            db = sqlite3.connect(f"{uri}?mode={mode}", uri=True)
            db.execute("PRAGMA query_only=1")
            return db
        except sqlite3.Error as exc:
            last = exc
    raise RecordingError(f"{p}: cannot open: {_reason(last)}")


def _reason(exc: BaseException | None) -> str:
    return " ".join(str(exc).split())[:160] if exc is not None else "unknown"


def _damaged(p: Path, exc: sqlite3.Error) -> RecordingError:
    return RecordingError(f"{p}: damaged or truncated ({_reason(exc)})")


def _meta(p: Path, rows: dict[Any, Any]) -> Meta:
    def text(key: str) -> str:
        value = rows.get(key)
        if not isinstance(value, str):
            raise RecordingError(f"{p}: meta.{key}: missing")
        return value

    def number(key: str, kind: type[int] | type[float]) -> Any:
        value = text(key)
        try:
            n = kind(value)
        except ValueError:
            raise RecordingError(f"{p}: meta.{key}: expected a number, got {value[:40]!r}") \
                from None
        if not math.isfinite(n):
            raise RecordingError(f"{p}: meta.{key}: expected a finite number")
        return n

    if rows.get("format") != FORMAT:
        raise RecordingError(f"{p}: not a stackyard recording (meta.format is "
                             f"{str(rows.get('format'))[:40]!r})")
    schema = number("schema", int)
    if schema > SCHEMA_VERSION:
        raise RecordingError(f"{p}: recorded with schema version {schema}; this stackyard "
                             f"reads up to {SCHEMA_VERSION} (upgrade stackyard)")
    interval = number("interval", float)
    if interval <= 0:
        raise RecordingError(f"{p}: meta.interval: expected seconds > 0")
    end = number("end_time", float) if "end_time" in rows else None
    source = rows.get("source", "run")
    if source not in ("run", "viewer"):
        raise RecordingError(f"{p}: meta.source: expected run or viewer, got "
                             f"{str(source)[:40]!r}")
    if source == "viewer" and schema < FED_SCHEMA:
        raise RecordingError(f"{p}: meta.schema: a viewer's recording has schema "
                             f"{FED_SCHEMA} or later, this one says {schema}")
    events_from = number("events_from", int) if "events_from" in rows else None
    return Meta(schema=schema, stackyard_version=text("stackyard_version"),
                scenario_name=text("scenario_name"), scenario_toml=text("scenario_toml"),
                scenario_json=text("scenario_json"), seed=number("seed", int),
                started_at=text("started_at"), interval=interval,
                attached_at=number("attached_at", float), end_time=end, source=source,
                events_from=events_from,
                rows={str(k): str(v) for k, v in rows.items()})


def clock(seconds: float) -> str:
    """``H:MM:SS`` of a simulated time."""
    s = int(max(0.0, seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
