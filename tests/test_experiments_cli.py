"""Experiments from the command line: verdicts and exit codes for CI, JUnit reports, lessons,
and sweeps that give the same figures on a local pool and on a Dask cluster."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from stackyard.cli import main
from stackyard.core.protocol import RunSummary, decode
from stackyard.core.scenario import builtin_names, load_builtin, scenario_with
from stackyard.core.stats import SweepResult
from stackyard.core.sweep import Plan, parse_seeds, parse_set, run_sweep
from tests.test_cli import error_lines, stackyard

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_a_met_check_exits_0_and_a_violated_one_exits_1_naming_value_and_cause() -> None:
    met = stackyard("run", "default", "--duration", "10s", "--slo", "p99<1s")
    assert met.returncode == 0, met.stderr
    assert "p99 < 1s" in met.stdout and met.stderr == ""
    broken = stackyard("run", "slow-disk", "--duration", "90s", "--slo", "lost_writes==0")
    assert broken.returncode == 1
    table = broken.stdout.split("\n\n")[-1].splitlines()
    assert table[0] == "checks: 1 of 3 held"  # its 'after' window has not begun at 90 s
    row = next(line for line in table if line.startswith("error_rate <= 1% "))
    assert "FAILED" in row and row.endswith("f1 slow_disk on db-1 at 60.0s")
    value = row.split()[3]
    assert value.endswith("%") and float(value[:-1]) > 1.0
    assert next(line for line in table if line.startswith("lost_writes == 0")).split()[3:5] == \
        ["0", "ok"]
    line, after = broken.stderr.splitlines()
    assert after == "stackyard: check failed: p99 < 500ms after: no value; no fault to blame " \
                    "(nothing to measure: the window 90s-90s is empty)"
    assert line.startswith("stackyard: check failed: error_rate <= 1%: ")
    assert line.endswith("; likely cause: f1 slow_disk on db-1 at 60.0s")


def test_json_carries_the_verdicts_and_junit_reports_them(tmp_path: Path) -> None:
    report = tmp_path / "checks.xml"
    done = stackyard("run", "region-outage", "--duration", "80s", "--json", "--slo",
                     "error_rate <= 1%", "--junit", str(report))
    assert done.returncode == 1
    summary = decode(RunSummary, done.stdout)
    verdicts = {c.name: c.passed for c in summary.checks}
    assert verdicts == {"recovery_time < 45s": False, "no errors once DNS has failed over": False,
                        "error_rate <= 1%": False}
    failed = summary.checks[2]
    assert failed.cause is not None and failed.cause.kind == "region_outage"
    assert failed.failed_at is not None and 60.0 < failed.failed_at <= 62.0
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None and suite.get("name") == "region-outage"
    assert (suite.get("tests"), suite.get("failures")) == ("3", "3")
    case = suite.findall("testcase")[2]
    assert case.get("name") == "error_rate <= 1%"
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message", "").endswith("likely cause: f1 region_outage on eu at 60.0s")
    recovery = suite.findall("testcase")[0].find("failure")
    assert recovery is not None and "not recovered by the end of the run" in \
        recovery.get("message", "")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--slo", "p98<1s"], "stackyard: --slo 'p98<1s': expected a metric such as p99, "
                              "error_rate or lost_writes, got 'p98' (did you mean 'p99'?)"),
        (["--slo", "p99 <"], "--slo 'p99 <': p99: expected a duration such as 300ms, 1.5s or "
                             "2m after 'p99 <', got nothing"),
        (["--slo", "error_rate < 5ms"], "error_rate: expected a fraction such as 1%, 99.9% or "
                                        "0.01, got '5ms'"),
        (["--junit", "/nonexistent/dir/x.xml"], "--junit /nonexistent/dir/x.xml: no such "
                                                "directory '/nonexistent/dir'"),
        (["--junit", "/"], "--junit /: is a directory, expected a file to write"),
    ],
)
def test_bad_checks_and_reports_are_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    (line,) = error_lines(stackyard("run", "default", "--duration", "1s", *args))
    assert fragment in line


def test_a_database_check_on_a_run_without_one_is_bad_input() -> None:
    (line,) = error_lines(stackyard("run", "mmc", "--duration", "1s", "--slo", "lost_writes==0"))
    assert line == "stackyard: --slo 'lost_writes == 0': lost_writes needs a database tier " \
                   "(database.enabled is false)"


@pytest.mark.parametrize("name", builtin_names())
def test_every_library_scenario_shows_its_lesson_when_run(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["run", name, "--duration", "1s"])
    out = capsys.readouterr().out
    lesson = load_builtin(name).run.lesson
    assert f"\nlesson      {lesson}\n" in out
    assert status in (0, 1)


# -- sweeps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--set", "balancer.algoritm=round_robin"],
         "sweep: --set balancer.algoritm=round_robin: balancer.algoritm: unknown key (did you "
         "mean 'algorithm'?)"),
        (["--set", "balancer.algorithm=round_robin,fastest"],
         "sweep: --set balancer.algorithm=fastest: balancer.algorithm: expected one of "),
        (["--set", "nothing.here=1"], "sweep: --set nothing.here=1: nothing: unknown key"),
        (["--set", "balancer.algorithm"], "sweep: --set: expected PATH=VALUE[,VALUE...]"),
        (["--set", "traffic.regions.eu.rate=1,,2"], "expected values separated by commas"),
        (["--seeds", "10-1"], "sweep: --seeds: expected a range from low to high, got '10-1'"),
        (["--seeds", "a-b"], "sweep: --seeds: expected seeds such as 1-200 or 1,5,9"),
        (["--seeds", "1-200000"], "sweep: --seeds: expected at most 100000 seeds"),
        (["--workers", "0"], "argument --workers: expected 1 to 256 processes, got 0"),
        (["--cluster", "somewhere"], "sweep: --cluster: expected a scheduler address such as "
                                     "tcp://HOST:8786, got 'somewhere'"),
        (["--slo", "p99 << 1s"], "--slo 'p99 << 1s': p99: expected a duration"),
    ],
)
def test_bad_sweeps_are_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    (line,) = error_lines(stackyard("sweep", "mmc", "--duration", "1s", *args))
    assert fragment in line


def test_an_unreachable_cluster_is_one_line() -> None:
    (line,) = error_lines(stackyard("sweep", "mmc", "--duration", "1s", "--seeds", "1",
                                    "--cluster", "tcp://127.0.0.1:9"))
    assert line.startswith("stackyard: sweep: --cluster: cannot reach the Dask scheduler at "
                           "tcp://127.0.0.1:9: ")
    assert "refused" in line


QUICK = {"traffic": {"regions": {"eu": {"rate": 60.0}}},
         "checks": [{"expect": "p99 < 40ms"}, {"expect": "p50 < 12ms"}]}
"""The M/M/4 queue at 60 rps, where a second or two of service is enough to pass or fail."""


def quick_plan(seeds: str, *sets: str, duration: float = 2.0) -> Plan:
    scenario = scenario_with(load_builtin("mmc"), QUICK, "quick")
    return Plan(scenario, parse_seeds(seeds), tuple(parse_set(s) for s in sets), duration)


def test_a_grid_runs_every_combination_of_values_in_order() -> None:
    plan = quick_plan("1-3", "app.service.read=10ms,20ms", "traffic.regions.eu.rate=30,90")
    result = run_sweep(plan)
    assert result.runs == 12 and result.parameters == ("app.service.read",
                                                       "traffic.regions.eu.rate")
    assert [g.params for g in result.groups] == [
        {"app.service.read": "10ms", "traffic.regions.eu.rate": 30},
        {"app.service.read": "10ms", "traffic.regions.eu.rate": 90},
        {"app.service.read": "20ms", "traffic.regions.eu.rate": 30},
        {"app.service.read": "20ms", "traffic.regions.eu.rate": 90},
    ]
    p50 = [next(m for m in g.measures if m.name == "p50") for g in result.groups]
    assert p50[2].mean > p50[0].mean  # slower service, slower requests
    for g in result.groups:
        assert g.runs == 3 and [c.name for c in g.checks] == ["p99 < 40ms", "p50 < 12ms"]
        for c in g.checks:
            assert c.low <= c.rate <= c.high and c.runs == 3


def test_two_hundred_seeds_give_identical_figures_on_a_pool_and_on_a_dask_cluster() -> None:
    from distributed import LocalCluster

    plan = quick_plan("1-200")
    progress: list[tuple[int, int]] = []
    pooled = run_sweep(plan, workers=2, progress=lambda d, t: progress.append((d, t)))
    assert progress[-1] == (200, 200) and len(progress) == 200
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        on_dask = run_sweep(plan, cluster=cluster.scheduler_address)
    assert on_dask.to_json() == pooled.to_json()
    (group,) = pooled.groups
    assert group.runs == 200
    rates = {c.name: c for c in group.checks}
    assert 0 < rates["p99 < 40ms"].passed < 200  # some seeds pass, some do not
    p99 = next(m for m in group.measures if m.name == "p99")
    assert p99.n == 200 and p99.low < p99.mean < p99.high and p99.p5 <= p99.p50 <= p99.p95


def test_sweep_prints_a_table_or_json_and_shows_progress() -> None:
    args = ["sweep", "mmc", "--duration", "2s", "--seeds", "1-4", "--workers", "2",
            "--set", "traffic.regions.eu.rate=60,120", "--slo", "p99<40ms"]
    text = stackyard(*args)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "sweep       mmc: 8 runs of 2.0s (4 seeds x 2 parameter sets)"
    assert "params      traffic.regions.eu.rate=60 (4 runs)" in lines
    assert any(line.startswith("  p99 < 40ms ") and "%" in line for line in lines)
    assert text.stderr.splitlines()[-1] == "stackyard: sweep: 8/8 runs"
    as_json = stackyard(*args, "--json")
    result = decode(SweepResult, as_json.stdout)
    assert [g.params for g in result.groups] == [{"traffic.regions.eu.rate": 60},
                                                 {"traffic.regions.eu.rate": 120}]
    assert json.loads(as_json.stdout)["runs"] == 8
