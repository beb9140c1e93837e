"""Backups: periodic full base backups plus a continuous log archive, and point-in-time restore.

The archive follows the leader's history every ``archive_interval`` (so the newest recovery
point lags by up to that). A restore to time T lays down the latest base backup at or before T
and replays the archive up to the recovery point min(T, last archive time); the database is
unavailable meanwhile. RTO (how long it took) and RPO (how much recent history it dropped) are
measured and reported.
"""

from __future__ import annotations

from typing import Any

from stackyard.core.config import BackupConfig
from stackyard.core.kernel import Kernel
from stackyard.core.model.events import Emit

from .database import DatabaseTier, Write


class Backups:
    def __init__(self, cfg: BackupConfig, kernel: Kernel, tier: DatabaseTier, emit: Emit) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.tier = tier
        self.emit = emit
        self.base: list[tuple[float, int]] = [(0.0, 0)]
        """(time, LSN) of each full backup; the empty database at t=0 is the first."""
        self.archive: list[Write] = []
        self.archived_at = 0.0
        self.last_restore: dict[str, Any] = {}
        self.restores = 0
        kernel.call_later(cfg.archive_interval, self._archive_tick)
        kernel.call_later(cfg.interval, self._backup_tick)

    def _archive_tick(self, _: object) -> None:
        self.kernel.call_later(self.cfg.archive_interval, self._archive_tick)
        self.ship()

    def ship(self) -> None:
        """Bring the archive in line with the leader's history (a timeline switch truncates)."""
        leader = self.tier.leader_node()
        if not leader.up or leader.role != "primary" or self.tier.restoring:
            return
        hist = leader.log
        arch = self.archive
        n = min(len(arch), len(hist))
        if n and arch[n - 1] is not hist[n - 1]:
            common = 0
            for a, b in zip(arch, hist, strict=False):
                if a is not b:
                    break
                common += 1
            n = common
        del arch[n:]
        arch.extend(hist[n:])
        self.archived_at = self.kernel.now

    def _backup_tick(self, _: object) -> None:
        self.kernel.call_later(self.cfg.interval, self._backup_tick)
        self.take()

    def take(self, manual: bool = False) -> bool:
        """Take a full base backup now (``manual``: asked for by the user, not the schedule)."""
        leader = self.tier.leader_node()
        if not leader.up or leader.role != "primary" or self.tier.restoring:
            self.emit("warning", "backup", "backup_skipped", "base backup skipped",
                      "no healthy primary to copy")
            return False
        self.ship()
        self.base.append((self.kernel.now, len(leader.log)))
        why = ("taken on request" if manual else f"scheduled every {self.cfg.interval:g} s")
        self.emit("info", leader.id, "backup", f"base backup at LSN {len(leader.log)}",
                  f"{why}; the archive covers the rest")
        return True

    def restore(self, target: float | None) -> dict[str, Any]:
        """Start a point-in-time restore to ``target`` (None: as recent as the archive allows)."""
        tier = self.tier
        now = self.kernel.now
        if tier.restoring:
            raise ValueError("restore: a restore is already running")
        t = now if target is None else target
        if t < 0 or t > now:
            raise ValueError(f"restore.time: expected a time between 0 and now ({now:.1f}), "
                             f"got {t:g}")
        self.ship()
        point = min(t, self.archived_at)
        restored = [w for w in self.archive if w.committed_at <= point]
        base = max((b for b in self.base if b[0] <= point), key=lambda b: b[0])
        replay = max(len(restored) - base[1], 0)
        rto = self.cfg.restore_base + replay / self.cfg.replay_rate
        history = len(tier.leader_node().log)
        tier.restoring = True
        tier.epoch += 1
        for n in tier.nodes.values():
            tier.abort_node(n, "db_restoring")
            self.kernel.cancel(n.apply_handle)
            n.apply_handle = None
            self.kernel.cancel(n.fence_handle)
            n.fence_handle = None
            n.state = "restoring"
        self.last_restore = {
            "target": t,
            "recovery_point": point,
            "started": now,
            "finished": None,
            "rto": rto,
            "rpo": now - point,
            "base_backup": base[0],
            "restored": len(restored),
            "discarded": max(history - len(restored), 0),
        }
        self.emit("warning", "database", "restore_started",
                  f"point-in-time restore to {point:.1f} s started",
                  f"base backup of {base[0]:.0f} s + {replay} archived writes; "
                  f"database unavailable for about {rto:.1f} s")
        self.kernel.call_later(rto, self._restored, restored)
        return self.last_restore

    def _restored(self, restored: list[Write]) -> None:
        tier = self.tier
        now = self.kernel.now
        leader = tier.leader_node()
        if not leader.up:
            leader = next((n for n in tier.nodes.values() if n.up), leader)
        timeline = max(n.timeline for n in tier.nodes.values()) + 1
        for n in tier.nodes.values():
            n.log = list(restored)
            n.applied = len(restored)
            n.state = ""
            n.role = "primary" if n is leader else "replica"
            n.confirmed = {}
            n.timeline = timeline
            if tier.sink is not None:
                tier.sink.reset(n.id, restored)
        self.archive = list(restored)
        tier.restoring = False
        tier.leader = leader.id
        tier.lease_expiry = now + tier.cfg.failover.ttl
        leader.last_renew = now
        tier.optime = len(restored)
        tier.acked_lsn = len(restored)
        tier.key_lsn = {w.key: w.lsn for w in restored}
        tier.client_lsn = {}
        tier.degraded = False
        self.restores += 1
        self.last_restore["finished"] = now
        self.emit("info", leader.id, "restore_done",
                  f"restore finished: {len(restored)} writes, "
                  f"RTO {self.last_restore['rto']:.1f} s, RPO {self.last_restore['rpo']:.1f} s",
                  f"{leader.id} is primary on timeline {timeline}; replicas were re-cloned")
