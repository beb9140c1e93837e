"""Playing a recording back through the ordinary :class:`~core.session.Session` seam.

:class:`ReplaySession` feeds a viewer the recorded snapshots (each with the events recorded
with it) as if the run were live, paced against wall time like the real-time driver. It accepts
the driver's own commands from the catalogue — pause, resume, speed, step — and three of its
own: ``seek`` (to a simulated time), ``skip`` (by some seconds) and ``jump`` (to the next or
previous marker: a command, a fault, the start of an SLO breach). Faults and controls are not in
its catalogue, so a viewer offers no keys for them; one sent anyway is refused with the reason.
:attr:`ReplaySession.timeline` (a :class:`Timeline` record) is what a scrubber draws.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import time as _time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace as dc_replace
from typing import Protocol, runtime_checkable

from msgspec.structs import replace

from stackyard.core.commands import Action, CommandError, Key, Param, catalogue_info
from stackyard.core.controls import DRIVER
from stackyard.core.protocol import (
    ActionInfo,
    Command,
    DriverStatus,
    QueryResult,
    Record,
    Reply,
    RunSummary,
    Scalar,
    Snapshot,
    show,
)
from stackyard.core.realtime import clamp_speed
from stackyard.core.recording import Marker, Recording, RecordingError, clock
from stackyard.core.session import SessionError, Subscriber, Subscribers

__all__ = ["Marker", "ReplaySession", "Timeline", "TimelineSource", "clock"]

CONTEXT = 120
"""Samples of events shown for context after a jump (the log is started afresh)."""
MAX_EVENTS = 500
"""Events handed over with one snapshot at most (playing fast skips many samples)."""
MAX_CHOICES = 1000
"""Markers the palette lists by name (keys reach every one)."""
SKIP = 1e7
"""Largest skip in seconds, either way."""


class Timeline(Record, frozen=True, kw_only=True):
    """Where a replay stands: the recorded span, the playhead and the markers."""

    start: float
    end: float
    position: float
    """The playhead (simulated seconds); the snapshot shown is the last one at or before it."""
    shown: float
    """Simulated time of the snapshot shown."""
    markers: tuple[Marker, ...] = ()


@runtime_checkable
class TimelineSource(Protocol):
    """A session with a timeline (a replay): viewers show a scrubber for it."""

    @property
    def timeline(self) -> Timeline: ...


# -- the catalogue ---------------------------------------------------------------------------


def _step(player: ReplaySession, p: Mapping[str, Scalar]) -> str:
    player.step(float(p["seconds"]))
    return f"{player.position:g}"


def _seek(player: ReplaySession, p: Mapping[str, Scalar]) -> str:
    player.seek(float(p["time"]))
    return ""


def _skip(player: ReplaySession, p: Mapping[str, Scalar]) -> str:
    player.seek(player.position + float(p["by"]))
    return ""


def _jump(player: ReplaySession, p: Mapping[str, Scalar]) -> str:
    return player.jump(str(p["to"]))


def _replay_now(player: ReplaySession) -> Mapping[str, Scalar]:
    return {"paused": player.paused, "x": player.speed, "time": player.position}


def actions_for(rec: Recording, labels: tuple[str, ...]) -> dict[str, Action]:
    """The replay's catalogue: the driver's pause, resume, speed and step, then seek, skip and
    jump (markers named by ``labels``)."""
    span = rec.end - rec.start
    presets = tuple(dict.fromkeys(round(rec.start + span * f, 3)
                                  for f in (0.0, 0.25, 0.5, 0.75, 1.0)))
    out = {name: dc_replace(DRIVER[name], current=_replay_now)
           for name in ("pause", "resume", "speed")}
    out["step"] = dc_replace(DRIVER["step"], apply=_step, current=_replay_now)
    for action in (
        Action("seek", "driver", "move the playhead to a simulated time", _seek,
               params=(Param("time", min=0.0, max=rec.end, unit="s", required=True,
                             presets=presets),),
               phrase="seek to {time}", current=_replay_now),
        Action("skip", "driver", "move the playhead by some simulated seconds", _skip,
               params=(Param("by", min=-SKIP, max=SKIP, unit="s", required=True,
                             presets=(-60.0, -10.0, 10.0, 60.0)),),
               keys=(Key("<", "-10s", params={"by": -10.0}, footer=True),
                     Key(">", "+10s", params={"by": 10.0}, footer=True),
                     Key("{", "-1m", params={"by": -60.0}),
                     Key("}", "+1m", params={"by": 60.0})),
               phrase="skip {by}", current=_replay_now),
        Action("jump", "driver", "move the playhead to the next or previous marker "
               "(a command, a fault, an SLO breach)", _jump,
               params=(Param("to", "choice", choices=labels[:MAX_CHOICES], required=True),),
               keys=(Key("]", "mark+", params={"to": "next"}, footer=True),
                     Key("[", "mark-", params={"to": "previous"}, footer=True)),
               phrase="jump to {to}", current=_replay_now),
    ):
        out[action.name] = action
    return out


def _labels(markers: list[Marker]) -> tuple[str, ...]:
    seen: dict[str, int] = {}
    out = []
    for m in markers:
        text = f"{clock(m.time)} {m.kind} {m.label}"
        n = seen[text] = seen.get(text, 0) + 1
        out.append(text if n == 1 else f"{text} #{n}")
    return tuple(out)


# -- the session -----------------------------------------------------------------------------


class ReplaySession:
    """A :class:`~core.session.Session` that plays a :class:`Recording` back."""

    def __init__(self, rec: Recording, *, speed: float = 1.0, paused: bool = False,
                 at: float | None = None, publish_hz: float = 5.0,
                 clock: Callable[[], float] = _time.perf_counter,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.rec = rec
        self.markers = rec.markers()
        self.labels = _labels(self.markers)
        self._actions = actions_for(rec, self.labels)
        self._catalogue = catalogue_info(self._actions)
        self._speed = clamp_speed(speed)
        self._paused = paused
        self.period = 1.0 / publish_hz
        self._clock = clock
        self._sleep = sleep
        self.position = rec.start if at is None else self._clamp(at)
        self.problem: str | None = None
        """Why playback stopped early (a damaged snapshot), else None."""
        try:
            unforkable = rec.rerunnable()
        except RecordingError as exc:  # a damaged command log: it plays, it does not fork
            unforkable = str(exc)
        self.forkable = unforkable is None
        """Whether ``rerun --from`` can fork a live run from this recording."""
        self.sent: list[tuple[Command, Reply]] = []
        self._subscribers = Subscribers()
        self._latest: Snapshot | None = None
        self._index = -1
        self._seq = 0
        self._task: asyncio.Task[None] | None = None
        self._show(jumped=True)

    # -- the Session interface --------------------------------------------------------------

    @property
    def latest(self) -> Snapshot | None:
        return self._latest

    @property
    def status(self) -> DriverStatus:
        return DriverStatus(paused=self._paused, speed=self._speed,
                            achieved=0.0 if self._paused else self._speed, behind=False,
                            replay=True)

    @property
    def catalogue(self) -> tuple[ActionInfo, ...]:
        return self._catalogue

    @property
    def timeline(self) -> Timeline:
        shown = self._latest.time if self._latest is not None else self.rec.start
        return Timeline(start=self.rec.start, end=self.rec.end, position=self.position,
                        shown=shown, markers=tuple(self.markers))

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        return self._subscribers.add(callback)

    def apply(self, command: Command) -> Reply:
        """Apply a driver command now; anything else is refused (this is a recording)."""
        action = self._actions.get(command.kind)
        try:
            if action is None:
                fork = f"; 'stackyard rerun {self.rec.path.name} --from " \
                    f"{clock(self.position)}' forks a live run from here" if self.forkable \
                    else " (and this recording cannot fork a live run: 'stackyard rerun " \
                    f"{self.rec.path.name}' says why)"
                raise CommandError(f"{command.kind}: this is a replay, so faults and controls "
                                   f"are off{fork}")
            if command.target:
                raise CommandError(f"{command.kind}.target: expected no target, got "
                                   f"{show(command.target)}")
            if command.kind == "jump":
                to = command.params.get("to")
                if not isinstance(to, str) or set(command.params) != {"to"}:
                    raise CommandError(f"jump.to: expected next, previous or a marker, got "
                                       f"{show(to)}")
                result = self.jump(to)
            else:
                params = action.resolve(command.params, self)
                result = str(action.apply(self, params))
        except CommandError as exc:
            reply = Reply(ok=False, id=command.id, kind=command.kind, error=str(exc))
        else:
            reply = Reply(ok=True, id=command.id, kind=command.kind, result=result)
        self.sent.append((command, reply))
        return reply

    async def send(self, command: Command) -> Reply:
        return self.apply(command)

    async def query(self, node: str, sql: str) -> QueryResult:
        if not self.forkable:
            raise SessionError("a replay keeps no SQL data")
        raise SessionError("a replay keeps no SQL data; 'stackyard rerun FILE --from T' forks "
                           "a live run that does")

    async def summary(self) -> RunSummary:
        raise SessionError("a replay keeps no run summary; 'stackyard rerun FILE' re-simulates "
                           "the run and prints it")

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="stackyard-replay")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._subscribers.clear()
        self.rec.close()

    # -- the player's controls (what the catalogue's actions call) --------------------------

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def speed(self) -> float:
        return self._speed

    def pause(self) -> None:
        self._paused = True
        self._publish_again()

    def resume(self) -> None:
        if self.position >= self.rec.end:
            self.position = self.rec.start  # at the end, play starts over
            self._show(jumped=True)
        self._paused = False
        self._publish_again()

    def set_speed(self, speed: float) -> float:
        self._speed = clamp_speed(speed)
        self._publish_again()
        return self._speed

    def step(self, seconds: float) -> None:
        """Pause, then move ``seconds`` forward (the snapshots between play as usual)."""
        self._paused = True
        self.position = self._clamp(self.position + seconds)
        self._show(jumped=False)

    def seek(self, t: float) -> None:
        """Move the playhead to simulated time ``t`` (clamped to the recording)."""
        if not math.isfinite(t):
            raise CommandError(f"seek.time: expected a finite time, got {show(t)}")
        target = self._clamp(t)
        ahead = 0 <= self.rec.index_at(target) - self._index <= 1
        self.position = target
        self._show(jumped=not ahead)

    def jump(self, to: str) -> str:
        """Seek to the next or previous marker, or the one labelled ``to``; returns its label."""
        if not self.markers:
            raise CommandError("jump: this recording has no markers")
        if to in ("next", "previous"):
            times = [self._marker_time(m) for m in self.markers]
            if to == "next":
                found = [i for i, t in enumerate(times) if t > self.position + 1e-6]
                i = found[0] if found else None
            else:
                found = [i for i, t in enumerate(times) if t < self.position - 1e-6]
                i = found[-1] if found else None
            if i is None:
                where = "after" if to == "next" else "before"
                raise CommandError(f"jump: no marker {where} {clock(self.position)}")
        elif to in self.labels:
            i = self.labels.index(to)
        else:
            raise CommandError(f"jump.to: expected next, previous or a marker, got {show(to)}")
        self.seek(self._marker_time(self.markers[i]))
        return self.labels[i]

    def _marker_time(self, m: Marker) -> float:
        """Where a marker is seen: a command applies just after its instant's snapshot, so
        the first snapshot after it shows its effect; an SLO marker is its own snapshot."""
        if m.kind == "slo":
            return m.time
        times = self.rec.times
        i = bisect.bisect_right(times, m.time)
        return times[i] if i < len(times) else times[-1]

    def _clamp(self, t: float) -> float:
        return min(self.rec.end, max(self.rec.start, t))

    # -- publishing -------------------------------------------------------------------------

    def _show(self, *, jumped: bool) -> None:
        """Publish the snapshot at the playhead with the events since the one shown before
        (after a jump: the events of the last CONTEXT samples); the same snapshot again when
        only the playhead or the status moved."""
        index = self.rec.index_at(self.position)
        if index == self._index and self._latest is not None:
            self._publish_again()
            return
        seqs = self.rec.seqs
        upto = seqs[index]
        after = upto - CONTEXT if jumped or index < self._index or self._index < 0 \
            else seqs[self._index]
        if 0 <= self._index < index:
            after = max(after, seqs[self._index])
        if index == 0:
            after = -1
        try:
            snap = self.rec.snapshot(index)
            events = self.rec.events(after, upto, MAX_EVENTS)
        except RecordingError as exc:
            self.problem = str(exc)
            self._paused = True
            self._publish_again()
            return
        self._index = index
        self._seq += 1
        self._publish(replace(snap, seq=self._seq, events=tuple(events)))

    def _publish_again(self) -> None:
        if self._latest is not None:
            self._publish(replace(self._latest, events=()))

    def _publish(self, snap: Snapshot) -> None:
        self._latest = snap
        self._subscribers.publish(snap)

    async def _run(self) -> None:
        last = self._clock()
        while True:
            await self._sleep(self.period)
            now = self._clock()
            elapsed, last = now - last, now
            if self._paused:
                continue
            self.position = min(self.rec.end, self.position + elapsed * self._speed)
            if self.position >= self.rec.end:
                self._paused = True
            self._show(jumped=False)

    def advance(self, wall_seconds: float) -> None:
        """Play ``wall_seconds`` of wall time at once (for tests and scripts)."""
        if not self._paused:
            self.position = min(self.rec.end, self.position + wall_seconds * self._speed)
            if self.position >= self.rec.end:
                self._paused = True
            self._show(jumped=False)

