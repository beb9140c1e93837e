"""The real binary records the app in a real terminal, then replays the file at 80x24."""

from __future__ import annotations

from pathlib import Path

from stackyard.core.recording import Recording
from tests.tui.test_tmux import Tmux, _up, tmux  # noqa: F401 - the fixture


def test_record_the_app_then_replay_it_at_80x24(tmux: Tmux, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "session.db"
    tmux.start("default", "--seed", "3", "--speed", "20", "--record", str(path), size=(80, 24))
    tmux.wait(_up, "the three panes")
    tmux.wait(lambda s: "0:0" in s.splitlines()[0] and " 0:00." not in s.splitlines()[0],
              "the clock past the first seconds")
    tmux.keys("d")  # kill the selected container
    tmux.wait(lambda s: "fault f1: kill_container on app-1" in s, "the fault")
    tmux.keys("q")
    assert tmux.wait_dead() == 0
    with Recording.open(path) as rec:
        assert [(c.kind, c.origin) for _, c in rec.commands()] == [("kill_container", "key")]
        end = rec.end
    tmux("kill-session", "-t", tmux.name)

    tmux.start("replay", str(path), "--paused", size=(80, 24))
    screen = tmux.wait(lambda s: s.startswith("REPLAY"), "the replay header")
    assert screen.splitlines()[1].startswith("⏵ 0:00:00 ●") and "▲" in screen
    tmux.keys("]")
    tmux.wait(lambda s: "fault f1: kill_container on app-1" in s, "the jump to the fault")
    tmux.keys("d")  # no fault keys in a replay: nothing happens
    tmux.keys("}")
    screen = tmux.wait(lambda s: "⏵ 0:01:" in s or f"⏵ 0:00:{int(end):02d}" in s,
                       "a minute further (or the end)")
    assert "fault f2" not in screen
    tmux.keys("q")
    assert tmux.wait_dead() == 0
