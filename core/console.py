"""The read-only SQL console's guards: what a query may touch and how much it may take.

Three layers, each closing what the others cannot: an authorizer that allows reads and an
allow-list of SQL functions (not a deny-list: a build of SQLite may carry functions such as
``fts3_tokenizer`` that write process memory); SQLite's own limits on the connection, so a single
step (``printf('%.*c', 999999999, 'x')``) cannot build a huge value; and a progress handler for
time, which SQLite calls only between steps.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from typing import Any

READ_ACTIONS = frozenset({
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_RECURSIVE,
})

_FUNCTION_NAMES = """
    abs char coalesce concat concat_ws format glob hex ifnull iif instr length like likelihood
    likely lower ltrim max min nullif octet_length printf quote random randomblob replace round
    rtrim sign soundex sqlite_version substr substring trim typeof unhex unicode unlikely upper
    zeroblob
    avg count group_concat string_agg sum total
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value
    nth_value
    date time datetime julianday unixepoch strftime timediff current_date current_time
    current_timestamp
    acos acosh asin asinh atan atan2 atanh ceil ceiling cos cosh degrees exp floor ln log log10
    log2 mod pi pow power radians sin sinh sqrt tan tanh trunc
    -> ->> json json_array json_array_length json_extract json_group_array json_group_object
    json_insert json_object json_patch json_quote json_remove json_replace json_set json_type
    json_valid
"""
FUNCTIONS = frozenset(_FUNCTION_NAMES.split())
"""SQL functions a console query may call: SQLite's core, aggregate, window, date, math and JSON
functions. Anything else (extension loading, FTS internals, compile options...) is refused."""

MAX_VALUE = 100_000
"""Bytes in one string, blob or row (SQLITE_LIMIT_LENGTH)."""
MAX_RESULT = 4_000_000
"""Bytes of text and blobs the console fetches for one result; the rest is cut (``truncated``)."""

LIMITS = {
    sqlite3.SQLITE_LIMIT_LENGTH: MAX_VALUE,
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: 100_000,
    sqlite3.SQLITE_LIMIT_COLUMN: 64,
    sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 200,
    sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 50,
    sqlite3.SQLITE_LIMIT_FUNCTION_ARG: 32,
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,
    sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 1_000,
    sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER: 64,
    sqlite3.SQLITE_LIMIT_TRIGGER_DEPTH: 10,
}
"""SQLite's own limits on every node's connection. Generous for the rows stackyard writes (seven
short columns), tight for a query trying to build a gigabyte inside one step."""


class LimitedConnection(sqlite3.Connection):
    """A sqlite3 connection opened with :data:`LIMITS` and a guarded ``printf``/``format`` (a
    ``factory`` for ``sqlite3.connect``: aiosqlite passes it through, so all of this happens on
    the thread that owns the connection)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for limit, value in LIMITS.items():
            self.setlimit(limit, value)
        self._printf = sqlite3.connect(":memory:", check_same_thread=False)
        """SQLite's own printf, reached by our checked one of the same name."""
        self._printf.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE)
        for name in ("printf", "format"):
            self.create_function(name, -1, self._checked_printf, deterministic=True)

    def _checked_printf(self, fmt: Any = None, *args: Any) -> Any:
        """SQLite's printf, refusing a width or precision past :data:`MAX_VALUE` first: some
        builds spend seconds in one step on ``printf('%.*c', 999999999, 'x')``, beyond the
        reach of both the length limit and the progress handler."""
        if isinstance(fmt, str):
            i = 0
            for m in _SPEC.finditer(fmt):
                for field in m.group("width", "precision"):
                    if field == "*":
                        field, i = args[i] if i < len(args) else 0, i + 1
                    if field is not None and _too_wide(field):
                        raise ValueError(f"printf: width or precision past {MAX_VALUE:,}")
                i += m.group("kind") != "%"
        marks = ", ".join("?" * (len(args) + 1))
        return self._printf.execute(f"SELECT printf({marks})", (fmt, *args)).fetchone()[0]

    def close(self) -> None:
        self._printf.close()
        super().close()


_SPEC = re.compile(r"%[-+ 0#,!]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?(?:ll|l)?(?P<kind>.)")


def _too_wide(size: Any) -> bool:
    try:
        return abs(int(size)) > MAX_VALUE
    except (TypeError, ValueError, OverflowError):
        return False


Authorizer = Callable[[int, "str | None", "str | None", "str | None", "str | None"], int]


def read_only(refused: list[str]) -> Authorizer:
    """An authorizer allowing reads and :data:`FUNCTIONS`; what it refuses goes to ``refused``."""

    def authorize(action: int, arg1: str | None, arg2: str | None, *_: str | None) -> int:
        if action in READ_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            if (arg2 or "").lower() in FUNCTIONS:
                return sqlite3.SQLITE_OK
            refused.append(f"function {arg2}()")
            return sqlite3.SQLITE_DENY
        refused.append(arg1 or "")
        return sqlite3.SQLITE_DENY

    return authorize


def result_size(row: tuple[Any, ...]) -> int:
    """Bytes a fetched row holds in text and blobs (numbers count as 8)."""
    return sum(len(v) if isinstance(v, str | bytes) else 8 for v in row)


def message(exc: sqlite3.Error, refused: list[str], timeout: float) -> str:
    """One line saying why a query failed or was refused."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    functions = [r for r in refused if r.startswith("function ")]
    if functions:
        return (f"read-only console: {functions[0]} is not allowed (core, aggregate, window, "
                "date, math and JSON functions are); nothing was changed")
    if refused or "not authorized" in text:
        return "read-only console: only SELECT queries are allowed; nothing was changed"
    if "interrupted" in text:
        return f"query stopped after {timeout:g} s (time limit)"
    if "user-defined function raised exception" in text:  # only our checked printf
        return f"query refused: a printf width or precision past {MAX_VALUE:,}"
    if "too big" in text:
        return f"query refused: {text} (a value may hold at most {MAX_VALUE:,} bytes)"
    if "too large" in text or "too many" in text:
        return f"query refused: {text} (console limit)"
    if "one statement at a time" in text:
        return "one statement at a time, please"
    return f"SQL error: {text}"
