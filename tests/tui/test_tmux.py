"""The real ``stackyard`` binary in a real terminal (tmux): keys in, screen out, clean exit.

Waits poll ``capture-pane`` against a deadline; nothing sleeps a fixed time to synchronise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

DEADLINE = 30.0
NOTICE = 2.0  # the longest notice shown while these tests pause (tui/app.py)


def _binary() -> str:
    beside = Path(sys.executable).with_name("stackyard")
    found = str(beside) if beside.exists() else shutil.which("stackyard")
    assert found, "the stackyard console script is not installed (pip install -e . or '.[test]')"
    return found


class Tmux:
    """A private tmux server (its own socket and config) running one session."""

    def __init__(self, tmp_path: Path) -> None:
        self.cwd = tmp_path
        tmux = shutil.which("tmux")
        assert tmux, "tmux is not installed (.ci/run installs it)"
        self.tmux = tmux
        self.socket = f"stackyard-test-{uuid.uuid4().hex[:8]}"
        self.config = tmp_path / "tmux.conf"
        self.config.write_text("set -g remain-on-exit on\nset -g status off\n")
        self.env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"),
                    "TERM": "xterm-256color"}
        self.env.pop("NO_COLOR", None)
        self.env.pop("TMUX", None)
        self.name = "yard"

    def __call__(self, *args: str) -> str:
        result = subprocess.run([self.tmux, "-L", self.socket, "-f", str(self.config), *args],
                                capture_output=True, text=True, env=self.env, timeout=30,
                                cwd=self.cwd)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def start(self, *argv: str, size: tuple[int, int] = (100, 30)) -> None:
        self("new-session", "-d", "-s", self.name, "-x", str(size[0]), "-y", str(size[1]),
             _binary(), *argv)

    def screen(self, colours: bool = False) -> str:
        return self("capture-pane", "-p", *(["-e"] if colours else []), "-t", self.name)

    def settled(self) -> str:
        """The screen once two captures in a row agree (not caught halfway through a redraw)."""
        end = time.monotonic() + DEADLINE
        last = self.screen()
        while time.monotonic() < end:
            time.sleep(0.1)
            now = self.screen()
            if now == last:
                return now
            last = now
        return last

    def flags(self, *names: str) -> list[str]:
        fmt = " ".join(f"#{{{n}}}" for n in names)
        return self("display-message", "-p", "-t", self.name, fmt).split()

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", self.name, *keys)

    def wait(self, check: Callable[[str], bool], what: str) -> str:
        """Poll the screen until ``check`` holds; fail with the screen after the deadline."""
        end = time.monotonic() + DEADLINE
        screen = ""
        while time.monotonic() < end:
            screen = self.screen()
            if check(screen):
                return screen
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")

    def wait_dead(self) -> int:
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            dead, status = ([*self.flags("pane_dead", "pane_dead_status"), ""])[:2]
            if dead == "1":
                return int(status or 0)
            time.sleep(0.05)
        raise AssertionError(f"stackyard did not exit; the screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run([self.tmux, "-L", self.socket, "kill-server"], capture_output=True,
                       env=self.env, timeout=30)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(tmp_path)
    try:
        yield t
    finally:
        t.close()


def _up(screen: str) -> bool:
    return all(w in screen for w in ("Network", "Application", "Database", "req/s"))


def test_keys_reach_the_engine_and_q_exits_cleanly(tmux: Tmux) -> None:
    tmux.start("default", "--seed", "3")
    tmux.wait(_up, "the three panes")
    tmux.keys("Space")
    tmux.wait(lambda s: "paused" in s.splitlines()[0], "the paused header")
    tmux.keys("d")  # the Application pane has focus; its first container is selected
    tmux.wait(lambda s: "fault f1: kill_container on app-1" in s, "the fault in the event log")
    tmux.keys("?")
    tmux.wait(lambda s: "undo the last fault" in s, "the help")
    tmux.keys("Escape")
    tmux.wait(lambda s: "undo the last fault" not in s, "the help to close")
    dark = tmux.screen(colours=True)
    tmux.keys("t")
    end = time.monotonic() + DEADLINE
    while tmux.screen(colours=True) == dark and time.monotonic() < end:
        time.sleep(0.05)
    assert tmux.screen(colours=True) != dark, "t did not change the theme's colours"
    tmux.keys("q")
    assert tmux.wait_dead() == 0
    # (A dead pane always reports its cursor hidden; the shell test below checks the cursor.)
    assert tmux.flags("alternate_on", "mouse_any_flag") == ["0", "0"], "terminal not restored"
    assert "Traceback" not in tmux.screen()


def test_ctrl_c_from_a_shell_restores_the_terminal_at_80x24(tmux: Tmux) -> None:
    tmux("new-session", "-d", "-s", tmux.name, "-x", "80", "-y", "24", "sh")
    tmux.keys("stty -g > before; PS1='$ '", "Enter")
    tmux.keys(f"{_binary()}; echo stackyard-exit=$?", "Enter")
    screen = tmux.wait(_up, "the three panes")
    assert "db-1" in screen and "app-1" in screen and "edge-eu" in screen
    assert tmux.flags("alternate_on") == ["1"]
    tmux.keys("C-c")
    tmux.wait(lambda s: "stackyard-exit=0" in s, "the shell after a clean exit")
    assert tmux.flags("alternate_on", "mouse_any_flag", "cursor_flag") == ["0", "0", "1"]
    tmux.keys("stty -g | cmp -s - before && echo tty-same || echo tty-changed", "Enter")
    tmux.wait(lambda s: "tty-same" in s or "tty-changed" in s, "the tty comparison")
    assert "tty-same" in tmux.screen()


def test_lost_terminal_ends_the_process(tmux: Tmux) -> None:
    tmux.start()
    tmux.wait(_up, "the three panes")
    (pid,) = tmux.flags("pane_pid")
    tmux("kill-session", "-t", tmux.name)  # the pty closes: SIGHUP, then EOF/EIO on input
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(int(pid), 9)
    raise AssertionError("stackyard kept running after its terminal went away")


@pytest.mark.parametrize("redirect", ["2>err.log", ">out.log"])
def test_a_redirected_stream_does_not_take_the_app_with_it(tmux: Tmux, redirect: str) -> None:
    """Textual draws on stderr: with ``2>file`` the app must still be drawn on the terminal
    (not into the file), and with ``>file`` too."""
    tmux("new-session", "-d", "-s", tmux.name, "-x", "100", "-y", "30", "sh")
    tmux.keys(f"PS1='$ '; {_binary()} {redirect}; echo stackyard-exit=$?", "Enter")
    tmux.wait(_up, "the three panes on the terminal")
    tmux.keys("q")
    tmux.wait(lambda s: "stackyard-exit=0" in s, "the shell after a clean exit")
    written = (tmux.cwd / redirect.lstrip("2>")).read_text()
    assert "\x1b" not in written and "Network" not in written, written[:200]


# -- nothing cut mid-word at 80x24 -----------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
SEPARATORS = "│┃║╭╮╰╯┐┓┘┛┌┏└┗"
NUMBERISH = re.compile(r"\d")


def vocabulary() -> set[str]:
    """Every word the program's own sources and data could put on screen, whole."""
    words: set[str] = set()
    files = [*ROOT.glob("core/**/*.py"), *ROOT.glob("core/**/*.toml"), *ROOT.glob("tui/**/*.py"),
             *ROOT.glob("cli/**/*.py")]
    for path in files:
        for token in re.findall(r"[A-Za-z][\w'-]*", path.read_text()):
            for w in {token, token.replace("_", "-"), *token.split("_")}:
                words.add(w.lower().strip("'-"))
    return words


def _token(word: str) -> str:
    return word.strip(".,;:()[]{}\"'“”▶·—?!*=<>─━●◐✖○^%-▁▂▃▄▅▆▇█")  # █: scrollbars


def _whole(token: str, vocab: set[str]) -> bool:
    if not any(ch.isalnum() for ch in token) or token.endswith("…") or NUMBERISH.search(token):
        return True
    if set(token) <= set("▁▂▃▄▅▆▇█▎▍▌▋▊▉ "):
        return True
    return all(part.lower() in vocab for part in re.split(r"[/+]", token) if part)


KEY_WORDS = {"esc", "ctrl", "shift", "tab", "pgup", "pgdn", "enter", "space", "home", "end"}
"""How the footer and help write keys (Textual's key display)."""


def box_only(screen: str) -> tuple[str, tuple[int, int]]:
    """The rows of the help box (a modal over the main screen) and its inner columns."""
    lines = screen.splitlines()
    top = next(i for i, line in enumerate(lines) if "╭" in line)
    bottom = next(i for i, line in enumerate(lines) if "╰" in line)
    return "\n".join(lines[top + 1: bottom]), (lines[top].index("╭") + 1, lines[top].index("╮"))


def cut_words(screen: str, inside: tuple[int, int] | None, vocab: set[str]) -> list[str]:
    """Cells of ``screen`` with a word that is not whole: not a word of the program's sources
    and data, a number, an id or a text ending in an ellipsis (``client-e``, ``confl``,
    ``qui``); ``inside`` limits the check to a column range (a modal box)."""
    bad: list[str] = []
    lines = screen.splitlines()
    if lines and inside is None and "▏" in lines[-1]:  # a footer edge drawn over a label
        bad.append(lines[-1])
    for line in lines:
        if inside is not None:
            line = line[inside[0]: inside[1]]
        for cell in re.split(f"[{SEPARATORS}]", line):
            if any(not _whole(_token(word), vocab | KEY_WORDS) for word in cell.split()):
                bad.append(cell)
    return bad


def _paused(tmux: Tmux) -> None:
    """Wait for the pause, and for every notice to go (a notice covers what is under it; an
    earlier one, a fault's, can outlast the pause's): paused, the screen changes only as
    notices leave, so it is clear once it stays the same for longer than a notice lasts."""
    tmux.wait(lambda s: "paused" in s.splitlines()[0] and "pause / resume" not in s,
              "the pause, without its notice")
    end = time.monotonic() + DEADLINE
    last, since = tmux.screen(), time.monotonic()
    while time.monotonic() - since < NOTICE + 0.5:
        assert time.monotonic() < end, f"the paused screen kept changing:\n{last}"
        time.sleep(0.1)
        now = tmux.screen()
        if now != last:
            last, since = now, time.monotonic()


def test_nothing_is_cut_mid_word_at_80x24(tmux: Tmux) -> None:
    vocab = vocabulary()
    tmux.start("default", "--seed", "3", size=(80, 24))
    tmux.wait(_up, "the three panes")
    tmux.keys("d")  # events with long whys; a container in back-off
    tmux.wait(lambda s: "kill_container" in s, "the fault")
    tmux.keys("S")
    tmux.wait(lambda s: "traffic_spike" in s, "the spike")
    tmux.keys("Space")  # paused: every capture is a whole frame, not one caught mid-redraw
    _paused(tmux)
    screens: dict[str, str] = {"main": tmux.settled()}
    tmux.keys("Tab", "Tab", "Up", "Up")  # the event log: a selected event shows whole
    tmux.wait(lambda s: "newer (end: newest)" in s, "the scrolled log")
    screens["event log"] = tmux.settled()
    tmux.keys("End", "Right")
    tmux.keys("?")
    tmux.wait(lambda s: "undo the last fault" in s, "the help")
    helps = [tmux.settled()]
    for _ in range(8):
        tmux.keys("PageDown")
        helps.append(tmux.settled())
    tmux.keys("Escape")
    tmux.wait(lambda s: "╭" not in s, "the help to close")
    tmux.keys("Enter")
    tmux.wait(lambda s: "keys:" in s, "a node's detail")
    screens["detail"] = tmux.settled()
    tmux.keys("Escape")
    tmux.wait(_up, "the main screen")
    tmux.keys("s")
    tmux.wait(lambda s: "SQL console on" in s, "the SQL console")
    tmux.keys("SELECT count(*) AS rows FROM writes", "Enter")
    tmux.wait(lambda s: "row in" in s, "the query's result")
    screens["sql"] = tmux.settled()
    tmux.keys("Escape")
    tmux.wait(_up, "the main screen")
    tmux.keys("q")
    assert tmux.wait_dead() == 0
    problems = {name: cut_words(screen, None, vocab) for name, screen in screens.items()}
    problems["help"] = [c for screen in helps for c in cut_words(*box_only(screen), vocab)]
    assert not any(problems.values()), problems


def test_a_lesson_at_80x24_cuts_nothing(tmux: Tmux) -> None:
    vocab = vocabulary()
    tmux.start("learn", "failover", size=(80, 24))
    screens = []
    tmux.wait(lambda s: "Lesson step 1 of 4" in s, "the lesson pane")
    for key, shows in (("l", "Lesson step 2 of 4"), ("L", "─Events")):
        tmux.keys("Space")
        _paused(tmux)
        screens.append(tmux.settled())
        tmux.keys("Space", key)
        tmux.wait(lambda s, shows=shows: shows in s, shows)
    tmux.keys("Space")
    _paused(tmux)
    screens.append(tmux.settled())
    tmux.keys("q")
    assert tmux.wait_dead() == 0
    problems = [c for s in screens for c in cut_words(s, None, vocab)]
    assert not problems, problems


def test_the_event_log_scrolls_back_to_a_ten_minute_runs_first_event(tmux: Tmux) -> None:
    tmux.start("default", "--seed", "3", "--speed", "100", size=(80, 24))
    first = "0:00.0 · app-1 running"
    tmux.wait(_up, "the three panes")
    tmux.keys("S", "d")  # scaling, VM boots, a crash: plenty of events
    end = time.monotonic() + 120
    while not re.search(r"\b(1\d|[2-9]\d):\d\d\.\d", tmux.screen().splitlines()[0]):
        assert time.monotonic() < end, f"no 10 minutes simulated in 120 s:\n{tmux.screen()}"
        time.sleep(0.2)
    tmux.keys("Space")
    screen = tmux.wait(lambda s: "paused" in s.splitlines()[0], "the pause")
    assert first not in screen
    tmux.keys("Tab", "Tab", "PageUp", "PageUp", "Home")
    screen = tmux.wait(lambda s: first in s, "the run's first event")
    assert "newer (end: newest)" in screen
    tmux.keys("End")
    tmux.wait(lambda s: first not in s, "the newest events again")
    tmux.keys("q")
    assert tmux.wait_dead() == 0
