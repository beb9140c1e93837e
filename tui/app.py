"""The stackyard Textual app: the composition root.

It owns the session subscription, the event store and the metric history, the key bindings that
turn keys into :class:`~core.protocol.Command` objects, the themes, and clean shutdown. Screens
draw; the session (``core.session``) is the only way to the engine.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from stackyard.core.protocol import Command, Event, NodeState, Snapshot
from stackyard.core.realtime import SPEEDS, next_speed
from stackyard.core.session import Reply, Session
from stackyard.tui import actions
from stackyard.tui.format import speed as fmt_speed
from stackyard.tui.history import History
from stackyard.tui.keys import (
    GLOBAL_KEYS,
    NODE_KEYS,
    fault_for_key,
    global_fault,
    keys_for,
    region_of,
)
from stackyard.tui.palette import ActionsProvider
from stackyard.tui.screens.detail import DetailScreen
from stackyard.tui.screens.help import HelpScreen
from stackyard.tui.screens.main import MainScreen
from stackyard.tui.screens.sql import SqlScreen
from stackyard.tui.themes import DEFAULT, builtin_themes, resolve_name, user_themes
from stackyard.tui.widgets.tier_pane import TierPane

REPLICATION_CYCLE = ("async", "semi_sync", "sync")
EXIT_WATCHDOG = 3.0
"""Seconds a signalled app gets to restore the terminal before the process exits anyway."""


@dataclass(frozen=True)
class PaletteEntry:
    text: str
    help: str
    run: Callable[[], object]
    command: Command | None = None
    """The command ``run`` sends, if it sends one."""


def _bindings() -> list[BindingType]:
    out: list[BindingType] = [
        Binding(key, f"node_fault('{key}')", label) for key, (label, _) in NODE_KEYS.items()
    ]
    out += [
        Binding("question_mark", "help", "help"),
        Binding("space", "toggle_pause", "pause"),
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
        Binding("plus,equals_sign", "speed(1)", "faster", show=False),
        Binding("minus,underscore", "speed(-1)", "slower", show=False),
        Binding("full_stop", "step", "step", show=False),
        Binding("u", "send('undo')", "undo"),
        Binding("x", "send('clear_all')", "clear all", show=False),
        Binding("t", "cycle_theme", "theme", show=False),
        Binding("s", "sql", "sql", show=False),
        Binding("a", "next_algorithm", "algorithm", show=False),
        Binding("A", "toggle_autoscaler", "autoscaler", show=False),
        Binding("right_square_bracket", "replicas(1)", "replica+", show=False),
        Binding("left_square_bracket", "replicas(-1)", "replica-", show=False),
        Binding("b", "send('backup')", "backup", show=False),
        Binding("v", "switchover", "switchover", show=False),
        Binding("M", "next_replication", "replication", show=False),
    ]
    for key, (label, _) in GLOBAL_KEYS.items():
        out.append(Binding(key, f"global_fault('{key}')", label, show=False))
    return out


SIM_ACTIONS = frozenset({"toggle_pause", "speed", "step", "send", "node_fault", "global_fault",
                         "next_algorithm", "toggle_autoscaler", "replicas", "next_replication",
                         "switchover", "sql"})
"""Actions that act on the run: only from the main and detail screens."""


class StackyardApp(App[int]):
    """Three live tier panes over a :class:`~core.session.Session`."""

    TITLE = "stackyard"
    CSS_PATH = "app.tcss"
    COMMANDS: ClassVar[set[Any]] = App.COMMANDS | {ActionsProvider}
    BINDINGS: ClassVar[list[BindingType]] = _bindings()
    NOTIFICATION_TIMEOUT = 4

    def __init__(self, session: Session, *, theme: str | None = None,
                 theme_dir: Path | None = None, handle_signals: bool = False) -> None:
        super().__init__()
        self.session = session
        self.events: deque[Event] = deque(maxlen=1000)
        self.history = History()
        self.last_pane: TierPane | None = None
        self.handle_signals = handle_signals
        self._pending: Snapshot | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._key_signature: tuple[str, tuple[str, ...]] = ("", ())
        self._palette_cache: tuple[tuple[int, str, str], list[PaletteEntry]] | None = None
        self.frames = 0
        """Snapshots drawn (for benchmarks)."""
        builtins = builtin_themes()
        found = user_themes(theme_dir)
        for t in [*builtins, *found.themes]:
            self.register_theme(t)
        self.theme_problems = found.problems
        """One line per user theme file that could not be used (shown as notices)."""
        self.cycle = [t.name for t in builtins] + found.names()
        """The themes ``t`` steps through: the built-ins, then the user's."""
        self.theme = resolve_name(theme, list(self.available_themes)) if theme else DEFAULT

    # -- lifecycle --------------------------------------------------------------------------

    async def on_mount(self) -> None:
        for problem in self.theme_problems:
            self.notify(problem, title="theme skipped", severity="warning", timeout=10)
        latest = self.session.latest
        if latest is not None:
            self._take(latest)
        self._unsubscribe = self.session.subscribe(self._on_snapshot)
        await self.push_screen(MainScreen())
        await self.session.start()
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._signalled, sig)

    async def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        await self.session.close()

    def _signalled(self, sig: int) -> None:
        """A hangup or termination: leave cleanly, and surely (the terminal may be gone)."""
        timer = threading.Timer(EXIT_WATCHDOG, os._exit, (128 + sig,))
        timer.daemon = True
        timer.start()
        self.exit(128 + sig)

    # -- snapshots --------------------------------------------------------------------------

    def _take(self, snap: Snapshot) -> None:
        self.events.extend(snap.events)
        self.history.add(snap)

    def _on_snapshot(self, snap: Snapshot) -> None:
        self._take(snap)
        first = self._pending is None
        self._pending = snap
        if first:
            self.call_next(self._draw)

    def _draw(self) -> None:
        snap, self._pending = self._pending, None
        if snap is None or self._exit or not self.screen_stack:
            return
        screen = self.screen
        if isinstance(screen, MainScreen | DetailScreen):
            with self.batch_update():
                screen.show(snap)
            self.frames += 1
        self.update_keys()

    def update_keys(self) -> None:
        """Refresh the footer only when the keys that fit the current node change (a footer
        refresh rebuilds its widgets, far too costly for every snapshot)."""
        node = self.node
        faults = keys_for(self.session.catalogue, node) if node is not None else []
        signature = (type(self.screen).__name__, tuple(k.info.name for k in faults))
        if signature != self._key_signature:
            self._key_signature = signature
            self.refresh_bindings()

    # -- where keys act ---------------------------------------------------------------------

    @property
    def node(self) -> NodeState | None:
        """The node fault keys act on: the detail screen's, or the main screen's selection."""
        screen = self.screen
        if isinstance(screen, DetailScreen):
            return screen.node
        if isinstance(screen, MainScreen):
            return screen.node
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in SIM_ACTIONS and not isinstance(self.screen, MainScreen | DetailScreen):
            return False
        if action == "node_fault":
            key = str(parameters[0])
            return fault_for_key(self.session.catalogue, key, self.node) is not None
        if action in ("global_fault", "send") and parameters:
            name = str(parameters[0])
            if action == "global_fault":
                return global_fault(self.session.catalogue, name) is not None
            return name in {"undo", "clear_all"} or any(
                a.name == name for a in self.session.catalogue)
        if action in ("next_replication", "switchover"):
            name = "set_replication" if action == "next_replication" else "switchover"
            return any(a.name == name for a in self.session.catalogue)
        return True

    # -- sending ----------------------------------------------------------------------------

    async def send_command(self, command: Command) -> Reply:
        """Send ``command``; a refusal shows as a notice with the engine's reason."""
        reply = await self.session.send(command)
        if not reply.ok:
            self.notify(reply.error, title=f"{command.kind} refused", severity="error")
        return reply

    async def action_send(self, kind: str) -> None:
        await self.send_command(Command(kind))

    async def action_node_fault(self, key: str) -> None:
        node = self.node
        info = fault_for_key(self.session.catalogue, key, node)
        if node is None or info is None:
            return
        await self.send_command(Command(info.name, node.id))

    async def action_global_fault(self, key: str) -> None:
        info = global_fault(self.session.catalogue, key)
        if info is None:
            return
        target = ""
        if info.target.rstrip("?") == "region" and not info.target.endswith("?"):
            snap = self.session.latest
            regions = [n.id.removeprefix("edge-") for n in snap.nodes if n.kind == "edge"] \
                if snap else []
            target = region_of(self.node, regions)
        await self.send_command(Command(info.name, target))

    async def action_next_algorithm(self) -> None:
        snap = self.session.latest
        names = next((a.choices.get("name", ()) for a in self.session.catalogue
                      if a.name == "set_algorithm"), ())
        if not names or snap is None:
            return
        current = str((snap.info.get("balancer") or {}).get("algorithm", ""))
        index = names.index(current) + 1 if current in names else 0
        name = names[index % len(names)]
        reply = await self.send_command(Command("set_algorithm", params={"name": name}))
        if reply.ok:
            self.notify(f"balancer algorithm: {name}", timeout=2)

    async def action_toggle_autoscaler(self) -> None:
        snap = self.session.latest
        on = bool((snap.info.get("autoscaler") or {}).get("enabled", True)) if snap else True
        await self.send_command(Command("set_autoscaler", params={"enabled": not on}))

    async def action_replicas(self, delta: int) -> None:
        snap = self.session.latest
        if snap is None:
            return
        now = int((snap.info.get("autoscaler") or {}).get("replicas", 0))
        await self.send_command(Command("set_replicas", params={"n": max(0, now + delta)}))

    async def action_switchover(self) -> None:
        """Hand the primary role over: to the selected replica if one is selected."""
        node = self.node
        target = node.id if node is not None and node.tier == "database" and \
            node.state == "replica" else ""
        await self.send_command(Command("switchover", target))

    async def action_next_replication(self) -> None:
        snap = self.session.latest
        current = str((snap.info.get("database") or {}).get("mode", "")) if snap else ""
        modes = next((a.choices.get("mode", ()) for a in self.session.catalogue
                      if a.name == "set_replication"), REPLICATION_CYCLE)
        index = modes.index(current) + 1 if current in modes else 0
        mode = modes[index % len(modes)]
        reply = await self.send_command(Command("set_replication", params={"mode": mode}))
        if reply.ok:
            self.notify(f"replication: {mode}", timeout=2)

    # -- driver -----------------------------------------------------------------------------

    def action_toggle_pause(self) -> None:
        if self.session.status.paused:
            self.session.resume()
        else:
            self.session.pause()

    def action_speed(self, direction: int) -> None:
        speed = self.session.set_speed(next_speed(self.session.status.speed, direction))
        self.notify(f"speed {fmt_speed(speed)}", timeout=1.5)

    def action_step(self) -> None:
        self.session.step()

    # -- views ------------------------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def open_detail(self, node_id: str, kind: str = "") -> None:
        self.push_screen(DetailScreen(node_id, kind))

    def action_sql(self) -> None:
        snap = self.session.latest
        nodes = [n.id for n in snap.nodes if n.tier == "database"] if snap else []
        if not nodes:
            self.notify("this run has no database nodes", severity="warning")
            return
        node = self.node
        self.push_screen(SqlScreen(nodes, node.id if node is not None else nodes[0]))

    def action_cycle_theme(self) -> None:
        names = self.cycle or [self.theme]
        index = names.index(self.theme) + 1 if self.theme in names else 0
        self.theme = names[index % len(names)]
        self.notify(f"theme {self.theme}", timeout=1.5)

    def action_filter(self) -> None:
        if isinstance(self.screen, MainScreen):
            self.screen.action_filter()

    # -- the palette ------------------------------------------------------------------------

    def palette_entries(self) -> list[PaletteEntry]:
        """Every action the command palette offers, for the latest snapshot (cached per
        snapshot and selection: the palette asks on every keystroke)."""
        snap = self.session.latest
        node = self.node
        key = (snap.seq if snap is not None else -1, node.kind if node else "",
               node.id if node else "")
        if self._palette_cache is not None and self._palette_cache[0] == key:
            return self._palette_cache[1]
        out: list[PaletteEntry] = []
        if snap is not None:
            cat = self.session.catalogue
            for group in (actions.fault_choices(cat, snap, node),
                          actions.clear_choices(snap), actions.control_choices(cat, snap)):
                for choice in group:
                    out.append(PaletteEntry(choice.text, choice.help,
                                            partial(self.send_command, choice.command),
                                            choice.command))
            for node in snap.nodes:
                out.append(PaletteEntry(f"open {node.kind} {node.id} detail",
                                        f"{node.kind} in the {node.tier} tier",
                                        partial(self.open_detail, node.id, node.kind)))
        out.append(PaletteEntry("pause / resume", "space", self.action_toggle_pause))
        out.append(PaletteEntry("step one simulated second", ".", self.action_step))
        for s in SPEEDS:
            out.append(PaletteEntry(f"speed {fmt_speed(s)}", "+ / - step through speeds",
                                    partial(self.session.set_speed, s)))
        out.append(PaletteEntry("filter events", "/", self.action_filter))
        out.append(PaletteEntry("SQL console", "s: read-only queries on a database node",
                                self.action_sql))
        out.append(PaletteEntry("help: every key", "?", self.action_help))
        out.append(PaletteEntry("next theme", "t", self.action_cycle_theme))
        self._palette_cache = (key, out)
        return out

    # -- keys the selection does not fit ----------------------------------------------------

    def on_key(self, event: Any) -> None:
        key = getattr(event, "key", "")
        if key in NODE_KEYS and isinstance(self.screen, MainScreen | DetailScreen):
            node = self.node
            if node is not None and fault_for_key(self.session.catalogue, key, node) is None:
                fits = ", ".join(f"{k.key} {k.label}" for k in keys_for(self.session.catalogue,
                                                                          node))
                self.notify(f"{key} ({NODE_KEYS[key][0]}) does not apply to {node.id} "
                            f"({node.kind}); here: {fits or 'no fault keys'}",
                            severity="warning", timeout=3)


def run_app(session: Session, *, theme: str | None = None) -> int:
    """Run the app full-screen until the user quits; returns the exit status."""
    app = StackyardApp(session, theme=theme, handle_signals=True)
    code = app.run()
    return code if isinstance(code, int) else (app.return_code or 0)
