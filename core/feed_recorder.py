"""A flight recorder fed snapshots as a viewer receives them, instead of sampling an engine.

``stackyard attach --record`` has no engine: it has the snapshots its session delivers (the
run's recent history first, then every live one), the commands the run applied (when the
server publishes them) and the commands this viewer sent. :class:`FeedRecorder` writes them in
the same file format as a run's recording, through the same :class:`~core.recorder.
RecordingWriter` (queue, compression, writer task, crash-safety), so ``replay`` and ``export``
read it unchanged:

- :meth:`~FeedRecorder.feed` keeps the first snapshot at or after each multiple of
  ``interval`` simulated seconds, with the events of every snapshot since the last one kept,
  and an SLO breach marker computed from the snapshots' KPIs exactly as a run's recorder
  computes it from the engine's counters;
- :meth:`~FeedRecorder.command` takes each command the run applied, numbered by its place in
  the run's log and with the ``seq`` of the first snapshot that showed it, so that a complete
  log re-simulates the run exactly (``rerun`` applies each command before the snapshot that
  first showed it);
- :meth:`~FeedRecorder.sent` takes this viewer's own commands with their replies.

A viewer must never wait for a disk: past ``high_water`` bundles waiting for the writer, new
snapshots are dropped (their events ride on the next one kept, up to ``max_carry``) and counted,
in the metadata and as a ``recorder`` event in the file. Gaps in the snapshots' ``seq`` once
live are noted the same way. Metadata that changes (counts, gaps, how much of the command log
the file holds) is written with the bundles, so a file cut short says what it had seen.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec
from msgspec.structs import replace

from stackyard.core.protocol import Command, Event, Reply, Snapshot, encode, finite
from stackyard.core.recorder import (
    FED_SCHEMA,
    HIGH_WATER,
    INTERVAL,
    Bundle,
    CommandRow,
    RecordingWriter,
    SentRow,
    SloWatch,
    command_marker,
    command_row,
    event_row,
)

if TYPE_CHECKING:
    from stackyard.core.config import Scenario

MAX_CARRY: Final = 20_000
"""Events (and as many commands and sent commands) held for the next bundle at most."""
MAX_GAPS_LISTED: Final = 100
"""Seq gaps listed one by one in the metadata (all are counted)."""

_MSGPACK = msgspec.msgpack.Encoder()


class FeedRecorder(RecordingWriter):
    """Records the snapshots it is fed to ``path`` (a new file).

    ``scenario`` and ``seed`` are the run's (a snapshot of another scenario or seed is not
    recorded); ``scenario_json`` is the scenario as the server described it, which the file
    keeps to re-simulate; ``meta`` adds to the file's metadata (where the snapshots come
    from). Open it (or feed it first: bundles wait in the queue), feed it, close it."""

    schema = FED_SCHEMA

    def __init__(self, path: Path, *, scenario: Scenario, scenario_json: str, seed: int,
                 scenario_text: str = "", meta: Mapping[str, str] | None = None,
                 interval: float = INTERVAL, high_water: int = HIGH_WATER,
                 max_carry: int = MAX_CARRY) -> None:
        super().__init__(path, interval=interval, high_water=high_water)
        self.scenario = scenario
        self.scenario_json = scenario_json
        self.scenario_text = scenario_text
        self.seed = seed
        self.extra = dict(meta or {})
        self.max_carry = max_carry
        self.kept = 0
        """Snapshots queued for the file."""
        self.snapshots_dropped = 0
        """Snapshots not recorded because the writer was behind."""
        self.events_dropped = 0
        self.sent_dropped = 0
        """This viewer's commands not recorded (more waited for the next snapshot than
        ``max_carry``)."""
        self.foreign = 0
        """Snapshots of another scenario or seed, or going back in time (not recorded)."""
        self.gaps = 0
        self.missed = 0
        """Jumps in ``seq`` once live, and the snapshots missed in them."""
        self.attached_at: float | None = None
        self.last_time: float | None = None
        """Simulated time of the newest snapshot recorded or fed."""
        self.commands_total = 0
        """Commands the run is known to have applied (its log's length as last told)."""
        self._next_command = 0
        """Every command numbered below it is held (the log's whole prefix)."""
        self._ahead: set[int] = set()
        """Numbers held above ``_next_command`` (past a hole)."""
        self._held = 0
        self.first_time: float | None = None
        """Simulated time of the first snapshot recorded."""
        self._last_k = -1
        self._live_seq: int | None = None
        self._live_pending = False
        self._dropping = 0
        self._events: list[Event] = []
        self._commands: list[tuple[CommandRow, float, Command]] = []
        self._sent: list[SentRow] = []
        self._meta_updates: dict[str, str] = {}
        self._gap_list: list[tuple[float, int, int]] = []
        self._slo = SloWatch(scenario.slo.target)
        self._closed = False

    # -- feeding (on the event loop's thread; never waits) ----------------------------------

    def mark_live(self, latest: Snapshot | None) -> None:
        """The snapshots fed after ``latest`` are live (those before were history): ``seq``
        gaps count from ``latest``, and events are whole from the bundle after the next one
        kept (the next may carry events from before the viewer went live, some missing)."""
        self.attached_at = latest.time if latest is not None else self.last_time
        self._live_pending = True
        self._live_seq = latest.seq if latest is not None else None
        if self.attached_at is not None:
            self._meta_updates["attached_at"] = repr(self.attached_at)

    def feed(self, snap: Snapshot, clock: float | None = None) -> bool:
        """Take a snapshot as it arrives; True if it is recorded (queued for the file).
        ``clock`` is the exact simulated time it was taken at, if known (``snap.time`` is
        rounded to the microsecond): the file keeps it, so a re-simulation stops there."""
        if self.error is not None or self._closed:
            return False
        t = clock if clock is not None and finite(clock) == snap.time else snap.time
        if snap.scenario != self.scenario.run.name or snap.seed != self.seed or \
                (self.last_time is not None and t < self.last_time):
            self.foreign += 1
            return False
        self._note_seq(snap)
        self._carry(snap.events)
        self.last_time = t
        k = math.floor(t / self.interval + 1e-9)
        if k <= self._last_k:
            return False
        if len(self._pending) >= self.high_water:
            self.snapshots_dropped += 1
            self._dropping += 1
            self._meta_updates["snapshots_dropped"] = str(self.snapshots_dropped)
            return False
        self._last_k = k
        if self.first_time is None:
            self.first_time = t
        bundle = Bundle(k, t, _MSGPACK.encode(replace(snap, events=())))
        if self._dropping:
            self._events.insert(0, Event(
                time=snap.time, severity="warning", component="recorder",
                kind="snapshots_dropped",
                message=f"{self._dropping} snapshots not recorded before this one",
                why="the disk fell behind and a viewer never waits for it"))
            self._dropping = 0
        kpis = snap.kpis
        total = kpis.completed + kpis.failed
        marker = self._slo.sample(snap.time, round(kpis.slo_good * total), total)
        self._fill(bundle)
        if marker is not None:
            bundle.markers.append(marker)
        if self._live_pending:
            self._live_pending = False
            # This bundle carries events from before the viewer went live; the next is whole.
            bundle.meta["events_from"] = str(k + 1)
        self._push(bundle)
        self.kept += 1
        return True

    def command(self, number: int, time: float, cmd: Command, seen: int) -> None:
        """The run applied ``cmd`` (the ``number``-th of its log, from 0) at ``time``; the
        snapshot with ``seq`` ``seen`` was the first to show it. In any order: one already
        held is ignored, and a hole left by a missed one is filled if it comes later."""
        if self._closed or number < self._next_command or number in self._ahead:
            return
        self.commands_total = max(self.commands_total, number + 1)
        if len(self._commands) >= self.max_carry or len(self._ahead) >= self.max_carry:
            return  # not held: the file says its log is incomplete
        self._held += 1
        if number == self._next_command:
            self._next_command += 1
            while self._next_command in self._ahead:
                self._ahead.remove(self._next_command)
                self._next_command += 1
        else:
            self._ahead.add(number)
        self._commands.append((command_row(time, cmd, number=number, seen=seen), time, cmd))

    def log_length(self, total: int) -> None:
        """The run's command log holds ``total`` commands (as the server last said)."""
        self.commands_total = max(self.commands_total, total)

    def sent(self, time: float, cmd: Command, reply: Reply) -> None:
        """This viewer sent ``cmd`` and got ``reply`` while showing simulated time ``time``."""
        if self._closed:
            return
        if len(self._sent) >= self.max_carry:
            self.sent_dropped += 1
            self._meta_updates["sent_dropped"] = str(self.sent_dropped)
            return
        self._sent.append((time, cmd.kind, cmd.target, int(reply.ok), encode(cmd).decode(),
                           encode(replace(reply, query=None)).decode()))

    def note(self, key: str, value: str) -> None:
        """Set a metadata entry with the next bundle."""
        self.extra[key] = value
        self._meta_updates[key] = value

    @property
    def commands_complete(self) -> bool:
        """Whether the file holds the run's whole command log as far as it is known."""
        return self._next_command >= self.commands_total

    # -- inside -----------------------------------------------------------------------------

    def _note_seq(self, snap: Snapshot) -> None:
        last = self._live_seq
        if self.attached_at is None:
            return
        self._live_seq = snap.seq
        if last is None or snap.seq == last + 1:
            return
        first, through = last + 1, snap.seq - 1
        self.gaps += 1
        self.missed += max(0, through - first + 1)
        if len(self._gap_list) < MAX_GAPS_LISTED:
            self._gap_list.append((snap.time, first, through))
        what = f"missed snapshots {first}-{through}" if snap.seq > last else \
            f"the snapshots' seq went back from {last} to {snap.seq}"
        self._events.append(Event(time=snap.time, severity="warning", component="recorder",
                                  kind="gap", message=f"{what}: their events may be missing",
                                  why="the link was down or slow"))
        self._meta_updates.update(seq_gaps=str(self.gaps), seq_missed=str(self.missed),
                                  seq_gap_list=json.dumps(self._gap_list))

    def _carry(self, events: tuple[Event, ...]) -> None:
        self._events.extend(events)
        over = len(self._events) - self.max_carry
        if over > 0:
            del self._events[:over]
            self.events_dropped += over
            self._meta_updates["events_dropped"] = str(self.events_dropped)
            self._events.insert(0, Event(time=self._events[0].time, severity="warning",
                                         component="recorder", kind="events_lost",
                                         message=f"{over} events not recorded",
                                         why="more events waited for the disk than a viewer "
                                             "keeps"))

    def _fill(self, bundle: Bundle) -> None:
        """Move what waits into ``bundle``: events, commands and their markers, sent
        commands and metadata."""
        bundle.events = [event_row(bundle.seq, e) for e in self._events]
        self._events = []
        first = self.first_time if self.first_time is not None else bundle.time
        for row, t, cmd in self._commands:
            bundle.commands.append(row)
            if t >= first:  # commands from before the file's start have no marker
                bundle.markers.append(command_marker(t, cmd))
        self._commands = []
        bundle.sent, self._sent = self._sent, []
        self._meta_updates["commands_total"] = str(self.commands_total)
        self._meta_updates["commands"] = "complete" if self.commands_complete else \
            f"incomplete: {self._held} of {self.commands_total}"
        bundle.meta, self._meta_updates = self._meta_updates, {}

    def _meta(self) -> dict[str, str]:
        attached = self.attached_at if self.attached_at is not None else self.last_time
        return {
            **self._base_meta(),
            **self.extra,
            "source": "viewer",
            "scenario_name": self.scenario.run.name,
            "scenario_toml": self.scenario_text,
            "scenario_json": self.scenario_json,
            "seed": str(self.seed),
            "attached_at": repr(attached if attached is not None else 0.0),
        }

    async def close(self) -> None:
        """Write what waits (events since the last snapshot kept, commands, sent commands and
        counts), mark the file complete and close it. Safe to call twice."""
        if self.error is None and not self._closed and self._db is not None:
            bundle = Bundle(self._last_k + 1, self.last_time or 0.0, None)
            self._fill(bundle)
            self._push(bundle)
        self._closed = True
        final = {"end_time": repr(self.last_time)} if self.last_time is not None else {}
        await self._finish(final)
