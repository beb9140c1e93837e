"""Real data: one SQLite database per database node, through aiosqlite.

The engine calls the synchronous sink methods (``apply``, ``truncate``, ``reset``) on its hot
path; they only queue the change. A writer task applies the queue in batches, one transaction per
node per batch, off the engine's path. The queue is bounded by a high-water mark: past it the
async driver waits for the writer (back-pressure, counted) instead of letting memory grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite

from stackyard.core.protocol import Cell, QueryResult

if TYPE_CHECKING:
    from stackyard.core.model.database import DatabaseTier, Write

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS writes (
    lsn INTEGER PRIMARY KEY,
    wid INTEGER NOT NULL UNIQUE,
    key INTEGER NOT NULL,
    value TEXT NOT NULL,
    client INTEGER NOT NULL,
    committed_at REAL NOT NULL,
    timeline INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS writes_key ON writes (key, lsn);
CREATE VIEW IF NOT EXISTS items AS
    SELECT key, value, lsn, committed_at FROM writes AS w
    WHERE lsn = (SELECT max(lsn) FROM writes WHERE key = w.key);
"""
INSERT = "INSERT INTO writes VALUES (?, ?, ?, ?, ?, ?, ?)"

_APPLY, _TRUNCATE, _RESET = 0, 1, 2
Row = tuple[int, int, int, str, int, float, int]

_READ_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    sqlite3.SQLITE_RECURSIVE,
}


class StorageError(Exception):
    """Storage cannot be used as asked (e.g. a data directory that already holds a run)."""


class QueryError(StorageError):
    """A console query that was refused or failed; the message is one line."""


def _cell(value: object) -> Cell:
    """A result value as a record holds it: blobs as hex text, anything odd as text."""
    if value is None or isinstance(value, int | float | str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return "x'" + bytes(value).hex() + "'"
    return str(value)


class Storage:
    """SQLite databases for the nodes ``nodes``, in memory or as files under ``data_dir``."""

    def __init__(
        self,
        nodes: Sequence[str],
        data_dir: Path | None = None,
        *,
        high_water: int = 20_000,
        batch: int = 5_000,
    ) -> None:
        self.nodes = list(nodes)
        self.data_dir = data_dir
        self.high_water = high_water
        self.batch = batch
        self._ops: deque[tuple[str, int, Any]] = deque()
        self._conns: dict[str, aiosqlite.Connection] = {}
        self._lock: asyncio.Lock | None = None
        """Held by a flush and by a query: a query never sees half a batch, and the writer never
        runs under a query's read-only authorizer."""
        self._wakeup: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self.rows_written = 0
        self.batches = 0
        self.backpressure_waits = 0
        self.peak_pending = 0

    def path(self, node: str) -> Path | None:
        return self.data_dir / f"{node}.sqlite" if self.data_dir is not None else None

    async def open(self, *, overwrite: bool = False, reopen: bool = False) -> None:
        """Open (and create) each node's database.

        A data directory that already holds databases is refused unless ``overwrite`` (they are
        emptied) or ``reopen`` (they are kept as they are, e.g. to inspect them)."""
        if self.data_dir is not None:
            if self.data_dir.exists() and not self.data_dir.is_dir():
                raise StorageError(f"{self.data_dir}: expected a directory for --data-dir")
            existing = [p for n in self.nodes if (p := self.path(n)) and p.exists()]
            if existing and not (overwrite or reopen):
                raise StorageError(
                    f"{existing[0]}: already holds a run's data; use another --data-dir "
                    "or --overwrite"
                )
            try:
                self.data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"{self.data_dir}: cannot create it ({exc.strerror})") from exc
        for node in self.nodes:
            p = self.path(node)
            try:
                conn = await aiosqlite.connect(str(p) if p is not None else ":memory:")
                if p is not None:
                    await conn.execute("PRAGMA journal_mode=WAL")
                    await conn.execute("PRAGMA synchronous=NORMAL")
                await conn.executescript(SCHEMA)
                if overwrite and not reopen:
                    await conn.execute("DELETE FROM writes")
                await conn.commit()
            except sqlite3.Error as exc:
                raise StorageError(f"{p or node}: cannot open its database ({exc})") from exc
            self._conns[node] = conn
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()

    # -- the sink the engine writes to (synchronous, cheap) ---------------------------------

    def apply(self, node: str, write: Write) -> None:
        self._ops.append((node, _APPLY, write.row()))
        self._poke()

    def truncate(self, node: str, lsn: int) -> None:
        self._ops.append((node, _TRUNCATE, lsn))
        self._poke()

    def reset(self, node: str, writes: Sequence[Write]) -> None:
        self._ops.append((node, _RESET, [w.row() for w in writes]))
        self._poke()

    def _poke(self) -> None:
        n = len(self._ops)
        if n > self.peak_pending:
            self.peak_pending = n
        if self._wakeup is not None and n >= self.batch:
            self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._ops)

    @property
    def backpressure(self) -> bool:
        """The queue is past its high-water mark: whoever drives the engine should wait."""
        return len(self._ops) >= self.high_water

    # -- the writer -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background writer on the running event loop."""
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def _write_loop(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self.flush()

    async def relieve(self) -> None:
        """Called by the driver between engine slices: wait for the writer if past high water."""
        if self.backpressure:
            self.backpressure_waits += 1
            await self.flush()
        elif self._wakeup is not None and self._ops:
            self._wakeup.set()
        await asyncio.sleep(0)

    async def flush(self) -> None:
        """Apply everything queued so far."""
        assert self._lock is not None, "open() the storage first"
        async with self._lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        while self._ops:
            per_node: dict[str, list[tuple[int, Any]]] = {}
            for _ in range(min(len(self._ops), self.batch)):
                node, op, arg = self._ops.popleft()
                per_node.setdefault(node, []).append((op, arg))
            for node, ops in per_node.items():
                await self._apply_ops(node, ops)
            self.batches += 1

    async def _apply_ops(self, node: str, ops: list[tuple[int, Any]]) -> None:
        conn = self._conns[node]
        rows: list[Row] = []
        for op, arg in ops:
            if op == _APPLY:
                rows.append(arg)
                continue
            if rows:
                await conn.executemany(INSERT, rows)
                self.rows_written += len(rows)
                rows = []
            if op == _TRUNCATE:
                await conn.execute("DELETE FROM writes WHERE lsn > ?", (arg,))
            else:
                await conn.execute("DELETE FROM writes")
                await conn.executemany(INSERT, arg)
                self.rows_written += len(arg)
        if rows:
            await conn.executemany(INSERT, rows)
            self.rows_written += len(rows)
        await conn.commit()

    # -- reading ----------------------------------------------------------------------------

    async def rows(self, node: str) -> list[tuple[int, int]]:
        """(lsn, wid) of every row of ``node`` after applying the queue."""
        assert self._lock is not None, "open() the storage first"
        async with self._lock:
            await self._flush_locked()
            cur = await self._conns[node].execute("SELECT lsn, wid FROM writes ORDER BY lsn")
            result = await cur.fetchall()
            await cur.close()
        return [(int(a), int(b)) for a, b in result]

    async def query(
        self, node: str, sql: str, *, max_rows: int = 200, timeout: float = 2.0
    ) -> QueryResult:
        """Run one read-only statement on ``node``; anything else is refused unchanged."""
        if node not in self._conns:
            raise QueryError(f"no database node {node!r} (nodes: {', '.join(self.nodes)})")
        text = sql.strip().rstrip(";").strip()
        if not text:
            raise QueryError("empty query; try: SELECT * FROM items LIMIT 10")
        conn = self._conns[node]
        deadline = time.monotonic() + timeout
        refused: list[str] = []

        def authorize(action: int, arg1: str | None, *_: object) -> int:
            if action in _READ_ACTIONS:
                return sqlite3.SQLITE_OK
            refused.append(arg1 or "")
            return sqlite3.SQLITE_DENY

        def progress() -> int:
            return 1 if time.monotonic() > deadline else 0

        assert self._lock is not None
        async with self._lock:
            await self._flush_locked()
            started = time.monotonic()
            await conn.set_authorizer(authorize)
            await conn.set_progress_handler(progress, 1000)
            try:
                cur = await conn.execute(text)
                fetched = list(await cur.fetchmany(max_rows + 1))
                columns = tuple(d[0] for d in cur.description or ())
                await cur.close()
            except sqlite3.Error as exc:
                raise QueryError(_query_message(exc, refused, timeout)) from exc
            except (ValueError, OverflowError) as exc:
                raise QueryError(f"query failed: {exc}") from exc
            finally:
                await conn.set_authorizer(None)
                await conn.set_progress_handler(None, 0)  # type: ignore[arg-type]
        return QueryResult(node=node, columns=columns,
                           rows=tuple(tuple(_cell(v) for v in r) for r in fetched[:max_rows]),
                           truncated=len(fetched) > max_rows,
                           elapsed=time.monotonic() - started)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        if self._conns:
            await self.flush()
        for conn in self._conns.values():
            await conn.close()
        self._conns.clear()


def _query_message(exc: sqlite3.Error, refused: list[str], timeout: float) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if refused or "not authorized" in text:
        return "read-only console: only SELECT queries are allowed; nothing was changed"
    if "interrupted" in text:
        return f"query stopped after {timeout:g} s (time limit)"
    if "one statement at a time" in text:
        return "one statement at a time, please"
    return f"SQL error: {text}"


async def check(tier: DatabaseTier, storage: Storage) -> list[str]:
    """Compare every node's rows with what the model says it has applied."""
    problems = []
    for node in tier.nodes:
        expected = tier.expected_rows(node)
        actual = await storage.rows(node)
        if expected != actual:
            problems.append(f"{node}: {_first_difference(expected, actual)}")
    return problems


def _first_difference(expected: list[tuple[int, int]], actual: list[tuple[int, int]]) -> str:
    for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
        if e != a:
            return (f"row {i + 1} differs (model LSN {e[0]} write {e[1]}, "
                    f"SQLite LSN {a[0]} write {a[1]})")
    if len(expected) > len(actual):
        missing = len(expected) - len(actual)
        return f"SQLite lacks {missing} rows from LSN {expected[len(actual)][0]}"
    extra = len(actual) - len(expected)
    return f"SQLite has {extra} rows the model does not (from LSN {actual[len(expected)][0]})"
