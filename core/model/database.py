"""The database tier: a primary and replicas with connection pools, commits, replication, lag.

The application tier talks to it only through :meth:`DatabaseTier.submit`. Writes go to the
primary and commit with an fsync; each gets the next LSN (its position in the node's log).
Replicas receive the log over the ``db-repl`` link and apply it at a finite rate, so lag and
stale reads are real. Acknowledgement follows the replication mode: async (after the local
commit), sync (after ``k`` replicas confirm) or semi-sync (sync until a timeout, then async until
a replica catches up). Failover lives in :mod:`.failover`, backups in :mod:`.backup`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from stackyard.core.config import DatabaseConfig
from stackyard.core.kernel import Handle, Kernel
from stackyard.core.metrics import Meter
from stackyard.core.model.events import Emit

if TYPE_CHECKING:
    from .balancer import Attempt
    from .network import Link

DbCallback = Callable[["Attempt", bool, str], None]

QUEUE_LIMIT = 1000
"""Queries waiting for a connection on one node before it refuses more."""
FOLD_LIMIT = 0.001
"""A network trip up to this is folded into the query's own event; a longer one gets an event
of its own, so a slow link never holds a connection while the query is still travelling."""


class Database(Protocol):
    """What an application container needs from the database tier."""

    def submit(self, att: Attempt, write: bool, done: DbCallback) -> Handle | None:
        """Start a read (or write) for ``att``; call ``done(att, ok, cause)`` when it answers."""
        ...


class Write:
    """One committed write: a row in the log of every node that has it."""

    __slots__ = ("acked_at", "client", "clock", "committed_at", "key", "lost", "lsn", "node",
                 "timeline", "wid")

    def __init__(self, wid: int, key: int, client: int, lsn: int, now: float, clock: float,
                 node: str, timeline: int) -> None:
        self.wid = wid
        self.key = key
        self.client = client
        self.lsn = lsn
        self.committed_at = now
        self.clock = clock
        """The committing node's clock at commit (differs from ``committed_at`` under skew)."""
        self.node = node
        self.timeline = timeline
        self.acked_at: float | None = None
        self.lost = False

    def row(self) -> tuple[int, int, int, str, int, float, int]:
        """(lsn, wid, key, value, client, committed_at, timeline) as stored in SQLite."""
        return (self.lsn, self.wid, self.key, f"item-{self.key}:w{self.wid}", self.client,
                round(self.clock, 6), self.timeline)


class StorageSink(Protocol):
    """Where each node's applied rows go (core.storage implements it with SQLite)."""

    def apply(self, node: str, write: Write) -> None: ...

    def truncate(self, node: str, lsn: int) -> None:
        """Drop the node's rows with an LSN above ``lsn`` (a rewind)."""
        ...

    def reset(self, node: str, writes: Sequence[Write]) -> None:
        """Replace all the node's rows (a restore or a re-clone)."""
        ...


class Op:
    """A query in flight on the database tier."""

    __slots__ = ("answered", "att", "back", "done", "node", "write")

    def __init__(self, att: Attempt, write: bool, done: DbCallback, node: DbNode) -> None:
        self.att = att
        self.write = write
        self.done = done
        self.node = node
        self.back = 0.0
        self.answered = False
        """The application has its answer (or gave up waiting): later answers are dropped."""


class DbNode:
    def __init__(self, node_id: str, role: str, cfg: DatabaseConfig) -> None:
        self.id = node_id
        self.role = role
        """primary or replica: what the node itself believes."""
        self.state = ""
        """A transitional state shown instead of the role: promoting, rewinding, fenced,
        restoring, demoting ('' = none)."""
        self.up = True
        self.partition = ""
        """'' = reachable; 'cluster' = cut from the other nodes and the lease store;
        'all' = also cut from the application."""
        self.log: list[Write] = []
        self.applied = 0
        self.confirmed: dict[str, int] = {}
        """On a primary: the LSN each replica has confirmed (flushed)."""
        self.timeline = 1
        self.pool = cfg.pool
        self.busy = 0
        self.queue: deque[Op] = deque()
        self.inflight: dict[Op, None] = {}
        self.waiting: deque[tuple[Write, Op]] = deque()
        """Committed writes waiting for replica confirmations (sync / semi-sync)."""
        self.disk = 1.0
        self.skew = 0.0
        self.apply_rate = cfg.apply_rate
        self.apply_handle: Handle | None = None
        self.last_renew = 0.0
        self.fence_handle: Handle | None = None
        self.reads = 0
        self.writes = 0
        self.stale_reads = 0
        self.ops = Meter()
        """Queries answered per second (sampled)."""

    def throttle(self, rate: float) -> None:
        """Apply the log at ``rate`` records per second (the tier's kick_apply resumes it)."""
        self.apply_rate = max(rate, 0.1)

    def set_disk(self, factor: float) -> None:
        """Reads and fsyncs take ``factor`` times longer (1 = a healthy disk)."""
        self.disk = max(factor, 1.0)

    def set_skew(self, seconds: float) -> None:
        """Its clock runs ``seconds`` behind the true time."""
        self.skew = seconds

    def label(self) -> str:
        if not self.up:
            return "down"
        return self.state or self.role

    def serving(self) -> bool:
        return self.up and self.state not in ("restoring", "rewinding")


class DatabaseTier:
    """Nodes, routing, queries and replication. ``failover`` and ``backup`` are attached by
    the world once built (they need the tier)."""

    def __init__(self, cfg: DatabaseConfig, kernel: Kernel, emit: Emit, app_link: Link,
                 repl_link: Link, connect_timeout: float) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.emit = emit
        self.app_link = app_link
        self.repl_link = repl_link
        self.connect_timeout = connect_timeout
        self.rng = kernel.rng("database")
        self.read_rate = 1.0 / cfg.read if cfg.read > 0 else 0.0
        self.write_rate = 1.0 / cfg.write if cfg.write > 0 else 0.0
        self.nodes: dict[str, DbNode] = {}
        for i in range(cfg.replicas + 1):
            node = DbNode(f"db-{i + 1}", "primary" if i == 0 else "replica", cfg)
            self.nodes[node.id] = node
        self.leader = "db-1"
        self.lease_expiry = cfg.failover.ttl
        self.optime = 0
        self.mode: str = cfg.replication
        self.k = cfg.sync_replicas
        self.degraded = False
        """semi_sync fell back to async."""
        self.fencing = cfg.failover.fencing
        self.sink: StorageSink | None = None
        self._wid = 0
        self._rr = 0
        self._semi_timer: Handle | None = None
        self._deadlines: deque[tuple[float, Op]] = deque()
        """Statement deadlines in order (the timeout is fixed, so they arrive sorted)."""
        self._deadline_timer: Handle | None = None
        self.timeouts = 0
        self.epoch = 0
        """Bumped by a restore: HA steps begun before it are void."""
        self.key_lsn: dict[int, int] = {}
        """Per key: the LSN of its latest acknowledged write in the leader's history."""
        self.client_lsn: dict[int, int] = {}
        self.acked = 0
        self.acked_lsn = 0
        """Highest LSN acknowledged on the leader's timeline (sync failover must keep it)."""
        self.lost_writes = 0
        self.lost: list[Write] = []
        self.conflicts = 0
        self.rewound = 0
        self.stale_reads = 0
        self.failovers = 0
        self.last_promotion: dict[str, object] = {}
        self.restoring = False
        self.on_ack: Callable[[Write], None] | None = None
        """Observer of every acknowledged write (recorders and tests)."""

    # -- the app's entry point --------------------------------------------------------------

    def submit(self, att: Attempt, write: bool, done: DbCallback) -> Handle | None:
        now = self.kernel.now
        node = self._route_write() if write else self._route_read(att.req.client)
        if node is None:
            cause = "db_restoring" if self.restoring else "db_no_primary" if write else "db_down"
            self.kernel.call_later(self.app_link.delay(now), _fail, (att, done, cause))
            return None
        if self.app_link.partitioned:
            self.kernel.call_later(self.connect_timeout, _fail, (att, done, "partition"))
            return None
        op = Op(att, write, done, node)
        if self.cfg.timeout > 0:
            self._watch(op, now + self.cfg.timeout)
        delay = self.app_link.delay(now)
        if delay <= FOLD_LIMIT and node.busy < node.pool and node.up and node.serving():
            self._start(op, delay)  # a free connection: fold the trip into the query's event
        else:
            self.kernel.call_later(delay, self._arrive, op)
        return None

    def _watch(self, op: Op, deadline: float) -> None:
        self._deadlines.append((deadline, op))
        if self._deadline_timer is None:
            self._deadline_timer = self.kernel.call_at(deadline, self._expire)

    def _expire(self, _: object) -> None:
        """The application's statement timeout: answered ops leave whatever their deadline."""
        self._deadline_timer = None
        now = self.kernel.now
        pending = self._deadlines
        while pending and (pending[0][1].answered or pending[0][0] <= now):
            op = pending.popleft()[1]
            if not op.answered:
                self.timeouts += 1
                self._deliver(op, False, "db_timeout")
        if pending:
            self._deadline_timer = self.kernel.call_at(pending[0][0], self._expire)

    def _deliver(self, op: Op, ok: bool, cause: str) -> None:
        if not op.answered:
            op.answered = True
            op.done(op.att, ok, cause)

    def app_reachable(self, n: DbNode) -> bool:
        return n.up and n.partition != "all" and n.serving()

    def _route_write(self) -> DbNode | None:
        claimants = [n for n in self.nodes.values()
                     if n.role == "primary" and not n.state and self.app_reachable(n)]
        if not claimants:
            return None
        self._rr += 1
        return claimants[self._rr % len(claimants)]

    def leader_node(self) -> DbNode:
        return self.nodes[self.leader]

    def _route_read(self, client: int) -> DbNode | None:
        leader = self.leader_node()
        if self.cfg.reads_from == "replicas":
            replicas = [n for n in self.nodes.values()
                        if n.role == "replica" and not n.state and self.app_reachable(n)]
            if replicas:
                self._rr += 1
                node = replicas[self._rr % len(replicas)]
                mine = self.client_lsn.get(client, 0) if self.cfg.read_your_writes else 0
                if mine <= node.applied or not self.app_reachable(leader):
                    return node
        return self._route_write()

    # -- queries on a node ------------------------------------------------------------------

    def _arrive(self, op: Op) -> None:
        node = op.node
        if not node.up or not node.serving():
            self._answer(op, False, "db_restoring" if self.restoring else "db_down")
            return
        if node.busy < node.pool:
            self._start(op)
        elif len(node.queue) < QUEUE_LIMIT:
            node.queue.append(op)
        else:
            self._answer(op, False, "db_pool_full")

    def _start(self, op: Op, lead: float = 0.0) -> None:
        """Run ``op`` on a free connection, ``lead`` seconds from now. A read's event also
        carries the answer's trip back; a write's commit must happen at its own time."""
        node = op.node
        node.busy += 1
        node.inflight[op] = None
        now = self.kernel.now
        rng = self.rng
        if op.write:
            cpu = rng.expovariate(self.write_rate) if self.write_rate else 0.0
            self.kernel.call_later(lead + cpu + self.cfg.fsync * node.disk, self._commit, op)
        else:
            t = (rng.expovariate(self.read_rate) if self.read_rate else 0.0) * node.disk
            back = self.app_link.delay(now)
            op.back = back
            if back <= FOLD_LIMIT:
                t += back
            self.kernel.call_later(lead + t, self._read_done, op)

    def _release(self, op: Op) -> bool:
        """Free the op's connection; False if the node lost it meanwhile (crash, restore)."""
        node = op.node
        if node.inflight.pop(op, 0) is None:
            node.busy -= 1
            if node.queue and node.serving():
                self._start(node.queue.popleft())
            return True
        return False

    def _read_done(self, op: Op) -> None:
        if not self._release(op):
            return
        node = op.node
        node.reads += 1
        if node.role == "replica" and self.key_lsn.get(op.att.req.key, 0) > node.applied:
            node.stale_reads += 1
            self.stale_reads += 1
        if op.back <= FOLD_LIMIT:
            self._deliver(op, True, "")
        else:
            self._answer(op, True, "")

    def _commit(self, op: Op) -> None:
        if not self._release(op):
            return
        node = op.node
        if node.role != "primary" or node.state:
            self._answer(op, False, "db_read_only")
            return
        now = self.kernel.now
        self._wid += 1
        req = op.att.req
        w = Write(self._wid, req.key, req.client, len(node.log) + 1, now, now - node.skew,
                  node.id, node.timeline)
        node.log.append(w)
        node.applied = w.lsn
        node.writes += 1
        if self.sink is not None:
            self.sink.apply(node.id, w)
        self.replicate(node)
        if self.mode == "async" or (self.mode == "semi_sync" and self.degraded):
            self._ack(w, op)
        else:
            node.waiting.append((w, op))
            self._release_waiting(node)
            if self.mode == "semi_sync" and self._semi_timer is None and node.waiting:
                self._arm_semi(node)

    def _ack(self, w: Write, op: Op | None) -> None:
        w.acked_at = self.kernel.now
        self.acked += 1
        if w.node == self.leader:
            self.key_lsn[w.key] = w.lsn
            self.client_lsn[w.client] = w.lsn
            if w.lsn > self.acked_lsn:
                self.acked_lsn = w.lsn
        else:
            self.conflicts += 1
        if self.on_ack is not None:
            self.on_ack(w)
        if op is not None:
            self._answer(op, True, "")

    def _answer(self, op: Op, ok: bool, cause: str) -> None:
        """Send the answer back over the app-db link."""
        if not op.answered:
            self.kernel.call_later(self.app_link.delay(self.kernel.now), self._answered,
                                   (op, ok, cause))

    def _answered(self, arg: tuple[Op, bool, str]) -> None:
        self._deliver(*arg)

    def abort_node(self, node: DbNode, cause: str) -> None:
        """The node lost every query it held (crash, restore)."""
        for op in list(node.inflight):
            self._answer(op, False, cause)
        node.inflight.clear()
        while node.queue:
            self._answer(node.queue.popleft(), False, cause)
        node.busy = 0
        while node.waiting:
            self._answer(node.waiting.popleft()[1], False, cause)

    # -- replication ------------------------------------------------------------------------

    def linked(self, a: DbNode, b: DbNode) -> bool:
        return (a.up and b.up and not a.partition and not b.partition
                and not self.repl_link.partitioned)

    def replicate(self, primary: DbNode) -> None:
        """Ship the primary's log to each replica that follows it."""
        now = self.kernel.now
        for r in self.nodes.values():
            if r.role == "replica" and not r.state and self.linked(primary, r):
                self.kernel.call_later(self.repl_link.delay(now), self._receive,
                                       (r, primary, len(primary.log)))

    def _receive(self, arg: tuple[DbNode, DbNode, int]) -> None:
        r, primary, upto = arg
        if r.role != "replica" or r.state or primary.role != "primary":
            return
        if not self.linked(primary, r):
            return
        n = len(r.log)
        if upto <= n:
            return
        if n and (n > len(primary.log) or r.log[n - 1] is not primary.log[n - 1]):
            return  # diverged: the failover loop rewinds it first
        r.log.extend(primary.log[n:upto])
        self.kick_apply(r)
        if self.mode != "async":
            delay = self.cfg.fsync * r.disk + self.repl_link.delay(self.kernel.now)
            self.kernel.call_later(delay, self._confirm, (r, primary, upto))

    def catch_up(self, r: DbNode, primary: DbNode) -> None:
        """A (re)connected replica asks for everything it is missing."""
        if len(r.log) < len(primary.log):
            self.kernel.call_later(self.repl_link.delay(self.kernel.now), self._receive,
                                   (r, primary, len(primary.log)))

    def _confirm(self, arg: tuple[DbNode, DbNode, int]) -> None:
        r, primary, upto = arg
        if primary.role != "primary" or not self.linked(primary, r):
            return
        if upto > primary.confirmed.get(r.id, 0):
            primary.confirmed[r.id] = upto
        self._release_waiting(primary)
        if self.degraded and upto >= len(primary.log):
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
                if r.role == "replica" and self.linked(leader, r) and r.log:
                    self.kernel.call_later(0.0, self._confirm, (r, leader, len(r.log)))

    def kick_apply(self, r: DbNode) -> None:
        if r.apply_handle is None and r.applied < len(r.log):
            r.apply_handle = self.kernel.call_later(1.0 / r.apply_rate, self._apply, r)

    def _apply(self, r: DbNode) -> None:
        """Apply a batch of received records (about 10 ms worth at the apply rate)."""
        r.apply_handle = None
        if not r.up or r.state:
            return
        batch = max(1, int(r.apply_rate * 0.01))
        end = min(len(r.log), r.applied + batch)
        sink = self.sink
        for i in range(r.applied, end):
            if sink is not None:
                sink.apply(r.id, r.log[i])
        r.applied = end
        if r.applied < len(r.log):
            n = min(batch, len(r.log) - r.applied)
            r.apply_handle = self.kernel.call_later(n / r.apply_rate, self._apply, r)

    # -- views ------------------------------------------------------------------------------

    def lag(self, r: DbNode) -> tuple[int, float]:
        """(LSNs, seconds) the node's applied state is behind the leader's history."""
        leader = self.leader_node()
        hist = leader.log
        n = r.applied
        if r is leader or n >= len(hist):
            return 0, 0.0
        if n and r.log[n - 1] is not hist[n - 1]:
            return len(hist) - n, 0.0
        return len(hist) - n, self.kernel.now - hist[n].committed_at

    def expected_rows(self, node_id: str) -> list[tuple[int, int]]:
        """(lsn, wid) of every row the model says the node has applied."""
        n = self.nodes[node_id]
        return [(w.lsn, w.wid) for w in n.log[: n.applied]]


def _fail(arg: tuple[Attempt, DbCallback, str]) -> None:
    att, done, cause = arg
    done(att, False, cause)
