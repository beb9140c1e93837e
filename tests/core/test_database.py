"""The database tier against its promises, with every node's rows in real SQLite."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackyard.core.engine import Engine
from stackyard.core.model.database import DatabaseTier, Write
from stackyard.core.protocol import Command, DbNode
from stackyard.core.run import open_run as assemble
from stackyard.core.storage import QueryError, Storage, check

from .conftest import scenario

LIGHT = {"regions": {"eu": {"rate": 120.0}, "us": {"rate": 120.0}}}
"""Enough traffic for ~35 writes/s, light enough to simulate minutes per second."""


def light(**database: Any) -> Any:
    return scenario("default", traffic=LIGHT, database=database)


class Run:
    """An engine with its database mirrored into in-memory SQLite and its acks recorded."""

    def __init__(self, engine: Engine, storage: Storage) -> None:
        self.engine = engine
        self.storage = storage
        self.acked: list[Write] = []
        assert engine.world.db is not None
        self.db: DatabaseTier = engine.world.db
        self.db.on_ack = self.acked.append

    async def run_until(self, t: float) -> None:
        await self.engine.run_async(t - self.engine.now, self.storage)

    def apply(self, kind: str, target: str = "", at: float | None = None, **params: Any) -> str:
        return self.engine.apply(Command(kind, target, params, at=at))

    async def wids(self, node: str) -> set[int]:
        return {wid for _, wid in await self.storage.rows(node)}

    def events(self, kind: str) -> list[Any]:
        return [e for e in self.engine.events if e.kind == kind]


async def start(sc: Any, seed: int = 1) -> Run:
    opened = assemble(sc, seed=seed, storage=True)
    await opened.start()
    assert opened.storage is not None
    return Run(opened.engine, opened.storage)


@pytest.fixture
async def stored() -> AsyncIterator[list[Run]]:
    runs: list[Run] = []
    yield runs
    for run in runs:
        await run.storage.close()


async def open_run(stored: list[Run], sc: Any, seed: int = 1) -> Run:
    run = await start(sc, seed)
    stored.append(run)
    return run


# -- sync: nothing acknowledged is ever lost -----------------------------------------------

EVENT = st.tuples(
    st.floats(min_value=5.0, max_value=120.0),
    st.sampled_from(["kill_db", "db_partition", "partition"]),
    st.sampled_from(["", "db-1", "db-2", "db-3"]),
    st.floats(min_value=3.0, max_value=60.0),
)


@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(EVENT, min_size=1, max_size=4), fencing=st.booleans())
async def test_sync_mode_never_loses_an_acknowledged_write(
    events: list[tuple[float, str, str, float]], fencing: bool
) -> None:
    sc = light(replication="sync", failover={"fencing": fencing, "restart": "20s"})
    run = await start(sc)
    try:
        for at, kind, target, duration in sorted(events):
            if kind != "kill_db" and not target:
                target = "db-1"
            params = {} if kind == "kill_db" else {"duration": duration}
            run.apply(kind, target, at=at, **params)
        await run.run_until(260.0)
        leader = run.db.leader
        survived = await run.wids(leader)
        acked = {w.wid for w in run.acked}
        assert acked, "the run acknowledged writes"
        assert acked <= survived, f"{len(acked - survived)} acknowledged writes missing"
        assert run.db.lost_writes == 0
        assert await check(run.db, run.storage) == []
    finally:
        await run.storage.close()


# -- async: exactly the acknowledged writes beyond the promoted replica are lost ------------


async def test_async_failover_loses_exactly_the_writes_beyond_the_promoted_replica(
    stored: list[Run],
) -> None:
    run = await open_run(stored, light())
    run.apply("link_latency", "db-repl", at=10.0, latency=1.5, jitter=0.0)
    run.apply("kill_db", "db-1", at=30.0)
    await run.run_until(66.0)
    promo = run.db.last_promotion
    assert promo["from"] == "db-1" and promo["node"] in ("db-2", "db-3")
    cut = int(promo["lsn"])  # type: ignore[call-overload]
    # every write db-1 acknowledged, in LSN order: those beyond the cut are the lost ones
    old = [w for w in run.acked if w.node == "db-1" and w.timeline == 1]
    expected = {w.wid for w in old if w.lsn > cut}
    assert len(expected) > 20, "1.5 s of replication delay at ~35 writes/s loses dozens"
    assert {w.wid for w in run.db.lost} == expected
    assert run.db.lost_writes == len(expected)
    new_primary = await run.wids(str(promo["node"]))
    assert not expected & new_primary
    assert {w.wid for w in old if w.lsn <= cut} <= new_primary
    # the old primary comes back, rewinds its divergent writes and follows
    await run.run_until(110.0)
    assert run.db.nodes["db-1"].role == "replica"
    assert run.db.rewound >= len(expected)
    assert not expected & await run.wids("db-1")
    assert await check(run.db, run.storage) == []


# -- lag, drain and stale reads -------------------------------------------------------------


async def test_partitioned_replica_lags_then_drains_at_its_apply_rate(stored: list[Run]) -> None:
    rate = 100.0
    run = await open_run(stored, light(apply_rate=rate))
    run.apply("db_partition", "db-2", at=10.0, duration=40.0)
    lags = []
    for t in (20.0, 30.0, 40.0, 49.9):
        await run.run_until(t)
        lags.append(run.db.lag(run.db.nodes["db-2"])[0])
    assert lags == sorted(lags) and lags[0] > 0
    write_rate = (lags[-1] - lags[0]) / 29.9
    await run.run_until(50.5)
    backlog = run.db.lag(run.db.nodes["db-2"])[0]
    t = run.engine.now
    while run.db.lag(run.db.nodes["db-2"])[0] > 0:
        t += 0.1
        await run.run_until(t)
        assert t < 200.0, "the replica never caught up"
    drain = t - 50.5
    assert drain == pytest.approx(backlog / (rate - write_rate), rel=0.25)
    assert await check(run.db, run.storage) == []


async def test_stale_reads_happen_only_while_the_replica_lags(stored: list[Run]) -> None:
    run = await open_run(stored, light(apply_rate=60.0, read_your_writes=False))
    run.apply("replica_lag", "db-2", at=20.0, duration=20.0, rate=5.0)
    node = run.db.nodes["db-2"]
    stale_while_caught_up = 0
    stale_total = 0
    t = 0.0
    while t < 90.0:
        before = node.stale_reads
        lag_before = run.db.lag(node)[0]
        t += 0.05
        await run.run_until(t)
        grew = node.stale_reads - before
        stale_total += grew
        if grew and lag_before == 0 and run.db.lag(node)[0] == 0:
            stale_while_caught_up += grew
    assert stale_total > 50
    assert stale_while_caught_up == 0


# -- semi-sync ------------------------------------------------------------------------------


async def test_semi_sync_falls_back_after_its_timeout_and_returns(stored: list[Run]) -> None:
    run = await open_run(stored, light(replication="semi_sync", semi_sync_timeout="10s"))
    run.apply("db_partition", "db-2", at=10.0, duration=40.0)
    run.apply("db_partition", "db-3", at=10.0, duration=50.0)
    await run.run_until(19.0)
    acked_before = len(run.acked)
    await run.run_until(19.9)
    assert len(run.acked) == acked_before, "writes wait while no replica confirms"
    await run.run_until(30.0)
    fallback = run.events("semi_sync_fallback")
    assert len(fallback) == 1 and 20.0 <= fallback[0].time <= 20.2
    assert len(run.acked) > acked_before
    assert run.db.degraded
    await run.run_until(60.0)
    restored = run.events("semi_sync_restored")
    assert len(restored) == 1 and 50.0 <= restored[0].time <= 51.0
    assert not run.db.degraded
    assert await check(run.db, run.storage) == []


# -- fencing and split brain ----------------------------------------------------------------


@pytest.mark.parametrize("fencing", [True, False])
async def test_split_brain_needs_fencing_off(stored: list[Run], fencing: bool) -> None:
    run = await open_run(stored, light(failover={"fencing": fencing}))
    run.apply("db_partition", "db-1", at=12.0, duration=70.0)
    await run.run_until(120.0)
    assert run.db.leader != "db-1"
    if fencing:
        assert run.db.conflicts == 0
        (fenced,) = run.events("fenced")
        (promoted,) = run.events("promoted")
        assert fenced.time < promoted.time
    else:
        assert run.db.conflicts > 0
        assert run.events("split_brain")
        assert run.db.rewound >= run.db.conflicts
    assert run.db.nodes["db-1"].role == "replica"
    assert await check(run.db, run.storage) == []


async def test_clock_skew_defeats_lease_fencing(stored: list[Run]) -> None:
    run = await open_run(stored, light())
    run.apply("clock_skew", "db-1", at=5.0, seconds=8.0)
    run.apply("db_partition", "db-1", at=12.0, duration=70.0)
    await run.run_until(120.0)
    assert run.db.conflicts > 0, "a primary whose clock runs behind fences itself too late"


# -- backups and point-in-time restore ------------------------------------------------------


async def test_point_in_time_restore_holds_exactly_the_writes_acknowledged_by_then(
    stored: list[Run],
) -> None:
    run = await open_run(stored, light())
    await run.run_until(130.0)
    run.apply("restore", time=60.0)
    db = run.engine.snapshot().database
    assert db is not None and db.last_restore is not None
    info = db.last_restore
    assert info.rpo == pytest.approx(70.0)
    await run.run_until(130.0 + info.rto + 0.001)  # before any new write can commit
    db = run.engine.snapshot().database
    assert db is not None and db.last_restore is not None and db.last_restore.finished is not None
    expected = {w.wid for w in run.acked if w.acked_at is not None and w.acked_at <= 60.0}
    for node in run.db.nodes:
        assert await run.wids(node) == expected
    assert run.events("restore_done")
    # the database serves again, on a new timeline
    await run.run_until(run.engine.now + 10.0)
    assert len(await run.wids(run.db.leader)) > len(expected)
    assert await check(run.db, run.storage) == []


async def test_restore_refuses_a_time_in_the_future(stored: list[Run]) -> None:
    run = await open_run(stored, light())
    await run.run_until(10.0)
    with pytest.raises(ValueError, match=r"restore\.time: expected a time between 0 and now"):
        run.apply("restore", time=99.0)


async def test_switchover_hands_over_without_losing_anything(stored: list[Run]) -> None:
    run = await open_run(stored, light())
    await run.run_until(20.0)
    assert run.apply("switchover", "db-3") == "db-3"
    await run.run_until(40.0)
    assert run.db.leader == "db-3"
    assert run.db.nodes["db-1"].role == "replica"
    assert run.db.lost_writes == 0 and run.db.rewound == 0
    assert {w.wid for w in run.acked} <= await run.wids("db-3")


async def test_ten_minutes_of_random_database_faults_keep_every_node_consistent(
    stored: list[Run],
) -> None:
    run = await open_run(stored, light(failover={"restart": "30s"}, backup={"interval": "2m"}))
    rng = random.Random(2026)
    nodes = ["db-1", "db-2", "db-3"]
    t = 5.0
    while t < 560.0:
        kind = rng.choice(["kill_db", "db_partition", "partition", "replica_lag", "slow_disk",
                           "clock_skew", "switchover", "set_replication", "restore",
                           "set_fencing"])
        if kind == "kill_db":
            run.apply(kind, rng.choice(["", *nodes]), at=t)
        elif kind == "switchover":
            await run.run_until(t)
            with contextlib.suppress(ValueError):  # refused when no replica is healthy
                run.apply(kind)
        elif kind == "set_replication":
            run.apply(kind, at=t, mode=rng.choice(["async", "sync", "semi_sync"]))
        elif kind == "set_fencing":
            run.apply(kind, at=t, enabled=rng.random() < 0.5)
        elif kind == "restore":
            await run.run_until(t)
            with contextlib.suppress(ValueError):  # refused while one is running
                run.apply(kind, time=max(t - rng.uniform(0, 60), 0.0))
        else:
            run.apply(kind, rng.choice(nodes), at=t, duration=rng.uniform(5, 40))
        t += rng.uniform(5.0, 30.0)
    await run.run_until(600.0)
    assert run.db.failovers > 0
    assert await check(run.db, run.storage) == []


# -- the SQL console ------------------------------------------------------------------------


async def test_console_reads_any_node_and_sees_staleness(stored: list[Run]) -> None:
    run = await open_run(stored, light())
    run.apply("db_partition", "db-2", at=5.0)
    await run.run_until(30.0)
    sql = "SELECT count(*), max(lsn) FROM writes"
    primary = await run.storage.query("db-1", sql)
    lagging = await run.storage.query("db-2", sql)
    assert primary.columns == ("count(*)", "max(lsn)")
    assert primary.rows[0][0] > lagging.rows[0][0] > 0
    items = await run.storage.query("db-1", "SELECT * FROM items ORDER BY key", max_rows=5)
    assert len(items.rows) == 5 and items.truncated
    assert items.columns == ("key", "value", "lsn", "committed_at")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DELETE FROM writes", "only SELECT queries are allowed; nothing was changed"),
        ("INSERT INTO writes VALUES (0,0,0,'x',0,0,0)", "only SELECT queries are allowed"),
        ("UPDATE writes SET value = 'x'", "only SELECT queries are allowed"),
        ("DROP TABLE writes", "only SELECT queries are allowed"),
        ("ATTACH DATABASE ':memory:' AS other", "only SELECT queries are allowed"),
        ("PRAGMA writable_schema = 1", "only SELECT queries are allowed"),
        ("CREATE TABLE t (x)", "only SELECT queries are allowed"),
        ("SELECT 1; DELETE FROM writes", "one statement at a time"),
        ("SELEC 1", "SQL error: near \"SELEC\": syntax error"),
        ("", "empty query"),
        (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
            "SELECT count(*) FROM c",
            "query stopped after 0.3 s",
        ),
    ],
)
async def test_console_refuses_anything_but_a_read(
    stored: list[Run], sql: str, message: str
) -> None:
    run = await open_run(stored, light())
    await run.run_until(5.0)
    before = await run.storage.rows("db-1")
    with pytest.raises(QueryError, match=message.replace("(", r"\(")) as err:
        await run.storage.query("db-1", sql, timeout=0.3)
    assert "\n" not in str(err.value)
    assert await run.storage.rows("db-1") == before
    assert await check(run.db, run.storage) == []


async def test_console_names_an_unknown_node(stored: list[Run]) -> None:
    run = await open_run(stored, light())
    with pytest.raises(QueryError, match="no database node 'db-9'"):
        await run.storage.query("db-9", "SELECT 1")


def test_snapshot_shows_roles_lag_and_losses() -> None:
    engine = Engine(light(), seed=1)
    engine.apply(Command("db_partition", "db-3", {"duration": 20.0}, at=5.0))
    engine.run_for(15.0)
    snap = engine.snapshot()
    db = {n.id: n for n in snap.nodes if isinstance(n, DbNode)}
    assert [db[i].state for i in ("db-1", "db-2", "db-3")] == ["primary", "replica", "replica"]
    assert db["db-3"].lag_lsn > 0 and db["db-3"].lag_s > 0
    assert db["db-2"].lag_lsn == 0
    info = snap.database
    assert info is not None
    assert info.leader == "db-1" and info.mode == "async" and not info.degraded
    assert info.lost_writes == info.conflicts == info.rewound == 0


async def test_storage_falling_behind_applies_back_pressure_not_memory() -> None:
    engine = Engine(light(), seed=4)
    storage = Storage(engine.db_nodes(), high_water=50, batch=20)
    await storage.open()
    try:
        engine.attach_storage(storage)
        storage.start()
        await engine.run_async(120.0, storage, slice_seconds=1.0)
        assert storage.rows_written > 10_000
        assert storage.backpressure_waits > 60, "the driver waited for the writer"
        one_slice = 3 * 60  # three nodes, generously above the ~35 writes per second
        assert storage.peak_pending < storage.high_water + one_slice
        assert storage.pending == 0
        assert engine.world.db is not None
        assert await check(engine.world.db, storage) == []
    finally:
        await storage.close()


# -- memory: only what is still needed is kept ----------------------------------------------


def held_records(engine: Engine) -> tuple[int, int]:
    """(records held by the database's histories, records held by the backup archive)."""
    db, backups = engine.world.db, engine.world.backups
    assert db is not None and backups is not None
    seen: set[int] = set()
    held = 0
    for node in db.nodes.values():
        b: Any = node.branch
        while b is not None and id(b) not in seen:
            seen.add(id(b))
            held += len(b.records)
            b = b.parent
    return held, len(backups.records)


def test_the_log_kept_stays_flat_while_writes_pile_up() -> None:
    engine = Engine(light(backup={"interval": "2m", "retention": 2}), seed=3)
    engine.run_for(600.0)
    held_10, archived_10 = held_records(engine)
    writes_10 = engine.world.db.leader_node().end  # type: ignore[union-attr]
    engine.run_for(600.0)
    held_20, archived_20 = held_records(engine)
    writes_20 = engine.world.db.leader_node().end  # type: ignore[union-attr]
    assert writes_20 > writes_10 + 15_000, "ten minutes at ~35 writes/s"
    # the histories hold a handful of records (replicas keep up); the archive at most the log
    # since the older of the two base backups kept: up to 4 minutes plus one archive interval
    assert held_10 < 50 and held_20 < 50
    rate = (writes_20 - writes_10) / 600.0
    assert archived_20 <= rate * (240.0 + 10.0) * 1.1
    assert abs(archived_20 - archived_10) < rate * 120.0 * 1.1


async def test_a_restore_before_the_oldest_base_backup_kept_is_refused(
    stored: list[Run],
) -> None:
    run = await open_run(stored, light(backup={"interval": "30s", "retention": 2}))
    await run.run_until(100.0)
    assert [b.time for b in run.engine.world.backups.base] == [60.0, 90.0]  # type: ignore[union-attr]
    assert run.events("backup_expired")
    with pytest.raises(ValueError, match=r"restore\.time: expected a time between 60\.0 and now "
                                         r"\(100\.0\); earlier points are no longer restorable"):
        run.apply("restore", time=59.0)
    run.apply("restore", time=61.0)
    db = run.engine.snapshot().database
    assert db is not None and db.last_restore is not None
    info = db.last_restore
    assert info.base_backup == 60.0 and info.window_start == 60.0 and db.restorable_from == 60.0
    await run.run_until(100.0 + info.rto + 0.001)
    expected = {w.wid for w in run.acked if w.acked_at is not None and w.acked_at <= 61.0}
    for node in run.db.nodes:
        assert await run.wids(node) == expected
    assert await check(run.db, run.storage) == []


async def test_a_replica_behind_what_the_primary_keeps_is_recloned(stored: list[Run]) -> None:
    run = await open_run(stored, light(wal_keep=100, backup={"restore_base": "5s"}))
    run.apply("db_partition", "db-3", at=10.0, duration=20.0)  # ~700 writes: more than kept
    await run.run_until(29.0)
    assert run.db.nodes["db-3"].end < run.db.leader_node().end - 100
    await run.run_until(60.0)
    assert [e.component for e in run.events("reclone")] == ["db-3"]
    assert run.events("reclone_done")
    assert run.db.lag(run.db.nodes["db-3"])[0] < 10
    assert await run.wids("db-3") <= await run.wids("db-1")
    assert len(await run.wids("db-3")) > 1000
    assert await check(run.db, run.storage) == []
