"""The seam a viewer drives a run through: snapshots in, commands and driver controls out.

:class:`Session` is the interface; :class:`LocalSession` implements it over an in-process
:class:`~core.engine.Engine` and a :class:`~core.realtime.RealtimeDriver`. A session fed over MQTT
can implement the same interface, so a viewer written against it never touches the engine's
internals: it sees :class:`~core.protocol.Snapshot` objects, sends
:class:`~core.protocol.Command` objects, and reads the catalogue of what it may send.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from stackyard.core.protocol import Command, Snapshot
from stackyard.core.realtime import DriverStatus, RealtimeDriver

Subscriber = Callable[[Snapshot], None]

REPLICATION_MODES = ("async", "semi_sync", "sync")


class SessionError(Exception):
    """Something a session cannot do; the message says why, in one line."""


@dataclass(frozen=True)
class Reply:
    """The outcome of :meth:`Session.send`: ``result`` (e.g. a fault id) or ``error``."""

    ok: bool
    result: str = ""
    error: str = ""


@dataclass(frozen=True)
class ActionInfo:
    """One kind of command a viewer may send."""

    name: str
    description: str
    target: str = ""
    """Fault kinds: the target type (container, vm, host, link, edge, balancer, region, node, db;
    a trailing ``?`` means optional; ``none`` means global). Control commands: ''."""
    params: dict[str, float] = field(default_factory=dict)
    """Default parameters of a fault kind."""
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """For control commands, the allowed values of a parameter (e.g. set_algorithm's name)."""
    fault: bool = True
    reversible: bool = True
    """False for a fault that heals on its own (e.g. a killed container restarts): it never
    shows among the active faults and undo cannot clear it."""


class QueryResultLike(Protocol):
    """What a read-only SQL query returns (``core.storage.QueryResult``)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    truncated: bool
    elapsed: float


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
        """Every fault kind and control command this run accepts."""
        ...

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` with every new snapshot; returns a function that unsubscribes."""
        ...

    async def send(self, command: Command) -> Reply: ...

    async def query(self, node: str, sql: str) -> QueryResultLike:
        """Run a read-only query on a database node; raises SessionError with the reason."""
        ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def set_speed(self, speed: float) -> float: ...

    def step(self, seconds: float | None = None) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class LocalSession:
    """A session over an in-process engine, paced in real time by a driver task."""

    def __init__(
        self,
        engine: Any,
        *,
        speed: float = 1.0,
        paused: bool = False,
        publish_hz: float = 5.0,
        step_seconds: float = 1.0,
        storage: Any = None,
    ) -> None:
        self.engine = engine
        self._storage = storage
        """A ``core.storage.Storage`` attached to ``engine``: opened by :meth:`start`, given
        the chance to write between slices, closed by :meth:`close`."""
        self._subscribers: list[Subscriber] = []
        self._latest: Snapshot | None = None
        self.sent: list[tuple[Command, Reply]] = []
        """Every command sent through this session and its reply, in order."""
        self.driver = RealtimeDriver(
            engine,
            self._on_snapshot,
            speed=speed,
            paused=paused,
            publish_hz=publish_hz,
            step_seconds=step_seconds,
            between_slices=storage.relieve if storage is not None else None,
        )
        self._task: asyncio.Task[None] | None = None
        self._opened = False
        self._catalogue = _local_catalogue()
        self.driver.publish()

    # -- snapshots --------------------------------------------------------------------------

    def _on_snapshot(self, snap: Snapshot) -> None:
        self._latest = snap
        for callback in list(self._subscribers):
            callback(snap)

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
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    # -- commands ---------------------------------------------------------------------------

    async def send(self, command: Command) -> Reply:
        """Apply ``command`` now and publish a fresh snapshot showing its effect."""
        from stackyard.core.engine import CommandError

        try:
            result = self.engine.apply(command)
        except CommandError as exc:
            reply = Reply(False, error=str(exc))
        else:
            reply = Reply(True, result=str(result or ""))
        self.sent.append((command, reply))
        self.driver.publish()
        return reply

    async def query(self, node: str, sql: str) -> QueryResultLike:
        storage = self._storage
        if storage is None:
            raise SessionError("this run keeps no SQL data (it was started without storage)")
        from stackyard.core.storage import QueryError

        try:
            result = storage.query(node, sql)
            if inspect.isawaitable(result):
                result = await result
        except QueryError as exc:
            raise SessionError(str(exc)) from exc
        return result  # type: ignore[no-any-return]

    # -- driver -----------------------------------------------------------------------------

    def pause(self) -> None:
        self.driver.pause()

    def resume(self) -> None:
        self.driver.resume()

    def set_speed(self, speed: float) -> float:
        return self.driver.set_speed(speed)

    def step(self, seconds: float | None = None) -> None:
        self.driver.step(seconds)

    def advance(self, seconds: float) -> None:
        """Run ``seconds`` of simulated time at once and publish (for scripts and tests)."""
        self.engine.run_until(self.engine.now + seconds)
        self.driver.publish()

    async def start(self) -> None:
        """Open the storage (if any) and start driving in real time."""
        if self._storage is not None and not self._opened:
            self._opened = True
            await self._storage.open()
            self._storage.start()
        if self._task is None:
            self._task = asyncio.create_task(self.driver.run(), name="stackyard-driver")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._subscribers.clear()
        if self._storage is not None and self._opened:
            self._opened = False
            await self._storage.close()


def _local_catalogue() -> tuple[ActionInfo, ...]:
    """Fault kinds from core.faults and control commands from core.engine, as plain data."""
    from stackyard.core import config, engine
    from stackyard.core.faults import CATALOGUE

    choices: dict[str, dict[str, tuple[str, ...]]] = {
        "set_algorithm": {"name": tuple(config.ALGORITHMS)},
        "set_replication": {
            "mode": tuple(getattr(engine, "REPLICATION_MODES", REPLICATION_MODES))},
    }
    CONTROL_COMMANDS: dict[str, str] = engine.CONTROL_COMMANDS
    out = [ActionInfo(k.name, k.description, k.target, dict(k.params),
                      reversible=k.clear is not None) for k in CATALOGUE.values()]
    out += [ActionInfo(name, text, choices=choices.get(name, {}), fault=False)
            for name, text in CONTROL_COMMANDS.items()]
    return tuple(out)
