"""TOML scenarios: load, validate and convert into the frozen dataclasses of :mod:`core.config`.

Validation collects every problem, one line each (``key.path: expected ..., got ...``), and
raises them together as a :class:`~core.config.ScenarioError`. Keys a file leaves out keep their
defaults; built-in scenarios ship as ``core/scenarios/<name>.toml``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import stat
import tomllib
import types
import typing
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from stackyard.core.checks import spec_problems
from stackyard.core.config import (
    ENDPOINTS,
    MAX_DURATION,
    MAX_NUMBER,
    MAX_RATE,
    LinkConfig,
    Scenario,
    ScenarioError,
)

__all__ = [
    "ScenarioError",
    "builtin_description",
    "builtin_names",
    "load_builtin",
    "load_scenario",
    "parse_duration",
    "resolve",
    "scenario_from_dict",
    "scenario_to_dict",
    "scenario_with",
]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION = re.compile(rf"(?:{_NUMBER}\s*(?:ms|s|m|h)\s*)+")
_DURATION_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h)")
_DURATION_HINT = "a duration such as '250ms', '30s', '10m', '1h30m' or a number of seconds"

_NAME = re.compile(r"[a-z0-9-]+")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_MERGED_DICTS = frozenset({"network.links"})
"""Tables whose entries merge over the default entries (the engine needs every default link);
every other table given in a file replaces its default wholesale."""
_FIXED_LINKS = ("lb-app", "app-db", "db-repl")
_BUILTIN_PACKAGE = "stackyard.core.scenarios"
_INVALID: Any = object()
_TOO_DEEP = ("arrays or tables nested too deeply to read (a scenario needs at most a few "
             "levels)")
MAX_FILE = 1024 * 1024
"""Bytes in a scenario file (1,000 scheduled faults take about 100 KB)."""
MAX_KEY_PARTS = 16
"""Parts of one dotted key; the schema is at most five deep, and tomllib takes time quadratic
in the parts of a key (50,000 parts: 14 s), so longer keys are refused before parsing."""
_LONG_KEY = re.compile(
    r"(?:(?>[A-Za-z0-9_-]+|\"[^\"\n]*\"|'[^'\n]*')[ \t]*+\.[ \t]*+)"
    rf"{{{MAX_KEY_PARTS}}}")
_SHOWN = 60
"""Characters of a value shown in a message."""


def _cut(text: str) -> str:
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN - 3]}... ({len(text)} characters)"


def parse_duration(value: str | int | float) -> float:
    """Seconds from a number of seconds or a string like ``"250ms"``, ``"1.5s"``, ``"1h30m"``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected {_DURATION_HINT}, got {_describe(value)}")
    if isinstance(value, str):
        if len(value) > 100:
            raise ValueError(f"expected {_DURATION_HINT}, got {_cut(repr(value))}")
        body = value.strip().lower()
        sign = 1.0
        if body[:1] in ("+", "-"):
            sign = -1.0 if body[0] == "-" else 1.0
            body = body[1:].lstrip()
        try:
            seconds = float(body)
        except ValueError:
            if not body or not _DURATION.fullmatch(body):
                raise ValueError(f"expected {_DURATION_HINT}, got {_cut(repr(value))}") from None
            seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(body))
        seconds *= sign
    else:
        seconds = _float(value)
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite duration, got {_cut(repr(value))}")
    return seconds


def _float(value: int | float) -> float:
    """``float(value)``, with an integer too large for a float as infinity."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


# --- loading ------------------------------------------------------------------------------


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a TOML scenario file; every problem is reported in one ScenarioError."""
    source = str(path)
    p = Path(path)
    try:
        raw = _read_file(p)
    except FileNotFoundError:
        raise ScenarioError(["no such file"], source) from None
    except IsADirectoryError:
        raise ScenarioError(["is a directory, expected a TOML scenario file"], source) from None
    except PermissionError:
        raise ScenarioError(["cannot read: permission denied"], source) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ScenarioError([f"cannot read: {reason}"], source) from None
    return _from_bytes(raw, source)


def _read_file(path: Path) -> bytes:
    """At most MAX_FILE + 1 bytes of the regular file ``path`` (a FIFO or a device would block
    or never end)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(mode):
            raise OSError(0, "not a regular file")
        return f.read(MAX_FILE + 1)


def scenario_from_dict(data: dict[str, Any], source: str) -> Scenario:
    """Validate a parsed scenario (TOML or JSON shaped) and merge it over the defaults."""
    builder = _Builder()
    try:
        scenario = builder.build(data)
    except RecursionError:
        raise ScenarioError([_TOO_DEEP], source) from None
    if builder.problems:
        raise ScenarioError(builder.problems, source)
    return scenario


def scenario_with(base: Scenario, data: dict[str, Any], source: str) -> Scenario:
    """``base`` with the keys of ``data`` (shaped like a scenario file) changed, validated like
    a file: every problem is reported in one ScenarioError."""
    builder = _Builder(merge=True)
    scenario = builder.check(builder.table(Scenario, data, "", base))
    if builder.problems:
        raise ScenarioError(builder.problems, source)
    return scenario


def scenario_to_dict(s: Scenario) -> dict[str, Any]:
    """A JSON-serialisable dict (durations in seconds) that ``scenario_from_dict`` accepts."""
    return dataclasses.asdict(s)


def builtin_names() -> list[str]:
    """Names of the built-in scenarios, ``default`` first, then alphabetical."""
    names = [
        entry.name.removesuffix(".toml")
        for entry in resources.files(_BUILTIN_PACKAGE).iterdir()
        if entry.name.endswith(".toml") and entry.is_file()
    ]
    return sorted(names, key=lambda n: (n != "default", n))


def load_builtin(name: str) -> Scenario:
    """Load the built-in scenario ``name`` (raises ScenarioError if there is none)."""
    if name not in builtin_names():
        raise ScenarioError([_unknown_scenario(name)], name)
    raw = resources.files(_BUILTIN_PACKAGE).joinpath(f"{name}.toml").read_bytes()
    return _from_bytes(raw, name)


def builtin_description(name: str) -> str:
    """The one-line ``[run] description`` of a built-in scenario."""
    return load_builtin(name).run.description


def resolve(name_or_path: str) -> Scenario:
    """A built-in scenario by name, else a scenario file by path."""
    if name_or_path in builtin_names():
        return load_builtin(name_or_path)
    p = Path(name_or_path)
    if p.exists() or "/" in name_or_path or "\\" in name_or_path or p.suffix == ".toml":
        return load_scenario(p)
    raise ScenarioError([_unknown_scenario(name_or_path)], name_or_path)


def _unknown_scenario(name: str) -> str:
    names = builtin_names()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"no such built-in scenario or file ({hint}built-ins: {', '.join(names)})"


def read_file(path: Path) -> bytes:
    """At most MAX_FILE + 1 bytes of a regular file (OSError for anything else)."""
    return _read_file(path)


def parse_toml(raw: bytes, source: str, what: str = "scenario") -> dict[str, Any]:
    """``raw`` as TOML, refusing what is too big, binary, not UTF-8 or nested absurdly (a
    ScenarioError of one line naming ``source``; ``what`` names the kind of file)."""
    if len(raw) > MAX_FILE:
        raise ScenarioError([f"larger than {MAX_FILE // 1024} KiB; not a {what}"], source)
    if b"\x00" in raw:
        raise ScenarioError([f"binary file, expected a UTF-8 TOML {what}"], source)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        msg = f"not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}), expected TOML"
        raise ScenarioError([msg], source) from None
    long_key = _LONG_KEY.search(text)
    if long_key:
        line = text.count("\n", 0, long_key.start()) + 1
        raise ScenarioError([f"line {line}: a dotted key of more than {MAX_KEY_PARTS} parts "
                             f"({_cut(long_key.group())}); {what} keys have at most five"],
                            source)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError([f"invalid TOML: {exc}"], source) from None
    except RecursionError:
        raise ScenarioError([f"invalid TOML: {_TOO_DEEP}"], source) from None


def _from_bytes(raw: bytes, source: str) -> Scenario:
    data = parse_toml(raw, source)
    if not data:
        raise ScenarioError(["empty scenario; expected TOML tables such as [traffic]"], source)
    return scenario_from_dict(data, source)


# --- validation ---------------------------------------------------------------------------


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _join(path: str, key: str) -> str:
    part = key if _BARE_KEY.fullmatch(key) else json.dumps(key)
    part = _cut(part)
    return f"{path}.{part}" if path else part


def _fmt(x: float) -> str:
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))  # 10000000, not 1e+07
    return f"{x:g}"


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _fmt(value)
    if isinstance(value, str):
        return _cut(repr(value))
    return _cut(str(value))


def _describe(value: Any) -> str:
    """A value and its TOML kind, for 'got ...' in a type error."""
    if isinstance(value, bool):
        return f"{_plain(value)} (a boolean)"
    if isinstance(value, int):
        return f"{_cut(str(value))} (an integer)"
    if isinstance(value, float):
        return f"{_fmt(value)} (a float)"
    if isinstance(value, str):
        return f"{_cut(repr(value))} (a string)"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"{_cut(str(value))} (a {type(value).__name__})"


def _bounds(kind: str, lo: float | None, hi: float | None, unit: str = "") -> str:
    if hi == MAX_DURATION:
        return f"{kind} of at most {_fmt(hi / 86400)} days"
    if lo is not None and hi is not None:
        return f"{kind} between {_fmt(lo)}{unit} and {_fmt(hi)}{unit}"
    if lo is not None:
        return f"{kind} >= {_fmt(lo)}{unit}"
    if hi is not None:
        return f"{kind} <= {_fmt(hi)}{unit}"
    return kind


class _Builder:
    """Walks parsed data against the dataclass schema, collecting problems as it goes."""

    def __init__(self, merge: bool = False) -> None:
        self.problems: list[str] = []
        self._failed: set[str] = set()
        """Every path with a problem and every path above it (``faults[2].kind`` adds
        ``faults``, ``faults[2]`` and ``faults[2].kind``): checks stay linear in the problems."""
        self.merge = merge
        """Every table merges over what is there (changing a scenario, not writing a file)."""

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}" if path else message)
        for i, ch in enumerate(path):
            if ch in ".[":
                self._failed.add(path[:i])
        self._failed.add(path)

    def failed_under(self, *prefixes: str) -> bool:
        return any(p in self._failed for p in prefixes)

    def build(self, data: Any) -> Scenario:
        if not isinstance(data, dict):
            self.fail("", f"expected a table of scenario sections, got {_describe(data)}")
            return Scenario()
        scenario = self.table(Scenario, data, "", Scenario())
        return self.check(scenario)

    def table(self, cls: type, data: Any, path: str, base: Any) -> Any:
        if not isinstance(data, dict):
            self.fail(path, f"expected a table, got {_describe(data)}")
            return base
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = _hints(cls)
        changes: dict[str, Any] = {}
        for key, value in data.items():
            sub = _join(path, str(key))
            field = fields.get(key) if isinstance(key, str) else None
            if field is None:
                self.fail(sub, _unknown_key(str(key), list(fields)))
                continue
            result = self.value(hints[key], value, sub, field.metadata, getattr(base, key))
            if result is not _INVALID:
                changes[key] = result
        return dataclasses.replace(base, **changes)

    def value(self, tp: Any, value: Any, path: str, meta: Any, current: Any) -> Any:
        origin = typing.get_origin(tp)
        if dataclasses.is_dataclass(tp):
            return self.table(tp, value, path, current)  # type: ignore[arg-type]
        if origin is dict:
            return self.mapping(typing.get_args(tp)[1], value, path, current, meta)
        if origin is list:
            return self.array(typing.get_args(tp)[0], value, path, meta)
        if origin is Literal:
            return self.choice(typing.get_args(tp), value, path)
        if origin is types.UnionType or origin is typing.Union:
            return self.scalar_union(typing.get_args(tp), value, path, meta)
        if tp is bool:
            if isinstance(value, bool):
                return value
            self.fail(path, f"expected true or false, got {_describe(value)}")
            return _INVALID
        if tp is str:
            longest = meta.get("max_len", 100)
            if not isinstance(value, str):
                self.fail(path, f"expected a string, got {_describe(value)}")
            elif len(value) > longest:
                self.fail(path, f"expected at most {longest} characters, got {_plain(value)}")
            else:
                return value
            return _INVALID
        if tp is int or tp is float:
            return self.number(tp, value, path, meta)
        raise TypeError(f"{path}: unsupported schema type {tp!r}")  # a bug in core.config

    def number(self, tp: type, value: Any, path: str, meta: Any) -> Any:
        lo, hi = meta.get("min"), meta.get("max")
        if hi in (MAX_DURATION, MAX_NUMBER):  # the general cap: named only when it is passed
            shown_hi = hi if isinstance(value, int | float) and abs(_float(value)) > hi else None
        else:
            shown_hi = hi
        if meta.get("unit") == "duration":
            try:
                x = parse_duration(value)
            except ValueError as exc:
                self.fail(path, str(exc))
                return _INVALID
            shown_hi = hi if hi is not None and x > hi else shown_hi
            expected = _bounds("a duration", lo, shown_hi, " s")
        elif tp is int:
            integral = isinstance(value, float) and value.is_integer()
            if isinstance(value, bool) or not (isinstance(value, int) or integral):
                self.fail(path, f"expected {_bounds('an integer', lo, shown_hi)}, "
                                f"got {_describe(value)}")
                return _INVALID
            x = int(value)
            expected = _bounds("an integer", lo, shown_hi)
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.fail(path, f"expected {_bounds('a number', lo, shown_hi)}, "
                                f"got {_describe(value)}")
                return _INVALID
            x = _float(value)
            if not math.isfinite(x):
                self.fail(path, f"expected a finite number, got {_plain(value)}")
                return _INVALID
            expected = _bounds("a number", lo, shown_hi)
        if (lo is not None and x < lo) or (hi is not None and x > hi):
            self.fail(path, f"expected {expected}, got {_plain(value)}")
            return _INVALID
        return x

    def choice(self, choices: tuple[Any, ...], value: Any, path: str) -> Any:
        if value in choices and isinstance(value, str):
            return value
        listed = ", ".join(repr(c) for c in choices)
        close = difflib.get_close_matches(value, choices, n=1) if isinstance(value, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        got = _plain(value) if isinstance(value, str) else _describe(value)
        self.fail(path, f"expected one of {listed}, got {got}{hint}")
        return _INVALID

    def scalar_union(self, options: tuple[Any, ...], value: Any, path: str, meta: Any) -> Any:
        if isinstance(value, bool):
            ok = bool in options
        elif isinstance(value, int | float):
            ok = float in options and math.isfinite(_float(value))
            value = float(value) if ok else value
        else:
            ok = isinstance(value, str) and str in options and len(value) <= 100
        if ok:
            return value
        names = {bool: "a boolean", float: "a number", str: "a string", int: "an integer"}
        wanted = [names[o] for o in options if o in names]
        listed = ", ".join(wanted[:-1]) + f" or {wanted[-1]}" if len(wanted) > 1 else wanted[0]
        self.fail(path, f"expected {listed}, got {_describe(value)}")
        return _INVALID

    def mapping(
        self, item: Any, value: Any, path: str, current: dict[str, Any], meta: Any
    ) -> Any:
        if not isinstance(value, dict):
            self.fail(path, f"expected a table, got {_describe(value)}")
            return _INVALID
        if not self.within(value, path, meta):
            return _INVALID
        named = dataclasses.is_dataclass(item)
        merged = self.merge or path in _MERGED_DICTS
        result: dict[str, Any] = dict(current) if merged else {}
        for key, entry in value.items():
            sub = _join(path, str(key))
            if not isinstance(key, str) or not key:
                self.fail(sub, f"expected a non-empty name, got {_describe(key)}")
                continue
            if named and not _NAME.fullmatch(key):
                self.fail(sub, "expected a name of lowercase letters, digits and '-', "
                               f"got {_cut(repr(key))}")
                continue
            if named and len(key) > 32:
                self.fail(sub, f"expected a name of at most 32 characters, got {len(key)}")
                continue
            if named:
                base = current.get(key) if merged else None
                converted = self.table(item, entry, sub, base if base is not None else item())
            else:
                converted = self.value(item, entry, sub, meta, None)
            if converted is not _INVALID:
                result[key] = converted
        return result

    def array(self, item: Any, value: Any, path: str, meta: Any) -> Any:
        if not isinstance(value, list):
            self.fail(path, f"expected an array of tables ([[{path}]]), got {_describe(value)}")
            return _INVALID
        if not self.within(value, path, meta):
            return _INVALID
        return [self.table(item, v, f"{path}[{i}]", item()) for i, v in enumerate(value)]

    def within(self, value: dict[Any, Any] | list[Any], path: str, meta: Any) -> bool:
        """Whether a table or array has at most the entries its field allows."""
        longest = meta.get("max_len")
        if longest is None or len(value) <= longest:
            return True
        self.fail(path, f"expected at most {longest} entries, got {len(value)}")
        return False

    def check(self, s: Scenario) -> Scenario:
        """Cross-field checks, each skipped when its fields already have problems."""
        for name in ("autoscaler", "vm"):
            group = getattr(s.app, name)
            path = f"app.{name}"
            if not self.failed_under(path) and not group.min <= group.initial <= group.max:
                self.fail(
                    path,
                    f"expected min <= initial <= max, got min={group.min}, "
                    f"initial={group.initial}, max={group.max}",
                )
        mix = s.traffic.mix
        if not self.failed_under("traffic.mix") and mix.static + mix.read + mix.write <= 0:
            got = f"static={_fmt(mix.static)}, read={_fmt(mix.read)}, write={_fmt(mix.write)}"
            self.fail("traffic.mix", f"expected fractions with a sum > 0, got {got}")
        if not self.failed_under("traffic.regions") and not s.traffic.regions:
            self.fail("traffic.regions", "expected at least one region, got none")
        for name in s.app.service.distribution:
            if name not in ENDPOINTS:
                path = _join("app.service.distribution", name)
                self.fail(path, _unknown_key(name, list(ENDPOINTS), what="endpoint"))
        for i, fault in enumerate(s.faults):
            if not self.failed_under(f"faults[{i}].kind") and not fault.kind:
                self.fail(f"faults[{i}].kind", "expected a fault kind such as 'kill_container'")
        for i, action in enumerate(s.actions):
            if not self.failed_under(f"actions[{i}].kind") and not action.kind:
                self.fail(f"actions[{i}].kind", "expected a control such as 'restore'")
        for i, check in enumerate(s.checks):
            if not self.failed_under(f"checks[{i}]"):
                for problem in spec_problems(check, s, f"checks[{i}]"):
                    path, _, message = problem.partition(": ")
                    self.fail(path, message)
        if not self.failed_under("traffic.regions", "faults"):
            peak = peak_rate(s)
            if peak > MAX_RATE:
                self.fail("traffic.regions", f"expected a peak arrival rate of at most "
                          f"{MAX_RATE:.0f}/s in all (rate x pattern x scheduled traffic spikes), "
                          f"got {peak:.6g}/s")
        if self.failed_under("traffic.regions", "network.links"):
            return s
        return self.complete_links(s)

    def complete_links(self, s: Scenario) -> Scenario:
        """Reject unknown link names; give each region without its own links the defaults."""
        regions = list(s.traffic.regions)
        links = dict(s.network.links)
        known = set(_FIXED_LINKS) | {f"{kind}-{r}" for r in regions for kind in ("client", "edge")}
        known |= set(Scenario().network.links)
        for name in links:
            if name not in known:
                hint = _unknown_key(name, sorted(known), what="link")
                self.fail(_join("network.links", name), hint)
        for r in regions:
            for kind in ("client", "edge"):
                links.setdefault(f"{kind}-{r}", LinkConfig())
        if links == s.network.links:
            return s
        return dataclasses.replace(s, network=dataclasses.replace(s.network, links=links))


def peak_rate(s: Scenario) -> float:
    """The highest total arrival rate ``s`` can reach: each region's rate times its pattern's
    peak times the most its scheduled traffic spikes multiply it by at any one time."""
    from stackyard.core.faults import FAULTS

    param = FAULTS["traffic_spike"].param("factor")
    default = float(param.default) if param is not None and param.default is not None else 1.0
    total = 0.0
    for name, region in s.traffic.regions.items():
        p = region.pattern
        pattern = {"spike": p.factor, "ramp": p.factor, "diurnal": 1.0 + p.amplitude}.get(p.kind, 1)
        changes: list[tuple[float, float]] = []  # (time, log factor); ends sort before starts
        for f in s.faults:
            factor = f.params.get("factor", default)
            if f.kind != "traffic_spike" or f.target not in ("", name) or isinstance(
                    factor, bool) or not isinstance(factor, int | float) or not factor > 0:
                continue
            log = math.log(min(float(factor), 1e6))
            changes.append((f.at, log))
            if f.duration:
                changes.append((f.at + f.duration, -log))
        spikes = level = 0.0
        for _, log in sorted(changes, key=lambda c: (c[0], c[1])):
            level += log
            spikes = max(spikes, level)
        total += region.rate * max(1.0, pattern) * math.exp(min(spikes, 100.0))
    return total


def _unknown_key(key: str, valid: list[str], what: str = "key") -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    if close:
        return f"unknown {what} (did you mean {close[0]!r}?)"
    return f"unknown {what} (expected one of: {', '.join(valid)})"
