"""One line per node: state glyph, id, state, load bar, key figures and a short trend.

Pure functions from :class:`~core.protocol.NodeState` to :class:`~textual.content.Content`, so
the panes stay thin and these test without an app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.content import Content

from stackyard.core.protocol import NodeState
from stackyard.tui.format import GLYPHS, STATE_STYLE, bar, count, ms, pct, sparkline, state_class

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


def _m(node: NodeState, key: str, default: float = 0.0) -> float:
    value = node.metrics.get(key, default)
    return float(value)


def _trend(node: NodeState) -> tuple[float, ...]:
    raw = node.info.get("trend")
    if isinstance(raw, list | tuple):
        # The last value is the second in progress: leave it out.
        return tuple(float(v) for v in raw if isinstance(v, int | float))[:-1]
    return ()


def figures(node: NodeState) -> Figures:
    """The figures of a node, by kind; unknown kinds show their first metrics."""
    k = node.kind
    m = node.metrics
    if k == "edge":
        return Figures(_m(node, "hit_ratio"), _int(_m(node, "rps")),
                       f"{count(_m(node, 'rps'))} rps hit {pct(_m(node, 'hit_ratio'))}",
                       _trend(node), f"{_int(_m(node, 'rps'))}/s")
    if k == "balancer":
        return Figures(None, count(_m(node, 'inflight')), f"{count(_m(node, 'inflight'))}"
                       " in flight")
    if k == "link":
        loss = _m(node, "loss")
        extra = f" loss {pct(loss)}" if loss else ""
        return Figures(None, _ms(_m(node, "latency")) if not loss else pct(loss),
                       f"{ms(_m(node, 'latency'))} ±{ms(_m(node, 'jitter'))}{extra}")
    if k == "host":
        steal = _m(node, "steal")
        return Figures(steal, f"{count(_m(node, 'vms'))}vm",
                       f"{count(_m(node, 'vms'))} vms steal {pct(steal)}",
                       medium=f"{count(_m(node, 'vms'))} vm" if not steal else
                       f"steal {pct(steal)}")
    if k == "vm":
        vcpus = _m(node, "vcpus", 1.0) or 1.0
        return Figures(_m(node, "load") / vcpus, f"{count(_m(node, 'load'))}/{count(vcpus)}",
                       f"load {_m(node, 'load'):.1f}/{count(vcpus)} "
                       f"{count(_m(node, 'containers'))} ctr")
    if k == "container":
        workers = _m(node, "workers", 1.0) or 1.0
        q = _m(node, "queue")
        queue = f" q{count(q)}" if q else ""
        return Figures(_m(node, "busy") / workers, _int(_m(node, "rps")),
                       f"{count(_m(node, 'rps'))} rps {pct(_m(node, 'share'))} "
                       f"cpu {pct(_m(node, 'cpu'))}{queue}", _trend(node),
                       f"{_int(_m(node, 'rps'))}/s {pct(_m(node, 'share'))}")
    if k == "db":
        size = _m(node, "pool_size", 0.0)
        load = _m(node, "pool_busy") / size if size else None
        if "lag_s" in m and node.state != "primary":
            short = _ms(_m(node, "lag_s"))
            medium = f"lag {short}"
        else:
            short = count(_m(node, "lsn")) if "lsn" in m else ""
            medium = f"lsn {short}" if short else ""
        parts = [f"lsn {count(_m(node, 'lsn'))}"] if "lsn" in m else []
        if "lag_s" in m:
            parts.append(f"lag {_ms(_m(node, 'lag_s'))}/{count(_m(node, 'lag_lsn'))}")
        for key, label in (("reads", "r"), ("writes", "w"), ("stale_reads", "stale"),
                           ("queue", "q")):
            if key in m and (m[key] or key in ("reads", "writes")):
                parts.append(f"{label} {count(m[key])}")
        return Figures(load, short, " ".join(parts), medium=medium)
    items = list(m.items())
    short = " ".join(f"{key[:1]} {count(v)}" for key, v in items[:2])
    return Figures(None, short, " ".join(f"{key} {count(v)}" for key, v in items[:4]))


def node_row(node: NodeState, width: int, selected: bool, active_faults: int = 0,
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


def summary_lines(tier: str, info: dict[str, Any], nodes: list[NodeState],
                  width: int) -> list[Content]:
    """The lines a tier pane shows above its nodes."""
    wide = width >= 44
    if tier == "network":
        b = info.get("balancer") or {}
        algo = str(b.get("algorithm", "?"))
        edges = [n for n in nodes if n.kind == "edge"]
        hit = (sum(_m(e, "hit_ratio") for e in edges) / len(edges)) if edges else 0.0
        line = f"{b.get('active', '?')} {algo}"
        second = f"cdn {pct(hit)} ejected {count(float(b.get('ejections', 0)))}"
        if wide:
            second += f" retries {b.get('retries', '?')} timeout {b.get('timeout', '?')}s"
        return [_muted(line, width), _muted(second, width)]
    if tier == "app":
        a = info.get("autoscaler") or {}
        ready, want = a.get("ready", "?"), a.get("replicas", "?")
        rec = a.get("recommendation", "?")
        util = a.get("utilisation", 0.0)
        onoff = "" if a.get("enabled", True) else " (off)"
        line = f"replicas {ready}/{want} → {rec}{onoff} util {pct(float(util))}"
        return [_muted(line, width), _muted(f"last: {a.get('last_decision', '-')}", width)]
    d = info.get("database")
    if isinstance(d, dict) and d.get("enabled") is False:
        return [_muted("no database tier", width)]
    if isinstance(d, dict):
        mode = str(d.get("mode", "?"))
        leader = d.get("leader") or "none"
        if wide:
            fencing = "fencing on" if d.get("fencing") else "fencing OFF"
            first = f"{mode} · leader {leader} · {fencing}"
        else:
            first = f"{mode} {leader} fencing {'on' if d.get('fencing') else 'OFF'}"
        lines = [first,
                 f"lost {count(float(d.get('lost_writes', 0)))} "
                 f"stale {count(float(d.get('stale_reads', 0)))} "
                 f"{'conflicts' if wide else 'confl'} {count(float(d.get('conflicts', 0)))}"]
        backups = int(d.get("backups", 0) or 0)
        third = f"backups {backups}"
        if backups and isinstance(d.get("last_backup"), int | float):
            third += f" (last {float(d['last_backup']):.0f}s)"
        if d.get("failovers"):
            third += f" failovers {d.get('failovers')}"
        restore = d.get("last_restore")
        if isinstance(restore, dict) and restore:
            third += " restore " + " ".join(f"{k} {_short(v)}" for k, v in
                                            list(restore.items())[:3])
        elif d.get("restoring"):
            third += " restoring…"
        lines.append(third)
        return [_muted(x, width) for x in lines]
    dbs = [n for n in nodes if n.tier == "database"]
    total = {key: sum(_m(n, key) for n in dbs) for key in ("reads", "writes")}
    return [_muted(f"reads {count(total['reads'])} writes {count(total['writes'])}", width)]


def _muted(text: str, width: int) -> Content:
    return Content.styled(text, "$text-muted").truncate(max(1, width), ellipsis=True)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)
