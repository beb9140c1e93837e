"""Output for slow links: only what changed is repainted, written tight, at a paced rate.

The app runs under ``run_test()``; its screen updates are captured where Textual hands them to
the terminal (``App._display``) and played into a small terminal emulator, so what a real
terminal would show is compared cell by cell.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from rich.console import Console
from textual._compositor import ChopsUpdate, LayoutUpdate
from textual.content import Content

from stackyard.tui.app import StackyardApp
from stackyard.tui.output import TightChopsUpdate, TightLayoutUpdate
from stackyard.tui.pacing import FPS_MIN, RECOVER_AFTER, Pacer, check_fps, next_step
from stackyard.tui.widgets.header import KpiHeader
from stackyard.tui.widgets.lines import changed_span
from tests.tui.conftest import AppFactory
from tests.tui.helpers import advance, screen_text, session

SIZE = (80, 24)
_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


class Terminal:
    """Just enough of a terminal for Textual's updates: cursor moves, SGR, text."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.cells: list[list[tuple[str, str]]] = [[(" ", "")] * width for _ in range(height)]
        self.x = self.y = 0
        self.sgr = ""

    def feed(self, data: str) -> None:
        i = 0
        while i < len(data):
            m = _CSI.match(data, i)
            if m is not None:
                args, op = m.groups()
                if op == "H":
                    row, col = ([*args.split(";"), "1", "1"])[:2] if args else ("1", "1")
                    self.y, self.x = int(row or 1) - 1, int(col or 1) - 1
                elif op == "m":
                    # Both writers start a style afresh: "0;codes", or "codes" after a reset.
                    self.sgr = "" if args in ("", "0") else args.removeprefix("0;")
                i = m.end()
                continue
            ch = data[i]
            i += 1
            if ch == "\n":
                self.x, self.y = 0, self.y + 1
            elif ch == "\r":
                self.x = 0
            elif 0 <= self.y < self.height and 0 <= self.x < self.width:
                self.cells[self.y][self.x] = (ch, self.sgr)
                self.x += 1


def _written(app: StackyardApp) -> list[Any]:
    """The screen updates ``app`` hands its driver from now on (as Textual made them)."""
    written: list[Any] = []
    real = app._display

    def spy(screen: Any, renderable: Any) -> None:
        if isinstance(renderable, ChopsUpdate | LayoutUpdate):
            written.append(renderable)
        real(screen, renderable)

    app._display = spy  # type: ignore[method-assign]
    return written


async def _updates(app: StackyardApp, steps: list[str]) -> list[Any]:
    """The screen updates the app writes while ``steps`` happen ('+' advances a second, any
    other string is keys)."""
    captured = _written(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.screen.refresh()  # a whole frame first, for the terminals to start from
        await pilot.pause()
        for step in steps:
            if step == "+":
                await advance(pilot, 1.0)
            else:
                await pilot.press(*step.split())
            await pilot.pause()
    return captured


async def test_tight_updates_leave_the_terminal_exactly_as_textuals_own(
        make_app: AppFactory) -> None:
    app = make_app()
    updates = await _updates(app, ["+", "+", "h", "+", "j", "+", "tab", "+", "u", "+", "+"])
    assert any(type(u) is ChopsUpdate for u in updates)
    console = Console(color_system="256", force_terminal=True, width=SIZE[0])
    textual, tight = Terminal(*SIZE), Terminal(*SIZE)
    full = [u for u in updates if isinstance(u, LayoutUpdate)]
    assert full, "no whole frame to start from"
    start = updates.index(full[0])
    textual_bytes = tight_bytes = 0
    for update in updates[start:]:
        ours = (TightChopsUpdate(update.chops, update.spans, update.chop_ends)
                if isinstance(update, ChopsUpdate)
                else TightLayoutUpdate(update.strips, update.region))
        theirs_text, ours_text = update.render_segments(console), ours.render_segments(console)
        textual.feed(theirs_text)
        tight.feed(ours_text)
        textual_bytes += len(theirs_text.encode())
        tight_bytes += len(ours_text.encode())
        assert tight.cells == textual.cells
    assert tight_bytes < textual_bytes


async def test_a_snapshot_that_changes_nothing_shown_writes_nothing(make_app: AppFactory) -> None:
    app = make_app()
    written = _written(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        before = screen_text(app)
        frames, writes = app.frames, len(written)
        for _ in range(3):
            session(app).driver.publish()  # a new snapshot of the same moment
            await pilot.pause()
        assert app.frames > frames, "the snapshots were drawn"
        assert len(written) == writes, "yet nothing shown changed, so nothing was written"
        assert screen_text(app) == before
        # A second later, the figures that moved are rewritten: a few cells, not the screen.
        await advance(pilot, 1.0)
        await pilot.pause()
        cells = sum(x2 - x1 for u in written[writes:] if isinstance(u, ChopsUpdate)
                    for _, x1, x2 in u.spans)
        assert 0 < cells < SIZE[0] * SIZE[1] // 4


@pytest.mark.parametrize(
    ("old", "new", "span"),
    [
        ("abc 12 req/s", "abc 12 req/s", None),
        ("abc 12 req/s", "abc 13 req/s", (5, 6)),
        ("abc 12 req/s", "abc 9 req/s", (4, 12)),
        ("lag 0ms", "lag 10ms", (4, 8)),
        ("x", "", (0, 1)),
    ],
)
def test_a_changed_line_repaints_from_its_first_to_its_last_changed_cell(
        old: str, new: str, span: tuple[int, int] | None) -> None:
    assert changed_span(Content(old), Content(new), 40) == span


def test_a_style_change_alone_repaints_the_restyled_cells() -> None:
    old = Content.assemble("app-1 ", ("running", "$success"), " 12/s")
    new = Content.assemble("app-1 ", ("running", "$error"), " 12/s")
    assert changed_span(old, new, 40) == (6, 13)
    assert changed_span(None, new, 40) == (0, 40)


def test_the_pacer_backs_off_while_output_waits_and_recovers_when_it_drains() -> None:
    pacer = Pacer(10.0)
    assert pacer.wait(100.0) == 0
    assert not pacer.drawn(100.0, pending=0)
    assert pacer.wait(100.05) == pytest.approx(0.05)
    rates = []
    for _ in range(6):
        pacer.drawn(101.0, pending=3)
        rates.append(pacer.rate)
    assert rates == [5.0, 2.5, 1.25, FPS_MIN, FPS_MIN, FPS_MIN]
    assert pacer.backed_off
    for _ in range(RECOVER_AFTER - 1):
        assert not pacer.drawn(102.0, pending=0)
    assert pacer.drawn(102.0, pending=0)
    assert pacer.rate == 2.0
    for _ in range(3 * RECOVER_AFTER):
        pacer.drawn(103.0, pending=0)
    assert pacer.rate == 10.0 and not pacer.backed_off
    pacer.drawn(104.0, pending=1)
    pacer.set_cap(2.0)
    assert (pacer.cap, pacer.rate) == (2.0, 2.0), "a cap the user sets is in force at once"


def test_refresh_caps_are_bounded() -> None:
    for bad in (0.0, 0.5, 31.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="between 1 and 30"):
            check_fps(bad)
    with pytest.raises(ValueError):
        Pacer(0.0)
    assert [next_step(c) for c in (1.0, 2.0, 5.0, 10.0, 20.0, 30.0)] == [2, 5, 10, 20, 1, 1]


async def test_the_refresh_key_and_the_palette_cycle_the_cap(make_app: AppFactory) -> None:
    app = make_app(fps=5.0)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.pacer.cap == 5.0
        await pilot.press("i")
        assert app.pacer.cap == 10.0
        await pilot.press("i", "i")
        assert app.pacer.cap == 1.0
        entry = next(e for e in app.palette_entries() if e.text.startswith("screen refresh"))
        assert "now 1 fps" in entry.text
        entry.run()
        assert app.pacer.cap == 2.0


async def test_a_terminal_that_does_not_drain_lowers_the_rate_and_the_header_says_so(
        make_app: AppFactory) -> None:
    app = make_app()
    backlog = [4]
    # Stands in for Textual's writer queue, which only a real terminal fills.
    app.output_backlog = lambda: backlog[0]  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        header = app.screen.query_one(KpiHeader)
        for _ in range(2):
            await pilot.press("full_stop")  # a step: the user's command draws at once
        await pilot.pause()
        assert app.pacer.rate == 2.5
        assert "slow terminal: 2.5 fps" in header.render().plain
        backlog[0] = 0
        for _ in range(3 * RECOVER_AFTER):
            await pilot.press("full_stop")
        await pilot.pause()
        assert app.pacer.rate == app.pacer.cap
        assert "slow terminal" not in header.render().plain
        frames = app.frames
        # A rate never holds back the user's own commands.
        await pilot.press("h")
        await pilot.pause()
        assert app.frames > frames
        assert "faults 1" in screen_text(app)
