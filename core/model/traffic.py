"""Client traffic: regions with Poisson (or bursty) arrivals, rate patterns, an endpoint mix,
Zipf keys."""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from stackyard.core.config import MAX_RATE, PatternConfig, RegionConfig, TrafficConfig

if TYPE_CHECKING:
    from stackyard.core.kernel import Handle, Kernel

    from .network import Edge, Link

STATIC, READ, WRITE = 0, 1, 2
_log = math.log
ENDPOINTS = ("static", "read", "write")


class Request:
    """One client request, from arrival to its final answer (possibly after retries), or a CDN
    edge's origin fetch (``waiters`` set)."""

    __slots__ = (
        "attempts",
        "client",
        "edge",
        "endpoint",
        "id",
        "key",
        "region",
        "slack",
        "t0",
        "tried",
        "waiters",
    )

    def __init__(
        self, rid: int, t0: float, region: Region, endpoint: int, key: int, client: int,
        edge: Edge | None = None,
    ) -> None:
        self.id = rid
        self.t0 = t0
        self.region = region
        self.endpoint = endpoint
        self.key = key
        self.client = client
        self.edge = edge
        self.attempts = 0
        self.tried: list[str] | None = None
        """Backends already tried (set by the balancer on its first retry)."""
        self.waiters: list[Request] | None = None
        """A CDN edge's origin fetch: the client requests waiting for it (None for a client
        request)."""
        self.slack = 0.0
        """Short trips folded into earlier events: its answer reaches the client this much
        later than the events it went through say."""

    @property
    def fetch(self) -> bool:
        """True for a CDN edge's origin fetch (not a client request of its own)."""
        return self.waiters is not None


class Zipf:
    """Draws ranks 0..n-1 with P(k) proportional to 1/(k+1)^s, by bisecting a precomputed CDF
    within the narrow range a guide table gives for the draw (the same rank as a bisection of
    the whole CDF, in a few comparisons instead of log2(n); none when the range holds one rank,
    as it does for most draws: the popular ranks span many slots)."""

    __slots__ = ("cdf", "guide", "slots")

    def __init__(self, n: int, s: float) -> None:
        weights = [1.0 / (k + 1) ** s for k in range(n)]
        total = math.fsum(weights)
        self.cdf: list[float] = list(itertools.accumulate(w / total for w in weights))
        self.cdf[-1] = 1.0
        self.slots = min(max(n, 16), 65_536)
        """guide[j] is the first rank whose CDF reaches j / slots."""
        self.guide = [bisect.bisect_left(self.cdf, j / self.slots) for j in range(self.slots + 1)]
        self.guide.append(n - 1)  # for u that rounds to 1.0

    def draw(self, rng: random.Random) -> int:
        return self.rank(rng.random())

    def rank(self, u: float) -> int:
        """The rank for a uniform draw ``u`` in [0, 1)."""
        j = int(u * self.slots)
        first = self.guide[j]
        if first == self.guide[j + 1]:  # guide[j + 1]'s CDF reaches (j + 1) / slots > u
            return first
        return bisect.bisect_left(self.cdf, u, first, self.guide[j + 1] + 1)

    def probability(self, k: int) -> float:
        return self.cdf[k] - (self.cdf[k - 1] if k else 0.0)


def pattern_factor(p: PatternConfig, t: float) -> float:
    """The rate multiplier of pattern ``p`` at simulated time ``t``."""
    if p.kind == "constant":
        return 1.0
    if p.kind == "spike":
        return p.factor if p.start <= t < p.start + p.length else 1.0
    if p.kind == "ramp":
        if t <= p.start:
            return 1.0
        if p.length <= 0 or t >= p.start + p.length:
            return p.factor
        return 1.0 + (p.factor - 1.0) * (t - p.start) / p.length
    # diurnal
    return max(0.0, 1.0 + p.amplitude * math.sin(2.0 * math.pi * (t - p.start) / p.period))


class Region:
    """One client region: an arrival process whose mean rate is piecewise constant.

    The rate is re-evaluated every second (and whenever a fault changes it); on a change the
    pending arrival is redrawn, which is exact for a piecewise-constant Poisson process. Bursty
    kinds ride on the same clock: ``batch`` draws batches at rate / mean batch size, ``mmpp``
    switches between a quiet and a burst state whose rates average to the region's rate.
    """

    __slots__ = (
        "_arrive_cb",
        "_bursts",
        "_draw_rate",
        "_next",
        "_quiet",
        "_random",
        "batch_p",
        "bursting",
        "cfg",
        "client_link",
        "clients",
        "edge",
        "edge_link",
        "kernel",
        "kind",
        "multiplier",
        "name",
        "on_arrival",
        "p_read",
        "p_static",
        "rate",
        "rng",
        "zipf",
    )

    def __init__(
        self,
        name: str,
        cfg: RegionConfig,
        traffic: TrafficConfig,
        kernel: Kernel,
        zipf: Zipf,
        on_arrival: Callable[[Region], None],
        edge: Edge,
        client_link: Link,
        edge_link: Link,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.kernel = kernel
        self.zipf = zipf
        self.on_arrival = on_arrival
        self.rng = kernel.rng(f"traffic:{name}")
        self._random = self.rng.random
        total = traffic.mix.static + traffic.mix.read + traffic.mix.write
        self.p_static = traffic.mix.static / total
        self.p_read = self.p_static + traffic.mix.read / total
        self.clients = traffic.sticky_clients
        self.multiplier = 1.0
        """Fault-driven factor (traffic spike) on top of the pattern."""
        self.rate = 0.0
        """Requests per second now (the long-run mean of a bursty process)."""
        self._next: Handle | None = None
        # where its clients go
        self.edge = edge
        self.client_link = client_link
        self.edge_link = edge_link
        arrivals = cfg.arrivals
        self.kind = arrivals.kind
        self._bursts = kernel.rng(f"traffic:{name}:bursts")
        """Its own stream for batch sizes and burst states, so Poisson draws stay unchanged."""
        self.batch_p = 1.0 / arrivals.batch
        self.bursting = False
        """mmpp: in the burst state."""
        self._quiet = 1.0 / (1.0 - arrivals.burst_share + arrivals.burst_factor
                             * arrivals.burst_share)
        """mmpp: the quiet state's rate as a fraction of the mean rate."""
        self._draw_rate = 0.0
        """The rate the pending arrival was drawn at (events per second of the process)."""
        self._arrive_cb = self._arrive
        """The bound method, made once (scheduling one per arrival would allocate it anew)."""

    def start(self) -> None:
        if self.kind == "mmpp":
            self._spell()  # a quiet spell first
        self._tick(None)

    def current_rate(self) -> float:
        """Arrivals per second now: rate x pattern x spikes, at most MAX_RATE (stacked spikes
        multiply, and a rate the engine cannot simulate would stop its clock)."""
        rate = self.cfg.rate * pattern_factor(self.cfg.pattern, self.kernel.now) * self.multiplier
        return min(rate, MAX_RATE)

    def scale(self, factor: float) -> None:
        """Multiply its arrival rate by ``factor`` from now on (a spike; 1/factor undoes it)."""
        self.multiplier *= factor
        self.reschedule()

    def _event_rate(self, rate: float) -> float:
        """Events per second of the underlying Poisson process at mean request rate ``rate``."""
        if self.kind == "batch":
            return rate * self.batch_p
        if self.kind == "mmpp":
            quiet = rate * self._quiet
            return quiet * self.cfg.arrivals.burst_factor if self.bursting else quiet
        return rate

    def reschedule(self) -> None:
        """Re-read the rate now; redraw the next arrival if it changed."""
        rate = self.current_rate()
        draw = self._event_rate(rate)
        if rate == self.rate and draw == self._draw_rate and self._next is not None:
            return
        self.rate = rate
        self._draw_rate = draw
        self.kernel.cancel(self._next)
        self._next = None
        if draw > 0.0:
            self._next = self.kernel.call_later(self.rng.expovariate(draw), self._arrive_cb)

    def _tick(self, _: object) -> None:
        self.reschedule()
        self.kernel.call_later(1.0, self._tick)

    def _spell(self) -> None:
        """mmpp: schedule the end of the current state's exponential spell."""
        a = self.cfg.arrivals
        mean = a.burst_length
        if not self.bursting:
            mean *= (1.0 - a.burst_share) / a.burst_share
        self.kernel.call_later(self._bursts.expovariate(1.0 / mean), self._switch)

    def _switch(self, _: object) -> None:
        """mmpp: enter the other state and redraw the next arrival at its rate."""
        self.bursting = not self.bursting
        self._spell()
        self.reschedule()

    def _arrive(self, _: object) -> None:
        # an exponential gap, as expovariate draws it, without its call
        gap = -_log(1.0 - self._random()) / self._draw_rate
        self._next = self.kernel.call_later(gap, self._arrive_cb)
        if self.kind == "batch":
            # geometric batch size with mean 1 / batch_p, by inversion
            u = 1.0 - self._bursts.random()
            n = 1 if self.batch_p >= 1.0 else 1 + int(math.log(u) / math.log1p(-self.batch_p))
            for _ in range(n):
                self.on_arrival(self)
            return
        self.on_arrival(self)
