"""The engine: builds a world from a scenario and drives it; the only thing viewers talk to.

A run is fully defined by scenario + seed + the command log, so it can be re-simulated exactly.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stackyard.core.config import ALGORITHMS, FaultSpec, Scenario, ScenarioError
from stackyard.core.faults import (
    CATALOGUE,
    ActiveFault,
    FaultError,
    claims,
    resolve_params,
    target_problem,
)
from stackyard.core.kernel import Kernel
from stackyard.core.model.database import StorageSink
from stackyard.core.model.world import World
from stackyard.core.protocol import Command, Event, Snapshot

from . import snapshot as views

if TYPE_CHECKING:
    from stackyard.core.storage import Storage


class CommandError(ValueError):
    """A command the engine cannot apply; the message says what was expected."""


CONTROL_COMMANDS = {
    "clear": "clear an active fault (target: its id, e.g. f3)",
    "clear_all": "clear every active fault",
    "undo": "clear the most recent active fault",
    "set_algorithm": "switch the balancer algorithm (params: name)",
    "set_replicas": "set the deployment's replica count (params: n)",
    "set_autoscaler": "turn the autoscaler on or off (params: enabled)",
    "set_retries": "set balancer retries (params: retries, budget)",
    "set_timeout": "set the balancer's per-attempt timeout (params: seconds)",
    "switchover": "hand the primary role to a replica gracefully (target: a replica, optional)",
    "set_replication": "set the replication mode (params: mode async|sync|semi_sync, k)",
    "set_fencing": "turn primary self-fencing on or off (params: enabled)",
    "restore": "point-in-time restore of the database (params: time, default latest)",
    "backup": "take a full base backup now",
}
REPLICATION_MODES = ("async", "sync", "semi_sync")


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
        self.fault_log: list[str] = []
        self.commands: list[tuple[float, Command]] = []
        self._fault_seq = 0
        self._snap_seq = 0
        self._cmd_seq = 0
        self._scheduled: list[tuple[float, int, Command]] = []
        """Commands waiting for their time (run by :meth:`run_until`, after that instant's
        events)."""
        _check_links(scenario)
        self.world = World(scenario, self.kernel, self.emit)
        problems = [p for i, spec in enumerate(scenario.faults) for p in self._check_spec(i, spec)]
        if problems:
            raise ScenarioError(problems)
        for i, spec in enumerate(scenario.faults):
            params: dict[str, Any] = dict(spec.params)
            if spec.duration:
                params["duration"] = spec.duration
            try:
                self.apply(Command(spec.kind, spec.target, params, at=spec.at))
            except CommandError as exc:
                raise ScenarioError([f"faults[{i}]: {exc}"]) from exc

    # -- events -----------------------------------------------------------------------------

    def emit(self, severity: str, component: str, kind: str, message: str, why: str) -> None:
        ev = Event(self.kernel.now, severity, component, kind, message, why)  # type: ignore[arg-type]
        self._pending_events.append(ev)
        self.events.append(ev)
        self.event_count += 1

    # -- driving ----------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.kernel.now

    def run_until(self, t: float) -> None:
        """Advance the clock to ``t``. A command scheduled at time ``c`` runs after every event
        due at ``c``, exactly as a live command sent when the clock reads ``c`` would; so
        replaying a run's command log reproduces it."""
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
        storage: Storage | None = None,
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
        """Run exactly one event (or the scheduled command due before it)."""
        if self._scheduled and self._scheduled[0][0] <= self.kernel.peek():
            self.run_until(self._scheduled[0][0])
            return True
        return self.kernel.step()

    # -- commands ---------------------------------------------------------------------------

    def apply(self, cmd: Command) -> str:
        """Apply ``cmd`` now, or schedule it at ``cmd.at``; returns a fault id or ''.

        Raises CommandError for a command that cannot apply (nothing changes then)."""
        self._validate(cmd)
        if cmd.at is not None and cmd.at > self.kernel.now:
            self._cmd_seq += 1
            heapq.heappush(self._scheduled, (cmd.at, self._cmd_seq, cmd))
            return ""
        return self._execute(cmd)

    def _validate(self, cmd: Command) -> None:
        if cmd.kind in CONTROL_COMMANDS:
            return
        kind = CATALOGUE.get(cmd.kind)
        if kind is None:
            known = ", ".join([*CATALOGUE, *CONTROL_COMMANDS])
            raise CommandError(f"command.kind: expected one of {known}; got {cmd.kind!r}")
        problem = target_problem(self.world, kind, cmd.target, strict=cmd.at is None)
        if problem:
            raise CommandError(f"{cmd.kind}.target: {problem}")
        try:
            resolve_params(kind, {k: v for k, v in cmd.params.items() if k != "duration"})
        except FaultError as exc:
            raise CommandError(str(exc)) from exc
        d = cmd.params.get("duration", 0)
        if isinstance(d, bool) or not isinstance(d, int | float) or not 0 <= d < 1e9:
            raise CommandError(f"{cmd.kind}.duration: expected seconds >= 0, got {d!r}")
        if cmd.at is not None and not (isinstance(cmd.at, int | float) and math.isfinite(cmd.at)):
            raise CommandError(f"{cmd.kind}.at: expected a time in seconds, got {cmd.at!r}")

    def _execute(self, cmd: Command) -> str:
        self.commands.append((self.kernel.now, cmd))
        handler = getattr(self, f"_cmd_{cmd.kind}", None)
        if handler is not None:
            result: str = handler(cmd)
            return result
        return self._inject(cmd)

    def _inject(self, cmd: Command) -> str:
        kind = CATALOGUE[cmd.kind]
        problem = target_problem(self.world, kind, cmd.target, strict=True)
        if problem:
            raise CommandError(f"{cmd.kind}.target: {problem}")
        duration = float(cmd.params.get("duration", 0) or 0)
        params = resolve_params(kind, {k: v for k, v in cmd.params.items() if k != "duration"})
        if kind.clear is not None:
            mine = claims(kind.name, cmd.target, self.world)
            for other in self.faults.values():
                if mine & claims(other.kind, other.target, self.world):
                    raise CommandError(
                        f"{cmd.kind}.target: {other.kind} is already active on "
                        f"{other.target or 'everything'} as {other.id}; clear it first"
                    )
        now = self.kernel.now
        self._fault_seq += 1
        fault = ActiveFault(f"f{self._fault_seq}", kind.name, cmd.target, params, now,
                            now + duration if duration and kind.clear else None)
        try:
            why = kind.inject(self.world, cmd.target, params, fault)
        except FaultError as exc:
            raise CommandError(str(exc)) from exc
        where = fault.target or "everything"
        self.fault_log.append(f"{now:.1f}s {kind.name} {where}".rstrip())
        self.emit("warning", fault.target or "engine", "fault",
                  f"fault {fault.id}: {kind.name} on {where}", why)
        if kind.clear is not None:
            self.faults[fault.id] = fault
            if fault.until is not None:
                self.kernel.call_at(fault.until, self._expire_fault, fault.id)
        return fault.id

    def _expire_fault(self, fault_id: str) -> None:
        if fault_id in self.faults:
            self._clear(fault_id, "its duration ended")

    def _clear(self, fault_id: str, why: str) -> None:
        fault = self.faults.pop(fault_id)
        clear = CATALOGUE[fault.kind].clear
        assert clear is not None
        clear(self.world, fault.target, fault.params, fault)
        self.emit("info", fault.target or "engine", "fault_cleared",
                  f"fault {fault.id} cleared: {fault.kind} on {fault.target or 'everything'}",
                  why)

    def _cmd_clear(self, cmd: Command) -> str:
        if cmd.target not in self.faults:
            active = ", ".join(self.faults) or "none"
            raise CommandError(f"clear.target: expected an active fault id ({active}), "
                               f"got {cmd.target!r}")
        self._clear(cmd.target, "cleared by the user")
        return cmd.target

    def _cmd_clear_all(self, cmd: Command) -> str:
        for fid in list(self.faults):
            self._clear(fid, "cleared by the user (all)")
        return ""

    def _cmd_undo(self, cmd: Command) -> str:
        if not self.faults:
            raise CommandError("undo: no active fault to undo")
        fid = next(reversed(self.faults))
        self._clear(fid, "undone by the user")
        return fid

    def _param(self, cmd: Command, name: str, kind: type) -> Any:
        value = cmd.params.get(name)
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise CommandError(f"{cmd.kind}.{name}: expected a {kind.__name__}, got {value!r}")
        return value

    def _cmd_set_algorithm(self, cmd: Command) -> str:
        name = self._param(cmd, "name", str)
        if name not in ALGORITHMS:
            raise CommandError(f"set_algorithm.name: expected one of {', '.join(ALGORITHMS)}, "
                               f"got {name!r}")
        self.world.balancer.set_algorithm(name)
        self.emit("info", "balancer", "algorithm", f"balancer algorithm: {name}",
                  "changed by the user")
        return ""

    def _cmd_set_replicas(self, cmd: Command) -> str:
        n = self._param(cmd, "n", int)
        cluster = self.world.cluster
        most = cluster.cfg.vm.max * cluster.vm_capacity()
        if not 0 <= n <= most:
            raise CommandError(f"set_replicas.n: expected 0..{most} (what {cluster.cfg.vm.max} "
                               f"VMs hold), got {n}")
        self.world.cluster.set_replicas(n)
        self.emit("info", "autoscaler", "replicas", f"replicas set to {n}", "set by the user")
        return ""

    def _cmd_set_autoscaler(self, cmd: Command) -> str:
        on = self._param(cmd, "enabled", bool)
        self.world.autoscaler.enabled = on
        self.emit("info", "autoscaler", "autoscaler", f"autoscaler {'on' if on else 'off'}",
                  "changed by the user")
        return ""

    def _cmd_set_retries(self, cmd: Command) -> str:
        b = self.world.balancer
        b.retries = int(self._param(cmd, "retries", int))
        if "budget" in cmd.params:
            b.retry_budget = float(self._param(cmd, "budget", float))
        self.emit("info", "balancer", "retries", f"retries {b.retries}, budget {b.retry_budget:g}",
                  "changed by the user")
        return ""

    def _cmd_set_timeout(self, cmd: Command) -> str:
        seconds = float(self._param(cmd, "seconds", float))
        if seconds < 0:
            raise CommandError(f"set_timeout.seconds: expected >= 0, got {seconds}")
        self.world.balancer.timeout = seconds
        self.emit("info", "balancer", "timeout", f"per-attempt timeout {seconds:g} s",
                  "changed by the user")
        return ""

    def _database(self, cmd: Command) -> Any:
        if self.world.db is None:
            raise CommandError(f"{cmd.kind}: this scenario has no database tier")
        return self.world.db

    def _cmd_switchover(self, cmd: Command) -> str:
        db = self._database(cmd)
        target = None
        if cmd.target:
            target = db.nodes.get(cmd.target)
            if target is None:
                raise CommandError(f"switchover.target: expected one of {', '.join(db.nodes)}, "
                                   f"got {cmd.target!r}")
        assert self.world.failover is not None
        try:
            chosen = self.world.failover.switchover(target)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        return str(chosen.id)

    def _cmd_set_replication(self, cmd: Command) -> str:
        db = self._database(cmd)
        mode = self._param(cmd, "mode", str)
        if mode not in REPLICATION_MODES:
            raise CommandError(f"set_replication.mode: expected one of "
                               f"{', '.join(REPLICATION_MODES)}, got {mode!r}")
        k = int(self._param(cmd, "k", int)) if "k" in cmd.params else db.k
        if not 1 <= k <= len(db.nodes) - 1:
            raise CommandError(f"set_replication.k: expected 1..{len(db.nodes) - 1}, got {k}")
        db.set_mode(mode, k)
        self.emit("info", "database", "replication", f"replication: {mode}"
                  + (f" (k={k})" if mode != "async" else ""), "changed by the user")
        return ""

    def _cmd_set_fencing(self, cmd: Command) -> str:
        db = self._database(cmd)
        db.fencing = bool(self._param(cmd, "enabled", bool))
        self.emit("info", "database", "fencing", f"fencing {'on' if db.fencing else 'off'}",
                  "changed by the user")
        return ""

    def _cmd_restore(self, cmd: Command) -> str:
        self._database(cmd)
        t = float(self._param(cmd, "time", float)) if "time" in cmd.params else None
        assert self.world.backups is not None
        try:
            self.world.backups.restore(t)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        return ""

    def _cmd_backup(self, cmd: Command) -> str:
        self._database(cmd)
        assert self.world.backups is not None
        if not self.world.backups.take():
            raise CommandError("backup: no healthy primary to copy")
        return ""

    def _check_spec(self, index: int, spec: FaultSpec) -> list[str]:
        where = f"faults[{index}]"
        kind = CATALOGUE.get(spec.kind)
        if kind is None:
            return [f"{where}.kind: expected one of {', '.join(CATALOGUE)}, got {spec.kind!r}"]
        problems = []
        problem = target_problem(self.world, kind, spec.target, strict=False)
        if problem:
            problems.append(f"{where}.target: {problem}")
        try:
            resolve_params(kind, dict(spec.params))
        except FaultError as exc:
            problems.append(f"{where}.params: {exc}")
        return problems

    # -- views ------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The whole visible state now, with the events since the previous snapshot."""
        self._snap_seq += 1
        events = tuple(self._pending_events)
        self._pending_events.clear()
        return views.build(self, self._snap_seq, events)

    def summary(self) -> dict[str, Any]:
        """The run's figures as one JSON-serialisable dict (deterministic for a seed)."""
        return views.summary(self)


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
