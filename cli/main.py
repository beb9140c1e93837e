"""The ``stackyard`` command line: open the TUI, run a scenario headless, validate, list.

Every user error (a bad flag, an unknown scenario, a bad file) is one line on stderr starting
``stackyard:`` and exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import textwrap
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

from stackyard.cli import recorder as recording
from stackyard.cli.summary import format_catalogue, format_summary, seconds
from stackyard.core.config import ScenarioError
from stackyard.core.engine import Engine
from stackyard.core.protocol import RunSummary, encode
from stackyard.core.run import Run, StorageError, open_run, publish_hz
from stackyard.core.scenario import builtin_names, parse_duration, parse_toml, read_file, resolve

PROG = "stackyard"
USAGE_ERROR = 2
INTERNAL_ERROR = 1
DEBUG_ENV = "STACKYARD_DEBUG"
"""Set to re-raise unexpected exceptions with their traceback instead of a one-line message."""


class UsageError(Exception):
    """A user error: reported as one ``stackyard: ...`` line and exit status 2."""


class Interrupted(KeyboardInterrupt):
    """A headless run stopped by SIGTERM or SIGHUP; handled like Ctrl-C (exit 128 + signal)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """While running headless, SIGTERM and SIGHUP stop the run as Ctrl-C does: every
    ``finally`` runs (storage writes what the model committed) and the exit is one line."""

    def stop(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, stop) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_T = TypeVar("_T")


def _run_coroutine(coro: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run`` in which SIGTERM and SIGHUP cancel the coroutine as SIGINT does."""
    caught: list[int] = []

    async def guarded() -> _T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def cancel(signum: int) -> None:
            if not caught:  # a second signal must not cut the closing flush short
                task.cancel()
            caught.append(signum)

        for sig in _STOP_SIGNALS:
            loop.add_signal_handler(sig, cancel, sig)
        return await coro

    previous = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError:
        if caught:
            raise Interrupted(caught[0]) from None
        raise
    finally:
        for sig, handler in previous.items():  # the loop leaves them at SIG_DFL
            signal.signal(sig, handler)


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


def _data_dir(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a directory, got an empty path")
    return Path(text)


def _speed(text: str) -> float:
    try:
        speed = float(text.removesuffix("x"))
    except ValueError:
        message = f"expected a number such as 2 or 0.5x, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if not 0.25 <= speed <= 100:
        raise argparse.ArgumentTypeError(f"expected a speed between 0.25 and 100, got {text!r}")
    return speed


def _fps(text: str) -> float:
    from stackyard.tui.pacing import check_fps  # no Textual: plain numbers

    try:
        value = float(text)
    except ValueError:
        message = f"expected a number of frames per second such as 5, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    try:
        return check_fps(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_fps_option(parser: argparse.ArgumentParser) -> None:
    """``--fps``: the screen's refresh cap, for every command that opens the app."""
    parser.add_argument("--fps", type=_fps, metavar="N",
                        help="screen refreshes per second at most, 1-30 (default: 10, lowered "
                             "by itself while the terminal cannot keep up; i cycles it in the "
                             "app); the simulation's speed does not depend on it")


def snapshot_hz(scenario_hz: float, fps: float | None) -> float:
    """Snapshots a second for a local run viewed at ``fps``: the scenario's rate, or more
    when the user asked for more frames than that."""
    return max(scenario_hz, fps) if fps is not None else scenario_hz


# --- parsers ------------------------------------------------------------------------------


def _command_parser() -> _Parser:
    from stackyard.cli import experiments  # it builds on this module's parser and errors

    parser = _Parser(prog=PROG, description="stackyard: a three-tier web backend to play with.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="run a scenario headless and print a summary")
    run.add_argument("scenario", metavar="SCENARIO|FILE", help="built-in name or TOML file")
    run.add_argument("--duration", type=_duration,
                     help="simulated time, e.g. 30s, 10m, 1h (default: the scenario's "
                          "run.duration; 10m for default)")
    run.add_argument("--seed", type=_seed, help="random seed (default: the scenario's)")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.add_argument(
        "--check",
        action="store_true",
        help="keep every database node's rows in SQLite and compare them with the model",
    )
    run.add_argument(
        "--data-dir", type=_data_dir, metavar="DIR",
        help="keep the SQLite databases as files in DIR",
    )
    run.add_argument(
        "--overwrite", action="store_true", help="with --data-dir: replace an earlier run's data"
    )
    recording.add_record_option(run)
    run.set_defaults(handler=_cmd_run)
    experiments.add_run_options(run)

    learn = sub.add_parser("learn", help="guided lessons: list them, or open one in the app",
                           description="Guided lessons through every tier. Without LESSON, "
                                       "list them; with one, open the app on it.")
    learn.add_argument("lesson", nargs="?", metavar="LESSON|FILE",
                       help="a lesson's name (see the list) or a lesson file")
    _view_options(learn)
    learn.set_defaults(handler=_cmd_learn)

    validate = sub.add_parser("validate", help="check scenario and lesson files and report "
                                               "every problem")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(handler=_cmd_validate)

    scenarios = sub.add_parser("scenarios", help="list the built-in scenarios")
    scenarios.set_defaults(handler=_cmd_scenarios)

    catalogue = sub.add_parser("catalogue", help="list every command a run accepts, with its "
                               "parameters' bounds and keys")
    catalogue.add_argument("--json", action="store_true", help="print it as a JSON array")
    catalogue.set_defaults(handler=_cmd_catalogue)
    recording.register(sub)
    experiments.register(sub)

    from stackyard.cli import mqtt  # serve, attach (imported here: it imports this module)

    mqtt.register(sub)
    return parser


COMMANDS = ("run", "learn", "validate", "scenarios", "catalogue", "sweep", *recording.COMMANDS,
            "serve", "attach")
"""First arguments that select a subcommand; anything else opens the TUI."""


def _tui_parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        usage=f"{PROG} [SCENARIO|FILE] [--seed N] [--speed X] [--theme NAME] [--fps N] "
        "[--record FILE]\n"
        f"       {PROG} {{{','.join(COMMANDS)}}} ...",
        description="Open the TUI on a scenario (default: 'default').",
        epilog=f"commands: {', '.join(COMMANDS)} (see '{PROG} COMMAND --help')",
    )
    parser.add_argument("scenario", nargs="?", default="default", metavar="SCENARIO|FILE",
                        help="a built-in scenario (see 'stackyard scenarios') or a TOML file "
                             "(default: default)")
    parser.add_argument("--seed", type=_seed, help="random seed (default: the scenario's)")
    _view_options(parser)
    recording.add_record_option(parser)
    return parser


def theme_names() -> list[str]:
    """The built-in themes' short names (read from the package's files: no Textual import)."""
    from importlib import resources

    files = resources.files("stackyard.themes").iterdir()
    return sorted((f.name.removesuffix(".toml") for f in files if f.name.endswith(".toml")),
                  key=lambda n: (n != "dark", n))


def _view_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--speed", type=_speed, default=1.0,
                        help="simulated seconds per wall second, 0.25-100 (default: 1; "
                             "+ and - change it in the app)")
    parser.add_argument("--theme", metavar="NAME",
                        help=f"colour theme: {', '.join(theme_names())} (default: dark), a "
                             "file in ~/.config/stackyard/themes/, or any Textual theme; "
                             "t cycles them in the app")
    add_fps_option(parser)


# --- commands -----------------------------------------------------------------------------


def _validate(name: str) -> None:
    """Check one scenario or lesson file (a file with a [lesson] table is a lesson)."""
    from stackyard.core.lesson import is_lesson, load_lesson

    path = Path(name)
    if path.suffix == ".toml" and path.is_file():
        try:
            data = parse_toml(read_file(path), name)
        except (ScenarioError, OSError):
            data = {}  # the scenario loader reports it
        if is_lesson(data):
            load_lesson(path)
            return
    Engine(resolve(name))


def _cmd_validate(args: argparse.Namespace) -> int:
    failed = False
    for name in args.files:
        try:
            _validate(name)
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
        run = resolve(name).run
        print(f"{name:<{width}}  {run.description}")
        if run.lesson:
            print(f"{'':<{width}}  lesson: {run.lesson}")
    return 0


def _cmd_learn(args: argparse.Namespace) -> int:
    from stackyard.core.lesson import lesson_names, load_builtin, resolve_lesson

    if args.lesson is None:
        lessons = [load_builtin(n) for n in lesson_names()]
        width = max(len(x.name) for x in lessons) + 2
        for i, x in enumerate(lessons, 1):
            print(f"{i:>2}. {x.name:<{width}}{x.title}")
            for line in textwrap.wrap(x.summary, 76 - width):
                print(" " * (4 + width) + line)
        print(f"\nOpen one with '{PROG} learn NAME': each step asks for a key and waits for\n"
              "the model to show its effect; the debrief quotes your run's own figures.")
        return 0
    lesson = resolve_lesson(args.lesson)
    if args.theme is not None:
        _check_theme(args.theme)
    _need_terminal(f"try '{PROG} learn' to list the lessons")
    from stackyard.tui.app import run_app

    scenario = resolve(lesson.scenario)
    run = open_run(scenario, seed=lesson.seed, storage=scenario.database.enabled)
    hz = snapshot_hz(publish_hz(scenario), args.fps)
    with _draw_on_the_terminal():
        return run_app(run.session(speed=args.speed, hz=hz), theme=args.theme, lesson=lesson,
                       fps=args.fps)


def _need_terminal(hint: str) -> None:
    if not (sys.stdin.isatty() and (sys.stdout.isatty() or sys.stderr.isatty())):
        raise UsageError(f"the TUI needs a terminal (stdin and stdout or stderr a TTY); {hint}")


def _cmd_catalogue(args: argparse.Namespace) -> int:
    from stackyard.core.catalogue import actions

    if args.json:
        print(encode(actions()).decode())
    else:
        print(format_catalogue(actions()))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from stackyard.cli import experiments

    stored = args.check or args.data_dir is not None
    scenario = experiments.run_scenario(args)
    try:
        run = open_run(scenario, seed=args.seed, storage=stored, data_dir=args.data_dir,
                       overwrite=args.overwrite, record=recording.recorder(args, args.scenario))
    except StorageError:
        raise UsageError("--check and --data-dir need a scenario with a database tier") from None
    duration = run.scenario.run.duration
    bar = _ProgressBar(sys.stderr, duration) if sys.stderr.isatty() else None
    try:
        with _stop_on_signals():
            if run.storage is None and run.recorder is None:  # no event loop: Ctrl-C and
                # SIGTERM stop it at once
                run.engine.run_for(duration, progress=bar)
                summary = run.summary()
            else:
                summary = _run_coroutine(_headless(run, duration, bar, args.check))
    except StorageError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        if bar is not None:
            bar.close()
    recording.check_recorded(run)
    if args.json:
        print(summary.to_json().decode())
    else:
        print(format_summary(summary))
    for line in run.problems:
        print(f"{PROG}: consistency: {line}", file=sys.stderr)
    return experiments.report(args, summary, 1 if run.problems else 0)


async def _headless(run: Run, duration: float, bar: Callable[[float], None] | None,
                    check: bool) -> RunSummary:
    """Run ``duration`` simulated seconds as fast as possible; with ``check``, compare every
    node's rows in SQLite with the model."""
    async with run:
        await run.advance(duration, progress=bar)
        if check:
            await run.check()
        return run.summary()


def _cmd_tui(argv: list[str]) -> int:
    args = _tui_parser().parse_args(argv)
    scenario = resolve(args.scenario)
    if args.theme is not None:
        _check_theme(args.theme)
    _need_terminal(f"try '{PROG} run {args.scenario}' for a headless run")
    from stackyard.tui.app import run_app

    run = open_run(scenario, seed=args.seed, storage=scenario.database.enabled,
                   record=recording.recorder(args, args.scenario))
    hz = snapshot_hz(publish_hz(scenario), args.fps)
    with _draw_on_the_terminal():
        code = run_app(run.session(speed=args.speed, hz=hz), theme=args.theme, fps=args.fps)
    recording.check_recorded(run)
    return code


@contextlib.contextmanager
def _draw_on_the_terminal() -> Iterator[None]:
    """Textual draws on the process's stderr (``sys.__stderr__``). When that is redirected
    (``stackyard 2>log``) and stdout is the terminal, point stderr at the terminal while the
    app runs, and back at the file afterwards for whatever follows."""
    if sys.__stderr__ is None or sys.__stdout__ is None or sys.__stderr__.isatty():
        yield
        return
    sys.__stderr__.flush()
    saved = os.dup(2)
    os.dup2(sys.__stdout__.fileno(), 2)
    try:
        yield
    finally:
        sys.__stderr__.flush()
        os.dup2(saved, 2)
        os.close(saved)


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
        sim = seconds(self.duration * percent / 100)
        self.stream.write(f"\r[{bar}] {percent:3d}%  {sim} / {seconds(self.duration)} simulated")
        self.stream.flush()

    def close(self) -> None:
        if self.shown >= 0:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


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
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        how = "" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"
        print(f"{PROG}: interrupted{how}", file=sys.stderr)
        return 128 + signum
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
