"""Experiments on the command line: ``run --slo/--junit`` verdicts and ``stackyard sweep``.

``run`` measures the scenario's ``[[checks]]`` plus every ``--slo`` expression, prints a table
of check, measured value, verdict and likely cause, and exits 1 when one failed (2 for bad
input), so a CI job can rehearse an incident; ``--junit FILE`` writes the verdicts as JUnit XML.
``sweep`` runs a grid of seeds and ``--set`` values on a process pool or a Dask cluster and
prints each check's pass rate and each figure's distribution with 95% intervals.
"""

from __future__ import annotations

import argparse
import os
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from stackyard.cli.main import PROG, UsageError, _duration, _Parser
from stackyard.cli.summary import seconds
from stackyard.core.checks import CheckError, format_value, parse, spec_problems
from stackyard.core.config import CheckSpec, Scenario
from stackyard.core.protocol import CheckResult, CheckUnit, RunSummary
from stackyard.core.scenario import resolve
from stackyard.core.stats import Distribution, SweepResult

MAX_SLOS = 100
"""Most ``--slo`` expressions one command takes."""
CAUSE_WIDTH = 48


# -- run: options, checks, report -----------------------------------------------------------


def add_run_options(run: argparse.ArgumentParser) -> None:
    """``--slo`` and ``--junit`` for ``stackyard run``."""
    run.add_argument("--slo", action="append", default=[], metavar="EXPR",
                     help="a check that must hold over the run, e.g. 'p99<300ms', "
                          "'lost_writes==0', 'error_rate<=1%%' (repeatable)")
    run.add_argument("--junit", type=Path, metavar="FILE",
                     help="write the checks' verdicts to FILE as JUnit XML")


def slo_checks(exprs: list[str]) -> list[CheckSpec]:
    """``--slo`` expressions as checks over the run (UsageError for one that is not a check)."""
    if len(exprs) > MAX_SLOS:
        raise UsageError(f"--slo: expected at most {MAX_SLOS} checks, got {len(exprs)}")
    specs = []
    for expr in exprs:
        try:
            specs.append(CheckSpec(expect=parse(expr).text()))
        except CheckError as exc:
            raise UsageError(f"--slo {expr!r}: {exc}") from None
    return specs


def with_checks(scenario: Scenario, specs: list[CheckSpec], duration: float | None,
                flag: str = "--slo") -> Scenario:
    """``scenario`` with extra checks and (if given) another duration."""
    run = scenario.run if duration is None else replace(scenario.run, duration=duration)
    out = replace(scenario, run=run, checks=[*scenario.checks, *specs])
    for spec in specs:
        for problem in spec_problems(spec, out, flag):
            raise UsageError(f"{flag} {spec.expect!r}: {problem.split(': ', 1)[1]}")
    return out


def run_scenario(args: argparse.Namespace) -> Scenario:
    """The scenario ``run`` runs: the file's, with ``--duration`` and ``--slo`` applied."""
    if args.junit is not None:
        _check_writable(args.junit)
    return with_checks(resolve(args.scenario), slo_checks(args.slo), args.duration)


def report(args: argparse.Namespace, summary: RunSummary, status: int) -> int:
    """Print the checks (unless ``--json``), write ``--junit``, and return the exit status:
    ``status``, or 1 if a check failed."""
    if summary.checks and not args.json:
        print()
        print(format_checks(summary.checks))
    if args.junit is not None:
        write_junit(summary, args.junit)
    failed = [c for c in summary.checks if not c.passed]
    for c in failed:
        print(f"{PROG}: check failed: {c.name}: {_value(c)}; {_blame(c)}", file=sys.stderr)
    return 1 if failed else status


def _value(c: CheckResult) -> str:
    return "no value" if c.value is None else format_value(c.value, c.unit)


def _blame(c: CheckResult) -> str:
    text = f"likely cause: {c.cause.text}" if c.cause is not None else "no fault to blame"
    return f"{text} ({c.note})" if c.note else text


def format_checks(checks: tuple[CheckResult, ...]) -> str:
    """A table: check, measured value, verdict, likely cause."""
    held = sum(c.passed for c in checks)
    rows = [("check", "value", "verdict", "likely cause")]
    for c in checks:
        verdict = "ok" if c.passed else "FAILED"
        cause = "" if c.passed else _blame(c).removeprefix("likely cause: ")
        if c.failed_at is not None and not c.passed:
            verdict += f" {c.failed_at:.0f}s"
        rows.append((_cut(c.name, 40), _value(c), verdict, _cut(cause, CAUSE_WIDTH)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"checks: {held} of {len(checks)} held"]
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths, strict=True))
                     + ("  " + r[3] if r[3] else ""))
    return "\n".join(line.rstrip() for line in lines)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _check_writable(path: Path) -> None:
    if path.is_dir():
        raise UsageError(f"--junit {path}: is a directory, expected a file to write")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"--junit {path}: no such directory {str(parent)!r}")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--junit {path}: cannot write in {str(parent)!r}")


def junit_xml(summary: RunSummary) -> bytes:
    """The checks as a JUnit XML report: one test case per check, a failure for each that
    failed with its value and likely cause."""
    checks = summary.checks
    failures = sum(not c.passed for c in checks)
    suites = ET.Element("testsuites", name=PROG, tests=str(len(checks)),
                        failures=str(failures), errors="0")
    suite = ET.SubElement(suites, "testsuite", name=summary.scenario, tests=str(len(checks)),
                          failures=str(failures), errors="0", skipped="0", time="0")
    props = ET.SubElement(suite, "properties")
    for name, value in (("seed", summary.seed), ("simulated_seconds", summary.duration),
                        ("lesson", summary.lesson)):
        ET.SubElement(props, "property", name=name, value=str(value))
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"{PROG}.{summary.scenario}",
                             name=c.name, time="0")
        if not c.passed:
            message = f"{c.expect}: measured {_value(c)}; {_blame(c)}"
            failure = ET.SubElement(case, "failure", message=message, type="check_failed")
            window = f"over {c.over}, {c.start:g}s to {c.end:g}s"
            failure.text = (f"expected {c.expect} {window}\nmeasured {_value(c)}"
                            + (f"\nfirst broken at {c.failed_at:g}s" if c.failed_at else "")
                            + f"\n{_blame(c)}\n")
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit(summary: RunSummary, path: Path) -> None:
    try:
        path.write_bytes(junit_xml(summary))
    except OSError as exc:
        raise UsageError(f"--junit {path}: cannot write: {exc.strerror or exc}") from None


# -- sweep -----------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction[_Parser]) -> None:
    """The ``sweep`` subcommand."""
    sweep = sub.add_parser("sweep", help="run a scenario over many seeds and parameter values "
                           "and report pass rates and distributions")
    sweep.add_argument("scenario", metavar="SCENARIO|FILE", help="built-in name or TOML file")
    sweep.add_argument("--seeds", default="1-20", metavar="SEEDS",
                       help="seeds to run: 1-200, 7 or 1,5,9 (default 1-20)")
    sweep.add_argument("--set", dest="sets", action="append", default=[],
                       metavar="PATH=V1,V2", help="scenario values to try, e.g. "
                       "balancer.algorithm=round_robin,power_of_two (repeatable: a grid)")
    sweep.add_argument("--slo", action="append", default=[], metavar="EXPR",
                       help="a check that must hold over each run (repeatable)")
    sweep.add_argument("--duration", type=_duration, help="simulated time of each run")
    sweep.add_argument("--workers", type=_workers, default=os.cpu_count() or 1,
                       metavar="N", help="local processes (default: one per CPU)")
    sweep.add_argument("--cluster", metavar="ADDRESS",
                       help="run on the Dask scheduler at ADDRESS (tcp://HOST:8786) instead")
    sweep.add_argument("--json", action="store_true", help="print the result as JSON")
    sweep.set_defaults(handler=cmd_sweep)


def _workers(text: str) -> int:
    from stackyard.core.sweep import MAX_WORKERS

    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes, got {text!r}") \
            from None
    if not 1 <= n <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_WORKERS} processes, got {n}")
    return n


def cmd_sweep(args: argparse.Namespace) -> int:
    from stackyard.core.sweep import Plan, SweepError, check_cluster, parse_seeds, parse_set
    from stackyard.core.sweep import run_sweep as sweep_run

    try:
        if args.cluster is not None:
            check_cluster(args.cluster)
        seeds = parse_seeds(args.seeds)
        sets = tuple(parse_set(s) for s in args.sets)
        scenario = with_checks(resolve(args.scenario), slo_checks(args.slo), None)
        plan = Plan(scenario, seeds, sets, args.duration)
        progress = _Progress(sys.stderr)
        try:
            result = sweep_run(plan, workers=args.workers, cluster=args.cluster,
                               progress=progress)
        finally:
            progress.close()
    except SweepError as exc:
        raise UsageError(f"sweep: {exc}") from None
    print(result.to_json().decode() if args.json else format_sweep(result))
    return 0


class _Progress:
    """Runs done so far: a redrawn line on a terminal, else a line every tenth of the way."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        if self.tty:
            self.shown = done
            self.stream.write(f"\r{PROG}: sweep: {done}/{total} runs")
        else:
            tenth = done * 10 // total
            if tenth == self.shown:
                return
            self.shown = tenth
            self.stream.write(f"{PROG}: sweep: {done}/{total} runs\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.shown >= 0:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _fmt(x: float, unit: CheckUnit) -> str:
    return format_value(x, unit)


def format_sweep(r: SweepResult) -> str:
    """Each parameter set: its checks' pass rates and its figures' distributions."""
    sets = len(r.groups)
    lines = [f"sweep       {r.scenario}: {r.runs} runs of {seconds(r.duration)} "
             f"({len(r.seeds)} seeds x {sets} parameter set{'s' if sets != 1 else ''})"]
    for g in r.groups:
        lines.append("")
        params = ", ".join(f"{k}={v}" for k, v in g.params.items()) or "as in the scenario"
        lines.append(f"params      {params} ({g.runs} runs)")
        if g.checks:
            width = max(len(c.name) for c in g.checks)
            width = min(max(width, 5), 36)
            lines.append(f"  {'check':<{width}}  pass rate  95% interval")
            for c in g.checks:
                lines.append(f"  {_cut(c.name, width):<{width}}  {c.rate * 100:8.1f}%  "
                             f"{c.low * 100:.1f}%-{c.high * 100:.1f}%  ({c.passed}/{c.runs})")
        if g.measures:
            width = min(max(max(len(m.name) for m in g.measures), 7), 24)
            lines.append(f"  {'measure':<{width}}  {'mean':>8}  {'95% interval':>17}  "
                         f"{'p50':>8}  {'p95':>8}")
            lines += [_measure(m, width) for m in g.measures]
    return "\n".join(lines)


def _measure(m: Distribution, width: int) -> str:
    name = _cut(m.name, width)
    if not m.n:
        return f"  {name:<{width}}  {'no value':>8}"
    u = m.unit
    interval = f"{_fmt(m.low, u)}-{_fmt(m.high, u)}"
    return (f"  {name:<{width}}  {_fmt(m.mean, u):>8}  {interval:>17}  {_fmt(m.p50, u):>8}  "
            f"{_fmt(m.p95, u):>8}")
