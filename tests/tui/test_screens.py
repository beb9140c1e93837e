"""The SQL console, the too-small notice, and the detail of a node that goes away."""

from __future__ import annotations

from stackyard.tui.screens.main import MainScreen
from stackyard.tui.screens.sql import SqlScreen
from tests.tui.conftest import AppFactory
from tests.tui.helpers import advance, screen_text, select, session


async def test_sql_console_queries_the_selected_node_and_refuses_writes(
        make_app: AppFactory) -> None:
    app = make_app(storage=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await advance(pilot, 2)
        await select(pilot, "db-2")
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, SqlScreen) and app.screen.node == "db-2"
        await pilot.press(*"SELECT count(*) AS n FROM writes", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        text = screen_text(app)
        assert "db-2: 1 row in" in text and " n " in text
        await pilot.press("end", "ctrl+u")
        await pilot.press(*"DELETE FROM writes", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "read-only console" in screen_text(app) or "one statement" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_sql_console_without_database_storage_explains(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("s")
        await pilot.press(*"SELECT 1", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "without storage" in screen_text(app)


async def test_too_small_terminal_shows_a_notice_and_recovers(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(50, 14)) as pilot:
        await pilot.pause()
        assert "Terminal too small: 50x14" in screen_text(app)
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        text = screen_text(app)
        assert "too small" not in text
        assert "Network" in text and "Application" in text and "Database" in text


async def test_all_three_panes_show_every_node_at_80x24(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(app)
        snap = session(app).latest
        assert snap is not None
        for node in snap.nodes:
            if node.kind in ("container", "db", "edge", "balancer"):
                assert node.id[:8] in text, node.id


async def test_detail_of_a_node_that_goes_away(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, "app-1")
        await pilot.press("enter")
        # The detail screen takes run keys too: autoscaler off, then two replicas fewer.
        await pilot.press("A", "left_square_bracket")
        await pilot.pause()
        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert session(app).latest.autoscaler.replicas == 2  # type: ignore[union-attr]
        await advance(pilot, 10)
        assert "app-1 is gone" in screen_text(app)
