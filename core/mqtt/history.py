"""What a server keeps for viewers that attach late: recent snapshots and the command log.

:class:`Keeper` holds the ``history`` topic's content — snapshots at least a simulated second
apart, each carrying the events of those left out, bounded in count and bytes — and the run's
command log as :class:`~core.mqtt.topics.Applied` records: each command the engine applied,
numbered by its place in the log and stamped with the ``seq`` of the first snapshot that showed
it (the snapshot in whose publication it was first seen), bounded in count. With the scenario
and seed (the retained ``scenario`` topic), the whole log lets a viewer that attached at any
time record a file that re-simulates the run from its start.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from msgspec.structs import replace

from stackyard.core.mqtt.topics import Applied, history_payload
from stackyard.core.protocol import Event, Snapshot, encode

if TYPE_CHECKING:
    from stackyard.core.protocol import Command


@dataclass(frozen=True, kw_only=True)
class Bounds:
    keep: int = 120
    """Snapshots held at most."""
    size: int = 2_000_000
    """Bytes of snapshots held at most (the oldest go first)."""
    events: int = 200
    """Events one snapshot carries at most (those of the snapshots left out)."""
    commands: int = 5_000
    """Commands of the log held at most (the newest; a longer log is not whole)."""


class Keeper:
    """The history and the command log of one served run."""

    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds
        self.snapshots: deque[bytes] = deque()
        """Encoded snapshots, oldest first."""
        self.size = 0
        self.last_seq = 0
        """``seq`` of the newest snapshot held."""
        self.dirty = False
        """Changed since last published."""
        self.commands: deque[bytes] = deque(maxlen=bounds.commands)
        """The command log as encoded Applied records (the newest ``bounds.commands``)."""
        self.commands_total = 0
        self._carried: list[Event] = []
        self._kept_time = float("-inf")

    def keep(self, snap: Snapshot, payload: bytes) -> None:
        """Add ``snap`` if a simulated second has passed since the last kept; the events of the
        snapshots left out ride on the next one kept."""
        bounds = self.bounds
        self._carried.extend(snap.events)
        if snap.time < self._kept_time + 1.0 and snap.time >= self._kept_time:
            if len(self._carried) > bounds.events:
                del self._carried[: len(self._carried) - bounds.events]
            return
        if len(self._carried) != len(snap.events):
            events = tuple(self._carried[-bounds.events:])
            payload = encode(replace(snap, events=events))
        self._carried.clear()
        self._kept_time = snap.time
        self.snapshots.append(payload)
        self.last_seq = snap.seq
        self.size += len(payload)
        while self.snapshots and (len(self.snapshots) > bounds.keep or self.size > bounds.size):
            self.size -= len(self.snapshots.popleft())
        self.dirty = True

    def log(self, commands: list[tuple[float, Command]], seen: int) -> list[Applied]:
        """The commands of the engine's log not yet seen, stamped with ``seen`` (the ``seq`` of
        the snapshot being published), added to the log and returned."""
        fresh = [Applied(n=n, time=t, seen=seen, command=cmd)
                 for n, (t, cmd) in enumerate(commands[self.commands_total:],
                                              start=self.commands_total)]
        for applied in fresh:
            self.commands.append(encode(applied))
        self.commands_total = len(commands) if fresh else self.commands_total
        if fresh:
            self.dirty = True
        return fresh

    def payload(self) -> bytes:
        return history_payload(list(self.snapshots), list(self.commands), self.commands_total)
