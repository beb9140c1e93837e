"""Sweep throughput; run ``python bench/sweep.py`` from the repository root.

One line: runs per wall second of the same sweep (the ``retry-storm`` scenario cut to 30
simulated seconds, 40 seeds) on 1 worker (in this process, as ``--workers 1`` runs it) and on a
pool of 2 spawned worker processes, and their ratio. The baseline is the 1-worker rate measured
in the same invocation; on a 2-core machine the ideal ratio is 2.0, less the pool's start-up
(included) and whatever else the machine is doing. It also checks both gave identical figures.
"""

from __future__ import annotations

from time import perf_counter

from stackyard.core.scenario import load_builtin
from stackyard.core.stats import SweepResult
from stackyard.core.sweep import Plan, parse_seeds, run_sweep

SCENARIO = "retry-storm"
SECONDS = 30.0
SEEDS = "1-40"


def timed(plan: Plan, workers: int) -> tuple[float, SweepResult]:
    t0 = perf_counter()
    result = run_sweep(plan, workers=workers)
    return perf_counter() - t0, result


def main() -> None:
    plan = Plan(load_builtin(SCENARIO), parse_seeds(SEEDS), (), SECONDS)
    runs = len(plan.seeds)
    one, first = timed(plan, 1)
    two, second = timed(plan, 2)
    same = "identical" if first.to_json() == second.to_json() else "DIFFERENT"
    rate1, rate2 = runs / one, runs / two
    print(f"sweep: {SCENARIO} {runs} runs of {SECONDS:g} s simulated; 1 worker "
          f"{rate1:.2f} runs/s, 2 workers {rate2:.2f} runs/s; ratio 2/1 {rate2 / rate1:.2f} "
          f"(ideal 2.0 on 2 idle cores); figures {same}", flush=True)


if __name__ == "__main__":
    main()
