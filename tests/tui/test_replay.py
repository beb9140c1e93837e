"""Recording the app, replaying it in the app, and forking a live run from a recording."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import pytest

from stackyard.core.engine import CommandError
from stackyard.core.protocol import Command
from stackyard.core.recorder import Recorder
from stackyard.core.recording import Recording
from stackyard.core.replay import ReplaySession
from stackyard.core.rerun import ForkSession, rerun
from stackyard.core.run import open_run
from stackyard.tui.app import StackyardApp
from stackyard.tui.widgets.scrubber import Scrubber
from tests.tui.conftest import SEED
from tests.tui.helpers import screen_text, select
from tests.tui.test_palette import run_palette

SIZE = (100, 30)
REPLAY_SIZE = (100, 31)
"""One line more for the scrubber, so the panes are as tall as in the live app."""
LIGHT = str.maketrans("━┃┓┏┛┗", "─│┐┌┘└")


def panes_and_events(app: StackyardApp) -> list[str]:
    """The tier panes and the event log as on screen, without the selection and the focus
    (which are the viewer's, not the run's)."""
    lines = screen_text(app).splitlines()
    start = next(i for i, line in enumerate(lines) if line[1:].startswith("Network"))
    end = next(i for i, line in enumerate(lines) if line.startswith("?"))  # the footer
    return [line.replace("▶", " ").translate(LIGHT) for line in lines[start:end]
            if not (re.match(r"^ [\w.-]+: ", line) and "│" not in line)]  # the status line


def replay_app(path: Path, tmp_path: Path, **kwargs: Any) -> StackyardApp:
    session = ReplaySession(Recording.open(path), paused=True, **kwargs)
    return StackyardApp(session, theme_dir=tmp_path / "themes")


async def test_a_recorded_session_replays_to_the_same_screens_and_reruns(
        tmp_path: Path) -> None:
    path = tmp_path / "session.db"
    run = open_run("default", seed=SEED, storage=True, record=Recorder(path))
    session = run.session(paused=True)
    app = StackyardApp(session, theme_dir=tmp_path / "themes")
    seen: dict[float, list[str]] = {}
    async with app.run_test(size=SIZE) as pilot:
        session.advance(5.0)
        await select(pilot, "app-2")
        await pilot.press("d")
        await select(pilot, "db-2")
        await pilot.press("p")  # db_partition from its key
        session.advance(4.0)
        await pilot.pause()
        seen[9.0] = panes_and_events(app)
        await run_palette(pilot, "traffic spike x5 everywhere")
        for t in (12.0, 20.0):
            session.advance(t - session.engine.now)
            await pilot.pause()
            seen[t] = panes_and_events(app)
        await pilot.press("x")  # clear all
        session.advance(3.0)
        await pilot.pause()
    assert [(c.kind, c.origin) for c, r in session.sent if r.ok] == [
        ("kill_container", "key"), ("db_partition", "key"), ("traffic_spike", "palette"),
        ("clear_all", "key")]
    with Recording.open(path) as rec:
        assert rec.end == 23.0
        result = rerun(rec)
    assert result.identical, result.divergence
    replay = replay_app(path, tmp_path)
    async with replay.run_test(size=REPLAY_SIZE) as pilot:
        for t, screen in seen.items():
            await replay.send_command(Command("seek", params={"time": t}))
            await pilot.pause()
            assert panes_and_events(replay) == screen, t


@pytest.fixture
async def recorded(tmp_path: Path) -> Path:
    """Thirty seconds of ``default`` with a fault at 5 s, a control at 12.5 s and a fault at
    20 s."""
    path = tmp_path / "markers.db"
    run = open_run("default", seed=SEED, record=Recorder(path))
    async with run:
        for t, cmd in ((5.0, Command("kill_container", "app-1", origin="key")),
                       (12.5, Command("set_replicas", "", {"n": 6}, origin="palette")),
                       (20.0, Command("link_latency", "lb-app", origin="key"))):
            await run.advance(t - run.engine.now)
            with contextlib.suppress(CommandError):
                run.engine.apply(cmd)
        await run.advance(30.0 - run.engine.now)
    return path


async def test_replay_header_scrubber_and_marker_keys(recorded: Path, tmp_path: Path) -> None:
    app = replay_app(recorded, tmp_path)
    session = app.session
    assert isinstance(session, ReplaySession)
    async with app.run_test(size=(80, 24)) as pilot:
        text = screen_text(app)
        assert text.splitlines()[0].startswith("REPLAY ⏸ 0:00.0")
        assert text.splitlines()[1].startswith("⏵ 0:00:00 ●") and "0:00:30" in text
        assert text.count("▲") >= 2 and "◆" in text
        await pilot.press("right_square_bracket")
        assert session.latest is not None and session.latest.time == 6.0  # just after 5 s
        await pilot.press("right_square_bracket", "right_square_bracket")
        assert session.latest.time == 21.0
        await pilot.press("left_square_bracket")
        assert session.latest.time == 13.0
        await pilot.press("greater_than_sign", "less_than_sign", "less_than_sign")
        assert session.latest.time == 3.0
        await pilot.press("full_stop")
        assert session.latest.time == 4.0 and session.status.paused
        await pilot.press("d", "x", "S")  # fault and control keys do nothing in a replay
        assert all(c.kind in ("jump", "skip", "step") for c, _ in session.sent)
        await pilot.press("space")
        assert not session.status.paused
        await pilot.press("space")
        assert session.status.paused
        scrubber = app.screen.query_one(Scrubber)
        await pilot.click(Scrubber, offset=(scrubber.size.width - len(" 0:00:30") - 1, 0))
        await pilot.pause()
        assert session.latest.time == 30.0
        assert "REPLAY" in screen_text(app).splitlines()[0]


async def test_a_replay_refuses_faults_sent_anyway_and_queries(recorded: Path) -> None:
    session = ReplaySession(Recording.open(recorded), paused=True)
    try:
        reply = session.apply(Command("kill_container", "app-2"))
        assert not reply.ok and "this is a replay, so faults and controls are off" in \
            reply.error and "stackyard rerun markers.db --from 0:00:00" in reply.error
        assert {a.name for a in session.catalogue} == {"pause", "resume", "speed", "step",
                                                        "seek", "skip", "jump"}
        with pytest.raises(Exception, match="a replay keeps no SQL data"):
            await session.query("db-1", "SELECT 1")
        session.resume()
        session.advance(100.0)  # wall seconds: past the end, where it pauses
        assert session.latest is not None and session.latest.time == 30.0
        assert session.status.paused
    finally:
        session.rec.close()


async def test_a_fork_opens_at_its_time_and_plays_on_live(recorded: Path,
                                                           tmp_path: Path) -> None:
    with Recording.open(recorded) as rec:
        commands, scenario = rec.commands(), rec.scenario
    run = open_run(scenario, seed=SEED, storage=True)
    session = ForkSession(run, commands, 15.0, paused=True)
    app = StackyardApp(session, theme_dir=tmp_path / "themes")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert session.forked and session.engine.now == 15.0
        header = [part.strip() for part in screen_text(app).splitlines()[0].split("│")]
        assert "⏸ paused 0:15.0 1x" in header, header
        await select(pilot, "app-3")
        await pilot.press("d")
        assert session.sent[-1][1].ok and session.sent[-1][0].target == "app-3"
