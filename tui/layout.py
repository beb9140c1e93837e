"""Fitting text into a width without cutting a word: drop what matters least, else an ellipsis.

Pure functions over :class:`~textual.content.Content` (no widgets), shared by the header, the
pane rows, the footer and the lesson pane, so that no line on screen ever ends mid-word
without a ``…``.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content

ELLIPSIS = "…"


def clip(content: Content | str, width: int) -> Content:
    """``content`` cut to ``width`` cells, ending with an ellipsis when anything was cut."""
    text = content if isinstance(content, Content) else Content(content)
    if width <= 0:
        return Content("")
    if text.cell_length <= width:
        return text
    return text.truncate(width, ellipsis=True)


def fit_parts(parts: Sequence[tuple[Content | str, int]], width: int,
              sep: Content | str = " ") -> Content:
    """Join ``parts`` (each with a priority, lower is more important) with ``sep`` in their
    order, leaving out the least important until the line fits ``width``; the most important
    part alone is clipped with an ellipsis if even it does not fit."""
    items = [(p if isinstance(p, Content) else Content(p), rank, i)
             for i, (p, rank) in enumerate(parts) if (p.plain if isinstance(p, Content) else p)]
    gap = sep if isinstance(sep, Content) else Content(sep)
    kept = sorted(items, key=lambda item: (item[1], item[2]))
    while kept:
        line = _join([item for item in sorted(kept, key=lambda item: item[2])], gap)
        if line.cell_length <= width:
            return line
        if len(kept) == 1:
            return clip(line, width)
        kept.pop()
    return Content("")


def _join(items: list[tuple[Content, int, int]], gap: Content) -> Content:
    return gap.join(item[0] for item in items)


def first_fit(variants: Sequence[str], width: int) -> str:
    """The first (richest) of ``variants`` that fits ``width``; else the last clipped with an
    ellipsis."""
    for text in variants:
        if len(text) <= width:
            return text
    last = variants[-1] if variants else ""
    if width <= 0:
        return ""
    return last[: width - 1] + ELLIPSIS if len(last) > width else last


def wrap(text: str, width: int) -> list[str]:
    """``text`` broken into lines of at most ``width`` cells at spaces (a word longer than a
    line is cut with an ellipsis); blank lines in ``text`` are kept."""
    if width <= 0:
        return []
    out: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            if len(word) > width:
                word = word[: width - 1] + ELLIPSIS
            if not line:
                line = word
            elif len(line) + 1 + len(word) <= width:
                line += " " + word
            else:
                out.append(line)
                line = word
        out.append(line)
    return out
