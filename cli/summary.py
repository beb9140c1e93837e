"""A run's summary as text: one labelled line per part of the backend."""

from __future__ import annotations

from stackyard.core.protocol import ActionInfo, ParamInfo, RunSummary


def seconds(x: float) -> str:
    """Simulated seconds as 12.5s, 3m05s, 5m, 1h02m or 2h."""
    if x >= 3600:
        return f"{int(x // 3600)}h{int(x % 3600 // 60):02d}m".removesuffix("00m")
    if x >= 60:
        return f"{int(x // 60)}m{int(x % 60):02d}s".removesuffix("00s")
    return f"{x:.1f}s"


def _ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def plural(n: int, word: str, words: str = "") -> str:
    """``1 backup``, ``2 backups``."""
    return f"{n} {word if n == 1 else words or word + 's'}"


def format_summary(s: RunSummary) -> str:
    """The summary as aligned ``label  figures`` lines."""
    req, lat, cdn, a, lb = s.requests, s.latency, s.cdn, s.autoscaler, s.balancer
    rows = [
        ("scenario", f"{s.scenario} (seed {s.seed})"),
        *([("lesson", s.lesson)] if s.lesson else []),
        ("simulated", seconds(s.duration)),
        ("requests", f"{req.arrived} arrived, {req.completed} completed, {req.failed} failed, "
                     f"{req.in_flight} in flight ({s.rps:.1f} rps)"),
        ("latency", "  ".join(f"{k} {_ms(getattr(lat, k))}" for k in ("mean", "p50", "p95",
                                                                       "p99"))),
        ("errors", _errors(s)),
        ("cdn", f"hit ratio {_pct(cdn.hit_ratio)} ({plural(cdn.hits, 'hit')}, "
                f"{plural(cdn.misses, 'miss', 'misses')}, {cdn.collapsed} collapsed, "
                f"{plural(cdn.origin_fetches, 'origin fetch', 'origin fetches')})"),
        ("autoscaler", f"{plural(a.actions, 'action')} ({a.scale_ups} up, {a.scale_downs} down); "
                       f"replicas {a.replicas} (max {a.max_replicas}); "
                       f"{plural(a.vm_boots, 'VM boot')}"),
        ("balancer", f"{lb.algorithm}; {plural(lb.ejections, 'ejection')}, "
                     f"{plural(lb.health_changes, 'health change')}, "
                     f"{plural(lb.retries, 'retry', 'retries')}"),
        ("slo", _slo(s)),
    ]
    db = s.database
    if db is not None:
        mode = db.mode + (" (fell back to async)" if db.degraded else "")
        rows.append(("database", f"{mode}, leader {db.leader or 'none'}; "
                                 f"{plural(db.failovers, 'failover')}, "
                                 f"{plural(db.lost_writes, 'lost write')}, "
                                 f"{plural(db.conflicts, 'conflict')}, {db.rewound} rewound, "
                                 f"{plural(db.stale_reads, 'stale read')}, "
                                 f"{plural(db.backups, 'backup')}"))
        r = db.last_restore
        if r is not None:
            rows.append(("restore", f"to {seconds(r.recovery_point)}: RTO {seconds(r.rto)}, "
                                    f"RPO {seconds(r.rpo)}, {plural(r.restored, 'write')} kept, "
                                    f"{r.discarded} dropped"))
    if s.storage is not None:
        where = s.storage.data_dir or "memory"
        rows.append(("storage", f"{plural(s.storage.rows_written, 'row')} in SQLite ({where}), "
                                f"{plural(s.storage.backpressure_waits, 'back-pressure wait')}"))
    if s.consistency is not None:
        rows.append(("consistency", "every node's rows match the model" if s.consistency.ok
                     else "MISMATCH"))
    rows.append(("faults", "; ".join(s.faults) if s.faults else "none"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def burn(x: float) -> str:
    """A burn rate: 0.4x, 12x, >999x."""
    if x >= 999.5:
        return ">999x"
    return f"{x:.1f}x" if x < 10 else f"{x:.0f}x"


def _budget(left: float, rate: float) -> str:
    return "budget spent" if left <= 0 and rate > 0 else f"{_pct(left)} of budget left"


def _slo(s: RunSummary) -> str:
    slo = s.slo
    return (f"target {_pct(slo.target)} within {seconds(slo.latency)}; "
            f"run: good {_pct(slo.good_ratio)}, burn {burn(slo.burn_rate)}, "
            f"{_budget(slo.budget_remaining, slo.burn_rate)}; "
            f"last {seconds(slo.window)}: good {_pct(slo.window_good_ratio)}, "
            f"burn {burn(slo.window_burn_rate)}, "
            f"{_budget(slo.window_budget_remaining, slo.window_burn_rate)}")


def _errors(s: RunSummary) -> str:
    text = f"{_pct(s.error_rate)} of requests"
    counted = sorted(((k, v) for k, v in s.errors.items() if v), key=lambda kv: (-kv[1], kv[0]))
    if counted:
        text += " (" + ", ".join(f"{k} {v}" for k, v in counted) + ")"
    return text


def _param(p: ParamInfo) -> str:
    if p.type == "choice":
        what = "|".join(p.choices)
    elif p.type == "bool":
        what = "true|false"
    else:
        lo = "" if p.min is None else f"{p.min:g}"
        hi = "" if p.max is None else f"{p.max:g}"
        what = f"{lo}..{hi}" + (f" {p.unit}" if p.unit else "")
    if p.relative:
        what += "|toggle" if p.type == "bool" else "|next|previous"
    default = "" if p.default is None else f"={p.default}"
    return f"{p.name}{default} ({what})" + (" required" if p.required else "")


def format_catalogue(actions: tuple[ActionInfo, ...]) -> str:
    """One block per command: name, target, keys, description and parameters."""
    lines: list[str] = []
    for group in ("fault", "control", "driver"):
        lines.append(f"{group}s:")
        for a in actions:
            if a.group != group:
                continue
            target = "/".join(a.targets) or "-"
            if a.target_optional:
                target = f"[{target}]"
            keys = " ".join(k.key for k in a.keys)
            lines.append(f"  {a.name:<16} {target:<38} {('keys ' + keys) if keys else ''}")
            lines.append(f"      {a.description}")
            if a.params:
                lines.append("      " + "; ".join(_param(p) for p in a.params))
    return "\n".join(lines)
