"""Real-time driving: advance an engine by wall time x speed, in small slices, on asyncio.

The engine itself knows only simulated time (``run_until``); this module paces it against a
clock, like ``simpy/rt.py`` beside SimPy's core. Each tick runs the engine up to where wall time
says it should be, in slices of about ``slice_seconds`` of CPU with ``await asyncio.sleep(0)``
between them, then publishes a snapshot. When the CPU cannot keep up, the debt beyond one tick's
worth is dropped at the end of the tick (the clock is re-anchored with that much still owed), so
the next tick goes straight on working rather than idling, a stall is never made up in a burst,
and :attr:`DriverStatus.achieved` reports the speed actually reached; the viewer stays
responsive between slices.

The clock and the sleep are parameters, so tests can drive the pacing without real time.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from stackyard.core.controls import MAX_SPEED, MIN_SPEED, SPEEDS
from stackyard.core.protocol import DriverStatus, Snapshot

__all__ = ["MAX_SPEED", "MIN_SPEED", "SPEEDS", "DriverStatus", "RealtimeDriver", "clamp_speed",
           "next_speed"]


class Steppable(Protocol):
    """What the driver needs from an engine (``core.engine.Engine`` has it)."""

    @property
    def now(self) -> float: ...

    def run_until(self, t: float) -> None: ...

    def step(self) -> bool: ...

    def snapshot(self) -> Snapshot: ...


def clamp_speed(speed: float) -> float:
    """``speed`` limited to MIN_SPEED..MAX_SPEED."""
    return min(MAX_SPEED, max(MIN_SPEED, float(speed)))


def next_speed(speed: float, direction: int) -> float:
    """The next speed up (direction > 0) or down from ``speed`` in :data:`SPEEDS`."""
    if direction > 0:
        return next((s for s in SPEEDS if s > speed + 1e-9), SPEEDS[-1])
    return next((s for s in reversed(SPEEDS) if s < speed - 1e-9), SPEEDS[0])


class RealtimeDriver:
    """Paces ``engine`` against wall time; publishes a snapshot ``publish_hz`` times a second.

    ``publish`` is called with every snapshot, on the event loop's thread. ``run()`` is the task
    body; cancel the task to stop. Pause, resume, speed and step take effect at once."""

    def __init__(
        self,
        engine: Steppable,
        publish: Callable[[Snapshot], None],
        *,
        speed: float = 1.0,
        paused: bool = False,
        publish_hz: float = 5.0,
        slice_seconds: float = 0.010,
        step_seconds: float = 1.0,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        between_slices: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if publish_hz <= 0:
            raise ValueError(f"publish_hz: expected > 0, got {publish_hz}")
        self.engine = engine
        self._publish = publish
        self._speed = clamp_speed(speed)
        self._paused = paused
        self.period = 1.0 / publish_hz
        self.slice_seconds = slice_seconds
        self.step_seconds = step_seconds
        self._clock = clock
        self._sleep = sleep
        self._between = between_slices
        """Awaited between slices instead of a bare yield (e.g. storage back-pressure)."""
        self._chunk = 0.05
        """Simulated seconds per slice, adapted so a slice takes about ``slice_seconds``."""
        self._wall0 = clock()
        self._sim0 = engine.now
        self._samples: deque[tuple[float, float]] = deque(maxlen=64)
        self._behind_until = -1.0
        self._wake = asyncio.Event()
        self.ticks = 0

    # -- controls ---------------------------------------------------------------------------

    @property
    def status(self) -> DriverStatus:
        behind = not self._paused and self._clock() < self._behind_until
        return DriverStatus(paused=self._paused, speed=self._speed, achieved=self.achieved(),
                            behind=behind)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def speed(self) -> float:
        return self._speed

    def pause(self) -> None:
        if not self._paused:
            self._paused = True
            self._samples.clear()
            self.publish()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self._rebase()
            self._wake.set()
            self.publish()

    def set_speed(self, speed: float) -> float:
        """Set the speed (clamped to 0.25-100); returns the speed now in force."""
        self._speed = clamp_speed(speed)
        self._rebase()
        self._samples.clear()
        self._wake.set()
        self.publish()
        return self._speed

    def step(self, seconds: float | None = None) -> None:
        """Pause, then advance ``seconds`` (default ``step_seconds``) of simulated time."""
        self.pause()
        self.engine.run_until(self.engine.now + (self.step_seconds if seconds is None else seconds))
        self.publish()

    def step_event(self) -> bool:
        """Pause, then run exactly one event; False when nothing is scheduled."""
        self.pause()
        ran = self.engine.step()
        self.publish()
        return ran

    def publish(self) -> None:
        """Take a snapshot now and hand it to ``publish``."""
        self._publish(self.engine.snapshot())

    def achieved(self) -> float:
        """Simulated seconds per wall second over the recent ticks (0 while paused)."""
        if self._paused or len(self._samples) < 2:
            return 0.0 if self._paused else self._speed
        (w0, s0), (w1, s1) = self._samples[0], self._samples[-1]
        return (s1 - s0) / (w1 - w0) if w1 > w0 else self._speed

    # -- the task ---------------------------------------------------------------------------

    def _rebase(self) -> None:
        self._wall0 = self._clock()
        self._sim0 = self.engine.now

    async def run(self) -> None:
        """Drive the engine until cancelled."""
        self._rebase()
        while True:
            if self._paused:
                self._wake.clear()
                await self._wake.wait()
                continue
            start = self._clock()
            kept_up = await self._advance(start + self.period)
            self.ticks += 1
            if not self._paused:
                self._samples.append((self._clock(), self.engine.now))
                while len(self._samples) > 2 and self._samples[-1][0] - self._samples[0][0] > 2.0:
                    self._samples.popleft()
                self.publish()
            rest = self.period - (self._clock() - start)
            self._wake.clear()
            if kept_up and rest > 0:
                await self._wait(rest)
            else:
                # Behind: straight into the next tick; every slice still yields to the loop.
                await self._sleep(0)

    async def _wait(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a control (resume, speed) wakes us."""
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    async def _advance(self, deadline: float) -> bool:
        """Run the engine in slices towards where the clock says it should be (a target that
        moves on with the clock), until it gets there or the deadline comes; False if the
        deadline came first (the debt beyond one tick's worth is dropped then)."""
        engine = self.engine
        clock = self._clock
        while not self._paused:
            target = self._sim0 + (clock() - self._wall0) * self._speed
            if engine.now >= target:
                return True
            if clock() >= deadline:
                # The CPU cannot keep up. Keep one tick's worth of debt so the next tick works
                # its whole period instead of catching up at once and then idling a period
                # away; drop the rest so a stall is not made up in a burst.
                now = clock()
                self._behind_until = now + 1.0
                self._wall0 = now
                self._sim0 = engine.now + min(target - engine.now, self._speed * self.period)
                return False
            before = engine.now
            t0 = clock()
            engine.run_until(min(target, before + self._chunk))
            spent = clock() - t0
            done = engine.now - before
            if spent > 0 and done > 0:
                rate = done / spent
                self._chunk = min(60.0, max(1e-3, 0.5 * self._chunk
                                            + 0.5 * rate * self.slice_seconds))
            if self._between is not None:
                await self._between()
            else:
                await self._sleep(0)
            if engine.now >= target:
                return True  # caught up with the clock as it read before the slice: done
        return True
