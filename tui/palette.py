"""The command palette provider: every action, including parameterised ones."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from stackyard.tui.app import StackyardApp


class ActionsProvider(Provider):
    """Faults on every node, control commands, driver controls and views."""

    @property
    def yard(self) -> StackyardApp:
        return self.app  # type: ignore[return-value]

    async def discover(self) -> Hits:
        for entry in self.yard.palette_entries():
            yield DiscoveryHit(entry.text, entry.run, help=entry.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for entry in self.yard.palette_entries():
            score = matcher.match(entry.text)
            if score > 0:
                yield Hit(score, matcher.highlight(entry.text), partial(entry.run),
                          text=entry.text, help=entry.help)
