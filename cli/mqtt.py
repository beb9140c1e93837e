"""``stackyard serve`` and ``stackyard attach``: one run on a broker, many viewers.

``serve`` never imports Textual; ``attach`` imports it only once the run has been found. Every
problem a user can fix — a bad URL, port, credential file or run id, a broker that refuses the
credentials or does not answer, no run to attach to — is one ``stackyard: ...`` line and exit
status 2 (raised as the command line's UsageError).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackyard.cli import recorder as recording
from stackyard.cli.main import PROG, UsageError, _seed, _speed, add_fps_option, version
from stackyard.cli.summary import plural
from stackyard.core.mqtt import (
    DEFAULT_BROKER,
    BrokerConfig,
    MqttBridgeError,
    check_run_id,
    parse_broker_url,
    read_password_file,
    run_id_for,
)

if TYPE_CHECKING:
    from stackyard.core.mqtt.topics import ServerStatus

COMMANDS = ("serve", "attach")


def register(sub: Any) -> None:
    """Add ``serve`` and ``attach`` to the command line's subparsers."""
    serve = sub.add_parser("serve", help="run a scenario headless in real time and publish it "
                           "on MQTT for 'stackyard attach' viewers")
    serve.add_argument("scenario", metavar="SCENARIO|FILE", help="built-in name or TOML file")
    _broker_options(serve, default_help="without it, an embedded broker on 127.0.0.1")
    serve.add_argument("--run-id", metavar="ID",
                       help="the run's topic level, stackyard/ID/... (default: the scenario's "
                       "name)")
    serve.add_argument("--allow-control", action="store_true",
                       help="let viewers inject faults, change controls and pause, step or "
                       "speed up the shared clock (default: read-only)")
    serve.add_argument("--speed", type=_speed, default=1.0, help="simulation speed, 0.25-100")
    serve.add_argument("--seed", type=_seed, help="random seed (default: the scenario's)")
    recording.add_record_option(serve)
    serve.set_defaults(handler=cmd_serve)

    attach = sub.add_parser("attach", help="open the app on a run that 'stackyard serve' "
                            "publishes")
    _broker_options(attach, default_help=f"default {DEFAULT_BROKER}")
    attach.add_argument("--run-id", metavar="ID",
                        help="the run to attach to (default: the only one online)")
    attach.add_argument("--name", metavar="NAME",
                        help="your name in the server's log (default: user@host)")
    attach.add_argument("--theme", metavar="NAME", help="colour theme")
    add_fps_option(attach)
    attach.add_argument("--record", type=Path, metavar="FILE",
                        help="record what this viewer receives to FILE, a new SQLite file, "
                        "from the run's recent history on (see 'replay', 'rerun' and "
                        "'export')")
    attach.set_defaults(handler=cmd_attach)


def _broker_options(parser: argparse.ArgumentParser, *, default_help: str) -> None:
    parser.add_argument("--broker", metavar="URL",
                        help=f"mqtt://HOST:PORT or mqtts://HOST:PORT ({default_help})")
    parser.add_argument("--tls-ca", type=Path, metavar="FILE",
                        help="CA certificates (PEM) for an mqtts:// broker")
    parser.add_argument("--username", metavar="USER", help="the broker's user name")
    parser.add_argument("--password-file", type=Path, metavar="FILE",
                        help="a file whose first line is the password")


def _broker(args: argparse.Namespace, default: str | None) -> BrokerConfig | None:
    """The broker the options name (None: none named and no default)."""
    try:
        password = read_password_file(args.password_file) \
            if args.password_file is not None else None
        if args.username is not None and not args.username:
            raise UsageError("--username: expected a user name, got an empty one")
        url = args.broker if args.broker is not None else default
        if url is None:
            for flag in ("tls_ca", "username", "password_file"):
                if getattr(args, flag) is not None:
                    raise UsageError(f"--{flag.replace('_', '-')}: needs --broker (the embedded "
                                     "broker takes anonymous clients without TLS)")
            return None
        return parse_broker_url(url, ca_file=args.tls_ca, username=args.username,
                                password=password)
    except MqttBridgeError as exc:
        raise UsageError(str(exc)) from None


def _logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    logger = logging.getLogger("stackyard")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


# -- serve ---------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from stackyard.core.run import open_run
    from stackyard.core.scenario import resolve

    broker = _broker(args, None)
    scenario = resolve(args.scenario)
    run_id = run_id_for(scenario.run.name) if args.run_id is None else args.run_id
    try:
        check_run_id(run_id)
    except MqttBridgeError as exc:
        raise UsageError(str(exc)) from None
    run = open_run(scenario, seed=args.seed, storage=scenario.database.enabled,
                   record=recording.recorder(args, args.scenario))
    _logging()
    code = asyncio.run(_serve(run, broker, run_id, args))
    recording.check_recorded(run)
    return code


async def _serve(run: Any, broker: BrokerConfig | None, run_id: str,
                 args: argparse.Namespace) -> int:
    from stackyard.core.mqtt.broker import EmbeddedBroker
    from stackyard.core.mqtt.server import MqttServer, ServerOptions

    embedded = None
    if broker is None:
        embedded = EmbeddedBroker()
        try:
            broker = embedded.start()
        except MqttBridgeError as exc:
            raise UsageError(str(exc)) from None
    session = run.session(speed=args.speed)
    server = MqttServer(session, broker, options=ServerOptions(
        run_id=run_id, allow_control=args.allow_control, version=version(),
        scenario_text=recording.source_text(args.scenario)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        await session.start()
        try:
            await server.start()
        except MqttBridgeError as exc:
            raise UsageError(str(exc)) from None
        snap = session.latest
        scenario = snap.scenario if snap is not None else run_id
        where = f"{broker.url} (embedded broker)" if embedded is not None else broker.url
        control = "control on: viewers may send commands" if args.allow_control else \
            "control off: viewers watch and query (--allow-control lets them act)"
        attach = f"{PROG} attach --broker {broker.url} --run-id {run_id}"
        print(f"{PROG}: serving {scenario} (seed {run.seed}) as run '{run_id}' on {where}; "
              f"{control}", flush=True)
        print(f"attach with: {attach}", flush=True)
        print(f"watch with:  mosquitto_sub -h {broker.host} -p {broker.port} "
              f"-t 'stackyard/{run_id}/#' -v", flush=True)
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await server.close()
        await session.close()
        if embedded is not None:
            embedded.stop()
    print(f"{PROG}: stopped run '{run_id}' at {session.engine.now:.1f} s simulated "
          f"({plural(server.counts['applied'], 'command')} applied, "
          f"{server.counts['refused']} refused)",
          file=sys.stderr, flush=True)
    return 0


# -- attach --------------------------------------------------------------------------------


def _viewer_name(args: argparse.Namespace) -> str:
    if args.name:
        return str(args.name)
    with contextlib.suppress(Exception):
        return f"{getpass.getuser()}@{socket.gethostname().split('.')[0]}"
    return "viewer"


def cmd_attach(args: argparse.Namespace) -> int:
    broker = _broker(args, DEFAULT_BROKER)
    assert broker is not None
    if args.run_id is not None:
        try:
            check_run_id(args.run_id)
        except MqttBridgeError as exc:
            raise UsageError(str(exc)) from None
    if args.theme is not None:
        from stackyard.cli.main import _check_theme

        _check_theme(args.theme)
    if args.record is not None:
        try:
            recording.check_path(args.record)
        except recording.RecorderError as exc:
            raise UsageError(f"--record: {exc}") from None
    return asyncio.run(_attach(broker, args))


async def _attach(broker: BrokerConfig, args: argparse.Namespace) -> int:
    from stackyard.core.mqtt.remote import RemoteOptions, RemoteSession, find_runs

    run_id = args.run_id
    try:
        if run_id is None:
            run_id = _pick(await find_runs(broker), broker)
        session = RemoteSession(broker, run_id, viewer=_viewer_name(args),
                                options=RemoteOptions(command_log=args.record is not None))
        await session.open()
    except MqttBridgeError as exc:
        raise UsageError(str(exc)) from None
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        await session.close()
        raise UsageError(f"attach: the app needs a terminal (stdin and stdout are not both a "
                         f"TTY); 'mosquitto_sub -h {broker.host} -p {broker.port} "
                         f"-t stackyard/{run_id}/snapshot' reads the run without one")
    record = await _recording(session, args.record) if args.record is not None else None
    from stackyard.tui.app import StackyardApp
    from stackyard.tui.pacing import FPS_DEFAULT

    app = StackyardApp(session, theme=args.theme, handle_signals=True,
                       fps=FPS_DEFAULT if args.fps is None else args.fps)
    try:
        code = await app.run_async()
    finally:
        if record is not None:
            await record.close()
    if record is not None:
        if record.error is not None:
            raise UsageError(record.error)
        print(_recorded(record), file=sys.stderr)
    return code if isinstance(code, int) else (app.return_code or 0)


async def _recording(session: Any, path: Path) -> Any:
    """The recording ``--record`` asks for, its file created (a user error if it cannot be)."""
    from stackyard.core.mqtt.record import ViewerRecording

    try:
        record = ViewerRecording(session, path)
        await record.open()
    except recording.RecorderError as exc:
        await session.close()
        raise UsageError(f"--record: {exc}") from None
    return record


def _recorded(record: Any) -> str:
    """One line on what a viewer's recording holds."""
    from stackyard.core.replay import clock

    rec = record.recorder
    span = f"{clock(rec.first_time)} to {clock(rec.last_time)}" \
        if rec.first_time is not None and rec.last_time is not None else "nothing"
    notes = [f"{rec.kept} snapshots"]
    if rec.gaps:
        notes.append(f"{rec.missed} missed in {rec.gaps} gaps")
    if rec.snapshots_dropped:
        notes.append(f"{rec.snapshots_dropped} dropped (the disk fell behind)")
    notes.append("re-simulates with 'stackyard rerun'" if rec.commands_complete else
                 "not the run's whole command log: replays but does not re-simulate")
    if record.stopped:
        notes.append(record.stopped)
    return f"{PROG}: recorded {span} of run '{record.session.run_id}' to {rec.path} " \
           f"({'; '.join(notes)})"


def _pick(runs: list[ServerStatus], broker: BrokerConfig) -> str:
    """The run to attach to when none was named: the only one online."""
    online = [r.run for r in runs if r.state == "online"]
    if len(online) == 1:
        return online[0]
    if online:
        raise UsageError(f"attach: {len(online)} runs are online on {broker.url} "
                         f"({', '.join(online)}); pick one with --run-id")
    offline = [r.run for r in runs]
    hint = f" (offline: {', '.join(offline)}; --run-id shows one's last state)" if offline \
        else ""
    raise UsageError(f"attach: no run is online on {broker.url}{hint}; start one with "
                     f"'{PROG} serve SCENARIO --broker {broker.url}'")
