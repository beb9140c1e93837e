"""Memory soak; run ``python bench/soak.py`` from the repository root (about 2-4 minutes).

``default`` runs headless for 2 simulated hours (no storage: the engine alone) with a random
fault every 2-5 simulated minutes, each on a random target and cleared after 30-120 s (a few,
like killing a container, heal by themselves). It prints the process's peak RSS after the
10-minute warm-up and at 2 hours, and the growth between them (target: under 20 MB), with the
requests simulated and the database's writes, so a flat line means memory does not grow with
simulated time. A baseline for the numbers: the peak RSS before the engine was built.
"""

from __future__ import annotations

import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stackyard.core.engine import CommandError, Engine
from stackyard.core.faults import FAULTS
from stackyard.core.model.compute import TERMINATED
from stackyard.core.protocol import Command
from stackyard.core.scenario import load_builtin

WARM_UP = 600.0
DURATION = 7200.0
SEED = 11


def peak_rss_mb() -> float:
    """The process's peak resident set so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def targets(engine: Engine, kind: str) -> list[str]:
    """Current targets that fit fault ``kind`` ("" for one that takes none)."""
    w = engine.world
    action = FAULTS[kind]
    options: dict[str, list[str]] = {
        "container": [c.id for c in w.cluster.containers.values() if c.state != TERMINATED],
        "vm": list(w.cluster.vms),
        "host": [h.id for h in w.cluster.hosts],
        "link": list(w.links),
        "edge": list(w.edges),
        "balancer": ["lb-1", "lb-2"],
        "region": list(w.regions),
        "db": list(w.db.nodes) if w.db is not None else [],
    }
    found = [t for need in action.targets for t in options.get(need, [])]
    if not action.targets or action.target_optional:
        found.append("")
    return found


def inject(engine: Engine, rng: random.Random) -> str:
    """One random fault on a random target; returns a one-word summary."""
    kind = rng.choice(sorted(FAULTS))
    choices = targets(engine, kind)
    if not choices:
        return "none"
    params: dict[str, Any] = (
        {"duration": rng.uniform(30.0, 120.0)} if FAULTS[kind].reversible else {})
    try:
        engine.apply(Command(kind, rng.choice(choices), params))
    except CommandError:
        return "refused"
    return kind


def main() -> None:
    before = peak_rss_mb()
    rng = random.Random(SEED)
    engine = Engine(load_builtin("default"), seed=SEED)
    t0 = time.perf_counter()
    next_fault = rng.uniform(120.0, 300.0)
    injected = 0
    at_warm_up = 0.0
    while engine.now < DURATION:
        step = min(next_fault, DURATION) - engine.now
        if engine.now < WARM_UP <= engine.now + step:
            engine.run_until(WARM_UP)
            at_warm_up = peak_rss_mb()
            print(f"soak: {WARM_UP / 60:.0f} min simulated: peak RSS {at_warm_up:.1f} MB "
                  f"({engine.world.arrived:,} requests)", flush=True)
            continue
        engine.run_until(engine.now + step)
        if engine.now >= next_fault:
            injected += inject(engine, rng) not in ("none", "refused")
            next_fault = engine.now + rng.uniform(120.0, 300.0)
    at_end = peak_rss_mb()
    db = engine.world.db
    writes = db.leader_node().end if db is not None else 0
    print(f"soak: {DURATION / 3600:.0f} h simulated: peak RSS {at_end:.1f} MB "
          f"({engine.world.arrived:,} requests, {writes:,} database writes on the leader's "
          f"timeline, {injected} faults, {time.perf_counter() - t0:.0f} s wall)", flush=True)
    print(f"soak: growth after warm-up {at_end - at_warm_up:+.1f} MB (target < 20 MB); "
          f"baseline before the engine {before:.1f} MB", flush=True)


if __name__ == "__main__":
    main()
