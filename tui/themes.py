"""Themes as data: TOML files turned into :class:`textual.theme.Theme`.

Built-in themes ship in the ``themes`` package; user themes live in
``$XDG_CONFIG_HOME/stackyard/themes/`` (``~/.config/stackyard/themes/``). A file that is not a
valid theme gives a one-line problem naming the file and field, never a crash.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from textual.color import Color, ColorParseError
from textual.theme import Theme

COLOUR_FIELDS = ("primary", "secondary", "accent", "warning", "error", "success", "foreground",
                 "background", "surface", "panel", "boost")
ALIASES = {"dark": "stackyard-dark", "light": "stackyard-light",
           "high-contrast": "stackyard-high-contrast", "ansi": "stackyard-ansi",
           "ansi-16": "stackyard-ansi"}
"""Short names accepted by ``--theme``."""
DEFAULT = "stackyard-dark"


class ThemeError(ValueError):
    """A theme file that cannot be used; the message names the file and the field."""


@dataclass
class ThemeSet:
    """The themes found, and the problems with the files that were not themes."""

    themes: list[Theme] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return [t.name for t in self.themes]


def _colour(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ThemeError(f"{where}: expected a colour string, got {value!r}")
    if value.startswith("ansi_"):
        return value
    try:
        Color.parse(value)
    except ColorParseError:
        raise ThemeError(f"{where}: expected a colour such as '#1e90ff' or 'ansi_blue', "
                         f"got {value!r}") from None
    return value


def theme_from_dict(data: dict[str, Any], source: str) -> Theme:
    """A Theme from a parsed TOML table; ThemeError names ``source`` and the field."""
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ThemeError(f"{source}: name: expected a non-empty string, got {name!r}")
    if "primary" not in data:
        raise ThemeError(f"{source}: primary: missing (every theme needs a primary colour)")
    known = {"name", "dark", "ansi", "luminosity_spread", "text_alpha", "variables",
             *COLOUR_FIELDS}
    for key in data:
        if key not in known:
            raise ThemeError(f"{source}: {key}: unknown key (keys: {', '.join(sorted(known))})")
    kwargs: dict[str, Any] = {"name": name.strip()}
    for key in COLOUR_FIELDS:
        if key in data:
            kwargs[key] = _colour(data[key], f"{source}: {key}")
    for key in ("dark", "ansi"):
        if key in data:
            if not isinstance(data[key], bool):
                raise ThemeError(f"{source}: {key}: expected true or false, got {data[key]!r}")
            kwargs[key] = data[key]
    for key in ("luminosity_spread", "text_alpha"):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or \
                    not 0 <= value <= 1:
                raise ThemeError(f"{source}: {key}: expected a number from 0 to 1, got {value!r}")
            kwargs[key] = float(value)
    variables = data.get("variables", {})
    if not isinstance(variables, dict):
        raise ThemeError(f"{source}: variables: expected a table, got {variables!r}")
    for key, value in variables.items():
        if not isinstance(value, str):
            raise ThemeError(f"{source}: variables.{key}: expected a string, got {value!r}")
    kwargs["variables"] = dict(variables)
    theme = Theme(**kwargs)
    try:
        theme.to_color_system().generate()
    except Exception as exc:  # a colour Textual cannot derive shades from
        raise ThemeError(f"{source}: {' '.join(str(exc).split())}") from exc
    return theme


def load_theme(text: str, source: str) -> Theme:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ThemeError(f"{source}: not valid TOML ({exc})") from None
    return theme_from_dict(data, source)


def builtin_themes() -> list[Theme]:
    """The themes shipped in the ``themes`` package, in file-name order."""
    out = []
    for entry in sorted(resources.files("stackyard.themes").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            out.append(load_theme(entry.read_text(encoding="utf-8"), f"themes/{entry.name}"))
    order = {name: i for i, name in enumerate(
        ["stackyard-dark", "stackyard-light", "stackyard-high-contrast", "stackyard-ansi"])}
    return sorted(out, key=lambda t: order.get(t.name, len(order)))


def user_theme_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "stackyard" / "themes"


def user_themes(directory: Path | None = None) -> ThemeSet:
    """Themes from the user's directory; bad files become problems, not exceptions."""
    found = ThemeSet()
    directory = user_theme_dir() if directory is None else directory
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.toml")):
        try:
            found.themes.append(load_theme(path.read_text(encoding="utf-8"), str(path)))
        except (ThemeError, OSError, UnicodeDecodeError) as exc:
            found.problems.append(str(exc) if isinstance(exc, ThemeError)
                                  else f"{path}: cannot read ({exc})")
    return found


def resolve_name(name: str, available: list[str]) -> str:
    """The registered theme ``name`` means (short aliases allowed); ThemeError if none."""
    if name in available:
        return name
    alias = ALIASES.get(name)
    if alias in available:
        return alias
    prefixed = f"stackyard-{name}"
    if prefixed in available:
        return prefixed
    shown = sorted({*(k for k, v in ALIASES.items() if v in available and "-16" not in k),
                    *(n for n in available if not n.startswith("stackyard-"))})
    raise ThemeError(f"--theme: no theme {name!r} (themes: {', '.join(shown)})")
