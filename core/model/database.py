"""The database tier: a primary and replicas with connection pools, commits, replication, lag.

The application tier talks to it only through :meth:`DatabaseTier.submit`. Writes go to the
primary and commit with an fsync; each gets the next LSN. Replicas receive the log over the
``db-repl`` link and apply it at a finite rate, so lag and stale reads are real. Acknowledgement
follows the replication mode: async (after the local commit), sync (after ``k`` replicas
confirm) or semi-sync (sync until a timeout, then async until a replica catches up). Log
shipping, applying and retention live in :mod:`.replication`, failover in :mod:`.failover`,
backups in :mod:`.backup`.

Memory stays flat: a node's data is a history in the branch tree of :mod:`.wal`, and records
are kept only while a replica still has to apply them or the leader still has to ship or
archive them (at most ``wal_keep`` per branch; a replica further behind is re-cloned).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from stackyard.core.config import DatabaseConfig
from stackyard.core.kernel import Handle, Kernel
from stackyard.core.metrics import Meter
from stackyard.core.model.events import Emit

from .replication import Replication, Shipment
from .wal import MASK, Branch, common, digest_at, owner, record, records, row_digest, rows_digest

if TYPE_CHECKING:
    from .balancer import Attempt
    from .network import Link

DbCallback = Callable[["Attempt", bool, str], None]

QUEUE_LIMIT = 1000
"""Queries waiting for a connection on one node before it refuses more."""
FOLD_LIMIT = 0.001
"""A network trip up to this is folded into the query's own event (or, for an answer, into the
request's slack); a longer one gets an event of its own."""
_log = math.log
LOST_KEPT = 10_000
"""The most recent lost writes kept for inspection (all of them are counted)."""
NOT_SERVING = ("restoring", "rewinding", "recloning")


class Database(Protocol):
    """What an application container needs from the database tier."""

    def submit(self, att: Attempt, write: bool, done: DbCallback) -> Handle | None:
        """Start a read (or write) for ``att``; call ``done(att, ok, cause)`` when it answers."""
        ...


class Write:
    """One committed write: a row in the data of every node whose history has it."""

    __slots__ = ("acked_at", "client", "clock", "committed_at", "digest", "key", "lost", "lsn",
                 "node", "timeline", "wid")

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
        self.digest = 0
        """The digest of its history up to and including it (see :func:`.wal.row_digest`)."""

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

    def clone(self, node: str, source: str, lsn: int) -> None:
        """Replace the node's rows by ``source``'s rows up to ``lsn`` (a re-clone or a
        restore), after every change queued before it."""
        ...


class Op:
    """A query in flight on the database tier."""

    __slots__ = ("answered", "att", "done", "node", "write")

    def __init__(self, att: Attempt, write: bool, done: DbCallback, node: DbNode) -> None:
        self.att = att
        self.write = write
        self.done = done
        self.node = node
        self.answered = False
        """The application has its answer (or gave up waiting): later answers are dropped."""


class LogView:
    """A node's log as a sequence: ``len()`` is its LSN, records still held by position."""

    __slots__ = ("node",)

    def __init__(self, node: DbNode) -> None:
        self.node = node

    def __len__(self) -> int:
        return self.node.end

    def __bool__(self) -> bool:
        return self.node.end > 0

    def __getitem__(self, i: int) -> Write:
        w = record(self.node.branch, i + 1) if 0 <= i < self.node.end else None
        if w is None:
            raise IndexError(f"{self.node.id}: LSN {i + 1} is not held")
        return w


class DbNode:

    __slots__ = (
        "_applied",
        "_apply_from",
        "_apply_rate",
        "_apply_t",
        "_partition",
        "_role",
        "_state",
        "_up",
        "applying",
        "branch",
        "busy",
        "confirmed",
        "digest",
        "disk",
        "end",
        "fence_handle",
        "id",
        "inflight",
        "last_renew",
        "ops",
        "pool",
        "queue",
        "reads",
        "shipment",
        "skew",
        "stale_reads",
        "tier",
        "timeline",
        "waiting",
        "writes",
    )

    def __init__(self, node_id: str, role: str, cfg: DatabaseConfig, tier: DatabaseTier,
                 branch: Branch) -> None:
        self.tier = tier
        self.id = node_id
        self._role = role
        self._state = ""
        self._up = True
        self._partition = ""
        self.branch = branch
        """Its history: the branch it ends on..."""
        self.end = 0
        """...and the LSN of its last record (what it has received or committed)."""
        self._applied = 0
        self.digest = 0
        """The digest of its history up to ``applied`` (what its rows must add up to)."""
        self.applying = False
        self._apply_t = 0.0
        self._apply_from = 0
        self._apply_rate = cfg.apply_rate
        self.shipment: Shipment | None = None
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
        self.last_renew = 0.0
        self.fence_handle: Handle | None = None
        self.reads = 0
        self.writes = 0
        self.stale_reads = 0
        self.ops = Meter()
        """Queries answered per second (sampled)."""

    # role, state, reachability: routing depends on them, so setting one re-routes
    @property
    def role(self) -> str:
        """primary or replica: what the node itself believes."""
        return self._role

    @role.setter
    def role(self, value: str) -> None:
        self._role = value
        self.tier.routes_changed()

    @property
    def state(self) -> str:
        """A transitional state shown instead of the role: promoting, rewinding, fenced,
        restoring, recloning, demoting ('' = none)."""
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        self._state = value
        self.tier.routes_changed()

    @property
    def up(self) -> bool:
        return self._up

    @up.setter
    def up(self, value: bool) -> None:
        self._up = value
        self.tier.routes_changed()

    @property
    def partition(self) -> str:
        """'' = reachable; 'cluster' = cut from the other nodes and the lease store; 'all' =
        also cut from the application."""
        return self._partition

    @partition.setter
    def partition(self, value: str) -> None:
        self._partition = value
        self.tier.routes_changed()

    @property
    def lsn(self) -> int:
        """The LSN of its last record."""
        return self.end

    @property
    def log(self) -> LogView:
        return LogView(self)

    @property
    def applied(self) -> int:
        """The LSN it has applied up to (its rows)."""
        if self.applying:
            self.tier.sync_apply(self)
        return self._applied

    @property
    def apply_rate(self) -> float:
        """Log records per second it applies."""
        return self._apply_rate

    @apply_rate.setter
    def apply_rate(self, value: float) -> None:
        self.tier.set_apply_rate(self, value)

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
        if not self._up:
            return "down"
        return self._state or self._role

    def serving(self) -> bool:
        return self._up and self._state not in NOT_SERVING


class DatabaseTier(Replication):
    """Nodes, routing, queries and replication. ``failover`` and ``backup`` are attached by
    the world once built (they need the tier)."""

    __slots__ = (
        "_commit_cb",
        "_deadline_timer",
        "_followers",
        "_open",
        "_random",
        "_read_done_cb",
        "_readers",
        "_rr",
        "_wid",
        "_writers",
        "acked",
        "acked_lsn",
        "app_link",
        "archive_history",
        "cfg",
        "client_lsn",
        "conflicts",
        "connect_timeout",
        "emit",
        "epoch",
        "failovers",
        "fencing",
        "kernel",
        "key_lsn",
        "last_promotion",
        "leader",
        "lease_expiry",
        "lost",
        "lost_writes",
        "nodes",
        "on_ack",
        "optime",
        "repl_link",
        "restoring",
        "rewound",
        "rng",
        "sink",
        "stale_reads",
        "timeouts",
    )

    def __init__(self, cfg: DatabaseConfig, kernel: Kernel, emit: Emit, app_link: Link,
                 repl_link: Link, connect_timeout: float) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.emit = emit
        self.app_link = app_link
        self.repl_link = repl_link
        self.connect_timeout = connect_timeout
        self.rng = kernel.rng("database")
        self._random = self.rng.random
        self._writers: list[DbNode] | None = None
        self._readers: list[DbNode] = []
        self._followers: list[DbNode] = []
        """Replicas that take the log from a primary they are linked with (its side aside)."""
        root = Branch(None, 0, 0)
        self.nodes: dict[str, DbNode] = {}
        for i in range(cfg.replicas + 1):
            node = DbNode(f"db-{i + 1}", "primary" if i == 0 else "replica", cfg, self, root)
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
        self.archive_history: Callable[[], tuple[Branch, int] | None] | None = None
        """The backup archive's history (set by the backups), so the leader keeps what the
        archive has not copied yet."""
        self._wid = 0
        self._rr = 0
        self._semi_timer: Handle | None = None
        self._open: dict[Op, float] = {}
        """Unanswered queries and their statement deadlines, in deadline order (the timeout is
        fixed); an answered query leaves at once, so nothing answered is kept alive."""
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
        self.lost: deque[Write] = deque(maxlen=LOST_KEPT)
        self.conflicts = 0
        self.rewound = 0
        self.reclones = 0
        self.stale_reads = 0
        self.failovers = 0
        self.last_promotion: dict[str, object] = {}
        self.restoring = False
        self.on_ack: Callable[[Write], None] | None = None
        """Observer of every acknowledged write (recorders and tests)."""
        self._commit_cb = self._commit
        self._read_done_cb = self._read_done
        """Bound once: scheduling a bound method per query would allocate it anew."""
        kernel.call_later(1.0, self._housekeeping)

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
        timeout = self.cfg.timeout
        if timeout > 0:
            self._open[op] = now + timeout
            if self._deadline_timer is None:
                self._deadline_timer = self.kernel.call_at(now + timeout, self._expire)
        link = self.app_link  # Link.delay inline (see Link.simple)
        delay = link.lo + link.draw() * link.span if link.simple else link.delay(now)
        if (delay <= FOLD_LIMIT and node.busy < node.pool and node._up
                and node._state not in NOT_SERVING):  # node.serving(), inline
            self._start(op, delay)  # a free connection: fold the trip into the query's event
        else:
            self.kernel.call_later(delay, self._arrive, op)
        return None

    def _expire(self, _: object) -> None:
        """The application's statement timeout."""
        self._deadline_timer = None
        now = self.kernel.now
        late = []
        for op, deadline in self._open.items():
            if deadline > now:
                break
            late.append(op)
        for op in late:
            self.timeouts += 1
            self._deliver(op, False, "db_timeout")
        if self._open:
            self._deadline_timer = self.kernel.call_at(next(iter(self._open.values())),
                                                       self._expire)

    def _deliver(self, op: Op, ok: bool, cause: str) -> None:
        if not op.answered:
            op.answered = True
            self._open.pop(op, None)
            op.done(op.att, ok, cause)

    def app_reachable(self, n: DbNode) -> bool:
        return n._up and n._partition != "all" and n.serving()

    def routes_changed(self) -> None:
        """A node's role, state or reachability changed: rebuild the routing lists on use."""
        self._writers = None

    def _routes(self) -> list[DbNode]:
        nodes = self.nodes.values()
        writers = [n for n in nodes
                   if n._role == "primary" and not n._state and self.app_reachable(n)]
        self._readers = [n for n in nodes
                         if n._role == "replica" and not n._state and self.app_reachable(n)]
        self._followers = [n for n in nodes
                           if n._role == "replica" and not n._state and n._up and not n._partition]
        self._writers = writers
        return writers

    def _route_write(self) -> DbNode | None:
        claimants = self._writers
        if claimants is None:
            claimants = self._routes()
        if not claimants:
            return None
        self._rr += 1
        return claimants[self._rr % len(claimants)]

    def leader_node(self) -> DbNode:
        return self.nodes[self.leader]

    def _route_read(self, client: int) -> DbNode | None:
        if self.cfg.reads_from == "replicas":
            if self._writers is None:
                self._routes()
            replicas = self._readers
            if replicas:
                self._rr = rr = self._rr + 1
                node = replicas[rr % len(replicas)]
                mine = self.client_lsn.get(client, 0) if self.cfg.read_your_writes else 0
                # ``applied`` only grows, and looking brings the lazily applied log up to date
                # (no change to the model): look only when the last position known falls short
                if (not mine or mine <= node._applied or mine <= node.applied
                        or not self.app_reachable(self.leader_node())):
                    return node
        return self._route_write()

    # -- queries on a node ------------------------------------------------------------------

    def _arrive(self, op: Op) -> None:
        node = op.node
        if not node.serving():
            self._answer(op, False, "db_restoring" if self.restoring else "db_down")
            return
        if node.busy < node.pool:
            self._start(op)
        elif len(node.queue) < QUEUE_LIMIT:
            node.queue.append(op)
        else:
            self._answer(op, False, "db_pool_full")

    def _start(self, op: Op, lead: float = 0.0) -> None:
        """Run ``op`` on a free connection, ``lead`` seconds from now."""
        node = op.node
        node.busy += 1
        node.inflight[op] = None
        if op.write:  # exponential times, as expovariate draws them
            cpu = -_log(1.0 - self._random()) * self.cfg.write
            self.kernel.call_later(lead + cpu + self.cfg.fsync * node.disk, self._commit_cb, op)
        else:
            t = -_log(1.0 - self._random()) * self.cfg.read * node.disk
            self.kernel.call_later(lead + t, self._read_done_cb, op)

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
        node = op.node
        if node.inflight.pop(op, 0) is not None:  # _release, inline (once per read)
            return
        node.busy -= 1
        if node.queue and node.serving():
            self._start(node.queue.popleft())
        node.reads += 1
        if node._role == "replica":
            newest = self.key_lsn.get(op.att.req.key, 0)
            if newest and newest > node._applied and newest > node.applied:  # as in _route_read
                node.stale_reads += 1
                self.stale_reads += 1
        self._answer(op, True, "")

    def _commit(self, op: Op) -> None:
        if not self._release(op):
            return
        node = op.node
        if node._role != "primary" or node._state:
            self._answer(op, False, "db_read_only")
            return
        now = self.kernel.now
        self._wid += 1
        req = op.att.req
        branch = node.branch
        if branch.end != node.end:  # a primary writes at the tip of a branch of its own
            branch = self.fork(node)
        lsn = node.end + 1
        w = Write(self._wid, req.key, req.client, lsn, now, now - node.skew, node.id,
                  node.timeline)
        w.digest = (node.digest + row_digest(lsn, w.wid)) & MASK
        branch.append(w)
        node.end = node._applied = lsn
        node.digest = w.digest
        node.writes += 1
        if self.sink is not None:
            self.sink.apply(node.id, w)
        self._ship(node)
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
        """Send the answer back over the app-db link (a short trip goes into the slack)."""
        if not op.answered:
            link = self.app_link  # Link.delay inline (see Link.simple)
            back = link.lo + link.draw() * link.span if link.simple else link.delay(self.kernel.now)
            if back <= FOLD_LIMIT:
                op.att.slack += back
                op.answered = True
                self._open.pop(op, None)
                op.done(op.att, ok, cause)
            else:
                self.kernel.call_later(back, self._answered, (op, ok, cause))

    def _answered(self, arg: tuple[Op, bool, str]) -> None:
        self._deliver(*arg)

    def abort_node(self, node: DbNode, cause: str) -> None:
        """The node lost every query it held (crash, restore)."""
        held = [*node.inflight, *node.queue, *(op for _, op in node.waiting)]
        node.inflight.clear()
        node.queue.clear()
        node.waiting.clear()
        node.busy = 0
        for op in held:
            self._answer(op, False, cause)

    # -- histories --------------------------------------------------------------------------

    def common(self, a: DbNode, b: DbNode) -> int:
        """How many records the two nodes' histories share."""
        if a.branch is b.branch:
            return a.end if a.end < b.end else b.end
        return common(a.branch, a.end, b.branch, b.end)

    def fork(self, node: DbNode) -> Branch:
        """Give ``node`` (becoming a primary) a new branch at its end, to write on."""
        branch = Branch(owner(node.branch, node.end), node.end, node.digest)
        node.branch = branch
        return branch

    def records(self, node: DbNode, lo: int, hi: int) -> list[Write]:
        """The records of ``node``'s history with LSN in (lo, hi] that are still held."""
        return records(node.branch, lo, min(hi, node.end))

    def receive_all(self, r: DbNode, primary: DbNode) -> None:
        """``r`` gets everything ``primary`` has (a switchover's hand-over)."""
        if self.common(r, primary) == r.end:
            self.sync_apply(r)
            r.branch = primary.branch
            r.end = primary.end

    def digest_between(self, a: DbNode, b: DbNode, lsn: int) -> int:
        """The digest of the history two nodes share up to ``lsn`` (their common part)."""
        digest = digest_at(a.branch, lsn)
        if digest is None:
            digest = digest_at(b.branch, lsn)
        assert digest is not None, "a common point is a fork or the end of a history"
        return digest

    def truncate(self, n: DbNode, lsn: int, digest: int) -> None:
        """Cut ``n``'s history back to ``lsn``, whose digest is ``digest`` (a rewind)."""
        self.stop_apply(n)
        if lsn < n.end:
            n.end = lsn
        if n._applied > lsn:
            n._applied = lsn
            n.digest = digest
        if self.sink is not None:
            self.sink.truncate(n.id, lsn)

    # -- views ------------------------------------------------------------------------------

    def lag(self, r: DbNode) -> tuple[int, float]:
        """(LSNs, seconds) the node's applied state is behind the leader's history."""
        leader = self.leader_node()
        n = r.applied
        m = leader.end
        if r is leader or n >= m:
            return 0, 0.0
        if common(r.branch, n, leader.branch, m) < n:
            return m - n, 0.0
        w = record(leader.branch, n + 1)
        if w is None:  # no longer held: the oldest record still held bounds it from below
            held = records(leader.branch, n, m)
            w = held[0] if held else None
        return m - n, self.kernel.now - w.committed_at if w is not None else 0.0

    def verify_rows(self, node_id: str, rows: Sequence[tuple[int, int]]) -> str | None:
        """Why ``rows`` (lsn, wid) are not exactly the node's applied history (None if they
        are): LSNs 1..applied in order, the records still held row by row, and the digest of
        the rest."""
        n = self.nodes[node_id]
        applied = n._applied  # what the sink has been given (looking would apply more)
        for i, (lsn, _) in enumerate(rows):
            if lsn != i + 1:
                return f"row {i + 1} has LSN {lsn} (expected LSN {i + 1})"
        if len(rows) < applied:
            return f"SQLite lacks {applied - len(rows)} rows from LSN {len(rows) + 1}"
        if len(rows) > applied:
            return (f"SQLite has {len(rows) - applied} rows the model does not "
                    f"(from LSN {applied + 1})")
        held = records(n.branch, 0, applied)
        for w in held:
            lsn, wid = rows[w.lsn - 1]
            if wid != w.wid:
                return (f"row {lsn} differs (model LSN {w.lsn} write {w.wid}, "
                        f"SQLite LSN {lsn} write {wid})")
        if rows_digest(rows) != n.digest:
            upto = held[0].lsn - 1 if held else applied
            return f"rows up to LSN {upto} differ from the model's history (their digest)"
        return None


def _fail(arg: tuple[Attempt, DbCallback, str]) -> None:
    att, done, cause = arg
    done(att, False, cause)
