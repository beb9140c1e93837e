"""The run's recent KPIs as sparklines (shown on tall terminals)."""

from __future__ import annotations

from textual.content import Content

from stackyard.core.protocol import Snapshot
from stackyard.tui.format import count, ms, sparkline
from stackyard.tui.widgets.lines import LineWidget


def trend_lines(snap: Snapshot | None, width: int) -> list[Content]:
    lines = []
    label_w, value_w = 13, 22
    spark_w = max(0, width - label_w - value_w - 2)
    if snap is None:
        return lines
    series = snap.series
    for values_now, label, fmt in ((series.rps, "arrivals/s", count),
                                   (series.p99, "p99 latency", ms),
                                   (series.errors, "errors/s", count)):
        # The last value is the second in progress: leave it out.
        values = list(values_now[:-1])
        if not values:
            continue
        now, lo, hi = values[-1], min(values), max(values)
        lines.append(Content.assemble(
            (f"{label:<{label_w}}", "$text-muted"),
            (stretch(sparkline(values, spark_w), spark_w), "$secondary"),
            f"  {fmt(now):>7} ",
            (f"({fmt(lo)}–{fmt(hi)})", "$text-muted")))
    if not lines:
        lines.append(Content.styled("no KPI series in this snapshot", "$text-muted"))
    return lines


def stretch(text: str, width: int) -> str:
    """Repeat each character so ``text`` fills about ``width`` cells."""
    if not text:
        return " " * width
    k = max(1, width // len(text))
    return "".join(ch * k for ch in text).ljust(width)


class Trends(LineWidget):
    """Arrivals, p99 and errors over the last half minute."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.snapshot: Snapshot | None = None
        self.border_title = "Last 30 s"

    def show(self, snap: Snapshot | None) -> None:
        self.snapshot = snap
        if self.display:
            self.update_lines()

    def build(self, width: int, height: int) -> list[Content]:
        return trend_lines(self.snapshot, width)
