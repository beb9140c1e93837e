"""Counters for the hot path: latency histograms, per-second rings, SLO budgets, M/M/c formulas.

Everything here is called per request by the engine, so the record paths allocate nothing and
use ``__slots__``. Histograms use log-spaced buckets (the DDSketch mapping): every value from
1 microsecond to 1000 seconds is reported within :data:`RELATIVE_ACCURACY` of the true value.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable
from functools import reduce
from itertools import accumulate, repeat
from operator import add, mul, sub

RELATIVE_ACCURACY = 0.009
"""Worst relative error of a quantile for values in [:data:`MIN_VALUE`, :data:`MAX_VALUE`]."""
MIN_VALUE = 1e-6
MAX_VALUE = 1e3

_GAMMA = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
_K = 1.0 / math.log(_GAMMA)
# Bucket i >= 1 holds values in (GAMMA**(i - 1 - _OFFSET), GAMMA**(i - _OFFSET)]; bucket 0 holds
# values <= 0. Values outside [MIN_VALUE, MAX_VALUE] are clamped into the end buckets.
_OFFSET = 1 - math.ceil(math.log(MIN_VALUE) * _K)
_TOP = math.ceil(math.log(MAX_VALUE) * _K) + _OFFSET
_NBUCKETS = _TOP + 1
_REPR = [0.0] + [2.0 * _GAMMA ** (i - _OFFSET) / (_GAMMA + 1.0) for i in range(1, _NBUCKETS)]
"""The value reported for each bucket: the point with equal relative error to both edges."""
_ZEROS = (0,) * _NBUCKETS

_log = math.log
_ceil = math.ceil


def _index(value: float) -> int:
    """The bucket the record paths put ``value`` in (NaN included: bucket 0)."""
    if not value > 0.0:
        return 0
    if value >= MAX_VALUE:  # inf too, whose log has no ceiling
        return _TOP
    i = _ceil(_log(value) * _K) + _OFFSET
    return 1 if i < 1 else i


def _span(h: Histogram) -> tuple[int, int]:
    """The slice of bucket indices holding all of ``h``'s values: every value lies within
    [min, max] and the mapping is monotonic, so a second's few hundred latencies touch about a
    hundred of the thousand-odd buckets, and merges and resets need only those."""
    return 0 if h._counts[0] else _index(h._min), _index(h._max) + 1


def _check_q(q: float) -> None:
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile: q must be within [0, 1], got {q!r}")


def _quantiles(counts: list[int], n: int, qs: Iterable[float], lo: float, hi: float,
               first: int = 0) -> list[float]:
    """Nearest-rank quantiles of bucket ``counts`` holding ``n`` values in [lo, hi] (``counts``
    may be a slice of the buckets starting at bucket ``first``)."""
    qs = list(qs)
    for q in qs:
        _check_q(q)
    if n == 0:
        return [0.0 for _ in qs]
    cum = list(accumulate(counts))
    out = []
    for q in qs:
        rank = _ceil(q * n)
        if rank <= 1:
            out.append(lo)  # the smallest and largest values are known exactly
        elif rank >= n:
            out.append(hi)
        else:
            v = _REPR[first + bisect_left(cum, rank)]
            # Clamping to the observed range only moves the estimate towards the truth.
            out.append(lo if v < lo else hi if v > hi else v)
    return out


class Histogram:
    """A latency histogram with bounded relative error; cheap to record, merge and copy."""

    __slots__ = ("_counts", "_max", "_min", "count", "total")

    def __init__(self) -> None:
        self.count = 0
        """Number of values recorded."""
        self.total = 0.0
        """Sum of the values recorded."""
        self._min = math.inf
        self._max = -math.inf
        self._counts = [0] * _NBUCKETS

    def record(self, value: float) -> None:
        """Add one value (seconds; values <= 0 go to the zero bucket)."""
        self.count += 1
        self.total += value
        if value > self._max:
            self._max = value
        if value < self._min:
            self._min = value
        if value > 0.0:
            i = _ceil(_log(value) * _K) + _OFFSET
            if i < 1:
                i = 1
            elif i > _TOP:
                i = _TOP
            self._counts[i] += 1
        else:
            self._counts[0] += 1

    def record_all(self, values: list[float]) -> None:
        """Add every value in ``values``, exactly as :meth:`record` would one at a time, in a
        few passes over the list that run in C (the per-request path only appends)."""
        if not values:
            return
        lo = min(values)
        hi = max(values)
        try:
            if not MIN_VALUE <= lo <= hi <= MAX_VALUE:
                raise ValueError("outside the clamp-free range")
            # _ceil(_log(value) * _K) per value, as record computes it (the offset added after)
            ranks = Counter(map(_ceil, map(mul, map(_log, values), repeat(_K))))
        except (ValueError, OverflowError):  # zeros, negatives, NaN, extremes: one at a time
            for value in values:
                self.record(value)
            return
        counts = self._counts
        for rank, n in ranks.items():
            counts[rank + _OFFSET] += n
        self.count += len(values)
        self.total = reduce(add, values, self.total)  # left to right, as += would
        if hi > self._max:
            self._max = hi
        if lo < self._min:
            self._min = lo

    @property
    def mean(self) -> float:
        """Mean of the values recorded (0 when empty)."""
        return self.total / self.count if self.count else 0.0

    @property
    def max(self) -> float:
        """Largest value recorded, exactly (0 when empty)."""
        return self._max if self.count else 0.0

    @property
    def min(self) -> float:
        """Smallest value recorded, exactly (0 when empty)."""
        return self._min if self.count else 0.0

    def quantile(self, q: float) -> float:
        """The nearest-rank ``q``-quantile (``0 <= q <= 1``), 0 when empty."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Iterable[float]) -> list[float]:
        """Several quantiles in one pass over the buckets (e.g. p50, p95, p99)."""
        if not self.count:
            return _quantiles(self._counts, 0, qs, self._min, self._max)
        a, b = _span(self)
        return _quantiles(self._counts[a:b], self.count, qs, self._min, self._max, a)

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s values to this histogram (``other`` is unchanged)."""
        if not other.count:
            return
        a, b = _span(other)
        counts = self._counts
        counts[a:b] = map(add, counts[a:b], other._counts[a:b])
        self.count += other.count
        self.total += other.total
        if other._max > self._max:
            self._max = other._max
        if other._min < self._min:
            self._min = other._min

    def reset(self) -> None:
        """Forget every value."""
        if self.count:
            a, b = _span(self)
            self._counts[a:b] = _ZEROS[a:b]
        self.count = 0
        self.total = 0.0
        self._min = math.inf
        self._max = -math.inf

    def copy(self) -> Histogram:
        """An independent copy."""
        h = Histogram.__new__(Histogram)
        h.count = self.count
        h.total = self.total
        h._min = self._min
        h._max = self._max
        h._counts = self._counts.copy()
        return h

    def __repr__(self) -> str:
        return f"Histogram(count={self.count}, mean={self.mean:.6g}, max={self.max:.6g})"


class RollingHistogram:
    """Per-simulated-second histograms over the last ``window`` seconds.

    The window ending at ``now`` covers seconds ``int(now) - window + 1 .. int(now)`` (the current
    second included, partial). Complete seconds are kept summed in one aggregate, updated when a
    second rolls over, so a query merges just two bucket lists. Time must not go backwards;
    a query for an earlier ``now`` answers for the latest second seen.
    """

    __slots__ = ("_agg", "_cur", "_head", "_next", "_pending", "_ring", "_total", "window")

    def __init__(self, window: int = 10, *, keep_total: bool = False) -> None:
        if window < 1:
            raise ValueError(f"RollingHistogram: window must be >= 1 second, got {window!r}")
        self.window = window
        self._total = Histogram() if keep_total else None
        """With ``keep_total``: every complete second ever recorded, merged as it completes, so
        one ``record`` per value feeds both the window and the all-time figures."""
        self._ring = [Histogram() for _ in range(window)]
        self._head = 0
        self._next = 1.0
        """When the second after ``_head`` starts (a float compare per record, not an int())."""
        self._cur = self._ring[0]
        self._agg = [0] * _NBUCKETS
        """Bucket counts of the complete seconds still in the window."""
        self._pending: list[float] = []
        """Values of the current second not in its histogram yet: recording appends, and
        whatever reads the histograms first files them all at once (Histogram.record_all)."""

    def _flush(self) -> None:
        if self._pending:
            self._cur.record_all(self._pending)
            self._pending.clear()

    def _advance(self, second: int) -> None:
        self._flush()
        head = self._head
        window = self.window
        cur = self._cur
        if self._total is not None and cur.count:
            self._total.merge(cur)
        if second - head >= window:
            for h in self._ring:
                if h.count:
                    h.reset()
            self._agg = [0] * _NBUCKETS
        else:
            agg = self._agg
            if cur.count:
                a, b = _span(cur)
                agg[a:b] = map(add, agg[a:b], cur._counts[a:b])
            ring = self._ring
            for s in range(head + 1, second + 1):
                h = ring[s % window]
                if h.count:  # it holds second s - window, now out of the window
                    a, b = _span(h)
                    agg[a:b] = map(sub, agg[a:b], h._counts[a:b])
                    h.reset()
        self._head = second
        self._next = second + 1.0
        self._cur = self._ring[second % window]

    def record(self, now: float, value: float) -> None:
        """Add ``value`` to the histogram of second ``int(now)``."""
        if now >= self._next:
            self._advance(int(now))
        self._pending.append(value)

    def quantiles(self, now: float, qs: Iterable[float]) -> list[float]:
        """Quantiles over the window ending at ``now`` (0 when it is empty)."""
        s = int(now)
        if s > self._head:
            self._advance(s)
        self._flush()
        n = 0
        lo = math.inf
        hi = -math.inf
        for h in self._ring:
            if h.count:
                n += h.count
                if h._min < lo:
                    lo = h._min
                if h._max > hi:
                    hi = h._max
        if n == 0:
            return _quantiles(self._agg, 0, qs, lo, hi)
        # only the buckets between the window's extremes hold anything (see _span)
        cur = self._cur._counts
        a = 0 if self._agg[0] or cur[0] else _index(lo)
        b = _index(hi) + 1
        counts = self._agg[a:b]
        if self._cur.count:
            counts = list(map(add, counts, cur[a:b]))
        return _quantiles(counts, n, qs, lo, hi, a)

    def quantile(self, now: float, q: float) -> float:
        """The ``q``-quantile over the window ending at ``now`` (0 when it is empty)."""
        return self.quantiles(now, (q,))[0]

    def all_time(self) -> Histogram:
        """Everything recorded so far (needs ``keep_total``), as one new :class:`Histogram`."""
        if self._total is None:
            raise ValueError("RollingHistogram: created without keep_total")
        self._flush()
        out = self._total.copy()
        out.merge(self._cur)
        return out

    def histogram(self, now: float) -> Histogram:
        """The window ending at ``now`` as one new :class:`Histogram`."""
        s = int(now)
        if s > self._head:
            self._advance(s)
        self._flush()
        out = Histogram()
        for h in self._ring:
            if h.count:
                out.merge(h)
        return out

    def second(self, now: float, s: int) -> Histogram | None:
        """The values recorded during second ``s`` (one still in the window ending at ``now``),
        or None when it has none or has left the window. Not a copy: read it, do not keep it."""
        current = int(now)
        if current > self._head:
            self._advance(current)
        self._flush()
        if not self._head - self.window < s <= self._head:
            return None
        h = self._ring[s % self.window]
        return h if h.count else None

    def count(self, now: float) -> int:
        """Values recorded in the window ending at ``now``."""
        s = int(now)
        if s > self._head:
            self._advance(s)
        self._flush()
        return sum(h.count for h in self._ring)


class Series:
    """A ring of per-second floats (``capacity`` seconds, 10 minutes by default).

    Each slot remembers which second it holds, so seconds that saw no data read as zero rather
    than as whatever that slot held ``capacity`` seconds earlier.
    """

    __slots__ = ("_dirty", "_head", "_head_slot", "_memo", "_memo_key", "_stamps", "_values",
                 "capacity")

    def __init__(self, capacity: int = 600) -> None:
        if capacity < 1:
            raise ValueError(f"Series: capacity must be >= 1 second, got {capacity!r}")
        self.capacity = capacity
        self._values = [0.0] * capacity
        self._stamps: list[int | None] = [None] * capacity
        self._head = -1
        """The latest second written (-1 before any)."""
        self._head_slot = -1 % capacity
        self._stamps[self._head_slot] = -1  # second -1 holds 0, so the fast path in add holds
        self._memo_key: tuple[int, int, Callable[[float], float]] | None = None
        self._memo: tuple[float, ...] = ()
        self._dirty = 0
        """The earliest second written since :meth:`window` last remembered its answer."""

    def add(self, now: float, amount: float = 1.0) -> None:
        """Accumulate ``amount`` into second ``int(now)`` (a counter)."""
        s = int(now)
        if s < self._dirty:
            self._dirty = s
        if s == self._head:
            self._values[self._head_slot] += amount
            return
        i = s % self.capacity
        if self._stamps[i] == s:
            self._values[i] += amount
        else:
            self._stamps[i] = s
            self._values[i] = amount
            if s > self._head:
                self._head = s
                self._head_slot = i

    def set(self, now: float, value: float) -> None:
        """Overwrite second ``int(now)`` with ``value`` (a gauge)."""
        s = int(now)
        if s < self._dirty:
            self._dirty = s
        i = s % self.capacity
        self._stamps[i] = s
        self._values[i] = value
        if s > self._head:
            self._head = s
            self._head_slot = i

    def _get(self, s: int) -> float:
        i = s % self.capacity
        return self._values[i] if self._stamps[i] == s else 0.0

    def values(self, n: int | None = None, now: float | None = None) -> list[float]:
        """The ``n`` seconds (default ``capacity``) ending at second ``int(now)`` (default the
        latest second written), oldest first; seconds without data are 0."""
        if n is None:
            n = self.capacity
        end = self._head if now is None else int(now)
        cap = self.capacity
        stamps = self._stamps
        vals = self._values
        return [vals[s % cap] if stamps[s % cap] == s else 0.0 for s in range(end - n + 1, end + 1)]

    def window(self, n: int, now: float, one: Callable[[float], float]) -> tuple[float, ...]:
        """``one`` of each of :meth:`values` ``(n, now)``. The answer is remembered: the next
        call reuses it for the seconds not written since, so a trend that moves on by a second
        costs a value or two, not ``n`` (snapshots ask for a dozen each simulated second)."""
        end = int(now)
        start = end - n + 1
        fresh = start  # the first second to work out anew
        key = self._memo_key
        if key is not None and key[0] == n and key[2] is one and start <= key[1] <= end:
            fresh = min(self._dirty, key[1] + 1)
        cap, stamps, vals = self.capacity, self._stamps, self._values
        if fresh > start:
            kept = self._memo[start - key[1] + n - 1:fresh - key[1] + n - 1]  # type: ignore[index]
        else:
            kept, fresh = (), start
        out = kept + tuple([one(vals[s % cap] if stamps[s % cap] == s else 0.0)
                            for s in range(fresh, end + 1)])
        self._memo_key = (n, end, one)
        self._memo = out
        self._dirty = end + 1
        return out

    def total(self, n: int, now: float) -> float:
        """``sum(self.values(n, now))``, without the list."""
        end = int(now)
        cap, stamps, vals = self.capacity, self._stamps, self._values
        total = 0.0
        for s in range(end - n + 1, end + 1):
            i = s % cap
            if stamps[i] == s:
                total += vals[i]
        return total

    def last(self, now: float) -> float:
        """The value of second ``int(now)`` (the current, possibly partial, second)."""
        return self._get(int(now))

    def rate(self, now: float, seconds: int = 5) -> float:
        """Mean per second over the last ``seconds`` complete seconds before ``now``.

        Near the start of a run only the complete seconds since 0 count.
        """
        end = int(now)
        n = min(seconds, end, self.capacity)
        if n <= 0:
            return 0.0
        cap, stamps, vals = self.capacity, self._stamps, self._values
        return sum([vals[s % cap] if stamps[s % cap] == s else 0.0
                    for s in range(end - n, end)]) / n


class Meter:
    """A per-second :class:`Series` fed by sampling a running total once a simulated second,
    so the per-event path only bumps an integer."""

    __slots__ = ("_prev", "series")

    def __init__(self, capacity: int = 600) -> None:
        self.series = Series(capacity)
        self._prev = 0.0

    def sample(self, now: float, total: float) -> None:
        """Record ``total``'s growth over the second that just ended at ``now``."""
        self.series.set(now - 1.0, total - self._prev)
        self._prev = total


class SloBudget:
    """An availability-and-latency SLO: a request is good if it succeeded within ``latency``.

    Counts the whole run (``good`` and ``total``, which the request path may bump directly),
    and the last ``window`` seconds in ``BUCKETS`` time buckets, so an early incident stops
    weighing on the present once it leaves the window (SRE practice judges a service on a
    rolling window and alerts on how fast the budget burns). The buckets are filled from the
    run's counters when time moves on (:meth:`roll`), so counting a request costs nothing more.
    """

    __slots__ = ("_bad", "_mark_bad", "_mark_total", "_stamp", "_tick", "_total", "good",
                 "latency", "target", "total", "width", "window")

    BUCKETS = 300

    def __init__(self, target: float, latency: float, window: float = 300.0) -> None:
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"SloBudget: target must be within [0, 1], got {target!r}")
        if not (math.isfinite(window) and window > 0.0):
            raise ValueError(f"SloBudget: window must be > 0 seconds, got {window!r}")
        self.target = target
        self.latency = latency
        self.window = window
        self.width = window / self.BUCKETS
        self.good = 0
        self.total = 0
        self._stamp = [-1] * self.BUCKETS
        self._total = [0] * self.BUCKETS
        self._bad = [0] * self.BUCKETS
        self._tick = 0
        self._mark_total = 0
        self._mark_bad = 0

    def record(self, ok: bool, latency: float, now: float = 0.0) -> None:
        """Count one request that finished at simulated time ``now``."""
        self.roll(now)
        self.total += 1
        if ok and latency <= self.latency:
            self.good += 1

    def roll(self, now: float) -> None:
        """Close the bucket in progress if ``now`` is past it (call at least once a bucket)."""
        tick = int(now / self.width)
        if tick <= self._tick:
            return
        i = self._tick % self.BUCKETS
        bad = self.total - self.good
        self._stamp[i] = self._tick
        self._total[i] = self.total - self._mark_total
        self._bad[i] = bad - self._mark_bad
        self._tick = tick
        self._mark_total = self.total
        self._mark_bad = bad

    @property
    def bad(self) -> int:
        return self.total - self.good

    @property
    def good_ratio(self) -> float:
        """Fraction of good requests over the run (1 when none yet)."""
        return self.good / self.total if self.total else 1.0

    @property
    def budget_remaining(self) -> float:
        """Share of the run's error budget left: 1 untouched, 0 spent, negative when overspent."""
        burn = self.burn(self.bad, self.total)
        return 0.0 if math.isinf(burn) else 1.0 - burn

    def burn(self, bad: int, total: int) -> float:
        """Burn rate of ``bad`` out of ``total``: the error rate as a multiple of the rate the
        target allows (1: the budget lasts exactly the window; 0 with no requests)."""
        if total == 0 or bad == 0:
            return 0.0
        allowed = 1.0 - self.target
        if allowed <= 0.0:
            return math.inf
        return bad / total / allowed

    def recent(self, now: float) -> tuple[int, int]:
        """(bad, total) over the last ``window`` seconds up to ``now``."""
        self.roll(now)
        oldest = self._tick - self.BUCKETS + 1
        bad = self.total - self.good - self._mark_bad
        total = self.total - self._mark_total
        for stamp, t, b in zip(self._stamp, self._total, self._bad, strict=True):
            if stamp >= oldest:
                total += t
                bad += b
        return bad, total

    def window_good_ratio(self, now: float) -> float:
        bad, total = self.recent(now)
        return 1.0 - bad / total if total else 1.0

    def window_burn(self, now: float) -> float:
        return self.burn(*self.recent(now))

    def reset(self) -> None:
        self.good = 0
        self.total = 0
        self._stamp = [-1] * self.BUCKETS
        self._mark_total = self._mark_bad = 0


def erlang_c(c: int, lam: float, mu: float) -> float:
    """P(wait) in an M/M/c queue (1 when ``lam >= c * mu``).

    Uses the Erlang-B recursion, which stays finite for any number of servers.
    """
    if c < 1:
        raise ValueError(f"erlang_c: c must be >= 1, got {c!r}")
    if mu <= 0.0 or lam < 0.0:
        raise ValueError(f"erlang_c: need mu > 0 and lam >= 0, got lam={lam!r} mu={mu!r}")
    a = lam / mu
    rho = a / c
    if rho >= 1.0:
        return 1.0
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b / (1.0 - rho * (1.0 - b))


def mmc_mean_wait(c: int, lam: float, mu: float) -> float:
    """Mean time in queue (Wq) of an M/M/c queue; ``inf`` when unstable."""
    p = erlang_c(c, lam, mu)
    if lam >= c * mu:
        return math.inf
    return p / (c * mu - lam)
