"""A tier pane: a summary of the tier and one selectable line per node."""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive

from stackyard.core.protocol import AnyNode, Snapshot
from stackyard.tui.widgets.lines import LineWidget
from stackyard.tui.widgets.rows import columns, node_row, summary_lines

APP_ORDER = {"container": 0, "vm": 1, "host": 2}


def node_key(node: AnyNode) -> str:
    """A node's identity in a pane: ids alone are not unique (edge-eu is an edge and a link)."""
    return f"{node.kind}:{node.id}"


class TierPane(LineWidget, can_focus=True):
    """The nodes of one tier; arrows or j/k move the selection, enter opens the node."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("down,j", "move(1)", "next", show=False),
        Binding("up,k", "move(-1)", "previous", show=False),
        Binding("home", "move_to(0)", "first", show=False),
        Binding("end", "move_to(-1)", "last", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("enter", "open", "detail", show=False),
    ]

    selected: reactive[str] = reactive("", init=False, always_update=False, repaint=False)
    """The :func:`node_key` of the selected node ('' before the first snapshot)."""

    class Selected(Message):
        """The selection moved to another node (or the pane gained focus)."""

        def __init__(self, pane: TierPane, node: AnyNode | None) -> None:
            super().__init__()
            self.pane = pane
            self.node = node

    class Opened(Message):
        """The user asked for the selected node's detail (enter, or a click on it)."""

        def __init__(self, node: AnyNode) -> None:
            super().__init__()
            self.node = node

    def __init__(self, tier: str, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.tier = tier
        self.border_title = title
        self.nodes: list[AnyNode] = []
        self.snapshot: Snapshot | None = None
        self.faulted: dict[str, int] = {}
        self._top = 0
        self._summary_height = 0
        self._scrolled = False
        self._cols = (4, 2)

    # -- data -------------------------------------------------------------------------------

    def update_nodes(self, nodes: list[AnyNode], snap: Snapshot,
                     faulted: dict[str, int]) -> None:
        """Show new data; keeps the selection on the same node id where it still exists."""
        if self.tier == "app":
            nodes = sorted(nodes, key=lambda n: APP_ORDER.get(n.kind, 3))
        changed = [node_key(n) for n in nodes] != [node_key(n) for n in self.nodes]
        self.nodes = nodes
        self.snapshot = snap
        self.faulted = faulted
        if nodes and self.selected not in {node_key(n) for n in nodes}:
            index = min(self._index(), len(nodes) - 1)
            self.selected = node_key(nodes[max(0, index)])
            self.post_message(self.Selected(self, self.node))
        elif changed:
            self.post_message(self.Selected(self, self.node))
        self.update_lines()

    @property
    def node(self) -> AnyNode | None:
        """The selected node."""
        for n in self.nodes:
            if node_key(n) == self.selected:
                return n
        return None

    def _index(self) -> int:
        for i, n in enumerate(self.nodes):
            if node_key(n) == self.selected:
                return i
        return 0

    # -- actions ----------------------------------------------------------------------------

    def watch_selected(self) -> None:
        self.update_lines()  # the two rows that changed, not the pane

    def select_index(self, index: int) -> None:
        if not self.nodes:
            return
        index = max(0, min(len(self.nodes) - 1, index))
        if node_key(self.nodes[index]) != self.selected:
            self.selected = node_key(self.nodes[index])
            self.post_message(self.Selected(self, self.node))

    def select_id(self, node_id: str, kind: str = "") -> bool:
        """Select the node with ``node_id`` (and ``kind``, where ids are shared)."""
        for i, n in enumerate(self.nodes):
            if n.id == node_id and (not kind or n.kind == kind):
                self.select_index(i)
                return True
        return False

    def action_move(self, delta: int) -> None:
        self.select_index(self._index() + delta)

    def action_move_to(self, index: int) -> None:
        self.select_index(index if index >= 0 else len(self.nodes) - 1)

    def action_page(self, direction: int) -> None:
        self.select_index(self._index() + direction * max(1, self._rows()))

    def action_open(self) -> None:
        node = self.node
        if node is not None:
            self.post_message(self.Opened(node))

    def on_focus(self) -> None:
        self.update_lines()
        self.post_message(self.Selected(self, self.node))

    def on_blur(self) -> None:
        self.update_lines()

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        row = offset.y - self._summary_height
        index = self._top + row - (1 if self._scrolled else 0)
        if row >= 0 and 0 <= index < len(self.nodes):
            was = self.selected
            self.select_index(index)
            if event.chain >= 2 or (was == node_key(self.nodes[index]) and self.has_focus):
                self.action_open()

    # -- drawing ----------------------------------------------------------------------------

    def _rows(self) -> int:
        return max(1, self.content_size.height - self._summary_height)

    def build(self, width: int, height: int) -> list[Content]:
        summary = summary_lines(self.tier, self.snapshot, width)
        summary = summary[: max(0, height - 2)]
        self._summary_height = len(summary)
        rows = max(1, height - len(summary))
        n = len(self.nodes)
        index = self._index()
        top = self._top
        if n <= rows:
            top = 0
        else:
            # Reserve a line each for "more above" / "more below" markers when they show.
            inner = rows - 2 if rows > 2 else rows
            if index < top:
                top = index
            elif index >= top + inner:
                top = index - inner + 1
            top = max(0, min(top, n - inner))
        self._top = top
        self._scrolled = n > rows
        lines = list(summary)
        self._cols = columns(self.nodes)
        if not self.nodes:
            lines.append(Content.styled("(no nodes)", "$text-muted"))
        elif n <= rows:
            lines += [self._row(node, width) for node in self.nodes]
        else:
            inner = rows - 2 if rows > 2 else rows
            lines.append(Content.styled(f"  ↑ {top} more" if top else "", "$text-muted"))
            lines += [self._row(node, width) for node in self.nodes[top: top + inner]]
            below = n - top - inner
            lines.append(Content.styled(f"  ↓ {below} more" if below > 0 else "", "$text-muted"))
        return lines

    def _row(self, node: AnyNode, width: int) -> Content:
        return node_row(node, width, node_key(node) == self.selected,
                        self.faulted.get(node.id, 0),
                        focused=self.has_focus, cols=self._cols)
