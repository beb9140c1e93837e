"""Per-node metric history for the detail screen's charts, fed from the snapshot stream."""

from __future__ import annotations

from collections import deque

from stackyard.core.protocol import Snapshot

KEEP = 240
"""Samples kept per metric (one per snapshot, at most one per ``min_gap`` simulated seconds)."""


class History:
    """The recent values of every node's metrics, and the KPIs, keyed by simulated time."""

    def __init__(self, keep: int = KEEP, min_gap: float = 0.5) -> None:
        self.keep = keep
        self.min_gap = min_gap
        self.nodes: dict[str, dict[str, deque[float]]] = {}
        self.kpi_rings: dict[str, deque[float]] = {}
        self._last_time = float("-inf")

    def add(self, snap: Snapshot) -> None:
        if snap.time < self._last_time + self.min_gap and snap.time >= self._last_time:
            return
        self._last_time = snap.time
        seen = set()
        for node in snap.nodes:
            key_ = f"{node.kind}:{node.id}"
            seen.add(key_)
            series = self.nodes.setdefault(key_, {})
            for key, value in node.metrics().items():
                ring = series.get(key)
                if ring is None:
                    ring = series[key] = deque(maxlen=self.keep)
                ring.append(float(value))
        for key, value in snap.kpis.numbers().items():
            ring = self.kpi_rings.get(key)
            if ring is None:
                ring = self.kpi_rings[key] = deque(maxlen=self.keep)
            ring.append(float(value))
        for gone in [n for n in self.nodes if n not in seen]:
            del self.nodes[gone]

    def series(self, node_id: str, kind: str) -> dict[str, deque[float]]:
        return self.nodes.get(f"{kind}:{node_id}", {})
