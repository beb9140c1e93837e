"""Terminal output with fewer bytes: the same screen updates as Textual's, written tighter.

Textual 8 turns a screen update into text in ``ChopsUpdate.render_segments``. Two habits there
cost an SSH link most of the bytes of a small change:

* a changed span is written from the start of the widget's piece of the line (the "chop"), not
  from the first changed cell: one changed digit at the end of a pane row rewrites the row;
* every segment carries its whole style and a reset, ``ESC[1;38;5;253;48;5;16m text ESC[0m``,
  even when the next segment has the same style.

:class:`TightChopsUpdate` writes the same cells, from the first changed one, and emits a style
only when it differs from the one in force. The app swaps it in before Textual writes
(:meth:`StackyardApp._display`); ``STACKYARD_NO_OUTPUT_OPT=1`` keeps Textual's own.
"""

from __future__ import annotations

from rich.console import Console
from rich.control import Control
from rich.style import Style
from textual._compositor import ChopsUpdate, LayoutUpdate
from textual.strip import Strip

from stackyard.tui.widgets.lines import OUTPUT_OPT

__all__ = ["OUTPUT_OPT", "TightChopsUpdate", "TightLayoutUpdate", "tighten"]


class _Writer:
    """Accumulates text, emitting a style only when it changes."""

    def __init__(self, console: Console) -> None:
        from rich.color import ColorSystem

        self.color_system = console._color_system or ColorSystem.TRUECOLOR
        self.parts: list[str] = []
        self.style: Style | None = None

    def move_to(self, x: int, y: int) -> None:
        self.parts.append(Control.move_to(x, y).segment.text)

    def strip(self, strip: Strip) -> None:
        append = self.parts.append
        for segment in strip:
            text, style, control = segment
            if control:
                continue
            if style is not None and style._link:
                # Links need their own wrapping: let Textual write them whole.
                append(Strip.render_style(style, text, self.color_system))
                self.style = None
                continue
            if style != self.style:
                ansi = "" if style is None else _ansi(style, self.color_system)
                append(f"\x1b[0;{ansi}m" if ansi else "\x1b[0m")
                self.style = style if ansi else None
            append(text)

    def text(self) -> str:
        if self.style is not None:
            self.parts.append("\x1b[0m")
            self.style = None
        return "".join(self.parts)


def _ansi(style: Style, color_system: object) -> str:
    ansi = style._ansi
    if ansi is None:
        ansi = Strip.render_ansi(style, color_system)  # type: ignore[arg-type]
    return ansi


class TightChopsUpdate(ChopsUpdate):
    """Textual's partial screen update, written from the first changed cell of each span."""

    def render_segments(self, console: Console) -> str:
        out = _Writer(console)
        chops = self.chops
        chop_ends = self.chop_ends
        for y, x1, x2 in self.spans:
            line = chops[y]
            ends = chop_ends[y]
            for end, (x, strip) in zip(ends, line.items(), strict=False):
                if strip is None or x >= x2 or end <= x1:
                    continue
                left, right = max(x, x1), min(end, x2)
                if (left, right) != (x, end):
                    strip = strip.crop(left - x, right - x)
                out.move_to(left, y)
                out.strip(strip)
        return out.text()


class TightLayoutUpdate(LayoutUpdate):
    """Textual's whole-region update, with a style written only when it changes."""

    def render_segments(self, console: Console) -> str:
        out = _Writer(console)
        x = self.region.x
        for y, line in enumerate(self.strips, self.region.y):
            out.move_to(x, y)
            for strip in line:
                out.strip(strip)
        return out.text()


def tighten(renderable: object) -> object:
    """The tight form of a Textual screen update (anything else unchanged)."""
    if not OUTPUT_OPT:
        return renderable
    if type(renderable) is ChopsUpdate:
        return TightChopsUpdate(renderable.chops, renderable.spans, renderable.chop_ends)
    if type(renderable) is LayoutUpdate:
        return TightLayoutUpdate(renderable.strips, renderable.region)
    return renderable

