"""Pure formatting helpers for the panes: numbers, bars, sparklines, state styles.

Nothing here touches Textual's widgets, so it is tested without an app.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

BLOCKS = " ▏▎▍▌▋▊▉█"
SPARKS = "▁▂▃▄▅▆▇█"

GOOD = frozenset({"up", "running", "ready", "active", "ok", "primary", "replica"})
BUSY = frozenset({"booting", "starting", "pending", "draining", "takeover", "standby", "degraded",
                  "promoting", "rewinding", "restoring", "syncing", "catching_up"})
BAD = frozenset({"down", "crashed", "backoff", "partitioned", "ejected", "unhealthy", "fenced",
                 "killed", "terminated", "oom", "failed", "lagging", "disabled"})

GLYPHS = {"good": "●", "busy": "◐", "bad": "✖", "other": "○"}


def state_class(state: str) -> str:
    """good, busy, bad or other: how worrying a node state is."""
    if state in GOOD:
        return "good"
    if state in BAD:
        return "bad"
    if state in BUSY:
        return "busy"
    return "other"


STATE_STYLE = {"good": "$success", "busy": "$warning", "bad": "bold $error", "other": "$foreground"}


def bar(fraction: float, width: int) -> str:
    """A horizontal bar ``width`` cells wide, filled to ``fraction`` (0..1) in eighths."""
    if width <= 0:
        return ""
    if not math.isfinite(fraction):
        fraction = 0.0
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (BLOCKS[part] if part and full < width else "")
    return text.ljust(width)


def sparkline(values: Sequence[float], width: int) -> str:
    """The last ``width`` values as block characters scaled to their own range."""
    data = [v if math.isfinite(v) else 0.0 for v in list(values)[-width:]] if width > 0 else []
    if not data:
        return ""
    lo, hi = min(data), max(data)
    if hi <= lo:
        return (SPARKS[0] if hi == 0 else SPARKS[3]) * len(data)
    scale = (len(SPARKS) - 1) / (hi - lo)
    return "".join(SPARKS[round((v - lo) * scale)] for v in data)


def ms(seconds: float) -> str:
    """A duration, one rule everywhere: 0.0631 -> '63ms', 0.0005 -> '0.5ms', 0 -> '0ms',
    1.5 -> '1.5s', 42 -> '42s' (one decimal below 10 of a unit, none above)."""
    if not math.isfinite(seconds):
        return "-"
    if seconds >= 9.95:
        return f"{seconds:.0f}s"
    if seconds >= 0.9995:
        return f"{seconds:.1f}s"
    value = seconds * 1000
    if value < 9.95:
        text = f"{value:.1f}"
        return "0ms" if text in ("0.0", "-0.0") else f"{text}ms"
    return f"{value:.0f}ms"


def rate(per_second: float) -> str:
    """A rate, one rule everywhere: one decimal below 10 (0.4, 7.5), whole above (71, 12k)."""
    if not math.isfinite(per_second):
        return "-"
    if abs(per_second) < 9.95:
        text = f"{per_second:.1f}"
        return "0" if text in ("0.0", "-0.0") else text.removesuffix(".0")
    return count(round(per_second))


def plural(n: float, word: str, words: str = "") -> str:
    """``1 vm``, ``2 vms``, ``1.2k rows`` (the count as :func:`count` writes it)."""
    return f"{count(n)} {word if n == 1 else words or word + 's'}"


def pct(fraction: float, digits: int = 0) -> str:
    if not math.isfinite(fraction):
        return "-"
    return f"{fraction * 100:.{digits}f}%"


def count(value: float) -> str:
    """A count in at most 5 characters: 987, 12.3k, 4.5M."""
    if not math.isfinite(value):
        return "-"
    v = abs(value)
    if v < 1000:
        return f"{value:.0f}" if float(value).is_integer() or v >= 100 else f"{value:.1f}"
    if v < 1_000_000:
        return f"{value / 1000:.1f}k" if v < 10_000 else f"{value / 1000:.0f}k"
    return f"{value / 1_000_000:.1f}M"


def clock(seconds: float, tenths: bool = True) -> str:
    """Simulated time as h:mm:ss.s or m:ss.s (without the tenths: h:mm:ss or m:ss)."""
    seconds = max(0.0, seconds)
    if not tenths:
        seconds = float(int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    sec = f"{s:04.1f}" if tenths else f"{int(s):02d}"
    if h:
        return f"{int(h)}:{int(m):02d}:{sec}"
    return f"{int(m)}:{sec}"


def speed(x: float) -> str:
    """A speed factor: 0.25x, 1x, 2.5x, 100x."""
    if x >= 10:
        return f"{x:.0f}x"
    return f"{x:.2f}".rstrip("0").rstrip(".") + "x"


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells with an ellipsis, or padded to it."""
    if width <= 0:
        return ""
    if len(text) > width:
        return text[: width - 1] + "…" if width > 1 else text[:1]
    return text.ljust(width)
