"""How a catalogue entry is declared: one :class:`Action` per thing a user can do.

An action has a name, a group (``fault``, ``control`` or ``driver``), what it can target, typed
parameters with bounds, choices and presets, the keys that send it, and the function that applies
it (and, for a reversible fault, the one that clears it). Validation, dispatch, the help screen,
the palette and the key map are all generated from these declarations, so a new action is one
entry in one module (``core/faults.py`` for faults).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stackyard.core.protocol import (
    ActionGroup,
    ActionInfo,
    KeyInfo,
    ParamInfo,
    ParamType,
    Scalar,
    TargetKind,
    show,
)

RELATIVE = ("next", "previous")
TOGGLE = "toggle"


class CommandError(ValueError):
    """A command that cannot apply; the message says which field and what was expected."""


@dataclass(frozen=True)
class Param:
    """A typed parameter. ``default`` None makes it optional with no fixed default."""

    name: str
    type: ParamType = "number"
    default: Scalar | None = None
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    steps: tuple[float, ...] = ()
    relative: bool = False
    unit: str = ""
    presets: tuple[Scalar, ...] = ()
    help: str = ""
    required: bool = False
    what: str = ""
    """How an error describes a valid value ('' = from the type and bounds)."""

    def info(self) -> ParamInfo:
        return ParamInfo(name=self.name, type=self.type, default=self.default, min=self.min,
                         max=self.max, choices=self.choices, steps=self.steps,
                         relative=self.relative or self.type == "choice", unit=self.unit,
                         presets=self.presets, help=self.help, required=self.required)

    def expected(self) -> str:
        if self.what:
            return self.what
        lo, hi = self.min, self.max
        if self.type == "bool":
            return "true or false" + (" or 'toggle'" if self.relative else "")
        if self.type == "choice":
            return f"one of {', '.join(self.choices)}"
        noun = "an integer" if self.type == "integer" else "a number"
        if self.unit == "s":
            noun = "seconds"
        if lo is not None and hi is not None:
            return f"{noun} between {lo:g} and {hi:g}"
        if lo is not None:
            return f"{noun} >= {lo:g}"
        return noun

    def check(self, value: object, where: str, current: Scalar | None = None) -> Scalar:
        """``value`` as this parameter's type, within its bounds; relative values (``next``,
        ``previous``, ``toggle``) are resolved against ``current``."""
        if isinstance(value, str) and (value in RELATIVE or value == TOGGLE) and \
                (self.relative or self.type == "choice"):
            return self._relative(value, where, current)
        kind = self.type
        if kind == "bool":
            if isinstance(value, bool):
                return value
        elif kind == "choice":
            if isinstance(value, str) and value in self.choices:
                return value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if kind == "integer":
                if isinstance(value, float) and not value.is_integer():
                    raise CommandError(f"{where}: expected {self.expected()}, got {show(value)}")
                number: float = int(value) if math.isfinite(value) else value
            else:
                number = float(value)
            if math.isfinite(number) and (self.min is None or number >= self.min) and \
                    (self.max is None or number <= self.max):
                return number
        raise CommandError(f"{where}: expected {self.expected()}, got {show(value)}")

    def _relative(self, token: str, where: str, current: Scalar | None) -> Scalar:
        if current is None:
            raise CommandError(f"{where}: {token!r} needs a current value, and there is none")
        if self.type == "bool":
            if token != TOGGLE:
                raise CommandError(f"{where}: expected true, false or 'toggle', got {token!r}")
            return not bool(current)
        if token == TOGGLE:
            raise CommandError(f"{where}: expected {self.expected()} or next/previous, "
                               f"got 'toggle'")
        up = token == "next"
        if self.type == "choice":
            names = self.choices
            index = names.index(str(current)) if current in names else -1
            return names[(index + (1 if up else -1)) % len(names)]
        if self.steps:
            x = float(current)
            if up:
                return next((s for s in self.steps if s > x + 1e-9), self.steps[-1])
            return next((s for s in reversed(self.steps) if s < x - 1e-9), self.steps[0])
        x = float(current) + (1 if up else -1)
        if self.min is not None:
            x = max(x, self.min)
        if self.max is not None:
            x = min(x, self.max)
        return int(x) if self.type == "integer" else x


@dataclass(frozen=True)
class Key:
    """A key bound to the action (see :class:`~core.protocol.KeyInfo` for ``scope``)."""

    key: str
    label: str
    scope: str = "global"
    params: Mapping[str, Scalar] = field(default_factory=dict)
    kinds: tuple[TargetKind, ...] = ()
    """The node kinds it acts on, when fewer than the action's targets."""
    footer: bool = False
    """Worth a place in a footer besides the selected node's keys."""

    def info(self) -> KeyInfo:
        return KeyInfo(key=self.key, label=self.label, scope=self.scope,  # type: ignore[arg-type]
                       params=dict(self.params), kinds=self.kinds, footer=self.footer)


@dataclass(frozen=True)
class Action:
    """One catalogue entry.

    ``apply`` depends on the group: a fault's is ``inject(world, target, params, fault) -> why``;
    a control's is ``apply(engine, target, params) -> result``; a driver's is
    ``apply(driver, params) -> result``. ``clear`` (faults only) makes the fault reversible.
    ``current`` gives the present values that relative parameters step from."""

    name: str
    group: ActionGroup
    description: str
    apply: Callable[..., Any]
    targets: tuple[TargetKind, ...] = ()
    target_optional: bool = False
    params: tuple[Param, ...] = ()
    keys: tuple[Key, ...] = ()
    clear: Callable[..., None] | None = None
    phrase: str = ""
    current: Callable[[Any], Mapping[str, Scalar]] | None = None
    default_target: str = ""
    """What an optional target left empty means, in words."""
    claims: Callable[[Any, str], frozenset[str]] | None = None
    """What a reversible fault takes over on ``target``: two active faults may not claim the
    same thing, since each restores what it replaced (None: the kind and target)."""
    healed: Callable[[Any, str], bool] | None = None
    """For a fault that heals on its own (a kill): whether ``target`` has recovered, so a
    viewer counts the fault until then (None: it is over once applied, e.g. a purge)."""

    @property
    def reversible(self) -> bool:
        return self.clear is not None

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def info(self) -> ActionInfo:
        return ActionInfo(name=self.name, group=self.group, description=self.description,
                          targets=self.targets, target_optional=self.target_optional,
                          params=tuple(p.info() for p in self.params),
                          reversible=self.reversible, keys=tuple(k.info() for k in self.keys),
                          phrase=self.phrase, default_target=self.default_target)

    def resolve(self, given: Mapping[str, object], context: Any = None,
                *, partial: bool = False) -> dict[str, Scalar]:
        """The parameters to apply: defaults overlaid with ``given``, each checked and relative
        values resolved (against ``self.current(context)``). ``partial``: leave required
        parameters unchecked for absence (validating a command scheduled for later)."""
        known = {p.name: p for p in self.params}
        for key in given:
            if key not in known:
                names = ", ".join(known) or "none"
                raise CommandError(f"{self.name}: unknown parameter {show(key)} "
                                   f"(parameters: {names})")
        relative = any(isinstance(v, str) and (v in RELATIVE or v == TOGGLE)
                       for v in given.values())
        current: Mapping[str, Scalar] = {}
        if relative and self.current is not None and context is not None:
            current = self.current(context)
        out: dict[str, Scalar] = {}
        for p in self.params:
            if p.name in given:
                out[p.name] = p.check(given[p.name], f"{self.name}.{p.name}",
                                      current.get(p.name))
            elif p.default is not None:
                out[p.name] = p.default
            elif p.required and not partial:
                raise CommandError(f"{self.name}.{p.name}: missing (expected {p.expected()})")
        return out


DURATION = Param("duration", "number", 0.0, min=0.0, max=1e7, unit="s",
                 help="seconds until it clears itself (0: until cleared by hand)",
                 what="seconds >= 0 and at most 10000000")
"""The parameter every reversible fault takes."""


def catalogue_info(actions: Mapping[str, Action]) -> tuple[ActionInfo, ...]:
    """The records a viewer reads."""
    return tuple(a.info() for a in actions.values())
