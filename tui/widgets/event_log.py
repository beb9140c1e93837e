"""The event log: newest events at the bottom, each with its *why*, filterable."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from textual.content import Content
from textual.widget import Widget

from stackyard.core.protocol import Event
from stackyard.tui.format import clock

SEVERITY = {"info": ("·", "$text-muted"), "warning": ("▲", "$warning"), "error": ("✖", "$error")}


def matches(event: Event, text: str) -> bool:
    """Whether ``event`` contains every word of ``text`` (case-insensitive) anywhere."""
    hay = (f"{event.severity} {event.component} {event.kind} {event.message} {event.why} "
           f"{event.cause}").lower()
    return all(word in hay for word in text.lower().split())


def event_line(event: Event, width: int) -> Content:
    glyph, style = SEVERITY.get(event.severity, ("·", ""))
    head = Content.assemble((f"{clock(event.time):>8} ", "$text-muted"), (f"{glyph} ", style),
                            (event.message, "bold" if event.severity != "info" else ""))
    if event.cause:
        head = Content.assemble(head, (f" [{event.cause}]", "$accent"))
    if event.why:
        head = Content.assemble(head, (f" — {event.why}", "$text-muted italic"))
    return head.truncate(width, ellipsis=True) if width > 0 else head


class EventLog(Widget):
    """The last events that match the filter, as many as fit."""

    def __init__(self, events: deque[Event] | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.events: deque[Event] = deque(maxlen=1000) if events is None else events
        """Shared with the app, which adds to it even while this log is hidden."""
        self.filter = ""
        self.border_title = "Events"
        self._shown_last: Event | None = None

    def add(self, events: Iterable[Event]) -> None:
        before = len(self.events)
        self.events.extend(events)
        if len(self.events) != before or before == self.events.maxlen:
            self.refresh()

    def catch_up(self) -> None:
        """Redraw if events arrived since the last draw (the app adds them to the store)."""
        last = self.events[-1] if self.events else None
        if last is not self._shown_last:
            self.refresh()

    def set_filter(self, text: str) -> None:
        self.filter = text.strip()
        self.border_title = f"Events matching {self.filter!r}" if self.filter else "Events"
        self.refresh()

    def shown_events(self, height: int) -> list[Event]:
        shown: list[Event] = []
        for event in reversed(self.events):
            if len(shown) >= height:
                break
            if not self.filter or matches(event, self.filter):
                shown.append(event)
        shown.reverse()
        return shown

    def render(self) -> Content:
        width, height = self.content_size.width, self.content_size.height
        self._shown_last = self.events[-1] if self.events else None
        shown = self.shown_events(height)
        if not shown:
            text = f"no events match {self.filter!r}" if self.filter else "no events yet"
            return Content.styled(text, "$text-muted")
        return Content("\n").join(event_line(e, width) for e in shown)
