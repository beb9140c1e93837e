"""Hostile scenarios: every size and rate is bounded by what the engine can simulate, and a
mutated scenario is either refused in one line per problem or runs; never an internal error,
never a hang, never an overflow deep inside the model."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackyard.cli.main import main
from stackyard.core.config import MAX_RATE, ScenarioError
from stackyard.core.engine import Engine
from stackyard.core.faults import FAULTS
from stackyard.core.protocol import Command
from stackyard.core.scenario import load_scenario, scenario_from_dict

from .conftest import merge


def default_data() -> dict[str, Any]:
    text = resources.files("stackyard.core.scenarios").joinpath("default.toml").read_text()
    return tomllib.loads(text)


def problems(**sections: Any) -> list[str]:
    """The problems of the default scenario with ``sections`` overridden ([] if it is fine)."""
    try:
        Engine(scenario_from_dict(merge(default_data(), sections), "t"))
    except ScenarioError as exc:
        return exc.problems
    return []


@dataclasses.dataclass(frozen=True)
class Deep:
    """A value nested ``depth`` arrays deep, written straight as TOML text."""

    depth: int

    def toml(self) -> str:
        return "[" * self.depth + "1" + "]" * self.depth


def toml(value: Any) -> str:
    """``value`` as TOML (inline tables and arrays only, so any nesting is one line)."""
    if isinstance(value, Deep):
        return value.toml()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") \
            if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k))} = {toml(v)}" for k, v in value.items()) + "}"


def toml_file(path: Path, data: dict[str, Any]) -> Path:
    path.write_text("".join(f"{json.dumps(k)} = {toml(v)}\n" for k, v in data.items()))
    return path


# -- one test per class of the issue --------------------------------------------------------


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"app": {"vm": {"memory_gb": 1e308}}},
         "app.vm.memory_gb: expected a number between 0.1 and 65536, got 1e+308"),
        ({"balancer": {"algorithm": "weighted_round_robin", "weights": {"vm-1": 1e308}}},
         "balancer.weights.vm-1: expected a number between 0 and 1000000, got 1e+308"),
        ({"balancer": {"algorithm": "weighted_round_robin", "weights": {"vm-1": -1e308}}},
         "balancer.weights.vm-1: expected a number between 0 and 1000000, got -1e+308"),
        ({"app": {"service": {"read": 1e308}}},
         "app.service.read: expected a duration of at most 366 days, got 1e+308"),
        ({"traffic": {"keys": 10**7}},
         "traffic.keys: expected an integer between 1 and 1000000, got 10000000"),
        ({"app": {"hosts": {"count": 10**6}}},
         "app.hosts.count: expected an integer between 1 and 1000, got 1000000"),
        ({"balancer": {"hash_replicas": 2**63 - 1}},
         "balancer.hash_replicas: expected an integer between 1 and 1000, got "),
        ({"app": {"autoscaler": {"initial": 10**5}}},
         "app.autoscaler.initial: expected an integer between 0 and 1000, got 100000"),
        ({"database": {"replicas": 10**6}},
         "database.replicas: expected an integer between 0 and 8, got 1000000"),
        ({"traffic": {"sticky_clients": 10**12}}, "traffic.sticky_clients: expected an integer"),
        ({"cdn": {"capacity": 10**9}}, "cdn.capacity: expected an integer between 0 and"),
        ({"database": {"pool": 10**9}}, "database.pool: expected an integer between 1 and"),
        ({"app": {"container": {"workers": 10**9}}}, "app.container.workers: expected an"),
        ({"app": {"container": {"queue": 10**9}}}, "app.container.queue: expected an integer"),
        ({"traffic": {"regions": {"eu": {"rate": 1e300}}}},
         "traffic.regions.eu.rate: expected a number between 0 and 100000, got 1e+300"),
        ({"traffic": {"regions": {f"r{i}": {"rate": 1} for i in range(15)}}},
         "traffic.regions: expected at most 16 entries, got 17"),
        ({"run": {"seed": 2**80}}, "run.seed: expected an integer between"),
        ({"run": {"duration": 10**400}}, "run.duration: expected a finite duration, got 1000"),
        ({"run": {"duration": "9999h"}}, "run.duration: expected a duration of at most 366 days"),
    ],
)
def test_sizes_and_magnitudes_are_bounded_with_the_limit_named(
    sections: dict[str, Any], message: str
) -> None:
    found = problems(**sections)
    assert len(found) == 1 and found[0].startswith(message), found


@pytest.mark.parametrize(
    ("sections", "faults"),
    [
        ({"traffic": {"regions": {"eu": {"rate": 60_000}, "us": {"rate": 60_000}}}}, []),
        ({"traffic": {"regions": {"eu": {"rate": 5_000, "pattern": {
            "kind": "spike", "factor": 100}}}}}, []),
        ({}, [{"kind": "traffic_spike", "at": 10, "params": {"factor": 1000}}]),
        ({}, [{"kind": "traffic_spike", "at": 10, "duration": 60, "params": {"factor": 30}},
              {"kind": "traffic_spike", "at": 30, "target": "eu", "params": {"factor": 30}}]),
    ],
)
def test_the_peak_arrival_rate_is_bounded(sections: dict[str, Any],
                                          faults: list[dict[str, Any]]) -> None:
    found = problems(**sections, faults=faults)
    assert len(found) == 1, found
    assert found[0].startswith(f"traffic.regions: expected a peak arrival rate of at most "
                               f"{MAX_RATE:.0f}/s in all")


def test_spikes_that_do_not_overlap_do_not_add_up() -> None:
    faults = [{"kind": "traffic_spike", "at": 10 + 100 * i, "duration": 60,
               "params": {"factor": 100}} for i in range(5)]
    assert problems(faults=faults) == []


def test_a_crash_loop_with_zero_start_and_back_off_keeps_the_clock_moving() -> None:
    engine = Engine(scenario_from_dict(merge(default_data(), {
        "app": {"container": {"start": 0, "backoff_initial": 0, "backoff_max": 0}},
        "faults": [{"kind": "crash_loop", "target": "app-1", "params": {"after": 0.01}}],
    }), "t"))
    engine.run_for(150.0)
    assert engine.now == pytest.approx(150.0)
    assert engine.world.cluster.containers["app-1"].restarts > 1025


def test_a_crash_loop_of_days_does_not_overflow_its_back_off() -> None:
    engine = Engine(scenario_from_dict(merge(default_data(), {
        "traffic": {"regions": {"eu": {"rate": 0.01}, "us": {"rate": 0.01}}},
        "app": {"autoscaler": {"enabled": False, "initial": 1, "min": 1}},
        "database": {"enabled": False},
        "faults": [{"kind": "crash_loop", "target": "app-1"}],
    }), "t"))
    engine.run_for(88 * 3600.0)  # 2 ** 1024 overflowed a float at restart 1025, after 87 h
    app = engine.world.cluster.containers["app-1"]
    assert app.restarts > 1025 and app.backoff == 300.0



def test_stacked_live_spikes_are_held_at_the_rate_limit_so_the_clock_moves() -> None:
    engine = Engine(scenario_from_dict(default_data(), "t"))
    for _ in range(5):  # spikes stack: 1000^5 x 200/s
        engine.apply(Command("traffic_spike", "", {"factor": 1000}))
    assert [r.current_rate() for r in engine.world.regions.values()] == [MAX_RATE, MAX_RATE]
    engine.run_for(0.02)
    assert engine.now == pytest.approx(0.02)

@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x = " + "[" * 1000 + "]" * 1000 + "\n", "nested too deeply"),
        ("x = " + "{a = " * 1000 + "1" + "}" * 1000 + "\n", "nested too deeply"),
        ("traffic" + ".keys" * 20_000 + " = 1\n", "line 1: a dotted key of more than 16 parts"),
        ("[" + "run." * 30_000 + "x]\ny = 1\n", "a dotted key of more than 16 parts"),
        ('[run]\nduration = "' + "9" * 5000 + 's"\n', "run.duration: expected a duration"),
        ("[run]\n" + "k" * 5000 + " = 1\n", "run.kkkk"),
        ("".join(f'[[faults]]\nkind = "kill_vm"\nat = {i}\ntarget = "vm-1"\n'
                 for i in range(10_000)), "faults: expected at most 1000 entries, got 10000"),
    ],
    ids=["deep-arrays", "deep-tables", "dotted-key", "dotted-table", "long-value", "long-key",
         "ten-thousand-faults"],
)
def test_hostile_files_are_refused_quickly_in_short_lines(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "hostile.toml"
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(ScenarioError) as err:
        Engine(load_scenario(path))
    assert time.monotonic() - started < 10.0, "refused in bounded time (it took 14-41 s)"
    assert len(err.value.problems) == 1 and message in err.value.problems[0]
    assert len(err.value.problems[0]) < 250


def test_a_thousand_faults_validate_in_linear_time(tmp_path: Path) -> None:
    good = "".join(f'[[faults]]\nkind = "kill_vm"\nat = {i}\ntarget = "vm-1"\n'
                   for i in range(1000))
    bad = "".join(f'[[faults]]\nkind = "kill_vm"\nat = -{i + 1}\ntarget = "vm-1"\nx = 1\n'
                  for i in range(1000))
    (tmp_path / "good.toml").write_text(good)
    (tmp_path / "bad.toml").write_text(bad)
    started = time.monotonic()
    assert len(Engine(load_scenario(tmp_path / "good.toml")).scenario.faults) == 1000
    with pytest.raises(ScenarioError) as err:
        load_scenario(tmp_path / "bad.toml")
    assert len(err.value.problems) == 2000
    assert time.monotonic() - started < 20.0


def test_a_fifo_is_not_read_as_a_scenario(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x.toml")
    with pytest.raises(ScenarioError, match="cannot read: not a regular file"):
        load_scenario(tmp_path / "x.toml")


# -- mutants: validate and a 30 s run, exit 0 or 2, never an internal error -----------------

MAGNITUDES = [0, 0.0, 5e-324, 1e-9, 0.5, 1, 2, 10, 1e3, 1e6, 1e9, 1e15, 1e100, 1e300, 1e308,
              -1, -1e308, math.nan, math.inf, -math.inf, 2**31, 2**63 - 1, 2**64, -(2**63)]


def _leaves(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            out += _leaves(value, (*prefix, key))
        else:
            out.append((*prefix, key))
    return out


LEAVES = [
    *_leaves(default_data()),
    ("app", "container", "backoff_initial"), ("app", "container", "backoff_max"),
    ("app", "autoscaler", "max_up_percent"), ("app", "autoscaler", "max_up_pods"),
    ("balancer", "hash_replicas"), ("balancer", "weights", "vm-1"), ("balancer", "ewma_decay"),
    ("traffic", "regions", "eu", "pattern", "factor"), ("cdn", "hit_latency"),
    ("app", "vm", "idle_shutdown"), ("app", "hosts", "reboot"),
]
TARGETS = ["", "app-1", "vm-1", "host-1", "db-1", "db-2", "eu", "edge-eu", "lb-1", "lb-app",
           "client-eu", "nope"]


TARGET_OF = {"container": "app-1", "vm": "vm-1", "host": "host-1", "link": "lb-app",
             "edge": "edge-eu", "region": "eu", "db": "db-2", "node": "app-2"}

hostile = st.one_of(
    st.sampled_from(MAGNITUDES),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(["", "x", "10s", "1e308s", "-1s", "nan", "round_robin", "spike",
                     "weighted_round_robin", "consistent_hash", "sync", "x" * 5000]),
    st.booleans(),
    st.builds(Deep, st.sampled_from([1, 3, 50, 1200])),
    st.builds(lambda n: {"a": {"b": {"c": n}}}, st.integers(0, 3)),
)
def _plausible_like(default: Any) -> st.SearchStrategy[Any]:
    """A value of the same kind as ``default`` that a real file might hold."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.sampled_from([0, 1, 2, 3, 10, 64])
    if isinstance(default, float):
        return st.floats(min_value=0.0, max_value=1.0)
    if isinstance(default, str) and default[:1].isdigit():
        return st.sampled_from(["0s", "500ms", "2s", "30s"])
    choices = ["round_robin", "weighted_round_robin", "least_connections", "random",
               "power_of_two", "consistent_hash", "peak_ewma", "async", "sync", "semi_sync",
               "primary", "replicas", "constant", "ramp", "diurnal", "spike"]
    return st.sampled_from([default, *choices]) if isinstance(default, str) else st.none()


plausible = st.one_of(
    st.sampled_from([1, 2, 3, 10, 64]),
    st.floats(min_value=0.01, max_value=1.0),
    st.sampled_from(["500ms", "2s", "30s"]),
)


@st.composite
def faults(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from([*FAULTS, "nope"]))
    spec = FAULTS[kind].targets[0] if kind in FAULTS and FAULTS[kind].targets else "none"
    fitting = TARGET_OF.get(spec, "")
    fault: dict[str, Any] = {
        "kind": kind,
        "target": draw(st.sampled_from([fitting] * 4 + TARGETS)),
        "at": draw(st.sampled_from([0, 1, 10, 29.5, 0, 1, 10, 29.5, 1e9, -1, math.nan])),
    }
    if draw(st.booleans()):
        fault["duration"] = draw(st.sampled_from([0, 5, 1e308, -1]))
    names = [p.name for p in FAULTS[kind].params if p.name != "duration"] if kind in FAULTS \
        else []
    if draw(st.booleans()) and names:
        fault["params"] = {draw(st.sampled_from(names)): draw(plausible)}
    elif draw(st.integers(0, 4)) == 0:
        fault["params"] = draw(st.dictionaries(st.sampled_from([*names, "bogus"]), hostile,
                                               max_size=2))
    return fault


def _default(path: tuple[str, ...]) -> Any:
    node: Any = default_data()
    for key in path:
        node = node.get(key, 1.0) if isinstance(node, dict) else 1.0
    return node


NUMERIC = [path for path in LEAVES if not isinstance(_default(path), bool | str)
           or str(_default(path))[:1].isdigit()]
HUGE = [1e308, -1e308, math.nan, math.inf, 2**63 - 1, 10**400, 1e15, 1e9, 1e6, 0]


@st.composite
def mutants(draw: st.DrawFn) -> dict[str, Any]:
    """The default scenario with plausible changes, one magnitude written into several numeric
    fields, or anything at all; and 0 to 1,001 scheduled faults."""
    data = default_data()
    mode = draw(st.sampled_from(["plausible", "magnitude", "anything"]))
    changes: list[tuple[tuple[str, ...], Any]] = []
    if mode == "plausible":
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from(LEAVES))
            changes.append((path, draw(_plausible_like(_default(path)))))
    elif mode == "magnitude":
        magnitude = draw(st.sampled_from(HUGE))
        paths = draw(st.lists(st.sampled_from(NUMERIC), min_size=1, max_size=8))
        changes += [(path, magnitude) for path in paths]
    else:
        changes += [(draw(st.sampled_from(LEAVES)), draw(hostile))
                    for _ in range(draw(st.integers(1, 2)))]
    for path, value in changes:
        node = data
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict) else {}
        node[path[-1]] = value
    count = draw(st.sampled_from([0, 0, 0, 1, 3, 999, 1001]))
    if count:
        data["faults"] = draw(st.lists(faults(), min_size=min(count, 3), max_size=min(count, 3)))
        data["faults"] *= max(1, count // len(data["faults"]))
    return data


@settings(max_examples=80, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutants())
def test_mutated_scenarios_validate_and_run_or_are_refused(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = toml_file(Path(tmp) / "mutant.toml", data)
        for argv in (["validate", str(path)], ["run", str(path), "--duration", "30s", "--json"]):
            started = time.monotonic()
            code = main(argv)
            assert time.monotonic() - started < 120.0, f"{argv[0]} took too long"
            assert code in (0, 2), f"{argv[0]} exited {code} (1 is an internal error)"
            if code == 2:
                break

