"""core.storage against hostile conditions: a cancelled writer, files that are not ours, and a
SQL console user trying to write, to call what they should not, or to exhaust time and memory."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stackyard.core.console import MAX_VALUE
from stackyard.core.engine import Engine
from stackyard.core.model.database import Write
from stackyard.core.protocol import Command
from stackyard.core.storage import (
    APPLICATION_ID,
    QueryError,
    Storage,
    StorageError,
    check,
    node_state,
)

from .conftest import scenario


def write(lsn: int, node: str) -> Write:
    return Write(lsn, lsn % 7, 1, lsn, float(lsn), float(lsn), node, 1)


async def lsns(storage: Storage, node: str) -> list[int]:
    return [lsn for lsn, _ in await storage.rows(node)]


async def test_cancelling_a_flush_mid_batch_loses_no_row(tmp_path: Path) -> None:
    """Ctrl-C cancels whoever waits for the writer; the batch it took must still be written,
    on every node, and before anything queued after it."""
    storage = Storage(["a", "b"], tmp_path, batch=10)
    await storage.open()
    try:
        for lsn in range(1, 51):
            storage.apply("a", write(lsn, "a"))
            storage.apply("b", write(lsn, "b"))
        flushing = asyncio.get_running_loop().create_task(storage.flush())
        while storage.pending == 100:  # until the first batch is off the queue, in flight
            await asyncio.sleep(0)
        flushing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flushing
        for lsn in range(51, 61):
            storage.apply("a", write(lsn, "a"))
        assert await lsns(storage, "a") == list(range(1, 61))
        assert await lsns(storage, "b") == list(range(1, 51))
    finally:
        await storage.close()


async def test_close_while_the_writer_is_mid_batch_writes_everything(tmp_path: Path) -> None:
    storage = Storage(["a", "b"], tmp_path, batch=10)
    await storage.open()
    storage.start()
    for lsn in range(1, 101):
        storage.apply("a", write(lsn, "a"))
        storage.apply("b", write(lsn, "b"))
    while storage.pending == 200:  # the writer woke and took its first batch
        await asyncio.sleep(0)
    await storage.close()
    for node in ("a", "b"):
        db = sqlite3.connect(tmp_path / f"{node}.sqlite")
        try:
            assert [r[0] for r in db.execute("SELECT lsn FROM writes ORDER BY lsn")] == list(
                range(1, 101))
        finally:
            db.close()


# -- opening: never a file that is not ours -------------------------------------------------


def foreign_database(path: Path, table: str = "writes") -> None:
    db = sqlite3.connect(path)
    db.execute(f"CREATE TABLE {table} (a, b)")
    db.execute(f"INSERT INTO {table} VALUES (1, 2)")
    db.commit()
    db.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"\x00garbage" * 100), "not an SQLite database"),
        (lambda p: foreign_database(p), "an SQLite database stackyard did not write"),
        (lambda p: foreign_database(p, "notes"), "an SQLite database stackyard did not write"),
        (lambda p: p.symlink_to(p.with_name("notes.txt")), "is a symbolic link"),
        (lambda p: p.mkdir(), "not a regular file"),
    ],
    ids=["garbage", "foreign-writes-table", "other-application", "symlink", "directory"],
)
async def test_open_refuses_files_that_are_not_ours_and_leaves_nothing_open(
    tmp_path: Path, make: object, message: str
) -> None:
    (tmp_path / "notes.txt").write_text("someone's notes\n")
    target = tmp_path / "db-2.sqlite"
    make(target)  # type: ignore[operator]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    storage = Storage(["db-1", "db-2", "db-3"], tmp_path)
    with pytest.raises(StorageError, match=message) as err:
        await storage.open(overwrite=True)
    assert "\n" not in str(err.value)
    assert storage._conns == {}
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert {k: v for k, v in after.items() if k in before} == before


async def test_our_own_files_are_marked_and_can_be_overwritten(tmp_path: Path) -> None:
    first = Storage(["db-1"], tmp_path)
    await first.open()
    first.apply("db-1", write(1, "db-1"))
    await first.close()
    db = sqlite3.connect(tmp_path / "db-1.sqlite")
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.close()
    again = Storage(["db-1"], tmp_path)
    with pytest.raises(StorageError, match="already holds a run's data"):
        await again.open()
    await again.open(overwrite=True)
    try:
        assert await lsns(again, "db-1") == []
    finally:
        await again.close()


async def test_a_path_too_long_for_sqlite_is_refused_before_creating_anything(
    tmp_path: Path,
) -> None:
    deep = tmp_path.joinpath(*["d"] * 400)
    with pytest.raises(StorageError, match="path too long for SQLite"):
        await Storage(["db-1"], deep).open()
    assert not (tmp_path / "d").exists()


# -- the SQL console ------------------------------------------------------------------------


@pytest.fixture
async def running() -> AsyncIterator[tuple[Engine, Storage]]:
    engine = Engine(scenario("default"), seed=1)
    storage = Storage(engine.db_nodes(), unavailable=node_state(engine.world.db))
    await storage.open()
    engine.attach_storage(storage)
    storage.start()
    await engine.run_async(10.0, storage)
    yield engine, storage
    await storage.close()


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT fts3_tokenizer('simple', x'4141414141414141')",
         "function fts3_tokenizer() is not allowed"),
        ("SELECT fts3_tokenizer('simple')", "function fts3_tokenizer() is not allowed"),
        ("SELECT load_extension('/tmp/x')", "function load_extension() is not allowed"),
        ("SELECT sqlite_compileoption_get(0)", "is not allowed"),
        ("SELECT length(printf('%.*c', 999999999, 'x'))", "printf width or precision past"),
        ("SELECT format('%999999999d', 1)", "printf width or precision past"),
        ("SELECT length(zeroblob(1000000000))", "string or blob too big"),
        ("SELECT group_concat(printf('%.*c', 90000, 'x')) FROM writes", "too big"),
        ("SELECT length(replace(hex(randomblob(40000)), 'A', 'AAAAAAAA'))", "too big"),
    ],
)
async def test_console_refuses_what_could_write_memory_or_run_long(
    running: tuple[Engine, Storage], sql: str, message: str
) -> None:
    engine, storage = running
    with pytest.raises(QueryError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        await storage.query("db-1", sql)
    assert "\n" not in str(err.value)
    assert await check(engine.world.db, storage) == []


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT printf('%5.2f|%d|%s|%%|%-3s|', 3.14159, 42, 'hi', 'x')", " 3.14|42|hi|%|x  |"),
        ("SELECT format('%.*c', 3, 'y')", "yyy"),
        ("SELECT json_extract('{\"a\": [1, 2]}', '$.a[1]')", 2),
        ("SELECT '{\"a\": 5}' ->> '$.a'", 5),
        ("SELECT round(sqrt(16) + pi() - pi(), 1)", 4.0),
        ("SELECT date(0, 'unixepoch')", "1970-01-01"),
        ("SELECT count(*) > 0 FROM writes", 1),
        ("SELECT max(r) > 0 FROM (SELECT row_number() OVER (ORDER BY lsn) AS r FROM writes)", 1),
        ("SELECT upper(substr(value, 1, 4)) FROM items LIMIT 1", "ITEM"),
    ],
)
async def test_console_keeps_the_functions_people_query_with(
    running: tuple[Engine, Storage], sql: str, expected: object
) -> None:
    _, storage = running
    result = await storage.query("db-1", sql)
    assert list(result.rows) == [(expected,)]


async def test_console_cuts_a_huge_result_instead_of_holding_it(
    running: tuple[Engine, Storage],
) -> None:
    _, storage = running
    wide = ", ".join(["printf('%.*c', 90000, 'x')"] * 60)
    result = await storage.query("db-1", f"SELECT {wide} FROM writes", max_rows=200)
    assert result.truncated
    assert 0 < len(result.rows) < 200
    assert all(len(row) == 60 and len(row[0]) == 90000 for row in result.rows)
    assert len(result.rows) * 60 * 90000 <= 4_000_000 + 16 * 60 * MAX_VALUE


async def test_console_says_a_node_that_is_down_is_down(
    running: tuple[Engine, Storage],
) -> None:
    engine, storage = running
    engine.apply(Command("kill_db", "db-2"))
    with pytest.raises(QueryError, match="db-2 is down and answers no queries"):
        await storage.query("db-2", "SELECT count(*) FROM writes")
    assert list((await storage.query("db-1", "SELECT count(*) > 0 FROM writes")).rows) == [(1,)]
