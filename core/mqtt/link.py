"""The connection to the broker, shared by the server and the remote session.

Both sides use aiomqtt 2's reusable client: one :class:`aiomqtt.Client` made once, entered with
``async with`` again after every loss, with an exponential :class:`Backoff` between attempts. The
first connection is different: if it fails, the user asked for something that does not work (a
wrong port, a wrong password), so it is reported as a :class:`ConnectError` at once instead of
being retried forever.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
from dataclasses import dataclass

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

from stackyard.core.mqtt.config import BrokerConfig, ConfigError, ConnectError

__all__ = ["Backoff", "connect_error", "make_client", "raise_if_cancelled"]

log = logging.getLogger(__name__)

_PAHO = logging.getLogger("stackyard.core.mqtt.paho")
"""aiomqtt's and paho's own log lines: quiet unless something is badly wrong (aiomqtt warns
once per message it discards, which under a flood would be a flood of its own)."""
_PAHO.setLevel(logging.ERROR)

# MQTT 3.1.1 CONNACK return codes (and their MQTT 5 equivalents) that mean "not you".
_AUTH_CODES = {4, 5, 134, 135}


@dataclass
class Backoff:
    """Delays between reconnection attempts: ``first`` doubling up to ``most``, with jitter so
    many viewers do not reconnect in step after a broker restart."""

    first: float = 0.25
    most: float = 5.0
    _next: float = 0.0

    def reset(self) -> None:
        self._next = 0.0

    def delay(self) -> float:
        self._next = self.first if self._next <= 0 else min(self.most, self._next * 2)
        return self._next * random.uniform(0.8, 1.2)


def raise_if_cancelled() -> None:
    """Raise CancelledError if the current task is being cancelled.

    On Python 3.11, ``asyncio.wait_for`` (which aiomqtt awaits every publish and subscription
    with) can swallow a cancellation that arrives just as the operation completes; a loop that
    then waits for more work would never end. Loops call this before waiting."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def make_client(broker: BrokerConfig, *, identifier: str, will: aiomqtt.Will | None = None,
                keepalive: int = 10, max_incoming: int = 0, max_outgoing: int = 0,
                timeout: float = 5.0) -> aiomqtt.Client:
    """A reusable aiomqtt client for ``broker`` (MQTT 3.1.1, which both mosquitto and the
    embedded amqtt broker speak). ``max_incoming`` / ``max_outgoing`` bound its queues (0:
    unbounded): a message past the bound is dropped, never buffered."""
    context = None
    if broker.tls:
        try:
            context = ssl.create_default_context(
                cafile=str(broker.ca_file) if broker.ca_file is not None else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--tls-ca: cannot use {broker.ca_file}: {exc}") from exc
    return aiomqtt.Client(
        broker.host,
        broker.port,
        username=broker.username,
        password=broker.password,
        identifier=identifier,
        will=will,
        keepalive=keepalive,
        timeout=timeout,
        tls_context=context,
        max_queued_incoming_messages=max_incoming or None,
        max_queued_outgoing_messages=max_outgoing or None,
        logger=_PAHO,
        # Small messages (a command, its reply) go out at once, not after Nagle's delay.
        socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
    )


def connect_error(broker: BrokerConfig, exc: aiomqtt.MqttError) -> ConnectError:
    """A one-line ConnectError for a failed connection to ``broker``."""
    if isinstance(exc, MqttConnectError):
        rc = exc.rc
        code = rc.value if isinstance(rc, ReasonCode) else rc
        if code in _AUTH_CODES:
            who = f"user {broker.username!r}" if broker.username else "anonymous clients"
            return ConnectError(f"{broker.url} refused the credentials ({who}): wrong username "
                                "or password, or not allowed", auth=True)
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "timed out" in text.lower():
        text = "no answer (timed out)"
    return ConnectError(f"cannot connect to {broker.url}: {text}")
