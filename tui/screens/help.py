"""Every key, generated from the bindings and the fault key table."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from stackyard.core.session import ActionInfo
from stackyard.tui.keys import GLOBAL_KEYS, NODE_KEYS, key_of

if TYPE_CHECKING:
    from stackyard.tui.app import StackyardApp

GENERAL = [
    ("tab shift+tab", "next / previous pane (← → too)"),
    ("↑ ↓  j k", "move between nodes (home end pgup pgdn)"),
    ("enter", "the selected node's detail and charts"),
    ("space", "pause / resume"),
    ("+  -", "faster / slower (0.25x to 100x)"),
    (".", "step: pause, advance one simulated second"),
    ("u", "undo the last fault"),
    ("x", "clear every fault"),
    ("a  A", "next balancer algorithm / autoscaler on-off"),
    ("]  [", "one replica more / fewer"),
    ("b  v  M", "backup / switchover (to a selected replica) / mode"),
    ("/", "filter events (enter applies, escape clears)"),
    ("s", "read-only SQL console on a database node"),
    ("t", "next theme (ctrl+p, Theme: all of them)"),
    ("ctrl+p", "command palette: every action"),
    ("?", "this help"),
    ("q  ctrl+c", "quit"),
]
KEY_W = 14


def help_text(catalogue: tuple[ActionInfo, ...]) -> Content:
    lines: list[Content] = [Content.styled("Keys", "bold $accent")]
    for key, text in GENERAL:
        lines.append(Content.assemble((f"  {key:<{KEY_W}}", "bold"), text))
    lines.append(Content(""))
    lines.append(Content.styled("Faults on the selected node", "bold $accent"))
    names = {a.name: a for a in catalogue}
    for key, (label, kinds) in NODE_KEYS.items():
        known = [names[k] for k in kinds.split() if k in names]
        if not known:
            continue
        where = ", ".join(f"{a.target.rstrip('?')} ({a.name})" for a in known)
        lines.append(Content.assemble((f"  {key:<{KEY_W}}", "bold"), f"{label}: {where}"))
    lines.append(Content(""))
    lines.append(Content.styled("Global faults", "bold $accent"))
    for key, (label, kind) in GLOBAL_KEYS.items():
        if kind in names:
            lines.append(Content.assemble((f"  {key:<{KEY_W}}", "bold"),
                                          f"{label}: {names[kind].description}"))
    spare = [a for a in catalogue if a.fault and not key_of(a.name)
             and a.name not in {k for _, k in GLOBAL_KEYS.values()}]
    if spare:
        lines.append(Content(""))
        lines.append(Content.styled("In the command palette only (ctrl+p)", "bold $accent"))
        for a in spare:
            lines.append(Content.assemble((f"  {a.name:<{KEY_W}}", "bold"), a.description))
    lines.append(Content(""))
    lines.append(Content.styled("A fault key acts on the node selected in the focused pane; "
                                "the footer shows the keys that fit it. Uppercase keys are "
                                "global. The mouse works too: click a node, click it again "
                                "for its detail.", "$text-muted"))
    return Content("\n").join(lines)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "app.pop_screen", "close"),
    ]

    def compose(self) -> ComposeResult:
        app: StackyardApp = self.app  # type: ignore[assignment]
        with VerticalScroll(id="help"):
            yield Static(help_text(app.session.catalogue), id="help-text")

    def on_mount(self) -> None:
        self.query_one("#help").border_title = "Help (escape closes)"
        self.query_one("#help").focus()
