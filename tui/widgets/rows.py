"""One line per node: state glyph, id, state, load bar, key figures and a short trend.

Pure functions from :class:`~core.protocol.NodeState` to :class:`~textual.content.Content`, so
the panes stay thin and these test without an app.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.content import Content

from stackyard.core.protocol import (
    AnyNode,
    BalancerNode,
    ContainerNode,
    DbNode,
    EdgeNode,
    HostNode,
    LinkNode,
    Snapshot,
    VmNode,
)
from stackyard.tui.format import (
    GLYPHS,
    STATE_STYLE,
    bar,
    clock,
    count,
    ms,
    pct,
    sparkline,
    state_class,
)

SHORT = {"starting": "start", "degraded": "degrade", "partitioned": "parted",
         "unhealthy": "unhealt", "terminated": "gone", "promoting": "promote",
         "rewinding": "rewind", "restoring": "restore", "takeover": "takeovr",
         "draining": "drain", "booting": "boot", "catching_up": "catchup"}
"""Short forms of long states for narrow panes."""


def _int(value: float) -> str:
    return count(round(value))


def _ms(seconds: float) -> str:
    """Like :func:`ms` but sub-millisecond values lose the leading zero: '.5ms'."""
    if seconds == 0:
        return "0ms"
    text = ms(seconds)
    return text[1:] if text.startswith("0.") else text


@dataclass(frozen=True)
class Figures:
    """What a row shows besides identity and state."""

    load: float | None
    """0..1 for the load bar (None: no bar)."""
    short: str
    """The one figure that fits a narrow pane."""
    long: str
    """More figures for a wide pane."""
    trend: tuple[float, ...] = ()
    medium: str = ""
    """The short figure with a word of context, for middling widths ('' = ``short``)."""


def _trend(node: AnyNode) -> tuple[float, ...]:
    # The last value is the second in progress: leave it out.
    return node.trend[:-1]


def figures(node: AnyNode) -> Figures:
    """The figures of a node, by kind."""
    if isinstance(node, EdgeNode):
        return Figures(node.hit_ratio, _int(node.rps),
                       f"{count(node.rps)} rps hit {pct(node.hit_ratio)}",
                       _trend(node), f"{_int(node.rps)}/s")
    if isinstance(node, BalancerNode):
        return Figures(None, count(node.inflight), f"{count(node.inflight)} in flight")
    if isinstance(node, LinkNode):
        extra = f" loss {pct(node.loss)}" if node.loss else ""
        if node.bandwidth:
            extra += f" cap {count(node.bandwidth)}/s"
        return Figures(None, _ms(node.latency) if not node.loss else pct(node.loss),
                       f"{ms(node.latency)} ±{ms(node.jitter)}{extra}")
    if isinstance(node, HostNode):
        return Figures(node.steal, f"{count(node.vms)}vm",
                       f"{count(node.vms)} vms steal {pct(node.steal)}",
                       medium=f"{count(node.vms)} vm" if not node.steal else
                       f"steal {pct(node.steal)}")
    if isinstance(node, VmNode):
        vcpus = node.vcpus or 1
        return Figures(node.load / vcpus, f"{count(node.load)}/{count(vcpus)}",
                       f"load {node.load:.1f}/{count(vcpus)} {count(node.containers)} ctr")
    if isinstance(node, ContainerNode):
        workers = node.workers or 1
        queue = f" q{count(node.queue)}" if node.queue else ""
        return Figures(node.busy / workers, _int(node.rps),
                       f"{count(node.rps)} rps {pct(node.share)} cpu {pct(node.cpu)}{queue}",
                       _trend(node), f"{_int(node.rps)}/s {pct(node.share)}")
    assert isinstance(node, DbNode)
    load = node.pool_busy / node.pool_size if node.pool_size else None
    if node.state != "primary":
        short = _ms(node.lag_s)
        medium = f"lag {short}"
    else:
        short = count(node.lsn)
        medium = f"lsn {short}"
    parts = [f"lsn {count(node.lsn)}", f"lag {_ms(node.lag_s)}/{count(node.lag_lsn)}",
             f"r {count(node.reads)}", f"w {count(node.writes)}"]
    if node.stale_reads:
        parts.append(f"stale {count(node.stale_reads)}")
    if node.queue:
        parts.append(f"q {count(node.queue)}")
    return Figures(load, short, " ".join(parts), medium=medium)


def node_row(node: AnyNode, width: int, selected: bool, active_faults: int = 0,
             focused: bool = True) -> Content:
    """One pane line for ``node`` in ``width`` cells: mark, id, state, load bar, figures."""
    cls = state_class(node.state)
    f = figures(node)
    wide = width >= 44
    id_w = 8 if width < 40 else 10
    state_w = 7 if width < 30 else 8 if width < 44 else 9
    state = node.state if len(node.state) <= state_w else SHORT.get(node.state, node.state)
    mark = "!" if active_faults else ("▶" if selected else " ")
    parts: list[tuple[str, str] | str] = [
        (mark, "bold $error" if active_faults else "bold"),
        (f"{node.id[:id_w]:<{id_w}} ", "bold $error" if active_faults else
         ("bold" if selected else "")),
        (f"{GLYPHS[cls]}{state[:state_w]:<{state_w}}", STATE_STYLE[cls]),
    ]
    rest = width - (1 + id_w + 1 + 1 + state_w)
    trend_w = 10 if width >= 56 and f.trend else 0
    room = rest - 1 - (4 if f.load is not None else 0) - (trend_w + 1 if trend_w else 0)
    text = f.long if wide else f.medium if f.medium and len(f.medium) <= room else f.short
    if rest > 0:
        bar_w = 0
        if f.load is not None:
            bar_w = 6 if wide else max(0, min(4, rest - len(text) - 2))
        if bar_w >= 2:
            parts.append(" ")
            parts.append((bar(f.load or 0.0, bar_w), "$accent" if (f.load or 0) < 0.85
                          else "$error"))
            rest -= bar_w + 1
        text_w = rest - 1 - (trend_w + 1 if trend_w else 0)
        if text_w > 0:
            parts.append(" " + (text[:text_w].rjust(text_w) if not wide else
                                text[:text_w].ljust(text_w)))
        if trend_w and text_w > 0:
            parts.append((" " + sparkline(f.trend, trend_w), "$secondary"))
    content = Content.assemble(*parts)
    if selected:
        style = ("$block-cursor-foreground on $block-cursor-background" if focused
                 else "on $boost")
        content = content.pad_right(max(0, width - content.cell_length)).stylize(style)
    return content


def summary_lines(tier: str, snap: Snapshot | None, width: int) -> list[Content]:
    """The lines a tier pane shows above its nodes."""
    wide = width >= 44
    if snap is None:
        return []
    if tier == "network":
        b = snap.balancer
        edges = [n for n in snap.nodes if isinstance(n, EdgeNode)]
        hit = (sum(e.hit_ratio for e in edges) / len(edges)) if edges else 0.0
        if b is None:
            return [_muted(f"cdn {pct(hit)}", width)]
        second = f"cdn {pct(hit)} ejected {count(b.ejections)}"
        if wide:
            second += f" retries {b.retries} timeout {b.timeout:g}s"
        return [_muted(f"{b.active} {b.algorithm}", width), _muted(second, width)]
    if tier == "app":
        a = snap.autoscaler
        if a is None:
            return []
        onoff = "" if a.enabled else " (off)"
        line = (f"replicas {a.ready}/{a.replicas} → {a.recommendation}{onoff} "
                f"util {pct(a.utilisation)}")
        return [_muted(line, width), _muted(f"last: {a.last_decision or '-'}", width)]
    d = snap.database
    if d is None:
        return [_muted("no database tier", width)]
    mode = d.mode + (" (fell back to async)" if d.degraded else "")
    leader = d.leader or "none"
    if wide:
        first = f"{mode} · leader {leader} · {'fencing on' if d.fencing else 'fencing OFF'}"
    else:
        first = f"{mode} {leader} fencing {'on' if d.fencing else 'OFF'}"
    lines = [first,
             f"lost {count(d.lost_writes)} stale {count(d.stale_reads)} "
             f"{'conflicts' if wide else 'confl'} {count(d.conflicts)}"]
    third = f"backups {d.backups}"
    if d.last_backup is not None:
        third += f" (last at {clock(d.last_backup)})"
    if d.failovers:
        third += f" failovers {d.failovers}"
    r = d.last_restore
    if r is not None:
        third += f" restore rpo {r.rpo:.1f}s rto {r.rto:.1f}s"
    elif d.restoring:
        third += " restoring…"
    lines.append(third)
    return [_muted(x, width) for x in lines]


def _muted(text: str, width: int) -> Content:
    return Content.styled(text, "$text-muted").truncate(max(1, width), ellipsis=True)
