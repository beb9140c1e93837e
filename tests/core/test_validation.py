"""The engine against queueing theory: the ``mmc`` reduction vs Erlang C."""

from __future__ import annotations

import math
import statistics

import pytest

from stackyard.core.engine import Engine
from stackyard.core.metrics import mmc_mean_wait

from .conftest import scenario

C, MU = 4, 100.0  # the mmc built-in: 4 workers, 10 ms exponential service


@pytest.mark.parametrize(("rho", "seconds"), [(0.5, 5000.0), (0.9, 3300.0)])
def test_mmc_mean_wait_matches_erlang_c(rho: float, seconds: float) -> None:
    lam = rho * C * MU
    engine = Engine(scenario("mmc", traffic={"regions": {"eu": {"rate": lam}}}), seed=1)
    (container,) = engine.world.cluster.containers.values()
    engine.run_for(20.0)  # leave the empty start behind
    batches = []
    batch = seconds / 30
    for _ in range(30):
        waited, started = container.wait_total, container.started
        engine.run_for(batch)
        batches.append((container.wait_total - waited) / (container.started - started))
    customers = container.started
    mean = statistics.fmean(batches)
    half_width = 2.045 * statistics.stdev(batches) / math.sqrt(len(batches))  # t(29), 95%
    expected = mmc_mean_wait(C, lam, MU)
    assert customers > 0.99 * lam * (seconds + 20.0)
    # Enough customers that the 95% interval is inside the 3% band: statistics, not luck.
    assert half_width < 0.03 * expected
    assert mean == pytest.approx(expected, rel=0.03)
