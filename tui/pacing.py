"""How often the app redraws: the user's refresh cap, lowered while the terminal cannot keep up.

Snapshots arrive at the session's rate; the app draws the latest at most :attr:`Pacer.rate`
times a second. When a frame is due and the output of earlier frames is still waiting to be
written (the terminal, or the SSH link behind it, is not draining it), the rate halves, down to
:data:`FPS_MIN`; after :data:`RECOVER_AFTER` frames in a row find the output drained it doubles
again, up to the cap. Pure logic on numbers the app passes in, so it tests without a terminal.

The simulation never waits for the screen: the driver paces the engine by the clock alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

FPS_MIN = 1.0
FPS_MAX = 30.0
"""The bounds of ``--fps`` and of the cap the key cycles through."""
FPS_STEPS = (1.0, 2.0, 5.0, 10.0, 20.0)
"""The caps the refresh key steps through."""
FPS_DEFAULT = 10.0
"""The cap without ``--fps``: every snapshot of a 4-10 Hz session is drawn."""
RECOVER_AFTER = 4
"""Frames in a row with the output drained before the rate doubles again."""


def check_fps(value: float) -> float:
    """``value`` if it is a refresh rate the app accepts; ValueError with the reason if not."""
    if not math.isfinite(value) or not FPS_MIN <= value <= FPS_MAX:
        raise ValueError(f"expected a refresh rate between {FPS_MIN:g} and {FPS_MAX:g} frames "
                         f"per second, got {value:g}")
    return value


def next_step(cap: float) -> float:
    """The cap after ``cap`` in :data:`FPS_STEPS` (after the last: the first)."""
    return next((s for s in FPS_STEPS if s > cap + 1e-9), FPS_STEPS[0])


def fps_text(rate: float) -> str:
    return f"{rate:g} fps"


@dataclass
class Pacer:
    """The refresh cap the user chose and the rate in force (at most the cap)."""

    cap: float = FPS_DEFAULT
    rate: float = field(default=0.0)
    """Frames a second allowed now (below ``cap`` while backed off)."""
    last: float = -math.inf
    """When the last frame was drawn (the app's monotonic clock)."""
    drained: int = 0
    """Frames in a row that found the earlier output written."""

    def __post_init__(self) -> None:
        self.cap = check_fps(self.cap)
        self.rate = self.cap

    @property
    def backed_off(self) -> bool:
        return self.rate < self.cap

    def set_cap(self, cap: float) -> None:
        """A new cap from the user: in force at once, back-off forgotten."""
        self.cap = check_fps(cap)
        self.rate = self.cap
        self.drained = 0

    def wait(self, now: float) -> float:
        """Seconds until the next frame may be drawn (0: now)."""
        return max(0.0, self.last + 1.0 / self.rate - now)

    def drawn(self, now: float, pending: int) -> bool:
        """A frame was drawn at ``now`` while ``pending`` writes of earlier frames were still
        queued for the terminal; returns True if the rate changed."""
        self.last = now
        if pending > 0:
            self.drained = 0
            if self.rate > FPS_MIN:
                self.rate = max(FPS_MIN, self.rate / 2)
                return True
            return False
        self.drained += 1
        if self.rate < self.cap and self.drained >= RECOVER_AFTER:
            self.drained = 0
            self.rate = min(self.cap, self.rate * 2)
            return True
        return False
