"""Every command a user can send, spelled out for the command palette.

Generated from the session's catalogue and the latest snapshot: each entry is offered on every
target it fits, with its parameter's presets, choices or both values of a switch, worded by the
entry's phrase. New entries, nodes and parameters appear without changes here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from stackyard.core.protocol import ActionInfo, AnyNode, Command, ParamInfo, Scalar, Snapshot
from stackyard.tui.keys import key_of


@dataclass(frozen=True)
class CommandChoice:
    """A palette line that sends ``command``."""

    text: str
    help: str
    command: Command


def human(name: str) -> str:
    return name.replace("_", " ")


def value_text(param: ParamInfo | None, value: Scalar) -> str:
    """A parameter value in the words its unit asks for: 200 ms, 5%, x3, 2x, on."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str) or param is None:
        return str(value)
    unit = param.unit
    if unit == "s":
        return f"{value * 1000:g} ms" if 0 < value < 1 else f"{value:g} s"
    if unit == "fraction":
        return f"{value * 100:g}%"
    if unit == "factor":
        return f"x{value:g}"
    if unit == "x":
        return f"{value:g}x"
    return f"{value:g} {unit}" if unit else f"{value:g}"


def target_text(action: ActionInfo, target: str, snap: Snapshot) -> str:
    """How a line names its target: a fault by what it is, a node by kind where that helps."""
    if not target:
        return action.default_target
    if "fault" in action.targets:
        f = next((f for f in snap.faults if f.id == target), None)
        return f"{target}: {human(f.kind)} on {f.target or 'everything'}" if f else target
    node = snap.find(target)
    kind = node.kind if node is not None and len(action.targets) == 1 and \
        action.group == "fault" else ""
    if not kind or kind in action.name or action.targets == ("region",):
        return target
    return f"{kind} {target}"


def targets(action: ActionInfo, snap: Snapshot) -> list[str]:
    """The ids an entry can target now ('' for none or the default)."""
    if not action.targets:
        return [""]
    found: list[str] = []
    for kind in action.targets:
        if kind == "region":
            found += [r.name for r in snap.regions]
        elif kind == "fault":
            found += [f.id for f in snap.faults]
        else:
            found += [n.id for n in snap.nodes if n.kind == kind]
    found = list(dict.fromkeys(found))
    return ([""] if action.target_optional else []) + found


def variants(action: ActionInfo) -> list[dict[str, Scalar]]:
    """Parameter sets worth a line: the first offered parameter's default, presets, choices or
    both values of a switch; one set of the key's parameters when a phrase names none."""
    if action.phrase and "{" not in action.phrase and action.keys:
        return [dict(action.keys[0].params)]
    for p in action.params:
        values: list[Scalar] = []
        if p.type == "choice":
            values = list(p.choices)
        elif p.type == "bool":
            values = [True, False]
        elif p.presets:
            values = [v for v in (p.default, *p.presets) if v is not None]
        if values:
            unset: list[dict[str, Scalar]] = [{}] if p.default is None and not p.required \
                else []
            return unset + [{p.name: v} for v in dict.fromkeys(values)]
    return [{}]


def wording(action: ActionInfo, target: str, params: dict[str, Scalar], snap: Snapshot) -> str:
    """The line's text: the entry's phrase filled in, or its name, parameters and target."""
    shown = {k: value_text(action.param(k), v) for k, v in params.items()}
    where = target_text(action, target, snap)
    phrase = action.phrase
    if phrase and ("{target}" not in phrase or where):
        try:
            return phrase.format(target=where, **shown)
        except (KeyError, IndexError):
            pass
    parts = [human(action.name), *shown.values(), f"on {where}" if target else where]
    return " ".join(p for p in parts if p)


def choices(catalogue: Iterable[ActionInfo], snap: Snapshot,
            first: AnyNode | None = None) -> Iterator[CommandChoice]:
    """Every entry on every target with its parameter variants; ``first``'s come first."""
    lines: list[tuple[bool, ActionInfo, str]] = []
    for action in catalogue:
        for target in targets(action, snap):
            lines.append((first is None or target != first.id, action, target))
    lines.sort(key=lambda line: line[0])
    cat = list(catalogue)
    for _, action, target in lines:
        key = key_of(cat, action.name)
        hint = action.description + (f" (key {key})" if key else "")
        for params in variants(action):
            text = wording(action, target, params, snap)
            yield CommandChoice(text, hint, Command(action.name, target, dict(params),
                                                    origin="palette"))
