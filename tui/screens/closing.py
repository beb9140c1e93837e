"""A screen that closes itself only while it is the one on top."""

from __future__ import annotations

from typing import Any

from textual.screen import Screen


class Closable:
    """Mixin for screens that ``escape`` (or another key) closes.

    Keys typed in a burst are dispatched after earlier ones have changed the screens: a close
    key meant for this screen can arrive when another screen (the command palette) is on top,
    and popping "the top screen" then would pop the wrong one, down to an empty stack. Closing
    only while current makes such a key do nothing instead."""

    def action_close(self: Any) -> None:
        screen: Screen[Any] = self
        if screen.is_current and len(screen.app.screen_stack) > 2:
            screen.dismiss()
