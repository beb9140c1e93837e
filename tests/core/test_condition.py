"""The lessons' condition language: it reads typed snapshot fields, checks names and values
against the record types, and never evaluates code."""

from __future__ import annotations

import pytest

from stackyard.core.condition import ConditionError, parse
from stackyard.core.engine import Engine
from stackyard.core.protocol import Command, Snapshot
from tests.core.conftest import scenario


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    engine = Engine(scenario("default"), seed=7)
    engine.run_for(5)
    engine.apply(Command("replica_lag", "db-2"))
    engine.run_for(5)
    return engine.snapshot()


@pytest.fixture(scope="module")
def ids(snap: Snapshot) -> dict[str, str]:
    return {n.id: n.kind for n in snap.nodes}


@pytest.mark.parametrize(("text", "expected"), [
    ("database.failovers >= 1", False),
    ("database.failovers == 0", True),
    ('node("db-1").state == "primary"', True),
    ('node("db-2").lag_lsn > 10 and node("db-2").lag_s > 1', True),
    ('count("vm", "ready") >= 2 and kpis.rps > 100', True),
    ('count("container") == 4', True),
    ('fault("replica_lag") == 1 and not fault("retry_storm")', True),
    ('max("db", "lag_lsn") > 10 or false', True),
    ('min("container", "workers") == 8', True),
    ('sum("host", "vms") == 2', True),
    ("elapsed >= 3", True),
    ("elapsed > 3", False),
    ("database.last_promotion == none", True),
    ("database.last_promotion.lost == 0", False),
    ('database.mode == "async" and (balancer.algorithm == "round_robin" or false)', True),
    ("kpis.error_rate < 0.5", True),
    ('node("app-99").state == "running"', False),
])
def test_conditions_read_the_snapshot(snap: Snapshot, ids: dict[str, str], text: str,
                                      expected: bool) -> None:
    assert parse(text, "until", ids).holds(snap, elapsed=3.0) is expected


@pytest.mark.parametrize(("text", "fragment"), [
    ("database.lost", "database has no field 'lost' (fields: mode,"),
    ('node("db-1").state == "dwn"', "node(\"db-1\").state is never 'dwn' (it is one of primary"),
    ('database.mode == "asyn"', "is never 'asyn' (it is one of async, semi_sync, sync)"),
    ('node("zz").state == "up"', "no node 'zz' in this scenario"),
    ('count("vm", "zzz") > 0', "a vm is never 'zzz'"),
    ('count("vms") > 0', "no node kind 'vms'"),
    ('max("container", "state") > 1', "max() needs a number field of a container"),
    ('kpis.rps > "a"', "cannot compare kpis.rps (a number) with \"a\" (a string)"),
    ("kpis.rps >", "expected more at the end"),
    ("(kpis.rps > 1", "expected ')' at the end"),
    ("kpis.rps $ 3", "unexpected '$' at column 10"),
    ("kpis", "kpis is a record: name one of its fields (rps, p50"),
    ("database.mode", "database.mode is a string, expected a comparison"),
    ('__import__("os").system("true")', "the snapshot has no field '__import__'"),
    ("", "empty condition"),
    ("kpis.rps > 1 " * 60, "longer than 400 characters"),
    ("(" * 17 + "1" + ")" * 17, "nested deeper than 16"),
])
def test_bad_conditions_are_one_line_naming_the_field(ids: dict[str, str], text: str,
                                                      fragment: str) -> None:
    with pytest.raises(ConditionError) as err:
        parse(text, "steps[2].until", ids)
    message = str(err.value)
    assert message.startswith("steps[2].until: ") and "\n" not in message
    assert fragment in message, message


def test_containers_that_come_later_may_be_named(ids: dict[str, str], snap: Snapshot) -> None:
    assert not parse('node("app-12").state == "running"', "until", ids).holds(snap)
