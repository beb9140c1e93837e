"""``stackyard attach``: a :class:`~stackyard.core.session.Session` fed from a broker.

:class:`RemoteSession` implements the same Protocol as the local session, so the unchanged app
runs on it: snapshots come from the retained ``snapshot`` topic (and, on attaching, the recent
ones from ``history``), the catalogue and the driver's status from theirs, and commands and SQL
queries go out on ``cmd`` with an id the ``reply`` topic answers. The link's state and whether
the server accepts commands show in :attr:`status` (``DriverStatus.link`` and ``.control``).

The link reconnects with back-off (aiomqtt's reusable client); nothing is queued while it is
down — a command sent then is refused at once — and a jump in ``Snapshot.seq`` is a gap: the
viewer carries on from the newest full snapshot (the retained one, after a reconnect) and says so
in its event log.

For a recording the session also keeps what defines the run: the scenario and seed (the
retained ``scenario`` topic, :attr:`RemoteSession.run_info`) and, with
``RemoteOptions.command_log``, the run's command log (:attr:`RemoteSession.log`) — from the
history on attaching, then each command as the run applies it, fetched again from the history
after a reconnect or a missed one — and its own commands with their replies (``sent``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt
from msgspec.structs import replace

from stackyard.core.mqtt.config import BrokerConfig, ConnectError, NoRunError
from stackyard.core.mqtt.link import Backoff, connect_error, make_client, raise_if_cancelled
from stackyard.core.mqtt.topics import (
    QOS,
    Applied,
    History,
    RunInfo,
    ServerStatus,
    Topics,
    WireSnapshot,
)
from stackyard.core.protocol import (
    ActionInfo,
    Command,
    DriverStatus,
    Event,
    ProtocolError,
    QueryResult,
    Reply,
    RunSummary,
    Snapshot,
    decode,
    encode,
)
from stackyard.core.session import SessionError, Subscriber, Subscribers

__all__ = ["CommandLog", "RemoteOptions", "RemoteSession", "find_runs"]

log = logging.getLogger(__name__)

_WAITING = DriverStatus(paused=True, speed=1.0, achieved=0.0, behind=False)


@dataclass(frozen=True, kw_only=True)
class RemoteOptions:
    """How long a viewer waits, and how much it holds."""

    reply_timeout: float = 5.0
    """Seconds to wait for the reply to a command."""
    query_timeout: float = 8.0
    """Seconds to wait for a SQL query's reply (the server stops a query after 2 s)."""
    history_wait: float = 1.5
    """Seconds ``open`` waits for the run's recent history (asked for once the first snapshot
    is in)."""
    max_pending: int = 32
    """Commands awaiting a reply at once; more are refused without being sent."""
    max_incoming: int = 1_000
    """Messages queued before they are read; past it they are dropped (a gap, healed by the
    next snapshot)."""
    command_log: bool = False
    """Follow the run's command log (for a recording): the ``commands`` topic, and the history
    again after a reconnect or a missed command."""
    max_log: int = 10_000
    """Commands of the log kept at most (the newest)."""
    max_sent: int = 10_000
    """This viewer's own commands kept at most, with their replies (the newest)."""


class CommandLog:
    """The run's command log as a viewer learns it, by place in the log (``Applied.n``): from
    a history, and command by command as the run applies them. Holds at most ``bound`` (the
    newest)."""

    def __init__(self, bound: int = 10_000) -> None:
        self.bound = bound
        self.entries: dict[int, Applied] = {}
        self.total = 0
        """The log's length as far as known (the highest ``n`` seen + 1, or a history's
        count)."""
        self.added: deque[Applied] = deque(maxlen=bound)
        """Commands added since a recording last took them (:meth:`take`)."""

    def add(self, applied: Applied) -> bool:
        """Add one command; True if it shows that some before it were missed."""
        if applied.n < 0 or applied.n in self.entries:
            return False
        hole = applied.n > self.total
        self.entries[applied.n] = applied
        self.added.append(applied)
        self.total = max(self.total, applied.n + 1)
        while len(self.entries) > self.bound:
            del self.entries[min(self.entries)]
        return hole

    def merge(self, history: History) -> None:
        for applied in history.commands:
            self.add(applied)
        self.total = max(self.total, history.commands_total)

    def take(self) -> list[Applied]:
        """The commands added since the last call, in the order they came."""
        out = list(self.added)
        self.added.clear()
        return out


class RemoteSession:
    """A session on the run ``run_id`` served on ``broker``; ``viewer`` is the name the server
    logs this viewer's commands under."""

    def __init__(self, broker: BrokerConfig, run_id: str, *, viewer: str = "viewer",
                 options: RemoteOptions | None = None) -> None:
        self.broker = broker
        self.run_id = run_id
        self.viewer = viewer
        self.options = options or RemoteOptions()
        self.topics = Topics(run_id)
        self.server: ServerStatus | None = None
        """The server's last ``status`` (online with its birth, or offline)."""
        self.gaps = 0
        """Times snapshots were missed (a jump in ``seq``)."""
        self.missed = 0
        """Snapshots missed in all."""
        self.bad_payloads = 0
        """Messages that were not valid records (ignored)."""
        self.run_info: RunInfo | None = None
        """The run's scenario and seed (the retained ``scenario`` topic; None until read)."""
        self.log = CommandLog(self.options.max_log)
        """The run's command log (followed with ``RemoteOptions.command_log``)."""
        self.sent: deque[tuple[Command, Reply]] = deque(maxlen=self.options.max_sent)
        """The commands and SQL queries sent through this session, with their replies."""
        self.sent_total = 0
        """Commands sent in all (``sent`` keeps the newest)."""
        self.link = "connecting"
        self._client = make_client(broker, identifier=f"stackyard-attach-{uuid.uuid4().hex[:12]}",
                                   max_incoming=self.options.max_incoming)
        self._connected: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._ready = asyncio.Event()
        self._have_status = asyncio.Event()
        self._got_history = asyncio.Event()
        self._catalogue: tuple[ActionInfo, ...] = ()
        self._driver: DriverStatus | None = None
        self._received: Snapshot | None = None
        """The newest snapshot received (delivered once live)."""
        self._latest: Snapshot | None = None
        self._history: tuple[Snapshot, ...] = ()
        self._last_seq: int | None = None
        self._backwards = 0
        self._live = False
        self._subscribers = Subscribers()
        self._when_live: list[Callable[[Snapshot | None], None]] = []
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self._bad_logged_at = 0.0
        self._refetch: asyncio.Task[None] | None = None
        self._refetch_again = False
        self._history_seq = -1
        """``seq`` of the newest snapshot in the last history received."""

    # -- the Session protocol ---------------------------------------------------------------

    @property
    def latest(self) -> Snapshot | None:
        return self._latest

    @property
    def status(self) -> DriverStatus:
        driver = self._driver or _WAITING
        server = self.server
        online = server is not None and server.state == "online"
        link = self.link
        if server is not None and not online and (link == "connected"
                                                   or server.reason == "shut down"):
            # A server that shut down says more than the lost link (its broker may be gone too);
            # a last will published as the broker went down does not.
            link = "server offline"
        stale = link != "connected"
        return replace(driver, link=link, control=online and server is not None
                       and server.control, achieved=0.0 if stale else driver.achieved)

    @property
    def catalogue(self) -> tuple[ActionInfo, ...]:
        return self._catalogue

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        return self._subscribers.add(callback)

    async def send(self, command: Command) -> Reply:
        """Publish ``command`` on ``cmd`` and wait for the reply with its id. Never raises: a
        link that is down, a server that does not answer, a refusal — each is a Reply."""
        return self._sent(command, await self._request(command, self.options.reply_timeout))

    async def query(self, node: str, sql: str) -> QueryResult:
        command = Command("query", node, {"sql": sql})
        reply = self._sent(command, await self._request(command, self.options.query_timeout))
        if reply.ok and reply.query is not None:
            return reply.query
        raise SessionError(reply.error or "the server sent no result")

    async def summary(self) -> RunSummary:
        raise SessionError("a served run's summary is not published over MQTT; 'stackyard run' "
                           "or a local 'stackyard learn' prints one")

    async def start(self) -> None:
        """Open (if not yet) and go live: subscribers get the history, then every snapshot."""
        if not self._ready.is_set():
            await self.open()
        if self._live:
            return
        self._live = True
        newest = self._received
        for snap in self._history:
            if newest is None or snap.seq < newest.seq:
                self._deliver(snap)
        self._history = ()
        if newest is not None:
            self._deliver(newest)
        for callback in list(self._when_live):
            callback(self._latest)

    def when_live(self, callback: Callable[[Snapshot | None], None]) -> None:
        """Call ``callback`` with the newest snapshot once :meth:`start` has delivered the
        history and it: the snapshots delivered after it are live."""
        self._when_live.append(callback)

    def _sent(self, command: Command, reply: Reply) -> Reply:
        self.sent.append((replace(command, id=reply.id, origin=f"remote:{self.viewer}"), reply))
        self.sent_total += 1
        return reply

    async def close(self) -> None:
        if self.options.command_log and self._live and self._connected is not None:
            # A last look at the log for a recording (commands whose messages were lost),
            # bounded by history_wait; the app closes its session before the recording.
            await self.sync_log()
        refetch, self._refetch = self._refetch, None
        if refetch is not None:
            refetch.cancel()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # Bounded: see raise_if_cancelled for how a cancellation can go astray.
            await asyncio.wait((task,), timeout=10.0)
        for future in self._pending.values():
            future.cancel()
        self._subscribers.clear()

    async def __aenter__(self) -> RemoteSession:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- connecting -------------------------------------------------------------------------

    async def open(self, *, timeout: float = 5.0) -> None:
        """Connect and wait for the run's status, catalogue and a snapshot (and briefly for its
        history). ConnectError if the broker cannot be reached or refuses us, NoRunError if it
        holds no such run."""
        if self._task is None:
            self._first = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._maintain(self._first),
                                             name="stackyard-attach")
        assert self._first is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._first), timeout)
        except (ConnectError, TimeoutError) as exc:
            await self.close()
            if isinstance(exc, TimeoutError):
                raise ConnectError(f"cannot connect to {self.broker.url}: no answer within "
                                   f"{timeout:g} s") from None
            raise
        try:
            # A run's status is retained: it arrives right after the subscription, or never.
            await asyncio.wait_for(self._have_status.wait(), min(timeout, 2.0))
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            await self.close()
            missing = [name for name, have in (("status", self.server is not None),
                                               ("catalogue", bool(self._catalogue)),
                                               ("snapshot", self._received is not None))
                       if not have]
            raise NoRunError(f"no run {self.run_id!r} on {self.broker.url} (nothing retained on "
                             f"{self.topics.base}/{{{','.join(missing)}}}); start one with "
                             f"'stackyard serve'") from None
        await self._fetch_history()

    async def _fetch_history(self) -> None:
        """Ask for the history now (the retained one may be a few seconds old) and wait a
        little for it; without it the viewer starts from the snapshot alone."""
        wait = self.options.history_wait
        deadline = time.monotonic() + wait
        reply = await self._request(Command("history"), wait)
        if not (reply.ok and reply.result.isdigit()):
            log.info("no history from the server: %s", reply.error or reply.result)
            return
        newest = int(reply.result)
        while not (self._history and self._history[-1].seq >= newest):
            self._got_history.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._got_history.wait(), left)

    async def _maintain(self, first: asyncio.Future[None]) -> None:
        backoff = Backoff()
        topics = self.topics
        while True:
            raise_if_cancelled()
            try:
                async with self._client as client:
                    raise_if_cancelled()
                    wanted = [(topics.status, "status"), (topics.catalogue, "catalogue"),
                              (topics.scenario, "scenario"), (topics.driver, "driver"),
                              (topics.reply, "reply")]
                    if self.options.command_log:
                        wanted.append((topics.commands, "commands"))
                    for topic, kind in [*wanted, (topics.snapshot, "snapshot")]:
                        await client.subscribe(topic, qos=QOS[kind])
                    history = not self._live
                    if history:
                        await client.subscribe(topics.history, qos=QOS["history"])
                    self._connected = client
                    self.link = "connected"
                    backoff.reset()
                    if not first.done():
                        first.set_result(None)
                    else:
                        log.info("reconnected to %s", self.broker.url)
                        if self._live:
                            self._fetch_log()  # commands applied while the link was down
                    async for message in client.messages:
                        raise_if_cancelled()
                        self._dispatch(str(message.topic), message.payload)
                        if history and self._live:
                            history = False  # only for attaching: it is large
                            await client.unsubscribe(topics.history)
            except aiomqtt.MqttError as exc:
                if not first.done():
                    first.set_exception(connect_error(self.broker, exc))
                    return
                if self.link != "reconnecting":
                    log.warning("lost the broker %s (%s); reconnecting", self.broker.url,
                                " ".join(str(exc).split()))
            finally:
                self._connected = None
                self.link = "reconnecting"
            await asyncio.sleep(backoff.delay())

    # -- receiving --------------------------------------------------------------------------

    def _dispatch(self, topic: str, payload: object) -> None:
        data = payload if isinstance(payload, bytes | bytearray) else \
            str(payload if payload is not None else "").encode()
        topics = self.topics
        try:
            if topic == topics.snapshot:
                if data:
                    self._on_snapshot(decode(WireSnapshot, data))
            elif topic == topics.reply:
                self._on_reply(decode(Reply, data))
            elif topic == topics.driver:
                self._driver = decode(DriverStatus, data)
            elif topic == topics.status:
                self._on_status(decode(ServerStatus, data))
            elif topic == topics.catalogue:
                self._catalogue = decode(tuple[ActionInfo, ...], data)
            elif topic == topics.history:
                if data:
                    history = decode(History, data)
                    if not self._live:
                        self._history = history.snapshots
                    if history.snapshots:
                        self._history_seq = history.snapshots[-1].seq
                    self.log.merge(history)
                self._got_history.set()
            elif topic == topics.scenario:
                if data:
                    self.run_info = decode(RunInfo, data)
            elif topic == topics.commands and self.log.add(decode(Applied, data)) and \
                    self._live:
                self._fetch_log()
        except ProtocolError as exc:
            self.bad_payloads += 1
            now = time.monotonic()
            if now > self._bad_logged_at + 1.0:
                self._bad_logged_at = now
                log.warning("ignored a bad payload on %s: %s", topic, exc)
            return
        if not self._ready.is_set() and self.server is not None and self._catalogue and \
                self._received is not None:
            self._ready.set()

    def _on_status(self, status: ServerStatus) -> None:
        previous = self.server
        if previous is not None and previous.started != status.started and \
                status.state == "online":
            self._last_seq = None  # a new server process: its seq starts again
        self.server = status
        self._have_status.set()

    def _on_snapshot(self, snap: Snapshot) -> None:
        last = self._last_seq
        if last is not None:
            if snap.seq <= last:
                # The retained copy of one already seen, or a stale one; but a stream that keeps
                # going backwards has started again (or a stray seq got ahead): follow it.
                self._backwards += 1
                if self._backwards < 3:
                    return
                last, self._backwards = None, 0
            else:
                self._backwards = 0
        if last is not None and snap.seq > last + 1:
            missed = snap.seq - last - 1
            self.gaps += 1
            self.missed += missed
            if self._live:
                snap = replace(snap, events=(Event(
                    time=snap.time, severity="warning", component="link", kind="gap",
                    message=f"missed {missed} snapshot{'s' if missed > 1 else ''} "
                            f"({last + 1}-{snap.seq - 1})",
                    why="the link was down or slow; carried on from the newest snapshot "
                        "(events of the missed ones may not be shown)"),
                    *snap.events))
        self._last_seq = snap.seq
        self._received = snap
        if self._live:
            self._deliver(snap)

    def _fetch_log(self) -> None:
        """Fetch the history again, in the background, for the commands it holds (one fetch at
        a time; one more if asked meanwhile)."""
        if not self.options.command_log:
            return
        if self._refetch is not None and not self._refetch.done():
            self._refetch_again = True
            return
        self._refetch = asyncio.create_task(self._refetch_log(), name="stackyard-attach-log")

    async def _refetch_log(self) -> None:
        topics = self.topics
        while True:
            self._refetch_again = False
            client = self._connected
            if client is None:
                return
            try:
                await client.subscribe(topics.history, qos=QOS["history"])
                wait = self.options.history_wait * 2
                reply = await self._request(Command("history"), wait)
                if reply.ok and reply.result.isdigit():
                    deadline = time.monotonic() + wait
                    while self._history_seq < int(reply.result) and \
                            time.monotonic() < deadline:
                        self._got_history.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._got_history.wait(),
                                                   max(0.0, deadline - time.monotonic()))
                await client.unsubscribe(topics.history)
            except aiomqtt.MqttError:
                return  # the next connection fetches it again
            if not self._refetch_again:
                return

    async def sync_log(self, timeout: float | None = None) -> None:
        """Fetch the history now for the command log (e.g. before a recording closes, so it
        holds the commands whose messages were lost) and wait for it, at most ``timeout``."""
        if not self.options.command_log:
            return
        self._fetch_log()
        refetch = self._refetch
        if refetch is not None:
            await asyncio.wait((refetch,), timeout=timeout or self.options.history_wait * 2)

    def _deliver(self, snap: Snapshot) -> None:
        self._latest = snap
        self._subscribers.publish(snap)

    def _on_reply(self, reply: Reply) -> None:
        future = self._pending.get(reply.id)
        if future is not None and not future.done():
            future.set_result(reply)

    # -- sending ----------------------------------------------------------------------------

    async def _request(self, command: Command, timeout: float) -> Reply:
        cid = command.id or uuid.uuid4().hex[:16]
        command = replace(command, id=cid, origin=f"remote:{self.viewer}")
        client = self._connected
        if client is None:
            return Reply(ok=False, id=cid, kind=command.kind,
                         error="not connected to the broker (reconnecting); nothing was sent")
        if len(self._pending) >= self.options.max_pending:
            return Reply(ok=False, id=cid, kind=command.kind,
                         error="too many commands awaiting a reply; nothing was sent")
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[cid] = future
        try:
            await client.publish(self.topics.cmd, encode(command), qos=QOS["cmd"],
                                 timeout=timeout)
            return await asyncio.wait_for(future, timeout)
        except aiomqtt.MqttError:
            return Reply(ok=False, id=cid, kind=command.kind,
                         error="the link to the broker dropped; the command was not sent")
        except TimeoutError:
            return Reply(ok=False, id=cid, kind=command.kind,
                         error=f"no reply from the server within {timeout:g} s (it may be "
                               "offline); the command may or may not have applied")
        finally:
            self._pending.pop(cid, None)


async def find_runs(broker: BrokerConfig, *, timeout: float = 5.0,
                    quiet: float = 0.5) -> list[ServerStatus]:
    """Every run whose ``status`` the broker retains, online or not: read until ``quiet``
    seconds pass with nothing new (retained messages arrive together, right after the
    subscription). ConnectError if the broker cannot be reached or refuses us."""
    client = make_client(broker, identifier=f"stackyard-find-{uuid.uuid4().hex[:12]}")
    found: dict[str, ServerStatus] = {}
    try:
        async with asyncio.timeout(timeout + quiet + 1.0):
            async with client:
                await client.subscribe(Topics.every_status(), qos=QOS["status"])
                messages = client.messages
                while True:
                    try:
                        message = await asyncio.wait_for(anext(messages), quiet)
                    except TimeoutError:
                        break
                    run = Topics.run_of(str(message.topic))
                    payload = message.payload
                    if not run or not isinstance(payload, bytes | bytearray) or not payload:
                        continue
                    try:
                        found[run] = decode(ServerStatus, payload)
                    except ProtocolError:
                        continue
    except aiomqtt.MqttError as exc:
        raise connect_error(broker, exc) from exc
    except TimeoutError:
        raise ConnectError(f"cannot connect to {broker.url}: no answer within {timeout:g} s") \
            from None
    return [found[k] for k in sorted(found)]
