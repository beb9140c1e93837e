"""Patroni-like high availability for the database tier.

The leader renews a lease in the lease store every ``loop_wait``; without a renewal for ``ttl``
the lease expires and the most advanced healthy replica within ``maximum_lag_on_failover`` is
promoted (in sync mode only one that has confirmed every acknowledged write). In async mode the
acknowledged writes beyond the promoted replica are lost, and counted. A primary that cannot
renew demotes itself when its lease runs out by its own clock (fencing); with fencing off a
partitioned primary keeps taking writes: split brain. An old primary rejoins as a replica after
rewinding its divergent writes.
"""

from __future__ import annotations

from stackyard.core.config import FailoverConfig
from stackyard.core.kernel import Kernel
from stackyard.core.model.events import Emit

from .database import DatabaseTier, DbNode

REWIND_TIME = 3.0
"""Seconds an old primary spends in pg_rewind before it follows the new leader."""


class Failover:
    def __init__(self, cfg: FailoverConfig, kernel: Kernel, tier: DatabaseTier, emit: Emit) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.tier = tier
        self.emit = emit
        self.promoting: str = ""
        self._expired_noted = False
        self._no_candidate_noted = False
        kernel.call_later(0.0, self._loop)

    def reaches_store(self, n: DbNode) -> bool:
        return n.up and not n.partition and not self.tier.repl_link.partitioned

    # -- the HA loop ------------------------------------------------------------------------

    def _loop(self, _: object) -> None:
        self.kernel.call_later(self.cfg.loop_wait, self._loop)
        self.tick()

    def tick(self) -> None:
        """One pass of every node's HA loop (also run right after topology changes)."""
        tier = self.tier
        if tier.restoring:
            return
        now = self.kernel.now
        for n in tier.nodes.values():
            if not n.up or n.state in ("rewinding", "promoting", "recloning"):
                continue
            if n.role == "primary":
                self._primary_loop(n, now)
            else:
                self._replica_loop(n)
        if now >= tier.lease_expiry and not self.promoting:
            self._elect(now)

    def _primary_loop(self, n: DbNode, now: float) -> None:
        tier = self.tier
        if self.reaches_store(n):
            if tier.leader == n.id:
                if now < tier.lease_expiry or not self.promoting:
                    if n.state == "fenced":
                        n.state = ""
                        self.emit("info", n.id, "unfenced", f"{n.id} is primary again",
                                  "it reaches the lease store again and renewed its lease; "
                                  "no replica was promoted meanwhile")
                    tier.lease_expiry = now + self.cfg.ttl
                    tier.optime = n.end
                    n.last_renew = now
                    self.kernel.cancel(n.fence_handle)
                    n.fence_handle = None
                    self._expired_noted = False
            else:
                self._rejoin(n, "another node holds the leader lease")
        elif tier.fencing and n.fence_handle is None and n.state != "fenced":
            at = n.last_renew + self.cfg.ttl + n.skew
            n.fence_handle = self.kernel.call_at(at, self._fence, n)

    def _replica_loop(self, r: DbNode) -> None:
        tier = self.tier
        leader = tier.leader_node()
        if not self.reaches_store(r) or leader is r or leader.role != "primary":
            return
        if tier.common(r, leader) < r.end:
            self._rewind(r, leader, "its log diverged from the new leader's")
        elif tier.linked(leader, r):
            r.timeline = leader.timeline
            tier.catch_up(r, leader)

    def _fence(self, n: DbNode) -> None:
        n.fence_handle = None
        if n.role != "primary" or not n.up or self.reaches_store(n):
            return
        self._note_expired()  # the cause, logged before the demotion it brings
        n.state = "fenced"
        self.tier.abort_node(n, "db_read_only")
        why = "it could not renew its leader lease"
        if n.skew:
            why += f" (its clock runs {n.skew:g} s behind, so it noticed late)"
        self.emit("warning", n.id, "fenced", f"{n.id} demoted itself", why)

    # -- election ---------------------------------------------------------------------------

    def _note_expired(self) -> None:
        """Log the lease's expiry once per lapse (by the lease store's clock)."""
        tier = self.tier
        if not self._expired_noted and self.kernel.now >= tier.lease_expiry:
            self._expired_noted = True
            self.emit("warning", tier.leader, "lease_expired", "leader lease expired",
                      f"{tier.leader} did not renew it for {self.cfg.ttl:g} s")

    def _elect(self, now: float) -> None:
        tier = self.tier
        self._note_expired()
        candidates = []
        reasons = []
        for r in tier.nodes.values():
            if r.role != "replica" or r.state or not self.reaches_store(r):
                continue
            lag = tier.optime - r.end
            if lag > self.cfg.maximum_lag_on_failover:
                reasons.append(f"{r.id} is {lag} LSNs behind")
                continue
            synchronous = tier.mode == "sync" or (tier.mode == "semi_sync" and not tier.degraded)
            if synchronous and r.end < tier.acked_lsn:
                reasons.append(f"{r.id} lacks acknowledged writes")
                continue
            if not tier.can_replay(r):
                reasons.append(f"{r.id} lost part of the log it had not applied")
                continue
            candidates.append(r)
        if not candidates:
            if not self._no_candidate_noted:
                self._no_candidate_noted = True
                why = "; ".join(reasons) or "no healthy replica reaches the lease store"
                self.emit("error", "database", "no_failover", "no replica can be promoted", why)
            return
        self._no_candidate_noted = False
        best = max(candidates, key=lambda r: (r.end, -int(r.id.split("-")[1])))
        self.promote(best, f"the most advanced healthy replica (LSN {best.end}; the old "
                           f"leader's last optime in the lease store: {tier.optime})")

    def promote(self, r: DbNode, why: str) -> None:
        self.promoting = r.id
        self.tier.stop_apply(r)
        r.state = "promoting"
        self.emit("warning", r.id, "promoting", f"promoting {r.id}", why)
        self.kernel.call_later(self.cfg.promote_time, self._promoted, (r, self.tier.epoch))

    def _promoted(self, arg: tuple[DbNode, int]) -> None:
        r, epoch = arg
        tier = self.tier
        if epoch != tier.epoch:
            self.promoting = ""  # a restore replaced the whole cluster meanwhile
            return
        self.promoting = ""
        if not r.up or not self.reaches_store(r):
            r.state = ""
            tier.kick_apply(r)
            self.emit("warning", r.id, "promotion_failed", f"{r.id} was not promoted",
                      "it went away while promoting")
            return
        now = self.kernel.now
        old = tier.leader_node()
        # a promoted replica replays everything it received before it opens for writes
        tier.apply_all(r)
        cut = r.end
        lost = []
        if old is not r:
            shared = tier.common(r, old)
            lost = [w for w in tier.records(old, shared, old.end) if w.acked_at is not None]
        for w in lost:
            w.lost = True
        tier.lost_writes += len(lost)
        tier.lost.extend(lost)
        tier.fork(r)
        r.role = "primary"
        r.state = ""
        r.timeline += 1
        r.confirmed = {}
        r.last_renew = now
        tier.leader = r.id
        tier.lease_expiry = now + self.cfg.ttl
        optime = tier.optime
        tier.optime = cut
        tier.failovers += 1
        tier.last_promotion = {"node": r.id, "time": now, "lsn": cut, "from": old.id,
                               "lost": len(lost), "optime": optime}
        tier.acked_lsn = min(tier.acked_lsn, cut)
        tier.key_lsn = {k: v for k, v in tier.key_lsn.items() if v <= cut}
        tier.client_lsn = {c: v for c, v in tier.client_lsn.items() if v <= cut}
        self._expired_noted = False
        why = f"timeline {r.timeline}"
        if lost:
            why += f"; {len(lost)} acknowledged writes beyond LSN {cut} are lost"
        self.emit("error" if lost else "info", r.id, "promoted", f"{r.id} is the new primary", why)
        if old is not r and old.role == "primary" and old.up and not old.state \
                and tier.app_reachable(old):
            self.emit("error", old.id, "split_brain", f"split brain: {old.id} and {r.id} both "
                      "accept writes", "fencing is off and the old primary cannot see the lease")
        for other in tier.nodes.values():
            if other is not r and other.role == "replica" and not other.state:
                self._replica_loop(other)

    # -- rejoin and rewind ------------------------------------------------------------------

    def _rejoin(self, n: DbNode, why: str) -> None:
        tier = self.tier
        tier.abort_node(n, "db_read_only")
        n.role = "replica"
        n.confirmed = {}
        self.kernel.cancel(n.fence_handle)
        n.fence_handle = None
        leader = tier.leader_node()
        self._rewind(n, leader, why)

    def _rewind(self, n: DbNode, leader: DbNode, why: str) -> None:
        common = self.tier.common(n, leader)
        self.tier.stop_apply(n)
        digest = n.digest if common >= n.applied else self.tier.digest_between(n, leader, common)
        divergent = n.end - common
        n.state = "rewinding"
        self.kernel.call_later(REWIND_TIME, self._rewound, (n, common, divergent, digest))
        self.emit("warning", n.id, "rewind", f"{n.id} rewinds {divergent} divergent writes",
                  why)

    def _rewound(self, arg: tuple[DbNode, int, int, int]) -> None:
        n, common, divergent, digest = arg
        tier = self.tier
        if n.state != "rewinding":
            return
        tier.truncate(n, common, digest)
        tier.rewound += divergent
        n.state = ""
        n.timeline = tier.leader_node().timeline
        self.emit("info", n.id, "rejoined", f"{n.id} follows {tier.leader}",
                  f"rewound {divergent} writes; it catches up from LSN {common}")
        self._replica_loop(n)
        tier.kick_apply(n)

    # -- faults and commands ----------------------------------------------------------------

    def kill(self, n: DbNode) -> None:
        tier = self.tier
        tier.stop_apply(n)
        n.up = False
        tier.abort_node(n, "db_down")
        if n.state == "promoting":
            n.state = ""
        self.emit("error", n.id, "db_down", f"{n.id} ({n.role}) down",
                  f"killed; it restarts in {self.cfg.restart:g} s")
        self.kernel.call_later(self.cfg.restart, self._restart, n)

    def _restart(self, n: DbNode) -> None:
        if n.up:
            return
        n.up = True
        if n.state == "fenced":
            n.state = ""
        why = "crash recovery finished"
        if n.role == "primary" and self.tier.leader == n.id and \
                self.kernel.now < self.tier.lease_expiry:
            why += "; it still holds the lease, so it stays primary"
        self.emit("info", n.id, "db_up", f"{n.id} back", why)
        self.tier.kick_apply(n)
        self.tick()

    def set_partition(self, n: DbNode, scope: str) -> None:
        n.partition = scope
        self.tick()  # a fenced primary that reaches the store again resumes in its own loop

    def switchover(self, target: DbNode | None) -> DbNode:
        """Graceful handover: the primary stops writes, the target catches up, then takes over."""
        tier = self.tier
        leader = tier.leader_node()
        if leader.role != "primary" or not leader.up or leader.state:
            raise ValueError(f"switchover: the leader {leader.id} is not a healthy primary")
        healthy = [r for r in tier.nodes.values()
                   if r.role == "replica" and not r.state and tier.linked(leader, r)]
        if target is None:
            if not healthy:
                raise ValueError("switchover: no healthy replica to hand over to")
            target = max(healthy, key=lambda r: (r.end, -int(r.id.split("-")[1])))
        elif target not in healthy:
            raise ValueError(f"switchover.target: {target.id} is not a healthy replica "
                             "connected to the primary")
        leader.state = "demoting"
        tier.abort_node(leader, "db_read_only")
        tier.receive_all(target, leader)
        self.emit("info", leader.id, "switchover",
                  f"switchover {leader.id} -> {target.id}", "requested by the user")
        self.kernel.call_later(self.cfg.promote_time, self._switch, (leader, target, tier.epoch))
        return target

    def _switch(self, arg: tuple[DbNode, DbNode, int]) -> None:
        old, target, epoch = arg
        if epoch != self.tier.epoch:
            return  # a restore replaced the whole cluster meanwhile
        self.promote(target, "switchover: it has every write of the old primary")
        old.role = "replica"
        old.state = ""
        old.confirmed = {}
        self.tier.lease_expiry = self.kernel.now
