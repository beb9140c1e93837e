"""Engine throughput benchmarks; run ``python bench/engine.py`` from the repository root.

Each line compares against a baseline measured in the same invocation, so the ratios mean
something on any machine. Times are CPU seconds of this process (``time.process_time``): on a
machine shared with other work, wall time mostly measures the others.

* ``mm4``: M/M/4 at rho 0.8 on stackyard's kernel (plain callbacks) vs idiomatic SimPy.
* ``default``: the built-in ``default`` scenario run headless for 10 simulated minutes, against
  the kernel's M/M/4 customer rate from the first line.
* ``storage``: ``default`` with every database node's rows in SQLite (aiosqlite, in memory)
  against the same run without storage; storage on should keep at least half the throughput.
* ``load``: CPU per request of ``default`` scaled to 1x, 4x and 16x its traffic (with 1x, 4x,
  16x the fleet): the cost per request should stay flat (within 15%).
* ``build``: building the world at 16 and 256 containers (linear: 256 costs ~16x 16).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Generator
from time import perf_counter
from typing import Any

import simpy

from stackyard.core.kernel import Kernel
from stackyard.core.metrics import mmc_mean_wait

SERVERS = 4
LAM = 3.2
MU = 1.0
CUSTOMERS = 200_000
REPEATS = 3
SEED = 1


def mm4_kernel(customers: int = CUSTOMERS, seed: int = SEED) -> float:
    """M/M/4 on :class:`core.kernel.Kernel` with callbacks and a FIFO deque; mean wait."""
    kernel = Kernel(seed)
    arrival_draw = kernel.rng("arrivals").expovariate
    service_draw = kernel.rng("service").expovariate
    call_later = kernel.call_later
    waiting: deque[float] = deque()
    free = SERVERS
    arrived = 0
    total_wait = 0.0

    def departure(_: Any) -> None:
        nonlocal free, total_wait
        if waiting:
            total_wait += kernel.now - waiting.popleft()
            call_later(service_draw(MU), departure)
        else:
            free += 1

    def arrival(_: Any) -> None:
        nonlocal free, arrived
        arrived += 1
        if arrived < customers:
            call_later(arrival_draw(LAM), arrival)
        if free:
            free -= 1
            call_later(service_draw(MU), departure)
        else:
            waiting.append(kernel.now)

    kernel.call_later(arrival_draw(LAM), arrival)
    kernel.run_until(math.inf)
    return total_wait / customers


def mm4_simpy(customers: int = CUSTOMERS, seed: int = SEED) -> float:
    """The same queue the idiomatic SimPy way: a Resource and a process per customer."""
    env = simpy.Environment()
    servers = simpy.Resource(env, capacity=SERVERS)
    # The same named streams as the kernel run, so both see the same arrivals and services.
    streams = Kernel(seed)
    arrival_draw = streams.rng("arrivals").expovariate
    service_draw = streams.rng("service").expovariate
    total_wait = 0.0

    def customer(env: simpy.Environment) -> Generator[simpy.Event, Any, None]:
        nonlocal total_wait
        arrived_at = env.now
        with servers.request() as request:
            yield request
            total_wait += env.now - arrived_at
            yield env.timeout(service_draw(MU))

    def source(env: simpy.Environment) -> Generator[simpy.Event, Any, None]:
        for _ in range(customers):
            yield env.timeout(arrival_draw(LAM))
            env.process(customer(env))

    env.process(source(env))
    env.run()
    return total_wait / customers


def best_of(run: Callable[[], float], repeats: int = REPEATS) -> tuple[float, float]:
    """(best CPU seconds, result) over ``repeats`` runs."""
    best = math.inf
    result = 0.0
    for _ in range(repeats):
        t0 = time.process_time()
        result = run()
        best = min(best, time.process_time() - t0)
    return best, result


def bench_mm4() -> float:
    """Print the M/M/4 line; return the kernel's customers per CPU second."""
    k_cpu, k_wait = best_of(mm4_kernel)
    s_cpu, s_wait = best_of(mm4_simpy)
    k_rate = CUSTOMERS / k_cpu
    s_rate = CUSTOMERS / s_cpu
    print(
        f"mm4: stackyard {k_cpu:.2f} s ({k_rate / 1e3:.0f}k customers/s), "
        f"simpy {s_cpu:.2f} s ({s_rate / 1e3:.0f}k customers/s), "
        f"ratio {s_cpu / k_cpu:.1f}x faster; "
        f"mean wait stackyard {k_wait:.3f} simpy {s_wait:.3f} "
        f"erlang-c {mmc_mean_wait(SERVERS, LAM, MU):.3f}",
        flush=True,
    )
    return k_rate


def bench_default(baseline_rate: float) -> None:
    """Print the ``default`` scenario line, against the kernel's M/M/4 rate."""
    from stackyard.core.run import open_run

    simulated = 600.0

    def run() -> float:
        run = open_run("default")
        run.engine.run_for(simulated)
        return float(run.summary().requests.arrived)

    cpu, arrived = best_of(run)
    requests = int(arrived)
    rate = requests / cpu
    print(
        f"default: {simulated:.0f} s simulated, {requests:,} requests in {cpu:.2f} s CPU "
        f"= {rate:,.0f} simulated requests/s (target >= 25,000); "
        f"ratio vs mm4 kernel customers/s: {rate / baseline_rate:.3f} (target >= 0.13)",
        flush=True,
    )


def _default_wall(simulated: float, storage: bool) -> tuple[float, int, int]:
    """(wall seconds, requests, rows written) of ``default`` run through the async driver."""
    import asyncio

    from stackyard.core.run import open_run

    async def run() -> tuple[float, int, int]:
        async with open_run("default", storage=storage) as opened:
            t0 = perf_counter()
            await opened.engine.run_async(simulated, opened.storage)
            wall = perf_counter() - t0
            summary = opened.summary()
        rows = summary.storage.rows_written if summary.storage is not None else 0
        return wall, summary.requests.arrived, rows

    return asyncio.run(run())


def bench_storage() -> None:
    """Print the storage on/off line (same scenario, seed and invocation)."""
    simulated = 300.0
    off = min((_default_wall(simulated, False) for _ in range(2)), key=lambda r: r[0])
    on = min((_default_wall(simulated, True) for _ in range(2)), key=lambda r: r[0])
    rate_off, rate_on = off[1] / off[0], on[1] / on[0]
    print(
        f"storage: default {simulated:.0f} s simulated; storage off {rate_off:,.0f} requests/s, "
        f"on {rate_on:,.0f} requests/s ({on[2]:,} SQLite rows); "
        f"ratio on/off {rate_on / rate_off:.2f} (target >= 0.5)",
        flush=True,
    )


def _scaled(k: int, containers: int | None = None) -> Any:
    """``default`` with k x its traffic and fleet (or ``containers`` at 1x traffic)."""
    from stackyard.core.scenario import load_builtin, scenario_from_dict, scenario_to_dict

    data = scenario_to_dict(load_builtin("default"))
    n = containers if containers is not None else 4 * k
    for region in data["traffic"]["regions"].values():
        region["rate"] *= k
    data["app"]["hosts"]["count"] = max(4, math.ceil(n / 16))
    data["app"]["vm"]["initial"] = math.ceil(n / 4)
    data["app"]["vm"]["max"] = max(16, math.ceil(n / 4) + 4)
    data["app"]["autoscaler"].update(initial=n, min=n, max=max(40, 2 * n))
    data["faults"] = []
    return scenario_from_dict(data, f"default x{k}")


def bench_load() -> None:
    """Print the per-request cost of ``default`` at 1x, 4x and 16x load (CPU time)."""
    from stackyard.core.engine import Engine

    costs = {}
    for k in (1, 4, 16):
        sc = _scaled(k)
        best = math.inf
        for _ in range(2):
            eng = Engine(sc)
            eng.run_for(30.0)  # warm up
            a0 = eng.world.arrived
            t0 = time.process_time()
            eng.run_for(400.0 / k)  # about the same number of requests at every load
            spent = time.process_time() - t0
            best = min(best, spent / (eng.world.arrived - a0))
        costs[k] = best
    spread = max(costs.values()) / min(costs.values())
    print("load: CPU per request of default at " + ", ".join(
        f"{k}x {c * 1e6:.1f} us" for k, c in costs.items())
        + f"; 16x/1x {costs[16] / costs[1]:.2f}, max/min {spread:.2f} (target <= 1.15)",
        flush=True)


def bench_build() -> None:
    """Print world build times at 16 and 256 containers."""
    from stackyard.core.engine import Engine

    times = {}
    for n in (16, 256):
        sc = _scaled(1, containers=n)
        best = math.inf
        for _ in range(3):
            t0 = time.process_time()
            eng = Engine(sc)
            best = min(best, time.process_time() - t0)
        assert len(eng.world.cluster.containers) == n
        times[n] = best
    print(f"build: world of 16 containers {times[16] * 1e3:.1f} ms, 256 containers "
          f"{times[256] * 1e3:.1f} ms; ratio {times[256] / times[16]:.1f} for 16x the "
          "containers (linear: ~16)", flush=True)


def main() -> None:
    baseline = bench_mm4()
    bench_default(baseline)
    bench_load()
    bench_build()
    bench_storage()


if __name__ == "__main__":
    main()
