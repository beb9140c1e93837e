"""The seam a viewer drives a run through: snapshots in, commands and SQL queries out.

:class:`Session` is the interface; :class:`LocalSession` implements it over an in-process
:class:`~core.run.Run` paced in real time by a :class:`~core.realtime.RealtimeDriver`. A session
fed over MQTT implements the same interface, so a viewer written against it sees only records of
:mod:`core.protocol`: it reads :class:`Snapshot` objects and the catalogue, and sends
:class:`Command` objects — faults, controls and the driver's pause, speed and step alike.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from stackyard.core.catalogue import CATALOGUE, actions
from stackyard.core.commands import CommandError
from stackyard.core.protocol import (
    ActionInfo,
    Command,
    DriverStatus,
    QueryResult,
    Reply,
    RunSummary,
    Snapshot,
)
from stackyard.core.realtime import RealtimeDriver

if TYPE_CHECKING:
    from stackyard.core.engine import Engine
    from stackyard.core.run import Run

Subscriber = Callable[[Snapshot], None]


class Subscribers:
    """The callbacks a session hands each snapshot to, in the order they subscribed."""

    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        self._callbacks: list[Subscriber] = []

    def add(self, callback: Subscriber) -> Callable[[], None]:
        """Subscribe ``callback``; the function returned unsubscribes it (twice is harmless)."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    def publish(self, snap: Snapshot) -> None:
        for callback in list(self._callbacks):  # a callback may unsubscribe itself
            callback(snap)

    def clear(self) -> None:
        self._callbacks.clear()


class SessionError(Exception):
    """Something a session cannot do; the message says why, in one line."""


class Session(Protocol):
    """What a viewer needs from a run, local or remote."""

    @property
    def latest(self) -> Snapshot | None:
        """The most recent snapshot (None before the first)."""
        ...

    @property
    def status(self) -> DriverStatus: ...

    @property
    def catalogue(self) -> tuple[ActionInfo, ...]:
        """Every command this run accepts."""
        ...

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` with every new snapshot; returns a function that unsubscribes."""
        ...

    async def send(self, command: Command) -> Reply:
        """Apply a command (a fault, a control or a driver command); never raises for a bad
        one: the reply says what was wrong."""
        ...

    async def query(self, node: str, sql: str) -> QueryResult:
        """Run a read-only query on a database node; raises SessionError with the reason."""
        ...

    async def summary(self) -> RunSummary:
        """The run's figures so far (what ``stackyard run`` prints; lessons quote them)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class LocalSession:
    """A session over an in-process run, paced in real time by a driver task."""

    def __init__(self, run: Run, *, speed: float = 1.0, paused: bool = False,
                 publish_hz: float = 5.0, step_seconds: float = 1.0) -> None:
        self.run = run
        self.engine: Engine = run.engine
        self._subscribers = Subscribers()
        self._latest: Snapshot | None = None
        self.sent: list[tuple[Command, Reply]] = []
        """Every command sent through this session and its reply, in order."""
        self.driver = RealtimeDriver(
            run.engine,
            self._on_snapshot,
            speed=speed,
            paused=paused,
            publish_hz=publish_hz,
            step_seconds=step_seconds,
            between_slices=(run.relieve if run.storage is not None or run.recorder is not None
                            else None),
        )
        self._task: asyncio.Task[None] | None = None
        self._catalogue = actions()
        self.driver.publish()

    # -- snapshots --------------------------------------------------------------------------

    def _on_snapshot(self, snap: Snapshot) -> None:
        self._latest = snap
        self._subscribers.publish(snap)

    @property
    def latest(self) -> Snapshot | None:
        return self._latest

    @property
    def status(self) -> DriverStatus:
        return self.driver.status

    @property
    def catalogue(self) -> tuple[ActionInfo, ...]:
        return self._catalogue

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        return self._subscribers.add(callback)

    # -- commands ---------------------------------------------------------------------------

    def apply(self, command: Command) -> Reply:
        """Apply ``command`` now (synchronously) and publish a snapshot showing its effect."""
        action = CATALOGUE.get(command.kind)
        try:
            if action is not None and action.group == "driver":
                if command.target:
                    raise CommandError(f"{command.kind}.target: expected no target, "
                                       f"got {command.target!r}")
                params = action.resolve(command.params, self.driver)
                result = str(action.apply(self.driver, params))
            else:
                result = self.engine.apply(command)
                self.driver.publish()
        except CommandError as exc:
            reply = Reply(ok=False, id=command.id, kind=command.kind, error=str(exc))
        else:
            reply = Reply(ok=True, id=command.id, kind=command.kind, result=str(result or ""))
        self.sent.append((command, reply))
        return reply

    async def send(self, command: Command) -> Reply:
        return self.apply(command)

    async def query(self, node: str, sql: str) -> QueryResult:
        storage = self.run.storage
        if storage is None:
            raise SessionError("this run keeps no SQL data (it was started without storage)")
        from stackyard.core.storage import QueryError

        try:
            return await storage.query(node, sql)
        except QueryError as exc:
            raise SessionError(str(exc)) from exc

    async def summary(self) -> RunSummary:
        return self.run.summary()

    # -- driving ----------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Run ``seconds`` of simulated time at once and publish (for scripts and tests)."""
        self.engine.run_until(self.engine.now + seconds)
        self.driver.publish()

    async def start(self) -> None:
        """Open the storage (if any) and start driving in real time."""
        await self.run.start()
        if self._task is None:
            self._task = asyncio.create_task(self.driver.run(), name="stackyard-driver")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._subscribers.clear()
        await self.run.close()
