"""The command palette holds every action, parameterised ones included."""

from __future__ import annotations

import pytest
from textual.command import CommandPalette

from stackyard.core.protocol import Command
from tests.tui.conftest import AppFactory
from tests.tui.helpers import last_sent, screen_text, session


async def run_palette(pilot, text: str) -> None:  # type: ignore[no-untyped-def]
    await pilot.press("ctrl+p")
    await pilot.pause()
    assert isinstance(pilot.app.screen, CommandPalette)
    await pilot.press(*text)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.press("enter")
    await pilot.pause()


@pytest.mark.parametrize(
    ("typed", "command"),
    [
        ("link latency 200 ms on app-db",
         Command("link_latency", "app-db", {"latency": 0.2, "jitter": 0.02})),
        ("switch balancer to power_of_two", Command("set_algorithm",
                                                   params={"name": "power_of_two"})),
        ("replication: sync", Command("set_replication", params={"mode": "sync"})),
        ("traffic spike x5 everywhere", Command("traffic_spike", "", {"factor": 5.0})),
        ("scale to 8 replicas", Command("set_replicas", params={"n": 8})),
    ],
)
async def test_palette_sends_parameterised_commands(make_app: AppFactory, typed: str,
                                                    command: Command) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await run_palette(pilot, typed)
        sent, reply = last_sent(app)
        assert sent == command
        assert reply.ok, reply.error
        assert sent.kind in screen_text(app) or str(sent.params.get("name", "")) in \
            screen_text(app) or "replicas" in screen_text(app)


async def test_palette_lists_every_fault_kind_and_control(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("h")  # an active fault, so that "clear f1" is offered too
        await pilot.pause()
        entries = app.palette_entries()
        kinds = {e.command.kind for e in entries if e.command is not None}
        assert kinds == {a.name for a in session(app).catalogue}
        texts = [e.text for e in entries]
        for fragment in ("pause / resume", "speed 100x", "SQL console", "open container app-1",
                         "undo the last fault", "clear all faults", "help: every key",
                         "clear f1: cpu hog on app-1", "switch over to db-2",
                         "region outage on us", "cpu hog 2 cores on container app-1",
                         "kill container on app-2"):
            assert any(fragment in t for t in texts), fragment


async def test_palette_drives_the_clock_and_keeps_the_theme_switcher(
        make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await run_palette(pilot, "step one simulated second")
        assert session(app).engine.now == pytest.approx(6.0)
        await run_palette(pilot, "Theme")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        assert "catppuccin-mocha" in screen_text(app)
        await pilot.press(*"stackyard-high")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "stackyard-high-contrast" in screen_text(app)
        await pilot.press("enter")
        await pilot.pause()
        assert app.theme == "stackyard-high-contrast"
