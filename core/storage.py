"""Real data: one SQLite database per database node, through aiosqlite.

The engine calls the synchronous sink methods (``apply``, ``truncate``, ``clone``) on its hot
path; they only queue the change. A writer task applies the queue in batches, one transaction per
node per batch, off the engine's path. The queue is bounded by a high-water mark: past it the
async driver waits for the writer (back-pressure, counted) instead of letting memory grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import stat
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite

from stackyard.core import console
from stackyard.core.console import LimitedConnection
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
COLUMNS = ("lsn", "wid", "key", "value", "client", "committed_at", "timeline")

APPLICATION_ID = int.from_bytes(b"stky", "big")
"""``PRAGMA application_id`` of every database stackyard writes: files without it are not ours,
and are never overwritten."""
SQLITE_MAX_PATH = 512
"""The longest file name SQLite's unix VFS opens (SQLITE_MAX_PATHNAME), in bytes."""
_SQLITE_MAGIC = b"SQLite format 3\x00"
_COMPANIONS = ("-wal", "-shm", "-journal")

_APPLY, _TRUNCATE, _RESET, _CLONE = 0, 1, 2, 3
Row = tuple[int, int, int, str, int, float, int]


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
        unavailable: Callable[[str], str | None] | None = None,
    ) -> None:
        self.nodes = list(nodes)
        self.unavailable = unavailable
        """Why a node cannot answer a console query now (e.g. 'down'), or None when it can;
        see :func:`node_state`."""
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
        self._inflight: asyncio.Task[None] | None = None
        """The batch being written: taken off the queue, not yet committed. It runs as a task of
        its own so that cancelling whoever waits for it (the writer on close, the driver on
        Ctrl-C) never abandons it half-way; the next flush waits for it before writing more."""
        self.rows_written = 0
        self.batches = 0
        self.backpressure_waits = 0
        self.peak_pending = 0

    def path(self, node: str) -> Path | None:
        return self.data_dir / f"{node}.sqlite" if self.data_dir is not None else None

    async def open(self, *, overwrite: bool = False, reopen: bool = False) -> None:
        """Open (and create) each node's database.

        A data directory that already holds databases is refused unless ``overwrite`` (they are
        emptied) or ``reopen`` (they are kept as they are, e.g. to inspect them). Files that are
        not stackyard's own databases are never touched. On failure nothing stays open."""
        if self.data_dir is not None:
            self._prepare_dir(keep_existing=overwrite or reopen)
        try:
            for node in self.nodes:
                self._conns[node] = await self._connect(node)
            if overwrite and not reopen:  # only once every node's database opened
                for node, conn in self._conns.items():
                    path = self.path(node)
                    await _empty(conn, _show(path) if path is not None else node)
        except BaseException:
            await self._close_connections()
            raise
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()

    def _prepare_dir(self, *, keep_existing: bool) -> None:
        """Check the data directory and the files in it, then create it if needed."""
        assert self.data_dir is not None
        shown = _show(self.data_dir)
        try:
            for node in self.nodes:
                path = self.path(node)
                assert path is not None
                size = len(os.fsencode(os.path.abspath(path))) + len("-journal")
                if size > SQLITE_MAX_PATH:
                    raise StorageError(
                        f"{shown}: path too long for SQLite ({size} bytes for {path.name} and "
                        f"its journal; at most {SQLITE_MAX_PATH})")
            if self.data_dir.exists() and not self.data_dir.is_dir():
                raise StorageError(f"{shown}: expected a directory for --data-dir")
            existing = [p for n in self.nodes if (p := self.path(n)) and _vet_file(p)]
            if existing and not keep_existing:
                raise StorageError(
                    f"{_show(existing[0])}: already holds a run's data; use another --data-dir "
                    "or --overwrite"
                )
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StorageError(f"{shown}: cannot use it as --data-dir ({reason})") from exc

    async def _connect(self, node: str) -> aiosqlite.Connection:
        path = self.path(node)
        where = _show(path) if path is not None else node
        if path is not None:
            try:
                # aiosqlite leaves its thread's shutdown un-awaited when its own connect fails,
                # so make sure that connect cannot fail: open the file once here first.
                await asyncio.to_thread(_probe, path)
            except sqlite3.Error as exc:
                raise StorageError(f"{where}: cannot open its database ({exc})") from exc
        conn = await aiosqlite.connect(str(path) if path is not None else ":memory:",
                                       factory=LimitedConnection)
        try:
            if not await _owned(conn, where):
                await conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            if path is not None:
                await conn.execute("PRAGMA journal_mode=WAL")
                await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.executescript(SCHEMA)
            cur = await conn.execute("PRAGMA table_info(writes)")
            columns = tuple(r[1] for r in await cur.fetchall())
            await cur.close()
            if columns != COLUMNS:
                raise StorageError(
                    f"{where}: its writes table is not stackyard's (columns {', '.join(columns)})")
            await conn.commit()
            await conn.execute("DELETE FROM writes WHERE lsn < 0")  # writable? (changes nothing)
            await conn.rollback()
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StorageError(f"{where}: cannot open its database ({exc})") from exc
            raise
        return conn

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

    def clone(self, node: str, source: str, lsn: int) -> None:
        """``node``'s rows become ``source``'s rows up to ``lsn`` (a re-clone or a restore),
        after everything queued before."""
        self._ops.append((node, _CLONE, (source, lsn)))
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
        await self._settle()
        while self._ops:
            per_node: dict[str, list[tuple[int, Any]]] = {}
            clone: tuple[str, Any] | None = None
            for _ in range(min(len(self._ops), self.batch)):
                node, op, arg = self._ops.popleft()
                if op == _CLONE:  # it reads another node: everything before it goes first
                    clone = (node, arg)
                    break
                per_node.setdefault(node, []).append((op, arg))
            self._inflight = asyncio.get_running_loop().create_task(
                self._apply_batch(per_node, clone))
            await self._settle()

    async def _settle(self) -> None:
        """Wait until the batch in flight (if any) is committed, even if our caller is cancelled
        meanwhile: rows leave the queue only to be written, in order."""
        task = self._inflight
        if task is None:
            return
        try:
            await asyncio.shield(task)
        finally:
            if task.done():
                self._inflight = None

    async def _apply_batch(self, per_node: dict[str, list[tuple[int, Any]]],
                           clone: tuple[str, Any] | None = None) -> None:
        for node, ops in per_node.items():
            await self._apply_ops(node, ops)
        if clone is not None:  # it reads another node: after everything queued before it
            await self._clone(clone[0], *clone[1])
        self.batches += 1

    async def _clone(self, node: str, source: str, lsn: int) -> None:
        cur = await self._conns[source].execute("SELECT * FROM writes WHERE lsn <= ?", (lsn,))
        rows = list(await cur.fetchall())
        await cur.close()
        conn = self._conns[node]
        if node != source:
            await conn.execute("DELETE FROM writes")
            await conn.executemany(INSERT, rows)
            self.rows_written += len(rows)
        else:
            await conn.execute("DELETE FROM writes WHERE lsn > ?", (lsn,))
        await conn.commit()

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
        """Run one read-only statement on ``node``; anything else is refused unchanged.

        Guarded by :mod:`stackyard.core.console`: allowed functions only, SQLite's limits on
        value sizes, ``timeout`` seconds, and at most ``console.MAX_RESULT`` bytes fetched."""
        if node not in self._conns:
            raise QueryError(f"no database node {node!r} (nodes: {', '.join(self.nodes)})")
        why = self.unavailable(node) if self.unavailable is not None else None
        if why:
            raise QueryError(f"{node} is {why} and answers no queries; query another node or "
                             "wait until it is back")
        text = sql.strip().rstrip(";").strip()
        if not text:
            raise QueryError("empty query; try: SELECT * FROM items LIMIT 10")
        conn = self._conns[node]
        deadline = time.monotonic() + timeout
        refused: list[str] = []

        def progress() -> int:
            return 1 if time.monotonic() > deadline else 0

        assert self._lock is not None
        async with self._lock:
            await self._flush_locked()
            started = time.monotonic()
            await conn.set_authorizer(console.read_only(refused))
            await conn.set_progress_handler(progress, 1000)
            try:
                cur = await conn.execute(text)
                fetched: list[tuple[Any, ...]] = []
                size = 0
                while len(fetched) <= max_rows and size <= console.MAX_RESULT:
                    chunk = await cur.fetchmany(min(16, max_rows + 1 - len(fetched)))
                    if not chunk:
                        break
                    for row in chunk:
                        fetched.append(tuple(row))
                        size += console.result_size(fetched[-1])
                columns = tuple(d[0] for d in cur.description or ())
                await cur.close()
            except sqlite3.Error as exc:
                raise QueryError(console.message(exc, refused, timeout)) from exc
            except (ValueError, OverflowError, MemoryError) as exc:
                raise QueryError(f"query failed: {exc}") from exc
            finally:
                await conn.set_authorizer(None)
                await conn.set_progress_handler(None, 0)  # type: ignore[arg-type]
        truncated = len(fetched) > max_rows or size > console.MAX_RESULT
        return QueryResult(node=node, columns=columns,
                           rows=tuple(tuple(_cell(v) for v in r) for r in fetched[:max_rows]),
                           truncated=truncated, elapsed=time.monotonic() - started)

    async def close(self) -> None:
        """Stop the writer, write everything queued (what the model committed) and close."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        try:
            if self._conns:
                await self.flush()
        finally:
            await self._close_connections()

    async def _close_connections(self) -> None:
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            await conn.close()


def _show(path: Path, width: int = 160) -> str:
    """``path`` for a one-line message: a very long one keeps its start and end."""
    text = str(path)
    if len(text) <= width:
        return text
    return f"{text[:40]}...{text[-(width - 43):]} ({len(text)} characters)"


def _vet_file(path: Path) -> bool:
    """Whether a database stackyard wrote is at ``path``; refuses anything else there (a
    symlink, a FIFO, another program's file), so that it is never opened, let alone emptied."""
    for companion in (path, *(path.with_name(path.name + s) for s in _COMPANIONS)):
        try:
            st = os.lstat(companion)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise StorageError(f"{_show(companion)}: is a symbolic link; stackyard writes only "
                               "files of its own there, so it will not follow it")
        if not stat.S_ISREG(st.st_mode):
            raise StorageError(f"{_show(companion)}: not a regular file; stackyard will not "
                               "use it")
    try:
        size = os.lstat(path).st_size
    except FileNotFoundError:
        return False
    if size == 0:
        return False
    with open(path, "rb") as f:
        header = f.read(100)
    if not header.startswith(_SQLITE_MAGIC) or len(header) < 100:
        raise StorageError(f"{_show(path)}: not an SQLite database; stackyard will not "
                           "overwrite it")
    owner = int.from_bytes(header[68:72], "big")
    if owner != APPLICATION_ID:
        raise StorageError(f"{_show(path)}: an SQLite database stackyard did not write "
                           f"(application_id {owner}); it will not overwrite it")
    return True


def _probe(path: Path) -> None:
    """Open (creating) and close the database file at ``path``; raises sqlite3.Error."""
    sqlite3.connect(path).close()


async def _owned(conn: aiosqlite.Connection, where: str) -> bool:
    """Whether the database is marked as stackyard's; False for an empty one; refuses any
    other (the file check cannot see a database that a leftover write-ahead log brings in)."""
    cur = await conn.execute("PRAGMA application_id")
    owner = (await cur.fetchone() or (0,))[0]
    await cur.close()
    if owner == APPLICATION_ID:
        return True
    cur = await conn.execute("SELECT count(*) FROM sqlite_schema")
    objects = (await cur.fetchone() or (0,))[0]
    await cur.close()
    if owner or objects:
        raise StorageError(f"{where}: an SQLite database stackyard did not write "
                           f"(application_id {owner}); it will not overwrite it")
    return False


async def _empty(conn: aiosqlite.Connection, where: str) -> None:
    try:
        await conn.execute("DELETE FROM writes")
        await conn.commit()
    except sqlite3.Error as exc:
        raise StorageError(f"{where}: cannot empty its database ({exc})") from exc


def node_state(tier: DatabaseTier) -> Callable[[str], str | None]:
    """For ``Storage(unavailable=...)``: a node of ``tier`` that is down or not serving (it is
    being restored or rewound) says so instead of answering console queries."""

    def unavailable(node: str) -> str | None:
        n = tier.nodes.get(node)
        return None if n is None or n.serving() else n.label()

    return unavailable


async def check(tier: DatabaseTier, storage: Storage) -> list[str]:
    """Compare every node's rows with what the model says it has applied (the model keeps
    only recent records, so older rows are checked against its running digest)."""
    problems = []
    for node in tier.nodes:
        problem = tier.verify_rows(node, await storage.rows(node))
        if problem is not None:
            problems.append(f"{node}: {problem}")
    return problems
