"""Completing a lesson the way a user would: press only what each step asks, let simulated time
pass until the model shows the effect, and read the debrief."""

from __future__ import annotations

from pathlib import Path

from textual.command import CommandPalette
from textual.pilot import Pilot

from stackyard.core.lesson import TYPE_PREFIX, Lesson
from stackyard.core.run import open_run
from stackyard.tui.app import StackyardApp
from stackyard.tui.keys import textual_key
from tests.tui.helpers import screen_text, session

STEP_SECONDS = 1.0
"""Simulated seconds between two looks at the lesson."""
DEADLINE = 900.0
"""Simulated seconds a step may take before the test gives up."""


def lesson_app(lesson: Lesson, theme_dir: Path) -> StackyardApp:
    """The app on the lesson's scenario and seed, as ``stackyard learn`` opens it, with the
    driver paused so the test moves time."""
    run = open_run(lesson.scenario, seed=lesson.seed, storage=True)
    return StackyardApp(run.session(paused=True), theme_dir=theme_dir, lesson=lesson)


def pane_text(app: StackyardApp) -> str:
    """The lesson pane's text with its lines joined (it wraps), for 'shows ...' checks."""
    return " ".join(app.screen.query_one("#lesson").render().plain.split())


async def press_keys(pilot: Pilot[int], keys: tuple[str, ...]) -> None:
    for key in keys:
        if key.startswith(TYPE_PREFIX):
            await pilot.press(*key.removeprefix(TYPE_PREFIX))
        else:
            await pilot.press(textual_key(key))
        await pilot.pause()
        app = pilot.app
        await app.workers.wait_for_complete()


async def run_palette(pilot: Pilot[int], text: str) -> None:
    """ctrl+p, type ``text``, check it is the first match, enter."""
    app = pilot.app
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*text)
    palette = app.screen
    assert isinstance(palette, CommandPalette)
    for _ in range(100):
        await pilot.pause(0.02)
        shown = palette.query_one("CommandList")
        if shown.option_count and str(shown.get_option_at_index(0).prompt).startswith(text):
            break
    first = str(palette.query_one("CommandList").get_option_at_index(0).prompt)
    assert first.startswith(text), f"the palette's first line is {first!r}, not {text!r}"
    await pilot.press("enter")
    await pilot.pause()


async def complete(pilot: Pilot[int], app: StackyardApp) -> list[float]:
    """Do every step of the app's lesson; returns the simulated seconds each step took."""
    run = app.lesson
    assert run is not None
    took: list[float] = []
    for i, step in enumerate(run.lesson.steps):
        assert run.index == i
        shown = pane_text(app)
        assert " ".join(step.text.split()[:6]) in shown, shown
        if step.select:
            assert app.node is not None and app.node.id == step.select
        await press_keys(pilot, step.keys)
        if step.palette:
            await run_palette(pilot, step.palette)
        start = session(app).engine.now
        while run.index == i:
            assert session(app).engine.now - start < DEADLINE, \
                f"step {i} ({step.waiting}) not reached in {DEADLINE:g} s:\n{screen_text(app)}"
            session(app).advance(STEP_SECONDS)
            await pilot.pause()
        took.append(session(app).engine.now - start)
    for _ in range(50):
        await app.workers.wait_for_complete()
        await pilot.pause()
        if run.debrief:
            break
    assert run.debrief, "no debrief"
    return took
