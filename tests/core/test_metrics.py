"""Tests for core.metrics: histograms, rolling windows, per-second rings, SLO budgets, Erlang-C."""

from __future__ import annotations

import math
import random
from fractions import Fraction
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackyard.core.metrics import (
    MAX_VALUE,
    MIN_VALUE,
    Histogram,
    RollingHistogram,
    Series,
    SloBudget,
    erlang_c,
    mmc_mean_wait,
)

latencies = st.floats(min_value=MIN_VALUE, max_value=MAX_VALUE, allow_nan=False)
quantile_qs = st.floats(min_value=0.0, max_value=1.0)


def nearest_rank(values: list[float], q: float) -> float:
    """The reference quantile: the ceil(q*n)-th smallest value (the smallest for q = 0)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def histogram_of(values: list[float]) -> Histogram:
    h = Histogram()
    for v in values:
        h.record(v)
    return h


def signature(h: Histogram) -> tuple[object, ...]:
    qs = [i / 100 for i in range(101)]
    return (h.count, h.max, h.min, tuple(h.quantiles(qs)))


# -- Histogram ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(latencies, min_size=1, max_size=300), quantile_qs)
def test_quantile_within_one_percent_of_sorted_list(values: list[float], q: float) -> None:
    h = histogram_of(values)
    expected = nearest_rank(values, q)
    assert h.quantile(q) == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("seed", range(5))
def test_quantiles_of_skewed_latencies(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.lognormvariate(-4.0, 2.0) for _ in range(20_000)]
    values = [min(max(v, MIN_VALUE), MAX_VALUE) for v in values]
    h = histogram_of(values)
    for q in (0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        assert h.quantile(q) == pytest.approx(nearest_rank(values, q), rel=0.01)


def test_count_total_mean_max_are_exact() -> None:
    h = histogram_of([0.25, 0.5, 2.0])
    assert (h.count, h.total, h.mean, h.max, h.min) == (3, 2.75, 2.75 / 3, 2.0, 0.25)


def test_empty_histogram_reports_zeros() -> None:
    h = Histogram()
    assert (h.count, h.total, h.mean, h.max, h.min) == (0, 0.0, 0.0, 0.0, 0.0)
    assert h.quantile(0.99) == 0.0
    assert h.quantiles([0.5, 0.99]) == [0.0, 0.0]


def test_extreme_quantiles_are_exact_min_and_max() -> None:
    h = histogram_of([0.0123, 0.5, 7.77])
    assert h.quantile(0.0) == 0.0123
    assert h.quantile(1.0) == 7.77


def test_values_at_or_below_zero_go_to_the_zero_bucket() -> None:
    h = histogram_of([0.0, -1.0, 0.0, 0.3])
    assert h.quantile(0.5) == 0.0
    assert h.quantile(0.75) == 0.0
    assert h.quantile(1.0) == 0.3
    assert h.count == 4


def test_values_outside_the_range_are_clamped_but_counted() -> None:
    h = histogram_of([1e-9, 5e3, 1.0])
    assert h.count == 3
    assert h.quantile(0.0) == 1e-9
    assert h.quantile(1.0) == 5e3
    assert h.quantile(0.5) == pytest.approx(1.0, rel=0.01)


@pytest.mark.parametrize("q", [-0.01, 1.01, math.nan])
def test_quantile_outside_unit_interval_is_an_error(q: float) -> None:
    with pytest.raises(ValueError, match="q must be within"):
        histogram_of([1.0]).quantile(q)


@settings(max_examples=100, deadline=None)
@given(st.lists(latencies, max_size=100), st.lists(latencies, max_size=100))
def test_merge_equals_recording_everything_in_one(a: list[float], b: list[float]) -> None:
    merged = histogram_of(a)
    other = histogram_of(b)
    before = signature(other)
    merged.merge(other)
    whole = histogram_of(a + b)
    assert signature(merged) == signature(whole)
    assert merged.total == pytest.approx(whole.total)
    assert signature(other) == before


def test_copy_is_independent_and_reset_empties() -> None:
    h = histogram_of([0.1, 0.2])
    c = h.copy()
    h.record(9.0)
    assert (c.count, c.max) == (2, 0.2)
    assert signature(c) == signature(histogram_of([0.1, 0.2]))
    h.reset()
    assert signature(h) == signature(Histogram())
    h.record(0.4)
    assert (h.count, h.max, h.min) == (1, 0.4, 0.4)


# -- RollingHistogram --------------------------------------------------------------------------


def test_rolling_window_drops_old_seconds() -> None:
    r = RollingHistogram(window=10)
    for second in range(10):
        r.record(second + 0.5, float(second + 1))
    assert r.quantile(9.9, 0.0) == 1.0
    assert r.quantile(9.9, 1.0) == 10.0
    assert r.count(9.9) == 10
    # At t=10 the window is seconds 1..10: the value recorded in second 0 is gone.
    assert r.quantile(10.0, 0.0) == 2.0
    assert r.count(10.0) == 9
    assert r.quantile(15.2, 0.0) == 7.0
    assert r.quantile(18.9, 1.0) == 10.0
    assert r.quantile(18.9, 0.0) == 10.0
    assert r.quantile(19.0, 0.5) == 0.0
    assert r.count(19.0) == 0


def test_rolling_gap_longer_than_window_empties_it() -> None:
    r = RollingHistogram(window=3)
    r.record(1.0, 0.5)
    r.record(2.0, 0.6)
    r.record(100.0, 0.1)
    assert r.count(100.5) == 1
    assert r.quantile(100.5, 1.0) == 0.1


def test_rolling_empty_is_zero() -> None:
    assert RollingHistogram().quantile(5.0, 0.99) == 0.0
    assert RollingHistogram().quantiles(5.0, [0.5, 0.99]) == [0.0, 0.0]


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=1, max_value=6),
    st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=4.0), latencies),
        min_size=1,
        max_size=80,
    ),
    st.floats(min_value=0.0, max_value=8.0),
)
def test_rolling_equals_a_histogram_of_the_window(
    window: int, steps: list[tuple[float, float]], extra: float
) -> None:
    r = RollingHistogram(window=window)
    now = 0.0
    recorded: list[tuple[float, float]] = []
    for dt, value in steps:
        now += dt
        r.record(now, value)
        recorded.append((now, value))
    now += extra
    in_window = [v for t, v in recorded if int(t) > int(now) - window]
    expected = histogram_of(in_window)
    assert r.count(now) == len(in_window)
    qs = [0.0, 0.25, 0.5, 0.9, 0.99, 1.0]
    assert r.quantiles(now, qs) == expected.quantiles(qs)
    assert signature(r.histogram(now)) == signature(expected)


def test_rolling_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window"):
        RollingHistogram(window=0)


# -- Series ------------------------------------------------------------------------------------


def test_series_add_accumulates_and_set_overwrites() -> None:
    s = Series()
    s.add(3.1)
    s.add(3.9, 2.0)
    s.set(4.5, 7.0)
    s.set(4.6, 5.0)
    assert s.values(3, now=4.9) == [0.0, 3.0, 5.0]
    assert s.last(3.0) == 3.0
    assert s.last(4.0) == 5.0
    assert s.last(5.0) == 0.0


def test_series_accepts_a_late_add_to_an_earlier_second() -> None:
    s = Series()
    s.add(5.1)
    s.add(3.2)
    s.add(5.9)
    s.add(3.3)
    assert s.values(3, now=5.0) == [2.0, 0.0, 2.0]
    assert s.values(3) == [2.0, 0.0, 2.0]


def test_series_values_default_to_latest_second_and_full_capacity() -> None:
    s = Series(capacity=5)
    s.add(1.0)
    s.add(3.0, 4.0)
    assert s.values() == [0.0, 0.0, 1.0, 0.0, 4.0]
    assert s.values(2) == [0.0, 4.0]


def test_series_zero_fills_gaps() -> None:
    s = Series()
    s.add(0.5, 1.0)
    s.add(4.5, 2.0)
    assert s.values(6, now=5.0) == [1.0, 0.0, 0.0, 0.0, 2.0, 0.0]


def test_series_wraps_around_without_stale_values() -> None:
    s = Series(capacity=600)
    for second in range(600):
        s.set(second, float(second))
    # Seconds 600..609 overwrite the slots of 0..9; 610..619 are skipped.
    for second in range(600, 610):
        s.add(second + 0.5, 1.0)
    got = s.values(20, now=619.0)
    assert got == [1.0] * 10 + [0.0] * 10
    # The slot of second 610 still holds second 10; reading 610 must not see it.
    assert s.last(610.0) == 0.0
    assert s.values(now=1209.0) == [0.0] * 600
    assert s.values(3, now=601.0) == [599.0, 1.0, 1.0]


def test_series_far_in_the_future_reads_zero() -> None:
    s = Series(capacity=10)
    s.add(5.0, 3.0)
    s.add(25.0, 1.0)
    assert s.values(now=25.0) == [0.0] * 9 + [1.0]
    assert s.last(15.0) == 0.0


def test_series_rate_uses_complete_seconds_only() -> None:
    s = Series()
    for second in range(10):
        s.add(second + 0.1, float(second))
    s.add(10.2, 1000.0)  # the current, partial second
    assert s.rate(10.5) == pytest.approx((5 + 6 + 7 + 8 + 9) / 5)
    assert s.rate(10.5, seconds=2) == pytest.approx((8 + 9) / 2)
    assert s.rate(11.0, seconds=1) == 1000.0


def test_series_rate_near_the_start() -> None:
    s = Series()
    s.add(0.5, 4.0)
    s.add(1.5, 2.0)
    assert s.rate(0.9) == 0.0
    assert s.rate(2.0) == 3.0


# -- SloBudget ---------------------------------------------------------------------------------


def test_slo_empty_is_untouched() -> None:
    slo = SloBudget(target=0.99, latency=0.3)
    assert (slo.good, slo.total, slo.good_ratio, slo.budget_remaining) == (0, 0, 1.0, 1.0)


def test_slo_good_needs_success_within_threshold() -> None:
    slo = SloBudget(target=0.9, latency=0.3)
    slo.record(True, 0.3)
    slo.record(True, 0.31)
    slo.record(False, 0.01)
    slo.record(True, 0.0)
    assert (slo.good, slo.total, slo.bad) == (2, 4, 2)
    assert slo.good_ratio == 0.5


@pytest.mark.parametrize(
    ("bad", "total", "remaining"),
    [(0, 1000, 1.0), (5, 1000, 0.5), (10, 1000, 0.0), (30, 1000, -2.0)],
)
def test_slo_budget_remaining(bad: int, total: int, remaining: float) -> None:
    slo = SloBudget(target=0.99, latency=1.0)
    for i in range(total):
        slo.record(i >= bad, 0.1)
    assert slo.budget_remaining == pytest.approx(remaining)
    assert slo.good_ratio == pytest.approx((total - bad) / total)


def test_slo_target_of_one_has_no_budget() -> None:
    slo = SloBudget(target=1.0, latency=1.0)
    slo.record(True, 0.5)
    assert slo.budget_remaining == 1.0
    slo.record(True, 2.0)
    assert slo.budget_remaining == 0.0


@pytest.mark.parametrize("target", [-0.1, 1.5])
def test_slo_target_outside_unit_interval_is_an_error(target: float) -> None:
    with pytest.raises(ValueError, match="target"):
        SloBudget(target=target, latency=1.0)


# -- Erlang-C ----------------------------------------------------------------------------------


def erlang_c_textbook(c: int, lam: Fraction, mu: Fraction) -> Fraction:
    """The closed form, in exact arithmetic."""
    a = lam / mu
    rho = a / c
    top = a**c / math.factorial(c) / (1 - rho)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def test_erlang_c_two_servers_one_erlang_is_a_third() -> None:
    assert erlang_c(2, 1.0, 1.0) == pytest.approx(1 / 3, rel=1e-12)
    assert mmc_mean_wait(2, 1.0, 1.0) == pytest.approx(1 / 3, rel=1e-12)


@pytest.mark.parametrize(("lam", "mu"), [(0.5, 1.0), (0.9, 1.0), (3.0, 4.0), (0.01, 2.0)])
def test_single_server_is_mm1(lam: float, mu: float) -> None:
    rho = lam / mu
    assert erlang_c(1, lam, mu) == pytest.approx(rho, rel=1e-12)
    assert mmc_mean_wait(1, lam, mu) == pytest.approx(rho / (mu - lam), rel=1e-12)


def test_mm4_at_rho_point_eight() -> None:
    # The benchmark's queue: P(wait) = 0.5964, Wq = 0.7455 s.
    assert erlang_c(4, 3.2, 1.0) == pytest.approx(0.5964325, abs=1e-7)
    assert mmc_mean_wait(4, 3.2, 1.0) == pytest.approx(0.7455406, abs=1e-7)


@pytest.mark.parametrize("c", [1, 2, 3, 5, 8, 16, 40])
@pytest.mark.parametrize(
    "rho", [Fraction(1, 10), Fraction(1, 2), Fraction(4, 5), Fraction(99, 100)]
)
def test_erlang_c_matches_the_closed_form(c: int, rho: Fraction) -> None:
    mu = Fraction(3, 2)
    lam = rho * c * mu
    expected = erlang_c_textbook(c, lam, mu)
    assert erlang_c(c, float(lam), float(mu)) == pytest.approx(float(expected), rel=1e-9)
    assert mmc_mean_wait(c, float(lam), float(mu)) == pytest.approx(
        float(expected / (c * mu - lam)), rel=1e-9
    )


def test_erlang_c_is_stable_for_many_servers() -> None:
    # a**c / c! overflows a float long before c = 2000; the recursion does not.
    expected = erlang_c_textbook(2000, Fraction(1960), Fraction(1))
    assert erlang_c(2000, 1960.0, 1.0) == pytest.approx(float(expected), rel=1e-9)


def test_erlang_c_edges() -> None:
    assert erlang_c(3, 0.0, 1.0) == 0.0
    assert mmc_mean_wait(3, 0.0, 1.0) == 0.0
    assert erlang_c(2, 2.0, 1.0) == 1.0
    assert mmc_mean_wait(2, 2.0, 1.0) == math.inf
    assert mmc_mean_wait(2, 5.0, 1.0) == math.inf


@pytest.mark.parametrize(("c", "lam", "mu"), [(0, 1.0, 1.0), (2, -1.0, 1.0), (2, 1.0, 0.0)])
def test_erlang_c_rejects_bad_parameters(c: int, lam: float, mu: float) -> None:
    with pytest.raises(ValueError, match="erlang_c"):
        erlang_c(c, lam, mu)


def test_meter_turns_a_running_total_into_per_second_counts() -> None:
    from stackyard.core.metrics import Meter

    meter = Meter()
    for second, total in enumerate([3, 3, 10, 25], start=1):
        meter.sample(float(second), total)
    assert meter.series.values(4, 3.0) == [3.0, 0.0, 7.0, 15.0]
    assert meter.series.rate(4.0, 4) == 25 / 4


def test_rolling_histogram_keeps_the_all_time_figures_too() -> None:
    from stackyard.core.metrics import Histogram, RollingHistogram

    rolling = RollingHistogram(3, keep_total=True)
    plain = Histogram()
    rng = random.Random(5)
    t = 0.0
    for _ in range(5000):
        t += rng.expovariate(100.0)
        v = rng.expovariate(20.0)
        rolling.record(t, v)
        plain.record(v)
    total = rolling.all_time()
    assert total.count == plain.count == 5000
    assert total.total == pytest.approx(plain.total)
    for q in (0.5, 0.95, 0.99):
        assert total.quantile(q) == plain.quantile(q)
    with pytest.raises(ValueError, match="keep_total"):
        RollingHistogram(3).all_time()


def test_slo_window_forgets_what_left_it() -> None:
    slo = SloBudget(target=0.99, latency=1.0, window=300.0)
    for i in range(100):
        slo.record(i >= 10, 0.1, now=5.0)  # an early incident: 10 bad of 100
    assert slo.window_burn(5.0) == pytest.approx(10.0)  # 10% errors, 1% allowed
    assert slo.window_good_ratio(5.0) == pytest.approx(0.9)
    for t in range(6, 400):
        slo.record(True, 0.1, now=float(t))
    assert slo.window_burn(399.0) == 0.0 and slo.window_good_ratio(399.0) == 1.0
    assert slo.budget_remaining < 0  # the whole run still remembers it
    assert slo.burn(0, 0) == 0.0


def test_slo_window_bounds() -> None:
    with pytest.raises(ValueError):
        SloBudget(target=0.9, latency=1.0, window=0.0)
    assert SloBudget(0.9, 1.0, window=1e6).width == pytest.approx(1e6 / SloBudget.BUCKETS)


@given(st.lists(st.tuples(st.sampled_from(["add", "set", "read"]),
                          st.integers(min_value=0, max_value=80),
                          st.floats(min_value=-1e6, max_value=1e6)), max_size=200),
       st.integers(min_value=1, max_value=40))
def test_a_remembered_window_reads_as_the_values_do(ops: list[tuple[str, int, float]],
                                                     n: int) -> None:
    series = Series(capacity=50)
    one = partial(round, ndigits=3)
    clock = 0
    for op, at, value in ops:
        clock = max(clock, at)  # time moves forward; writes may land on earlier seconds
        if op == "add":
            series.add(at + 0.5, value)
        elif op == "set":
            series.set(at + 0.25, value)
        else:
            now = clock + 0.5
            assert series.window(n, now, one) == tuple(one(v) for v in series.values(n, now))
