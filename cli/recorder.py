"""The flight recorder's command line: ``replay``, ``rerun`` and ``export``, and ``--record``.

``cli/main.py`` calls :func:`register` to add the subcommands and :func:`add_record_option` /
:func:`recorder` for ``--record FILE`` on the commands that run something. A file that is not a
usable recording is a user error: one line naming it, exit status 2. ``rerun`` exits 1 when the
re-simulation diverges from the recording.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackyard.core.recorder import Recorder, RecorderError, check_path, source_text
from stackyard.core.recording import Recording, RecordingError

if TYPE_CHECKING:
    from stackyard.core.run import Run

COMMANDS = ("replay", "rerun", "export")
"""The subcommands this module adds."""
DIVERGED = 1


def _usage(message: str) -> Exception:
    from stackyard.cli.main import UsageError

    return UsageError(message)


# --- --record -------------------------------------------------------------------------------


def add_record_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--record", type=Path, metavar="FILE",
                        help="record the run to FILE, a new SQLite file (see 'replay', "
                             "'rerun' and 'export')")


def recorder(args: argparse.Namespace, scenario: str) -> Recorder | None:
    """The recorder ``--record`` asks for (None without it); the file must not exist yet.
    ``scenario`` is the name or path the run was given, whose text the recording keeps."""
    path: Path | None = getattr(args, "record", None)
    if path is None:
        return None
    try:
        check_path(path)
    except RecorderError as exc:
        raise _usage(f"--record: {exc}") from None
    return Recorder(path, scenario_text=source_text(scenario))


def check_recorded(run: Run) -> None:
    """Raise a user error if the run's recording failed on the way (e.g. a full disk)."""
    if run.recorder is not None and run.recorder.error is not None:
        raise _usage(run.recorder.error)


# --- argument types -------------------------------------------------------------------------


def sim_time(text: str) -> float:
    """A simulated time: ``H:MM:SS``, ``M:SS``, or a duration such as ``90s``, ``12m``."""
    from stackyard.core.scenario import parse_duration

    value = text.strip()
    try:
        if ":" in value:
            parts = [float(p) for p in value.split(":")]
            if len(parts) > 3 or any(p < 0 for p in parts):
                raise ValueError
            seconds = 0.0
            for p in parts:
                seconds = seconds * 60 + p
        else:
            seconds = parse_duration(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a simulated time such as 90s, 12m or 1:02:30, got {text!r}") from None
    if not 0 <= seconds < 1e9:
        raise argparse.ArgumentTypeError(f"expected a time >= 0, got {text!r}")
    return seconds


def register(sub: Any) -> None:
    """Add ``replay``, ``rerun`` and ``export`` to the subparsers ``sub``."""
    from stackyard.cli.main import _speed, add_fps_option

    replay = sub.add_parser("replay", help="play a recording back in the TUI, with a time "
                            "scrubber and markers")
    replay.add_argument("file", type=Path, metavar="FILE")
    replay.add_argument("--at", type=sim_time, metavar="T", help="start at simulated time T "
                        "(e.g. 90s, 12m, 1:02:30)")
    replay.add_argument("--speed", type=_speed, default=1.0, help="playback speed, 0.25-100")
    replay.add_argument("--paused", action="store_true", help="start paused")
    replay.add_argument("--theme", metavar="NAME", help="colour theme")
    add_fps_option(replay)
    replay.set_defaults(handler=_cmd_replay)

    rerun = sub.add_parser("rerun", help="re-simulate a recording and report whether it "
                           "reproduces exactly (exit 1 if not), or fork a live run from it")
    rerun.add_argument("file", type=Path, metavar="FILE")
    rerun.add_argument("--from", dest="fork", type=sim_time, metavar="T",
                       help="open the TUI at time T of the recording and play on live")
    rerun.add_argument("--speed", type=_speed, default=1.0, help="with --from: speed, 0.25-100")
    rerun.add_argument("--theme", metavar="NAME", help="with --from: colour theme")
    add_fps_option(rerun)
    add_record_option(rerun)
    rerun.set_defaults(handler=_cmd_rerun)

    from stackyard.core.export import FORMATS

    export = sub.add_parser("export", help="write a recording's time series, events and "
                            "commands as CSV or JSON Lines")
    export.add_argument("file", type=Path, metavar="FILE")
    export.add_argument("--format", choices=FORMATS, default="csv",
                        help="csv (default) or jsonl")
    export.add_argument("--output", type=Path, metavar="DIR",
                        help="directory to write to (default: the recording's)")
    export.add_argument("--force", action="store_true", help="replace files already there")
    export.set_defaults(handler=_cmd_export)


# --- commands -------------------------------------------------------------------------------


def _open(path: Path) -> Recording:
    try:
        return Recording.open(path)
    except RecordingError as exc:
        raise _usage(str(exc)) from None


def _within(rec: Recording, t: float, flag: str) -> None:
    from stackyard.core.replay import clock

    if not rec.start <= t <= rec.end:
        rec.close()
        raise _usage(f"{flag}: expected a time between {clock(rec.start)} and "
                     f"{clock(rec.end)} (the recording's span), got {clock(t)}")


def _need_terminal(rec: Recording, what: str) -> None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        rec.close()
        raise _usage(f"{what} needs a terminal (stdin and stdout are not both a TTY); try "
                     f"'stackyard rerun {rec.path}' or 'stackyard export {rec.path}'")


def _cmd_replay(args: argparse.Namespace) -> int:
    from stackyard.cli.main import _check_theme

    rec = _open(args.file)
    if args.at is not None:
        _within(rec, args.at, "--at")
    if args.theme is not None:
        _check_theme(args.theme)
    _need_terminal(rec, "replay")
    from stackyard.cli.main import snapshot_hz
    from stackyard.core.replay import ReplaySession
    from stackyard.tui.app import run_app

    try:
        session = ReplaySession(rec, speed=args.speed, paused=args.paused, at=args.at,
                                publish_hz=snapshot_hz(5.0, args.fps))
    except RecordingError as exc:
        rec.close()
        raise _usage(str(exc)) from None
    code = run_app(session, theme=args.theme, fps=args.fps)
    if session.problem is not None:
        raise _usage(session.problem)
    return code


def _cmd_rerun(args: argparse.Namespace) -> int:
    rec = _open(args.file)
    try:
        reason = rec.rerunnable()
    except RecordingError as exc:
        reason = str(exc)
    if reason is not None:
        rec.close()
        raise _usage(reason)
    if args.fork is not None:
        return _fork(rec, args)
    if args.record is not None:
        rec.close()
        raise _usage("rerun: --record records a fork: give --from T too")
    from stackyard.cli.main import _ProgressBar
    from stackyard.core.rerun import rerun

    bar = _ProgressBar(sys.stderr, rec.end - rec.start) if sys.stderr.isatty() else None
    try:
        result = rerun(rec, bar)
    except RecordingError as exc:
        raise _usage(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
        rec.close()
    if result.divergence is not None:
        print(f"{args.file}: {result.divergence.line()}")
        return DIVERGED
    from stackyard.cli.summary import plural
    from stackyard.core.replay import clock

    print(f"{args.file}: identical: {plural(result.snapshots, 'snapshot')} from "
          f"{clock(result.start)} to {clock(result.end)}, {plural(result.events, 'event')} and "
          f"{plural(result.commands, 'command')} re-simulated from seed {rec.meta.seed}")
    return 0


def _fork(rec: Recording, args: argparse.Namespace) -> int:
    from stackyard.cli.main import _check_theme

    _within(rec, args.fork, "--from")
    if args.theme is not None:
        _check_theme(args.theme)
    _need_terminal(rec, "rerun --from")
    record = None
    if args.record is not None:
        try:
            check_path(args.record)
        except RecorderError as exc:
            rec.close()
            raise _usage(f"--record: {exc}") from None
        record = Recorder(args.record, scenario_text=rec.meta.scenario_toml)
    from stackyard.core.rerun import ForkSession
    from stackyard.core.run import open_run, publish_hz
    from stackyard.tui.app import run_app

    scenario = rec.scenario
    try:
        commands = rec.commands()
    finally:
        rec.close()
    run = open_run(scenario, seed=rec.meta.seed, storage=scenario.database.enabled,
                   record=record)
    from stackyard.cli.main import snapshot_hz

    session = ForkSession(run, commands, args.fork, speed=args.speed,
                          publish_hz=snapshot_hz(publish_hz(scenario), args.fps))
    code = run_app(session, theme=args.theme, fps=args.fps)
    check_recorded(run)
    return code


def _cmd_export(args: argparse.Namespace) -> int:
    from stackyard.core.export import ExportError, export

    rec = _open(args.file)
    out = args.output if args.output is not None else rec.path.parent
    try:
        written = export(rec, out, args.format, force=args.force)
    except (ExportError, RecordingError) as exc:
        raise _usage(str(exc)) from None
    finally:
        rec.close()
    for path in written:
        print(path)
    return 0
