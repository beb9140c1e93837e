"""The virtual clock and event heap: the only scheduler in stackyard.

Events are plain callbacks, not coroutines: a heap entry is ``[time, seq, callback, arg]`` and
``seq`` breaks ties so two runs with the same inputs pop events in exactly the same order.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from typing import Any

Callback = Callable[[Any], None]
Handle = list[Any]
"""A scheduled entry; pass it to :meth:`Kernel.cancel`. Treat as opaque."""


class Kernel:
    """A discrete-event kernel: simulated time in seconds and a heap of pending callbacks."""

    __slots__ = ("_heap", "_seq", "events_run", "now", "seed")

    def __init__(self, seed: int = 0) -> None:
        self.now = 0.0
        self.seed = seed
        self.events_run = 0
        self._heap: list[Handle] = []
        self._seq = 0

    def call_at(self, time: float, callback: Callback, arg: Any = None) -> Handle:
        """Run ``callback(arg)`` at simulated ``time`` (never earlier than now)."""
        if time < self.now:
            time = self.now
        elif time != time:  # NaN would sit in the heap unordered and corrupt it
            raise ValueError("call_at: time is NaN")
        self._seq += 1
        entry = [time, self._seq, callback, arg]
        heapq.heappush(self._heap, entry)
        return entry

    def call_later(self, delay: float, callback: Callback, arg: Any = None) -> Handle:
        """Run ``callback(arg)`` after ``delay`` simulated seconds."""
        if delay != delay:  # NaN: not silently clamped to 0 like a negative delay
            raise ValueError("call_later: delay is NaN")
        self._seq += 1
        entry = [self.now + (delay if delay > 0.0 else 0.0), self._seq, callback, arg]
        heapq.heappush(self._heap, entry)
        return entry

    @staticmethod
    def cancel(handle: Handle | None) -> None:
        """Forget a scheduled callback; cancelling twice or after it ran is harmless."""
        if handle is not None:
            handle[2] = None
            handle[3] = None

    def peek(self) -> float:
        """Time of the next live event, or ``inf`` when nothing is scheduled."""
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else float("inf")

    def step(self) -> bool:
        """Run the next live event; return False when there is none."""
        heap = self._heap
        while heap:
            time, _, callback, arg = heapq.heappop(heap)
            if callback is None:
                continue
            self.now = time
            self.events_run += 1
            callback(arg)
            return True
        return False

    def run_until(self, until: float) -> None:
        """Run every event due at or before ``until``, then set the clock to ``until``."""
        heap = self._heap
        pop = heapq.heappop
        count = 0
        while heap and heap[0][0] <= until:
            time, _, callback, arg = pop(heap)
            if callback is None:
                continue
            self.now = time
            count += 1
            callback(arg)
        self.events_run += count
        if until > self.now:
            self.now = until

    def pending(self) -> int:
        """Number of heap entries, cancelled ones included (a cheap size gauge)."""
        return len(self._heap)

    def rng(self, name: str) -> random.Random:
        """A random stream of its own for component ``name``, derived from (seed, name).

        Streams do not depend on each other, so adding a component leaves the others' draws
        unchanged.
        """
        digest = hashlib.blake2b(f"{self.seed}:{name}".encode(), digest_size=8).digest()
        return random.Random(int.from_bytes(digest, "big"))
