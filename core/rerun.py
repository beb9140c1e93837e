"""Re-simulating a recording: check it reproduces exactly, or fork a live run from a moment.

A recording holds the scenario, the seed and every command with the simulated time it applied
at, which define the run. :func:`rerun` builds a fresh engine, applies the commands at their
times, samples it exactly where the recorder did and compares every snapshot and every event
with the recorded ones; the first difference is reported as a simulated time and a field path.
:class:`ForkSession` is a live session that first re-simulates a recording up to a moment, then
plays on in real time, so a user can take a different turn from there.

A viewer's recording (``attach --record``) holds the snapshots as the viewer received them,
each at the exact simulated time the server took it, and every command with the ``seq`` of the
first snapshot that showed it: :func:`rerun` applies each command before that snapshot and
compares every snapshot there, and the events of each sample the viewer received whole. It
re-simulates only with the run's whole command log (:meth:`Recording.rerunnable`).

Commands from the scenario file (origin ``file``) are not applied again: the engine schedules
them itself. A command logged with ``at`` set was scheduled and ran at that time (a failure
then is an event); one with ``at`` None applied as soon as it was sent (a failure then changes
nothing visible but the fault numbering), and is applied the same way here.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from stackyard.core import snapshot as views
from stackyard.core.engine import CommandError, Engine
from stackyard.core.protocol import Command, Event, Reply, Snapshot
from stackyard.core.recording import Recording, RecordingError
from stackyard.core.replay import clock
from stackyard.core.session import LocalSession

if TYPE_CHECKING:
    from stackyard.core.run import Run

SHOWN = 60
"""Characters of a differing value shown in a report."""


@dataclass(frozen=True)
class Divergence:
    """Where a re-simulation first differs from its recording."""

    time: float
    path: str
    recorded: str
    resimulated: str

    def line(self) -> str:
        return (f"diverges at {clock(self.time)} ({self.time:g} s simulated): {self.path}: "
                f"recorded {self.recorded}, re-simulated {self.resimulated}")


@dataclass(frozen=True)
class RerunResult:
    snapshots: int
    events: int
    commands: int
    start: float
    end: float
    divergence: Divergence | None = None

    @property
    def identical(self) -> bool:
        return self.divergence is None


class _Diverged(Exception):
    def __init__(self, divergence: Divergence) -> None:
        super().__init__(divergence.line())
        self.divergence = divergence


def replayable(commands: Iterable[tuple[float, Command]]) -> list[tuple[float, Command]]:
    """The commands to apply again: all but the scenario file's own."""
    return [(t, c) for t, c in commands if c.origin != "file"]


def apply_logged(engine: Engine, t: float, cmd: Command) -> None:
    """Apply a logged command the way it was applied: scheduled for ``t``, or at ``t`` at once
    (the engine must not be past ``t``)."""
    if cmd.at is not None and engine.now < cmd.at:
        try:
            engine.apply(cmd)
        except CommandError as exc:
            raise CommandError(f"command {cmd.kind} at {t:g} s: {exc}") from exc
        return
    engine.run_until(t)
    # A failure failed in the recorded run too (and changed nothing but fault numbering).
    with contextlib.suppress(CommandError):
        engine.apply(cmd)


# -- checking ---------------------------------------------------------------------------------


def rerun(rec: Recording, progress: Callable[[float], None] | None = None) -> RerunResult:
    """Re-simulate ``rec`` and compare it with what was recorded, up to where it ends.
    RecordingError if the file cannot be re-simulated (a viewer's without the whole log)."""
    reason = rec.rerunnable()
    if reason is not None:
        raise RecordingError(reason)
    if rec.meta.source == "viewer":
        return _rerun_received(rec, progress)
    meta = rec.meta
    engine = Engine(rec.scenario, seed=meta.seed)
    by_sample: dict[int, list[Event]] = {}
    recorded_events = 0
    for number, event in rec.all_events():
        by_sample.setdefault(number, []).append(event)
        recorded_events += 1
    frames = {seq: i for i, seq in enumerate(rec.seqs)}
    first = rec.seqs[0]
    state = {"seen": 0, "checked": 0}
    span = max(rec.end - rec.start, 1e-9)

    def new_events() -> list[Event]:
        fresh = engine.event_count - state["seen"]
        state["seen"] = engine.event_count
        return list(engine.events)[-fresh:] if fresh > 0 else []

    def sample(e: Engine) -> None:
        seq = round(e.now / meta.interval)
        events = new_events()
        if seq < first:
            return
        index = frames.get(seq)
        if index is None:
            raise _Diverged(Divergence(e.now, "snapshot", "nothing", f"a snapshot (#{seq})"))
        _compare(e.now, "snapshot", rec.snapshot(index), views.build(e, seq, ()))
        if seq > first or meta.attached_at == 0:
            _compare(e.now, "events", by_sample.get(seq, []), events)
        state["checked"] += 1
        if progress is not None:
            progress((e.now - rec.start) / span)

    stop = rec.end if meta.end_time is None else max(rec.end, meta.end_time)
    commands = [(t, c) for t, c in replayable(rec.commands()) if t <= stop]
    try:
        engine.sample_every(meta.interval, sample)
        for t, cmd in commands:
            apply_logged(engine, t, cmd)
        engine.run_until(rec.end)
        engine.sample_every(meta.interval, None)
        if meta.end_time is not None:
            engine.run_until(stop)
            closing = by_sample.get(rec.seqs[-1] + 1, [])
            _compare(engine.now, "events", closing, new_events())
    except _Diverged as exc:
        return RerunResult(state["checked"], recorded_events, len(commands), rec.start,
                           rec.end, exc.divergence)
    except CommandError as exc:
        return RerunResult(state["checked"], recorded_events, len(commands), rec.start,
                           rec.end, Divergence(engine.now, "commands", "applied", str(exc)))
    return RerunResult(state["checked"], recorded_events, len(commands), rec.start, rec.end)


def _rerun_received(rec: Recording,
                    progress: Callable[[float], None] | None) -> RerunResult:
    """A viewer's recording: each snapshot where the server took it, each command before the
    first snapshot that showed it; events only for samples the viewer received whole (from
    ``events_from``, without a ``recorder`` event saying something is missing)."""
    engine = Engine(rec.scenario, seed=rec.meta.seed)
    commands = [(t, c, seen) for t, c, seen in rec.commands_seen() if c.origin != "file"]
    by_sample: dict[int, list[Event]] = {}
    for number, event in rec.all_events():
        by_sample.setdefault(number, []).append(event)
    events_from = rec.meta.events_from
    span = max(rec.end - rec.start, 1e-9)
    checked = compared = applied = 0
    mark = engine.event_count
    try:
        for index, (seq, t) in enumerate(zip(rec.seqs, rec.times, strict=True)):
            recorded = rec.snapshot(index)
            while applied < len(commands) and commands[applied][2] <= recorded.seq:
                at, cmd, _ = commands[applied]
                if not (math.isfinite(at) and at <= t + 1e-9):  # never run past the snapshot
                    raise RecordingError(
                        f"{rec.path}: commands: {cmd.kind} at {at:g} s is shown first by the "
                        f"snapshot at {t:g} s, which is earlier: the file is damaged")
                apply_logged(engine, at, cmd)
                applied += 1
            engine.run_until(t)
            _compare(t, "snapshot", recorded, views.build(engine, recorded.seq, ()))
            fresh, mark = engine.event_count - mark, engine.event_count
            got = by_sample.get(seq, [])
            if events_from is not None and seq >= events_from and fresh <= len(engine.events) \
                    and not any(e.component == "recorder" for e in got):
                _compare(t, "events", got, list(engine.events)[-fresh:] if fresh else [])
                compared += len(got)
            checked += 1
            if progress is not None:
                progress((t - rec.start) / span)
    except _Diverged as exc:
        return RerunResult(checked, compared, len(commands), rec.start, rec.end, exc.divergence)
    except CommandError as exc:
        return RerunResult(checked, compared, len(commands), rec.start, rec.end,
                           Divergence(engine.now, "commands", "applied", str(exc)))
    return RerunResult(checked, compared, len(commands), rec.start, rec.end)


def _compare(t: float, what: str, recorded: Snapshot | list[Event],
             resimulated: Snapshot | list[Event]) -> None:
    if recorded == resimulated:
        return
    found = first_difference(msgspec.to_builtins(recorded), msgspec.to_builtins(resimulated))
    path, a, b = found if found is not None else ("", recorded, resimulated)
    raise _Diverged(Divergence(t, f"{what}{path}", _shown(a), _shown(b)))


def first_difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The path of the first difference between two plain structures and the two values there
    (None when equal); items of lists with ids are named by id: ``nodes[app-3].queue``."""
    if type(a) is not type(b):
        return path, a, b
    if isinstance(a, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            if key not in a or key not in b:
                return f"{path}.{key}", a.get(key, "nothing"), b.get(key, "nothing")
            found = first_difference(a[key], b[key], f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(a, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            name = x.get("id") if isinstance(x, dict) and isinstance(x.get("id"), str) else i
            found = first_difference(x, y, f"{path}[{name}]")
            if found is not None:
                return found
        if len(a) != len(b):
            return f"{path}.length", len(a), len(b)
        return None
    return None if a == b else (path, a, b)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


# -- forking ---------------------------------------------------------------------------------


async def resimulate_to(run: Run, commands: Iterable[tuple[float, Command]], at: float,
                        publish: Callable[[], None] | None = None) -> None:
    """Bring ``run`` (fresh) to simulated time ``at`` with the commands applied before it,
    letting its storage and recorder keep up and publishing a snapshot now and then."""
    engine = run.engine
    for t, cmd in commands:
        if t >= at:
            break
        await _advance_to(run, t, publish)
        apply_logged(engine, t, cmd)
    await _advance_to(run, at, publish)


async def _advance_to(run: Run, t: float, publish: Callable[[], None] | None) -> None:
    engine = run.engine
    slices = 0
    while engine.now < t:
        engine.run_until(min(t, engine.now + 1.0))
        await run.relieve()
        slices += 1
        if publish is not None and slices % 5 == 0:
            publish()


class ForkSession(LocalSession):
    """A live session on a fresh run of a recording's scenario and seed that, when started,
    re-simulates the recording up to ``at`` and plays on in real time from there."""

    def __init__(self, run: Run, commands: list[tuple[float, Command]], at: float,
                 **kwargs: Any) -> None:
        super().__init__(run, **kwargs)
        self.fork_at = at
        self._commands = replayable(commands)
        self.forked = False

    async def start(self) -> None:
        if not self.forked:
            await self.run.start()
            await resimulate_to(self.run, self._commands, self.fork_at, self.driver.publish)
            self.forked = True
            self.driver.publish()
        await super().start()

    def apply(self, command: Command) -> Reply:
        if not self.forked:
            reply = Reply(ok=False, id=command.id, kind=command.kind,
                          error=f"{command.kind}: still re-simulating to "
                                f"{clock(self.fork_at)}; try again in a moment")
            self.sent.append((command, reply))
            return reply
        return super().apply(command)
