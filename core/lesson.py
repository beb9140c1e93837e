"""Guided lessons: data files that walk one idea at a time with the live model.

A lesson is a TOML file (built-ins ship in ``core/lessons/``): a title, the scenario and seed it
runs on, steps and a debrief::

    [lesson]
    title = "Failover and lost writes"
    summary = "Kill the primary under async replication and count what is lost."
    scenario = "default"
    seed = 3

    [[steps]]
    text = "The primary db-1 takes every write..."
    keys = ["D"]                      # what to press (or: palette = "a palette line")
    until = "database.failovers >= 1" # a condition on the snapshot (core.condition)
    waiting = "a replica to be promoted"

    [debrief]
    text = "You lost {database.lost_writes:acknowledged write}: ..."

A step may ``select`` a node first (the keys then act on it). The debrief quotes the run's own
figures: ``{path}`` or ``{path:format}`` placeholders over the :class:`RunSummary` (formats:
``pct``, ``ms``, ``s``, ``x``, ``int``, or a noun such as ``write`` or ``entry/entries`` for
``37 writes``). A file is validated like a scenario: every problem on one line naming the file
and the field, and a step or debrief that would not fit a lesson pane at 80x24 is refused.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from stackyard.core.catalogue import CATALOGUE
from stackyard.core.condition import Condition, ConditionError, get_path, parse, walk_type
from stackyard.core.config import Scenario, ScenarioError
from stackyard.core.protocol import RunSummary, Snapshot
from stackyard.core.scenario import parse_toml, read_file

PACKAGE = "stackyard.core.lessons"
PANE_WIDTH = 78
"""Text columns of a lesson pane at 80 columns."""
PANE_LINES = 6
"""Lines of a lesson pane at 80x24 (it takes the event log's place)."""
MAX_STEPS = 12
MAX_TEXT = 600
MAX_KEYS = 8
VIEW_KEYS = {"s": "SQL console", "enter": "", "escape": "", "tab": "", "?": "help",
             "/": "filter events", "L": "lesson or events", "up": "", "down": "", "j": "",
             "k": ""}
"""Keys of the viewer itself a lesson may ask for, besides the catalogue's."""
TYPE_PREFIX = "type: "
"""A ``keys`` entry that types text rather than pressing a key (``type: SELECT 1``)."""
FORMATS = ("pct", "ms", "s", "x", "int")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.]*)(?::([^{}]*))?\}")


class LessonError(ScenarioError):
    """A lesson file that cannot be used: one line per problem, naming the field."""


@dataclass(frozen=True)
class Step:
    text: str
    until: Condition
    waiting: str
    keys: tuple[str, ...] = ()
    palette: str = ""
    select: str = ""
    do: str = ""

    @property
    def instruction(self) -> str:
        """What the user is asked to do, in words ('' for a step that only waits)."""
        if self.do:
            return self.do
        if self.palette:
            return f"Press ctrl+p, type “{self.palette}” and enter."
        if self.keys:
            labels = _keys()
            shown = [f"type {k.removeprefix(TYPE_PREFIX)}" if k.startswith(TYPE_PREFIX)
                     else f"{k} ({labels[k]})" if labels.get(k) else k for k in self.keys]
            return "Press " + ", then ".join(shown) + "."
        return ""


@dataclass(frozen=True)
class Lesson:
    name: str
    title: str
    summary: str
    scenario: str
    steps: tuple[Step, ...]
    debrief: str
    seed: int | None = None
    order: int = 100
    source: str = ""

    def debrief_text(self, summary: RunSummary) -> str:
        """The debrief with this run's figures filled in."""
        return fill(self.debrief, summary)


# -- the debrief's placeholders --------------------------------------------------------------


def _fmt_number(value: float, spec: str) -> str:
    if spec == "pct":
        return f"{value * 100:.1f}%".replace(".0%", "%")
    if spec == "ms":
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    if spec == "s":
        return f"{value:.1f} s".replace(".0 s", " s")
    if spec == "x":
        return f"{value:.1f}x"
    if spec == "int":
        return f"{round(value)}"
    if spec:  # a noun: 1 write, 37 writes
        one, _, many = spec.partition("/")
        n = round(value)
        return f"{n} {one if n == 1 else many or one + 's'}"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value)}"
    return f"{value:.3g}"


def fill(template: str, summary: RunSummary) -> str:
    """``template`` with each ``{path:format}`` replaced by the summary's figure."""
    def one(m: re.Match[str]) -> str:
        value = get_path(summary, m.group(1).split("."))
        if value is None:
            return "n/a"
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, int | float):
            return _fmt_number(value if math.isfinite(value) else 0.0, m.group(2) or "")
        return str(value)

    return _PLACEHOLDER.sub(one, template)


def placeholders(template: str) -> list[tuple[str, str]]:
    """The (path, format) of every placeholder in ``template``."""
    return [(m.group(1), m.group(2) or "") for m in _PLACEHOLDER.finditer(template)]


# -- loading and validation ------------------------------------------------------------------


def lesson_names() -> list[str]:
    """The built-in lessons, in teaching order."""
    names = [e.name.removesuffix(".toml") for e in resources.files(PACKAGE).iterdir()
             if e.name.endswith(".toml") and e.is_file()]
    return [lesson.name for lesson in sorted((load_builtin(n) for n in names),
                                             key=lambda x: (x.order, x.name))]


def load_builtin(name: str) -> Lesson:
    path = resources.files(PACKAGE).joinpath(f"{name}.toml")
    if not path.is_file():
        raise LessonError([_unknown(name)], name)
    return _from_bytes(path.read_bytes(), name, name)


def resolve_lesson(name_or_path: str) -> Lesson:
    """A built-in lesson by name, else a lesson file by path."""
    if resources.files(PACKAGE).joinpath(f"{name_or_path}.toml").is_file():
        return load_builtin(name_or_path)
    p = Path(name_or_path)
    if p.exists() or "/" in name_or_path or p.suffix == ".toml":
        return load_lesson(p)
    raise LessonError([_unknown(name_or_path)], name_or_path)


def _unknown(name: str) -> str:
    names = sorted(e.name.removesuffix(".toml") for e in resources.files(PACKAGE).iterdir()
                   if e.name.endswith(".toml"))
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"no such lesson or file ({hint}lessons: {', '.join(names)})"


def load_lesson(path: str | Path) -> Lesson:
    source = str(path)
    try:
        raw = read_file(Path(path))
    except FileNotFoundError:
        raise LessonError(["no such file"], source) from None
    except IsADirectoryError:
        raise LessonError(["is a directory, expected a TOML lesson file"], source) from None
    except OSError as exc:
        raise LessonError([f"cannot read: {exc.strerror or exc}"], source) from None
    return _from_bytes(raw, Path(path).stem, source)


def is_lesson(data: dict[str, Any]) -> bool:
    """Whether parsed TOML is a lesson (it has a [lesson] table) rather than a scenario."""
    return isinstance(data.get("lesson"), dict)


def _from_bytes(raw: bytes, name: str, source: str) -> Lesson:
    try:
        data = parse_toml(raw, source, "lesson")
    except ScenarioError as exc:
        raise LessonError(exc.problems, source) from None
    return lesson_from_dict(data, name, source)


def lesson_from_dict(data: dict[str, Any], name: str, source: str) -> Lesson:
    """Validate a parsed lesson; every problem is reported in one LessonError."""
    v = _Validator()
    lesson = v.build(data, name, source)
    if v.problems or lesson is None:
        raise LessonError(v.problems, source)
    return lesson


@cache
def _keys() -> dict[str, str]:
    """Every key a lesson may ask for, with what it does in a word or two."""
    out = dict(VIEW_KEYS)
    for action in CATALOGUE.values():
        for k in action.keys:
            out.setdefault(k.key, k.label)
    return out


def _fits(lines: int) -> bool:
    return lines <= PANE_LINES


def wrapped(text: str, width: int = PANE_WIDTH) -> int:
    """Lines ``text`` takes wrapped at ``width`` (as the lesson pane wraps it)."""
    count = 0
    for paragraph in text.split("\n"):
        line = 0
        count += 1
        for word in paragraph.split():
            w = min(len(word), width)
            if line and line + 1 + w > width:
                count += 1
                line = w
            else:
                line += (1 if line else 0) + w
    return count


class _Validator:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def text(self, table: dict[str, Any], key: str, where: str, *, required: bool = True,
             limit: int = MAX_TEXT) -> str:
        value = table.get(key)
        if value is None:
            if required:
                self.fail(f"{where}.{key}", "missing (expected a string)")
            return ""
        if not isinstance(value, str) or (required and not value.strip()):
            self.fail(f"{where}.{key}", f"expected a non-empty string, got {value!r}"[:200])
            return ""
        if len(value) > limit:
            self.fail(f"{where}.{key}", f"longer than {limit} characters ({len(value)})")
            return ""
        return " ".join(value.split()) if "\n\n" not in value else value.strip()

    def unknown(self, table: dict[str, Any], known: tuple[str, ...], where: str) -> None:
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else \
                    f"expected one of: {', '.join(known)}"
                self.fail(f"{where}.{key}" if where else str(key), f"unknown key ({hint})")

    def build(self, data: dict[str, Any], name: str, source: str) -> Lesson | None:
        self.unknown(data, ("lesson", "steps", "debrief"), "")
        head = data.get("lesson")
        if not isinstance(head, dict):
            self.fail("lesson", "missing table [lesson] (title, summary, scenario)")
            return None
        self.unknown(head, ("title", "summary", "scenario", "seed", "order"), "lesson")
        title = self.text(head, "title", "lesson", limit=60)
        summary = self.text(head, "summary", "lesson", limit=200)
        scenario_name = self.text(head, "scenario", "lesson", limit=200)
        seed = head.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                                 or not 0 <= seed < 2**63):
            self.fail("lesson.seed", f"expected an integer >= 0, got {seed!r}")
            seed = None
        order = head.get("order", 100)
        if isinstance(order, bool) or not isinstance(order, int) or not 0 <= order <= 10_000:
            self.fail("lesson.order", f"expected an integer between 0 and 10000, got {order!r}")
            order = 100
        snap = self._initial(scenario_name, seed) if scenario_name else None
        ids: dict[str, str] = {n.id: str(n.kind) for n in snap.nodes} if snap is not None \
            else {}
        steps = self.steps(data.get("steps"), ids)
        debrief_table = data.get("debrief")
        debrief = ""
        if not isinstance(debrief_table, dict):
            self.fail("debrief", "missing table [debrief] with its text")
        else:
            self.unknown(debrief_table, ("text",), "debrief")
            debrief = self.text(debrief_table, "text", "debrief")
            self.check_debrief(debrief)
        if self.problems:
            return None
        return Lesson(name=name, title=title, summary=summary, scenario=scenario_name,
                      steps=tuple(steps), debrief=debrief, seed=seed, order=order,
                      source=source)

    def _initial(self, scenario_name: str, seed: int | None) -> Snapshot | None:
        """The scenario's first snapshot (its node ids), or None with the problem noted."""
        from stackyard.core.engine import Engine
        from stackyard.core.scenario import resolve

        try:
            sc: Scenario = resolve(scenario_name)
            return Engine(sc, seed=seed).snapshot()
        except ScenarioError as exc:
            first = exc.lines()[0] if exc.lines() else "invalid"
            self.fail("lesson.scenario", f"{first} ({len(exc.problems)} problem(s))")
        return None

    def steps(self, raw: Any, ids: dict[str, str]) -> list[Step]:
        if not isinstance(raw, list) or not raw:
            self.fail("steps", "missing: expected [[steps]] tables (at least one)")
            return []
        if len(raw) > MAX_STEPS:
            self.fail("steps", f"expected at most {MAX_STEPS} steps, got {len(raw)}")
            return []
        keys = _keys()
        out: list[Step] = []
        for i, table in enumerate(raw):
            where = f"steps[{i}]"
            if not isinstance(table, dict):
                self.fail(where, "expected a table")
                continue
            self.unknown(table, ("text", "do", "keys", "palette", "select", "until", "waiting"),
                         where)
            text = self.text(table, "text", where)
            do = self.text(table, "do", where, required=False, limit=160)
            waiting = self.text(table, "waiting", where, limit=70)
            palette = self.text(table, "palette", where, required=False, limit=70)
            select = self.text(table, "select", where, required=False, limit=40)
            if select and ids and select not in ids:
                self.fail(f"{where}.select", f"no node {select!r} at the start of the scenario")
            step_keys = self.step_keys(table.get("keys", []), keys, f"{where}.keys")
            if palette and step_keys:
                self.fail(where, "give keys or palette, not both")
            until = table.get("until")
            condition: Condition | None = None
            if not isinstance(until, str):
                self.fail(f"{where}.until", "missing: expected a condition such as "
                                            "'database.failovers >= 1'")
            else:
                try:
                    condition = parse(until, f"{where}.until", ids)
                except ConditionError as exc:
                    self.problems.append(str(exc))
            if condition is None:
                continue
            step = Step(text=text, until=condition, waiting=waiting, keys=step_keys,
                        palette=palette, select=select, do=do)
            lines = wrapped(text) + (wrapped("▶ " + step.instruction) if step.instruction
                                     else 0) + 1
            if text and not _fits(lines):
                self.fail(f"{where}.text", f"too long for the lesson pane at 80x24: {lines} "
                                           f"lines with its instruction and waiting line, at "
                                           f"most {PANE_LINES}")
            out.append(step)
        return out

    def step_keys(self, raw: Any, known: dict[str, str], where: str) -> tuple[str, ...]:
        if not isinstance(raw, list) or not all(isinstance(k, str) for k in raw):
            self.fail(where, f"expected a list of keys such as [\"d\"], got {raw!r}"[:200])
            return ()
        if len(raw) > MAX_KEYS:
            self.fail(where, f"expected at most {MAX_KEYS} keys, got {len(raw)}")
            return ()
        for k in raw:
            if k.startswith(TYPE_PREFIX):
                if not 0 < len(k) - len(TYPE_PREFIX) <= 200:
                    self.fail(where, f"{k!r}: expected text to type after {TYPE_PREFIX!r}")
            elif k not in known:
                close = difflib.get_close_matches(k, list(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(where, f"{k!r} is not a key of stackyard{hint}")
        return tuple(raw)

    def check_debrief(self, text: str) -> None:
        if not text:
            return
        stray = _PLACEHOLDER.sub("", text)
        if "{" in stray or "}" in stray:
            self.fail("debrief.text", "a '{' or '}' that is not a {path:format} placeholder")
        for path, spec in placeholders(text):
            try:
                t = walk_type(RunSummary, path.split("."), "debrief.text")
            except ConditionError as exc:
                self.fail("debrief.text", str(exc).removeprefix("debrief.text: ") +
                          f" in {{{path}}}")
                continue
            if t.kind in ("record", "list"):
                self.fail("debrief.text", f"{{{path}}} is a {t.kind}, not a figure")
            elif spec and t.kind != "number":
                self.fail("debrief.text", f"{{{path}:{spec}}}: a format needs a number, "
                                          f"{path} is a {t.kind}")
            elif spec and spec not in FORMATS and not re.fullmatch(r"[a-zA-Z -]+(/[a-zA-Z -]+)?",
                                                                   spec):
                self.fail("debrief.text", f"{{{path}:{spec}}}: expected a format "
                                          f"({', '.join(FORMATS)}) or a noun such as 'write'")
        shown = _PLACEHOLDER.sub("000000", text)
        lines = wrapped(shown) + 1
        if not _fits(lines):
            self.fail("debrief.text", f"too long for the lesson pane at 80x24: {lines} lines "
                                      f"with its closing line, at most {PANE_LINES}")


# -- following a lesson ----------------------------------------------------------------------


@dataclass
class LessonRun:
    """Where a user is in a lesson: the current step, when it began (simulated time), and the
    debrief once every step's condition has held."""

    lesson: Lesson
    index: int = 0
    started: float | None = None
    debrief: str = ""
    finished_at: float | None = None
    passed: list[float] = field(default_factory=list)
    """When each finished step's condition held."""

    @property
    def done(self) -> bool:
        return self.index >= len(self.lesson.steps)

    @property
    def step(self) -> Step | None:
        return None if self.done else self.lesson.steps[self.index]

    def observe(self, snap: Snapshot) -> bool:
        """Check the current step against ``snap``; True when the lesson moved on."""
        step = self.step
        if step is None:
            return False
        if self.started is None:
            self.started = snap.time
            return True
        if not step.until.holds(snap, snap.time - self.started):
            return False
        self.passed.append(snap.time)
        self.index += 1
        self.started = snap.time
        if self.done:
            self.finished_at = snap.time
        return True

    def finish(self, summary: RunSummary) -> str:
        """The debrief with the run's figures, kept from now on."""
        self.debrief = self.lesson.debrief_text(summary)
        return self.debrief
