"""A run's steady-state checks, measured as it goes and judged at the end.

Once a simulated second, the experiment reads the world's running totals (requests finished,
failed and good, lost writes, stale reads, CDN hits...) and the latency histogram of the second
that just ended, and adds that second to every check whose window covers it. Nothing on the
request path changes: the figures are the ones the engine keeps anyway, read once a second, so a
run with checks evolves exactly like one without.

Windows are whole simulated seconds: ``run`` (all of them), ``window`` (those within
``start``..``end``), ``before`` (those that ended before the first fault), ``after`` (those that
began ``grace`` seconds or more after the last fault was injected or cleared: each fault event
starts it afresh) and ``continuously`` (every second of the run or of a window must hold on its
own; the value reported is the worst second's). A check that breaks is traced to the fault most
likely responsible (:meth:`core.causes.Causes.blame`) at the first second that broke it, and
the engine logs an event when a check's window closes (or, for ``continuously``, when it first
breaks), so a viewer sees the verdicts too.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

from stackyard.core.checks import WINDOWED, Expectation, check_name, format_value, parse
from stackyard.core.config import CheckSpec, Scenario
from stackyard.core.metrics import Histogram
from stackyard.core.model.traffic import pattern_factor
from stackyard.core.protocol import CheckCause, CheckResult, finite

if TYPE_CHECKING:
    from stackyard.core.engine import Engine
    from stackyard.core.model.world import World

BURN: Final = 10.0
"""A second is unhealthy (for ``recovery_time``) when it burns error budget this many times
faster than the SLO allows: more than ``BURN * (1 - slo.target)`` of its requests bad."""

_LATENCY: Final = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}


class Tally:
    """Figures of some whole seconds: one second's, or a window's so far."""

    __slots__ = ("arrived", "completed", "conflicts", "failed", "failovers", "good", "hist",
                 "hits", "lag", "lost", "misses", "seconds", "stale")

    def __init__(self) -> None:
        self.seconds = 0
        self.arrived = 0
        self.completed = 0
        self.failed = 0
        self.good = 0
        self.lost = 0
        self.stale = 0
        self.conflicts = 0
        self.failovers = 0
        self.hits = 0
        self.misses = 0
        self.lag = 0.0
        self.hist: Histogram | None = None

    def add(self, s: Tally, keep_latency: bool) -> None:
        self.seconds += s.seconds
        self.arrived += s.arrived
        self.completed += s.completed
        self.failed += s.failed
        self.good += s.good
        self.lost += s.lost
        self.stale += s.stale
        self.conflicts += s.conflicts
        self.failovers += s.failovers
        self.hits += s.hits
        self.misses += s.misses
        if s.lag > self.lag:
            self.lag = s.lag
        if keep_latency and s.hist is not None and s.hist.count:
            if self.hist is None:
                self.hist = Histogram()
            self.hist.merge(s.hist)

    def value(self, metric: str) -> float | None:
        """The metric over these seconds (None: nothing to measure)."""
        if not self.seconds:
            return None
        if metric in _LATENCY or metric == "mean":
            h = self.hist
            if h is None or not h.count:
                return None
            return h.mean if metric == "mean" else h.quantile(_LATENCY[metric])
        finished = self.completed + self.failed
        if metric == "error_rate":
            return self.failed / finished if finished else None
        if metric == "availability":
            return self.completed / finished if finished else None
        if metric == "throughput":
            return self.completed / self.seconds if self.seconds else None
        if metric == "cdn_hit_ratio":
            looked = self.hits + self.misses
            return self.hits / looked if looked else None
        if metric == "replication_lag":
            return self.lag
        return float({"errors": self.failed, "lost_writes": self.lost, "stale_reads": self.stale,
                      "conflicts": self.conflicts, "failovers": self.failovers}[metric])


class Check:
    """One check as the run goes: its window's tally, its worst second, when it first broke."""

    def __init__(self, spec: CheckSpec, exp: Expectation) -> None:
        self.spec = spec
        self.exp = exp
        self.name = check_name(spec, exp)
        self.latency = exp.metric.unit == "s" and exp.metric.name in (*_LATENCY, "mean")
        self.tally = Tally()
        self.worst: float | None = None
        self.worst_cause: CheckCause | None = None
        self.failed_at: float | None = None
        self.cause: CheckCause | None = None
        self.closed = False

    def reset(self) -> None:
        self.tally = Tally()
        self.worst = self.worst_cause = self.failed_at = self.cause = None

    def badness(self, value: float) -> float:
        op, t = self.exp.op, self.exp.threshold
        if op in ("<", "<="):
            return value
        if op in (">", ">="):
            return -value
        return abs(value - t)


class Experiment:
    """The checks of one engine's run."""

    def __init__(self, engine: Engine, specs: list[CheckSpec]) -> None:
        self.engine = engine
        self.world: World = engine.world
        self.scenario: Scenario = engine.scenario
        self.checks = [Check(spec, parse(spec.expect)) for spec in specs]
        self.first_fault: float | None = None
        self.last_event: float | None = None
        """When the last fault was injected or cleared."""
        self.last_injection: tuple[float, str] | None = None
        self.unhealthy_until: float | None = None
        """The end of the last unhealthy second since the last injection."""
        self.ticked = 0.0
        self.needs_latency = any(c.latency for c in self.checks)
        self.needs_lag = any(c.exp.metric.name == "replication_lag" for c in self.checks)
        self._prev = self._totals()
        kernel = engine.kernel
        kernel.call_at(1.0, self._tick)
        end = self.scenario.run.duration
        for check in self.checks:  # "before" closes early, at the first fault
            spec = check.spec
            kernel.call_at(spec.end if spec.over in WINDOWED and spec.end else end, self._close,
                           check)

    # -- sampling ---------------------------------------------------------------------------

    def _totals(self) -> tuple[int, ...]:
        w = self.world
        db = w.db
        hits = sum(e.hits for e in w.edges.values())
        misses = sum(e.misses for e in w.edges.values())
        if db is None:
            return (w.arrived, w.completed, w.failed, w.slo.good, 0, 0, 0, 0, hits, misses)
        return (w.arrived, w.completed, w.failed, w.slo.good, db.lost_writes, db.stale_reads,
                db.conflicts, db.failovers, hits, misses)

    def _sample(self, s: int) -> Tally:
        """The second that ended at ``s``."""
        totals = self._totals()
        d = [a - b for a, b in zip(totals, self._prev, strict=True)]
        self._prev = totals
        t = Tally()
        t.seconds = 1
        (t.arrived, t.completed, t.failed, t.good, t.lost, t.stale, t.conflicts, t.failovers,
         t.hits, t.misses) = d
        w = self.world
        if self.needs_latency:
            t.hist = w.recent.second(s, s - 1)
        if self.needs_lag and w.db is not None:
            t.lag = max((w.db.lag(n)[1] for n in w.db.nodes.values()), default=0.0)
        return t

    def _tick(self, _: object) -> None:
        now = self.engine.kernel.now
        s = round(now)
        self.engine.kernel.call_at(s + 1.0, self._tick)
        sample = self._sample(s)
        self.ticked = float(s)
        self._health(sample, s)
        for check in self.checks:
            if check.closed or check.exp.metric.scope == "run" or not self._covers(check, s):
                continue
            check.tally.add(sample, check.latency)
            value = sample.value(check.exp.metric.name)
            if value is None:
                continue
            if check.worst is None or check.badness(value) > check.badness(check.worst):
                check.worst = value
                if self.engine.causes.faults and not check.exp.holds(value):
                    check.worst_cause = self.blame(float(s), check)
            if not check.exp.holds(value) and check.failed_at is None:
                check.failed_at = float(s)
                check.cause = self.blame(float(s), check)
                if check.spec.over == "continuously":
                    self._verdict(check, self._result(check, now))

    def _covers(self, check: Check, s: int) -> bool:
        """Whether the second ending at ``s`` is in the check's window."""
        spec = check.spec
        over = spec.over
        if over == "run":
            return True
        if over == "before":
            return self.first_fault is None
        if over == "after":
            return s - 1 >= self._after(check) - 1e-9
        return s - 1 >= spec.start - 1e-9 and (not spec.end or s <= spec.end + 1e-9)

    def _health(self, sample: Tally, s: int) -> None:
        if self.last_injection is None:
            return
        slo = self.scenario.slo
        finished = sample.completed + sample.failed
        bad = finished - sample.good
        # with nothing finished, requests are stuck unless none arrived
        healthy = bad <= BURN * (1.0 - slo.target) * finished if finished else not sample.arrived
        if not healthy:
            self.unhealthy_until = float(s)

    # -- faults -----------------------------------------------------------------------------

    def fault_injected(self, fault_id: str, now: float) -> None:
        if self.first_fault is None:
            self.first_fault = now
            for check in self.checks:
                if check.spec.over == "before":
                    self._close(check)
        self.last_injection = (now, fault_id)
        self.unhealthy_until = None
        self._fault_event(now)

    def fault_cleared(self, now: float) -> None:
        self._fault_event(now)

    def _fault_event(self, now: float) -> None:
        self.last_event = now
        for check in self.checks:
            if check.spec.over == "after" and not check.closed:
                check.reset()

    def _after(self, check: Check) -> float:
        """Where an ``after`` window starts: the last fault event plus the check's grace (with
        no fault at all, the start of the run)."""
        return 0.0 if self.last_event is None else self.last_event + check.spec.grace

    # -- verdicts ---------------------------------------------------------------------------

    def blame(self, t: float, check: Check) -> CheckCause | None:
        record = self.engine.causes.blame(t, check.exp.metric.tier)
        if record is not None:
            return CheckCause(fault=record.id, kind=record.kind, target=record.target,
                              at=finite(record.since), text=record.text())
        return self._pattern(t)

    def _pattern(self, t: float) -> CheckCause | None:
        """With no fault to blame: the traffic pattern, if it was raising the load at ``t``."""
        regions = self.scenario.traffic.regions
        raised = sorted(r for r, cfg in regions.items() if pattern_factor(cfg.pattern, t) > 1.0)
        if not raised:
            return None
        p = regions[raised[0]].pattern
        text = f"traffic pattern: {p.kind} in {', '.join(raised)}"
        if p.kind in ("spike", "ramp"):
            text += f" (x{p.factor:g} from {p.start:.1f}s)"
        return CheckCause(fault="", kind="traffic_pattern", target=",".join(raised),
                          at=finite(p.start if p.kind in ("spike", "ramp") else 0.0), text=text)

    def _close(self, check: Check) -> None:
        if check.closed:
            return
        kernel = self.engine.kernel
        now = kernel.now
        if self.ticked < math.floor(now + 1e-9):
            kernel.call_at(now, self._close, check)  # after this instant's tick
            return
        check.closed = True
        result = self._result(check, now)
        if check.spec.over != "continuously" or result.passed:
            self._verdict(check, result)

    def _verdict(self, check: Check, r: CheckResult) -> None:
        shown = "no value" if r.value is None else format_value(r.value, r.unit)
        if r.passed:
            self.engine.emit("info", "checks", "check_held", f"check held: {r.name} ({shown})",
                             f"measured from {r.start:.0f}s to {r.end:.0f}s", cause="")
            return
        why = f"likely cause: {r.cause.text}" if r.cause else r.note or "no fault to blame"
        self.engine.emit("error", "checks", "check_failed", f"check failed: {r.name} ({shown})",
                         why, cause=r.cause.fault if r.cause else "")

    def results(self) -> tuple[CheckResult, ...]:
        """Every check's verdict as things stand."""
        now = self.engine.kernel.now
        return tuple(self._result(c, now) for c in self.checks)

    def _result(self, check: Check, now: float) -> CheckResult:
        spec, exp = check.spec, check.exp
        metric = exp.metric.name
        end = min(self.ticked, now)
        start, stop = self._window(check, end)
        note = ""
        failed_at = check.failed_at
        cause = check.cause
        if exp.metric.scope == "run":
            value, note, at = self._run_metric(metric, end)
            passed = value is not None and exp.holds(value)
            failed_at = None
            if not passed:
                cause = self._blame_run(metric, at, check)
        elif spec.over == "continuously":
            value = check.worst
            passed = value is not None and check.failed_at is None
        else:
            value = check.tally.value(metric)
            passed = value is not None and exp.holds(value)
            if not passed and failed_at is None:
                cause = check.worst_cause
        if value is None and not note:
            note = self._empty(check, start, stop)
        if passed:
            cause = None
            failed_at = None
        return CheckResult(
            name=check.name, expect=exp.text(), metric=metric, op=exp.op,
            threshold=finite(exp.threshold), unit=exp.metric.unit, over=spec.over,
            start=finite(start), end=finite(stop),
            value=None if value is None else finite(value), passed=passed,
            failed_at=failed_at, cause=cause, note=note)

    def _window(self, check: Check, end: float) -> tuple[float, float]:
        spec = check.spec
        if spec.over == "before":
            return 0.0, min(self.first_fault, end) if self.first_fault is not None else end
        if spec.over == "after":
            return min(self._after(check), end), end
        if spec.over in WINDOWED:
            return min(spec.start, end), min(spec.end, end) if spec.end else end
        return 0.0, end

    def _empty(self, check: Check, start: float, stop: float) -> str:
        spec = check.spec
        if spec.over == "before" and self.first_fault is not None and self.first_fault < 1.0:
            return f"nothing to measure: the first fault came at {self.first_fault:.1f}s"
        if stop <= start:
            return f"nothing to measure: the window {start:.0f}s-{stop:.0f}s is empty"
        return "nothing to measure: no request finished in the window"

    def _blame_run(self, metric: str, at: float, check: Check) -> CheckCause | None:
        """A recovery is measured from the last injection: that fault is to blame."""
        if metric == "recovery_time" and self.last_injection is not None:
            record = self.engine.causes.faults.get(self.last_injection[1])
            if record is not None:
                return CheckCause(fault=record.id, kind=record.kind, target=record.target,
                                  at=finite(record.since), text=record.text())
        return self.blame(at, check)

    def _run_metric(self, metric: str, end: float) -> tuple[float | None, str, float]:
        """(value, note, when it went wrong) of a metric measured over the whole run."""
        if metric == "recovery_time":
            if self.last_injection is None:
                return 0.0, "no fault was injected", end
            at, _ = self.last_injection
            until = self.unhealthy_until
            if until is None:
                return 0.0, "", at
            if until >= end and end > at:
                return None, f"not recovered by the end of the run ({end:.0f}s)", at
            return max(until - at, 0.0), "", at
        backups = self.world.backups
        restore = backups.last_restore if backups is not None else {}
        if not restore or restore.get("finished") is None:
            return None, "no point-in-time restore finished in the run", end
        return float(restore[metric]), "", float(restore["started"])
