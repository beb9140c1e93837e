"""The autoscaler, with Kubernetes HPA semantics (DESIGN.md §3)."""

from __future__ import annotations

import math
from collections import deque

from stackyard.core.config import AutoscalerConfig
from stackyard.core.kernel import Kernel
from stackyard.core.model.events import Emit

from .compute import RUNNING, Cluster


class Autoscaler:
    """Every ``period``: desired = ceil(current x utilisation / target), skipped within the
    tolerance; scale-up at once but bounded per period; scale-down to the highest
    recommendation of the stabilisation window."""

    def __init__(self, cfg: AutoscalerConfig, kernel: Kernel, cluster: Cluster, emit: Emit) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.cluster = cluster
        self.emit = emit
        self.enabled = cfg.enabled
        self.min = cfg.min
        self.max = cfg.max
        self.target = cfg.target
        self.utilisation = 0.0
        self.recommendation = cluster.replicas
        self.last_decision = "none yet"
        self.scale_ups = 0
        self.scale_downs = 0
        self.max_replicas = cluster.replicas
        self._history: deque[tuple[float, int]] = deque([(kernel.now, cluster.replicas)])
        """Recommendations of the stabilisation window, seeded with the starting count."""
        kernel.call_later(cfg.period, self._sync)

    def _sync(self, _: object) -> None:
        self.kernel.call_later(self.cfg.period, self._sync)
        now = self.kernel.now
        ready = [c for c in self.cluster.containers.values() if c.state == RUNNING]
        if not ready:
            return
        util = sum(c.utilisation(now) for c in ready) / len(ready)
        for c in ready:
            c.mark(now)
        self.utilisation = util
        if not self.enabled:
            return
        self.decide(util, now, len(ready))

    def decide(self, util: float, now: float, running: int | None = None) -> None:
        """``util`` is the mean utilisation of the ``running`` ready containers; the others
        (starting or pending) count as idle when scaling up and as at target when scaling
        down, as the HPA does for pods without metrics."""
        cfg = self.cfg
        current = self.cluster.replicas
        if running is None:
            running = current
        usage = util * running
        missing = max(current - running, 0)
        ratio = util / self.target
        if abs(ratio - 1.0) <= cfg.tolerance:
            rec = current
        elif ratio > 1.0:
            rec = math.ceil(usage / self.target - 1e-9)
            if rec <= current:
                rec = current
        else:
            rec = math.ceil(usage / self.target + missing - 1e-9)
        rec = min(max(rec, self.min), self.max)
        self.recommendation = rec
        self._history.append((now, rec))
        while self._history and self._history[0][0] < now - cfg.stabilization:
            self._history.popleft()
        why = f"CPU {util:.0%} vs target {self.target:.0%} on {current} replicas"
        if rec > current:
            limit = max(math.ceil(current * (1.0 + cfg.max_up_percent)), current + cfg.max_up_pods)
            desired = min(rec, limit)
            self.scale_ups += 1
            self._apply(desired, current, "up", why)
        elif rec < current:
            desired = max(r for _, r in self._history)
            if desired < current:
                self.scale_downs += 1
                self._apply(desired, current, "down", why + "; stabilisation window allows it")
            else:
                self.last_decision = f"hold {current} (want {rec}, window max {desired})"
        else:
            self.last_decision = f"hold {current}"

    def _apply(self, desired: int, current: int, direction: str, why: str) -> None:
        self.last_decision = f"{direction} {current} -> {desired}"
        self.max_replicas = max(self.max_replicas, desired)
        self.emit("info", "autoscaler", f"scale_{direction}",
                  f"scale {direction} {current} -> {desired} replicas", why)
        self.cluster.set_replicas(desired)
