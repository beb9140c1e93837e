"""One line under the panes: the selected node's state in plain words."""

from __future__ import annotations

from textual.content import Content

from stackyard.core.protocol import AnyNode, Snapshot
from stackyard.tui.explain import explain
from stackyard.tui.layout import clip
from stackyard.tui.widgets.lines import LineWidget


def status_content(node: AnyNode | None, snap: Snapshot | None, width: int) -> Content:
    """``node``'s id and its plain-words state, cut with an ellipsis at ``width``."""
    if node is None:
        return Content("")
    line = Content.assemble((f"{node.id}: ", "bold"), (explain(node, snap), "$text-muted"))
    return clip(line, width)


class StatusLine(LineWidget):
    """What the selected node's figures mean, in words."""

    DEFAULT_CSS = """
    StatusLine { height: 1; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.node: AnyNode | None = None
        self.snapshot: Snapshot | None = None

    def show(self, node: AnyNode | None, snap: Snapshot | None) -> None:
        if node is not self.node or snap is not self.snapshot:
            self.node, self.snapshot = node, snap
            self.update_lines()

    def build(self, width: int, height: int) -> list[Content]:
        return [status_content(self.node, self.snapshot, width)]
