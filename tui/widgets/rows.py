"""One line per node: state glyph, id, state, load bar, figures with their units, a trend.

Pure functions from :class:`~core.protocol.NodeState` to :class:`~textual.content.Content`, so
the panes stay thin and these test without an app. Nothing is cut mid-word: ids and states get
columns as wide as the pane's own need, figures come in variants from rich to terse and the
richest that fits is shown; the pane summaries drop their least important parts first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
    NodeState,
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
    plural,
    rate,
    sparkline,
    state_class,
)
from stackyard.tui.layout import clip, first_fit, fit_parts

SHORT = {"terminated": "gone", "partitioned": "cut off"}
"""Whole-word short forms of states longer than :data:`STATE_MAX`."""
STATE_MAX = 9
"""The widest state column; longer states use their short form (or an ellipsis)."""
ID_MAX = 12
"""The widest id column; longer ids end in an ellipsis."""
TREND_W = 10


def state_text(state: str, width: int) -> str:
    """``state`` in at most ``width`` cells: whole, its short form, or cut with an ellipsis."""
    if len(state) <= width:
        return state
    short = SHORT.get(state, "")
    if short and len(short) <= width:
        return short
    return first_fit([state], width)


def columns(nodes: Iterable[AnyNode]) -> tuple[int, int]:
    """(id width, state width) for a pane showing ``nodes``: as wide as its longest id and the
    longest state any of its node kinds can be in, within :data:`ID_MAX` / :data:`STATE_MAX`."""
    id_w, state_w = 4, 2
    kinds: set[type[NodeState]] = set()
    for n in nodes:
        id_w = max(id_w, len(n.id))
        kinds.add(type(n))
    for cls in kinds:
        for s in cls.states():
            state_w = max(state_w, len(state_text(s, STATE_MAX)))
    return min(id_w, ID_MAX), min(state_w, STATE_MAX)


@dataclass(frozen=True)
class Figures:
    """What a row shows besides identity and state."""

    load: float | None
    """0..1 for the load bar (None: no bar)."""
    variants: tuple[str, ...]
    """The node's figures from the richest to the tersest; each carries its units."""
    trend: tuple[float, ...] = ()


def _trend(node: AnyNode) -> tuple[float, ...]:
    # The last value is the second in progress: leave it out.
    return node.trend[:-1]


def _variants(*texts: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t for t in texts if t))


def figures(node: AnyNode) -> Figures:
    """The figures of a node, by kind."""
    if isinstance(node, EdgeNode):
        r, hit = rate(node.rps), pct(node.hit_ratio)
        return Figures(node.hit_ratio, _variants(
            f"{r} req/s, {hit} cache hits, {plural(node.objects, 'object')} cached",
            f"{r} req/s, {hit} cache hits", f"{r} req/s hit {hit}", f"{r}/s hit {hit}",
            f"{r} req/s", f"{r}/s"), _trend(node))
    if isinstance(node, BalancerNode):
        n = count(node.inflight)
        return Figures(None, _variants(f"{plural(node.inflight, 'request')} in flight",
                                       f"{n} in flight", f"{n} req"))
    if isinstance(node, LinkNode):
        lat, jit = ms(node.latency), ms(node.jitter)
        loss = f"{pct(node.loss)} loss" if node.loss else ""
        cap = f"cap {rate(node.bandwidth)} msg/s" if node.bandwidth else ""
        return Figures(None, _variants(
            ", ".join(x for x in (f"{lat} ±{jit} one way", loss, cap) if x),
            " ".join(x for x in (f"{lat} ±{jit}", loss, cap) if x),
            " ".join(x for x in (lat, loss) if x), loss or lat, lat))
    if isinstance(node, HostNode):
        vms = plural(node.vms, "vm")
        steal = f"steal {pct(node.steal)}" if node.steal else ""
        return Figures(node.steal, _variants(
            f"{vms} on {node.cores} cores" + (f", {steal}" if steal else ""),
            f"{vms} {steal}".strip(), steal, vms))
    if isinstance(node, VmNode):
        vcpus = node.vcpus or 1
        return Figures(node.load / vcpus, _variants(
            f"load {node.load:.1f} of {vcpus} vcpus, {plural(node.containers, 'container')}",
            f"load {node.load:.1f}/{vcpus} vcpus", f"{pct(node.load / vcpus)} cpu"))
    if isinstance(node, ContainerNode):
        workers = node.workers or 1
        r = rate(node.rps)
        queue = f", {count(node.queue)} queued" if node.queue else ""
        return Figures(node.busy / workers, _variants(
            f"{r} req/s, {pct(node.share)} of traffic, cpu {pct(node.cpu)}{queue}",
            f"{r} req/s, {pct(node.share)} of traffic", f"{r} req/s {pct(node.share)}",
            f"{r} req/s", f"{r}/s"), _trend(node))
    assert isinstance(node, DbNode)
    load = node.pool_busy / node.pool_size if node.pool_size else None
    lsn = f"lsn {count(node.lsn)}"
    behind = f" ({plural(node.lag_lsn, 'write')})" if node.lag_lsn else ""
    lag = f"lag {ms(node.lag_s)}{behind}"
    ops = f"{count(node.reads)} reads, {count(node.writes)} writes"
    extra = "".join(x for x in (f", {count(node.stale_reads)} stale" if node.stale_reads
                                else "", f", {count(node.queue)} queued" if node.queue
                                else ""))
    if node.role == "primary" and not node.parent:
        return Figures(load, _variants(f"{lsn}, {ops}{extra}", f"{lsn}, {ops}",
                                       f"{count(node.lsn)} lsn"), _trend(node))
    return Figures(load, _variants(f"{lag}, {lsn}, {ops}{extra}", f"{lag}, {lsn}",
                                   f"lag {ms(node.lag_s)}, {lsn}", f"{ms(node.lag_s)} lag",
                                   ms(node.lag_s)), _trend(node))


def node_row(node: AnyNode, width: int, selected: bool, active_faults: int = 0,
             focused: bool = True, cols: tuple[int, int] | None = None) -> Content:
    """One pane line for ``node`` in ``width`` cells: mark, id, state, load bar, figures.
    ``cols`` gives the id and state column widths (default: what ``node`` alone needs)."""
    cls = state_class(node.state)
    f = figures(node)
    id_w, state_w = cols or columns([node])
    wide = width >= 44
    mark = "!" if active_faults else ("▶" if selected else " ")
    shown_id = node.id if len(node.id) <= id_w else node.id[: id_w - 1] + "…"
    parts: list[tuple[str, str] | str] = [
        (mark, "bold $error" if active_faults else "bold"),
        (f"{shown_id:<{id_w}} ", "bold $error" if active_faults else
         ("bold" if selected else "")),
        (f"{GLYPHS[cls]}{state_text(node.state, state_w):<{state_w}}", STATE_STYLE[cls]),
    ]
    rest = width - (1 + id_w + 1 + 1 + state_w)
    trend_w = TREND_W if width >= 56 and f.trend and rest >= 30 else 0
    room = rest - (trend_w + 1 if trend_w else 0)
    text, bar_w = _choose(f, room, wide)
    if bar_w:
        parts.append(" ")
        parts.append((bar(f.load or 0.0, bar_w), "$accent" if (f.load or 0) < 0.85
                      else "$error"))
        room -= bar_w + 1
    if room > 1 and text:
        parts.append(" " + (text.ljust(room - 1) if wide else text.rjust(room - 1)))
    elif room > 0:
        parts.append(" " * room)
    if trend_w:
        parts.append((" " + sparkline(f.trend, trend_w), "$secondary"))
    content = Content.assemble(*parts)
    if content.cell_length > width:
        content = clip(content, width)
    if selected:
        style = ("$block-cursor-foreground on $block-cursor-background" if focused
                 else "on $boost")
        content = content.pad_right(max(0, width - content.cell_length)).stylize(style)
    return content


def _choose(f: Figures, room: int, wide: bool) -> tuple[str, int]:
    """The richest figures that fit ``room`` cells (after a space), with a load bar when it
    fits too; the tersest with an ellipsis when none does."""
    bars = ((6, 4, 2) if wide else (4, 2)) if f.load is not None else ()
    for text in f.variants:
        for bar_w in bars:
            if 1 + len(text) + 1 + bar_w <= room:
                return text, bar_w
        if 1 + len(text) <= room:
            return text, 0
    return first_fit(f.variants, room - 1), 0


def summary_lines(tier: str, snap: Snapshot | None, width: int) -> list[Content]:
    """The lines a tier pane shows above its nodes, each fitted to ``width`` (least important
    parts dropped first)."""
    if snap is None:
        return []
    lines: list[Sequence[tuple[str, int]]] = []
    if tier == "network":
        b = snap.balancer
        edges = [n for n in snap.nodes if isinstance(n, EdgeNode)]
        hit = (sum(e.hit_ratio for e in edges) / len(edges)) if edges else 0.0
        if b is None:
            lines.append([(f"cdn {pct(hit)} hits", 0)])
        else:
            lines.append([(f"{b.active} active", 1), (b.algorithm.replace("_", " "), 0)])
            lines.append([(f"cdn {pct(hit)} hits", 0), (plural(b.ejections, "ejection"), 1),
                          (f"timeout {ms(b.timeout)}", 2),
                          (f"{plural(b.retries, 'retry', 'retries')} max", 3)])
    elif tier == "app":
        a = snap.autoscaler
        if a is None:
            return []
        onoff = "" if a.enabled else " (autoscaler off)"
        lines.append([(f"{a.ready}/{a.replicas} ready{onoff}", 0),
                      (f"want {a.recommendation}", 1), (f"cpu {pct(a.utilisation)}", 2),
                      (f"target {pct(a.target)}", 3)])
        lines.append([(f"autoscaler: {a.last_decision or '-'}", 0)])
    else:
        d = snap.database
        if d is None:
            return [_muted("no database tier", width)]
        mode = d.mode.replace("_", "-") + (" (fell back to async)" if d.degraded else "")
        lines.append([(mode, 0), (f"primary {d.leader or 'none'}", 1),
                      ("fencing on" if d.fencing else "fencing OFF", 2)])
        lines.append([(f"{count(d.lost_writes)} lost", 0), (f"{count(d.stale_reads)} stale", 1),
                      (plural(d.conflicts, "conflict"), 2), (f"{count(d.rewound)} rewound", 3)])
        third: list[tuple[str, int]] = [(plural(d.backups, "backup"), 1)]
        if d.last_backup is not None:
            third.append((f"last at {clock(d.last_backup, tenths=False)}", 3))
        if d.failovers:
            third.append((plural(d.failovers, "failover"), 2))
        r = d.last_restore
        if r is not None:
            third.append((f"restore RPO {ms(r.rpo)} RTO {ms(r.rto)}", 0))
        elif d.restoring:
            third.append(("restoring…", 0))
        lines.append(third)
    sep = Content.styled(", ", "$text-muted")
    return [fit_parts([(Content.styled(t, "$text-muted"), rank) for t, rank in parts],
                      max(1, width), sep) for parts in lines]


def _muted(text: str, width: int) -> Content:
    return clip(Content.styled(text, "$text-muted"), max(1, width))
