"""The check language and experiment files: what reads, what is refused and how, and fuzzing
that finds nothing but our own one-line errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackyard.core.checks import METRICS, OPS, CheckError, format_value, parse
from stackyard.core.config import ScenarioError
from stackyard.core.engine import Engine
from stackyard.core.scenario import scenario_from_dict

DOC = Path(__file__).resolve().parents[2] / "docs" / "scenarios.md"


@pytest.mark.parametrize(
    ("text", "metric", "op", "threshold", "canonical"),
    [
        ("p99<300ms", "p99", "<", 0.3, "p99 < 300ms"),
        ("  p99   <=   1.5s ", "p99", "<=", 1.5, "p99 <= 1.5s"),
        ("P95 < 2m", "p95", "<", 120.0, "p95 < 120s"),
        ("mean<250us", "mean", "<", 0.00025, "mean < 0.25ms"),
        ("error_rate < 12.345%", "error_rate", "<", 0.12345, "error_rate < 12.345%"),
        ("p50 < 0.2", "p50", "<", 0.2, "p50 < 200ms"),
        ("lost_writes==0", "lost_writes", "==", 0.0, "lost_writes == 0"),
        ("error_rate<=1%", "error_rate", "<=", 0.01, "error_rate <= 1%"),
        ("availability >= 99.9%", "availability", ">=", 0.999, "availability >= 99.9%"),
        ("availability>=0.999", "availability", ">=", 0.999, "availability >= 99.9%"),
        ("throughput > 250rps", "throughput", ">", 250.0, "throughput > 250rps"),
        ("throughput > 250/s", "throughput", ">", 250.0, "throughput > 250rps"),
        ("stale_reads < 1e3", "stale_reads", "<", 1000.0, "stale_reads < 1000"),
        ("recovery_time < 1m", "recovery_time", "<", 60.0, "recovery_time < 60s"),
    ],
)
def test_checks_that_read(text: str, metric: str, op: str, threshold: float,
                          canonical: str) -> None:
    exp = parse(text)
    assert (exp.metric.name, exp.op, exp.threshold) == (metric, op, pytest.approx(threshold))
    assert exp.text() == canonical
    assert parse(canonical) == exp


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a check such as 'p99 < 300ms' or 'lost_writes == 0', got nothing"),
        ("p98 < 1s", "expected a metric such as p99, error_rate or lost_writes, got 'p98' "
                     "(did you mean 'p99'?)"),
        ("< 1s", "expected a metric (p50, p90, "),
        ("p99", "expected a comparison (<, <=, >, >=, ==) after 'p99', got nothing"),
        ("p99 => 1s", "expected a comparison (<, <=, >, >=, ==) after 'p99', got '=> '"),
        ("p99 = 1s", "expected a comparison (<, <=, >, >=, ==) after 'p99', got '= 1'"),
        ("p99 <", "p99: expected a duration such as 300ms, 1.5s or 2m after 'p99 <', "
                  "got nothing"),
        ("p99 < fast", "p99: expected a duration such as 300ms, 1.5s or 2m after 'p99 <', "
                       "got 'fast'"),
        ("p99 < 5%", "p99: expected a duration such as 300ms, 1.5s or 2m, got '5%'"),
        ("p99 < 300 ms x", "expected nothing after 'p99 < 300 ms', got 'x'"),
        ("error_rate < 150%", "error_rate: expected a fraction such as 1%, 99.9% or 0.01 "
                              "between 0 and 100%, got '150%'"),
        ("error_rate < 2ms", "error_rate: expected a fraction such as 1%, 99.9% or 0.01, "
                             "got '2ms'"),
        ("lost_writes == 0s", "lost_writes: expected a count such as 0 or 10 (no unit), "
                              "got '0s'"),
        ("p99 < 1e400", "p99: expected a finite number, got '1e400'"),
        ("p99 < 1e300", "p99: expected a duration such as 300ms, 1.5s or 2m between 0 and "
                        "1e+07s, got '1e300'"),
        ("p99 < 1e99999999999", "p99: expected a finite number, got '1e99999999999'"),
        ("p99 < .", "p99: expected a duration such as 300ms, 1.5s or 2m after 'p99 <', "
                    "got '.'"),
        ("x" * 300, "expected a check of at most 200 characters, got 300"),
    ],
)
def test_bad_checks_say_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(CheckError) as caught:
        parse(text)
    line = str(caught.value)
    assert line.startswith(message)
    assert "\n" not in line and len(line) <= 240


def test_a_check_that_is_not_a_string() -> None:
    with pytest.raises(CheckError, match="as a string, got int"):
        parse(3)


@given(st.text(max_size=60))
@settings(max_examples=400, derandomize=True)
def test_fuzzed_text_gives_a_check_or_one_line(text: str) -> None:
    try:
        exp = parse(text)
    except CheckError as exc:
        assert "\n" not in str(exc)
    else:
        assert parse(exp.text()) == exp


ATOMS = st.sampled_from([*METRICS, *OPS, "%", "ms", "s", "m", "rps", "/s", "e", "-", ".", " ",
                         "0", "1", "99.9", "1e3", "==", "=", "!", "x"])


@given(st.lists(ATOMS, max_size=8).map("".join))
@settings(max_examples=400, derandomize=True)
def test_fuzzed_near_misses_give_a_check_or_one_line(text: str) -> None:
    try:
        exp = parse(text)
    except CheckError as exc:
        assert "\n" not in str(exc)
    else:
        assert exp.holds(exp.threshold) == (exp.op in ("<=", ">=", "=="))


def test_values_are_shown_in_their_unit() -> None:
    assert [format_value(x, u) for x, u in ((0.0123, "s"), (90.0, "s"), (0.015, "fraction"),
                                            (3.0, "count"), (250.0, "rps"))] == \
        ["12.3ms", "90s", "1.5%", "3", "250rps"]


# -- experiment files ------------------------------------------------------------------------


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        Engine(scenario_from_dict(data, "x.toml"))
    return caught.value.problems


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"checks": [{"expect": "p98 < 1s"}]},
         "checks[0].expect: expected a metric such as p99, error_rate or lost_writes, got 'p98' "
         "(did you mean 'p99'?)"),
        ({"checks": [{}]}, "checks[0].expect: expected a check such as 'p99 < 300ms', got "
                           "nothing"),
        ({"checks": [{"expect": "lost_writes == 0"}], "database": {"enabled": False}},
         "checks[0].expect: lost_writes needs a database tier (database.enabled is false)"),
        ({"checks": [{"expect": "cdn_hit_ratio > 50%"}], "cdn": {"enabled": False}},
         "checks[0].expect: cdn_hit_ratio needs a CDN (cdn.enabled is false)"),
        ({"checks": [{"expect": "rto < 1m", "over": "after"}]},
         "checks[0].over: rto is measured over the whole run; expected 'run', got 'after'"),
        ({"checks": [{"expect": "p99 < 1s", "start": "1m"}]},
         "checks[0].start: only used with over = 'window' or 'continuously', got over = 'run'"),
        ({"checks": [{"expect": "p99 < 1s", "over": "window", "start": "2m", "end": "1m"}]},
         "checks[0].end: expected a time after start (120 s) or 0 for the end of the run, "
         "got 60 s"),
        ({"checks": [{"expect": "p99 < 1s", "grace": "10s"}]},
         "checks[0].grace: only used with over = 'after', got over = 'run'"),
        ({"checks": [{"expect": "p99 < 1s", "over": "during"}]},
         "checks[0].over: expected one of 'run', 'window', 'before', 'after', 'continuously', "
         "got 'during'"),
        ({"checks": {"expect": "p99 < 1s"}},
         "checks: expected an array of tables ([[checks]]), got a table"),
        ({"rollbacks": [{"kind": "kill_db"}]},
         "rollbacks[0].kind: expected '' (every fault) or a fault that can be cleared "
         "(crash_loop, "),
        ({"rollbacks": [{"at": "-1s"}]}, "rollbacks[0].at: expected a duration >= 0 s, got "),
        ({"actions": [{"kind": "kill_db"}]}, "actions[0].kind: expected one of clear, "),
        ({"actions": [{"kind": "set_algorithm", "params": {"name": "fastest"}}]},
         "actions[0].params: set_algorithm.name: expected one of round_robin, "),
        ({"actions": [{"kind": "switchover", "target": "db-9"}]},
         "actions[0].target: expected one of db-1, db-2, db-3, got 'db-9'"),
        ({"actions": [{"at": "1s"}]}, "actions[0].kind: expected a control such as 'restore'"),
        ({"run": {"lesson": 5}}, "run.lesson: expected a string, got 5 (an integer)"),
    ],
)
def test_bad_experiment_files_are_one_line_each(data: dict[str, Any], expected: str) -> None:
    (line,) = problems(data)
    assert line.startswith(expected)


def test_the_docs_list_every_metric_with_its_unit() -> None:
    text = DOC.read_text(encoding="utf-8")
    table = text.split("| metric | unit | meaning |")[1].split("\n\n")[0]
    rows = dict(re.findall(r"^\| `([a-z_0-9]+)` \| ([a-z]+) \|", table, re.M))
    words = {"s": "duration", "fraction": "fraction", "count": "count", "rps": "rate"}
    assert rows == {name: words[m.unit] for name, m in METRICS.items()}


# -- fuzzing experiment files ----------------------------------------------------------------

SCALARS = st.one_of(st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(["10s", "1m", "-5s", "0", "p99 < 300ms", "lost_writes==0",
                                     "error_rate<=1%", "after", "window", "continuously",
                                     "before", "run", "slow_disk", "db-1", "restore",
                                     "set_algorithm", "app-1", ""]))
CHECK_KEYS = st.sampled_from(["expect", "name", "over", "start", "end", "grace", "bogus"])
ROLLBACK_KEYS = st.sampled_from(["at", "kind", "target", "bogus"])
ACTION_KEYS = st.sampled_from(["kind", "at", "target", "params"])


def tables(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    entry = st.dictionaries(keys, st.one_of(SCALARS, st.dictionaries(st.text(max_size=6),
                                                                      SCALARS, max_size=2)),
                            max_size=5)
    return st.one_of(st.lists(entry, max_size=3), SCALARS)


@given(checks=tables(CHECK_KEYS), rollbacks=tables(ROLLBACK_KEYS), actions=tables(ACTION_KEYS),
       lesson=SCALARS)
@settings(max_examples=150, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
def test_fuzzed_experiment_files_give_a_run_or_one_line_errors(
        checks: Any, rollbacks: Any, actions: Any, lesson: Any) -> None:
    data = {"checks": checks, "rollbacks": rollbacks, "actions": actions,
            "run": {"lesson": lesson}, "traffic": {"regions": {"eu": {"rate": 5.0}}}}
    try:
        engine = Engine(scenario_from_dict(data, "fuzz.toml"))
        engine.run_until(3.0)
        summary = engine.summary()
    except ScenarioError as exc:
        assert exc.problems and all("\n" not in p for p in exc.problems)
    else:
        assert len(summary.checks) == len(engine.scenario.checks)
