"""Steady-state checks: the metrics a check can name and the little language it is written in.

A check is ``METRIC OP VALUE[UNIT]``: ``p99 < 300ms``, ``lost_writes == 0``,
``error_rate <= 1%``, ``availability >= 99.9%``, ``recovery_time < 1m``. :func:`parse` reads one
with a hand-written scanner and raises :class:`CheckError` with one line saying what was
expected where it went wrong; nothing else ever escapes it. :func:`spec_problems` checks a
scenario's ``[[checks]]`` entry against the rest of the scenario (a database metric needs a
database tier).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final, Literal

from stackyard.core.config import CheckSpec, Scenario
from stackyard.core.protocol import CheckUnit, show

Op = Literal["<", "<=", ">", ">=", "=="]
OPS: Final[tuple[Op, ...]] = ("<=", ">=", "==", "<", ">")
"""Comparisons, longest first (so ``<=`` is not read as ``<``)."""
MAX_CHARS = 200
"""A check longer than this is refused unread."""
Scope = Literal["window", "run"]
Needs = Literal["", "database", "cdn", "backup"]


@dataclass(frozen=True)
class Metric:
    """Something a check can measure: its unit, whether it can be measured over any window or
    only over the run, what the scenario needs for it to exist, and what it means."""

    name: str
    unit: CheckUnit
    help: str
    scope: Scope = "window"
    needs: Needs = ""
    tier: Literal["", "network", "app", "database"] = ""
    """The tier whose faults it points at first when it fails ('' for end-to-end figures)."""


METRICS: Final[dict[str, Metric]] = {
    m.name: m
    for m in (
        Metric("p50", "s", "median latency of the requests that succeeded"),
        Metric("p90", "s", "90th percentile latency of the requests that succeeded"),
        Metric("p95", "s", "95th percentile latency of the requests that succeeded"),
        Metric("p99", "s", "99th percentile latency of the requests that succeeded"),
        Metric("p999", "s", "99.9th percentile latency of the requests that succeeded"),
        Metric("mean", "s", "mean latency of the requests that succeeded"),
        Metric("error_rate", "fraction", "failed requests / finished requests"),
        Metric("availability", "fraction", "succeeded requests / finished requests"),
        Metric("errors", "count", "requests that failed"),
        Metric("throughput", "rps", "requests that succeeded, per second"),
        Metric("lost_writes", "count", "acknowledged writes lost by a failover", needs="database",
               tier="database"),
        Metric("stale_reads", "count", "reads a lagging replica answered with old data",
               needs="database", tier="database"),
        Metric("conflicts", "count", "writes acknowledged by a second primary (split brain)",
               needs="database", tier="database"),
        Metric("failovers", "count", "replicas promoted to primary", needs="database",
               tier="database"),
        Metric("replication_lag", "s", "the largest replica lag, sampled once a second",
               needs="database", tier="database"),
        Metric("cdn_hit_ratio", "fraction", "CDN lookups served from the cache", needs="cdn",
               tier="network"),
        Metric("recovery_time", "s", "from the last fault's injection to the end of the last "
               "second that burned error budget 10x too fast", scope="run"),
        Metric("rto", "s", "how long the last point-in-time restore took", scope="run",
               needs="backup", tier="database"),
        Metric("rpo", "s", "how much history the last point-in-time restore dropped",
               scope="run", needs="backup", tier="database"),
    )
}

_DURATION_UNITS: Final[dict[str, Decimal]] = {"us": Decimal("1e-6"), "ms": Decimal("0.001"),
                                              "s": Decimal(1), "m": Decimal(60),
                                              "h": Decimal(3600)}
_LIMITS: Final[dict[CheckUnit, float]] = {"s": 1e7, "fraction": 1.0, "count": 1e15, "rps": 1e9}
_WHAT: Final[dict[CheckUnit, str]] = {
    "s": "a duration such as 300ms, 1.5s or 2m",
    "fraction": "a fraction such as 1%, 99.9% or 0.01",
    "count": "a count such as 0 or 10",
    "rps": "a rate such as 250 or 250rps",
}


class CheckError(ValueError):
    """A check that cannot be read; the message is one line saying what was expected."""


@dataclass(frozen=True)
class Expectation:
    """A parsed check: ``metric op threshold`` (the threshold in seconds, as a fraction, a
    count or requests per second, by the metric's unit)."""

    metric: Metric
    op: Op
    threshold: float

    def holds(self, value: float) -> bool:
        t = self.threshold
        op = self.op
        if op == "<":
            return value < t
        if op == "<=":
            return value <= t
        if op == ">":
            return value > t
        if op == ">=":
            return value >= t
        return value == t

    def text(self) -> str:
        """The canonical form, ``p99 < 300ms``: it reads back as exactly this expectation."""
        return f"{self.metric.name} {self.op} {_exact(self.threshold, self.metric.unit)}"


def _exact(x: float, unit: CheckUnit) -> str:
    """``x`` in the unit's natural form without rounding (decimal arithmetic on its repr)."""
    d = Decimal(repr(x))
    suffix = {"fraction": "%", "rps": "rps", "s": "s"}.get(unit, "")
    if unit == "fraction":
        d *= 100
    elif unit == "s" and 0 < d < 1:
        d, suffix = d * 1000, "ms"
    text = format(d.normalize(), "f")
    return text + suffix


def format_value(x: float, unit: CheckUnit) -> str:
    """A measured or expected value in the unit's natural form: 300ms, 1.5s, 2%, 12, 250rps."""
    if unit == "s":
        if x == 0:
            return "0s"
        if abs(x) < 1:
            return f"{x * 1000:.4g}ms"
        return f"{x:.4g}s"
    if unit == "fraction":
        return f"{x * 100:.4g}%"
    if unit == "rps":
        return f"{x:.4g}rps"
    return f"{x:.6g}"


def parse(text: object) -> Expectation:
    """Read a check such as ``p99 < 300ms``; raises CheckError (one line) when it is not one."""
    if not isinstance(text, str):
        raise CheckError(f"expected a check such as 'p99 < 300ms' as a string, got "
                         f"{type(text).__name__}")
    if len(text) > MAX_CHARS:
        raise CheckError(f"expected a check of at most {MAX_CHARS} characters, got {len(text)}")
    return _Scanner(text).check()


class _Scanner:
    """A cursor over the text with one method per part of the grammar."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def skip(self) -> None:
        text, i = self.text, self.i
        while i < len(text) and text[i] in " \t":
            i += 1
        self.i = i

    def rest(self) -> str:
        return self.text[self.i:]

    def seen(self) -> str:
        return " ".join(self.text[: self.i].split())

    def check(self) -> Expectation:
        self.skip()
        if not self.rest().strip():
            raise CheckError("expected a check such as 'p99 < 300ms' or 'lost_writes == 0', "
                             "got nothing")
        metric = self.metric()
        op = self.op(metric)
        threshold = self.value(metric, op)
        self.skip()
        if self.rest():
            raise CheckError(f"expected nothing after {self.seen()!r}, got {show(self.rest())}")
        return Expectation(metric, op, threshold)

    def metric(self) -> Metric:
        text, start = self.text, self.i
        i = start
        while i < len(text) and (text[i].isascii() and (text[i].isalnum() or text[i] == "_")):
            i += 1
        word = text[start:i].lower()
        self.i = i
        metric = METRICS.get(word)
        if metric is None:
            got = show(word) if word else show(self.rest()[:20])
            close = difflib.get_close_matches(word, METRICS, n=1) if word else []
            if close:
                raise CheckError(f"expected a metric such as p99, error_rate or lost_writes, "
                                 f"got {got} (did you mean {close[0]!r}?)")
            raise CheckError(f"expected a metric ({', '.join(METRICS)}), got {got}")
        return metric

    def op(self, metric: Metric) -> Op:
        self.skip()
        rest = self.rest()
        for op in OPS:
            if rest.startswith(op) and not rest.startswith(("=>", "=<")):
                self.i += len(op)
                return op
        got = show(rest[:3]) if rest else "nothing"
        raise CheckError(f"expected a comparison (<, <=, >, >=, ==) after {metric.name!r}, "
                         f"got {got}")

    def value(self, metric: Metric, op: Op) -> float:
        self.skip()
        where = f"{metric.name} {op}"
        what = _WHAT[metric.unit]
        text, start = self.text, self.i
        i = start
        while i < len(text) and ((text[i].isascii() and text[i].isdigit()) or text[i] == "."):
            i += 1
        if i < len(text) and text[i] in "eE" and i > start:
            j = i + 1
            if j < len(text) and text[j] in "+-":
                j += 1
            if j < len(text) and text[j].isascii() and text[j].isdigit():
                while j < len(text) and text[j].isascii() and text[j].isdigit():
                    j += 1
                i = j
        digits = text[start:i]
        try:
            number = Decimal(digits) if digits and digits != "." else Decimal("x")
        except InvalidOperation:
            got = show(self.rest()) if self.rest() else "nothing"
            raise CheckError(f"{metric.name}: expected {what} after {where!r}, got {got}") \
                from None
        self.i = i
        self.skip()
        unit = self.unit_word()
        value = self.scale(metric, number, unit, f"{digits}{unit}")
        if not math.isfinite(value):
            raise CheckError(f"{metric.name}: expected a finite number, got {show(digits)}")
        return value

    def unit_word(self) -> str:
        text, start = self.text, self.i
        i = start
        if i < len(text) and text[i] == "%":
            self.i = i + 1
            return "%"
        if text.startswith("/s", i):
            self.i = i + 2
            return "/s"
        while i < len(text) and text[i].isascii() and text[i].isalpha():
            i += 1
        self.i = i
        return text[start:i].lower()

    def scale(self, metric: Metric, number: Decimal, unit: str, written: str) -> float:
        """The number in the metric's base unit, scaled exactly (99.9% is 0.999, not
        0.9990000000000001) before it becomes a float."""
        kind = metric.unit
        what = _WHAT[kind]
        factor = Decimal(1)
        if kind == "s":
            found = _DURATION_UNITS.get(unit or "s")
            if found is None:
                raise CheckError(f"{metric.name}: expected {what}, got {show(written)}")
            factor = found
        elif kind == "fraction":
            if unit not in ("", "%"):
                raise CheckError(f"{metric.name}: expected {what}, got {show(written)}")
            factor = Decimal("0.01") if unit == "%" else factor
        elif kind == "rps":
            if unit not in ("", "rps", "/s"):
                raise CheckError(f"{metric.name}: expected {what}, got {show(written)}")
        elif unit:
            raise CheckError(f"{metric.name}: expected {what} (no unit), got {show(written)}")
        try:
            value = float(number * factor)
        except ArithmeticError:
            value = math.inf
        limit = _LIMITS[kind]
        if math.isfinite(value) and not 0.0 <= value <= limit:
            bound = "100%" if kind == "fraction" else format_value(limit, kind)
            raise CheckError(f"{metric.name}: expected {what} between 0 and {bound}, got "
                             f"{show(written)}")
        return value


# -- a scenario's [[checks]] -----------------------------------------------------------------

WINDOWED: Final = ("window", "continuously")
"""``over`` values that take ``start`` and ``end``."""


def spec_problems(spec: CheckSpec, scenario: Scenario, where: str) -> list[str]:
    """What is wrong with a ``[[checks]]`` entry, one line each (``checks[0].expect: ...``)."""
    problems: list[str] = []
    if not spec.expect:
        return [f"{where}.expect: expected a check such as 'p99 < 300ms', got nothing"]
    try:
        exp = parse(spec.expect)
    except CheckError as exc:
        return [f"{where}.expect: {exc}"]
    metric = exp.metric
    if metric.scope == "run" and spec.over != "run":
        problems.append(f"{where}.over: {metric.name} is measured over the whole run; "
                        f"expected 'run', got {spec.over!r}")
    missing = _missing(metric, scenario)
    if missing:
        problems.append(f"{where}.expect: {metric.name} needs {missing}")
    if spec.over not in WINDOWED:
        for key in ("start", "end"):
            if getattr(spec, key):
                problems.append(f"{where}.{key}: only used with over = 'window' or "
                                f"'continuously', got over = {spec.over!r}")
    elif spec.end and spec.end <= spec.start:
        problems.append(f"{where}.end: expected a time after start ({spec.start:g} s) or 0 for "
                        f"the end of the run, got {spec.end:g} s")
    if spec.grace and spec.over != "after":
        problems.append(f"{where}.grace: only used with over = 'after', got over = "
                        f"{spec.over!r}")
    return problems


def _missing(metric: Metric, scenario: Scenario) -> str:
    if metric.needs in ("database", "backup") and not scenario.database.enabled:
        return "a database tier (database.enabled is false)"
    if metric.needs == "cdn" and not scenario.cdn.enabled:
        return "a CDN (cdn.enabled is false)"
    return ""


def check_name(spec: CheckSpec, exp: Expectation) -> str:
    """What a check is called in tables and reports: its ``name``, else its expression and
    where it is measured."""
    if spec.name:
        return spec.name
    if spec.over == "run":
        return exp.text()
    if spec.over in WINDOWED and (spec.start or spec.end):
        end = f"{spec.end:g}s" if spec.end else "end"
        return f"{exp.text()} {spec.over} {spec.start:g}s-{end}"
    return f"{exp.text()} {spec.over}"
