"""The network tier's parts: links (latency, jitter, loss, partition, bandwidth) and CDN edges."""

from __future__ import annotations

import random
from collections import OrderedDict

from stackyard.core.config import CdnConfig, LinkConfig
from stackyard.core.metrics import Meter

from .traffic import Request

BUFFER = 1.0
BUFFER_MESSAGES = 64
"""A bandwidth-capped link queues ``BUFFER`` seconds of its own work, or ``BUFFER_MESSAGES``
messages on a slow link, before it drops (a router's buffer)."""
RESEND_LIMIT = 16.0
"""A message dropped by a full buffer is sent again while the retransmission timeout is below
this (it doubles each time: 0.2 s gives six tries over 25 s); then it is given up."""


class Link:
    """A one-hop path. Its delay is folded into the next event's time, never an event itself."""

    __slots__ = (
        "_bandwidth",
        "_buffer",
        "_jitter",
        "_latency",
        "_loss",
        "busy_until",
        "draw",
        "lo",
        "name",
        "partitioned",
        "rng",
        "rto",
        "simple",
        "span",
    )

    def __init__(self, name: str, cfg: LinkConfig, rto: float, rng: random.Random) -> None:
        self.name = name
        self._latency = cfg.latency
        self._jitter = cfg.jitter
        self._loss = cfg.loss
        self._bandwidth = cfg.bandwidth
        self.rto = rto
        self.rng = rng
        self.partitioned = False
        self.busy_until = 0.0
        self.draw = rng.random
        self.simple = False
        """Jitter within the latency, no loss, no bandwidth cap: the delay is ``lo`` plus
        ``draw()`` times ``span``, the same as :meth:`delay` gives. The request path computes
        that one line itself (``lo + draw() * span if simple else delay(now)``): a method call
        per hop is a measurable share of a request's cost."""
        self.lo = self.span = 0.0
        self._reshape()

    def _reshape(self) -> None:
        self._buffer = max(BUFFER, BUFFER_MESSAGES / self._bandwidth) if self._bandwidth else 0.0
        self.lo = self._latency - self._jitter
        self.span = 2.0 * self._jitter
        self.simple = self.lo >= 0.0 and not self._loss and not self._bandwidth

    @property
    def latency(self) -> float:
        """One-way latency (seconds)."""
        return self._latency

    @latency.setter
    def latency(self, value: float) -> None:
        self._latency = value
        self._reshape()

    @property
    def jitter(self) -> float:
        """Uniform variation either side of the latency."""
        return self._jitter

    @jitter.setter
    def jitter(self, value: float) -> None:
        self._jitter = value
        self._reshape()

    @property
    def loss(self) -> float:
        """Packet loss probability; each loss costs a retransmission timeout."""
        return self._loss

    @loss.setter
    def loss(self, value: float) -> None:
        self._loss = value
        self._reshape()

    @property
    def bandwidth(self) -> float:
        """Messages per second before queueing (0 = unlimited)."""
        return self._bandwidth

    @bandwidth.setter
    def bandwidth(self, value: float) -> None:
        self._bandwidth = value
        self._reshape()

    def set_delay(self, latency: float, jitter: float) -> None:
        self.latency = latency
        self.jitter = jitter

    def set_loss(self, loss: float) -> None:
        self.loss = loss

    def set_bandwidth(self, bandwidth: float) -> None:
        """Carry at most ``bandwidth`` messages per second (0 = unlimited); more queue."""
        self.bandwidth = bandwidth
        if not bandwidth:
            self.busy_until = 0.0

    def cut(self) -> None:
        """Partition it: nothing crosses until :meth:`heal`."""
        self.partitioned = True

    def heal(self) -> None:
        self.partitioned = False

    def delay(self, now: float) -> float:
        """One-way delay of a message sent now: latency +- jitter, plus a retransmission
        timeout per lost packet (doubling), plus queueing behind a bandwidth cap."""
        if self.simple:
            return self.lo + self.draw() * self.span
        jitter = self._jitter
        d = self._latency
        if jitter:
            d += (self.draw() * 2.0 - 1.0) * jitter
            if d < 0.0:
                d = 0.0
        if self._loss:
            rto = self.rto
            while self.rng.random() < self._loss and rto < 64.0:
                d += rto
                rto *= 2.0
        if self._bandwidth:
            # The link's buffer holds BUFFER seconds of its work (BUFFER_MESSAGES messages on a
            # slow link). A message that finds it full
            # is dropped and sent again after the retransmission timeout (doubling), as TCP does;
            # given up (RESEND_LIMIT), it arrives only after all those timeouts, without taking
            # the link's time. So the backlog, and what waits in it, stays bounded whatever the
            # offered load and however long the cap lasts.
            busy = self.busy_until
            buffer = self._buffer
            wait = 0.0
            rto = self.rto
            while busy - (now + wait) > buffer and rto < RESEND_LIMIT:
                wait += rto
                rto *= 2.0
            at = now + wait
            if busy - at <= buffer:
                self.busy_until = (busy if busy > at else at) + 1.0 / self._bandwidth
                d += self.busy_until - now
            else:
                d += wait
        return d


class Edge:
    """A CDN edge: an LRU cache with a TTL and request collapsing on concurrent misses.

    The hit ratio is never configured; it emerges from key popularity, capacity and TTL.
    """

    __slots__ = (
        "cache",
        "capacity",
        "collapse",
        "collapsed",
        "down_since",
        "fetches",
        "hit_meter",
        "hits",
        "id",
        "inflight",
        "lookup_meter",
        "misses",
        "region",
        "requests",
        "seen",
        "stale_if_error",
        "stale_served",
        "ttl",
        "up",
        "uplink",
    )

    def __init__(self, region: str, cfg: CdnConfig, uplink: Link) -> None:
        self.id = f"edge-{region}"
        self.region = region
        self.capacity = cfg.capacity
        self.ttl = cfg.ttl
        self.collapse = cfg.collapse
        self.stale_if_error = cfg.stale_if_error
        self.up = True
        self.down_since = 0.0
        self.cache: OrderedDict[int, float] = OrderedDict()
        """Key -> when its copy expires, least recently used first."""
        self.inflight: dict[int, Request] = {}
        self.hits = 0
        self.misses = 0
        self.collapsed = 0
        self.fetches = 0
        self.stale_served = 0
        self.seen = 0
        """Client requests that reached it (cache lookups and pass-through API calls)."""
        self.requests = Meter()
        self.hit_meter = Meter()
        self.lookup_meter = Meter()
        self.uplink = uplink
        """Its link to the balancer."""

    def fail(self, now: float) -> None:
        """The edge goes dark; its clients keep trying it until DNS moves them."""
        if self.up:
            self.up = False
            self.down_since = now

    def recover(self) -> None:
        self.up = True

    def sample(self, now: float) -> None:
        self.requests.sample(now, self.seen)
        self.hit_meter.sample(now, self.hits)
        self.lookup_meter.sample(now, self.hits + self.misses)

    def lookup(self, key: int, now: float) -> bool:
        """True on a fresh hit (and refresh its LRU position)."""
        cache = self.cache
        expires = cache.get(key)
        if expires is not None and expires > now:
            cache.move_to_end(key)
            self.hits += 1
            return True
        self.misses += 1
        return False

    def has_stale(self, key: int) -> bool:
        return self.stale_if_error and key in self.cache

    def store(self, key: int, now: float) -> None:
        if self.capacity <= 0 or self.ttl <= 0:
            return
        cache = self.cache
        if key not in cache:
            cache[key] = now + self.ttl
            if len(cache) > self.capacity:
                cache.popitem(last=False)
        else:
            cache[key] = now + self.ttl  # a new value keeps its place: move it to the end
            cache.move_to_end(key)

    def purge(self) -> int:
        n = len(self.cache)
        self.cache.clear()
        return n

    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
