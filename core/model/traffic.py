"""Client traffic: regions with Poisson arrivals, rate patterns, an endpoint mix, Zipf keys."""

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

    from .network import Edge

STATIC, READ, WRITE = 0, 1, 2
ENDPOINTS = ("static", "read", "write")


class Request:
    """One client request, from arrival to its final answer (possibly after retries)."""

    __slots__ = (
        "attempts",
        "cause",
        "client",
        "edge",
        "endpoint",
        "fetch",
        "id",
        "key",
        "ok",
        "region",
        "t0",
        "tried",
        "waiters",
    )

    def __init__(
        self, rid: int, t0: float, region: str, endpoint: int, key: int, client: int
    ) -> None:
        self.id = rid
        self.t0 = t0
        self.region = region
        self.endpoint = endpoint
        self.key = key
        self.client = client
        self.attempts = 0
        self.tried: list[str] | None = None
        """Backends already tried (set by the balancer on its first dispatch)."""
        self.edge: Edge | None = None
        self.fetch = False
        """True for a CDN edge's origin fetch (not a client request of its own)."""
        self.waiters: list[Request] | None = None
        self.ok = False
        self.cause = ""


class Zipf:
    """Draws ranks 0..n-1 with P(k) proportional to 1/(k+1)^s, by bisecting a precomputed CDF."""

    __slots__ = ("cdf",)

    def __init__(self, n: int, s: float) -> None:
        weights = [1.0 / (k + 1) ** s for k in range(n)]
        total = math.fsum(weights)
        self.cdf: list[float] = list(itertools.accumulate(w / total for w in weights))
        self.cdf[-1] = 1.0

    def draw(self, rng: random.Random) -> int:
        return bisect.bisect_left(self.cdf, rng.random())

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
    """One client region: a Poisson arrival process whose rate is piecewise constant.

    The rate is re-evaluated every second (and whenever a fault changes it); on a change the
    pending arrival is redrawn, which is exact for a piecewise-constant Poisson process.
    """

    def __init__(
        self,
        name: str,
        cfg: RegionConfig,
        traffic: TrafficConfig,
        kernel: Kernel,
        zipf: Zipf,
        on_arrival: Callable[[Region], None],
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.kernel = kernel
        self.zipf = zipf
        self.on_arrival = on_arrival
        self.rng = kernel.rng(f"traffic:{name}")
        total = traffic.mix.static + traffic.mix.read + traffic.mix.write
        self.p_static = traffic.mix.static / total
        self.p_read = self.p_static + traffic.mix.read / total
        self.clients = traffic.sticky_clients
        self.multiplier = 1.0
        """Fault-driven factor (traffic spike) on top of the pattern."""
        self.rate = 0.0
        self._next: Handle | None = None

    def start(self) -> None:
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

    def reschedule(self) -> None:
        """Re-read the rate now; redraw the next arrival if it changed."""
        rate = self.current_rate()
        if rate == self.rate and self._next is not None:
            return
        self.rate = rate
        self.kernel.cancel(self._next)
        self._next = None
        if rate > 0.0:
            self._next = self.kernel.call_later(self.rng.expovariate(rate), self._arrive)

    def _tick(self, _: object) -> None:
        self.reschedule()
        self.kernel.call_later(1.0, self._tick)

    def _arrive(self, _: object) -> None:
        self._next = self.kernel.call_later(self.rng.expovariate(self.rate), self._arrive)
        self.on_arrival(self)

    def draw(self) -> tuple[int, int, int]:
        """(endpoint, key, client) of a new request."""
        rng = self.rng
        u = rng.random()
        endpoint = STATIC if u < self.p_static else READ if u < self.p_read else WRITE
        return endpoint, self.zipf.draw(rng), int(rng.random() * self.clients)
