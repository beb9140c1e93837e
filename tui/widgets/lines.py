"""Widgets drawn as lines of :class:`~textual.content.Content` that repaint only what changed.

Textual writes to the terminal the screen regions of the widgets that refreshed: a whole-widget
``refresh()`` rewrites every cell of it, colour codes and all, even when one digit changed. Over
SSH that is most of the bytes. A :class:`LineWidget` builds its lines from its data, compares
them with the lines on the screen, and refreshes only the cells between the first and the last
that differ on each changed line, or nothing at all when nothing shown changed.

``STACKYARD_NO_OUTPUT_OPT=1`` in the environment turns this off (every update repaints the
whole widget, as before), so ``bench/ssh.py`` can measure the difference in one run.
"""

from __future__ import annotations

import os
from collections.abc import Hashable

from rich.cells import cell_len
from textual.content import Content
from textual.geometry import Region
from textual.widget import Widget

NO_OPT_ENV = "STACKYARD_NO_OUTPUT_OPT"
OUTPUT_OPT = not os.environ.get(NO_OPT_ENV)
"""Whether to write only what changed (off for the benchmark's baseline)."""

Cell = tuple[str, tuple[Hashable, ...]]


def _cells(line: Content) -> list[Cell]:
    """Each character of ``line`` with the styles that apply to it, in span order."""
    styles: list[list[Hashable]] = [[] for _ in line.plain]
    for span in line.spans:
        for i in range(max(0, span.start), min(len(styles), span.end)):
            styles[i].append(span.style)
    return [(ch, tuple(s)) for ch, s in zip(line.plain, styles, strict=True)]


def changed_span(old: Content | None, new: Content | None, width: int) -> tuple[int, int] | None:
    """The cells ``[x1, x2)`` of a line that differ between ``old`` and ``new`` (either may be
    missing: a line that appeared or went), or None when they look the same."""
    if old is None and new is None:
        return None
    if old is None or new is None:
        return (0, width)
    if old.plain == new.plain and old.spans == new.spans:
        return None
    a, b = _cells(old), _cells(new)
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    if i == len(a) == len(b):
        return None
    x1 = cell_len(new.plain[:i])
    a_len, b_len = old.cell_length, new.cell_length
    if a_len != b_len:  # the rest moved: repaint to the end of the longer line
        return (x1, max(a_len, b_len, x1 + 1))
    j = 0
    while j < n - i and a[len(a) - 1 - j] == b[len(b) - 1 - j]:
        j += 1
    x2 = b_len - cell_len(new.plain[len(b) - j:]) if j else b_len
    return (x1, max(x2, x1 + 1))


class LineWidget(Widget):
    """A widget whose content is :meth:`build`'s lines; :meth:`update_lines` repaints only
    the cells that changed since the lines last drawn."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._lines: list[Content] | None = None
        """The lines last built (and drawn, or about to be)."""
        self._built_for: tuple[int, int] = (-1, -1)

    def build(self, width: int, height: int) -> list[Content]:
        """The widget's lines for a content area of ``width`` x ``height`` cells."""
        raise NotImplementedError

    def update_lines(self) -> None:
        """The data changed: rebuild, and repaint the cells that differ (none if none do)."""
        width, height = self.content_size
        old = self._lines if self._built_for == (width, height) else None
        if not OUTPUT_OPT or old is None or not self.is_mounted:
            self.refresh()
            return
        new = self.build(width, height)
        self._lines = new
        regions = []
        for y in range(min(height, max(len(old), len(new)))):
            span = changed_span(old[y] if y < len(old) else None,
                                new[y] if y < len(new) else None, width)
            if span is not None:
                x1, x2 = span
                regions.append(Region(x1, y, min(width, x2) - x1, 1))
        if regions:
            super().refresh(*regions)

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False,
                recompose: bool = False) -> LineWidget:
        """A refresh from anywhere else (focus, selection, resize): rebuild on render."""
        self._built_for = (-1, -1)
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def render(self) -> Content:
        width, height = self.content_size
        if self._built_for != (width, height) or self._lines is None:
            self._lines = self.build(width, height)
            self._built_for = (width, height)
        return Content("\n").join(self._lines)
