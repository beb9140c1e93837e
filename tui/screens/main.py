"""The main screen: header KPIs, the three tier panes, the event log and the footer."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Input, Static

from stackyard.core.protocol import AnyNode, Snapshot
from stackyard.core.replay import TimelineSource
from stackyard.tui.widgets.event_log import EventLog
from stackyard.tui.widgets.footer import KeyFooter
from stackyard.tui.widgets.header import KpiHeader
from stackyard.tui.widgets.lesson_pane import LessonPane
from stackyard.tui.widgets.scrubber import Scrubber
from stackyard.tui.widgets.status_line import StatusLine
from stackyard.tui.widgets.tier_pane import TierPane
from stackyard.tui.widgets.trends import Trends

if TYPE_CHECKING:
    from stackyard.tui.app import StackyardApp

MIN_WIDTH = 60
MIN_HEIGHT = 16
TIERS = (("network", "Network", "pane-network"), ("app", "Application", "pane-app"),
         ("database", "Database", "pane-database"))


class MainScreen(Screen[None]):
    """Three live panes; the selected node of the focused pane is what fault keys act on."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab", "app.focus_next", "next pane", show=False),
        Binding("shift+tab", "app.focus_previous", "previous pane", show=False),
        Binding("right", "pane(1)", "next pane", show=False),
        Binding("left", "pane(-1)", "previous pane", show=False),
        Binding("slash", "filter", "filter", show=False),
        Binding("escape", "clear_filter", "clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="main")
        self._last_seq = -1

    @property
    def yard(self) -> StackyardApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield KpiHeader(id="header")
        if isinstance(self.yard.session, TimelineSource):
            yield Scrubber(id="scrubber")
        with Horizontal(id="panes"):
            for tier, title, pane_id in TIERS:
                yield TierPane(tier, title, id=pane_id)
        yield StatusLine(id="status")
        yield Trends(id="trends")
        yield Input(placeholder="filter events: words to match, enter to apply, escape to clear",
                    id="filter")
        yield LessonPane(self.yard.lesson, id="lesson")
        yield EventLog(self.yard.events, id="events")
        yield Static(id="too-small")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#pane-app", TierPane).focus()
        self.set_class(self.yard.lesson is not None, "-lesson")
        self.show(self.yard.session.latest)

    def lesson_changed(self) -> None:
        self.query_one(LessonPane).update_run()

    def toggle_lesson(self) -> None:
        """L: the lesson or the event log in the space they share."""
        self.toggle_class("-log")

    def on_screen_resume(self) -> None:
        self.show(self.yard.session.latest)

    def on_resize(self) -> None:
        w, h = self.size
        small = w < MIN_WIDTH or h < MIN_HEIGHT
        self.set_class(small, "-too-small")
        self.set_class(h >= 36, "-tall")
        if small:
            self.query_one("#too-small", Static).update(
                f"Terminal too small: {w}x{h}.\nstackyard needs at least {MIN_WIDTH}x{MIN_HEIGHT}"
                f" (80x24 shows everything).\nEnlarge the window, or press q to quit.")

    # -- data -------------------------------------------------------------------------------

    def show(self, snap: Snapshot | None) -> None:
        """Redraw from ``snap`` (the app calls this only while this screen is active)."""
        header = self.query_one(KpiHeader)
        header.show(snap, self.yard.session.status, self.yard.refresh_note)
        session = self.yard.session
        if isinstance(session, TimelineSource):
            self.query_one(Scrubber).show(session.timeline)
        if snap is None or snap.seq == self._last_seq:
            return
        self._last_seq = snap.seq
        faulted: dict[str, int] = {}
        for f in snap.faults:
            if f.target:
                faulted[f.target] = faulted.get(f.target, 0) + 1
        for tier, _, pane_id in TIERS:
            nodes = [n for n in snap.nodes if n.tier == tier]
            self.query_one(f"#{pane_id}", TierPane).update_nodes(nodes, snap, faulted)
        self.query_one(EventLog).catch_up()
        self.query_one(Trends).show(snap)
        self.query_one(StatusLine).show(self.node, snap)

    @property
    def node(self) -> AnyNode | None:
        """The selected node of the focused pane (or of the last focused one)."""
        focused = self.focused
        if isinstance(focused, TierPane):
            return focused.node
        pane = self.yard.last_pane
        if pane is not None:
            return pane.node
        return None

    def on_tier_pane_selected(self, message: TierPane.Selected) -> None:
        if message.pane.has_focus or self.yard.last_pane is None:
            self.yard.last_pane = message.pane
            self.yard.update_keys()
        self.query_one(StatusLine).show(self.node, self.yard.session.latest)

    def on_tier_pane_opened(self, message: TierPane.Opened) -> None:
        if self.is_current:  # else a key in the same burst already put a screen on top
            self.yard.open_detail(message.node.id, message.node.kind)

    def on_event_log_opened(self, message: EventLog.Opened) -> None:
        snap = self.yard.session.latest
        node = snap.find(message.event.component) if snap is not None else None
        if node is not None:
            self.yard.open_detail(node.id, node.kind)
        else:
            self.notify(f"{message.event.component} is not a node", timeout=2)

    def select_node(self, node_id: str, kind: str = "") -> bool:
        """Focus the pane holding ``node_id`` (of ``kind``, where ids are shared); select it."""
        for pane in self.query(TierPane):
            if pane.select_id(node_id, kind):
                pane.focus()
                return True
        return False

    # -- actions ----------------------------------------------------------------------------

    def action_pane(self, delta: int) -> None:
        panes = list(self.query(TierPane))
        current = self.focused if isinstance(self.focused, TierPane) else panes[0]
        panes[(panes.index(current) + delta) % len(panes)].focus()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("-shown")
        box.value = self.query_one(EventLog).filter
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("-shown") or self.query_one(EventLog).filter:
            box.value = ""
            self.query_one(EventLog).set_filter("")
            box.remove_class("-shown")
            (self.yard.last_pane or self.query_one("#pane-app", TierPane)).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.query_one(EventLog).set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.query_one(EventLog).set_filter(event.value)
            event.input.remove_class("-shown")
            (self.yard.last_pane or self.query_one("#pane-app", TierPane)).focus()
