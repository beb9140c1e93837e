"""Exporting a recording as tables that pandas, DuckDB and Grafana read directly.

Three tables, each written to its own file beside the others:

- ``series``: one row per snapshot, node and metric — ``time, node, kind, tier, metric, value``
  (the run's KPIs appear as node ``run``, kind ``kpi``): the long format every time-series tool
  pivots as it likes (``df.pivot_table(index="time", columns=["node", "metric"])``);
- ``events``: ``time, severity, component, kind, message, why``;
- ``commands``: ``time, kind, target, params, origin, at, id`` (params as a JSON object).

Formats: CSV (RFC 4180, a header row) and JSON Lines (one object per line). Each file is
written under a temporary name and renamed when complete, so a failed export leaves no partial
file behind. Parquet is not offered: the libraries that write it (pyarrow, fastparquet, polars)
are tens of megabytes with numpy, and DuckDB turns either format into Parquet in one statement.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Final

from stackyard.core.recording import Recording

FORMATS: Final = ("csv", "jsonl")
TABLES: Final = ("series", "events", "commands")
COLUMNS: Final = {
    "series": ("time", "node", "kind", "tier", "metric", "value"),
    "events": ("time", "severity", "component", "kind", "message", "why"),
    "commands": ("time", "kind", "target", "params", "origin", "at", "id"),
}


class ExportError(Exception):
    """An export that cannot be written; one line naming the file."""


def paths(rec: Recording, out_dir: Path, fmt: str) -> dict[str, Path]:
    """Where each table goes: ``<out_dir>/<recording stem>.<table>.<fmt>``."""
    return {t: out_dir / f"{rec.path.stem}.{t}.{fmt}" for t in TABLES}


def export(rec: Recording, out_dir: Path, fmt: str, *, force: bool = False,
           progress: Callable[[float], None] | None = None) -> list[Path]:
    """Write every table of ``rec`` in ``fmt`` into ``out_dir``; returns the files written.
    Refuses to replace existing files unless ``force``."""
    if fmt not in FORMATS:
        raise ExportError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if not out_dir.is_dir():
        raise ExportError(f"{out_dir}: no such directory")
    targets = paths(rec, out_dir, fmt)
    if not force:
        taken = [str(p) for p in targets.values() if p.exists()]
        if taken:
            raise ExportError(f"{taken[0]}: already exists (--force replaces it)")
    rows: dict[str, Callable[[], Iterator[tuple[Any, ...]]]] = {
        "series": lambda: _series(rec, progress),
        "events": lambda: _events(rec),
        "commands": lambda: _commands(rec),
    }
    written = []
    for table, path in targets.items():
        _write(path, fmt, COLUMNS[table], rows[table]())
        written.append(path)
    return written


def _write(path: Path, fmt: str, columns: tuple[str, ...],
           rows: Iterator[tuple[Any, ...]]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("w", newline="", encoding="utf-8") as f:
            (_csv if fmt == "csv" else _jsonl)(f, columns, rows)
        os.replace(partial, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise ExportError(f"{path}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise


def _csv(f: IO[str], columns: tuple[str, ...], rows: Iterator[tuple[Any, ...]]) -> None:
    out = csv.writer(f, lineterminator="\n")
    out.writerow(columns)
    out.writerows((_cell(v) for v in row) for row in rows)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return value


def _jsonl(f: IO[str], columns: tuple[str, ...], rows: Iterator[tuple[Any, ...]]) -> None:
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    for row in rows:
        f.write(dumps(dict(zip(columns, row, strict=True))))
        f.write("\n")


def _series(rec: Recording,
            progress: Callable[[float], None] | None) -> Iterator[tuple[Any, ...]]:
    n = len(rec.seqs)
    for i in range(n):
        snap = rec.snapshot(i)
        t = snap.time
        for metric, value in snap.kpis.numbers().items():
            yield t, "run", "kpi", "", metric, value
        for node in snap.nodes:
            for metric, value in node.metrics().items():
                yield t, node.id, node.kind, node.tier, metric, value
        if progress is not None and i % 50 == 0:
            progress(i / n)


def _events(rec: Recording) -> Iterator[tuple[Any, ...]]:
    for _, e in rec.all_events():
        yield e.time, e.severity, e.component, e.kind, e.message, e.why


def _commands(rec: Recording) -> Iterator[tuple[Any, ...]]:
    for t, c in rec.commands():
        yield t, c.kind, c.target, dict(sorted(c.params.items())), c.origin, c.at, c.id
