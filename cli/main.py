"""The ``stackyard`` command line: open the TUI, run a scenario headless, validate, list.

Every user error (a bad flag, an unknown scenario, a bad file) is one line on stderr starting
``stackyard:`` and exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from stackyard.core.config import Scenario, ScenarioError
from stackyard.core.scenario import builtin_description, builtin_names, parse_duration, resolve
from stackyard.core.storage import Storage, StorageError, check

PROG = "stackyard"
USAGE_ERROR = 2
INTERNAL_ERROR = 1
DEBUG_ENV = "STACKYARD_DEBUG"
"""Set to re-raise unexpected exceptions with their traceback instead of a one-line message."""


class UsageError(Exception):
    """A user error: reported as one ``stackyard: ...`` line and exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix(PROG).strip()
        raise UsageError(f"{command}: {message}" if command else message)


# --- argument types -----------------------------------------------------------------------


def _duration(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration > 0, got {text!r}")
    return seconds


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _speed(text: str) -> float:
    try:
        speed = float(text.removesuffix("x"))
    except ValueError:
        message = f"expected a number such as 2 or 0.5x, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if not 0.25 <= speed <= 100:
        raise argparse.ArgumentTypeError(f"expected a speed between 0.25 and 100, got {text!r}")
    return speed


# --- parsers ------------------------------------------------------------------------------


def _command_parser() -> _Parser:
    parser = _Parser(prog=PROG, description="stackyard: a three-tier web backend to play with.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="run a scenario headless and print a summary")
    run.add_argument("scenario", metavar="SCENARIO|FILE", help="built-in name or TOML file")
    run.add_argument("--duration", type=_duration, help="simulated time, e.g. 30s, 10m, 1h")
    run.add_argument("--seed", type=_seed, help="random seed (default: the scenario's)")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.add_argument(
        "--check",
        action="store_true",
        help="keep every database node's rows in SQLite and compare them with the model",
    )
    run.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="keep the SQLite databases as files in DIR"
    )
    run.add_argument(
        "--overwrite", action="store_true", help="with --data-dir: replace an earlier run's data"
    )
    run.set_defaults(handler=_cmd_run)

    validate = sub.add_parser("validate", help="check scenario files and report every problem")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(handler=_cmd_validate)

    scenarios = sub.add_parser("scenarios", help="list the built-in scenarios")
    scenarios.set_defaults(handler=_cmd_scenarios)
    return parser


COMMANDS = ("run", "validate", "scenarios")
"""First arguments that select a subcommand; anything else opens the TUI."""


def _tui_parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        usage=f"{PROG} [SCENARIO|FILE] [--seed N] [--speed X] [--theme NAME]\n"
        f"       {PROG} {{{','.join(COMMANDS)}}} ...",
        description="Open the TUI on a scenario (default: 'default').",
        epilog=f"commands: {', '.join(COMMANDS)} (see '{PROG} COMMAND --help')",
    )
    parser.add_argument("scenario", nargs="?", default="default", metavar="SCENARIO|FILE")
    parser.add_argument("--seed", type=_seed, help="random seed (default: the scenario's)")
    parser.add_argument("--speed", type=_speed, default=1.0, help="simulation speed, 0.25-100")
    parser.add_argument("--theme", metavar="NAME", help="colour theme")
    return parser


# --- commands -----------------------------------------------------------------------------


def _engine_class() -> Any | None:
    """The engine class, or None while core.engine is not available."""
    try:
        from stackyard.core.engine import Engine
    except ImportError:
        return None
    return Engine


def _cmd_validate(args: argparse.Namespace) -> int:
    engine = _engine_class()
    failed = False
    for name in args.files:
        try:
            scenario = resolve(name)
            if engine is not None:
                engine(scenario)
        except ScenarioError as exc:
            failed = True
            for line in ScenarioError(exc.problems, name).lines():
                print(f"{PROG}: {line}", file=sys.stderr)
        else:
            print(f"{name}: ok")
    return USAGE_ERROR if failed else 0


def _cmd_scenarios(args: argparse.Namespace) -> int:
    names = builtin_names()
    width = max(len(n) for n in names)
    for name in names:
        print(f"{name:<{width}}  {builtin_description(name)}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    scenario = resolve(args.scenario)
    engine_class = _engine_class()
    if engine_class is None:
        print(f"{PROG}: the engine (core.engine) is not available", file=sys.stderr)
        return INTERNAL_ERROR
    duration = args.duration if args.duration is not None else scenario.run.duration
    eng = engine_class(scenario, seed=args.seed)
    bar = _ProgressBar(sys.stderr, duration) if sys.stderr.isatty() else None
    problems: list[str] = []
    try:
        if args.check or args.data_dir is not None:
            if not eng.db_nodes():
                raise UsageError("--check and --data-dir need a scenario with a database tier")
            summary = asyncio.run(_run_with_storage(eng, duration, args, bar, problems))
        else:
            eng.run_for(duration, progress=bar)
            summary = eng.summary()
    except StorageError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(format_summary(summary, scenario))
    for line in problems:
        print(f"{PROG}: consistency: {line}", file=sys.stderr)
    return 1 if problems else 0


async def _run_with_storage(
    eng: Any,
    duration: float,
    args: argparse.Namespace,
    bar: Callable[[float], None] | None,
    problems: list[str],
) -> dict[str, Any]:
    """Run with every database node's data in SQLite; with --check, compare it with the model."""
    storage = Storage(eng.db_nodes(), args.data_dir)
    await storage.open(overwrite=args.overwrite)
    try:
        eng.attach_storage(storage)
        storage.start()
        await eng.run_async(duration, storage, progress=bar)
        summary: dict[str, Any] = eng.summary()
        summary["storage"] = {
            "rows_written": storage.rows_written,
            "batches": storage.batches,
            "backpressure_waits": storage.backpressure_waits,
            "peak_queue": storage.peak_pending,
            "data_dir": str(args.data_dir) if args.data_dir is not None else None,
        }
        if args.check:
            problems.extend(await check(eng.world.db, storage))
            summary["consistency"] = {"ok": not problems, "problems": list(problems)}
    finally:
        await storage.close()
    return summary


def _cmd_tui(argv: list[str]) -> int:
    args = _tui_parser().parse_args(argv)
    scenario = resolve(args.scenario)
    engine_class = _engine_class()
    if engine_class is None:
        print(f"{PROG}: the engine (core.engine) is not available", file=sys.stderr)
        return INTERNAL_ERROR
    if args.theme is not None:
        _check_theme(args.theme)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            f"the TUI needs a terminal (stdin and stdout are not both a TTY); "
            f"try '{PROG} run {args.scenario}' for a headless run"
        )
    from stackyard.core.session import LocalSession
    from stackyard.tui.app import run_app

    engine = engine_class(scenario, seed=args.seed)
    storage = None
    if hasattr(engine, "db_nodes") and engine.db_nodes():
        from stackyard.core.storage import Storage

        storage = Storage(engine.db_nodes())
        engine.attach_storage(storage)
    session = LocalSession(engine, speed=args.speed, publish_hz=_publish_hz(scenario),
                           storage=storage)
    return run_app(session, theme=args.theme)


def _publish_hz(scenario: Scenario) -> float:
    """Snapshots per wall second: the scenario's interval, kept within 4-10 Hz."""
    interval = scenario.run.snapshot_interval
    return min(10.0, max(4.0, 1.0 / interval if interval > 0 else 5.0))


def _check_theme(name: str) -> None:
    from stackyard.tui.themes import ThemeError, builtin_themes, resolve_name, user_themes

    available = [t.name for t in builtin_themes()] + user_themes().names()
    from textual.theme import BUILTIN_THEMES

    try:
        resolve_name(name, [*available, *BUILTIN_THEMES])
    except ThemeError as exc:
        raise UsageError(str(exc)) from None


class _ProgressBar:
    """A one-line progress bar on a terminal, redrawn only when the shown percentage changes."""

    WIDTH = 30

    def __init__(self, stream: TextIO, duration: float) -> None:
        self.stream = stream
        self.duration = duration
        self.shown = -1

    def __call__(self, fraction: float) -> None:
        percent = int(max(0.0, min(1.0, fraction)) * 100)
        if percent == self.shown:
            return
        self.shown = percent
        filled = percent * self.WIDTH // 100
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        sim = _seconds(self.duration * percent / 100)
        self.stream.write(f"\r[{bar}] {percent:3d}%  {sim} / {_seconds(self.duration)} simulated")
        self.stream.flush()

    def close(self) -> None:
        if self.shown >= 0:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


# --- summary ------------------------------------------------------------------------------


def _seconds(x: float) -> str:
    if x >= 3600:
        return f"{int(x // 3600)}h{int(x % 3600 // 60):02d}m"
    if x >= 60:
        return f"{int(x // 60)}m{int(x % 60):02d}s"
    return f"{x:.1f}s"


def _num(d: Any, key: str) -> float | None:
    value = d.get(key) if isinstance(d, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _fmt(value: float | None, fmt: Callable[[float], str]) -> str:
    return "-" if value is None else fmt(value)


def _ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def _count(x: float) -> str:
    return f"{int(x)}"


def _section(summary: dict[str, Any], key: str) -> dict[str, Any]:
    value = summary.get(key)
    return value if isinstance(value, dict) else {}


def format_summary(summary: dict[str, Any], scenario: Scenario | None = None) -> str:
    """A readable multi-line summary of ``Engine.summary()``; tolerant of missing keys."""
    name = summary.get("scenario") or (scenario.run.name if scenario else "?")
    req, lat = _section(summary, "requests"), _section(summary, "latency")
    cdn, scaler = _section(summary, "cdn"), _section(summary, "autoscaler")
    lb, slo = _section(summary, "balancer"), _section(summary, "slo")
    rows = [
        ("scenario", f"{name} (seed {summary.get('seed', '?')})"),
        ("simulated", _fmt(_num(summary, "duration"), _seconds)),
        (
            "requests",
            f"{_fmt(_num(req, 'arrived'), _count)} arrived, "
            f"{_fmt(_num(req, 'completed'), _count)} completed, "
            f"{_fmt(_num(req, 'failed'), _count)} failed, "
            f"{_fmt(_num(req, 'in_flight'), _count)} in flight "
            f"({_fmt(_num(summary, 'rps'), lambda x: f'{x:.1f}')} rps)",
        ),
        (
            "latency",
            "  ".join(f"{k} {_fmt(_num(lat, k), _ms)}" for k in ("mean", "p50", "p95", "p99")),
        ),
        ("errors", _errors(summary)),
    ]
    if cdn:
        rows.append(
            (
                "cdn",
                f"hit ratio {_fmt(_num(cdn, 'hit_ratio'), _pct)} "
                f"({_fmt(_num(cdn, 'hits'), _count)} hits, "
                f"{_fmt(_num(cdn, 'misses'), _count)} misses, "
                f"{_fmt(_num(cdn, 'collapsed'), _count)} collapsed, "
                f"{_fmt(_num(cdn, 'origin_fetches'), _count)} origin fetches)",
            )
        )
    if scaler:
        rows.append(
            (
                "autoscaler",
                f"{_fmt(_num(scaler, 'actions'), _count)} actions "
                f"({_fmt(_num(scaler, 'scale_ups'), _count)} up, "
                f"{_fmt(_num(scaler, 'scale_downs'), _count)} down); "
                f"replicas {_fmt(_num(scaler, 'replicas'), _count)} "
                f"(max {_fmt(_num(scaler, 'max_replicas'), _count)})",
            )
        )
    if lb:
        rows.append(
            (
                "balancer",
                f"{lb.get('algorithm', '?')}; "
                f"{_fmt(_num(lb, 'ejections'), _count)} ejections, "
                f"{_fmt(_num(lb, 'health_changes'), _count)} health changes, "
                f"{_fmt(_num(lb, 'retries'), _count)} retries",
            )
        )
    if slo:
        rows.append(
            (
                "slo",
                f"target {_fmt(_num(slo, 'target'), _pct)}, "
                f"good {_fmt(_num(slo, 'good_ratio'), _pct)}, "
                f"error budget left {_fmt(_num(slo, 'budget_remaining'), _pct)}",
            )
        )
    db = _section(summary, "database")
    if db.get("enabled"):
        rows.append(
            (
                "database",
                f"{db.get('mode', '?')}, leader {db.get('leader', '?')}; "
                f"{_fmt(_num(db, 'failovers'), _count)} failovers, "
                f"{_fmt(_num(db, 'lost_writes'), _count)} lost writes, "
                f"{_fmt(_num(db, 'conflicts'), _count)} conflicts, "
                f"{_fmt(_num(db, 'rewound'), _count)} rewound, "
                f"{_fmt(_num(db, 'stale_reads'), _count)} stale reads, "
                f"{_fmt(_num(db, 'backups'), _count)} backups",
            )
        )
        restore = db.get("last_restore")
        if isinstance(restore, dict) and restore:
            rows.append(
                (
                    "restore",
                    f"to {_fmt(_num(restore, 'recovery_point'), _seconds)}: "
                    f"RTO {_fmt(_num(restore, 'rto'), _seconds)}, "
                    f"RPO {_fmt(_num(restore, 'rpo'), _seconds)}, "
                    f"{_fmt(_num(restore, 'restored'), _count)} writes kept, "
                    f"{_fmt(_num(restore, 'discarded'), _count)} dropped",
                )
            )
    storage = _section(summary, "storage")
    if storage:
        where = storage.get("data_dir") or "memory"
        rows.append(
            (
                "storage",
                f"{_fmt(_num(storage, 'rows_written'), _count)} rows in SQLite ({where}), "
                f"{_fmt(_num(storage, 'backpressure_waits'), _count)} back-pressure waits",
            )
        )
    consistency = _section(summary, "consistency")
    if consistency:
        ok = consistency.get("ok")
        rows.append(("consistency", "every node's rows match the model" if ok else "MISMATCH"))
    faults = summary.get("faults")
    if isinstance(faults, list):
        rows.append(("faults", "; ".join(str(f) for f in faults) if faults else "none"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _errors(summary: dict[str, Any]) -> str:
    text = f"{_fmt(_num(summary, 'error_rate'), _pct)} of requests"
    causes = _section(summary, "errors")
    counted = [(str(k), v) for k, v in causes.items() if isinstance(v, int | float) and v]
    if counted:
        counted.sort(key=lambda kv: (-kv[1], kv[0]))
        text += " (" + ", ".join(f"{k} {int(v)}" for k, v in counted) + ")"
    return text


# --- entry point --------------------------------------------------------------------------


def version() -> str:
    """The installed distribution's version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("stackyard")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error, 1 internal error)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] in (["--version"], ["-V"]):
            print(f"{PROG} {version()}")
            return 0
        if args and args[0] in COMMANDS:
            ns = _command_parser().parse_args(args)
            handler: Callable[[argparse.Namespace], int] = ns.handler
            return handler(ns)
        return _cmd_tui(args)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
    except ScenarioError as exc:
        for line in exc.lines():
            print(f"{PROG}: {line}", file=sys.stderr)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``stackyard scenarios | head -1``): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return INTERNAL_ERROR
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        reason = " ".join(str(exc).split())
        print(
            f"{PROG}: internal error: {type(exc).__name__}: {reason} "
            f"(set {DEBUG_ENV}=1 for a traceback)",
            file=sys.stderr,
        )
        return INTERNAL_ERROR
    return USAGE_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
