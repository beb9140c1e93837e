"""Keys in bursts, as a terminal delivers them when a user mashes keys or pastes: the app
never crashes, never ends on an empty screen, and the simulation keeps running."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from textual import events

from stackyard.core.protocol import Command
from stackyard.tui.app import StackyardApp
from stackyard.tui.keys import textual_key
from stackyard.tui.screens.main import MainScreen
from tests.tui.conftest import AppFactory
from tests.tui.helpers import session

NAVIGATION = ["tab", "shift+tab", "up", "down", "left", "right", "j", "k", "home", "end",
              "pageup", "pagedown", "enter", "escape", "backspace", "ctrl+p", "slash",
              "question_mark", "s", "t", "space", "a", "1", "x", "e"]
SEEDS = [1, 2, 3]
TYPED = list("selct *frmwhe10;")


def key_pool(app: StackyardApp) -> list[str]:
    """Every key the app binds (from the catalogue and its own), navigation, the palette's
    and the console's keys, and characters to type into inputs — but not quit."""
    catalogue = [textual_key(k.key) for a in app.session.catalogue for k in a.keys]
    return sorted(set(catalogue + NAVIGATION + TYPED))


def burst(app: StackyardApp, keys: list[str]) -> None:
    """Deliver ``keys`` at once, without waiting for any of them to be handled."""
    for key in keys:
        character = key if len(key) == 1 else (" " if key == "space" else None)
        app.post_message(events.Key(key, character))


@pytest.mark.parametrize("seed", SEEDS)
async def test_key_bursts_leave_the_app_running(make_app: AppFactory, seed: int) -> None:
    rng = random.Random(seed)
    app = make_app(storage=True)
    async with app.run_test(size=(100, 30)) as pilot:
        pool = key_pool(app)
        for _ in range(40):
            burst(app, [rng.choice(pool) for _ in range(rng.randint(1, 8))])
            await pilot.pause()
        for _ in range(6):  # back to the main screen the way a user would
            if isinstance(app.screen, MainScreen):
                break
            await pilot.press("escape")
            await pilot.pause()
        assert isinstance(app.screen, MainScreen), app.screen_stack
        assert app.is_running
        await session(app).send(Command("resume"))
        before = session(app).engine.now
        deadline = time.monotonic() + 20.0
        while session(app).engine.now <= before and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert session(app).engine.now > before, "the simulated clock stood still"


@pytest.mark.parametrize("keys", [
    ["enter", "ctrl+p", "enter", "ctrl+p", "enter"],
    ["enter", "ctrl+p", "enter"],
    ["ctrl+p", "pageup"],
    ["ctrl+p", "pagedown", "pageup"],
    ["ctrl+p", "ctrl+p", "escape", "ctrl+p", "enter"],
    ["question_mark", "ctrl+p", "escape", "escape", "escape"],
])
async def test_known_bursts_around_the_palette(make_app: AppFactory, keys: list[str]) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        burst(app, keys)
        for _ in range(5):
            await pilot.pause()
        assert len(app.screen_stack) >= 2 and isinstance(app.screen_stack[1], MainScreen)
        for _ in range(4):
            if isinstance(app.screen, MainScreen):
                break
            await pilot.press("escape")
            await pilot.pause()
        assert isinstance(app.screen, MainScreen)
