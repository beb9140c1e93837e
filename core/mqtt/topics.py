"""The topic layout under ``stackyard/<run>/`` and the records only the MQTT link carries.

What each topic holds, whether it is retained and at which QoS is documented in docs/mqtt.md;
this module is the one place that spells the names. Payloads are the records of
:mod:`stackyard.core.protocol` encoded as JSON (``encode``), plus two that exist only on the
wire: :class:`ServerStatus` (the ``status`` topic: birth and last will) and :class:`History`
(the ``history`` topic: recent snapshots and the command log for a viewer that has just
attached), :class:`RunInfo` (the ``scenario`` topic: what re-simulates the run) and
:class:`Applied` (the ``commands`` topic: each command the run applied).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec

from stackyard.core.protocol import Command, Record, Snapshot

__all__ = ["QOS", "Applied", "History", "RunInfo", "ServerStatus", "Topics", "WireSnapshot",
           "metric_text", "topic_level", "viewer_name"]

ROOT: Final = "stackyard"

QOS: Final = {"status": 1, "catalogue": 1, "scenario": 1, "snapshot": 1, "driver": 0,
              "history": 0, "events": 1, "commands": 1, "metrics": 0, "cmd": 1, "reply": 1}
"""The QoS each topic is published at: 1 where every message matters (a snapshot carries the
events since the previous one), 0 where the next message replaces the last."""

MAX_VIEWER = 32
"""A viewer's name is cut to this many characters."""
_UNSAFE_LEVEL = re.compile(r"[/+#\x00-\x1f\s]+")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9@._:-]+")


@dataclass(frozen=True)
class Topics:
    """Every topic of one run."""

    run: str

    @property
    def base(self) -> str:
        return f"{ROOT}/{self.run}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def snapshot(self) -> str:
        return f"{self.base}/snapshot"

    @property
    def catalogue(self) -> str:
        return f"{self.base}/catalogue"

    @property
    def scenario(self) -> str:
        return f"{self.base}/scenario"

    @property
    def commands(self) -> str:
        return f"{self.base}/commands"

    @property
    def driver(self) -> str:
        return f"{self.base}/driver"

    @property
    def history(self) -> str:
        return f"{self.base}/history"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def cmd(self) -> str:
        return f"{self.base}/cmd"

    @property
    def reply(self) -> str:
        return f"{self.base}/reply"

    def metric(self, node: str, name: str) -> str:
        return f"{self.base}/metrics/{topic_level(node)}/{topic_level(name)}"

    @staticmethod
    def every_status() -> str:
        """The wildcard that finds every run on a broker."""
        return f"{ROOT}/+/status"

    @staticmethod
    def run_of(topic: str) -> str:
        """The run id in a topic of the layout ('' if it is not one)."""
        parts = topic.split("/")
        return parts[1] if len(parts) >= 3 and parts[0] == ROOT else ""


class ServerStatus(Record, frozen=True, kw_only=True):
    """The retained ``status`` topic: ``online`` when the server (re)connects — its birth — and
    ``offline`` as the broker-held last will (the process died or lost its link) or on a clean
    shutdown."""

    state: Literal["online", "offline"]
    run: str
    version: str = ""
    scenario: str = ""
    seed: int = 0
    birth: int = 0
    """Counts the server's connections to the broker from 1; 0 in the last will (which is
    fixed when the client is made, before any connection)."""
    started: float = 0.0
    """Wall-clock time (Unix seconds) the server process started: a new value is a new run."""
    control: bool = False
    """Whether the server accepts commands other than queries (``--allow-control``)."""
    hz: float = 0.0
    """Snapshots published per wall second."""
    reason: str = ""
    """Why it is offline ('' when online)."""


class WireSnapshot(Snapshot, frozen=True, kw_only=True):
    """A snapshot as the ``snapshot`` topic and the history carry it: a :class:`Snapshot` with
    ``clock``, the engine's exact simulated time (``time`` is rounded to the microsecond),
    which a viewer's recording needs to re-simulate the run to the same instant."""

    clock: float | None = None
    """None when the server could not tell (then ``time`` is all there is)."""


class Applied(Record, frozen=True, kw_only=True):
    """A command the run applied (the ``commands`` topic, and the history's log)."""

    n: int
    """Its place in the run's command log, from 0: a jump means some were missed."""
    time: float
    """The simulated time it applied at."""
    seen: int
    """The ``seq`` of the first snapshot that shows it (a re-simulation applies it before)."""
    command: Command


class History(Record, frozen=True, kw_only=True):
    """The retained ``history`` topic: recent snapshots, oldest first, at least a simulated
    second apart, each carrying the events since the previous one kept — what a viewer that has
    just attached shows as trends and its event log — and the run's command log."""

    snapshots: tuple[WireSnapshot, ...] = ()
    commands: tuple[Applied, ...] = ()
    """The run's command log, the newest ones if it is longer than the server keeps."""
    commands_total: int = 0
    """How many commands the run has applied in all (the log's length)."""


class RunInfo(Record, frozen=True, kw_only=True):
    """The retained ``scenario`` topic: the scenario and seed that, with the command log,
    define the run — what a viewer's recording keeps to re-simulate it."""

    run: str
    scenario: str
    """The scenario's name."""
    seed: int
    started: float = 0.0
    """As in ServerStatus: the server process's start (Unix seconds)."""
    version: str = ""
    toml: str = ""
    """The scenario file's text ('' when the server could not read it)."""
    spec: dict[str, Any] = msgspec.field(default_factory=dict)
    """The scenario as the engine runs it (every section with its defaults filled in)."""


def history_payload(encoded: list[bytes], commands: list[bytes] | None = None,
                    total: int = 0) -> bytes:
    """A History payload built from already-encoded snapshots and commands (no
    re-encoding)."""
    return (b'{"snapshots":[' + b",".join(encoded) + b'],"commands":['
            + b",".join(commands or ()) + b'],"commands_total":' + str(total).encode() + b"}")


def topic_level(text: str) -> str:
    """``text`` as one topic level: no ``/``, ``+``, ``#``, spaces or control characters."""
    return _UNSAFE_LEVEL.sub("_", text) or "_"


def viewer_name(origin: str) -> str:
    """The viewer's name a remote command carries in ``origin`` (``remote:NAME`` or ``NAME``),
    made safe to log: printable, at most MAX_VIEWER characters, ``anonymous`` if empty."""
    name = origin.removeprefix("remote:")
    name = _UNSAFE_NAME.sub("_", name).strip("_")[:MAX_VIEWER]
    return name or "anonymous"


def metric_text(value: float) -> str:
    """A metric as a plain number: integers without a decimal point, others to 6 digits."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(round(value, 6))

