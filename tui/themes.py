"""Themes as data: TOML files turned into :class:`textual.theme.Theme`.

Built-in themes ship in the ``themes`` package; user themes live in
``$XDG_CONFIG_HOME/stackyard/themes/`` (``~/.config/stackyard/themes/``). A file that is not a
valid theme gives a one-line problem naming the file and field, never a crash.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rich.errors import MarkupError
from rich.text import Text
from textual.color import Color, ColorParseError
from textual.css.stylesheet import Stylesheet, StylesheetParseError
from textual.theme import Theme

COLOUR_FIELDS = ("primary", "secondary", "accent", "warning", "error", "success", "foreground",
                 "background", "surface", "panel", "boost")
ALIASES = {"dark": "stackyard-dark", "light": "stackyard-light",
           "high-contrast": "stackyard-high-contrast", "ansi": "stackyard-ansi",
           "ansi-16": "stackyard-ansi"}
"""Short names accepted by ``--theme``."""
DEFAULT = "stackyard-dark"
MAX_FILE = 64 * 1024
"""Bytes read from a theme file; a longer one is skipped (a theme is a few hundred bytes)."""
MAX_VARIABLES = 256
"""CSS variables one theme may set (Textual defines about 170)."""
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.+-]{0,39}")
_PROBES = ("color", "text-style", "background")
"""CSS properties tried, in order, to learn what kind of value a Textual variable holds."""


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
        raise ThemeError(f"{where}: expected a colour string, got {_short(value)}")
    if value.startswith("ansi_"):
        return value
    try:
        Color.parse(value)
    except ColorParseError:
        raise ThemeError(f"{where}: expected a colour such as '#1e90ff' or 'ansi_blue', "
                         f"got {_short(value)}") from None
    return value


def theme_from_dict(data: dict[str, Any], source: str) -> Theme:
    """A Theme from a parsed TOML table; ThemeError names ``source`` and the field."""
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ThemeError(f"{source}: name: expected a non-empty string, got {_short(name)}")
    if not NAME.fullmatch(name.strip()):
        raise ThemeError(f"{source}: name: expected up to 40 letters, digits, spaces and "
                         f"'_.+-', got {_short(name)}")
    if "primary" not in data:
        raise ThemeError(f"{source}: primary: missing (every theme needs a primary colour)")
    known = {"name", "dark", "ansi", "luminosity_spread", "text_alpha", "variables",
             *COLOUR_FIELDS}
    for key in data:
        if key not in known:
            raise ThemeError(f"{source}: {_cut(key)}: unknown key (keys: "
                             f"{', '.join(sorted(known))})")
    kwargs: dict[str, Any] = {"name": name.strip()}
    for key in COLOUR_FIELDS:
        if key in data:
            kwargs[key] = _colour(data[key], f"{source}: {key}")
    for key in ("dark", "ansi"):
        if key in data:
            if not isinstance(data[key], bool):
                raise ThemeError(f"{source}: {key}: expected true or false, "
                                 f"got {_short(data[key])}")
            kwargs[key] = data[key]
    for key in ("luminosity_spread", "text_alpha"):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or \
                    not 0 <= value <= 1:
                raise ThemeError(f"{source}: {key}: expected a number from 0 to 1, "
                                 f"got {_short(value)}")
            kwargs[key] = float(value)
    variables = data.get("variables", {})
    if not isinstance(variables, dict):
        raise ThemeError(f"{source}: variables: expected a table, got {variables!r}")
    if len(variables) > MAX_VARIABLES:
        raise ThemeError(f"{source}: variables: {len(variables)} of them; at most "
                         f"{MAX_VARIABLES}")
    for key, value in variables.items():
        if not isinstance(value, str):
            raise ThemeError(f"{source}: variables.{_cut(key)}: expected a string, got "
                             f"{_short(value)}")
    try:
        generated = Theme(**kwargs).to_color_system().generate()
    except Exception as exc:  # a colour Textual cannot derive shades from
        raise ThemeError(f"{source}: {' '.join(str(exc).split())}") from exc
    _check_variables(variables, generated, source)
    return Theme(**kwargs, variables=dict(variables))


def _short(value: Any) -> str:
    """``value`` as written in a message, cut to 60 characters."""
    return _cut(repr(value))


def _cut(text: str, width: int = 60) -> str:
    return text if len(text) <= width else f"{text[:width - 3]}..."


def _parse_css(css: str, variables: dict[str, str]) -> str | None:
    """Parse ``css`` with ``variables`` as Textual does when a theme is applied; the first
    problem in one line, or None."""
    sheet = Stylesheet(variables=variables)
    sheet.add_source(css, read_from=("theme", ""))
    try:
        sheet.parse()
    except StylesheetParseError as exc:
        for rule in exc.errors.rules:
            for _token, help_text in rule.errors:
                return _plain(str(getattr(help_text, "summary", help_text)))
        return "not valid CSS"
    except Exception as exc:  # the tokenizer's errors, a variable referring to itself, ...
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def _plain(markup: str) -> str:
    """Textual's help text without its markup, in one line."""
    try:
        text = Text.from_markup(markup).plain
    except MarkupError:
        text = markup
    return " ".join(text.split())


_kinds: dict[str, str | None] = {}
"""For each Textual variable: the CSS property its default value fits (see _PROBES)."""


def _kind(name: str, default: str) -> str | None:
    if name not in _kinds:
        _kinds[name] = next((prop for prop in _PROBES
                             if _parse_css(f"Screen {{ {prop}: {default}; }}", {}) is None), None)
    return _kinds[name]


def _check_variables(given: dict[str, str], generated: dict[str, str], source: str) -> None:
    """Every variable in ``given`` must parse where Textual uses it, or choosing the theme
    would stop the app: each is used in the property its default (in ``generated``) fits."""
    if not given:
        return
    variables = {**generated, **given}
    uses = {name: prop for name in given
            if name in generated and (prop := _kind(name, generated[name]))}
    css = "".join(f"Screen {{ {prop}: ${name}; }}\n" for name, prop in uses.items())
    if _parse_css(css, variables) is None:
        return
    for name, value in given.items():
        prop = uses.get(name)
        rule = f"Screen {{ {prop}: ${name}; }}" if prop else ""
        problem = _parse_css(rule, {**generated, name: value})
        if problem:
            default = f", Textual default {generated[name]!r}" if prop else ""
            raise ThemeError(f"{source}: variables.{_cut(name)}: {_cut(problem, 160)} "
                             f"(got {_short(value)}{default})")
    raise ThemeError(f"{source}: variables: they do not parse together (a variable refers to "
                     "another that does not fit, or to itself)")


def load_theme(text: str, source: str) -> Theme:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ThemeError(f"{source}: not valid TOML ({exc})") from None
    except RecursionError:
        raise ThemeError(f"{source}: not a theme (arrays or tables nested too deeply)") from None
    return theme_from_dict(data, source)


def read_theme_file(path: Path) -> str:
    """The text of a user theme file; ThemeError for anything but a small regular file (a FIFO
    would block start-up, a link to /dev/zero would never end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ThemeError(f"{path}: cannot read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ThemeError(f"{path}: not a regular file")
        data = f.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        raise ThemeError(f"{path}: larger than {MAX_FILE // 1024} KiB; not a theme")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ThemeError(f"{path}: not UTF-8 text") from None


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
            found.themes.append(load_theme(read_theme_file(path), str(path)))
        except ThemeError as exc:
            found.problems.append(str(exc))
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
