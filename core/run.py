"""Opening a run: a scenario and a seed, with or without storage, ready to drive.

The one way the command line, the app, the benchmarks and the tests assemble an engine, its
SQLite storage and a session, and get a typed :class:`~core.protocol.RunSummary` back.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from msgspec.structs import replace

from stackyard.core.config import Scenario
from stackyard.core.engine import Engine
from stackyard.core.protocol import Consistency, RunSummary, StorageSummary
from stackyard.core.scenario import resolve
from stackyard.core.storage import Storage, StorageError, check, node_state

if TYPE_CHECKING:
    from stackyard.core.recorder import Recorder
    from stackyard.core.session import LocalSession

__all__ = ["Run", "StorageError", "open_run", "publish_hz"]


_frozen_runs = 0


def _freeze() -> None:
    """A started run's world lives as long as the run: move it, and everything else alive, out
    of the collector's reach (``gc.freeze``), so that the full collections the snapshots'
    short-lived objects bring on (a recorder's, a viewer's) stop walking the whole world each
    time — without it recording costs about 4% more. The last run to close thaws it all."""
    global _frozen_runs
    if _frozen_runs == 0:
        gc.freeze()
    _frozen_runs += 1


def _thaw() -> None:
    global _frozen_runs
    _frozen_runs -= 1
    if _frozen_runs == 0:
        gc.unfreeze()


def publish_hz(scenario: Scenario) -> float:
    """Snapshots per wall second for a viewer: the scenario's interval, kept within 4-10 Hz."""
    interval = scenario.run.snapshot_interval
    return min(10.0, max(4.0, 1.0 / interval if interval > 0 else 5.0))


@dataclass
class Run:
    """An engine on a scenario and seed, and (optionally) every database node's rows in SQLite.

    Use it as an async context manager (or call :meth:`start` / :meth:`close`) when it has
    storage: that opens and closes the databases."""

    scenario: Scenario
    engine: Engine
    storage: Storage | None = None
    data_dir: Path | None = None
    overwrite: bool = False
    problems: list[str] = field(default_factory=list)
    """What the last :meth:`check` found (empty: every node's rows match the model)."""
    checked: bool = False
    recorder: Recorder | None = None
    """Records the run to a file (see :mod:`core.recorder`); it samples from when it is
    attached and writes once the run is started."""
    _started: bool = False
    _recording: bool = False
    _frozen: bool = False

    @property
    def seed(self) -> int:
        return self.engine.seed

    async def start(self) -> None:
        """Open the storage and the recording (if any) and start their writers."""
        if not self._frozen:
            self._frozen = True
            _freeze()
        if self.storage is not None and not self._started:
            await self.storage.open(overwrite=self.overwrite)
            self._started = True
            self.storage.start()
        if self.recorder is not None and not self._recording:
            self._recording = True
            await self.recorder.open()

    async def close(self) -> None:
        try:
            if self.recorder is not None and self._recording:
                self._recording = False
                await self.recorder.close()
            if self.storage is not None and self._started:
                self._started = False
                await self.storage.close()
        finally:
            if self._frozen:
                self._frozen = False
                _thaw()

    async def relieve(self) -> None:
        """Between engine slices: let the writers behind the engine catch up if they must."""
        if self.storage is not None:
            await self.storage.relieve()
        if self.recorder is not None:
            await self.recorder.relieve()
        if self.storage is None and self.recorder is None:
            await asyncio.sleep(0)

    async def flush(self) -> None:
        """Wait until everything the engine produced so far is written."""
        if self.storage is not None:
            await self.storage.flush()
        if self.recorder is not None:
            await self.recorder.flush()

    async def __aenter__(self) -> Run:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def advance(self, seconds: float,
                      progress: Callable[[float], None] | None = None) -> None:
        """Run ``seconds`` of simulated time as fast as the CPU allows (letting storage write
        between slices when there is storage)."""
        if self.storage is None and self.recorder is None:
            self.engine.run_for(seconds, progress=progress)
            return
        await self.start()
        await self.engine.run_async(seconds, self, progress=progress)

    async def check(self) -> list[str]:
        """Compare every node's rows in SQLite with the model's log."""
        if self.storage is None or self.engine.world.db is None:
            raise StorageError("check: this run keeps no SQL data")
        await self.storage.flush()
        self.problems = await check(self.engine.world.db, self.storage)
        self.checked = True
        return self.problems

    def summary(self) -> RunSummary:
        summary = self.engine.summary()
        if self.storage is not None:
            s = self.storage
            summary = replace(summary, storage=StorageSummary(
                rows_written=s.rows_written, batches=s.batches,
                backpressure_waits=s.backpressure_waits, peak_queue=s.peak_pending,
                data_dir=str(self.data_dir) if self.data_dir is not None else None))
        if self.checked:
            summary = replace(summary, consistency=Consistency(
                ok=not self.problems, problems=tuple(self.problems)))
        return summary

    def session(self, *, speed: float = 1.0, paused: bool = False, hz: float | None = None,
                step_seconds: float = 1.0) -> LocalSession:
        """A session that drives this run in real time at ``hz`` snapshots a second (default:
        the scenario's); it opens the storage when started."""
        from stackyard.core.session import LocalSession

        return LocalSession(self, speed=speed, paused=paused,
                            publish_hz=hz if hz is not None else publish_hz(self.scenario),
                            step_seconds=step_seconds)


def open_run(scenario: Scenario | str, *, seed: int | None = None, storage: bool = False,
             data_dir: Path | None = None, overwrite: bool = False,
             record: Recorder | None = None) -> Run:
    """Build a run on ``scenario`` (a built-in's name, a file path, or a Scenario).

    ``storage`` keeps every database node's rows in SQLite (in memory, or as files in
    ``data_dir``); ``record`` records the run from its start (its file is created when the run
    starts). Raises ScenarioError for a bad scenario and StorageError when storage is asked of
    a scenario without a database tier."""
    sc = resolve(scenario) if isinstance(scenario, str) else scenario
    engine = Engine(sc, seed=seed)
    store: Storage | None = None
    if storage or data_dir is not None:
        db = engine.world.db
        if db is None or not engine.db_nodes():
            raise StorageError("storage needs a scenario with a database tier")
        store = Storage(engine.db_nodes(), data_dir, unavailable=node_state(db))
        engine.attach_storage(store)
    run = Run(sc, engine, store, data_dir, overwrite)
    if record is not None:
        record.attach(engine)
        run.recorder = record
    return run
