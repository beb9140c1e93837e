"""The embedded broker: amqtt (MQTT 3.1.1) on 127.0.0.1, for ``stackyard serve`` without
``--broker`` and for tests.

It runs on its own event loop in a daemon thread, so the broker's work — a burst of commands to
route, snapshots to fan out — is not done between the engine's slices on the server's loop, and
it dies with the process.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

from stackyard.core.mqtt.config import BrokerConfig, MqttBridgeError

__all__ = ["BrokerError", "EmbeddedBroker", "free_port"]

log = logging.getLogger(__name__)

for _name in ("amqtt", "transitions"):
    # amqtt logs every connection and packet at INFO and some client disconnects as errors.
    logging.getLogger(_name).setLevel(logging.CRITICAL)


class BrokerError(MqttBridgeError):
    """The embedded broker could not start."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedBroker:
    """An amqtt broker on ``host``:``port`` (0: a free port), anonymous clients allowed."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None

    @property
    def config(self) -> BrokerConfig:
        """How clients reach it."""
        return BrokerConfig(host=self.host, port=self.port)

    def start(self, *, timeout: float = 10.0) -> BrokerConfig:
        """Start the broker thread; returns how to reach it. BrokerError if it cannot listen."""
        attempts = 3 if self.port == 0 else 1
        last: BaseException | None = None
        for _ in range(attempts):
            port = self.port or free_port(self.host)
            started = threading.Event()
            outcome: list[BaseException | None] = []
            thread = threading.Thread(target=self._body, args=(port, started, outcome),
                                      name="stackyard-broker", daemon=True)
            thread.start()
            if not started.wait(timeout):
                raise BrokerError(f"the embedded broker did not start within {timeout:g} s")
            last = outcome[0]
            if last is None:
                self._thread = thread
                self.port = port
                log.info("embedded broker on mqtt://%s:%d", self.host, port)
                return self.config
            thread.join(timeout)
        raise BrokerError(f"the embedded broker could not listen on {self.host}: "
                          f"{' '.join(str(last).split())}") from last

    def _body(self, port: int, started: threading.Event,
              outcome: list[BaseException | None]) -> None:
        """The broker thread: start amqtt on ``port``, report how it went, run until stopped."""
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._start(port))
        except BaseException as exc:  # reported to start()
            outcome.append(exc)
            started.set()
            loop.close()
            return
        self._loop = loop
        outcome.append(None)
        started.set()
        loop.run_forever()
        loop.close()

    async def _start(self, port: int) -> None:
        from amqtt.broker import Broker  # type: ignore[import-untyped]

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                        {"allow_anonymous": True}},
        }
        self._broker = Broker(config)
        await self._broker.start()

    def stop(self, *, timeout: float = 5.0) -> None:
        """Shut the broker down (its clients see the connection close)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._thread = None
        future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), loop)
        try:
            future.result(timeout)
        except Exception as exc:  # a broker that fails to shut down cleanly is still stopped
            log.debug("embedded broker shutdown: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    def __enter__(self) -> BrokerConfig:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
