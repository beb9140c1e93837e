"""Scenario loading and validation: every bad input is a one-line problem naming key and need."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import tomllib
import typing
from pathlib import Path

import pytest

from stackyard.core.config import LinkConfig, RegionConfig, Scenario, ScenarioError
from stackyard.core.scenario import (
    builtin_description,
    builtin_names,
    load_builtin,
    load_scenario,
    parse_duration,
    resolve,
    scenario_from_dict,
    scenario_to_dict,
)


def write(tmp_path: Path, text: str | bytes, name: str = "s.toml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str | bytes) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.source == str(path)
    assert info.value.lines() == [f"{path}: {p}" for p in info.value.problems]
    return info.value.problems


# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("1h30m", 5400.0),
        ("2m 30s", 150.0),
        (" 45S ", 45.0),
        ("30", 30.0),
        ("0.5", 0.5),
        (".5s", 0.5),
        ("-2s", -2.0),
        (7, 7.0),
        (0.125, 0.125),
    ],
)
def test_parse_duration_accepts(value: str | int | float, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["abc", "", "5x", "1.5.s", "10 minutes", "ms", "nan", "inf"])
def test_parse_duration_rejects_with_the_value_named(value: str) -> None:
    with pytest.raises(ValueError, match="expected a") as info:
        parse_duration(value)
    assert repr(value) in str(info.value)


def test_parse_duration_rejects_a_boolean() -> None:
    with pytest.raises(ValueError, match=r"got true \(a boolean\)"):
        parse_duration(True)


# --- files that are not scenarios ---------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path / "nope.toml")
    assert info.value.lines() == [f"{tmp_path / 'nope.toml'}: no such file"]


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path)
    assert info.value.problems == ["is a directory, expected a TOML scenario file"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file, expected a UTF-8 TOML scenario"),
        (
            b'[run]\nname = "caf\xe9"\n',
            "not UTF-8 text (byte 0xe9 on line 2), expected TOML",
        ),
    ],
)
def test_binary_or_non_utf8_file(tmp_path: Path, raw: bytes, expected: str) -> None:
    assert problems_of(tmp_path, raw) == [expected]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    assert problems_of(tmp_path, text) == ["empty scenario; expected TOML tables such as [traffic]"]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[run]\nname = \n", "line 2, column 8"),
        ("[run\n", "line 1"),
        ("[traffic]\nkeys = 1\nkeys = 2\n", "line 3"),
    ],
)
def test_invalid_toml_is_one_line_with_position(tmp_path: Path, text: str, where: str) -> None:
    (problem,) = problems_of(tmp_path, text)
    assert problem.startswith("invalid TOML: ")
    assert where in problem
    assert "\n" not in problem


@pytest.mark.parametrize(
    "text",
    [
        "x = " + "[" * 5000 + "]" * 5000 + "\n",
        "[run]\nname = " + "{ a = " * 3000 + "1" + " }" * 3000 + "\n",
    ],
    ids=["arrays", "inline-tables"],
)
def test_deep_nesting_is_one_line_not_a_recursion_error(tmp_path: Path, text: str) -> None:
    (problem,) = problems_of(tmp_path, text)
    assert problem == ("invalid TOML: arrays or tables nested too deeply to read (a scenario "
                       "needs at most a few levels)")


def test_deeply_nested_data_from_elsewhere_is_one_line_too() -> None:
    data: dict[str, object] = {}
    inner = data
    for _ in range(sys.getrecursionlimit() * 2):
        inner["run"] = {}
        inner = inner["run"]  # type: ignore[assignment]
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(data, "mqtt")
    (line,) = info.value.lines()
    assert line.startswith("mqtt: ")


# --- bad values ---------------------------------------------------------------------------

BAD_VALUES = [
    (
        "[traffic.regions.eu]\nrate = -5\n",
        "traffic.regions.eu.rate: expected a number between 0 and 100000, got -5",
    ),
    (
        '[traffic.regions.eu]\nrate = "fast"\n',
        "traffic.regions.eu.rate: expected a number between 0 and 100000, got 'fast' (a string)",
    ),
    (
        "[app.container]\nworkers = true\n",
        "app.container.workers: expected an integer between 1 and 1000, got true (a boolean)",
    ),
    (
        "[app.container]\nworkers = 2.5\n",
        "app.container.workers: expected an integer between 1 and 1000, got 2.5 (a float)",
    ),
    (
        "[cdn]\nenabled = 1\n",
        "cdn.enabled: expected true or false, got 1 (an integer)",
    ),
    (
        "[run]\nname = 3\n",
        "run.name: expected a string, got 3 (an integer)",
    ),
    (
        "[slo]\ntarget = 1.5\n",
        "slo.target: expected a number between 0 and 1, got 1.5",
    ),
    (
        "[balancer]\nretries = 11\n",
        "balancer.retries: expected an integer between 0 and 10, got 11",
    ),
    (
        "[traffic]\nzipf_s = nan\n",
        "traffic.zipf_s: expected a finite number, got nan",
    ),
    (
        '[balancer]\ntimeout = "soon"\n',
        "balancer.timeout: expected a duration such as '250ms', '30s', '10m', '1h30m' or a "
        "number of seconds, got 'soon'",
    ),
    (
        '[balancer]\ntimeout = "-1s"\n',
        "balancer.timeout: expected a duration >= 0 s, got '-1s'",
    ),
    (
        "[run]\nduration = 0\n",
        "run.duration: expected a duration >= 0.001 s, got 0",
    ),
    (
        '[balancer]\nalgorithm = "fastest"\n',
        "balancer.algorithm: expected one of 'round_robin', 'weighted_round_robin', "
        "'least_connections', 'random', 'power_of_two', 'consistent_hash', 'peak_ewma', "
        "got 'fastest'",
    ),
    (
        '[balancer]\nalgorithm = "round_robn"\n',
        "balancer.algorithm: expected one of 'round_robin', 'weighted_round_robin', "
        "'least_connections', 'random', 'power_of_two', 'consistent_hash', 'peak_ewma', "
        "got 'round_robn' (did you mean 'round_robin'?)",
    ),
    (
        '[traffic.regions.eu.pattern]\nkind = "sawtooth"\n',
        "traffic.regions.eu.pattern.kind: expected one of 'constant', 'ramp', 'diurnal', "
        "'spike', got 'sawtooth'",
    ),
    (
        "balancer = 3\n",
        "balancer: expected a table, got 3 (an integer)",
    ),
    (
        "[traffic.regions.EU]\nrate = 1\n",
        "traffic.regions.EU: expected a name of lowercase letters, digits and '-', got 'EU'",
    ),
    (
        '[traffic.regions.""]\nrate = 1\n',
        "traffic.regions.\"\": expected a non-empty name, got '' (a string)",
    ),
    (
        '[[faults]]\nkind = "cpu_hog"\nparams = { cores = [1, 2] }\n',
        "faults[0].params.cores: expected a number, a string or a boolean, got an array",
    ),
    (
        '[faults]\nkind = "cpu_hog"\n',
        "faults: expected an array of tables ([[faults]]), got a table",
    ),
    (
        '[[faults]]\ntarget = "app-1"\n',
        "faults[0].kind: expected a fault kind such as 'kill_container'",
    ),
    # service-time shapes and bursty arrivals: every parameter has a limit the engine honours
    (
        '[app.service.distribution.read]\nkind = "weibull"\n',
        "app.service.distribution.read.kind: expected one of 'exponential', 'deterministic', "
        "'lognormal', 'gamma', 'pareto', got 'weibull'",
    ),
    (
        "[app.service.distribution.read]\ncv = 0\n",
        "app.service.distribution.read.cv: expected a number between 0.05 and 10, got 0",
    ),
    (
        "[app.service.distribution.write]\ncv = 11\n",
        "app.service.distribution.write.cv: expected a number between 0.05 and 10, got 11",
    ),
    (
        '[app.service.distribution.static]\nkind = "pareto"\nalpha = 0.1\n',
        "app.service.distribution.static.alpha: expected a number between 0.5 and 5, got 0.1",
    ),
    (
        "[app.service.distribution.read]\nmax_ratio = 1\n",
        "app.service.distribution.read.max_ratio: expected a number between 2 and 100000, got 1",
    ),
    (
        "[app.service.distribution.reed]\ncv = 2\n",
        "app.service.distribution.reed: unknown endpoint (did you mean 'read'?)",
    ),
    (
        '[traffic.regions.eu.arrivals]\nkind = "bursty"\n',
        "traffic.regions.eu.arrivals.kind: expected one of 'poisson', 'batch', 'mmpp', "
        "got 'bursty'",
    ),
    (
        "[traffic.regions.eu.arrivals]\nbatch = 0.5\n",
        "traffic.regions.eu.arrivals.batch: expected a number between 1 and 1000, got 0.5",
    ),
    (
        "[traffic.regions.eu.arrivals]\nbatch = 5000\n",
        "traffic.regions.eu.arrivals.batch: expected a number between 1 and 1000, got 5000",
    ),
    (
        "[traffic.regions.eu.arrivals]\nburst_factor = 1000\n",
        "traffic.regions.eu.arrivals.burst_factor: expected a number between 1 and 100, "
        "got 1000",
    ),
    (
        "[traffic.regions.eu.arrivals]\nburst_share = 1\n",
        "traffic.regions.eu.arrivals.burst_share: expected a number between 0.001 and 0.9, "
        "got 1",
    ),
    (
        '[traffic.regions.eu.arrivals]\nburst_length = "1ms"\n',
        "traffic.regions.eu.arrivals.burst_length: expected a duration between 0.01 s and "
        "86400 s, got '1ms'",
    ),
    (
        "[database]\nwal_keep = 10\n",
        "database.wal_keep: expected an integer between 100 and 10000000, got 10",
    ),
    (
        "[database.backup]\nretention = 0\n",
        "database.backup.retention: expected an integer between 1 and 100, got 0",
    ),
]


@pytest.mark.parametrize(("text", "problem"), BAD_VALUES)
def test_bad_value_names_key_and_expectation(tmp_path: Path, text: str, problem: str) -> None:
    assert problems_of(tmp_path, text) == [problem]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '[balancer]\nalgoritm = "random"\n',
            "balancer.algoritm: unknown key (did you mean 'algorithm'?)",
        ),
        ("[trafic.regions.eu]\nrate = 1\n", "trafic: unknown key (did you mean 'traffic'?)"),
        ("[app.autoscaler]\nmaxx = 3\n", "app.autoscaler.maxx: unknown key (did you mean 'max'?)"),
        (
            "[cdn]\nzzz = 1\n",
            "cdn.zzz: unknown key (expected one of: enabled, capacity, ttl, "
            "collapse, stale_if_error, hit_latency, dns_failover)",
        ),
        (
            "[network.links.lb-ap]\nlatency = 0\n",
            "network.links.lb-ap: unknown link (did you mean 'lb-app'?)",
        ),
    ],
)
def test_unknown_key_suggests(tmp_path: Path, text: str, problem: str) -> None:
    assert problems_of(tmp_path, text) == [problem]


def test_all_problems_are_collected(tmp_path: Path) -> None:
    text = """
[traffic.regions.eu]
rate = -1
[balancer]
algoritm = "random"
retries = "two"
[app.autoscaler]
min = 5
initial = 3
"""
    assert problems_of(tmp_path, text) == [
        "traffic.regions.eu.rate: expected a number between 0 and 100000, got -1",
        "balancer.algoritm: unknown key (did you mean 'algorithm'?)",
        "balancer.retries: expected an integer between 0 and 10, got 'two' (a string)",
        "app.autoscaler: expected min <= initial <= max, got min=5, initial=3, max=40",
    ]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            {"app": {"autoscaler": {"initial": 50}}},
            "app.autoscaler: expected min <= initial <= max, got min=2, initial=50, max=40",
        ),
        (
            {"app": {"vm": {"min": 3, "initial": 2}}},
            "app.vm: expected min <= initial <= max, got min=3, initial=2, max=16",
        ),
        (
            {"traffic": {"mix": {"static": 0, "read": 0, "write": 0}}},
            "traffic.mix: expected fractions with a sum > 0, got static=0, read=0, write=0",
        ),
        ({"traffic": {"regions": {}}}, "traffic.regions: expected at least one region, got none"),
    ],
)
def test_cross_field_checks(data: dict[str, object], problem: str) -> None:
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(data, "x")
    assert info.value.problems == [problem]
    assert info.value.lines() == [f"x: {problem}"]


def test_cross_field_check_skipped_when_a_field_is_already_wrong() -> None:
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict({"app": {"autoscaler": {"min": -1, "initial": 50}}}, "x")
    assert info.value.problems == [
        "app.autoscaler.min: expected an integer between 0 and 1000, got -1"]


def test_non_table_root() -> None:
    with pytest.raises(ScenarioError, match="expected a table of scenario sections"):
        scenario_from_dict([1, 2], "x")  # type: ignore[arg-type]


# --- defaults and merging -----------------------------------------------------------------


def test_partial_file_merges_with_defaults(tmp_path: Path) -> None:
    s = load_scenario(write(tmp_path, "[traffic.regions.eu]\nrate = 50\n"))
    assert s.traffic.regions == {"eu": RegionConfig(rate=50.0)}
    default = Scenario()
    assert dataclasses.replace(s, traffic=default.traffic) == default
    assert s.traffic.mix == default.traffic.mix


def test_links_merge_over_the_default_links() -> None:
    s = scenario_from_dict({"network": {"links": {"lb-app": {"latency": "2ms"}}}}, "x")
    default = Scenario().network.links
    assert list(s.network.links) == list(default)
    assert s.network.links["lb-app"] == LinkConfig(latency=0.002, jitter=0.0001)
    assert s.network.links["client-eu"] == default["client-eu"]


def test_new_region_gets_default_links() -> None:
    s = scenario_from_dict(
        {
            "traffic": {"regions": {"ap": {"rate": 10}}},
            "network": {"links": {"client-ap": {"latency": "80ms"}}},
        },
        "x",
    )
    assert s.network.links["client-ap"] == LinkConfig(latency=0.08)
    assert s.network.links["edge-ap"] == LinkConfig()
    assert "lb-app" in s.network.links


def test_durations_in_fields(tmp_path: Path) -> None:
    text = '[run]\nduration = "1h30m"\n[balancer]\ntimeout = "250ms"\nretry_backoff = 0.05\n'
    s = load_scenario(write(tmp_path, text))
    assert s.run.duration == 5400.0
    assert s.balancer.timeout == 0.25
    assert s.balancer.retry_backoff == 0.05


def test_integers_become_floats_and_faults_are_read(tmp_path: Path) -> None:
    text = """
[[faults]]
kind = "traffic_spike"
at = "1m"
duration = 30
params = { factor = 3 }
[[faults]]
kind = "kill_container"
target = "app-1"
"""
    s = load_scenario(write(tmp_path, text))
    assert [(f.kind, f.at, f.target, f.duration) for f in s.faults] == [
        ("traffic_spike", 60.0, "", 30.0),
        ("kill_container", 0.0, "app-1", 0.0),
    ]
    assert s.faults[0].params == {"factor": 3.0}
    assert isinstance(s.faults[0].params["factor"], float)
    assert isinstance(s.traffic.regions["eu"].rate, float)


def test_to_dict_round_trips_through_json() -> None:
    for name in builtin_names():
        s = load_builtin(name)
        data = json.loads(json.dumps(scenario_to_dict(s)))
        assert scenario_from_dict(data, name) == s


# --- built-ins and resolve ----------------------------------------------------------------


def test_builtin_names() -> None:
    names = builtin_names()
    assert names[0] == "default"
    assert {"default", "mmc"} <= set(names)
    assert len(names) >= 11


@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_loads(name: str) -> None:
    s = load_builtin(name)
    assert s.run.name == name
    description = builtin_description(name)
    assert description and "\n" not in description and len(description) <= 100
    assert s.run.lesson and "\n" not in s.run.lesson and len(s.run.lesson) <= 140
    assert resolve(name) == s


def test_default_builtin_is_the_defaults_written_out() -> None:
    s = load_builtin("default")
    assert dataclasses.replace(s, run=Scenario().run) == Scenario()
    assert sum(r.rate for r in s.traffic.regions.values()) == 400.0


def test_mmc_builtin_is_an_mmc_queue() -> None:
    s = load_builtin("mmc")
    (region,) = s.traffic.regions.values()
    workers = s.app.container.workers * s.app.autoscaler.initial
    rho = region.rate * s.app.service.read / workers
    assert rho == pytest.approx(0.8)
    assert (s.traffic.mix.static, s.traffic.mix.write) == (0.0, 0.0)
    assert not s.cdn.enabled and not s.database.enabled and not s.app.autoscaler.enabled
    assert s.app.autoscaler.min == s.app.autoscaler.max == 1
    assert s.app.vm.vcpus >= s.app.container.cpu >= s.app.container.workers
    assert (s.balancer.timeout, s.balancer.retries) == (0.0, 0)
    for name in ("client-eu", "edge-eu", "lb-app", "app-db"):
        assert (s.network.links[name].latency, s.network.links[name].jitter) == (0.0, 0.0)


def test_resolve_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[run]\nname = "mine"\n')
    assert resolve(str(path)).run.name == "mine"


def test_resolve_unknown_name_lists_builtins() -> None:
    with pytest.raises(ScenarioError) as info:
        resolve("flash-crwd")
    (line,) = info.value.lines()
    assert line.startswith("flash-crwd: no such built-in scenario or file (did you mean ")
    assert "'flash-crowd'" in line and "built-ins: default, " in line


def test_resolve_missing_path_says_no_such_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"no such file$"):
        resolve(str(tmp_path / "gone.toml"))


def test_load_builtin_unknown() -> None:
    with pytest.raises(ScenarioError, match="no such built-in scenario"):
        load_builtin("nope")


# --- docs/scenarios.md --------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "scenarios.md"


def _sections(cls: type, path: str = "") -> list[tuple[str, set[str]]]:
    """Each table of the schema that has plain keys, named as docs/scenarios.md names it."""
    hints = typing.get_type_hints(cls)
    keys: set[str] = set()
    nested: list[tuple[str, set[str]]] = []
    for f in dataclasses.fields(cls):
        tp, sub = hints[f.name], f"{path}.{f.name}" if path else f.name
        item = typing.get_args(tp)[1] if typing.get_origin(tp) is dict else None
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            nested += _sections(tp, sub)
        elif isinstance(item, type) and dataclasses.is_dataclass(item):
            nested += _sections(item, f"{sub}.<name>")
        elif typing.get_origin(tp) is list:
            nested += _sections(typing.get_args(tp)[0], f"[{sub}]")
        else:
            keys.add(f.name)
    return ([(path, keys)] if keys and path else []) + nested


SECTIONS = _sections(Scenario)


def test_sections_cover_the_schema() -> None:
    names = [name for name, _ in SECTIONS]
    assert {"run", "traffic.regions.<name>.pattern", "app.autoscaler", "[faults]"} <= set(names)
    assert "app" not in names


@pytest.mark.parametrize(("section", "keys"), SECTIONS, ids=[name for name, _ in SECTIONS])
def test_docs_describe_every_key(section: str, keys: set[str]) -> None:
    text = DOC.read_text(encoding="utf-8")
    after = text[text.index(f"### `[{section}]`") :]
    table = re.search(r"^\|.*?(?=^$)", after, re.M | re.S)
    assert table is not None
    assert set(re.findall(r"^\| `([a-z_0-9]+)` \|", table.group(0), re.M)) == keys


def test_docs_examples_are_valid() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 2
    for block in blocks:
        scenario_from_dict(tomllib.loads(block), "docs/scenarios.md")


def test_docs_list_every_fault_kind_with_its_parameters() -> None:
    from stackyard.core.faults import FAULTS

    text = DOC.read_text(encoding="utf-8")
    table = text.split("| kind | target")[1].split("\n### ")[0]
    rows = dict(re.findall(r"^\| `([a-z_]+)` \|[^|]+\|([^|]*)\|", table, re.M))
    assert set(rows) == set(FAULTS)
    for name, action in FAULTS.items():
        documented = set(re.findall(r"`([a-z_]+)`", rows[name]))
        assert documented == {p.name for p in action.params if p.name != "duration"}, name
