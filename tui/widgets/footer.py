"""The footer: the keys that do something here, chosen by importance to fit the width.

Textual's own footer lays keys out left to right and lets the last ones run off the edge (at
80 columns: ``q qui``, ``u ▏``). This one ranks the active bindings (the app says how much each
matters), keeps the most important that fit in full, and shows them in their binding order; a
label is never cut. Clicking a key presses it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen
from textual.widget import Widget

GAP = 1
"""Cells between two keys."""


@dataclass(frozen=True)
class FooterKey:
    """One key the footer may show: what to press, how it reads, and how much it matters."""

    key: str
    """The key as Textual names it (what a click simulates)."""
    display: str
    label: str
    rank: int
    """Lower is more important: kept first when the width runs out."""

    @property
    def width(self) -> int:
        return len(self.display) + 1 + len(self.label)


def footer_keys(keys: Sequence[FooterKey], width: int) -> list[FooterKey]:
    """The keys that fit ``width`` cells, chosen most important first, in their given order."""
    chosen: set[int] = set()
    used = 0
    for i in sorted(range(len(keys)), key=lambda i: (keys[i].rank, i)):
        need = keys[i].width + (GAP if chosen else 0)
        if used + need <= width:
            chosen.add(i)
            used += need
    return [k for i, k in enumerate(keys) if i in chosen]


def footer_content(keys: Sequence[FooterKey], width: int) -> tuple[Content, list[tuple[int,
                                                                                        int,
                                                                                        str]]]:
    """The footer line for ``keys`` in ``width`` cells, and where each shown key sits
    (start, end, key) for clicks."""
    shown = footer_keys(keys, width)
    parts: list[Content] = []
    spans: list[tuple[int, int, str]] = []
    x = 0
    for k in shown:
        if parts:
            parts.append(Content(" " * GAP))
            x += GAP
        parts.append(Content.assemble((k.display, "bold $footer-key-foreground"), " ",
                                      (k.label, "$footer-description-foreground")))
        spans.append((x, x + k.width, k.key))
        x += k.width
    return Content.assemble(*parts), spans


Ranker = Callable[[Binding], int]


class KeyFooter(Widget):
    """The keys of the screen it sits on that fit, most important first."""

    DEFAULT_CSS = """
    KeyFooter {
        dock: bottom;
        height: 1;
        background: $footer-background;
        color: $footer-foreground;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.keys: list[FooterKey] = []
        self._spans: list[tuple[int, int, str]] = []

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        if not self.is_attached or screen is not self.screen:
            return
        keys = self.collect()
        if keys != self.keys:
            self.keys = keys
            self.refresh()

    def collect(self) -> list[FooterKey]:
        """The shown, enabled bindings of this screen, ranked by the app."""
        app = self.app
        rank: Ranker = getattr(app, "footer_rank", lambda binding: 5)
        out: list[FooterKey] = []
        seen: set[tuple[str, str]] = set()
        palette: FooterKey | None = None
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if key == app.COMMAND_PALETTE_BINDING and app.ENABLE_COMMAND_PALETTE \
                    and active.enabled:
                palette = FooterKey(key, app.get_key_display(binding), "palette", 6)
                continue
            if not binding.show or not active.enabled:
                continue
            ident = (binding.action, binding.description)
            if ident in seen:  # + and = both speed up: one is enough
                continue
            seen.add(ident)
            out.append(FooterKey(key, app.get_key_display(binding), binding.description,
                                 rank(binding)))
        if palette is not None:
            out.append(palette)
        return out

    def render(self) -> Content:
        content, self._spans = footer_content(self.keys, self.content_size.width)
        return content

    def on_click(self, event: events.Click) -> None:
        for start, end, key in self._spans:
            if start <= event.x < end:
                event.stop()
                self.app.simulate_key(key)
                return
