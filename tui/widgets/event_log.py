"""The event log: newest events at the bottom, each with its *why*; focusable and scrollable.

Unfocused it follows the newest events, one line each (cut with an ellipsis). Focused (tab, or
a click), a cursor picks an event and the log shows that event's whole text wrapped over as
many lines as it needs; arrows, j/k, PgUp/PgDn, Home/End and the mouse wheel move it, back to
the first event kept. End (or escape) returns to following the newest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.message import Message
from textual.widget import Widget

from stackyard.core.protocol import Event
from stackyard.tui.format import clock
from stackyard.tui.layout import wrap

SEVERITY = {"info": ("·", "$text-muted"), "warning": ("▲", "$warning"), "error": ("✖", "$error")}
KEEP = 10_000
"""Events a viewer keeps: hours of a busy run (a 10-minute run with faults logs a few
hundred)."""
INDENT = 11
"""Where the text of an event starts, after its time and severity."""


class EventStore:
    """The events a viewer has seen, oldest first, each with a stable position (its count
    since the start) so a cursor stays on its event while old ones are dropped."""

    def __init__(self, keep: int = KEEP) -> None:
        self.events: deque[Event] = deque(maxlen=keep)
        self.total = 0
        """Events ever added."""

    def add(self, events: Iterable[Event]) -> None:
        for e in events:
            self.events.append(e)
            self.total += 1

    def clear(self) -> None:
        """Forget every event (a replay went back in time); positions keep counting."""
        self.events.clear()

    @property
    def first(self) -> int:
        """The position of the oldest event kept."""
        return self.total - len(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[Event]:
        """The events kept, oldest first."""
        return iter(self.events)

    def at(self, position: int) -> Event | None:
        index = position - self.first
        return self.events[index] if 0 <= index < len(self.events) else None

    def backward(self, start: int, text: str = "") -> Iterator[int]:
        """Positions from ``start`` down to the oldest, of events matching ``text``."""
        for pos in range(min(start, self.total - 1), self.first - 1, -1):
            e = self.at(pos)
            if e is not None and (not text or matches(e, text)):
                yield pos

    def forward(self, start: int, text: str = "") -> Iterator[int]:
        """Positions from ``start`` up to the newest, of events matching ``text``."""
        for pos in range(max(start, self.first), self.total):
            e = self.at(pos)
            if e is not None and (not text or matches(e, text)):
                yield pos


def matches(event: Event, text: str) -> bool:
    """Whether ``event`` contains every word of ``text`` (case-insensitive) anywhere."""
    hay = (f"{event.severity} {event.component} {event.kind} {event.message} {event.why} "
           f"{event.cause}").lower()
    return all(word in hay for word in text.lower().split())


def event_text(event: Event) -> str:
    """An event's whole text: message, the fault it is traced to, and why."""
    text = event.message + (f" [{event.cause}]" if event.cause else "")
    return f"{text} — {event.why}" if event.why else text


def event_line(event: Event, width: int) -> Content:
    """One event on one line, cut with an ellipsis."""
    glyph, style = SEVERITY.get(event.severity, ("·", ""))
    head = Content.assemble((f"{clock(event.time):>8} ", "$text-muted"), (f"{glyph} ", style),
                            (event.message, "bold" if event.severity != "info" else ""))
    if event.cause:
        head = Content.assemble(head, (f" [{event.cause}]", "$accent"))
    if event.why:
        head = Content.assemble(head, (f" — {event.why}", "$text-muted italic"))
    return head.truncate(width, ellipsis=True) if width > 0 else head


def event_block(event: Event, width: int) -> list[Content]:
    """One event's whole text wrapped to ``width`` (continuation lines indented)."""
    glyph, style = SEVERITY.get(event.severity, ("·", ""))
    body = wrap(event_text(event), max(8, width - INDENT))
    lines = [Content.assemble((f"{clock(event.time):>8} ", "$text-muted"), (f"{glyph} ", style),
                              (body[0], "bold"))]
    lines += [Content(" " * INDENT + line) for line in body[1:]]
    return [line.truncate(width, ellipsis=True) for line in lines]


class EventLog(Widget, can_focus=True):
    """The events that match the filter: the newest, or those around the cursor."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "older", show=False),
        Binding("down,j", "move(1)", "newer", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home", "oldest", "oldest", show=False),
        Binding("end", "newest", "newest", show=True),
        Binding("enter", "open", "node detail", show=False),
    ]

    class Opened(Message):
        """The user asked for the detail of the selected event's component."""

        def __init__(self, event: Event) -> None:
            super().__init__()
            self.event = event

    def __init__(self, store: EventStore | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.store = store if store is not None else EventStore()
        """Shared with the app, which adds to it even while this log is hidden."""
        self.filter = ""
        self.cursor: int | None = None
        """The position of the selected event (None: follow the newest)."""
        self._top: int | None = None
        self._shown_total = -1
        self.border_title = "Events"

    # -- data -------------------------------------------------------------------------------

    def add(self, events: Iterable[Event]) -> None:
        self.store.add(events)
        self.catch_up()

    def catch_up(self) -> None:
        """Redraw if events arrived since the last draw (the app adds them to the store)."""
        if self.store.total != self._shown_total:
            self._title()
            self.refresh()

    def set_filter(self, text: str) -> None:
        self.filter = text.strip()
        if self.cursor is not None:
            self.cursor = next(self.store.backward(self.cursor, self.filter), None)
        self._title()
        self.refresh()

    @property
    def selected(self) -> Event | None:
        return self.store.at(self.cursor) if self.cursor is not None else None

    # -- moving -----------------------------------------------------------------------------

    def _newest(self) -> int | None:
        return next(self.store.backward(self.store.total - 1, self.filter), None)

    def action_move(self, delta: int) -> None:
        if self.cursor is None:
            if delta > 0:
                return
            self.cursor = self._newest()
            delta += 1  # the first step up selects the newest event
            if delta == 0 or self.cursor is None:
                self._moved()
                return
        steps = (self.store.forward(self.cursor + 1, self.filter) if delta > 0
                 else self.store.backward(self.cursor - 1, self.filter))
        pos = self.cursor
        for _, found in zip(range(abs(delta)), steps, strict=False):
            pos = found
        if delta > 0 and pos == self.cursor:
            self.cursor = None  # past the newest: follow again
        else:
            self.cursor = pos
        self._moved()

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(1, self.content_size.height - 1))

    def action_oldest(self) -> None:
        self.cursor = next(self.store.forward(self.store.first, self.filter), None)
        self._top = self.cursor
        self._moved()

    def action_newest(self) -> None:
        self.cursor = None
        self._moved()

    def action_open(self) -> None:
        event = self.selected
        if event is not None:
            self.post_message(self.Opened(event))

    def _moved(self) -> None:
        if self.cursor is None:
            self._top = None
        self._title()
        self.refresh()

    def _title(self) -> None:
        name = f"Events matching {self.filter!r}" if self.filter else "Events"
        if self.cursor is not None:
            newer = sum(1 for _ in self.store.forward(self.cursor + 1, self.filter))
            name += f" · {newer} newer (end: newest)"
        elif self.has_focus:
            name += " · ↑ to scroll back"
        self.border_title = name

    def on_focus(self) -> None:
        self._title()
        self.refresh()

    def on_blur(self) -> None:
        self._title()
        self.refresh()

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        self.action_move(-3)

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        if self.cursor is not None:
            self.action_move(3)

    def key_escape(self, event: events.Key) -> None:
        if self.cursor is not None:
            event.stop()
            self.action_newest()

    # -- drawing ----------------------------------------------------------------------------

    def render(self) -> Content:
        width, height = self.content_size.width, self.content_size.height
        self._shown_total = self.store.total
        lines = (self._following(width, height) if self.cursor is None
                 else self._around_cursor(width, height))
        if not lines:
            text = f"no events match {self.filter!r}" if self.filter else "no events yet"
            return Content.styled(text, "$text-muted")
        return Content("\n").join(lines)

    def _following(self, width: int, height: int) -> list[Content]:
        shown = [self.store.at(p) for _, p in zip(range(height),
                                                   self.store.backward(self.store.total - 1,
                                                                       self.filter),
                                                   strict=False)]
        return [event_line(e, width) for e in reversed(shown) if e is not None]

    def _around_cursor(self, width: int, height: int) -> list[Content]:
        cursor = self.cursor
        assert cursor is not None
        event = self.store.at(cursor)
        if event is None:
            self.cursor = None
            return self._following(width, height)
        style = ("$block-cursor-foreground on $block-cursor-background" if self.has_focus
                 else "on $boost")
        block = [line.pad_right(max(0, width - line.cell_length)).stylize(style)
                 for line in event_block(event, width)][: max(1, height)]
        room = height - len(block)
        top = self._top if self._top is not None and self._top <= cursor else cursor
        above: list[int] = []
        for p in self.store.forward(top, self.filter):
            if p >= cursor:
                break
            above.append(p)
        above = above[-room:] if room > 0 else []
        below = [p for _, p in zip(range(room - len(above)),
                                   self.store.forward(cursor + 1, self.filter), strict=False)]
        # Near the newest event, fill the rows left over with older ones.
        spare = room - len(above) - len(below)
        if spare > 0:
            start = (above[0] if above else cursor) - 1
            extra = [p for _, p in zip(range(spare), self.store.backward(start, self.filter),
                                       strict=False)]
            above = extra[::-1] + above
        self._top = above[0] if above else cursor
        out = [event_line(e, width) for p in above if (e := self.store.at(p)) is not None]
        out += block
        out += [event_line(e, width) for p in below if (e := self.store.at(p)) is not None]
        return out
