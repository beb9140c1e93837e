"""The ``stackyard`` command line, run as a real subprocess: exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stackyard.core.scenario import builtin_description, builtin_names, load_builtin

ROOT = Path(__file__).resolve().parents[1]


def stackyard(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("STACKYARD_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "stackyard.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The stderr lines of a user error, checked for the shape every user error has."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("stackyard: ") for line in lines), lines
    return lines


# --- scenarios and validate ---------------------------------------------------------------


def test_catalogue_lists_every_command_as_text_and_json() -> None:
    from stackyard.core.catalogue import actions
    from stackyard.core.protocol import ActionInfo, decode

    done = stackyard("catalogue", "--json")
    assert done.returncode == 0, done.stderr
    assert decode(tuple[ActionInfo, ...], done.stdout) == actions()
    text = stackyard("catalogue").stdout
    for fragment in ("bandwidth_cap", "rate=100.0 (1..1e+06 msg/s)", "keys w", "speed",
                     "x (0.25..100 x|next|previous) required", "[balancer]"):
        assert fragment in text, fragment


def test_scenarios_lists_builtins_with_descriptions_and_lessons() -> None:
    result = stackyard("scenarios")
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 2 * len(builtin_names())
    pairs = zip(lines[::2], lines[1::2], strict=True)
    for name, (first, second) in zip(builtin_names(), pairs, strict=True):
        assert first.split()[0] == name
        assert first.endswith(builtin_description(name))
        assert second.strip() == f"lesson: {load_builtin(name).run.lesson}"


def test_validate_ok(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[traffic.regions.eu]\nrate = 50\n[balancer]\ntimeout = "500ms"\n')
    builtin = ROOT / "core" / "scenarios" / "flash-crowd.toml"
    result = stackyard("validate", str(good), str(builtin))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{good}: ok", f"{builtin}: ok"]
    assert result.stderr == ""


def test_validate_every_builtin_file() -> None:
    files = sorted(str(p) for p in (ROOT / "core" / "scenarios").glob("*.toml"))
    result = stackyard("validate", *files)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{f}: ok" for f in files]


def test_validate_reports_one_line_per_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[balancer]\nalgoritm = "random"\nretries = -1\n[traffic.regions.eu]\nrate = "x"\n'
    )
    good = tmp_path / "good.toml"
    good.write_text("[cdn]\nenabled = false\n")
    result = stackyard("validate", str(bad), str(good))
    assert error_lines(result) == [
        f"stackyard: {bad}: balancer.algoritm: unknown key (did you mean 'algorithm'?)",
        f"stackyard: {bad}: balancer.retries: expected an integer between 0 and 10, got -1",
        f"stackyard: {bad}: traffic.regions.eu.rate: expected a number between 0 and 100000, "
        "got 'x' (a string)",
    ]
    assert result.stdout.splitlines() == [f"{good}: ok"]


def test_validate_checks_faults_with_the_engine(tmp_path: Path) -> None:
    bad = tmp_path / "faults.toml"
    bad.write_text('[[faults]]\nkind = "explode"\nat = "10s"\ntarget = "app-1"\n')
    (line,) = error_lines(stackyard("validate", str(bad)))
    assert line.startswith(f"stackyard: {bad}: ")
    assert "explode" in line


# --- bad input: one line, exit 2, no traceback --------------------------------------------


def bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """Files that are not valid scenarios, and a fragment each error line must contain."""
    (tmp / "empty.toml").write_text("")
    (tmp / "binary.toml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp / "latin1.toml").write_bytes(b'[run]\nname = "caf\xe9"\n')
    (tmp / "broken.toml").write_text("[run\nname = 1\n")
    (tmp / "negative.toml").write_text("[traffic.regions.eu]\nrate = -3\n")
    (tmp / "dir.toml").mkdir()
    return {
        "missing": (tmp / "missing.toml", "no such file"),
        "directory": (tmp / "dir.toml", "is a directory"),
        "empty": (tmp / "empty.toml", "empty scenario; expected TOML tables such as [traffic]"),
        "binary": (tmp / "binary.toml", "binary file"),
        "latin1": (tmp / "latin1.toml", "not UTF-8 text"),
        "broken": (tmp / "broken.toml", "invalid TOML: "),
        "negative": (tmp / "negative.toml",
                     "traffic.regions.eu.rate: expected a number between 0 and 100000"),
    }


@pytest.mark.parametrize(
    "case", ["missing", "directory", "empty", "binary", "latin1", "broken", "negative"]
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_file_is_one_line(tmp_path: Path, case: str, command: str) -> None:
    path, fragment = bad_files(tmp_path)[case]
    (line,) = error_lines(stackyard(command, str(path)))
    assert line.startswith(f"stackyard: {path}: ")
    assert fragment in line


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "default", "--duration", "abc"], "argument --duration: expected a duration"),
        (["run", "default", "--duration", "0"], "expected a duration > 0, got '0'"),
        (["run", "default", "--duration=-5s"], "expected a duration > 0, got '-5s'"),
        (["run", "default", "--seed", "x"], "argument --seed: expected an integer, got 'x'"),
        (["run", "default", "--bogus"], "unrecognized arguments: --bogus"),
        (["run"], "the following arguments are required: SCENARIO|FILE"),
        (["run", "nope"], "nope: no such built-in scenario or file (built-ins: default, "),
        (["run", "flash-crwd"], "did you mean 'flash-crowd'?"),
        (["validate"], "the following arguments are required: FILE"),
        (["scenarios", "extra"], "unrecognized arguments: extra"),
        (["nope"], "nope: no such built-in scenario or file"),
        (["default", "--speed", "1000"], "argument --speed: expected a speed between 0.25 and 100"),
        (["default", "--speed", "fast"], "argument --speed: expected a number"),
        (["default", "--seed", "1.5"], "argument --seed: expected an integer, got '1.5'"),
        (["default", "--fps", "0"], "argument --fps: expected a refresh rate between 1 and 30 "
                                    "frames per second, got 0"),
        (["default", "--fps", "31"], "argument --fps: expected a refresh rate between 1 and 30"),
        (["default", "--fps", "inf"], "argument --fps: expected a refresh rate between 1 and 30"),
        (["default", "--fps", "often"], "argument --fps: expected a number of frames per second"),
        (["learn", "balancer", "--fps", "0.5"], "learn: argument --fps: expected a refresh rate"),
        (["attach", "--fps", "100"], "attach: argument --fps: expected a refresh rate"),
        (["replay", "x.db", "--fps", "-2"], "replay: argument --fps: expected a refresh rate"),
        (["rerun", "x.db", "--fps", "0"], "rerun: argument --fps: expected a refresh rate"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_are_one_line(args: list[str], fragment: str) -> None:
    (line,) = error_lines(stackyard(*args))
    assert fragment in line


def test_bare_invocation_without_a_terminal_points_to_run() -> None:
    (line,) = error_lines(stackyard())
    assert "the TUI needs a terminal" in line
    assert "stackyard run default" in line


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["validate", "-h"]])
def test_help(args: list[str]) -> None:
    result = stackyard(*args)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: stackyard")


def test_main_returns_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    from stackyard.cli import main

    assert main(["scenarios"]) == 0
    assert main(["run", "default", "--duration", "soon"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("stackyard: run: argument --duration: ")


# --- run (needs core.engine) --------------------------------------------------------------

SUMMARY_KEYS = {
    "scenario",
    "seed",
    "duration",
    "requests",
    "rps",
    "latency",
    "error_rate",
    "errors",
    "cdn",
    "autoscaler",
    "balancer",
    "slo",
    "faults",
}


def run_json(*args: str) -> subprocess.CompletedProcess[str]:
    result = stackyard("run", "default", "--duration", "5s", "--json", *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    return result


def test_run_json_is_deterministic_per_seed() -> None:
    first = run_json("--seed", "7")
    second = run_json("--seed", "7")
    other = run_json("--seed", "8")
    assert first.stdout == second.stdout
    assert first.stdout != other.stdout


def test_run_json_summary_keys() -> None:
    summary = json.loads(run_json("--seed", "3").stdout)
    assert set(summary) >= SUMMARY_KEYS
    assert summary["scenario"] == "default"
    assert summary["seed"] == 3
    assert summary["duration"] == pytest.approx(5.0)
    req = summary["requests"]
    assert set(req) >= {"arrived", "completed", "failed", "in_flight"}
    assert req["arrived"] == req["completed"] + req["failed"] + req["in_flight"]
    assert req["arrived"] > 0
    assert set(summary["latency"]) >= {"mean", "p50", "p95", "p99"}


def test_run_seed_defaults_to_the_scenarios() -> None:
    summary = json.loads(run_json().stdout)
    assert summary["seed"] == 1


def test_run_text_summary() -> None:
    result = stackyard("run", "mmc", "--duration", "5s", "--seed", "2")
    assert result.returncode == 0, result.stderr
    summary, checks = result.stdout.split("\n\n")
    labels = [line.split()[0] for line in summary.splitlines()]
    assert labels[:6] == ["scenario", "lesson", "simulated", "requests", "latency", "errors"]
    assert checks.splitlines()[:2] == ["checks: 1 of 1 held",
                                       "check        value    verdict  likely cause"]
    assert " ms" in result.stdout
