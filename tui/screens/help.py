"""Every key and action, generated from the run's catalogue."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from stackyard.core.protocol import ActionInfo
from stackyard.tui.keys import bindings
from stackyard.tui.legend import HEADER, PANES, STATES
from stackyard.tui.screens.closing import Closable
from stackyard.tui.widgets.footer import KeyFooter

if TYPE_CHECKING:
    from stackyard.tui.app import StackyardApp

VIEW = [
    ("tab shift+tab", "next / previous pane (← → too)"),
    ("↑ ↓  j k", "move between nodes (home end pgup pgdn)"),
    ("enter", "the selected node's detail and charts"),
    ("/", "filter events (enter applies, escape clears)"),
    ("tab to Events", "scroll the event log back (↑↓ PgUp PgDn Home End, wheel)"),
    ("s", "read-only SQL console on a database node"),
    ("t  i", "next theme (ctrl+p: all) / screen refresh rate (--fps)"),
    ("L", "in a lesson (stackyard learn): the lesson pane or the event log"),
    ("ctrl+p", "command palette: every action"),
    ("?", "this help"),
    ("q  ctrl+c", "quit"),
]
"""The viewer's own keys; everything else comes from the run's catalogue."""
KEY_W = 14


def _line(key: str, text: str) -> Content:
    return Content.assemble((f"  {key:<{KEY_W - 1}} ", "bold"), text)


def help_text(catalogue: tuple[ActionInfo, ...]) -> Content:
    """Every key and every action of ``catalogue``, by what it acts on."""
    lines: list[Content] = [Content.styled("Keys", "bold $accent")]
    lines += [_line(k, t) for k, t in VIEW]
    bound = bindings(catalogue)
    sections = (
        ("Driving and controls",
         [b for b in bound if b.action.group != "fault"]),
        ("Faults on the selected node",
         [b for b in bound if b.action.group == "fault" and b.key.scope == "node"]),
        ("Global faults",
         [b for b in bound if b.action.group == "fault" and b.key.scope != "node"]),
    )
    for title, keyed in sections:
        if not keyed:
            continue
        lines += [Content(""), Content.styled(title, "bold $accent")]
        by_key: dict[tuple[str, str], list[ActionInfo]] = {}
        for b in keyed:
            by_key.setdefault((b.key.key, b.label), []).append(b.action)
        for (key, label), acts in by_key.items():
            if title.startswith("Faults"):
                where = ", ".join(f"{'/'.join(a.targets)} ({a.name})" for a in acts)
                text = f"{label}: {where}"
            elif acts[0].phrase and "{" not in acts[0].phrase:
                text = acts[0].phrase
            else:
                text = f"{label}: {acts[0].description}"
            lines.append(_line(key, text))
    spare = [a for a in catalogue if not a.keys]
    if spare:
        lines += [Content(""), Content.styled("In the command palette only (ctrl+p)",
                                              "bold $accent")]
        lines += [_line(a.name, a.description) for a in spare]
    lines += legend_lines()
    lines.append(Content(""))
    lines.append(Content.styled("A fault key acts on the node selected in the focused pane; "
                                "the footer shows the keys that fit it. Uppercase keys are "
                                "global. The mouse works too: click a node, click it again "
                                "for its detail.", "$text-muted"))
    return Content("\n").join(lines)


def legend_lines() -> list[Content]:
    """What the header's and each pane's figures mean."""
    lines = [Content(""), Content.styled("The header", "bold $accent")]
    lines += [_line(k, t) for k, t in HEADER]
    for pane, entries in PANES.items():
        lines += [Content(""), Content.styled(f"The {pane} pane", "bold $accent")]
        lines += [_line(k, t) for k, t in entries]
    lines += [Content(""), Content.styled("States", "bold $accent")]
    lines += [_line(k, t) for k, t in STATES]
    lines.append(_line("status line", "the selected node's state in plain words"))
    lines.append(_line("Events", "tab to it: ↑↓ PgUp PgDn Home End scroll back, the selected "
                                 "event shows in full; enter opens its node"))
    return lines


class HelpScreen(Closable, ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "close"),
    ]

    def compose(self) -> ComposeResult:
        app: StackyardApp = self.app  # type: ignore[assignment]
        with VerticalScroll(id="help"):
            yield Static(help_text(app.session.catalogue), id="help-text")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#help").border_title = "Help (escape closes)"
        self.query_one("#help").focus()
