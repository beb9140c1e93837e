"""A small, safe condition language over typed records, for lessons that wait on the model.

A condition reads the fields of a :class:`~core.protocol.Snapshot` by name and compares them::

    database.failovers >= 1 and node("db-1").state == "down"
    count("vm", "booting") >= 1 or elapsed >= 60
    kpis.error_rate < 0.01 and not fault("retry_storm")

Grammar: ``or`` / ``and`` / ``not``, the comparisons ``== != < <= > >=``, numbers, quoted
strings, ``true``, ``false``, ``none``, parentheses, field paths (``kpis.p99``,
``database.last_promotion.lost``) and these functions:

* ``node("id")``: a node, followed by one of its fields (``node("db-2").lag_s``);
* ``count("kind")``, ``count("kind", "state")``: nodes of a kind (in a state);
* ``sum|min|max("kind", "field")``: a field over the nodes of a kind (0 when there are none);
* ``fault("kind")``: active faults of a kind;
* ``elapsed``: simulated seconds since the condition's step began.

It is parsed once and checked against the record types (unknown fields, a state a node kind
never has, a string compared with a number: one-line :class:`ConditionError`), then compiled
to plain closures; nothing is ever ``eval``-ed, and sizes are bounded.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import msgspec

from stackyard.core.protocol import NODE_TYPES, NodeState, Snapshot

MAX_CHARS = 400
MAX_TOKENS = 120
MAX_DEPTH = 16

KINDS: dict[str, type[NodeState]] = {str(cls.__struct_config__.tag): cls for cls in NODE_TYPES}
"""Node kinds by name (edge, balancer, link, host, vm, container, db)."""
FUNCTIONS = ("node", "count", "sum", "min", "max", "fault")
OPERATORS = ("==", "!=", "<=", ">=", "<", ">")


class ConditionError(ValueError):
    """A condition that cannot be used; the message is one line saying what and where."""


# -- types of fields --------------------------------------------------------------------------


@dataclass(frozen=True)
class Type:
    """What a path leads to: a number, a string (maybe one of ``choices``), a bool, a record
    (a Struct type), or a list (not comparable); ``nullable`` when it may be None."""

    kind: Literal["number", "string", "bool", "record", "list", "none"]
    record: type | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False


def type_of(tp: Any) -> Type:
    """The :class:`Type` of an annotation."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = type_of(args[0]) if len(args) == 1 else Type("number") \
            if all(a in (int, float) for a in args) else Type("list")
        return Type(inner.kind, inner.record, inner.choices, nullable=True)
    if origin is Literal:
        return Type("string", choices=tuple(str(a) for a in typing.get_args(tp)))
    if tp is bool:
        return Type("bool")
    if tp in (int, float):
        return Type("number")
    if tp is str:
        return Type("string")
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return Type("record", record=tp)
    return Type("list")


@cache
def fields_of(record: type) -> dict[str, Type]:
    """Every field of a Struct type with its :class:`Type`."""
    hints = typing.get_type_hints(record)
    return {f.name: type_of(hints[f.name]) for f in msgspec.structs.fields(record)}


def node_fields(kind: str = "") -> dict[str, Type]:
    """The fields of nodes of ``kind`` (all kinds together when ``kind`` is '')."""
    if kind:
        return fields_of(KINDS[kind])
    out: dict[str, Type] = {}
    for cls in NODE_TYPES:
        for name, t in fields_of(cls).items():
            if name in out and out[name].choices != t.choices:
                out[name] = Type(t.kind, choices=tuple(sorted(set(out[name].choices) |
                                                              set(t.choices))))
            else:
                out.setdefault(name, t)
    return out


def walk_type(root: type, path: Sequence[str], where: str) -> Type:
    """The type ``path`` leads to from the record type ``root``; ConditionError otherwise."""
    t = Type("record", record=root)
    done: list[str] = []
    for name in path:
        if t.kind != "record" or t.record is None:
            raise ConditionError(f"{where}: {'.'.join(done)} is a {t.kind}, it has no field "
                                 f"{name!r}")
        known = fields_of(t.record)
        if name not in known:
            what = ".".join(done) or "the snapshot"
            raise ConditionError(f"{where}: {what} has no field {name!r} (fields: "
                                 f"{', '.join(known)})")
        nullable = t.nullable
        t = known[name]
        if nullable and not t.nullable:
            t = Type(t.kind, t.record, t.choices, nullable=True)
        done.append(name)
    return t


def get_path(value: Any, path: Sequence[str]) -> Any:
    """Follow ``path`` from ``value`` (None as soon as a step is None)."""
    for name in path:
        if value is None:
            return None
        value = getattr(value, name)
    return value


# -- tokens -----------------------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:(?P<num>\d+(?:\.\d*)?(?:e[-+]?\d+)?|\.\d+)|(?P<str>"[^"]*"|'[^']*')
                        |(?P<op>==|!=|<=|>=|<|>)|(?P<punct>[().,])|(?P<name>[A-Za-z_]\w*))""",
                    re.VERBOSE)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    at: int


def tokens(text: str, where: str) -> list[Token]:
    out: list[Token] = []
    i = 0
    while i < len(text):
        if text[i:].strip() == "":
            break
        m = _TOKEN.match(text, i)
        if m is None or m.end() == i:
            j = len(text) - len(text[i:].lstrip())
            raise ConditionError(f"{where}: unexpected {text[j]!r} at column {j + 1}")
        kind = m.lastgroup or ""
        start = m.start(kind)
        out.append(Token(kind, m.group(kind), start))
        i = m.end()
        if len(out) > MAX_TOKENS:
            raise ConditionError(f"{where}: too long (more than {MAX_TOKENS} tokens)")
    return out


# -- parsing and compiling --------------------------------------------------------------------

Fn = Callable[["Context"], Any]


@dataclass(frozen=True)
class Context:
    """What a condition is evaluated against."""

    snap: Snapshot
    elapsed: float = 0.0


@dataclass(frozen=True)
class Term:
    fn: Fn
    type: Type
    text: str


class _Parser:
    def __init__(self, text: str, where: str, ids: dict[str, str]) -> None:
        self.text = text
        self.where = where
        self.ids = ids
        self.toks = tokens(text, where)
        self.i = 0
        self.depth = 0

    # helpers
    def peek(self, *texts: str) -> bool:
        if self.i >= len(self.toks):
            return False
        return not texts or self.toks[self.i].text in texts

    def take(self, text: str = "") -> Token:
        if self.i >= len(self.toks):
            want = f"{text!r}" if text else "more"
            raise ConditionError(f"{self.where}: expected {want} at the end")
        tok = self.toks[self.i]
        if text and tok.text != text:
            raise ConditionError(f"{self.where}: expected {text!r} at column {tok.at + 1}, "
                                 f"got {tok.text!r}")
        self.i += 1
        return tok

    def fail(self, tok: Token, message: str) -> ConditionError:
        return ConditionError(f"{self.where}: {message} (column {tok.at + 1})")

    # grammar
    def parse(self) -> Term:
        if not self.toks:
            raise ConditionError(f"{self.where}: empty condition")
        term = self.either()
        if self.peek():
            tok = self.toks[self.i]
            raise self.fail(tok, f"unexpected {tok.text!r}")
        if term.type.kind == "record" and term.type.record is not None:
            raise ConditionError(f"{self.where}: {term.text} is a record: name one of its "
                                 f"fields ({', '.join(fields_of(term.type.record))})")
        if term.type.kind not in ("bool", "number"):
            raise ConditionError(f"{self.where}: {term.text} is a {term.type.kind}, expected a "
                                 "comparison such as "
                                 f"{term.text} == {_example(term.type)}")
        return term

    def either(self) -> Term:
        left = self.both()
        while self.peek("or"):
            self.take()
            right = self.both()
            left = _bool_op(left, right, any_=True)
        return left

    def both(self) -> Term:
        left = self.negation()
        while self.peek("and"):
            self.take()
            right = self.negation()
            left = _bool_op(left, right, any_=False)
        return left

    def negation(self) -> Term:
        if self.peek("not"):
            self.take()
            inner = self.negation()
            fn = inner.fn
            return Term(lambda c: not _truthy(fn(c)), Type("bool"), f"not {inner.text}")
        return self.comparison()

    def comparison(self) -> Term:
        left = self.atom()
        if self.peek(*OPERATORS):
            tok = self.take()
            right = self.atom()
            return self.compare(left, tok, right)
        return left

    def compare(self, left: Term, tok: Token, right: Term) -> Term:
        op = tok.text
        for a, b in ((left, right), (right, left)):
            if a.type.choices and b.type.kind == "string" and not b.type.choices:
                value = b.fn(Context(Snapshot(time=0.0, seq=0)))
                if isinstance(value, str) and value not in a.type.choices:
                    raise self.fail(tok, f"{a.text} is never {value!r} (it is one of "
                                         f"{', '.join(a.type.choices)})")
        kinds = {left.type.kind, right.type.kind}
        if "record" in kinds and kinds <= {"record", "none"} and op in ("==", "!="):
            pass  # a record compared with none: is it there?
        elif "list" in kinds or "record" in kinds:
            raise self.fail(tok, f"cannot compare {left.text} with {right.text}")
        if "none" not in kinds and left.type.kind != right.type.kind and \
                kinds != {"number", "bool"}:
            raise self.fail(tok, f"cannot compare {left.text} (a {left.type.kind}) with "
                                 f"{right.text} (a {right.type.kind})")
        if op not in ("==", "!=") and kinds - {"number"}:
            raise self.fail(tok, f"{op} needs numbers, got {left.text} and {right.text}")
        lf, rf = left.fn, right.fn
        test = _OPS[op]

        def fn(c: Context) -> bool:
            a, b = lf(c), rf(c)
            if a is None or b is None:
                return (a is b) if op == "==" else (a is not b) if op == "!=" else False
            try:
                return bool(test(a, b))
            except TypeError:
                return False

        return Term(fn, Type("bool"), f"{left.text} {op} {right.text}")

    def atom(self) -> Term:
        tok = self.take()
        if tok.kind == "num":
            value = float(tok.text)
            return Term(lambda c: value, Type("number"), tok.text)
        if tok.kind == "str":
            text = tok.text[1:-1]
            return Term(lambda c: text, Type("string"), tok.text)
        if tok.text == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.fail(tok, f"nested deeper than {MAX_DEPTH}")
            inner = self.either()
            self.take(")")
            self.depth -= 1
            return Term(inner.fn, inner.type, f"({inner.text})")
        if tok.kind != "name":
            raise self.fail(tok, f"unexpected {tok.text!r}")
        word = tok.text
        if word in ("true", "false"):
            flag = word == "true"
            return Term(lambda c: flag, Type("bool"), word)
        if word == "none":
            return Term(lambda c: None, Type("none"), word)
        if word == "elapsed":
            return Term(lambda c: c.elapsed, Type("number"), word)
        if word in FUNCTIONS:
            return self.call(tok)
        path = [word, *self.dotted()]
        t = walk_type(Snapshot, path, self.where)
        return Term(lambda c: get_path(c.snap, path), t, ".".join(path))

    def dotted(self) -> list[str]:
        out = []
        while self.peek("."):
            self.take()
            tok = self.take()
            if tok.kind != "name":
                raise self.fail(tok, f"expected a field name after '.', got {tok.text!r}")
            out.append(tok.text)
        return out

    def strings(self, name: str, least: int, most: int) -> list[str]:
        self.take("(")
        args: list[str] = []
        while not self.peek(")"):
            if args:
                self.take(",")
            tok = self.take()
            if tok.kind != "str":
                raise self.fail(tok, f"{name}() takes quoted strings, got {tok.text!r}")
            args.append(tok.text[1:-1])
        self.take(")")
        if not least <= len(args) <= most:
            want = str(least) if least == most else f"{least} or {most}"
            raise ConditionError(f"{self.where}: {name}() takes {want} arguments, got "
                                 f"{len(args)}")
        return args

    def call(self, tok: Token) -> Term:
        name = tok.text
        if name == "node":
            (node_id,) = self.strings(name, 1, 1)
            kind = self.ids.get(node_id, "")
            if self.ids and not kind and not re.fullmatch(r"(app|vm)-\d+", node_id):
                raise self.fail(tok, f"no node {node_id!r} in this scenario (nodes: "
                                     f"{', '.join(self.ids)})")
            path = self.dotted()
            if len(path) != 1:
                raise self.fail(tok, f'node("{node_id}") needs one field, e.g. '
                                     f'node("{node_id}").state')
            known = node_fields(kind)
            if path[0] not in known:
                raise self.fail(tok, f"{kind or 'a node'} has no field {path[0]!r} (fields: "
                                     f"{', '.join(known)})")
            fld = path[0]
            t = known[fld]
            t = Type(t.kind, t.record, t.choices, nullable=True)
            return Term(lambda c: getattr(c.snap.find(node_id), fld, None), t,
                        f'node("{node_id}").{fld}')
        if name == "fault":
            (fault_kind,) = self.strings(name, 1, 1)
            return Term(lambda c: sum(1 for f in c.snap.faults if f.kind == fault_kind),
                        Type("number"), f'fault("{fault_kind}")')
        if name == "count":
            args = self.strings(name, 1, 2)
            kind = self.kind(tok, args[0])
            if len(args) == 2:
                state = args[1]
                states = fields_of(KINDS[kind])["state"].choices
                if state not in states:
                    raise self.fail(tok, f"a {kind} is never {state!r} (it is one of "
                                         f"{', '.join(states)})")
                return Term(lambda c: sum(1 for n in c.snap.nodes
                                          if n.kind == kind and n.state == state),
                            Type("number"), f'count("{kind}", "{state}")')
            return Term(lambda c: sum(1 for n in c.snap.nodes if n.kind == kind),
                        Type("number"), f'count("{kind}")')
        kind_name, fld = self.strings(name, 2, 2)
        kind = self.kind(tok, kind_name)
        known = fields_of(KINDS[kind])
        if known.get(fld, Type("list")).kind != "number":
            numeric = [f for f, t in known.items() if t.kind == "number"]
            raise self.fail(tok, f"{name}() needs a number field of a {kind} (one of "
                                 f"{', '.join(numeric)}), got {fld!r}")
        def fn(c: Context) -> float:
            values = [float(getattr(n, fld)) for n in c.snap.nodes if n.kind == kind]
            if not values:
                return 0.0
            return sum(values) if name == "sum" else min(values) if name == "min" \
                else max(values)

        return Term(fn, Type("number"), f'{name}("{kind}", "{fld}")')

    def kind(self, tok: Token, name: str) -> str:
        if name not in KINDS:
            raise self.fail(tok, f"no node kind {name!r} (kinds: {', '.join(KINDS)})")
        return name


def _example(t: Type) -> str:
    return repr(t.choices[0]) if t.choices else {"string": "'text'"}.get(t.kind, "1")


def _truthy(value: Any) -> bool:
    return bool(value)


def _bool_op(left: Term, right: Term, any_: bool) -> Term:
    lf, rf = left.fn, right.fn
    if any_:
        return Term(lambda c: _truthy(lf(c)) or _truthy(rf(c)), Type("bool"),
                    f"{left.text} or {right.text}")
    return Term(lambda c: _truthy(lf(c)) and _truthy(rf(c)), Type("bool"),
                f"{left.text} and {right.text}")


_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


@dataclass(frozen=True)
class Condition:
    """A parsed, checked condition; call :meth:`holds` with a snapshot."""

    text: str
    term: Term

    def holds(self, snap: Snapshot, elapsed: float = 0.0) -> bool:
        return _truthy(self.term.fn(Context(snap, elapsed)))


def parse(text: str, where: str = "condition", ids: dict[str, str] | None = None) -> Condition:
    """Parse and check ``text``. ``ids`` (node id -> kind) names the nodes that exist, so
    ``node("...")`` is checked against them (containers and VMs may come later)."""
    if not isinstance(text, str):
        raise ConditionError(f"{where}: expected a condition string, got {type(text).__name__}")
    if len(text) > MAX_CHARS:
        raise ConditionError(f"{where}: longer than {MAX_CHARS} characters")
    return Condition(text, _Parser(text, where, ids or {}).parse())
