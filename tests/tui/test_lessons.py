"""Every built-in lesson, completed end to end in the app at 80x24 by pressing only what each
step asks; the debrief's figures are this run's summary's."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackyard.core.condition import get_path
from stackyard.core.lesson import lesson_names, load_builtin, load_lesson, placeholders
from stackyard.core.protocol import Command
from stackyard.core.recorder import Recorder
from stackyard.core.recording import Recording
from stackyard.core.replay import ReplaySession
from stackyard.core.run import open_run
from stackyard.tui.app import StackyardApp
from stackyard.tui.screens.main import MainScreen
from tests.tui.helpers import screen_text, session
from tests.tui.lessons import complete, lesson_app, pane_text


@pytest.mark.parametrize("name", lesson_names())
async def test_lesson_completes_and_quotes_the_runs_figures(tmp_path: Path, name: str) -> None:
    lesson = load_builtin(name)
    app = lesson_app(lesson, tmp_path / "themes")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        assert f"step 1 of {len(lesson.steps)}: {lesson.title}" in screen_text(app)
        await complete(pilot, app)
        run = app.lesson
        assert run is not None and run.done
        summary = session(app).run.summary()
        assert run.debrief == lesson.debrief_text(summary)
        for path, _ in placeholders(lesson.debrief):
            value = get_path(summary, path.split("."))
            if isinstance(value, int) and not isinstance(value, bool):
                assert str(value) in run.debrief, (path, value)
        assert " ".join(run.debrief.split()[:8]) in pane_text(app)
        assert f"Lesson done: {lesson.title}" in screen_text(app)
        await pilot.press("L")  # the event log takes the lesson's place
        await pilot.pause()
        assert "Events" in screen_text(app) and "Lesson done" not in screen_text(app)


async def test_a_session_without_a_summary_still_ends_the_lesson(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    run = open_run("default", seed=1, record=Recorder(path))
    async with run:
        await run.advance(20.0)
    lesson_file = tmp_path / "watch.toml"
    lesson_file.write_text(
        '[lesson]\ntitle = "Watch"\nsummary = "Watch a replay."\nscenario = "default"\n\n'
        '[[steps]]\ntext = "Watch the clock."\nuntil = "time >= 5"\nwaiting = "five seconds"\n\n'
        '[debrief]\ntext = "{requests.completed:request} done."\n')
    session = ReplaySession(Recording.open(path), paused=True)
    app = StackyardApp(session, theme_dir=tmp_path / "themes", lesson=load_lesson(lesson_file))
    async with app.run_test(size=(80, 24)) as pilot:
        await app.send_command(Command("seek", params={"time": 10.0}))
        for _ in range(50):
            await pilot.pause()
            await app.workers.wait_for_complete()
            if app.lesson is not None and app.lesson.debrief:
                break
        assert app.lesson is not None and app.lesson.done
        assert "figures are not available: a replay keeps no run summary" in pane_text(app)
