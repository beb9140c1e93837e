"""``stackyard serve``: one run, published on MQTT for many viewers, commanded through it.

:class:`MqttServer` sits beside a :class:`~stackyard.core.session.LocalSession` that drives the
run in real time. It subscribes to the session's snapshots like any viewer, and publishes each
one (retained), the events, the driver's status, per-node metrics, a short history and the
catalogue; commands arriving on ``cmd`` go through ``session.apply`` — the same path a key in the
local app takes — so the session's command log (``session.sent``) and the engine's
(``engine.commands``) hold every remote command with its origin, for a recorder to keep. The
scenario and seed (retained) and each command the engine applies (the whole log in the history)
are published too, so a viewer attached at any time can record a file that re-simulates the run.

The engine never waits for the broker: snapshots and the driver's status are "latest wins"
slots, events and replies bounded queues, published by one task while the link is up. Commands
are decoded with the protocol's size limit, rate-limited, and answered one by one with a yield to
the event loop between them, so nothing on the command topic can stop or slow the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiomqtt
import msgspec
from msgspec.structs import replace

from stackyard.core.catalogue import CATALOGUE
from stackyard.core.mqtt.config import BrokerConfig, ConnectError
from stackyard.core.mqtt.history import Bounds, Keeper
from stackyard.core.mqtt.link import Backoff, connect_error, make_client, raise_if_cancelled
from stackyard.core.mqtt.topics import (
    QOS,
    Applied,
    RunInfo,
    ServerStatus,
    Topics,
    WireSnapshot,
    metric_text,
    viewer_name,
)
from stackyard.core.protocol import (
    MAX_COMMAND_BYTES,
    MAX_ERROR_CHARS,
    Command,
    DriverStatus,
    Event,
    ProtocolError,
    Reply,
    Snapshot,
    decode,
    encode,
    finite,
    show,
)
from stackyard.core.scenario import scenario_to_dict
from stackyard.core.session import SessionError

if TYPE_CHECKING:
    from stackyard.core.session import LocalSession

__all__ = ["MqttServer", "ServerOptions"]

log = logging.getLogger(__name__)

MAX_ID = 64
"""A command's ``id`` longer than this is refused (it is echoed in the reply)."""


@dataclass(frozen=True, kw_only=True)
class ServerOptions:
    """What the server publishes and how much it accepts. Every queue and rate is bounded."""

    run_id: str
    allow_control: bool = False
    """Accept faults, controls and driver commands (pause, speed, step) from viewers. Without
    it the run is read-only: every command but a SQL query is refused, saying so."""
    version: str = ""
    metrics_interval: float = 1.0
    """Wall seconds between publications of the per-node metric topics (changed values only)."""
    history_interval: float = 5.0
    """Wall seconds between publications of the retained history while nobody asks for it."""
    history_gap: float = 0.5
    """Wall seconds at least between two publications of the history: requests in between are
    answered together by the next one."""
    history_keep: int = 120
    """Snapshots the history holds (at least a simulated second apart)."""
    history_bytes: int = 2_000_000
    """The history's size bound in bytes (the oldest snapshots go first)."""
    history_events: int = 200
    """Events one history snapshot carries at most (those of the snapshots left out)."""
    command_log: int = 5_000
    """Commands of the run's log the history holds (the newest): a viewer that attaches after
    more than this many cannot record a file that re-simulates the run."""
    scenario_text: str = ""
    """The scenario file's TOML, published on the ``scenario`` topic with the seed."""
    command_rate: float = 50.0
    """Commands applied per second, sustained (more are refused, and answered)."""
    command_burst: int = 100
    query_rate: float = 5.0
    """SQL queries started per second, sustained."""
    query_burst: int = 10
    max_queries: int = 4
    """SQL queries running or waiting at once. They run one at a time, each holding the
    storage's lock, and the next waits as long as the last took: queries take at most half the
    storage's time whatever the viewers send."""
    max_history_waiting: int = 256
    """History requests waiting for the next publication; more are refused."""
    max_step: float = 60.0
    """The most simulated seconds one remote ``step`` may advance (a step runs at once, holding
    the event loop: a long one would freeze every viewer)."""
    max_replies: int = 2_000
    """Replies waiting for the link; past it, taking commands waits (the broker holds them)."""
    max_snapshots: int = 16
    """Snapshots waiting for the link; past it they are merged (see ``_queue_snapshot``)."""
    max_events: int = 1_000
    """Events waiting for the link; past it the oldest are dropped (and counted)."""
    max_incoming: int = 10_000
    """Messages the client queues before reading them; past it they are dropped (counted)."""
    log_per_second: int = 20
    """Refusals logged one by one per second; the rest are summed up in one line."""


class _Bucket:
    """A token bucket: ``rate`` a second, at most ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class _IdOnly(msgspec.Struct):
    id: str = ""


_ID_ONLY = msgspec.json.Decoder(_IdOnly)


_ID_NEAR_START = re.compile(rb'"id"\s*:\s*"([A-Za-z0-9._:-]{1,64})"')


def _salvage_id(payload: bytes) -> str:
    """The ``id`` of a command that failed to decode, if one can be read (for the reply); an
    oversized payload is not parsed: its id is looked for near its start only."""
    if len(payload) > MAX_COMMAND_BYTES:
        found_near = _ID_NEAR_START.search(payload[:1024])
        return found_near.group(1).decode() if found_near else ""
    try:
        found = _ID_ONLY.decode(payload).id
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ValueError):
        return ""
    return found if len(found) <= MAX_ID else ""


class MqttServer:
    """Publishes ``session``'s run under ``stackyard/<run_id>/`` and takes commands for it.

    ``await start()`` connects (raising ConnectError if the first connection fails), then keeps
    the link up, reconnecting with back-off, until ``await close()`` (which publishes
    ``offline``). The session is driven by its owner: start it before or after, close it after.
    """

    def __init__(self, session: LocalSession, broker: BrokerConfig, *,
                 options: ServerOptions) -> None:
        self.session = session
        self.broker = broker
        self.options = options
        self.topics = Topics(options.run_id)
        self.started = time.time()
        self.birth = 0
        """Connections made so far; the ``status`` topic's birth number."""
        self.link = "connecting"
        self.counts: dict[str, int] = {"snapshots": 0, "coalesced": 0, "applied": 0,
                                       "refused": 0,
                                       "queries": 0, "events_dropped": 0, "publish_errors": 0}
        """What the server has done, for logs, tests and benchmarks."""
        engine = session.engine
        self._identity = dict(run=options.run_id, version=options.version,
                              scenario=engine.scenario.run.name, seed=engine.seed,
                              started=self.started, control=options.allow_control,
                              hz=1.0 / session.driver.period)
        will = aiomqtt.Will(self.topics.status, encode(self._status("offline", birth=0,
                                                                     reason="lost")),
                            qos=QOS["status"], retain=True)
        self._client = make_client(broker, identifier=f"stackyard-serve-{options.run_id}-"
                                   f"{os.getpid()}", will=will,
                                   max_incoming=options.max_incoming)
        self._connected: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        # What waits for the link: latest-wins slots and bounded queues.
        self._snapshots: deque[tuple[Snapshot, bytes]] = deque()
        """Snapshots waiting for the link, with their encoding."""
        self._driver: DriverStatus | None = None
        self._events: deque[Event] = deque(maxlen=options.max_events)
        self._replies: deque[Reply] = deque()
        self._applied: deque[Applied] = deque(maxlen=options.command_log)
        """Commands the engine applied, waiting for the link."""
        self._history = Keeper(Bounds(keep=options.history_keep, size=options.history_bytes,
                                      events=options.history_events,
                                      commands=options.command_log))
        self._history_at = 0.0
        self._history_waiting: list[Command] = []
        """History requests to answer once the history has been published."""
        self._timer: asyncio.TimerHandle | None = None
        self._metrics: dict[str, str] = {}
        self._metrics_at = 0.0
        self._commands = _Bucket(options.command_rate, options.command_burst)
        self._query_bucket = _Bucket(options.query_rate, options.query_burst)
        self._queries: set[asyncio.Task[None]] = set()
        self._query_rest_until = 0.0
        self._query_lock = asyncio.Lock()
        self._refusals_logged = 0
        self._refusals_hidden = 0
        self._log_second = 0
        self._unsubscribe = session.subscribe(self._on_snapshot)
        latest = session.latest
        if latest is not None:
            self._on_snapshot(latest)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, *, timeout: float = 10.0) -> None:
        """Connect and start publishing; ConnectError if the broker cannot be reached or
        refuses us (then nothing keeps running)."""
        if self._task is not None:
            return
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._maintain(first), name="stackyard-serve")
        try:
            await asyncio.wait_for(asyncio.shield(first), timeout)
        except (ConnectError, TimeoutError) as exc:
            await self._stop_task()
            if isinstance(exc, TimeoutError):
                raise ConnectError(f"cannot connect to {self.broker.url}: no answer within "
                                   f"{timeout:g} s") from None
            raise

    async def close(self) -> None:
        """Publish ``offline`` (retained), disconnect and stop."""
        client = self._connected
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._publish(client, self.topics.status,
                                    encode(self._status("offline", reason="shut down")),
                                    "status", retain=True, timeout=2.0)
        self._unsubscribe()
        if self._timer is not None:
            self._timer.cancel()
        await self._stop_task()
        for task in list(self._queries):
            task.cancel()

    async def _stop_task(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # Bounded: see raise_if_cancelled for how a cancellation can go astray.
            await asyncio.wait((task,), timeout=10.0)

    def _status(self, state: str, *, birth: int | None = None, reason: str = "") -> ServerStatus:
        return ServerStatus(state=state, birth=self.birth if birth is None else birth,  # type: ignore[arg-type]
                            reason=reason, **self._identity)  # type: ignore[arg-type]

    async def _maintain(self, first: asyncio.Future[None]) -> None:
        """Keep the link up: aiomqtt's reusable client, entered again after every loss."""
        backoff = Backoff()
        while True:
            raise_if_cancelled()
            try:
                async with self._client as client:
                    self.birth += 1
                    self._connected = client
                    backoff.reset()
                    await self._online(client)
                    if not first.done():
                        first.set_result(None)
                    self.link = "connected"
                    log.info("connected to %s as run %r (birth %d)", self.broker.url,
                             self.options.run_id, self.birth)
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                self._connected = None
                if not first.done():
                    first.set_exception(connect_error(self.broker, exc))
                    return
                if self.link != "reconnecting":
                    log.warning("lost the broker %s (%s); reconnecting", self.broker.url,
                                " ".join(str(exc).split()))
                self.link = "reconnecting"
            finally:
                self._connected = None
            await asyncio.sleep(backoff.delay())

    async def _online(self, client: aiomqtt.Client) -> None:
        """The birth: status, catalogue and everything retained, then the command topic."""
        await self._publish(client, self.topics.status, encode(self._status("online")),
                            "status", retain=True)
        await self._publish(client, self.topics.catalogue, encode(self.session.catalogue),
                            "catalogue", retain=True)
        engine = self.session.engine
        info = RunInfo(run=self.options.run_id, scenario=engine.scenario.run.name,
                       seed=engine.seed, started=self.started, version=self.options.version,
                       toml=self.options.scenario_text, spec=scenario_to_dict(engine.scenario))
        await self._publish(client, self.topics.scenario, encode(info), "scenario", retain=True)
        self._metrics.clear()  # the broker may have lost them: publish every value again
        self._history.dirty = bool(self._history.snapshots)
        self._history_at = 0.0
        self._wake.set()
        await client.subscribe(self.topics.cmd, qos=QOS["cmd"])

    async def _serve(self, client: aiomqtt.Client) -> None:
        receiver = asyncio.create_task(self._receive(client), name="stackyard-serve-cmd")
        sender = asyncio.create_task(self._send(client), name="stackyard-serve-pub")
        try:
            done, _ = await asyncio.wait((receiver, sender),
                                         return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in (receiver, sender):
                task.cancel()
            await asyncio.wait((receiver, sender), timeout=5.0)

    # -- publishing -------------------------------------------------------------------------

    def _on_snapshot(self, snap: Snapshot) -> None:
        """From the session, on every snapshot: fill the slots and queues, wake the sender."""
        now = self.session.engine.now
        if finite(now) == snap.time:  # just taken: stamp it with the exact time
            snap = WireSnapshot(**msgspec.structs.asdict(snap), clock=now)
        payload = encode(snap)
        self._queue_snapshot(snap, payload)
        self._driver = replace(self.session.status, control=self.options.allow_control)
        overflow = len(self._events) + len(snap.events) - self.options.max_events
        if overflow > 0:
            self.counts["events_dropped"] += overflow
        self._events.extend(snap.events)
        self._applied.extend(self._history.log(self.session.engine.commands, snap.seq))
        self._history.keep(snap, payload)
        self._wake.set()

    def _queue_snapshot(self, snap: Snapshot, payload: bytes) -> None:
        """Queue ``snap`` for publication. Past ``max_snapshots`` waiting (a slow or lost link)
        the newest waiting one is replaced by ``snap`` carrying its events too: viewers see a
        jump in ``seq``, but no event goes missing (up to ``history_events`` of them)."""
        queue = self._snapshots
        if len(queue) >= self.options.max_snapshots:
            waiting, _ = queue.pop()
            self.counts["coalesced"] += 1
            events = (*waiting.events, *snap.events)[-self.options.history_events:]
            snap = replace(snap, events=events)
            payload = encode(snap)
        queue.append((snap, payload))

    def _reply(self, reply: Reply) -> None:
        self._replies.append(reply)
        if len(self._replies) >= self.options.max_replies:
            self._room.clear()
        self._wake.set()

    async def _publish(self, client: aiomqtt.Client, topic: str, payload: bytes | str,
                       kind: str, *, retain: bool = False, timeout: float | None = None) -> None:
        await client.publish(topic, payload, qos=QOS[kind], retain=retain, timeout=timeout)

    async def _send(self, client: aiomqtt.Client) -> None:
        """Publish whatever waits, whenever woken; returns only by raising MqttError."""
        topics = self.topics
        while True:
            raise_if_cancelled()
            await self._wake.wait()
            self._wake.clear()
            while self._replies:
                await self._publish_many(client, topics.reply, "reply", self._replies)
                if len(self._replies) < self.options.max_replies // 2:
                    self._room.set()
            self._room.set()
            while self._events:
                await self._publish_many(client, topics.events, "events", self._events)
            while self._applied:  # before the snapshots that show them
                await self._publish_many(client, topics.commands, "commands", self._applied)
            while self._snapshots:
                _, payload = self._snapshots[0]
                await self._publish(client, topics.snapshot, payload, "snapshot", retain=True)
                self._snapshots.popleft()
                self.counts["snapshots"] += 1
            driver, self._driver = self._driver, None
            if driver is not None:
                await self._publish(client, topics.driver, encode(driver), "driver",
                                    retain=True)
            now = time.monotonic()
            if now >= self._metrics_at + self.options.metrics_interval:
                self._metrics_at = now
                await self._publish_metrics(client)
            await self._publish_history(client, now)

    async def _publish_history(self, client: aiomqtt.Client, now: float) -> None:
        """The retained history: every ``history_interval`` when it changed, and soon (at most
        every ``history_gap``) when a viewer asked; the askers are answered after it."""
        opts = self.options
        asked = bool(self._history_waiting)
        due = self._history.dirty and now >= self._history_at + opts.history_interval
        if asked and now < self._history_at + opts.history_gap:
            self._wake_later(self._history_at + opts.history_gap - now)
            return
        if not (asked or due):
            return
        self._history_at = now
        self._history.dirty = False
        await self._publish(client, self.topics.history, self._history.payload(), "history",
                            retain=True)
        last = self._history.last_seq
        waiting, self._history_waiting = self._history_waiting, []
        for cmd in waiting:
            await self._publish(client, self.topics.reply, encode(Reply(
                ok=True, id=cmd.id, kind="history", result=str(last))), "reply")

    def _wake_later(self, delay: float) -> None:
        if self._timer is None or self._timer.cancelled():
            def wake() -> None:
                self._timer = None
                self._wake.set()

            self._timer = asyncio.get_running_loop().call_later(delay, wake)

    async def _publish_many(self, client: aiomqtt.Client, topic: str, kind: str,
                            queue: deque[Reply] | deque[Event] | deque[Applied],
                            batch: int = 64) -> None:
        """Publish up to ``batch`` records from ``queue`` without waiting for each one's
        acknowledgement before sending the next."""
        records = [queue.popleft() for _ in range(min(batch, len(queue)))]
        await asyncio.gather(*(self._publish(client, topic, encode(r), kind) for r in records))

    async def _publish_metrics(self, client: aiomqtt.Client) -> None:
        """One retained plain number per node and metric (and the KPIs under ``kpis``), only
        those that changed; a node that is gone has its topics cleared."""
        snap = self.session.latest
        if snap is None:
            return
        values: dict[str, str] = {}
        for name, value in snap.kpis.numbers().items():
            values[self.topics.metric("kpis", name)] = metric_text(value)
        seen: set[str] = set()
        for node in snap.nodes:
            # An id two kinds share (a CDN edge and the link to it): the later one is id.kind.
            level = node.id if node.id not in seen else f"{node.id}.{node.kind}"
            seen.add(node.id)
            for name, value in node.metrics().items():
                values[self.topics.metric(level, name)] = metric_text(value)
        known = self._metrics
        for topic in [t for t in known if t not in values]:
            del known[topic]
            await self._publish(client, topic, b"", "metrics", retain=True)
        for topic, text in values.items():
            if known.get(topic) != text:
                known[topic] = text
                await self._publish(client, topic, text, "metrics", retain=True)

    # -- commands ---------------------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            raise_if_cancelled()
            payload = message.payload
            data = payload if isinstance(payload, bytes | bytearray) else \
                str(payload if payload is not None else "").encode()
            reply = self.handle(bytes(data))
            if reply is not None:
                self._reply(reply)
            if not self._room.is_set():
                await self._room.wait()
            await asyncio.sleep(0)  # let the driver run between any two commands

    def handle(self, payload: bytes) -> Reply | None:
        """Decode and apply one command payload; the reply (None: a query, answered later)."""
        try:
            cmd: Command = decode(Command, payload)
        except ProtocolError as exc:
            return self._refuse(_salvage_id(payload), "", "anonymous", str(exc))
        viewer = viewer_name(cmd.origin)
        if len(cmd.id) > MAX_ID:
            return self._refuse("", cmd.kind, viewer,
                                f"command.id: expected at most {MAX_ID} characters, "
                                f"got {len(cmd.id)}")
        cmd = replace(cmd, origin=f"remote:{viewer}")
        if cmd.kind not in CATALOGUE and cmd.kind not in ("query", "history"):
            return self._refuse(cmd.id, cmd.kind, viewer,
                                f"command.kind: unknown command {show(cmd.kind)} (the catalogue "
                                f"topic lists them)")
        if cmd.kind == "query":
            return self._query(cmd, viewer)
        if cmd.kind == "history":
            return self._want_history(cmd, viewer)
        if not self.options.allow_control:
            return self._refuse(cmd.id, cmd.kind, viewer,
                                "control is off: this run is read-only for viewers (the server "
                                "was started without --allow-control)")
        if cmd.at is not None:
            return self._refuse(cmd.id, cmd.kind, viewer,
                                f"{cmd.kind}.at: remote commands apply now; expected no 'at'")
        if not self._commands.take():
            return self._refuse(cmd.id, cmd.kind, viewer,
                                f"too many commands: at most {self.options.command_rate:g} a "
                                "second; try again")
        action = CATALOGUE.get(cmd.kind)
        if action is not None and action.name == "step":
            seconds = cmd.params.get("seconds", 1.0)
            if isinstance(seconds, int | float) and not isinstance(seconds, bool) and \
                    seconds > self.options.max_step:
                return self._refuse(cmd.id, cmd.kind, viewer,
                                    f"step.seconds: a remote viewer may step at most "
                                    f"{self.options.max_step:g} s at a time, got {seconds:g}")
        reply = self.session.apply(cmd)
        if reply.ok:
            self.counts["applied"] += 1
            log.info("%s: %s %s -> %s", cmd.origin, cmd.kind, cmd.target or "-",
                     reply.result or "ok")
        else:
            self._log_refusal(viewer, cmd.kind, reply.error)
        return reply

    def _refuse(self, cid: str, kind: str, viewer: str, error: str) -> Reply:
        self._log_refusal(viewer, kind, error)
        return Reply(ok=False, id=cid, kind=kind, error=error[:MAX_ERROR_CHARS])

    def _log_refusal(self, viewer: str, kind: str, error: str) -> None:
        """Log a refusal; past ``log_per_second`` in a second, count them into one line."""
        self.counts["refused"] += 1
        second = int(time.monotonic())
        if second != self._log_second:
            if self._refusals_hidden:
                log.warning("... and %d more commands refused", self._refusals_hidden)
            self._log_second, self._refusals_logged, self._refusals_hidden = second, 0, 0
        if self._refusals_logged < self.options.log_per_second:
            self._refusals_logged += 1
            log.warning("remote:%s: %s refused: %s", viewer, kind or "command", error)
        else:
            self._refusals_hidden += 1

    def _want_history(self, cmd: Command, viewer: str) -> Reply | None:
        """Publish the history soon (allowed without control: it changes nothing); the reply,
        after it, carries the seq of its newest snapshot."""
        if len(self._history_waiting) >= self.options.max_history_waiting:
            return self._refuse(cmd.id, "history", viewer,
                                "too many history requests at once; try again in a moment")
        self._history_waiting.append(cmd)
        self._wake.set()
        return None

    def _query(self, cmd: Command, viewer: str) -> Reply | None:
        """Start a read-only SQL query (allowed without control: it changes nothing)."""
        sql = cmd.params.get("sql")
        if not isinstance(sql, str):
            return self._refuse(cmd.id, "query", viewer,
                                "query.params.sql: expected the SQL text as a string")
        if len(self._queries) >= self.options.max_queries or not self._query_bucket.take():
            return self._refuse(cmd.id, "query", viewer,
                                "too many queries at once; try again in a moment")
        task = asyncio.create_task(self._run_query(cmd, viewer, sql))
        self._queries.add(task)
        task.add_done_callback(self._queries.discard)
        return None

    async def _run_query(self, cmd: Command, viewer: str, sql: str) -> None:
        async with self._query_lock:
            rest = self._query_rest_until - time.monotonic()
            if rest > 0:
                await asyncio.sleep(rest)
            started = time.monotonic()
            try:
                result = await self.session.query(cmd.target, sql)
            except SessionError as exc:
                self._reply(self._refuse(cmd.id, "query", viewer, str(exc)))
                return
            finally:
                now = time.monotonic()
                self._query_rest_until = now + (now - started)
        self.counts["queries"] += 1
        log.info("remote:%s: query on %s -> %d rows", viewer, cmd.target, len(result.rows))
        self._reply(Reply(ok=True, id=cmd.id, kind="query", result=str(len(result.rows)),
                          query=result))
