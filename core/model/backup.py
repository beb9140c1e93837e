"""Backups: periodic full base backups plus a continuous log archive, and point-in-time restore.

The archive follows the leader's history every ``archive_interval`` (so the newest recovery
point lags by up to that). A restore to time T lays down the latest base backup at or before T
and replays the archive up to the recovery point min(T, last archive time); the database is
unavailable meanwhile. RTO (how long it took) and RPO (how much recent history it dropped) are
measured and reported.

Retention keeps the last ``retention`` base backups and the archive from the oldest of them on
(pgBackRest's full-backup retention): the restore window runs from that backup to the last
archive time, and a point before it is refused as no longer restorable.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from typing import Any, NamedTuple

from stackyard.core.config import BackupConfig
from stackyard.core.kernel import Kernel
from stackyard.core.model.events import Emit

from .database import DatabaseTier, Write
from .wal import Branch, common, digest_at, owner, records


class BaseBackup(NamedTuple):
    """A full copy of the leader's data: when, up to which LSN, and that history's digest."""

    time: float
    lsn: int
    digest: int


class Backups:
    def __init__(self, cfg: BackupConfig, kernel: Kernel, tier: DatabaseTier, emit: Emit) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.tier = tier
        self.emit = emit
        self.base: deque[BaseBackup] = deque([BaseBackup(0.0, 0, 0)])
        """The base backups kept, oldest first; the empty database at t=0 is the first."""
        self.taken = 0
        """Base backups taken (the one of the empty database not counted)."""
        self.branch: Branch = tier.leader_node().branch
        """The archive's history: this branch up to ``end``..."""
        self.end = 0
        self.start = 0
        """...of which it holds the records after LSN ``start`` (the oldest base backup's)."""
        self.start_digest = 0
        self.records: list[Write] = []
        self.archived_at = 0.0
        self.last_restore: dict[str, Any] = {}
        self.restores = 0
        tier.archive_history = self.history
        kernel.call_later(cfg.archive_interval, self._archive_tick)
        kernel.call_later(cfg.interval, self._backup_tick)

    @property
    def archive_lsn(self) -> int:
        """The LSN the archive reaches."""
        return self.end

    def history(self) -> tuple[Branch, int]:
        return self.branch, self.end

    def window(self) -> tuple[float, float]:
        """(earliest, latest) time a restore can reach now."""
        return self.base[0].time, self.archived_at

    def _archive_tick(self, _: object) -> None:
        self.kernel.call_later(self.cfg.archive_interval, self._archive_tick)
        self.ship()

    def ship(self) -> None:
        """Bring the archive in line with the leader's history (a timeline switch truncates)."""
        tier = self.tier
        leader = tier.leader_node()
        if not leader.up or leader.role != "primary" or tier.restoring:
            return
        c = common(self.branch, self.end, leader.branch, leader.end)
        if c < self.end:
            self._cut(c)
        new = records(leader.branch, self.end, leader.end)
        if len(new) == leader.end - self.end:
            self.records.extend(new)
        else:  # the leader no longer holds what the archive lacks: start a new chain
            self.base = deque([BaseBackup(self.kernel.now, leader.end, leader.digest)])
            self.records.clear()
            self.start = leader.end
            self.start_digest = leader.digest
            self.emit("warning", "backup", "archive_gap", "the log archive has a gap",
                      f"the primary dropped records it had not archived (database.wal_keep); "
                      f"points before {self.kernel.now:.0f} s are no longer restorable")
        self.branch = leader.branch
        self.end = leader.end
        self.archived_at = self.kernel.now

    def _digest(self, lsn: int) -> int:
        """The digest of the archive's history up to ``lsn`` (``start <= lsn <= end``)."""
        return self.records[lsn - self.start - 1].digest if lsn > self.start else self.start_digest

    def _cut(self, lsn: int) -> None:
        """The leader's history parted from the archive's at ``lsn``: drop the rest."""
        if lsn >= self.start:
            del self.records[lsn - self.start:]
        else:
            # base backups of the abandoned history cannot be restored on the new one
            while self.base and self.base[-1].lsn > lsn:
                self.base.pop()
            if not self.base:
                digest = digest_at(self.tier.leader_node().branch, lsn)
                self.base.append(BaseBackup(self.kernel.now, lsn, digest or 0))
            self.records.clear()
            self.start = lsn
            self.start_digest = self.base[0].digest
        self.end = lsn

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
        self.taken += 1
        self.base.append(BaseBackup(self.kernel.now, self.end, self._digest(self.end)))
        why = ("taken on request" if manual else f"scheduled every {self.cfg.interval:g} s")
        self.emit("info", leader.id, "backup", f"base backup at LSN {self.end}",
                  f"{why}; the archive covers the rest")
        if len(self.base) > self.cfg.retention:
            dropped = None
            while len(self.base) > self.cfg.retention:
                dropped = self.base.popleft()
            oldest = self.base[0]
            drop = min(max(oldest.lsn - self.start, 0), len(self.records))
            del self.records[:drop]
            self.start += drop
            self.start_digest = oldest.digest
            assert dropped is not None
            self.emit("info", "backup", "backup_expired",
                      f"base backup of {dropped.time:.0f} s expired",
                      f"retention keeps {self.cfg.retention}; points before "
                      f"{oldest.time:.0f} s are no longer restorable")
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
        earliest = self.base[0].time
        if t < earliest:
            raise ValueError(
                f"restore.time: expected a time between {earliest:.1f} and now ({now:.1f}); "
                f"earlier points are no longer restorable (backup.retention keeps "
                f"{self.cfg.retention} base backups), got {t:g}")
        point = min(t, self.archived_at)
        held = bisect_right(self.records, point, key=lambda w: w.committed_at)
        lsn = self.start + held
        base = self.base[0]
        for b in self.base:
            if b.time <= point and b.lsn <= lsn:
                base = b
        replay = max(lsn - base.lsn, 0)
        rto = self.cfg.restore_base + replay / self.cfg.replay_rate
        history = tier.leader_node().end
        tier.restoring = True
        tier.epoch += 1
        for n in tier.nodes.values():
            tier.abort_node(n, "db_restoring")
            tier.stop_apply(n)
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
            "base_backup": base.time,
            "restored": lsn,
            "discarded": max(history - lsn, 0),
            "window": [earliest, self.archived_at],
        }
        self.emit("warning", "database", "restore_started",
                  f"point-in-time restore to {point:.1f} s started",
                  f"base backup of {base.time:.0f} s + {replay} archived writes; "
                  f"database unavailable for about {rto:.1f} s")
        self.kernel.call_later(rto, self._restored, lsn)
        return self.last_restore

    def _restored(self, lsn: int) -> None:
        tier = self.tier
        now = self.kernel.now
        leader = tier.leader_node()
        if not leader.up:
            leader = next((n for n in tier.nodes.values() if n.up), leader)
        # whose data holds the archive's history up to the recovery point: the others copy it
        # (should none hold all of it, the recovery point comes back to what one does hold)
        held = {n: min(n.applied, common(n.branch, n.applied, self.branch, self.end))
                for n in tier.nodes.values()}
        source = max((leader, *tier.nodes.values()), key=lambda n: min(held[n], lsn))
        if held[source] < lsn:
            lsn = max(held[source], self.start)
            self.last_restore["restored"] = lsn
        digest = self._digest(min(lsn, self.end))
        branch = Branch(owner(self.branch, lsn), lsn, digest)
        timeline = max(n.timeline for n in tier.nodes.values()) + 1
        for n in tier.nodes.values():
            n.branch = branch
            n.end = n._applied = lsn
            n.digest = digest
            n.state = ""
            n.role = "primary" if n is leader else "replica"
            n.confirmed = {}
            n.timeline = timeline
        sink = tier.sink
        if sink is not None:
            sink.truncate(source.id, lsn)
            for n in tier.nodes.values():
                if n is not source:
                    sink.clone(n.id, source.id, lsn)
        if lsn < self.end:
            del self.records[max(lsn - self.start, 0):]
        self.branch = branch
        self.end = lsn
        tier.restoring = False
        tier.leader = leader.id
        tier.lease_expiry = now + tier.cfg.failover.ttl
        leader.last_renew = now
        tier.optime = lsn
        tier.acked_lsn = lsn
        tier.key_lsn = {k: v for k, v in tier.key_lsn.items() if v <= lsn}
        tier.client_lsn = {}
        tier.degraded = False
        self.restores += 1
        self.last_restore["finished"] = now
        self.emit("info", leader.id, "restore_done",
                  f"restore finished: {lsn} writes, "
                  f"RTO {self.last_restore['rto']:.1f} s, RPO {self.last_restore['rpo']:.1f} s",
                  f"{leader.id} is primary on timeline {timeline}; replicas were re-cloned")
