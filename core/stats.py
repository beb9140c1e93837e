"""What many runs say together: pass rates and distributions, with 95% confidence intervals.

A sweep's runs come back in any order from any number of workers; :func:`aggregate` sorts them by
(parameter set, seed) before it adds anything up, so the figures are identical whoever ran them.
Pass rates get a Wilson score interval (sound near 0 and 1, where a sweep's interesting checks
live); means get a Student-t interval; quantiles across runs are nearest-rank.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Final

from stackyard.core.protocol import CheckUnit, Record, Scalar, finite

Z95: Final = 1.959963984540054
"""The normal quantile of a two-sided 95% interval."""
_T95: Final = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201,
               2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074,
               2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
"""Student's t for a two-sided 95% interval, 1 to 30 degrees of freedom."""


class Measure(Record, frozen=True, kw_only=True):
    """One figure of one run (None: nothing to measure)."""

    name: str
    unit: CheckUnit
    value: float | None


class CheckOutcome(Record, frozen=True, kw_only=True):
    name: str
    passed: bool
    value: float | None = None


class RunOutcome(Record, frozen=True, kw_only=True):
    """What a sweep keeps of one run: its checks' verdicts and its figures."""

    group: int
    """Which parameter set it ran with (an index into the sweep's groups)."""
    seed: int
    checks: tuple[CheckOutcome, ...] = ()
    measures: tuple[Measure, ...] = ()


class CheckRate(Record, frozen=True, kw_only=True):
    """How often a check held across the runs of a parameter set."""

    name: str
    passed: int
    runs: int
    rate: float
    low: float
    """95% Wilson interval of the pass rate."""
    high: float


class Distribution(Record, frozen=True, kw_only=True):
    """A figure across the runs of a parameter set."""

    name: str
    unit: CheckUnit
    n: int
    """Runs that had a value."""
    mean: float = 0.0
    low: float = 0.0
    """95% interval of the mean (Student t)."""
    high: float = 0.0
    stdev: float = 0.0
    min: float = 0.0
    p5: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    max: float = 0.0


class SweepGroup(Record, frozen=True, kw_only=True):
    """The runs of one parameter set."""

    params: dict[str, Scalar]
    runs: int
    checks: tuple[CheckRate, ...] = ()
    measures: tuple[Distribution, ...] = ()


class SweepResult(Record, frozen=True, kw_only=True):
    """A whole sweep: the scenario, what was varied, and each parameter set's figures."""

    scenario: str
    duration: float
    seeds: tuple[int, ...]
    parameters: tuple[str, ...]
    """The ``--set`` paths varied (empty: seeds only)."""
    groups: tuple[SweepGroup, ...]
    runs: int


def t95(df: int) -> float:
    """Student's t quantile for a two-sided 95% interval with ``df`` degrees of freedom."""
    if df < 1:
        return math.inf
    if df <= len(_T95):
        return _T95[df - 1]
    return Z95 + (Z95**3 + Z95) / (4 * df)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``k / n`` ((0, 1) when ``n`` is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-quantile of sorted values."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def distribution(name: str, unit: CheckUnit, values: Iterable[float | None]) -> Distribution:
    """Mean with its 95% interval, spread and quantiles of the values that are there."""
    xs = [float(v) for v in values if v is not None]
    n = len(xs)
    if not n:
        return Distribution(name=name, unit=unit, n=0)
    mean = math.fsum(xs) / n
    stdev = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    half = t95(n - 1) * stdev / math.sqrt(n) if n > 1 else 0.0
    ordered = sorted(xs)
    r = finite
    return Distribution(name=name, unit=unit, n=n, mean=r(mean), low=r(mean - half),
                        high=r(mean + half), stdev=r(stdev), min=r(ordered[0]),
                        p5=r(nearest_rank(ordered, 0.05)), p50=r(nearest_rank(ordered, 0.5)),
                        p95=r(nearest_rank(ordered, 0.95)), max=r(ordered[-1]))


def aggregate(params: Sequence[dict[str, Scalar]], outcomes: Iterable[RunOutcome]) -> \
        tuple[SweepGroup, ...]:
    """Each parameter set's pass rates and distributions, from runs in any order."""
    ordered = sorted(outcomes, key=lambda o: (o.group, o.seed))
    groups: list[SweepGroup] = []
    for index, p in enumerate(params):
        runs = [o for o in ordered if o.group == index]
        names: dict[str, None] = {}
        units: dict[str, CheckUnit] = {}
        for o in runs:
            names.update((c.name, None) for c in o.checks)
            units.update((m.name, m.unit) for m in o.measures)
        rates = []
        for name in names:
            verdicts = [c.passed for o in runs for c in o.checks if c.name == name]
            k, n = sum(verdicts), len(verdicts)
            low, high = wilson(k, n)
            rates.append(CheckRate(name=name, passed=k, runs=n, rate=finite(k / n if n else 0.0),
                                   low=finite(low), high=finite(high)))
        measures = [distribution(name, unit, (m.value for o in runs for m in o.measures
                                              if m.name == name))
                    for name, unit in units.items()]
        groups.append(SweepGroup(params=dict(p), runs=len(runs), checks=tuple(rates),
                                 measures=tuple(measures)))
    return tuple(groups)
