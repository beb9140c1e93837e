"""Replication for the database tier: shipping the log, applying it, and what is kept of it.

A primary's new records travel to its replicas as one message on the ``db-repl`` link,
delivered in order. A replica applies what it received at ``apply_rate`` records per second;
its apply position is a function of time, worked out whenever someone looks, so applying costs
no events. Records are kept only while something needs them (see :meth:`Replication.retain`).
:class:`Replication` is a part of :class:`.database.DatabaseTier`, kept in a module of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from math import floor
from typing import TYPE_CHECKING

from stackyard.core.config import DatabaseConfig
from stackyard.core.kernel import Handle, Kernel
from stackyard.core.model.events import Emit

from .wal import Branch, common, record, records

if TYPE_CHECKING:
    from .database import DbNode, Op, StorageSink, Write
    from .network import Link



class Shipment:
    """Log records on their way from a primary to its replicas (one message for all)."""

    __slots__ = ("at", "primary", "upto")

    def __init__(self, primary: DbNode, upto: int, at: float) -> None:
        self.primary = primary
        self.upto = upto
        self.at = at


class Replication:
    """Log shipping, applying and retention (the tier's state is declared here for them)."""

    # what replication itself assigns; the tier declares the rest
    __slots__ = ("_semi_timer", "degraded", "k", "mode", "reclones")

    cfg: DatabaseConfig
    kernel: Kernel
    emit: Emit
    repl_link: Link
    nodes: dict[str, DbNode]
    _writers: list[DbNode] | None
    _followers: list[DbNode]
    mode: str
    k: int
    degraded: bool
    epoch: int
    reclones: int
    sink: StorageSink | None
    archive_history: Callable[[], tuple[Branch, int] | None] | None
    _semi_timer: Handle | None

    def leader_node(self) -> DbNode:
        raise NotImplementedError

    def _routes(self) -> list[DbNode]:
        raise NotImplementedError

    def common(self, a: DbNode, b: DbNode) -> int:
        raise NotImplementedError

    def _ack(self, w: Write, op: Op | None) -> None:
        raise NotImplementedError

    # -- replication ------------------------------------------------------------------------

    def linked(self, a: DbNode, b: DbNode) -> bool:
        return (a._up and b._up and not a._partition and not b._partition
                and not self.repl_link.partitioned)

    def _ship(self, primary: DbNode) -> None:
        """Send the primary's new records towards its replicas: one message on the db-repl
        link, delivered in order (a record that cannot overtake the message before it rides
        along with it)."""
        link = self.repl_link
        if not primary._up or primary._partition or link.partitioned:
            return  # (the primary's half of linked(), for every replica at once)
        for r in self.nodes.values():
            if r is not primary and r._role == "replica" and r._up and not r._partition:
                break
        else:
            return
        now = self.kernel.now  # Link.delay inline (see Link.simple)
        at = now + (link.lo + link.draw() * link.span if link.simple else link.delay(now))
        last = primary.shipment
        if last is not None and at <= last.at:
            last.upto = primary.end
            return
        ship = Shipment(primary, primary.end, at)
        primary.shipment = ship
        self.kernel.call_at(at, self._delivered, ship)

    def _delivered(self, ship: Shipment) -> None:
        primary = ship.primary
        if primary.shipment is ship:
            primary.shipment = None
        if (primary._role != "primary" or not primary._up or primary._partition
                or self.repl_link.partitioned):
            return  # (the primary's half of linked(), for every replica at once)
        if self._writers is None:
            self._routes()
        for r in self._followers:  # replicas, in no transitional state, with their side linked
            self._receive(r, primary, ship.upto)

    def _receive(self, r: DbNode, primary: DbNode, upto: int) -> None:
        """``r`` receives ``primary``'s history up to ``upto``, unless it has diverged."""
        if upto > primary.end:
            upto = primary.end
        if upto <= r.end:
            return
        if r.branch is not primary.branch and self.common(r, primary) < r.end:
            return  # diverged: the failover loop rewinds it first
        if r.applying:
            self.sync_apply(r)
        r.branch = primary.branch
        r.end = upto
        self.kick_apply(r)
        if self.mode != "async":
            delay = self.cfg.fsync * r.disk + self.repl_link.delay(self.kernel.now)
            self.kernel.call_later(delay, self._confirm, (r, primary, upto))

    def catch_up(self, r: DbNode, primary: DbNode) -> None:
        """A (re)connected replica asks for everything it is missing."""
        if r.end < primary.end:
            self.kernel.call_later(self.repl_link.delay(self.kernel.now), self._caught_up,
                                   (r, primary, primary.end))

    def _caught_up(self, arg: tuple[DbNode, DbNode, int]) -> None:
        r, primary, upto = arg
        if (r._role == "replica" and not r._state and primary._role == "primary"
                and self.linked(primary, r)):
            self._receive(r, primary, upto)

    def _confirm(self, arg: tuple[DbNode, DbNode, int]) -> None:
        r, primary, upto = arg
        if primary._role != "primary" or not self.linked(primary, r):
            return
        if upto > primary.confirmed.get(r.id, 0):
            primary.confirmed[r.id] = upto
        self._release_waiting(primary)
        if self.degraded and upto >= primary.end:
            self.degraded = False
            self.emit("info", r.id, "semi_sync_restored", "semi-sync is synchronous again",
                      f"{r.id} caught up with the primary")

    def _release_waiting(self, primary: DbNode) -> None:
        waiting = primary.waiting
        if not waiting:
            return
        confirmed = sorted(primary.confirmed.values(), reverse=True)
        if len(confirmed) < self.k:
            return
        safe = confirmed[self.k - 1]
        while waiting and waiting[0][0].lsn <= safe:
            w, op = waiting.popleft()
            self._ack(w, op)

    def _arm_semi(self, node: DbNode) -> None:
        w = node.waiting[0][0]
        self._semi_timer = self.kernel.call_at(w.committed_at + self.cfg.semi_sync_timeout,
                                               self._semi_check, node)

    def _semi_check(self, node: DbNode) -> None:
        self._semi_timer = None
        waiting = node.waiting
        if not waiting or self.mode != "semi_sync":
            return
        w, _op = waiting[0]
        if self.kernel.now - w.committed_at >= self.cfg.semi_sync_timeout - 1e-9:
            self.degraded = True
            n = len(waiting)
            while waiting:
                w, op = waiting.popleft()
                self._ack(w, op)
            self.emit("warning", w.node, "semi_sync_fallback",
                      f"semi-sync fell back to async ({n} waiting writes acknowledged)",
                      f"no replica confirmed within {self.cfg.semi_sync_timeout:g} s")
        else:
            self._arm_semi(node)

    def set_mode(self, mode: str, k: int) -> None:
        self.mode = mode
        self.k = k
        self.degraded = False
        if mode == "async":
            for node in self.nodes.values():
                while node.waiting:
                    w, op = node.waiting.popleft()
                    self._ack(w, op)
        elif mode == "semi_sync" and self._semi_timer is None:
            for node in self.nodes.values():
                if node.waiting:
                    self._arm_semi(node)
                    break
        leader = self.leader_node()
        if mode != "async" and leader.role == "primary":
            for r in self.nodes.values():
                if r.role == "replica" and self.linked(leader, r) and r.end:
                    self.kernel.call_later(0.0, self._confirm, (r, leader, r.end))

    # -- applying the log -------------------------------------------------------------------

    def kick_apply(self, r: DbNode) -> None:
        """Start applying what it received, if it can and is not already at it."""
        if r.applying or r._applied >= r.end or not r._up or r._state:
            return
        r.applying = True
        r._apply_t = self.kernel.now
        r._apply_from = r._applied

    def stop_apply(self, r: DbNode) -> None:
        """Stop applying (down, promoting, rewinding...), keeping what it applied so far."""
        if r.applying:
            self.sync_apply(r)
            r.applying = False

    def sync_apply(self, r: DbNode) -> None:
        """Bring ``r``'s apply position up to now."""
        if not r.applying:
            return
        # (floor: int() of this non-negative number, without a type call)
        n = r._apply_from + floor((self.kernel.now - r._apply_t) * r._apply_rate + 1e-9)
        if n >= r.end:
            n = r.end
            r.applying = False
        if n > r._applied:
            self._apply_to(r, n)

    def apply_all(self, r: DbNode) -> None:
        """Apply everything it received at once (a promoted replica replays its backlog)."""
        r.applying = False
        if r._applied < r.end:
            self._apply_to(r, r.end)

    def can_replay(self, r: DbNode) -> bool:
        """Whether every record it received but has not applied is still held."""
        return r._applied >= r.end or record(r.branch, r._applied + 1) is not None

    def _apply_to(self, r: DbNode, n: int) -> None:
        b = r.branch
        if b.start <= r._applied and n <= b.end and self.sink is None:
            r._applied = n  # all on its own branch and held: the common case
            r.digest = b.records[n - b.start - 1].digest
            return
        last = record(b, n)
        if last is None or not self.can_replay(r):
            # stuck before a gap; the housekeeping re-clones it on its next pass (looking at a
            # node must not change the model, or when snapshots are taken would)
            r.applying = False
            return
        if self.sink is not None:
            for w in records(r.branch, r._applied, n):
                self.sink.apply(r.id, w)
        r._applied = n
        r.digest = last.digest

    def set_apply_rate(self, r: DbNode, rate: float) -> None:
        self.sync_apply(r)
        r._apply_rate = rate
        if r.applying:
            r._apply_t = self.kernel.now
            r._apply_from = r._applied

    def _reclone(self, r: DbNode, why: str) -> None:
        """Copy the primary's data afresh (pg_basebackup): the log it needs is gone."""
        r.applying = False
        if r._state or r._role != "replica":
            return
        r.state = "recloning"
        self.reclones += 1
        took = self.cfg.backup.restore_base
        self.emit("warning", r.id, "reclone", f"{r.id} re-clones from the primary",
                  f"{why}; it is back in about {took:g} s")
        self.kernel.call_later(took, self._recloned, (r, self.epoch))

    def _recloned(self, arg: tuple[DbNode, int]) -> None:
        r, epoch = arg
        if epoch != self.epoch or r._state != "recloning":
            return
        leader = self.leader_node()
        r.state = ""
        if not r._up or leader is r or leader._role != "primary" or not self.linked(leader, r):
            self.emit("warning", r.id, "reclone_failed", f"{r.id} could not re-clone",
                      "the primary was not reachable; it tries again when it reconnects")
            return
        r.branch = leader.branch
        r.end = r._applied = leader.end
        r.digest = leader.digest
        r.timeline = leader.timeline
        if self.sink is not None:
            self.sink.clone(r.id, leader.id, leader.end)
        self.emit("info", r.id, "reclone_done", f"{r.id} re-cloned at LSN {r.end}",
                  f"it follows {leader.id} again")

    # -- memory: what is kept ---------------------------------------------------------------

    def _housekeeping(self, _: object) -> None:
        """Once a second: bring the apply positions up to date (so storage keeps up) and drop
        the records nothing needs any more."""
        self.kernel.call_later(1.0, self._housekeeping)
        for n in self.nodes.values():
            if n.applying:
                self.sync_apply(n)
            if n._applied < n.end and not n._state and n._up and not self.can_replay(n):
                self._reclone(n, f"the log it had not applied yet is gone (database.wal_keep "
                                 f"= {self.cfg.wal_keep} records)")
        self.retain()

    def retain(self) -> None:
        """Trim every branch to what is still needed: the records each node has yet to apply,
        what the leader has yet to ship to each replica or copy to the archive (and needs for
        lag figures), at most ``wal_keep`` records per branch; prune dead ancestry."""
        leader = self.leader_node()
        needs: list[tuple[Branch, int]] = []
        tips: list[Branch] = []
        for n in self.nodes.values():
            tips.append(n.branch)
            if n._applied < n.end:
                needs.append((n.branch, n._applied + 1))
            if n is not leader:
                c = common(n.branch, n._applied, leader.branch, leader.end)
                needs.append((leader.branch, c + 1))
        archive = self.archive_history() if self.archive_history is not None else None
        if archive is not None:
            tips.append(archive[0])
            c = common(archive[0], archive[1], leader.branch, leader.end)
            needs.append((leader.branch, c + 1))
        keep: dict[Branch, int] = {}
        for branch, lsn in needs:
            while lsn <= branch.fork and branch.parent is not None:
                if keep.get(branch, math.inf) > branch.fork + 1:
                    keep[branch] = branch.fork + 1
                branch = branch.parent
            if keep.get(branch, math.inf) > lsn:
                keep[branch] = lsn
        live: dict[Branch, int] = {}
        """Each live branch, with the furthest LSN a live descendant forked from it at."""
        for tip in tips:
            up: Branch | None = tip
            while up is not None and up not in live:
                live[up] = -1
                up = up.parent
        for b in live:
            if b.parent is not None and b.fork > live[b.parent]:
                live[b.parent] = b.fork
        tip_set = set(tips)
        wal_keep = self.cfg.wal_keep
        for b, furthest in live.items():
            if b not in tip_set and furthest >= 0:
                b.truncate(furthest)  # nobody's history reaches past its last fork
            b.trim(max(keep.get(b, b.end + 1), b.end - wal_keep + 1))
        # every live history descends from their common ancestor: above it nothing is needed
        lca = tips[0]
        for tip in tips[1:]:
            lca = _lca(lca, tip)
        if lca.parent is not None and all(lsn > lca.fork for _, lsn in needs):
            lca.parent = None


def _lca(a: Branch, b: Branch) -> Branch:
    while a is not b:
        if a.depth < b.depth:
            a, b = b, a
        if a.parent is None:
            return a
        a = a.parent
    return a


