"""Real brokers for the MQTT tests: mosquitto processes on free ports with their own config
files (CI installs mosquitto; a missing one fails these tests), and amqtt in-process."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiomqtt
import pytest

from stackyard.core.mqtt.broker import EmbeddedBroker, free_port
from stackyard.core.mqtt.config import BrokerConfig
from stackyard.core.mqtt.server import MqttServer, ServerOptions
from stackyard.core.run import open_run
from stackyard.core.session import LocalSession

SEED = 7


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None)
    if found is None:
        pytest.fail("mosquitto is not installed: apt-get install -y mosquitto (.ci/run does)")
    return found


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` on the event loop until it holds, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


class Mosquitto:
    """A mosquitto process on a free port of 127.0.0.1, from a config file of its own."""

    def __init__(self, folder: Path, *, users: dict[str, str] | None = None,
                 tls: tuple[Path, Path, Path] | None = None) -> None:
        """``tls``: (CA file, certificate chain, key) for a TLS listener."""
        self.folder = folder
        self.port = free_port()
        self.users = users or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = folder / "mosquitto.conf"
        # ``user``: started as root, mosquitto would drop to its own user, who cannot read the
        # test's files.
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "set_tcp_nodelay true",
                 "log_dest stderr", "log_type error", f"user {getpass.getuser()}"]
        if self.users:
            passwd = folder / "passwd"
            passwd.touch(mode=0o600)
            for user, password in self.users.items():
                subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd",
                                "-b", str(passwd), user, password], check=True,
                               capture_output=True, timeout=10)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if tls is not None:
            lines += [f"cafile {tls[0]}", f"certfile {tls[1]}", f"keyfile {tls[2]}"]
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def config(self) -> BrokerConfig:
        return BrokerConfig(host="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(lambda: port_open(self.port) or self.proc is None
                   or self.proc.poll() is not None, "mosquitto to listen")
        assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        wait_until(lambda: not port_open(self.port), "mosquitto to stop listening")


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def amqtt_broker() -> Iterator[BrokerConfig]:
    broker = EmbeddedBroker()
    yield broker.start()
    broker.stop()


@contextlib.asynccontextmanager
async def served(broker: BrokerConfig, *, allow_control: bool = True, scenario: str = "default",
                 storage: bool = True, speed: float = 1.0, run_id: str = "test",
                 paused: bool = False,
                 **options: object) -> AsyncIterator[tuple[LocalSession, MqttServer]]:
    """A run driven in real time (or ``paused``: the test steps it) and served on ``broker``
    as ``run_id``."""
    session = open_run(scenario, seed=SEED, storage=storage).session(speed=speed, paused=paused)
    server = MqttServer(session, broker, options=ServerOptions(
        run_id=run_id, allow_control=allow_control, version="test", **options))  # type: ignore[arg-type]
    await session.start()
    try:
        await server.start()
        yield session, server
    finally:
        await server.close()
        await session.close()


class Watcher:
    """A light subscriber: every message on ``topics`` as (topic, payload, retained)."""

    def __init__(self, broker: BrokerConfig, *topics: str) -> None:
        self.broker = broker
        self.topics = topics
        self.messages: list[tuple[str, bytes, bool]] = []
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def __aenter__(self) -> Watcher:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._subscribed.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        async with aiomqtt.Client(self.broker.host, self.broker.port,
                                  username=self.broker.username,
                                  password=self.broker.password,
                                  max_queued_incoming_messages=100_000) as client:
            for topic in self.topics:
                await client.subscribe(topic, qos=1)
            self._subscribed.set()
            async for m in client.messages:
                payload = m.payload if isinstance(m.payload, bytes) else b""
                self.messages.append((str(m.topic), payload, m.retain))

    def on(self, topic: str) -> list[bytes]:
        return [p for t, p, _ in self.messages if t == topic]


async def publish_all(broker: BrokerConfig, topic: str, payloads: list[bytes], *,
                      qos: int = 0) -> None:
    """Publish ``payloads`` to ``topic`` as fast as the client can."""
    async with aiomqtt.Client(broker.host, broker.port, max_queued_outgoing_messages=0,
                              timeout=30) as client:
        for payload in payloads:
            await client.publish(topic, payload, qos=qos)


