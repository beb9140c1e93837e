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
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from rich.console import RenderableType
from textual.app import App
from textual.await_complete import AwaitComplete
from textual.binding import Binding, BindingType
from textual.command import CommandPalette
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input, Select

from stackyard.core.lesson import Lesson, LessonRun
from stackyard.core.protocol import AnyNode, Command, Reply, Snapshot
from stackyard.core.session import Session, SessionError
from stackyard.tui import actions
from stackyard.tui.history import History
from stackyard.tui.keys import Bound, command_for, groups, node_keys, textual_key
from stackyard.tui.output import OUTPUT_OPT, tighten
from stackyard.tui.pacing import FPS_DEFAULT, Pacer, fps_text, next_step
from stackyard.tui.palette import ActionsProvider, SafePalette
from stackyard.tui.screens.detail import DetailScreen
from stackyard.tui.screens.help import HelpScreen
from stackyard.tui.screens.main import MainScreen
from stackyard.tui.screens.sql import SqlScreen
from stackyard.tui.themes import DEFAULT, builtin_themes, resolve_name, user_themes
from stackyard.tui.widgets.event_log import EventStore
from stackyard.tui.widgets.header import KpiHeader
from stackyard.tui.widgets.scrubber import Scrubber
from stackyard.tui.widgets.tier_pane import TierPane

EXIT_WATCHDOG = 3.0
"""Seconds a signalled app gets to restore the terminal before the process exits anyway."""


@dataclass(frozen=True)
class PaletteEntry:
    text: str
    help: str
    run: Callable[[], object]
    command: Command | None = None
    """The command ``run`` sends, if it sends one."""


VIEW_BINDINGS: list[BindingType] = [
    Binding("question_mark", "help", "help"),
    Binding("q", "quit", "quit"),
    Binding("ctrl+c", "interrupt", "quit", show=False, priority=True),
    Binding("t", "cycle_theme", "theme", show=False),
    Binding("i", "cycle_fps", "refresh rate", show=False),
    Binding("s", "sql", "sql", show=False),
    Binding("L", "toggle_lesson", "lesson/log"),
]
"""Keys of the viewer itself; the keys that send commands come from the catalogue."""

RUN_ACTIONS = frozenset({"catalogue_key", "sql"})
"""Actions that act on the run: only from the main and detail screens."""
SHORTCUTS = frozenset({"catalogue_key", "sql", "quit", "help", "cycle_theme", "cycle_fps",
                       "filter", "toggle_lesson"})
"""Actions of single keys: never while the user is typing (ctrl+c still quits)."""


class StackyardApp(App[int]):
    """Three live tier panes over a :class:`~core.session.Session`."""

    TITLE = "stackyard"
    CSS_PATH = "app.tcss"
    COMMANDS: ClassVar[set[Any]] = App.COMMANDS | {ActionsProvider}
    BINDINGS: ClassVar[list[BindingType]] = VIEW_BINDINGS
    NOTIFICATION_TIMEOUT = 4

    def __init__(self, session: Session, *, theme: str | None = None,
                 theme_dir: Path | None = None, handle_signals: bool = False,
                 lesson: Lesson | None = None, fps: float = FPS_DEFAULT) -> None:
        super().__init__()
        self.session = session
        self.pacer = Pacer(fps)
        """How often the screen is redrawn (``--fps``, the ``i`` key, the back-off)."""
        self._urgent = False
        """Draw the next snapshot at once: it answers the user's command."""
        self.lesson = LessonRun(lesson) if lesson is not None else None
        """The lesson under way, if the app was opened on one."""
        self.events = EventStore()
        """Every event seen (bounded), for the event log."""
        self.history = History()
        self.last_pane: TierPane | None = None
        self.handle_signals = handle_signals
        self._pending: Snapshot | None = None
        self._time = float("-inf")
        """Simulated time of the last snapshot taken."""
        self._unsubscribe: Callable[[], None] | None = None
        self._key_signature: tuple[str, str] = ("", "")
        self.key_groups = groups(session.catalogue)
        """The catalogue's keys grouped by (key, label): one binding per group."""
        for i, (key, label, bound) in enumerate(self.key_groups):
            self.bind(textual_key(key), f"catalogue_key({i})", description=label,
                      show=any(b.footer for b in bound))
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

    def action_command_palette(self) -> None:
        """Open the palette, once: a second ctrl+p in the same burst must not push another
        palette while the first is still arriving or leaving."""
        if any(isinstance(s, CommandPalette) for s in self.screen_stack):
            return
        if self.use_command_palette:
            self.push_screen(SafePalette())

    def pop_screen(self) -> AwaitComplete:
        """Pop the top screen, but never the main screen: a close meant for a screen that a
        burst of keys already replaced must not leave the user on an empty screen."""
        if len(self.screen_stack) <= 2 and isinstance(self.screen, MainScreen):
            return AwaitComplete(_nothing())
        return super().pop_screen()

    def _display(self, screen: Screen[Any], renderable: RenderableType | None) -> None:
        """Write a screen update the tight way (:mod:`stackyard.tui.output`)."""
        super()._display(screen, tighten(renderable))  # type: ignore[arg-type]

    # -- lifecycle --------------------------------------------------------------------------

    async def on_mount(self) -> None:
        for problem in self.theme_problems:
            self.notify(problem, title="theme skipped", severity="warning", timeout=10,
                        markup=False)
        latest = self.session.latest
        if latest is not None:
            self._take(latest)
        self._unsubscribe = self.session.subscribe(self._on_snapshot)
        await self.push_screen(MainScreen())
        if self.lesson is not None:
            self._lesson_moved()
        await self.session.start()
        self.set_interval(0.5, self._link_changes, name="link")
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
        if snap.time < self._time:
            # Time went back (a replay sought): start the log and the charts afresh.
            self.events.clear()
            self.history = History()
        self._time = snap.time
        self.events.add(snap.events)
        self.history.add(snap)
        if self.lesson is not None and self.lesson.observe(snap):
            self.call_next(self._lesson_moved)

    # -- the lesson -------------------------------------------------------------------------

    def _lesson_moved(self) -> None:
        """A step began (select its node) or the last one ended (fetch the figures)."""
        run = self.lesson
        if run is None:
            return
        step = run.step
        if step is None:
            if not run.debrief:
                self.run_worker(self._debrief(run), group="lesson", exclusive=True)
        elif step.select:
            main = self._main()
            if main is not None:
                main.select_node(step.select)
        self._lesson_pane_update()

    async def _debrief(self, run: LessonRun) -> None:
        try:
            run.finish(await self.session.summary())
        except SessionError as exc:
            run.debrief = f"Every step done; this run's figures are not available: {exc}"
        self._lesson_pane_update()

    def _main(self) -> MainScreen | None:
        return next((s for s in self.screen_stack if isinstance(s, MainScreen)), None)

    def _lesson_pane_update(self) -> None:
        main = self._main()
        if main is not None:
            main.lesson_changed()

    def action_toggle_lesson(self) -> None:
        main = self._main()
        if main is not None and main is self.screen:
            main.toggle_lesson()

    def _on_snapshot(self, snap: Snapshot) -> None:
        self._take(snap)
        first = self._pending is None
        self._pending = snap
        urgent, self._urgent = self._urgent, False
        if urgent or not OUTPUT_OPT or self.session.status.paused:
            # The user's own command (or a step of a paused run: nothing else publishes then):
            # its effect shows at once, whatever the refresh rate.
            self.call_next(self._draw)
        elif first:
            # Decided on the app's own loop: a remote session calls from its network task.
            self.call_next(self._next_frame)

    def _next_frame(self) -> None:
        """Draw the pending snapshot now, or when the refresh rate allows."""
        wait = self.pacer.wait(time.monotonic())
        if wait > 0:
            self.set_timer(wait, self._draw, name="frame")
        else:
            self._draw()

    def _draw(self) -> None:
        snap, self._pending = self._pending, None
        if snap is None or self._exit or not self.screen_stack:
            return
        if self.pacer.drawn(time.monotonic(), self.output_backlog()):
            self._rate_changed()
        screen = self.screen
        if isinstance(screen, MainScreen | DetailScreen):
            with self.batch_update():
                screen.show(snap)
            self.frames += 1
        self.update_keys()

    def output_backlog(self) -> int:
        """Writes of earlier frames still queued for the terminal: Textual 8's driver hands
        its output to a writer thread, which blocks while the terminal (or the SSH link behind
        it) does not drain it. 0 when there is no such queue (headless tests)."""
        writer = getattr(self._driver, "_writer_thread", None)
        queue = getattr(writer, "_queue", None)
        qsize = getattr(queue, "qsize", None)
        return int(qsize()) if callable(qsize) else 0

    def _rate_changed(self) -> None:
        """The refresh rate backed off or recovered: the header says so while it is low."""
        for header in self.screen.query(KpiHeader):
            header.show(header.snapshot, header.status, self.refresh_note)

    @property
    def refresh_note(self) -> str:
        """What the header says about the refresh rate: nothing unless it is backed off."""
        if not self.pacer.backed_off:
            return ""
        return f"slow terminal: {fps_text(self.pacer.rate)}"

    def action_cycle_fps(self) -> None:
        """The next refresh cap (1, 2, 5, 10, 20 frames a second)."""
        self.pacer.set_cap(next_step(self.pacer.cap))
        self._rate_changed()
        self.notify(f"screen refresh: up to {fps_text(self.pacer.cap)}", timeout=1.5)

    def _link_changes(self) -> None:
        """Redraw the header when a remote run's link or control changes: snapshots, which
        redraw it otherwise, stop coming when the link is lost."""
        status = self.session.status
        if not status.link:
            return
        for header in self.screen.query(KpiHeader):
            if (header.status.link, header.status.control) != (status.link, status.control):
                header.show(header.snapshot, status, header.note)

    def update_keys(self) -> None:
        """Refresh the footer only when the keys that fit change (the selected node's kind or
        the screen): a footer refresh rebuilds its widgets, far too costly per snapshot."""
        node = self.node
        signature = (type(self.screen).__name__, node.kind if node is not None else "")
        if signature != self._key_signature:
            self._key_signature = signature
            self.refresh_bindings()

    def footer_rank(self, binding: Binding) -> int:
        """How much a footer needs ``binding`` (lower first): the screen's way back and help,
        quit, the keys that act on the selection, the catalogue's footer keys, the rest."""
        action = binding.action
        if action in ("help", "app.pop_screen", "app.help"):
            return 0
        if action in ("quit", "app.quit", "toggle_lesson"):
            return 1
        if action.startswith("catalogue_key("):
            index = int(action.removeprefix("catalogue_key(").rstrip(")"))
            bound = self.key_groups[index][2]
            return 2 if any(b.key.scope == "node" for b in bound) else 3
        return 4

    # -- where keys act ---------------------------------------------------------------------

    @property
    def node(self) -> AnyNode | None:
        """The node keys act on: the detail screen's, or the main screen's selection."""
        screen = self.screen
        if isinstance(screen, DetailScreen | MainScreen):
            return screen.node
        return None

    def _command(self, index: int) -> tuple[Bound, Command] | None:
        """The command key group ``index`` sends for the current selection, if any."""
        snap = self.session.latest
        node = self.node
        for bound in self.key_groups[index][2]:
            command = command_for(bound, node, snap)
            if command is not None:
                return bound, command
        return None

    @property
    def typing(self) -> bool:
        """Whether the focus is somewhere keys are text (an input, a drop-down list): then no
        single key may act as a shortcut."""
        widget = self.focused
        while widget is not None:
            if isinstance(widget, Input | Select):
                return True
            parent = widget.parent
            widget = parent if isinstance(parent, Widget) else None
        return isinstance(self.screen, SqlScreen)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in SHORTCUTS and self.typing:
            return False
        if action in RUN_ACTIONS and not isinstance(self.screen, MainScreen | DetailScreen):
            return False
        if action == "toggle_lesson":
            return self.lesson is not None and isinstance(self.screen, MainScreen)
        if action == "catalogue_key":
            index = parameters[0]
            return isinstance(index, int) and self._command(index) is not None
        return True

    # -- sending ----------------------------------------------------------------------------

    async def send_command(self, command: Command) -> Reply:
        """Send ``command``; a refusal shows as a notice with the reason."""
        self._urgent = True
        reply = await self.session.send(command)
        if not reply.ok:
            self.notify(reply.error, title=f"{command.kind} refused", severity="error")
        return reply

    async def action_catalogue_key(self, index: int) -> None:
        found = self._command(index)
        if found is None:
            return
        bound, command = found
        reply = await self.send_command(command)
        action = bound.action
        if reply.ok and reply.result and action.group != "fault" and command.params:
            name = next(iter(command.params))
            value: Any = reply.result
            param = action.param(name)
            if param is not None and param.type in ("number", "integer"):
                value = float(reply.result)
            elif param is not None and param.type == "bool":
                value = reply.result == "on"
            text = actions.wording(action, command.target, {name: value}, self.session.latest) \
                if self.session.latest is not None else reply.result
            self.notify(text, timeout=2)

    async def on_scrubber_seek(self, message: Scrubber.Seek) -> None:
        await self.send_command(Command("seek", params={"time": message.time}, origin="mouse"))

    # -- views ------------------------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def open_detail(self, node_id: str, kind: str = "") -> None:
        self.push_screen(DetailScreen(node_id, kind))

    def action_sql(self) -> None:
        snap = self.session.latest
        nodes = [n.id for n in snap.nodes if n.kind == "db"] if snap else []
        if not nodes:
            self.notify("this run has no database nodes", severity="warning")
            return
        node = self.node
        self.push_screen(SqlScreen(nodes, node.id if node is not None else nodes[0]))

    def action_interrupt(self) -> None:
        """ctrl+c: quit from anywhere, even while typing."""
        self.exit()

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
            for choice in actions.choices(self.session.catalogue, snap, node):
                out.append(PaletteEntry(choice.text, choice.help,
                                        partial(self.send_command, choice.command),
                                        choice.command))
            for n in snap.nodes:
                out.append(PaletteEntry(f"open {n.kind} {n.id} detail",
                                        f"{n.kind} in the {n.tier} tier",
                                        partial(self.open_detail, n.id, n.kind)))
        out.append(PaletteEntry("filter events", "/", self.action_filter))
        out.append(PaletteEntry("SQL console", "s: read-only queries on a database node",
                                self.action_sql))
        out.append(PaletteEntry("help: every key", "?", self.action_help))
        out.append(PaletteEntry("next theme", "t", self.action_cycle_theme))
        out.append(PaletteEntry(f"screen refresh: next cap (now {fps_text(self.pacer.cap)})",
                                "i: 1, 2, 5, 10 or 20 frames a second",
                                self.action_cycle_fps))
        self._palette_cache = (key, out)
        return out

    # -- keys the selection does not fit ----------------------------------------------------

    def on_key(self, event: Any) -> None:
        key = getattr(event, "key", "")
        if not isinstance(self.screen, MainScreen | DetailScreen):
            return
        mine = [i for i, (k, _, bound) in enumerate(self.key_groups)
                if textual_key(k) == key and all(b.key.scope == "node" for b in bound)]
        if not mine or any(self._command(i) is not None for i in mine):
            return
        node = self.node
        if node is None:
            return
        label = self.key_groups[mine[0]][1]
        fits = ", ".join(f"{b.key.key} {b.label}" for b in node_keys(self.session.catalogue,
                                                                       node))
        self.notify(f"{key} ({label}) does not apply to {node.id} ({node.kind}); here: "
                    f"{fits or 'no fault keys'}", severity="warning", timeout=3)


async def _nothing() -> None:
    """An awaitable that does nothing (a refused pop)."""


def run_app(session: Session, *, theme: str | None = None, lesson: Lesson | None = None,
            fps: float | None = None) -> int:
    """Run the app full-screen until the user quits; returns the exit status."""
    app = StackyardApp(session, theme=theme, handle_signals=True, lesson=lesson,
                       fps=FPS_DEFAULT if fps is None else fps)
    code = app.run()
    return code if isinstance(code, int) else (app.return_code or 0)
