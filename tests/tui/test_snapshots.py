"""Snapshot tests of the main screens on a fixed seed, driver paused (stable frames).

Update after an intended change with ``pytest tests/tui/test_snapshots.py --snapshot-update``
and look at the SVGs before committing them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from tests.tui.conftest import build_app
from tests.tui.helpers import select


def test_main_80x24(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(build_app(tmp_path, warmup=20.0), terminal_size=(80, 24))


def test_main_160x48(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(build_app(tmp_path, warmup=20.0), terminal_size=(160, 48))


def test_main_after_faults_100x30(snap_compare: Any, tmp_path: Path) -> None:
    async def run_before(pilot: Pilot[int]) -> None:
        await select(pilot, "app-2")
        await pilot.press("d")
        await select(pilot, "app-db", "link")
        await pilot.press("l")
        await select(pilot, "db-1")
        await pilot.press("d")
        app: Any = pilot.app
        app.session.advance(12.0)
        await pilot.pause()

    assert snap_compare(build_app(tmp_path, warmup=20.0), terminal_size=(100, 30),
                        run_before=run_before)


def test_help_80x24(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(build_app(tmp_path), terminal_size=(80, 24), press=["question_mark"])


def test_detail_100x30(snap_compare: Any, tmp_path: Path) -> None:
    async def run_before(pilot: Pilot[int]) -> None:
        await select(pilot, "app-2")
        await pilot.press("enter")
        app: Any = pilot.app
        for _ in range(20):
            app.session.advance(1.0)
            await pilot.pause()

    assert snap_compare(build_app(tmp_path), terminal_size=(100, 30), run_before=run_before)


def test_sql_console_80x24(snap_compare: Any, tmp_path: Path) -> None:
    async def run_before(pilot: Pilot[int]) -> None:
        await select(pilot, "db-3")
        await pilot.press("s", *"DELETE FROM writes", "enter")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(build_app(tmp_path, storage=True), terminal_size=(80, 24),
                        run_before=run_before)


def test_too_small_50x14(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(build_app(tmp_path), terminal_size=(50, 14))


def test_replay_80x24(snap_compare: Any, tmp_path: Path) -> None:
    """A replay paused on the snapshot just after a fault, markers on the scrubber."""
    import asyncio

    from stackyard.core.protocol import Command
    from stackyard.core.recorder import Recorder
    from stackyard.core.recording import Recording
    from stackyard.core.replay import ReplaySession
    from stackyard.core.run import open_run
    from stackyard.tui.app import StackyardApp

    async def record() -> None:
        run = open_run("default", seed=7, record=Recorder(tmp_path / "r.db"))
        async with run:
            await run.advance(20.0)
            run.engine.apply(Command("kill_container", "app-2", origin="key"))
            await run.advance(40.0)

    asyncio.run(record())
    session = ReplaySession(Recording.open(tmp_path / "r.db"), paused=True, at=30.0)
    app = StackyardApp(session, theme_dir=tmp_path / "themes")
    assert snap_compare(app, terminal_size=(80, 24))
