"""A node's detail: identity, state, active faults, the keys that fit it, and metric charts."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Label, Sparkline, Static

from stackyard.core.protocol import AnyNode, DbNode, Snapshot
from stackyard.tui.explain import explain
from stackyard.tui.format import GLYPHS, STATE_STYLE, state_class
from stackyard.tui.keys import node_keys
from stackyard.tui.legend import field
from stackyard.tui.screens.closing import Closable
from stackyard.tui.widgets.footer import KeyFooter
from stackyard.tui.widgets.header import KpiHeader

if TYPE_CHECKING:
    from stackyard.tui.app import StackyardApp


def _value(name: str, value: float) -> str:
    """A metric's value with its unit (see :mod:`stackyard.tui.legend`)."""
    if not math.isfinite(value):
        return "-"
    return field(name).show(value)


class Chart(Horizontal):
    """One metric: its name, a sparkline of its history, and its current value."""

    def __init__(self, name: str) -> None:
        super().__init__(classes="chart")
        self.metric = name

    def compose(self) -> ComposeResult:
        yield Label(field(self.metric).label, classes="chart-name")
        yield Sparkline([], classes="chart-line")
        yield Label("", classes="chart-value")

    def show(self, values: list[float]) -> None:
        self.query_one(Sparkline).data = values
        lo, hi = (min(values), max(values)) if values else (0.0, 0.0)
        now = values[-1] if values else 0.0
        name = self.metric
        self.query_one(".chart-value", Label).update(Content.assemble(
            _value(name, now), "\n", (f"{_value(name, lo)}–{_value(name, hi)}",
                                      "$text-muted")))


class DetailScreen(Closable, Screen[None]):
    """Everything about one node; fault keys act on it; escape goes back."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter,backspace", "close", "back"),
    ]

    def __init__(self, node_id: str, kind: str = "") -> None:
        super().__init__()
        self.node_id = node_id
        self.kind = kind
        self.node: AnyNode | None = None
        self._metrics: tuple[str, ...] = ()
        self._last_seq = -1

    @property
    def yard(self) -> StackyardApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield KpiHeader(id="header")
        yield Static(id="detail-head")
        yield VerticalScroll(id="charts")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.show(self.yard.session.latest)

    def show(self, snap: Snapshot | None) -> None:
        self.query_one(KpiHeader).show(snap, self.yard.session.status, self.yard.refresh_note)
        if snap is None or snap.seq == self._last_seq:
            return
        self._last_seq = snap.seq
        node = next((n for n in snap.nodes
                     if n.id == self.node_id and (not self.kind or n.kind == self.kind)), None)
        self.node = node
        self.query_one("#detail-head", Static).update(self._head(node, snap))
        if node is None:
            return
        metrics = tuple(m for m in node.metrics() if m not in node.CAPACITY)
        charts = self.query_one("#charts", VerticalScroll)
        if metrics != self._metrics:
            self._metrics = metrics
            charts.remove_children()
            charts.mount_all([Chart(m) for m in metrics])
            self.call_after_refresh(self._fill, node)
            return
        self._fill(node)

    def _fill(self, node: AnyNode) -> None:
        series = self.yard.history.series(node.id, node.kind)
        for chart in self.query(Chart):
            chart.show(list(series.get(chart.metric, ())))

    def _head(self, node: AnyNode | None, snap: Snapshot) -> Content:
        if node is None:
            return Content.styled(f"{self.node_id} is gone (terminated or removed); "
                                  "escape to go back", "bold $warning")
        cls = state_class(node.state)
        lines = [Content.assemble((f"{node.id}", "bold $accent"),
                                  f"  {node.kind} in the {node.tier} tier  ",
                                  (f"{GLYPHS[cls]} {node.state}", STATE_STYLE[cls]),
                                  (f"  on {node.parent}" if node.parent else "", "$text-muted")),
                 Content(explain(node, snap))]
        faults = [f for f in snap.faults if f.target == node.id]
        if faults:
            text = ", ".join(f"{f.id} {f.kind}" for f in faults)
            lines.append(Content.styled(f"active faults: {text} (u undoes the last)",
                                        "bold $error"))
        static = [f"{field(k).label} {_value(k, v)}" for k, v in node.metrics().items()
                  if k in node.CAPACITY]
        if static:
            lines.append(Content.styled("  ".join(static), "$text-muted"))
        keys = node_keys(self.yard.session.catalogue, node)
        if keys:
            lines.append(Content.assemble(
                ("keys: ", "$text-muted"),
                *[(f"{k.key.key} {k.label}  ", "") for k in keys]))
        notes = [f"region {node.region}"] if node.region else []
        if isinstance(node, DbNode) and node.partition:
            cut = "its peers" if node.partition == "cluster" else "the application and its peers"
            notes.append(f"partitioned from {cut}")
        if notes:
            lines.append(Content.styled("  ".join(notes), "$text-muted"))
        return Content("\n").join(lines)
