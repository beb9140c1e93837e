"""The replay's time scrubber: the recorded span as a bar, the playhead and the markers.

One line under the header: the playhead's simulated time, a bar with the part played drawn
heavy, each marker at its place (▲ a fault, ◆ a command, ✖ an SLO breach) and the recording's
end. Keys move the playhead (from the replay's catalogue); a click on the bar seeks there.
"""

from __future__ import annotations

from textual import events
from textual.content import Content
from textual.message import Message
from textual.widget import Widget

from stackyard.core.replay import Timeline, clock

GLYPHS = {"fault": ("▲", "bold $warning"), "command": ("◆", "bold $accent"),
          "slo": ("✖", "bold $error")}
"""How each kind of marker is drawn; where several share a cell the first listed wins."""
RANK = {"slo": 0, "fault": 1, "command": 2}


def bar_span(timeline: Timeline, width: int) -> tuple[int, int]:
    """Where the bar starts and how many cells it has, in a line ``width`` cells wide."""
    left = len(clock(timeline.position)) + 3
    right = len(clock(timeline.end)) + 1
    return left, max(0, width - left - right)


def time_at(timeline: Timeline, width: int, x: int) -> float | None:
    """The simulated time under cell ``x`` of the bar (None off the bar)."""
    x0, cells = bar_span(timeline, width)
    if cells <= 0 or not x0 <= x < x0 + cells:
        return None
    span = timeline.end - timeline.start
    return timeline.start + span * (x - x0) / max(cells - 1, 1)


def scrubber_content(timeline: Timeline | None, width: int) -> Content:
    """The scrubber line for ``timeline`` in ``width`` cells."""
    if timeline is None:
        return Content("")
    _, cells = bar_span(timeline, width)
    head = Content.assemble(("⏵ ", "bold $accent"), (clock(timeline.position), "bold"), " ")
    if cells <= 0:
        return head
    span = max(timeline.end - timeline.start, 1e-9)

    def cell(t: float) -> int:
        return min(cells - 1, max(0, round((t - timeline.start) / span * (cells - 1))))

    marks: dict[int, str] = {}
    for m in timeline.markers:
        i = cell(m.time)
        if i not in marks or RANK[m.kind] < RANK[marks[i]]:
            marks[i] = m.kind
    played = cell(timeline.position)
    parts: list[tuple[str, str]] = []
    for i in range(cells):
        if i == played:
            parts.append(("●", "bold $primary"))
        elif i in marks:
            parts.append(GLYPHS[marks[i]])
        elif i < played:
            parts.append(("━", "$primary"))
        else:
            parts.append(("─", "$text-muted"))
    return Content.assemble(head, *parts, (f" {clock(timeline.end)}", "$text-muted"))


class Scrubber(Widget):
    """The replay's timeline; the app sets it with :meth:`show`."""

    DEFAULT_CSS = """
    Scrubber { height: 1; background: $panel; text-wrap: nowrap; text-overflow: clip; }
    """

    class Seek(Message):
        """The user clicked the bar at simulated time ``time``."""

        def __init__(self, time: float) -> None:
            super().__init__()
            self.time = time

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.timeline: Timeline | None = None

    def show(self, timeline: Timeline) -> None:
        if timeline != self.timeline:
            self.timeline = timeline
            self.refresh()

    def render(self) -> Content:
        return scrubber_content(self.timeline, self.content_size.width)

    def on_click(self, event: events.Click) -> None:
        if self.timeline is None:
            return
        t = time_at(self.timeline, self.content_size.width, event.x)
        if t is not None:
            self.post_message(self.Seek(t))
