"""The command palette provider: every action, including parameterised ones."""

from __future__ import annotations

import contextlib
from functools import partial
from typing import TYPE_CHECKING

from textual import work
from textual.command import CommandList, CommandPalette, DiscoveryHit, Hit, Hits, Provider
from textual.css.query import NoMatches

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


class SafePalette(CommandPalette):
    """Textual's command palette, hardened against keys that arrive in a burst: a key meant
    for a palette that is closing, or one whose list is still empty, does nothing instead of
    raising (page up/down on an empty list, a list already torn down)."""

    def _usable(self) -> CommandList | None:
        if not self.is_current or not self.is_attached:
            return None
        found = self.query(CommandList)
        return found.first() if found else None

    def _action_command_list(self, action: str) -> None:
        commands = self._usable()
        if commands is None or (not commands.option_count and action != "select"):
            return
        with contextlib.suppress(KeyError):  # options not laid out yet: nowhere to page
            super()._action_command_list(action)

    def _action_cursor_down(self) -> None:
        if self._usable() is not None:
            super()._action_cursor_down()

    def _action_escape(self) -> None:
        if self.is_current:
            super()._action_escape()

    @work(exclusive=True, group=CommandPalette._GATHER_COMMANDS_GROUP)
    async def _gather_commands(self, search_value: str) -> None:
        if self._usable() is None:
            return
        gather = CommandPalette._gather_commands.__wrapped__  # type: ignore[attr-defined]
        try:
            await gather(self, search_value)
        except NoMatches:
            return  # the palette closed while it gathered: nothing left to show them in
