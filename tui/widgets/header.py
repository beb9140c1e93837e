"""The header: run state, clock, speed (set and achieved) and the KPIs, on one line; for a remote
run also the link's state and, when the server takes no commands, "control off"."""

from __future__ import annotations

from textual.content import Content
from textual.widget import Widget

from stackyard.core.protocol import DriverStatus, Snapshot
from stackyard.tui.format import clock, count, ms, pct, speed


def header_content(snap: Snapshot | None, status: DriverStatus, width: int) -> Content:
    """The header line for ``snap`` and the driver's ``status`` in ``width`` cells."""
    if snap is None:
        return Content.styled("stackyard: waiting for the first snapshot…", "$text-muted")
    k = snap.kpis
    narrow = width < 120
    remote = bool(status.link)
    linked = status.link in ("", "connected")
    if not linked:
        run = Content.styled(f"⚠ {status.link}", "bold $error")
    elif status.paused:
        run = Content.styled("⏸ paused", "bold $warning")
    elif status.behind:
        run = Content.styled("▶ behind", "bold $error")
    else:
        run = Content.styled("▶" if narrow else "▶ running", "bold $success")
    if status.replay:
        if narrow:  # the glyph says enough beside the badge
            run = Content.styled("⏸" if status.paused else "▶",
                                 "bold $warning" if status.paused else "bold $success")
        run = Content.assemble(Content.styled("REPLAY", "bold reverse $accent"), " ", run)
    set_speed = speed(status.speed)
    if not linked:
        pace = Content("")
    elif status.behind and not status.paused:
        pace = Content.styled(f"{set_speed} (got {speed(status.achieved)})", "bold $error")
    elif not narrow and not status.paused:
        pace = Content.assemble(set_speed, (f" (got {speed(status.achieved)})", "$text-muted"))
    else:
        pace = Content(set_speed)
    err = k.error_rate
    budget = k.slo_budget
    faults = k.active_faults
    sep = Content.styled("│" if narrow else " │ ", "$text-muted")
    p50, p95, p99 = k.p50, k.p95, k.p99
    if narrow and remote:  # room for the link and control
        lat = Content(f"p95 {ms(p95).removesuffix('ms')} p99 {ms(p99)}")
    elif narrow:
        lat = Content(f"p50 {ms(p50).removesuffix('ms')} p95 {ms(p95).removesuffix('ms')} "
                      f"p99 {ms(p99)}")
    else:
        lat = Content(f"p50 {ms(p50)} p95 {ms(p95)} p99 {ms(p99)}")
    parts: list[Content] = []
    if remote and linked:
        parts += [Content.styled("⇄" if narrow else "⇄ live", "$success"), sep]
    parts += [run, Content(" "), Content.styled(clock(snap.time), "bold"),
              Content(" ") if pace.cell_length else Content(""), pace, sep,
              Content(f"{count(k.rps)} rps"), sep,
              lat, sep,
              Content.styled(f"err {pct(err, 0 if narrow and err >= 0.1 else 1)}",
                             "bold $error" if err >= 0.01 else ""), sep,
              Content.styled(f"slo {pct(budget)}" if budget >= 0 else "slo spent",
                             "bold $error" if budget < 0.25 else ""), sep,
              Content.styled(f"faults {faults}", "bold $error" if faults else "")]
    if remote and linked and not status.control:
        parts += [sep, Content.styled("control off", "bold $warning")]
    line = Content.assemble(*parts)
    if width >= line.cell_length + 20:
        title = Content.styled(f"stackyard {snap.scenario} #{snap.seed}", "bold $accent")
        line = Content.assemble(title, sep, line)
    return line


class KpiHeader(Widget):
    """One line of run state and KPIs; the app sets ``snapshot`` and ``status``."""

    DEFAULT_CSS = """
    KpiHeader { height: 1; dock: top; background: $panel; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.snapshot: Snapshot | None = None
        self.status = DriverStatus(paused=True, speed=1.0, achieved=0.0, behind=False)

    def show(self, snap: Snapshot | None, status: DriverStatus) -> None:
        self.snapshot = snap
        self.status = status
        self.refresh()

    def render(self) -> Content:
        return header_content(self.snapshot, self.status, self.content_size.width)
