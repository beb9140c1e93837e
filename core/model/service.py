"""Service-time distributions: an endpoint's CPU demand is its mean times a shape.

Shapes (``[app.service.distribution.<endpoint>]``): exponential (the default), deterministic,
lognormal and gamma given a coefficient of variation, and a bounded Pareto for heavy tails. Each
is parameterised so that its mean is exactly the configured mean, so changing the shape changes
the variability of the load, never its amount. :func:`moments` and :func:`quantile` give the
theory the tests compare the engine with (Pollaczek-Khinchine needs the second moment).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from stackyard.core.config import DistributionConfig

Sampler = Callable[[random.Random], float]
"""Draws one demand (seconds of CPU at full speed) from a component's random stream."""

EXPONENTIAL = DistributionConfig()


def sampler(mean: float, shape: DistributionConfig = EXPONENTIAL) -> Sampler:
    """A function drawing demands with mean ``mean`` and the given shape."""
    if mean <= 0.0:
        return _zero
    kind = shape.kind
    if kind == "exponential":
        log = math.log

        def exponential(rng: random.Random) -> float:
            return -log(1.0 - rng.random()) * mean

        return exponential
    if kind == "deterministic":
        return lambda rng: mean
    if kind == "lognormal":
        sigma = math.sqrt(math.log1p(shape.cv * shape.cv))
        mu = math.log(mean) - sigma * sigma / 2.0
        return lambda rng: float(rng.lognormvariate(mu, sigma))
    if kind == "gamma":
        k = 1.0 / (shape.cv * shape.cv)
        theta = mean / k
        return lambda rng: float(rng.gammavariate(k, theta))
    low, high = pareto_bounds(mean, shape.alpha, shape.max_ratio)
    alpha = shape.alpha
    span = 1.0 - (low / high) ** alpha
    inv = -1.0 / alpha

    def pareto(rng: random.Random) -> float:
        return float(low * (1.0 - rng.random() * span) ** inv)

    return pareto


def _zero(rng: random.Random) -> float:
    return 0.0


def _pareto_mean(low: float, high: float, alpha: float) -> float:
    """Mean of a Pareto(alpha) bounded to [low, high]."""
    ratio = low / high
    norm = float(1.0 - ratio**alpha)
    if abs(alpha - 1.0) < 1e-9:
        return low * math.log(high / low) / norm
    return float(alpha / (alpha - 1.0) * low * (1.0 - ratio ** (alpha - 1.0)) / norm)


def pareto_bounds(mean: float, alpha: float, max_ratio: float) -> tuple[float, float]:
    """(low, high) of the bounded Pareto with tail index ``alpha``, upper bound
    ``max_ratio`` x ``mean`` and exactly that mean (the lower bound found by bisection)."""
    high = mean * max_ratio
    lo, hi = 0.0, mean
    for _ in range(200):  # the mean grows with the lower bound: bisect on it
        mid = (lo + hi) / 2.0
        if mid <= 0.0 or _pareto_mean(mid, high, alpha) < mean:
            lo = mid
        else:
            hi = mid
    return hi, high


def moments(mean: float, shape: DistributionConfig = EXPONENTIAL) -> tuple[float, float]:
    """(E[S], E[S^2]) of the demand."""
    kind = shape.kind
    if mean <= 0.0:
        return 0.0, 0.0
    if kind == "exponential":
        return mean, 2.0 * mean * mean
    if kind == "deterministic":
        return mean, mean * mean
    if kind in ("lognormal", "gamma"):
        return mean, mean * mean * (1.0 + shape.cv * shape.cv)
    low, high = pareto_bounds(mean, shape.alpha, shape.max_ratio)
    a = shape.alpha
    norm = 1.0 - (low / high) ** a
    if abs(a - 2.0) < 1e-9:
        second = 2.0 * low * low * math.log(high / low) / norm
    else:
        second = a / (2.0 - a) * low**a * (high ** (2.0 - a) - low ** (2.0 - a)) / norm
    return mean, second


def quantile(mean: float, shape: DistributionConfig, q: float) -> float:
    """The ``q``-quantile of the demand (exponential, deterministic and pareto)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile: q must be within (0, 1), got {q!r}")
    kind = shape.kind
    if kind == "exponential":
        return -math.log(1.0 - q) * mean
    if kind == "deterministic":
        return mean
    if kind == "pareto":
        low, high = pareto_bounds(mean, shape.alpha, shape.max_ratio)
        span = 1.0 - (low / high) ** shape.alpha
        return float(low * (1.0 - q * span) ** (-1.0 / shape.alpha))
    raise ValueError(f"quantile: no closed form for {kind}")
