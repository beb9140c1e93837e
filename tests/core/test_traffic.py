"""Arrival processes: bursty kinds keep the region's mean rate and are burstier than Poisson."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from stackyard.core.engine import Engine

from .conftest import scenario

RATE = 100.0


def counts(arrivals: dict[str, Any], seconds: int = 1500) -> list[int]:
    """Arrivals per simulated second into the mmc queue (its service keeps up)."""
    engine = Engine(scenario("mmc", traffic={"regions": {"eu": {"rate": RATE,
                                                                "arrivals": arrivals}}}),
                    seed=3)
    out = []
    for _ in range(seconds):
        before = engine.world.arrived
        engine.run_for(1.0)
        out.append(engine.world.arrived - before)
    return out


@pytest.mark.parametrize(
    ("arrivals", "dispersion", "seconds"),
    [
        ({"kind": "poisson"}, (0.9, 1.1), 1500),
        # compound Poisson with geometric batches of mean 4: Var/mean = E[B^2]/E[B] = 2*4 - 1
        ({"kind": "batch", "batch": 4.0}, (6.0, 8.0), 1500),
        # bursts of 5x the quiet rate a tenth of the time, 2 s long: far burstier than Poisson
        # (its mean converges slowly: 3000 s put it within 5% with three standard errors)
        ({"kind": "mmpp", "burst_factor": 5.0, "burst_share": 0.1, "burst_length": "2s"},
         (15.0, 80.0), 3000),
    ],
    ids=["poisson", "batch", "mmpp"],
)
def test_arrivals_keep_the_mean_rate_and_their_burstiness(
    arrivals: dict[str, Any], dispersion: tuple[float, float], seconds: int
) -> None:
    per_second = counts(arrivals, seconds)
    mean = statistics.fmean(per_second)
    assert mean == pytest.approx(RATE, rel=0.05)
    lo, hi = dispersion
    assert lo < statistics.variance(per_second) / mean < hi
