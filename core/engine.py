"""The engine: builds a world from a scenario and drives it; the only thing viewers talk to.

A run is fully defined by scenario + seed + the command log, so it can be re-simulated exactly.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from msgspec.structs import replace

from stackyard.core.catalogue import CATALOGUE
from stackyard.core.causes import Causes
from stackyard.core.checks import spec_problems
from stackyard.core.commands import Action, CommandError
from stackyard.core.config import ActionSpec, FaultSpec, RollbackSpec, Scenario, ScenarioError
from stackyard.core.experiment import Experiment
from stackyard.core.faults import ActiveFault, FaultError
from stackyard.core.kernel import Kernel
from stackyard.core.model.database import StorageSink
from stackyard.core.model.world import World
from stackyard.core.protocol import Command, Event, RunSummary, Severity, Snapshot, show

from . import snapshot as views

__all__ = ["CommandError", "Engine", "Relief", "Sampler"]

Sampler = Callable[["Engine"], None]
"""Called at fixed simulated times with the engine (see :meth:`Engine.sample_every`)."""


class Relief(Protocol):
    """Something that writes behind the engine (storage, a recorder) and may need it to wait."""

    async def relieve(self) -> None: ...

    async def flush(self) -> None: ...

_PATTERNS = {
    "container": (re.compile(r"^app-\d+$"), "a container id such as app-1"),
    "vm": (re.compile(r"^vm-\d+$"), "a VM id such as vm-1"),
    "fault": (re.compile(r"^f\d+$"), "an active fault id such as f1"),
}
"""Ids of things that come and go: a command scheduled for later is checked against these."""


class Engine:
    """Headless driver of one simulated run."""

    def __init__(self, scenario: Scenario, seed: int | None = None) -> None:
        self.scenario = scenario
        self.seed = scenario.run.seed if seed is None else seed
        self.kernel = Kernel(self.seed)
        self._pending_events: list[Event] = []
        self.events: deque[Event] = deque(maxlen=2000)
        self.event_count = 0
        self.faults: dict[str, ActiveFault] = {}
        self.recovering: dict[str, ActiveFault] = {}
        """Faults that heal on their own (kills) whose target has not recovered yet."""
        self.fault_log: list[str] = []
        self.commands: list[tuple[float, Command]] = []
        self._fault_seq = 0
        self._snap_seq = 0
        self._cmd_seq = 0
        self._scheduled: list[tuple[float, int, Command]] = []
        """Commands waiting for their time (run by :meth:`run_until`, after that instant's
        events)."""
        self._sampler: Sampler | None = None
        self._sample_every = 0.0
        self._sample_k = 0
        """The next sample is due at ``_sample_k * _sample_every``."""
        self._ambient = ""
        """The fault being injected or cleared: what the events emitted meanwhile are due to."""
        _check_links(scenario)
        self.causes = Causes()
        self.world = World(scenario, self.kernel, self.emit)
        self.causes.bind(self.world)
        problems = [p for i, spec in enumerate(scenario.faults) for p in self._check_spec(i, spec)]
        problems += [p for i, spec in enumerate(scenario.actions)
                     for p in self._check_spec(i, spec, "actions")]
        problems += [p for i, rb in enumerate(scenario.rollbacks) for p in _check_rollback(i, rb)]
        problems += [p for i, check in enumerate(scenario.checks)
                     for p in spec_problems(check, scenario, f"checks[{i}]")]
        if problems:
            raise ScenarioError(problems)
        self.experiment = Experiment(self, scenario.checks) if scenario.checks else None
        """The scenario's steady-state checks, measured as the run goes (None without any)."""
        planned: list[tuple[str, FaultSpec | ActionSpec]] = [
            *((f"faults[{i}]", spec) for i, spec in enumerate(scenario.faults)),
            *((f"actions[{i}]", spec) for i, spec in enumerate(scenario.actions))]
        for where, spec in planned:
            try:
                self.apply(self._spec_command(spec))
            except CommandError as exc:
                raise ScenarioError([f"{where}: {exc}"]) from exc
        for rollback in scenario.rollbacks:
            self.kernel.call_at(rollback.at, self._rollback, rollback)

    # -- events -----------------------------------------------------------------------------

    def emit(self, severity: Severity, component: str, kind: str, message: str,
             why: str, cause: str | None = None) -> None:
        """Log an event. ``cause`` is the fault it is due to; None traces it: the fault being
        injected or cleared, else the one :class:`~core.causes.Causes` finds most likely."""
        now = self.kernel.now
        if cause is None:
            cause = self._ambient or self.causes.attribute(severity, component, kind, now)
        self.causes.note(severity, cause, now)
        ev = Event(time=now, severity=severity, component=component, kind=kind,
                   message=message, why=why, cause=cause)
        self._pending_events.append(ev)
        self.events.append(ev)
        self.event_count += 1

    def _emit_before(self, mark: int, severity: Severity, component: str, kind: str,
                     message: str, why: str) -> None:
        """Emit an event placed before those emitted since ``mark`` (a cause logged after its
        effects were, because its *why* was known only once they had happened)."""
        self.emit(severity, component, kind, message, why, cause=self._ambient)
        after = len(self._pending_events) - 1 - mark
        if after <= 0 or after >= len(self.events):
            return
        pending, events = self._pending_events, self.events
        pending.insert(mark, pending.pop())
        ev = events.pop()
        events.insert(len(events) - after, ev)

    # -- driving ----------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.kernel.now

    def run_until(self, t: float) -> None:
        """Advance the clock to ``t``. A command scheduled at time ``c`` runs after every event
        due at ``c``, exactly as a live command sent when the clock reads ``c`` would; so
        replaying a run's command log reproduces it. A sampler (:meth:`sample_every`) is called
        at each of its times on the way, after that instant's events and scheduled commands."""
        sampler = self._sampler
        if sampler is not None:
            every = self._sample_every
            while self._sample_k * every <= t and self._sampler is sampler:
                due = self._sample_k * every
                self._run_until(due)
                self._sample_k += 1
                sampler(self)
        self._run_until(t)

    def _run_until(self, t: float) -> None:
        kernel = self.kernel
        scheduled = self._scheduled
        while scheduled and scheduled[0][0] <= t:
            at, _, cmd = heapq.heappop(scheduled)
            kernel.run_until(at)
            try:
                self._execute(cmd)
            except CommandError as exc:
                self.emit("warning", cmd.target or "engine", "command_skipped",
                          f"{cmd.kind} on {cmd.target or 'everything'} skipped", str(exc))
        kernel.run_until(t)

    def run_for(self, seconds: float, progress: Callable[[float], None] | None = None) -> None:
        """Advance ``seconds`` of simulated time as fast as the CPU allows."""
        end = self.kernel.now + seconds
        if progress is None:
            self.run_until(end)
            return
        start = self.kernel.now
        step = max(seconds / 200.0, 0.5)
        while self.kernel.now < end:
            self.run_until(min(self.kernel.now + step, end))
            progress((self.kernel.now - start) / seconds if seconds else 1.0)

    async def run_async(
        self,
        seconds: float,
        storage: Relief | None = None,
        progress: Callable[[float], None] | None = None,
        slice_seconds: float = 1.0,
    ) -> None:
        """Advance ``seconds`` as fast as possible, yielding to the event loop between slices so
        storage can write; past its high-water mark the engine waits for it."""
        start = self.kernel.now
        end = start + seconds
        while self.kernel.now < end:
            self.run_until(min(self.kernel.now + slice_seconds, end))
            if progress is not None:
                progress((self.kernel.now - start) / seconds if seconds else 1.0)
            if storage is not None:
                await storage.relieve()
        if storage is not None:
            await storage.flush()

    def sample_every(self, interval: float, sampler: Sampler | None) -> None:
        """Call ``sampler(engine)`` at every multiple of ``interval`` simulated seconds from now
        on (now included, if it is one), however the clock is advanced; None stops it. It reads
        the engine's state and schedules nothing, so a sampled run is the same run."""
        if sampler is None:
            self._sampler = None
            return
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"sample_every: expected an interval > 0, got {interval!r}")
        self._sample_every = interval
        self._sample_k = math.ceil(self.kernel.now / interval)
        self._sampler = sampler
        if self._sample_k * interval == self.kernel.now:
            self._sample_k += 1
            sampler(self)

    def attach_storage(self, sink: StorageSink) -> None:
        """Mirror every database node's applied rows into ``sink`` (from t=0 only)."""
        db = self.world.db
        if db is None:
            raise CommandError("storage: this scenario has no database tier")
        if self.kernel.now > 0 or any(n.log for n in db.nodes.values()):
            raise CommandError("storage: attach it before the run starts")
        db.sink = sink

    def db_nodes(self) -> list[str]:
        return list(self.world.db.nodes) if self.world.db is not None else []

    def step(self) -> bool:
        """Run exactly one event (or the scheduled command, or the sample, due before it)."""
        if self._sampler is not None and self._sample_k * self._sample_every <= \
                self.kernel.peek():
            self.run_until(self._sample_k * self._sample_every)
            return True
        if self._scheduled and self._scheduled[0][0] <= self.kernel.peek():
            self.run_until(self._scheduled[0][0])
            return True
        return self.kernel.step()

    # -- commands ---------------------------------------------------------------------------

    def apply(self, cmd: Command) -> str:
        """Apply ``cmd`` now, or schedule it at ``cmd.at``; returns its result (a fault id for a
        fault) or ''. Raises CommandError for a command that cannot apply (nothing changes)."""
        action = self._action(cmd)
        self._validate(action, cmd)
        if cmd.at is not None and cmd.at > self.kernel.now:
            self._cmd_seq += 1
            heapq.heappush(self._scheduled, (cmd.at, self._cmd_seq, cmd))
            return ""
        # Logged with ``at`` None: applied as soon as seen, not scheduled (a replay tells them
        # apart: a scheduled command that fails leaves an event, an immediate one does not).
        return self._execute(replace(cmd, at=None) if cmd.at is not None else cmd)

    def _action(self, cmd: Command) -> Action:
        action = CATALOGUE.get(cmd.kind)
        if action is None:
            known = ", ".join(CATALOGUE)
            raise CommandError(f"command.kind: expected one of {known}; got {show(cmd.kind)}")
        if action.group == "driver":
            raise CommandError(f"{cmd.kind}: a driver command (pause, speed, step): send it "
                               "through a session, not to the engine")
        return action

    def _validate(self, action: Action, cmd: Command) -> None:
        if cmd.at is not None and not math.isfinite(cmd.at):
            raise CommandError(f"{cmd.kind}.at: expected a time in seconds, got {show(cmd.at)}")
        problem = self.target_problem(action, cmd.target, strict=cmd.at is None)
        if problem:
            raise CommandError(f"{cmd.kind}.target: {problem}")
        action.resolve(cmd.params, self, partial=False)

    def target_problem(self, action: Action, target: str, strict: bool) -> str | None:
        """Why ``target`` does not fit ``action`` (None if it does). Containers, VMs and faults
        come and go, so outside ``strict`` mode only their id's pattern is checked."""
        kinds = action.targets
        if not kinds:
            return None if not target else \
                f"expected no target for {action.name}, got {show(target)}"
        if not target:
            return None if action.target_optional else \
                f"expected {self._describe(kinds)}, got nothing"
        for kind in kinds:
            if kind == "fault" and target in self.faults:
                return None
            if kind != "fault" and self.world.find(kind, target) is not None:
                return None
            if not strict and kind in _PATTERNS and _PATTERNS[kind][0].match(target):
                return None
        return f"expected {self._describe(kinds)}, got {show(target)}"

    def _describe(self, kinds: tuple[str, ...]) -> str:
        if len(kinds) == 1 and kinds[0] in _PATTERNS:
            return _PATTERNS[kinds[0]][1]
        if len(kinds) > 1:
            return "a " + ", ".join(kinds[:-1]) + f" or {kinds[-1]} id"
        names = self.world.ids(kinds[0])
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        return f"one of {shown}" if names else f"a {kinds[0]} (there is none)"

    def _execute(self, cmd: Command) -> str:
        action = CATALOGUE[cmd.kind]
        self.commands.append((self.kernel.now, cmd))
        if cmd.origin.startswith("remote:"):
            # Who did it, in every viewer's event log; from the command itself, so a replay of
            # the command log shows it too.
            where = f" on {cmd.target}" if cmd.target else ""
            self.emit("info", "remote", "command",
                      f"{cmd.origin.removeprefix('remote:')} sent {cmd.kind}{where}",
                      "a remote viewer's command (MQTT)")
        if action.group == "fault":
            return self._inject(action, cmd)
        problem = self.target_problem(action, cmd.target, strict=True)
        if problem:
            raise CommandError(f"{cmd.kind}.target: {problem}")
        params = action.resolve(cmd.params, self)
        result: str = action.apply(self, cmd.target, params)
        return result

    def _inject(self, action: Action, cmd: Command) -> str:
        problem = self.target_problem(action, cmd.target, strict=True)
        if problem:
            raise CommandError(f"{cmd.kind}.target: {problem}")
        params = action.resolve(cmd.params, self)
        duration = float(params.pop("duration", 0.0) or 0.0)
        if action.reversible:
            mine = self._claims(action, cmd.target)
            for other in self.faults.values():
                if mine & self._claims(CATALOGUE[other.kind], other.target):
                    raise CommandError(
                        f"{cmd.kind}.target: {other.kind} is already active on "
                        f"{other.target or 'everything'} as {other.id}; clear it first"
                    )
        now = self.kernel.now
        self._fault_seq += 1
        fault = ActiveFault(f"f{self._fault_seq}", action.name, cmd.target, params, now,
                            now + duration if duration and action.reversible else None)
        mark = len(self._pending_events)
        self._ambient = fault.id
        try:
            why = action.apply(self.world, cmd.target, params, fault)
            self.causes.injected(fault.id, action.name, fault.target, now, action.reversible)
            where = fault.target or "everything"
            self.fault_log.append(f"{now:.1f}s {action.name} {where}".rstrip())
            self._emit_before(mark, "warning", fault.target or "engine", "fault",
                              f"fault {fault.id}: {action.name} on {where}", why)
        except FaultError as exc:
            raise CommandError(f"{cmd.kind}: {exc}") from exc
        finally:
            self._ambient = ""
        if action.reversible:
            self.faults[fault.id] = fault
            if fault.until is not None:
                self.kernel.call_at(fault.until, self._expire_fault, fault.id)
        elif action.healed is not None:
            self.recovering[fault.id] = fault
        if self.experiment is not None:
            self.experiment.fault_injected(fault.id, now)
        return fault.id

    def still_recovering(self) -> int:
        """How many faults that heal on their own (kills) have a target not yet recovered."""
        for fid, fault in list(self.recovering.items()):
            healed = CATALOGUE[fault.kind].healed
            if healed is None or healed(self.world, fault.target):
                del self.recovering[fid]
        return len(self.recovering)

    def _claims(self, action: Action, target: str) -> frozenset[str]:
        if action.claims is not None:
            return action.claims(self.world, target)
        return frozenset({f"{action.name}:{target}"})

    def _expire_fault(self, fault_id: str) -> None:
        if fault_id in self.faults:
            self.clear_fault(fault_id, "its duration ended")

    def clear_fault(self, fault_id: str, why: str) -> None:
        """End an active fault: its kind's ``clear`` restores what it changed."""
        fault = self.faults.pop(fault_id)
        clear = CATALOGUE[fault.kind].clear
        assert clear is not None
        mark = len(self._pending_events)
        self._ambient = fault.id
        try:
            try:
                clear(self.world, fault.target, fault.params, fault)
            except FaultError as exc:  # what it changed is gone; there is nothing to restore
                why = f"{why}; nothing to restore ({exc})"
            self._emit_before(mark, "info", fault.target or "engine", "fault_cleared",
                              f"fault {fault.id} cleared: {fault.kind} on "
                              f"{fault.target or 'everything'}", why)
        finally:
            self._ambient = ""
        self.causes.cleared(fault_id, self.kernel.now)
        if self.experiment is not None:
            self.experiment.fault_cleared(self.kernel.now)

    def _rollback(self, spec: RollbackSpec) -> None:
        """A scenario's rollback: clear the active faults it names (all, by default)."""
        for fid, fault in list(self.faults.items()):
            if (not spec.kind or fault.kind == spec.kind) and \
                    (not spec.target or fault.target == spec.target):
                self.clear_fault(fid, f"rolled back at {spec.at:g} s (scenario file)")

    def _spec_command(self, spec: FaultSpec | ActionSpec) -> Command:
        params: dict[str, Any] = dict(spec.params)
        if isinstance(spec, FaultSpec) and spec.duration:
            params["duration"] = spec.duration
        return Command(spec.kind, spec.target, params, at=spec.at, origin="file")

    def _check_spec(self, index: int, spec: FaultSpec | ActionSpec,
                    section: str = "faults") -> list[str]:
        where = f"{section}[{index}]"
        group = "fault" if section == "faults" else "control"
        action = CATALOGUE.get(spec.kind)
        if action is None or action.group != group:
            known = ", ".join(n for n, a in CATALOGUE.items() if a.group == group)
            return [f"{where}.kind: expected one of {known}, got {show(spec.kind)}"]
        problems = []
        problem = self.target_problem(action, spec.target, strict=False)
        if problem:
            problems.append(f"{where}.target: {problem}")
        if isinstance(spec, FaultSpec) and spec.duration and not action.reversible:
            problems.append(f"{where}.duration: {spec.kind} heals on its own; expected no "
                            "duration")
        try:
            action.resolve(dict(spec.params), self)
        except CommandError as exc:
            problems.append(f"{where}.params: {exc}")
        return problems

    # -- views ------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The whole visible state now, with the events since the previous snapshot."""
        self._snap_seq += 1
        events = tuple(self._pending_events)
        self._pending_events.clear()
        return views.build(self, self._snap_seq, events)

    def summary(self) -> RunSummary:
        """The run's figures (deterministic for a scenario, seed and command log)."""
        return views.summary(self)


def _check_rollback(index: int, spec: RollbackSpec) -> list[str]:
    clearable = [n for n, a in CATALOGUE.items() if a.group == "fault" and a.reversible]
    if spec.kind and spec.kind not in clearable:
        return [f"rollbacks[{index}].kind: expected '' (every fault) or a fault that can be "
                f"cleared ({', '.join(clearable)}), got {show(spec.kind)}"]
    return []


def _check_links(scenario: Scenario) -> None:
    links = scenario.network.links
    need = ["lb-app", "app-db"]
    for r in sorted(scenario.traffic.regions):
        need += [f"client-{r}", f"edge-{r}"]
    missing = [n for n in need if n not in links]
    if missing:
        raise ScenarioError([f"network.links: expected a link named {n!r} (every region needs "
                             f"client-<region> and edge-<region>)" for n in missing])
    if not scenario.traffic.regions:
        raise ScenarioError(["traffic.regions: expected at least one region"])
