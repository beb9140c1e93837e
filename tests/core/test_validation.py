"""The engine against queueing theory, each check at the engine's own parameters and guarded by
a 95% confidence interval narrower than its tolerance (statistics, not luck):

* the ``mmc`` reduction against Erlang C (workers = cores: no sharing);
* processor sharing of c > 1 cores by more workers than cores: with exponential demands any fair
  sharing of c cores is an M/M/c queue, so the mean response time is Erlang C's W;
* one worker on one core with deterministic, lognormal and gamma demands against the
  Pollaczek-Khinchine mean wait of M/G/1;
* a bounded-Pareto demand's heavy tail, visible in p99 where an exponential's is not.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

import pytest

from stackyard.core.config import DistributionConfig
from stackyard.core.engine import Engine
from stackyard.core.metrics import mmc_mean_wait
from stackyard.core.model.service import moments, quantile

from .conftest import scenario

C, MU = 4, 100.0  # the mmc built-in: 4 workers, 10 ms exponential service
BATCHES = 30
T29 = 2.045  # Student's t, 29 degrees of freedom, 95%


def batch_means(engine: Engine, seconds: float, totals: Callable[[], tuple[float, int]]) -> tuple[
        float, float]:
    """(mean, 95% half-width) of a per-customer figure over 30 batches of ``seconds`` / 30,
    from running ``totals`` = (sum of the figure, customers)."""
    means = []
    for _ in range(BATCHES):
        total0, n0 = totals()
        engine.run_for(seconds / BATCHES)
        total1, n1 = totals()
        means.append((total1 - total0) / (n1 - n0))
    mean = statistics.fmean(means)
    return mean, T29 * statistics.stdev(means) / math.sqrt(BATCHES)


@pytest.mark.parametrize(("rho", "seconds"), [(0.5, 5000.0), (0.9, 3300.0)])
def test_mmc_mean_wait_matches_erlang_c(rho: float, seconds: float) -> None:
    lam = rho * C * MU
    engine = Engine(scenario("mmc", traffic={"regions": {"eu": {"rate": lam}}}), seed=1)
    (container,) = engine.world.cluster.containers.values()
    engine.run_for(20.0)  # leave the empty start behind
    mean, half_width = batch_means(engine, seconds,
                                   lambda: (container.wait_total, container.started))
    expected = mmc_mean_wait(C, lam, MU)
    assert container.started > 0.99 * lam * (seconds + 20.0)
    # Enough customers that the 95% interval is inside the 3% band: statistics, not luck.
    assert half_width < 0.03 * expected
    assert mean == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize(("cores", "workers", "seconds"), [(2, 8, 3000.0), (4, 16, 1200.0)])
def test_processor_sharing_of_c_cores_is_an_mmc_queue(
    cores: int, workers: int, seconds: float
) -> None:
    rho = 0.8
    lam = rho * cores * MU
    engine = Engine(scenario("mmc", traffic={"regions": {"eu": {"rate": lam}}},
                             app={"container": {"cpu": float(cores), "workers": workers}}),
                    seed=1)
    world = engine.world
    engine.run_for(20.0)
    mean, half_width = batch_means(engine, seconds, lambda: (
        world.sojourn_total, world.completed + world.failed))
    expected = mmc_mean_wait(cores, lam, MU) + 1.0 / MU  # Erlang C's mean response time
    assert world.failed == 0
    assert half_width < 0.03 * expected
    assert mean == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize(
    ("shape", "seconds"),
    [
        ({"kind": "deterministic"}, 3000.0),
        ({"kind": "lognormal", "cv": 1.0}, 8000.0),
        ({"kind": "gamma", "cv": 0.5}, 3000.0),
    ],
    ids=["deterministic", "lognormal", "gamma"],
)
def test_mg1_mean_wait_matches_pollaczek_khinchine(shape: dict[str, Any], seconds: float) -> None:
    rho, mean_demand = 0.7, 1.0 / MU
    lam = rho / mean_demand
    engine = Engine(scenario("mmc", traffic={"regions": {"eu": {"rate": lam}}},
                             app={"container": {"cpu": 1.0, "workers": 1},
                                  "service": {"distribution": {"read": shape}}}), seed=1)
    (container,) = engine.world.cluster.containers.values()
    engine.run_for(20.0)
    mean, half_width = batch_means(engine, seconds,
                                   lambda: (container.wait_total, container.started))
    _, second = moments(mean_demand, DistributionConfig(**shape))
    expected = lam * second / (2.0 * (1.0 - rho))  # Pollaczek-Khinchine
    assert half_width < 0.03 * expected
    assert mean == pytest.approx(expected, rel=0.03)


def test_a_bounded_pareto_demand_shows_its_tail_in_p99() -> None:
    shape = {"kind": "pareto", "alpha": 1.2, "max_ratio": 1000.0}
    p99 = {}
    p50 = {}
    for kind, dist in (("pareto", shape), ("exponential", {"kind": "exponential"})):
        # 4 workers on 4 cores at rho 0.1: a request almost never waits, so its latency is its
        # demand and the latency quantiles are the demand's
        engine = Engine(scenario("mmc", traffic={"regions": {"eu": {"rate": 40.0}}},
                                 app={"service": {"distribution": {"read": dist}}}), seed=1)
        engine.run_for(2500.0)
        h = engine.world.recent.all_time()
        assert h.count > 99_000
        p50[kind], p99[kind] = h.quantiles((0.5, 0.99))
    pareto = DistributionConfig(**shape)  # type: ignore[arg-type]
    assert p99["pareto"] == pytest.approx(quantile(1.0 / MU, pareto, 0.99), rel=0.05)
    assert p50["pareto"] == pytest.approx(quantile(1.0 / MU, pareto, 0.5), rel=0.05)
    # the same mean, but half the median and twice the p99 of an exponential
    assert p50["pareto"] < 0.6 * p50["exponential"]
    assert p99["pareto"] > 1.8 * p99["exponential"]
