"""Checks measured from the engine: windows, verdicts, rollbacks and actions, and the cause
chain from faults to events to a failed check's likely cause."""

from __future__ import annotations

import re
from typing import Any

import pytest
from msgspec.structs import replace

from stackyard.core.engine import Engine
from stackyard.core.protocol import CheckResult
from stackyard.core.scenario import load_builtin, scenario_with

QUIET: dict[str, Any] = {"traffic": {"regions": {"eu": {"rate": 100.0}}}}
"""The M/M/4 validation queue at 100 rps: cheap to run, and its latency is its service time."""

SLOW_CLIENTS: list[dict[str, Any]] = [
    {"kind": "link_latency", "at": "10s", "target": "client-eu", "duration": "10s",
     "params": {"latency": 0.5, "jitter": 0.0}},
]
"""From 10 s to 20 s every message between clients and their edge takes half a second."""


def engine(checks: list[dict[str, Any]], faults: list[dict[str, Any]] | None = None,
           **more: Any) -> Engine:
    data = {**QUIET, "faults": SLOW_CLIENTS if faults is None else faults, "checks": checks,
            **more}
    return Engine(scenario_with(load_builtin("mmc"), data, "test"), seed=3)


def results(e: Engine, until: float) -> dict[str, CheckResult]:
    e.run_until(until)
    return {c.name: c for c in e.summary().checks}


def test_each_window_measures_the_seconds_it_names() -> None:
    e = engine([
        {"name": "run", "expect": "p50 < 100ms"},
        {"name": "slow", "expect": "p50 > 900ms", "over": "window", "start": "11s",
         "end": "20s"},
        {"name": "before", "expect": "p99 < 100ms", "over": "before"},
        {"name": "after", "expect": "p99 < 100ms", "over": "after", "grace": "1s"},
        {"name": "every second", "expect": "p99 < 100ms", "over": "continuously"},
        {"name": "every second before", "expect": "p99 < 100ms", "over": "continuously",
         "end": "10s"},
    ])
    r = results(e, 40.0)
    assert all(c.passed for n, c in r.items() if n != "every second"), r
    assert (r["run"].start, r["run"].end) == (0.0, 40.0)
    assert (r["slow"].start, r["slow"].end) == (11.0, 20.0)
    assert r["slow"].value is not None and r["slow"].value >= 1.0  # there and back: 2 x 0.5 s
    assert (r["before"].start, r["before"].end) == (0.0, 10.0)
    assert (r["after"].start, r["after"].end) == (21.0, 40.0)
    every = r["every second"]
    # at 100 rps about one request is in flight when the link slows: a request counts when its
    # answer leaves, so the first second with slow answers is the one that ends at 11 s (sent
    # after 10 s, answered half a second later, their latency includes the trip back)
    assert not every.passed and every.failed_at == 11.0
    assert every.value is not None and every.value >= 1.0  # the worst second
    assert every.cause is not None and (every.cause.fault, every.cause.kind) == \
        ("f1", "link_latency")
    assert every.cause.text == "f1 link_latency on client-eu at 10.0s"


def test_checks_change_nothing_in_the_run_and_repeat_exactly() -> None:
    checks = [{"expect": "p99 < 100ms", "over": "continuously"},
              {"expect": "error_rate <= 1%", "over": "after"}]
    plain = engine([])
    plain.run_until(30.0)
    first, second = engine(checks), engine(checks)
    first.run_until(30.0)
    second.run_until(30.0)
    assert first.summary().to_json() == second.summary().to_json()
    bare = replace(first.summary(), checks=(), events=0)
    assert bare == replace(plain.summary(), events=0)
    assert first.kernel.now == plain.kernel.now


def test_nothing_to_measure_fails_and_says_why() -> None:
    faults = [{**SLOW_CLIENTS[0], "at": "0s", "duration": 0}]
    r = results(engine([{"expect": "p99 < 1s", "over": "before"},
                        {"expect": "recovery_time < 1m"}], faults), 15.0)
    before = r["p99 < 1s before"]
    assert (before.passed, before.value) == (False, None)
    assert before.note == "nothing to measure: the first fault came at 0.0s"
    recovery = r["recovery_time < 60s"]
    assert not recovery.passed and recovery.value is None
    assert recovery.note == "not recovered by the end of the run (15s)"
    assert recovery.cause is not None and recovery.cause.fault == "f1"


def test_recovery_time_runs_from_the_last_injection_to_the_last_bad_second() -> None:
    faults = [{"kind": "partition", "at": "10s", "target": "client-eu", "duration": "5s"}]
    r = results(engine([{"expect": "recovery_time < 10s"}], faults), 40.0)
    (check,) = r.values()
    assert check.passed
    assert check.value is not None and 5.0 <= check.value <= 7.0


def test_a_rollback_clears_the_faults_it_names_and_only_those() -> None:
    faults = [{"kind": "link_latency", "at": "2s", "target": "client-eu",
               "params": {"latency": 0.05}},
              {"kind": "packet_loss", "at": "2s", "target": "lb-app", "params": {"loss": 0.01}}]
    e = engine([], faults, rollbacks=[{"at": "5s", "kind": "link_latency"}])
    e.run_until(4.0)
    assert sorted(f.kind for f in e.faults.values()) == ["link_latency", "packet_loss"]
    e.run_until(6.0)
    assert [f.kind for f in e.faults.values()] == ["packet_loss"]
    (cleared,) = [ev for ev in e.events if ev.kind == "fault_cleared"]
    assert (cleared.time, cleared.cause) == (5.0, "f1")
    assert cleared.why == "rolled back at 5 s (scenario file)"


def test_an_action_runs_at_its_time() -> None:
    e = engine([], [], actions=[{"kind": "set_algorithm", "at": "3s",
                                 "params": {"name": "peak_ewma"}}])
    e.run_until(2.9)
    assert e.world.balancer.algorithm == "round_robin"
    e.run_until(3.0)
    assert e.world.balancer.algorithm == "peak_ewma"
    assert [(t, c.kind, c.origin) for t, c in e.commands] == [(3.0, "set_algorithm", "file")]


def test_verdicts_are_logged_as_events_when_their_window_closes() -> None:
    e = engine([{"expect": "p99 < 100ms", "over": "continuously"},
                {"expect": "p99 < 100ms", "over": "before"},
                {"expect": "p50 < 100ms", "over": "window", "start": "25s", "end": "30s"}])
    e.run_until(40.0)
    verdicts = [(ev.time, ev.kind, ev.message.split(" (")[0], ev.cause) for ev in e.events
                if ev.component == "checks"]
    assert verdicts == [
        (10.0, "check_held", "check held: p99 < 100ms before", ""),
        (11.0, "check_failed", "check failed: p99 < 100ms continuously", "f1"),
        (30.0, "check_held", "check held: p50 < 100ms window 25s-30s", ""),
    ]
    assert all(re.search(r" \([0-9.]+m?s\)$", ev.message) for ev in e.events
               if ev.component == "checks")
    failed = next(ev for ev in e.events if ev.kind == "check_failed")
    assert failed.why == "likely cause: f1 link_latency on client-eu at 10.0s"


# -- the cause chain -------------------------------------------------------------------------


def test_consequences_of_a_fault_carry_its_id() -> None:
    base = load_builtin("default")
    e = Engine(scenario_with(base, {"traffic": {"regions": {"eu": {"rate": 40.0},
                                                            "us": {"rate": 40.0}}},
                                    "faults": [{"kind": "kill_db", "at": "5s",
                                                "target": "db-1"}]}, "test"), seed=2)
    e.run_until(80.0)
    caused = {ev.kind: ev.cause for ev in e.events}
    assert caused["container_up"] == ""  # the fleet starting is nobody's doing
    for kind in ("fault", "db_down", "lease_expired", "promoting", "promoted", "db_up"):
        assert caused[kind] == "f1", kind


def test_the_fault_in_force_is_blamed_over_one_that_ended() -> None:
    s = load_builtin("retry-storm")
    e = Engine(scenario_with(s, {"checks": [{"expect": "error_rate <= 1%"},
                                            {"expect": "error_rate <= 1%", "over": "after"}]},
                             "test"), seed=1)
    r = results(e, 75.0)
    run, after = r["error_rate <= 1%"], r["error_rate <= 1% after"]
    # the slowdown started the storm; once it ended, the retries without a budget carry it
    assert run.cause is not None and (run.cause.kind, run.failed_at) == ("link_latency", 31.0)
    assert after.cause is not None and (after.cause.kind, after.failed_at) == \
        ("retry_storm", 61.0)


@pytest.mark.parametrize("over", ["run", "continuously"])
def test_a_traffic_pattern_is_named_when_no_fault_is_to_blame(over: str) -> None:
    s = load_builtin("flash-crowd")
    data = {"traffic": {"regions": {"eu": {"rate": 100.0, "pattern": {"start": "10s"}},
                                    "us": {"rate": 100.0, "pattern": {"start": "10s"}}}},
            "app": {"autoscaler": {"initial": 2, "min": 2}},
            "checks": [{"expect": "p99 < 500ms", "over": over}]}
    (check,) = results(Engine(scenario_with(s, data, "test"), seed=1), 40.0).values()
    assert not check.passed and check.failed_at == 11.0
    assert check.cause is not None
    assert (check.cause.fault, check.cause.kind, check.cause.target) == \
        ("", "traffic_pattern", "eu,us")
    assert check.cause.text == "traffic pattern: spike in eu, us (x5 from 10.0s)"
