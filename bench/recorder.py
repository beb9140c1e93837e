"""Flight recorder benchmarks; run ``python bench/recorder.py`` from the repository root.

* ``overhead``: the built-in ``default`` scenario run headless for 600 simulated seconds with a
  recorder writing to a file, against the same run unrecorded (best of 3 each); the ratio is
  recorded wall time / unrecorded wall time (target: at most 1.10).
* ``size``: bytes per simulated hour of ``default``, from a recording of ``--hours`` (2) hours.
* ``seek``: on that recording, a replay seeking to 200 random simulated times (the snapshot and
  its events read, decoded and published), against the 200 ms target; and opening the file
  (which checks it) once.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
from pathlib import Path
from time import perf_counter

from stackyard.core.recorder import Recorder
from stackyard.core.recording import Recording
from stackyard.core.replay import ReplaySession
from stackyard.core.run import open_run

SECONDS = 600.0
REPEATS = 3
SEEKS = 200
SEED = 1


async def _run(seconds: float, record: Path | None) -> float:
    start = perf_counter()
    run = open_run("default", seed=SEED, record=Recorder(record) if record else None)
    async with run:
        await run.advance(seconds)
    return perf_counter() - start


def overhead(workdir: Path) -> None:
    plain: list[float] = []
    recorded: list[float] = []
    for i in range(REPEATS):
        plain.append(asyncio.run(_run(SECONDS, None)))
        recorded.append(asyncio.run(_run(SECONDS, workdir / f"overhead-{i}.db")))
    p, r = min(plain), min(recorded)
    print(f"overhead  default {SECONDS:.0f} s simulated: unrecorded {p:.2f} s, recorded "
          f"{r:.2f} s wall (best of {REPEATS}); ratio {r / p:.3f} "
          f"({(r / p - 1) * 100:+.1f}%, target <= +10%)")


def size_and_seek(workdir: Path, hours: float) -> None:
    path = workdir / "long.db"
    took = asyncio.run(_run(hours * 3600, path))
    size = path.stat().st_size
    print(f"size      default {hours:g} h simulated in {took:.0f} s: {size / 1e6:.1f} MB, "
          f"{size / hours / 1e6:.2f} MB per simulated hour")
    start = perf_counter()
    rec = Recording.open(path)
    opened = perf_counter() - start
    session = ReplaySession(rec, paused=True)
    rng = random.Random(SEED)
    times = []
    for _ in range(SEEKS):
        t = rng.uniform(rec.start, rec.end)
        start = perf_counter()
        session.seek(t)
        times.append(perf_counter() - start)
        assert session.latest is not None and session.latest.time <= t
    rec.close()
    ms = sorted(x * 1000 for x in times)
    print(f"seek      {hours:g} h recording, {SEEKS} random seeks: median "
          f"{statistics.median(ms):.2f} ms, max {ms[-1]:.2f} ms (target < 200 ms; "
          f"ratio to target {ms[-1] / 200:.3f}); open and check {opened * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0, help="length of the long recording")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        overhead(workdir)
        size_and_seek(workdir, args.hours)


if __name__ == "__main__":
    main()
