"""What a user sees and does, for the Pilot tests."""

from __future__ import annotations

from msgspec.structs import replace
from textual.pilot import Pilot

from stackyard.core.protocol import Command
from stackyard.core.session import LocalSession, Reply
from stackyard.tui.app import StackyardApp
from stackyard.tui.screens.main import MainScreen
from stackyard.tui.widgets.tier_pane import TierPane


def screen_text(app: StackyardApp) -> str:
    """The characters on the terminal now, one line per row."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strip.text for strip in strips)


def session(app: StackyardApp) -> LocalSession:
    s = app.session
    assert isinstance(s, LocalSession)
    return s


def last_sent(app: StackyardApp) -> tuple[Command, Reply]:
    """The last command sent and its reply; the command without its origin, which must say
    where it came from (a key or the palette)."""
    sent = session(app).sent
    assert sent, "no command reached the engine"
    command, reply = sent[-1]
    assert command.origin in ("key", "palette"), command
    return replace(command, origin=""), reply


def pane(app: StackyardApp, tier: str) -> TierPane:
    return app.screen.query_one(f"#pane-{tier}", TierPane)


def row_of(app: StackyardApp, node_id: str) -> str:
    """The screen line that shows ``node_id`` in a pane (the first one if several do)."""
    for line in screen_text(app).splitlines():
        for cell in line.split("│"):
            if cell[1:].startswith(node_id + " ") or cell[1:].startswith(node_id[:8] + " "):
                return cell
    raise AssertionError(f"{node_id} is not on the screen:\n{screen_text(app)}")


async def select(pilot: Pilot[int], node_id: str, kind: str = "") -> None:
    """Select ``node_id`` the way a user would: focus its pane, then arrow down to it."""
    app = pilot.app
    assert isinstance(app, StackyardApp)
    screen = app.screen
    assert isinstance(screen, MainScreen)
    for tier in ("network", "app", "database"):
        p = pane(app, tier)
        index = next((i for i, n in enumerate(p.nodes)
                      if n.id == node_id and (not kind or n.kind == kind)), None)
        if index is None:
            continue
        while not p.has_focus:
            await pilot.press("tab")
        await pilot.press("home")
        for _ in range(index):
            await pilot.press("j")
        assert p.node is not None and p.node.id == node_id
        return
    raise AssertionError(f"no node {node_id!r} ({kind or 'any kind'}) in any pane")


async def advance(pilot: Pilot[int], seconds: float) -> None:
    """Let ``seconds`` of simulated time pass (the driver stays paused) and redraw."""
    app = pilot.app
    assert isinstance(app, StackyardApp)
    session(app).advance(seconds)
    await pilot.pause()
