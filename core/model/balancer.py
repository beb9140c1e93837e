"""The load-balancer pair: backend choice, health checks, outlier ejection, retries, timeouts.

Two balancer nodes share one view of the backends (as a synced pair would); only the active one
forwards. When it fails the standby takes the VIP over after ``vip_takeover`` seconds.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING

from stackyard.core.config import ALGORITHMS, BalancerConfig
from stackyard.core.kernel import Handle, Kernel
from stackyard.core.metrics import Meter
from stackyard.core.model.events import Emit

from .traffic import Request

_exp = math.exp

if TYPE_CHECKING:
    from .compute import Container
    from .network import Link



class Attempt:
    """One try of a request on one backend."""

    __slots__ = ("arrived", "backend", "cpu", "done", "handle", "lane", "req", "retry", "slack",
                 "start")

    def __init__(self, req: Request, backend: Backend, start: float, retry: bool) -> None:
        self.req = req
        self.backend = backend
        self.start = start
        self.retry = retry
        self.done = False
        """Answered to the balancer (or given up on by it); a late answer is wasted work."""
        self.cpu = False
        """In its CPU phase on the container (for contention bookkeeping)."""
        self.handle: Handle | None = None
        self.arrived = start
        """When it reached the container (for the time it waited for a worker)."""
        self.lane: dict[Attempt, float] | None = None
        """The deadline lane it waits in, if the balancer has a timeout."""
        self.slack = 0.0
        """Short trips folded into its events (the attempt ran that much early); its answer
        travels that much longer, so the latency is exact."""


class Backend:
    """The balancer's view of one container."""

    __slots__ = (
        "active",
        "added_at",
        "consecutive_5xx",
        "container",
        "ejected_until",
        "ejections",
        "ewma",
        "ewma_time",
        "hc_fail",
        "hc_ok",
        "healthy",
        "id",
        "meter",
        "picks",
        "points",
        "weight",
    )

    def __init__(self, container: Container, now: float, weight: float) -> None:
        self.container = container
        self.id = container.id
        self.added_at = now
        self.weight = weight
        self.healthy = True
        self.hc_ok = 0
        self.hc_fail = 0
        self.ejected_until = 0.0
        self.ejections = 0
        self.consecutive_5xx = 0
        self.active = 0
        self.ewma = 0.0
        self.ewma_time = now
        self.picks = 0
        self.meter = Meter()
        """Requests sent to it per second (the balancer's share over recent seconds)."""
        self.points: list[int] | None = None
        """Its points on the consistent-hash ring (computed when the ring first needs them)."""


PAIR = ("lb-1", "lb-2")
"""The ids of the active/standby pair."""


class BalancerNode:
    __slots__ = ("id", "up")

    def __init__(self, node_id: str) -> None:
        self.id = node_id
        self.up = True


class Balancer:
    """The active/standby pair and everything it decides."""

    __slots__ = (
        "_eligible",
        "_lane",
        "_lane_timeout",
        "_lanes",
        "_order",
        "_ramped_at",
        "_ring",
        "_ring_keys",
        "_ring_stale",
        "_rr",
        "_timer",
        "_vip_from",
        "_wrr",
        "active_node",
        "algorithm",
        "backends",
        "budget_denied",
        "cfg",
        "connect_timeout",
        "ejection_count",
        "emit",
        "forwarded",
        "health_changes",
        "inflight",
        "kernel",
        "link",
        "nodes",
        "reply",
        "retried",
        "retries",
        "retries_inflight",
        "retry_budget",
        "rng",
        "takeover_until",
        "timeout",
        "timeouts",
    )

    def __init__(
        self,
        cfg: BalancerConfig,
        kernel: Kernel,
        link: Link,
        connect_timeout: float,
        emit: Emit,
        reply: Callable[[Request, bool, str], None],
    ) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.link = link
        self.connect_timeout = connect_timeout
        self.emit = emit
        self.reply = reply
        self.rng = kernel.rng("balancer")
        self.nodes = [BalancerNode(node_id) for node_id in PAIR]
        self.active_node = 0
        self.takeover_until = 0.0
        self._vip_from = 0.0
        """When the VIP forwards from: ``takeover_until`` while the active node is up, else
        never (one comparison per request)."""
        self.algorithm: str = cfg.algorithm
        self.timeout = cfg.timeout
        self.retries = cfg.retries
        self.retry_budget = cfg.retry_budget
        self.backends: dict[str, Backend] = {}
        self._order: list[Backend] = []
        self._eligible: list[Backend] | None = None
        self._ramped_at = math.inf
        """When every eligible backend is past its slow start (pick's round robin is then a
        plain rotation)."""
        self._rr = 0
        self._wrr: dict[str, float] = {}
        self._ring: list[tuple[int, Backend]] = []
        self._ring_keys: list[int] = []
        self._ring_stale = True
        """Membership changed since the ring was built (it is rebuilt when next needed)."""
        self.inflight = 0
        self.retries_inflight = 0
        self._lanes: dict[float, dict[Attempt, float]] = {}
        """Unanswered attempts and their deadlines, one lane per timeout value in use: each is
        in deadline order, so a dispatch appends instead of pushing onto a heap, and an answered
        attempt leaves at once (nothing answered is kept alive)."""
        self._lane: dict[Attempt, float] | None = None
        self._lane_timeout = -1.0
        self._timer: Handle | None = None
        # counters
        self.forwarded = 0
        self.retried = 0
        self.timeouts = 0
        self.ejection_count = 0
        self.health_changes = 0
        self.budget_denied = 0
        kernel.call_later(cfg.health.interval, self._health_check)

    # -- membership -------------------------------------------------------------------------

    def add(self, container: Container) -> None:
        weight = self.cfg.weights.get(container.vm.id, 1.0) if container.vm else 1.0
        b = Backend(container, self.kernel.now, weight)
        self.backends[b.id] = b
        self._order.append(b)
        self._ring_stale = True
        self.invalidate()

    def remove(self, container_id: str) -> None:
        b = self.backends.pop(container_id, None)
        if b is not None:
            self._order.remove(b)
            self._wrr.pop(container_id, None)
            self._ring_stale = True
            self.invalidate()

    def invalidate(self) -> None:
        """Something that decides eligibility changed (state, health, ejection)."""
        self._eligible = None

    def eligible(self) -> list[Backend]:
        if self._eligible is None:
            now = self.kernel.now
            self._eligible = [
                b
                for b in self._order
                if b.healthy and b.ejected_until <= now and b.container.serving()
            ]
            self._ramped_at = max((b.added_at for b in self._eligible), default=0.0) + (
                self.cfg.slow_start)
        return self._eligible

    def _rebuild_ring(self) -> None:
        """Lay every backend's points on the ring (each backend hashes its points once)."""
        ring: list[tuple[int, Backend]] = []
        for b in self._order:
            if b.points is None:
                b.points = [_hash(f"{b.id}#{i}") for i in range(self.cfg.hash_replicas)]
            ring.extend((h, b) for h in b.points)
        ring.sort(key=lambda e: e[0])
        self._ring = ring
        self._ring_keys = [h for h, _ in ring]
        self._ring_stale = False

    # -- the pair ---------------------------------------------------------------------------

    def node_ids(self) -> list[str]:
        return [n.id for n in self.nodes]

    def node(self, node_id: str) -> BalancerNode | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def set_retries(self, retries: int, budget: float, timeout: float | None = None) -> None:
        """Retries per request, the retry budget, and (if given) the per-attempt timeout."""
        self.retries = retries
        self.retry_budget = budget
        if timeout is not None:
            self.timeout = timeout

    def available(self) -> bool:
        return self.kernel.now >= self._vip_from

    def _vip_changed(self) -> None:
        self._vip_from = self.takeover_until if self.nodes[self.active_node].up else math.inf

    def fail_node(self, node_id: str) -> None:
        node = self.node(node_id)
        if node is None:
            raise ValueError(f"no balancer node {node_id!r}")
        idx = self.nodes.index(node)
        if not node.up:
            return
        node.up = False
        other = 1 - idx
        if idx != self.active_node:
            self.emit("warning", node.id, "lb_down", f"{node.id} (standby) failed",
                      "the pair has no redundancy until it returns")
        elif self.nodes[other].up:
            self.active_node = other
            self.takeover_until = self.kernel.now + self.cfg.vip_takeover
            self.emit("error", node.id, "lb_down", f"{node.id} (active) failed",
                      f"{self.nodes[other].id} takes the VIP over in {self.cfg.vip_takeover:g} s")
            self.kernel.call_later(self.cfg.vip_takeover, self._takeover_done, other)
        else:
            self.emit("error", node.id, "lb_down", f"{node.id} failed with its peer down",
                      "no balancer holds the VIP: every request fails")
        self._vip_changed()

    def _takeover_done(self, idx: int) -> None:
        if self.active_node == idx and self.nodes[idx].up:
            self.emit("info", self.nodes[idx].id, "vip_takeover",
                      f"{self.nodes[idx].id} holds the VIP", "the standby finished its takeover")

    def restore_node(self, node_id: str) -> None:
        node = self.node(node_id)
        if node is None:
            raise ValueError(f"no balancer node {node_id!r}")
        idx = self.nodes.index(node)
        if node.up:
            return
        node.up = True
        if not self.nodes[self.active_node].up:
            self.active_node = idx
            self.takeover_until = self.kernel.now + self.cfg.vip_takeover
            self.emit("info", node.id, "lb_up", f"{node.id} is back and takes the VIP",
                      "no other balancer was up")
        else:
            self.emit("info", node.id, "lb_up", f"{node.id} is back as standby",
                      "the pair is redundant again")
        self._vip_changed()

    # -- forwarding -------------------------------------------------------------------------

    def receive(self, req: Request) -> None:
        """A request (or its retry: it has made an attempt already) reaches the VIP."""
        kernel = self.kernel
        now = kernel.now
        if now < self._vip_from:  # not available()
            self.reply(req, False, "lb_down")
            return
        cands = self._eligible
        if (cands is not None and now >= self._ramped_at and req.tried is None
                and self.algorithm == "round_robin" and len(cands) > 1):
            # pick()'s round robin when no backend is in its slow start: the common case, inline
            self._rr = rr = self._rr + 1
            backend = cands[rr % len(cands)]
        else:
            picked = self.pick(req)
            if picked is None:
                self.reply(req, False, "no_backend")
                return
            backend = picked
        retry = req.attempts != 0
        req.attempts += 1
        att = Attempt(req, backend, now, retry)
        backend.active += 1
        backend.picks += 1
        self.inflight += 1
        self.forwarded += 1
        if retry:
            self.retries_inflight += 1
        timeout = self.timeout
        if timeout > 0.0:
            deadline = now + timeout
            lane = self._lane
            if timeout != self._lane_timeout or lane is None:
                lane = self._lanes.get(timeout)
                if lane is None:
                    lane = self._lanes[timeout] = {}
                self._lane = lane
                self._lane_timeout = timeout
            lane[att] = deadline
            att.lane = lane
            timer = self._timer
            if timer is None or deadline < timer[0]:
                kernel.cancel(timer)
                self._timer = kernel.call_at(deadline, self._expire)
        container = backend.container
        link = self.link
        if link.partitioned or container.partitioned:
            att.handle = kernel.call_later(self.connect_timeout, self._unreachable, att)
        else:  # Link.delay inline (see Link.simple)
            container.receive(att, link.lo + link.draw() * link.span if link.simple
                              else link.delay(now))

    def _unreachable(self, att: Attempt) -> None:
        self.respond(att, False, "partition")

    def _expire(self, _: object) -> None:
        now = self.kernel.now
        self._timer = None
        # Answered attempts leave from the head whatever their deadline, so the timer fires
        # about once per timeout period rather than once per attempt.
        expired: list[tuple[float, Attempt]] = []
        lanes = 0
        for timeout, lane in list(self._lanes.items()):
            before = len(expired)
            for att, deadline in lane.items():
                if deadline > now:
                    break
                expired.append((deadline, att))
            lanes += len(expired) > before
            if len(lane) == len(expired) - before and lane is not self._lane:
                del self._lanes[timeout]  # an old timeout's lane, emptied
        if lanes > 1:  # deadline order across lanes, as one heap would give (stable sort)
            expired.sort(key=lambda e: e[0])
        for _, att in expired:
            if not att.done:
                att.slack = 0.0  # given up on by the balancer's own clock
                self.timeouts += 1
                self.respond(att, False, "timeout")
        if self._timer is None:
            heads = [next(iter(lane.values())) for lane in self._lanes.values() if lane]
            if heads:
                self._timer = self.kernel.call_at(min(heads), self._expire)

    def respond(self, att: Attempt, ok: bool, cause: str) -> None:
        """A backend's answer (or the balancer giving up on it)."""
        if att.done:
            return
        att.done = True
        if att.lane is not None:
            del att.lane[att]
        b = att.backend
        b.active -= 1
        self.inflight -= 1
        if att.retry:
            self.retries_inflight -= 1
        now = self.kernel.now
        slack = att.slack
        latency = now + slack - att.start
        if latency >= b.ewma:  # _observe, inline (once per attempt)
            b.ewma = latency
        else:
            w = _exp(-(now - b.ewma_time) / self.cfg.ewma_decay)
            b.ewma = b.ewma * w + latency * (1.0 - w)
        b.ewma_time = now
        req = att.req
        req.slack += slack
        if ok:
            b.consecutive_5xx = 0
            self.reply(req, True, "")
            return
        b.consecutive_5xx += 1
        if self.cfg.ejection.enabled and b.consecutive_5xx >= self.cfg.ejection.consecutive_5xx:
            self._eject(b, cause)
        if req.attempts <= self.retries and self._budget_allows():
            self.retried += 1
            if req.tried is None:
                req.tried = [b.id]
            else:
                req.tried.append(b.id)
            backoff = self.cfg.retry_backoff * (2 ** (req.attempts - 1))
            self.kernel.call_later(self.rng.random() * backoff, self.receive, req)
        else:
            self.reply(req, False, cause)

    def _budget_allows(self) -> bool:
        allowed = max(3.0, self.retry_budget * self.inflight)
        if self.retries_inflight < allowed:
            return True
        self.budget_denied += 1
        return False

    def _observe(self, b: Backend, latency: float, now: float) -> None:
        """Peak-EWMA: jump up to a slower sample at once, decay towards faster ones."""
        if latency >= b.ewma:
            b.ewma = latency
        else:
            w = math.exp(-(now - b.ewma_time) / self.cfg.ewma_decay)
            b.ewma = b.ewma * w + latency * (1.0 - w)
        b.ewma_time = now

    # -- ejection ---------------------------------------------------------------------------

    def _eject(self, b: Backend, cause: str) -> None:
        now = self.kernel.now
        if b.ejected_until > now:
            return
        ejected = sum(1 for x in self._order if x.ejected_until > now)
        limit = max(1, int(len(self._order) * self.cfg.ejection.max_percent))
        if ejected >= limit:
            return
        b.ejections += 1
        self.ejection_count += 1
        period = self.cfg.ejection.base_time * b.ejections
        b.ejected_until = now + period
        b.consecutive_5xx = 0
        self.invalidate()
        self.emit("warning", b.id, "ejected", f"{b.id} ejected for {period:g} s",
                  f"{self.cfg.ejection.consecutive_5xx} consecutive failures (last: {cause})")
        self.kernel.call_later(period, self._uneject, b)

    def _uneject(self, b: Backend) -> None:
        if self.backends.get(b.id) is b and b.ejected_until <= self.kernel.now:
            self.invalidate()
            self.emit("info", b.id, "unejected", f"{b.id} back in rotation",
                      "its ejection period ended")

    # -- health checks ----------------------------------------------------------------------

    def _health_check(self, _: object) -> None:
        hc = self.cfg.health
        changed = False
        for b in self._order:
            c = b.container
            ok = c.probe_ok(hc.timeout) and not self.link.partitioned
            if ok:
                b.hc_fail = 0
                b.hc_ok += 1
                if not b.healthy and b.hc_ok >= hc.rise:
                    b.healthy = True
                    changed = True
                    self.health_changes += 1
                    self.emit("info", b.id, "health_up", f"{b.id} marked healthy",
                              f"{hc.rise} consecutive health checks passed")
            else:
                b.hc_ok = 0
                b.hc_fail += 1
                if b.healthy and b.hc_fail >= hc.fall:
                    b.healthy = False
                    changed = True
                    self.health_changes += 1
                    self.emit("warning", b.id, "health_down", f"{b.id} marked down",
                              f"{hc.fall} consecutive health checks failed ({c.probe_why()})")
        if changed:
            self.invalidate()
        self.kernel.call_later(hc.interval, self._health_check)

    # -- algorithms -------------------------------------------------------------------------

    def set_algorithm(self, name: str) -> None:
        if name not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {name!r}; expected one of {', '.join(ALGORITHMS)}")
        self.algorithm = name
        self._wrr.clear()

    def _slow(self, b: Backend, now: float) -> float:
        """Slow-start factor in (0, 1]: a new backend's share ramps up linearly."""
        ss = self.cfg.slow_start
        if ss <= 0.0:
            return 1.0
        age = now - b.added_at
        return 1.0 if age >= ss else max(0.1, age / ss)

    def pick(self, req: Request) -> Backend | None:
        cands = self._eligible
        if cands is None:
            cands = self.eligible()
        if req.tried:
            cands = [b for b in cands if b.id not in req.tried] or cands
        if not cands:
            return None
        if len(cands) == 1:
            return cands[0]
        now = self.kernel.now
        algo = self.algorithm
        rng = self.rng
        if algo == "round_robin":
            n = len(cands)
            ss = self.cfg.slow_start
            rr = self._rr
            for _ in range(n):
                rr += 1
                b = cands[rr % n]
                age = now - b.added_at
                if age >= ss or rng.random() < (age / ss if age > 0.1 * ss else 0.1):
                    break
            self._rr = rr
            return b
        if algo == "random":
            return cands[int(rng.random() * len(cands))]
        if algo == "least_connections":
            best = cands[0]
            best_cost = best.active / self._slow(best, now)
            for b in cands[1:]:
                cost = b.active / self._slow(b, now)
                if cost < best_cost:
                    best, best_cost = b, cost
            return best
        if algo == "weighted_round_robin":
            return self._smooth_wrr(cands, now)
        if algo == "consistent_hash":
            return self._hash_pick(req, cands)
        # power_of_two and peak_ewma: two random choices, keep the cheaper
        i = int(rng.random() * len(cands))
        j = int(rng.random() * (len(cands) - 1))
        if j >= i:
            j += 1
        a, b = cands[i], cands[j]
        if algo == "power_of_two":
            ca, cb = a.active / self._slow(a, now), b.active / self._slow(b, now)
        else:
            ca = self._ewma_now(a, now) * (a.active + 1) / self._slow(a, now)
            cb = self._ewma_now(b, now) * (b.active + 1) / self._slow(b, now)
        return a if ca <= cb else b

    def _ewma_now(self, b: Backend, now: float) -> float:
        return b.ewma * math.exp(-(now - b.ewma_time) / self.cfg.ewma_decay)

    def _smooth_wrr(self, cands: list[Backend], now: float) -> Backend:
        """nginx's smooth weighted round robin."""
        total = 0.0
        best: Backend | None = None
        best_cur = -math.inf
        wrr = self._wrr
        for b in cands:
            w = b.weight * self._slow(b, now)
            total += w
            cur = wrr.get(b.id, 0.0) + w
            wrr[b.id] = cur
            if cur > best_cur:
                best, best_cur = b, cur
        assert best is not None
        wrr[best.id] = best_cur - total
        return best

    def _hash_pick(self, req: Request, cands: list[Backend]) -> Backend:
        if self._ring_stale:
            self._rebuild_ring()
        keys = self._ring_keys
        if not keys:
            return cands[0]
        allowed = {b.id for b in cands} if len(cands) != len(self._order) else None
        i = bisect_left(keys, _hash(f"client-{req.client}"))
        n = len(keys)
        for step in range(n):
            b = self._ring[(i + step) % n][1]
            if allowed is None or b.id in allowed:
                return b
        return cands[0]

    # -- views ------------------------------------------------------------------------------

    def active_id(self) -> str:
        return self.nodes[self.active_node].id


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
