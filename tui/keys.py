"""Which keys send which commands: derived from the session's catalogue, nothing hard-coded.

Each catalogue entry lists its keys with a scope (see :class:`~core.protocol.KeyInfo`): a
``node`` key acts on the selected node when the entry can target it, a ``global`` key acts
without a selection, a ``selection`` key takes the selected node if it fits. A new kind of fault
with a key in the catalogue gets its binding, footer label and help line here without changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stackyard.core.protocol import ActionInfo, AnyNode, Command, KeyInfo, Snapshot

_CHARACTER_KEYS = {
    "+": "plus", "=": "equals_sign", "-": "minus", "_": "underscore", ".": "full_stop",
    "]": "right_square_bracket", "[": "left_square_bracket", "/": "slash", ",": "comma",
    "?": "question_mark", "!": "exclamation_mark", "*": "asterisk", "<": "less_than_sign",
    ">": "greater_than_sign", "#": "number_sign", "@": "at", "&": "ampersand",
    ";": "semicolon", ":": "colon", "'": "apostrophe", '"': "quotation_mark", "|": "pipe",
    "\\": "backslash", "~": "tilde", "^": "circumflex_accent", "%": "percent_sign",
    "$": "dollar_sign", "(": "left_parenthesis", ")": "right_parenthesis",
    "{": "left_curly_bracket", "}": "right_curly_bracket", "`": "grave_accent", " ": "space",
}


def textual_key(key: str) -> str:
    """The name Textual gives the key the catalogue writes as ``key`` (``+`` is ``plus``)."""
    return _CHARACTER_KEYS.get(key, key)


def shown_key(key: str) -> str:
    """How help and the footer write a catalogue key."""
    return key


@dataclass(frozen=True)
class Bound:
    """One key of one catalogue entry."""

    key: KeyInfo
    action: ActionInfo

    @property
    def label(self) -> str:
        return self.key.label

    @property
    def footer(self) -> bool:
        return self.key.scope == "node" or self.key.footer


def bindings(catalogue: Iterable[ActionInfo]) -> list[Bound]:
    """Every key of every entry, in catalogue order."""
    return [Bound(k, a) for a in catalogue for k in a.keys]


def groups(catalogue: Iterable[ActionInfo]) -> list[tuple[str, str, list[Bound]]]:
    """Keys grouped by (key, label), in first-seen order: one footer binding per group."""
    out: dict[tuple[str, str], list[Bound]] = {}
    for b in bindings(catalogue):
        out.setdefault((b.key.key, b.label), []).append(b)
    return [(key, label, bound) for (key, label), bound in out.items()]


def fits(action: ActionInfo, node: AnyNode | None, kinds: Iterable[str] = ()) -> bool:
    """Whether ``action`` can target ``node`` (limited to ``kinds`` when given)."""
    if node is None:
        return False
    allowed = tuple(kinds) or action.targets
    return node.kind in allowed and node.kind in action.targets


def region_of(node: AnyNode | None, snap: Snapshot | None) -> str:
    """The client region a node serves, else the first region of the run."""
    if node is not None and node.region:
        return node.region
    return snap.regions[0].name if snap is not None and snap.regions else ""


def command_for(bound: Bound, node: AnyNode | None, snap: Snapshot | None) -> Command | None:
    """The command ``bound``'s key sends with ``node`` selected (None: it means nothing here)."""
    action, key = bound.action, bound.key
    params = dict(key.params)
    if key.scope == "node":
        if not fits(action, node, key.kinds):
            return None
        assert node is not None
        return Command(action.name, node.id, params, origin="key")
    if key.scope == "selection":
        target = node.id if fits(action, node, key.kinds) and node is not None else ""
        if not target and action.targets and not action.target_optional:
            return None
        return Command(action.name, target, params, origin="key")
    target = ""
    if action.targets and not action.target_optional:
        if "region" not in action.targets:
            return None
        target = region_of(node, snap)
    return Command(action.name, target, params, origin="key")


def node_keys(catalogue: Iterable[ActionInfo], node: AnyNode | None) -> list[Bound]:
    """The node-scope keys that do something on ``node``, one per key, for footer and help."""
    seen: set[str] = set()
    out = []
    for b in bindings(catalogue):
        if b.key.scope == "node" and b.key.key not in seen and fits(b.action, node, b.key.kinds):
            seen.add(b.key.key)
            out.append(b)
    return out


def key_of(catalogue: Iterable[ActionInfo], name: str) -> str:
    """The first key bound to entry ``name`` ('' if none)."""
    for b in bindings(catalogue):
        if b.action.name == name:
            return b.key.key
    return ""
