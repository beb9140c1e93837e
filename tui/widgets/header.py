"""The header: run state, clock, speed (set and achieved) and the KPIs, on one line; for a remote
run also the link's state and, when the server takes no commands, "control off".

The line is built from parts ranked by importance; at a narrow width the terse forms are used
and the least important parts left out, so the fault count and the clock always show and no
figure is cut.
"""

from __future__ import annotations

from textual.content import Content

from stackyard.core.protocol import DriverStatus, Snapshot
from stackyard.tui.format import clock, ms, pct, rate, speed
from stackyard.tui.layout import fit_parts
from stackyard.tui.widgets.lines import LineWidget

Parts = list[tuple[Content, int]]


def burn_text(burn: float) -> str:
    """A burn rate: 0.4x, 12x, >999x."""
    if burn >= 999.5:
        return ">999x"
    return f"{burn:.1f}x" if burn < 10 else f"{burn:.0f}x"


def _parts(snap: Snapshot, status: DriverStatus, wide: bool, note: str = "") -> Parts:
    k = snap.kpis
    remote = bool(status.link)
    linked = status.link in ("", "connected")
    if not linked:
        run = Content.styled(f"⚠ {status.link}", "bold $error")
    elif status.paused:
        run = Content.styled("⏸ paused", "bold $warning")
    elif status.behind:
        run = Content.styled("▶ behind", "bold $error")
    else:
        run = Content.styled("▶ running" if wide else "▶", "bold $success")
    if status.replay:
        if not wide:  # the glyph says enough beside the badge
            run = Content.styled("⏸" if status.paused else "▶",
                                 "bold $warning" if status.paused else "bold $success")
        run = Content.assemble(Content.styled("REPLAY", "bold reverse $accent"), " ", run)
    set_speed = speed(status.speed)
    if not linked:
        pace = Content("")
    elif status.behind and not status.paused:
        pace = Content.styled(f"{set_speed} (got {speed(status.achieved)})", "bold $error")
    elif wide and not status.paused:
        pace = Content.assemble(set_speed, (f" (got {speed(status.achieved)})", "$text-muted"))
    else:
        pace = Content(set_speed)
    if wide:
        lat = f"p50 {ms(k.p50)} p95 {ms(k.p95)} p99 {ms(k.p99)}"
    else:
        lat = (f"p50 {ms(k.p50).removesuffix('ms')} p95 {ms(k.p95).removesuffix('ms')} "
               f"p99 {ms(k.p99)}")
    err = k.error_rate
    faults = k.active_faults + k.recovering
    slo = Content.styled(f"slo {pct(k.slo_budget)}" if k.slo_budget > 0 else "slo spent",
                         "bold $error" if k.slo_budget < 0.25 else "")
    parts: Parts = []
    if remote and linked:
        parts.append((Content.styled("⇄ live" if wide else "⇄", "$success"), 1))
    parts += [
        (Content.assemble(run, " ", (clock(snap.time), "bold"),
                          " " if pace.cell_length else "", pace), 0),
        (Content(f"{rate(k.rps)} req/s"), 3),
        (Content(lat), 5),
        (Content.styled(f"err {pct(err, 0 if not wide and err >= 0.1 else 1)}",
                        "bold $error" if err >= 0.01 else ""), 2),
        (slo, 2),
    ]
    if k.slo_burn >= 1.0:
        parts.append((Content.styled(f"burn {burn_text(k.slo_burn)}", "bold $error"), 4))
    parts.append((Content.styled(f"faults {faults}", "bold $error" if faults else ""), 0))
    if remote and linked and not status.control:
        parts.append((Content.styled("control off", "bold $warning"), 1))
    if note:
        parts.append((Content.styled(note, "$warning"), 3))
    return parts


def header_content(snap: Snapshot | None, status: DriverStatus, width: int,
                   note: str = "") -> Content:
    """The header line for ``snap`` and the driver's ``status`` in ``width`` cells, with the
    app's ``note`` (a backed-off refresh rate) when there is room."""
    if snap is None:
        return Content.styled("stackyard: waiting for the first snapshot…", "$text-muted")
    title = Content.styled(f"stackyard {snap.scenario} #{snap.seed}", "bold $accent")
    lines = []
    for wide in (True, False):
        sep = Content.styled(" │ " if wide else "│", "$text-muted")
        parts = _parts(snap, status, wide, note)
        lines.append((sep, parts, sep.join(p for p, _ in parts)))
    for sep, _, line in lines:  # the run's name too, when there is room for it
        if line.cell_length + sep.cell_length + title.cell_length <= width:
            return Content.assemble(title, sep, line)
    for _, _, line in lines:
        if line.cell_length <= width:
            return line
    sep, parts, _ = lines[-1]
    return fit_parts(parts, width, sep)


class KpiHeader(LineWidget):
    """One line of run state and KPIs; the app sets ``snapshot`` and ``status``."""

    DEFAULT_CSS = """
    KpiHeader { height: 1; dock: top; background: $panel; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.snapshot: Snapshot | None = None
        self.status = DriverStatus(paused=True, speed=1.0, achieved=0.0, behind=False)
        self.note = ""

    def show(self, snap: Snapshot | None, status: DriverStatus, note: str = "") -> None:
        self.snapshot = snap
        self.status = status
        self.note = note
        self.update_lines()

    def build(self, width: int, height: int) -> list[Content]:
        return [header_content(self.snapshot, self.status, width, self.note)]
