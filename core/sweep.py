"""Sweeps: one scenario run over a grid of seeds and parameter values, locally or on a cluster.

A :class:`Plan` is a scenario, the seeds, and the values of each ``--set`` path; its jobs are
every (parameter set, seed) pair. :func:`run_job` runs one headless and keeps what
:func:`core.stats.aggregate` needs: each check's verdict and value and a few headline figures.
Jobs run in this process, on a local process pool, or on a Dask cluster; each run is
deterministic and the aggregation sorts them, so the figures are identical whichever ran them.
"""

from __future__ import annotations

import itertools
import re
import socket
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from multiprocessing import get_context
from typing import Any, Final

from stackyard.core.config import Scenario, ScenarioError
from stackyard.core.engine import Engine
from stackyard.core.protocol import Scalar, finite, show
from stackyard.core.scenario import scenario_with
from stackyard.core.stats import (
    CheckOutcome,
    Measure,
    RunOutcome,
    SweepResult,
    aggregate,
)

MAX_RUNS: Final = 100_000
"""Most runs one sweep may ask for."""
MAX_WORKERS: Final = 256
MAX_VALUES: Final = 1000
"""Most values one ``--set`` may list."""
CLUSTER_SCHEMES: Final = ("tcp", "tls", "inproc", "ws", "wss", "ucx")
CONNECT_TIMEOUT: Final = 10.0
"""Seconds to reach a Dask scheduler before giving up."""

Progress = Callable[[int, int], None]
"""``progress(done, total)``, called as runs finish."""

_SEEDS = re.compile(r"\s*(\d{1,12})\s*(?:-\s*(\d{1,12})\s*)?")
_PATH = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")


class SweepError(ValueError):
    """A sweep that cannot be run as asked; the message is one line."""


# -- the plan --------------------------------------------------------------------------------


def parse_seeds(text: str) -> tuple[int, ...]:
    """Seeds from ``1-200``, ``7``, ``1,5,9`` or ``1-10,20-30`` (in order, without repeats)."""
    seeds: dict[int, None] = {}
    for part in text.split(","):
        m = _SEEDS.fullmatch(part)
        if m is None:
            raise SweepError(f"--seeds: expected seeds such as 1-200 or 1,5,9, got {show(text)}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise SweepError(f"--seeds: expected a range from low to high, got {show(part)}")
        if hi - lo + 1 + len(seeds) > MAX_RUNS:
            raise SweepError(f"--seeds: expected at most {MAX_RUNS} seeds, got more")
        seeds.update((s, None) for s in range(lo, hi + 1))
    return tuple(seeds)


def parse_set(text: str) -> tuple[str, tuple[Scalar, ...]]:
    """``balancer.algorithm=round_robin,power_of_two`` as a path and its values (each read as a
    TOML value where it is one — ``2``, ``0.5``, ``true``, ``"10s"`` — else as a string)."""
    path, sep, rest = text.partition("=")
    path = path.strip()
    if not sep or not _PATH.fullmatch(path):
        raise SweepError(f"--set: expected PATH=VALUE[,VALUE...] such as "
                         f"balancer.algorithm=round_robin,power_of_two, got {show(text)}")
    items = [v.strip() for v in rest.split(",")]
    if not rest.strip() or any(not v for v in items):
        raise SweepError(f"--set {path}: expected values separated by commas, got {show(rest)}")
    if len(items) > MAX_VALUES:
        raise SweepError(f"--set {path}: expected at most {MAX_VALUES} values, got {len(items)}")
    return path, tuple(_value(v) for v in items)


def _value(text: str) -> Scalar:
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    if isinstance(value, bool | int | float | str):
        return value
    return text


def _nested(path: str, value: Scalar) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return out


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and \
            isinstance(out.get(key), dict) else value
    return out


@dataclass(frozen=True)
class Job:
    """One run of a sweep."""

    scenario: Scenario
    group: int
    seed: int
    duration: float


@dataclass(frozen=True)
class Plan:
    """A scenario, the seeds, and the parameter sets (the product of every ``--set``)."""

    scenario: Scenario
    seeds: tuple[int, ...]
    sets: tuple[tuple[str, tuple[Scalar, ...]], ...] = ()
    duration: float | None = None

    def __post_init__(self) -> None:
        runs = len(self.seeds) * len(self.params())
        if runs > MAX_RUNS:
            raise SweepError(f"expected at most {MAX_RUNS} runs, got {runs} "
                             f"({len(self.seeds)} seeds x {len(self.params())} parameter sets)")

    def params(self) -> list[dict[str, Scalar]]:
        """Every parameter set, the first ``--set`` varying slowest."""
        paths = [p for p, _ in self.sets]
        return [dict(zip(paths, values, strict=True))
                for values in itertools.product(*(v for _, v in self.sets))]

    def scenarios(self) -> list[Scenario]:
        """The scenario of each parameter set. Raises SweepError naming the ``--set`` whose
        path or value does not fit the scenario."""
        for path, values in self.sets:
            for value in values:
                try:
                    scenario_with(self.scenario, _nested(path, value), "")
                except ScenarioError as exc:
                    raise SweepError(f"--set {path}={value}: {exc.problems[0]}") from None
        out = []
        for p in self.params():
            data: dict[str, Any] = {}
            for path, value in p.items():
                data = _merge(data, _nested(path, value))
            try:
                out.append(scenario_with(self.scenario, data, ""))
            except ScenarioError as exc:
                shown = ", ".join(f"{k}={v}" for k, v in p.items())
                raise SweepError(f"--set {shown}: {exc.problems[0]}") from None
        return out

    def jobs(self) -> list[Job]:
        duration = self.duration if self.duration is not None else self.scenario.run.duration
        jobs = []
        for group, scenario in enumerate(self.scenarios()):
            sc = replace(scenario, run=replace(scenario.run, duration=duration))
            try:
                Engine(sc, seed=self.seeds[0])  # faults, actions and checks fit the world
            except ScenarioError as exc:
                raise SweepError(f"{exc.problems[0]}") from None
            jobs += [Job(sc, group, seed, duration) for seed in self.seeds]
        return jobs


HEADLINE: Final = (("p50", "s"), ("p99", "s"), ("error_rate", "fraction"))


def run_job(job: Job) -> RunOutcome:
    """Run one job headless and keep its checks and headline figures."""
    engine = Engine(job.scenario, seed=job.seed)
    engine.run_until(job.duration)
    s = engine.summary()
    measures = [Measure(name="p50", unit="s", value=s.latency.p50),
                Measure(name="p99", unit="s", value=s.latency.p99),
                Measure(name="error_rate", unit="fraction", value=s.error_rate)]
    if s.database is not None:
        measures.append(Measure(name="lost_writes", unit="count",
                                value=float(s.database.lost_writes)))
    headline = {m.name for m in measures}
    measures += [Measure(name=c.name, unit=c.unit, value=c.value) for c in s.checks
                 if not (c.over == "run" and c.metric in headline)]  # not p99 twice
    checks = tuple(CheckOutcome(name=c.name, passed=c.passed, value=c.value) for c in s.checks)
    return RunOutcome(group=job.group, seed=job.seed, checks=checks, measures=tuple(measures))


# -- running ---------------------------------------------------------------------------------


def run_sweep(plan: Plan, *, workers: int = 1, cluster: str | None = None,
              progress: Progress | None = None) -> SweepResult:
    """Run every job of ``plan`` (here, on ``workers`` local processes, or on the Dask
    scheduler at ``cluster``) and aggregate them."""
    jobs = plan.jobs()
    if cluster is not None:
        outcomes = list(_on_dask(jobs, cluster, progress))
    elif workers > 1 and len(jobs) > 1:
        outcomes = list(_on_pool(jobs, workers, progress))
    else:
        outcomes = list(_here(jobs, progress))
    duration = jobs[0].duration if jobs else 0.0
    return SweepResult(scenario=plan.scenario.run.name, duration=finite(duration),
                       seeds=plan.seeds, parameters=tuple(p for p, _ in plan.sets),
                       groups=aggregate(plan.params(), outcomes), runs=len(outcomes))


def _here(jobs: Sequence[Job], progress: Progress | None) -> Iterator[RunOutcome]:
    for done, job in enumerate(jobs, 1):
        yield run_job(job)
        if progress is not None:
            progress(done, len(jobs))


def _on_pool(jobs: Sequence[Job], workers: int, progress: Progress | None) -> \
        Iterator[RunOutcome]:
    """On a pool of fresh processes (spawned, so nothing of this process leaks into them),
    with at most two jobs per worker queued at a time."""
    workers = min(workers, MAX_WORKERS, len(jobs))
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        queue = iter(jobs)
        pending: set[Future[RunOutcome]] = set()
        done = 0
        for job in itertools.islice(queue, 2 * workers):
            pending.add(pool.submit(run_job, job))
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                try:
                    outcome = future.result()
                except BrokenProcessPool as exc:
                    raise SweepError(f"--workers: a worker process died ({exc}); a pool needs "
                                     "its main program to be a file it can import, or use "
                                     "--workers 1") from None
                yield outcome
                done += 1
                if progress is not None:
                    progress(done, len(jobs))
            for job in itertools.islice(queue, len(finished)):
                pending.add(pool.submit(run_job, job))


def check_cluster(address: str) -> str:
    """``address`` if it looks like a Dask scheduler address (``tcp://HOST:PORT``)."""
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in CLUSTER_SCHEMES or not rest:
        raise SweepError(f"--cluster: expected a scheduler address such as tcp://HOST:8786, "
                         f"got {show(address)}")
    return address


def _reachable(address: str) -> None:
    """Fail fast on a TCP scheduler nobody listens at (Dask itself retries until its timeout)."""
    scheme, _, rest = address.partition("://")
    if scheme != "tcp":
        return
    host, _, port = rest.rpartition(":")
    if not port.isdigit() or not host:
        raise OSError(f"expected HOST:PORT after tcp://, got {rest!r}")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT):
        pass


def _on_dask(jobs: Sequence[Job], address: str, progress: Progress | None) -> \
        Iterable[RunOutcome]:
    check_cluster(address)
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise SweepError("--cluster needs dask.distributed: pip install 'stackyard[cluster]'") \
            from None
    try:
        _reachable(address)
        client = Client(address, timeout=CONNECT_TIMEOUT,  # type: ignore[no-untyped-call]
                        set_as_default=False)
    except (OSError, TimeoutError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise SweepError(f"--cluster: cannot reach the Dask scheduler at {address}: "
                         f"{reason}") from None
    outcomes: list[RunOutcome] = []
    try:
        futures = client.map(run_job, list(jobs), pure=False)
        completed = as_completed(futures, loop=client.loop)  # type: ignore[no-untyped-call]
        for done, future in enumerate(completed, 1):
            outcomes.append(future.result())
            if progress is not None:
                progress(done, len(jobs))
    finally:
        client.close()  # type: ignore[no-untyped-call]
    return outcomes
