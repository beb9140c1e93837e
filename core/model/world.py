"""The emulated backend wired together, and the path of a request through it.

client --client-<region>--> edge --edge-<region>--> balancer --lb-app--> container --app-db--> db

Static requests stop at the edge on a cache hit; everything else goes to the origin. A request
is finished when its final answer leaves for the client: nothing is decided on the way back, so
no event waits for it to land. Its latency is measured to the moment the answer reaches the
client (the trip back and any short trips folded into earlier events included); "in flight"
counts the requests not answered yet.
"""

from __future__ import annotations

from bisect import bisect_left
from math import floor

from stackyard.core.config import Scenario
from stackyard.core.kernel import Kernel
from stackyard.core.metrics import Meter, RollingHistogram, Series, SloBudget

from .autoscaler import Autoscaler
from .backup import Backups
from .balancer import Balancer
from .compute import TERMINATED, Cluster, Container
from .database import DatabaseTier, DbNode
from .events import Emit
from .failover import Failover
from .network import Edge, Link
from .traffic import READ, STATIC, WRITE, Region, Request, Zipf

CROSS_REGION = 0.05
"""Extra one-way latency for a client sent to another region's edge by DNS failover."""


class World:
    """Everything the engine simulates, plus the request-level counters."""

    __slots__ = (
        "_at_edge_cb",
        "_own_edge",
        "_receive",
        "arrivals",
        "arrived",
        "autoscaler",
        "backups",
        "balancer",
        "cdn_enabled",
        "client_links",
        "cluster",
        "completed",
        "connect_timeout",
        "db",
        "dns_failover",
        "done",
        "edge_links",
        "edges",
        "emit",
        "errors",
        "errors_meter",
        "failed",
        "failover",
        "hit_latency",
        "kernel",
        "links",
        "p99_series",
        "recent",
        "regions",
        "scenario",
        "slo",
        "sojourn_total",
    )

    def __init__(self, scenario: Scenario, kernel: Kernel, emit: Emit) -> None:
        self.scenario = scenario
        self.kernel = kernel
        self.emit = emit
        net = scenario.network
        self.connect_timeout = net.connect_timeout
        self.links = {
            name: Link(name, cfg, net.rto, kernel.rng(f"link:{name}"))
            for name, cfg in sorted(net.links.items())
        }
        regions = sorted(scenario.traffic.regions)
        self.edges = {f"edge-{r}": Edge(r, scenario.cdn, self.links[f"edge-{r}"]) for r in regions}
        self.client_links = {r: self.links[f"client-{r}"] for r in regions}
        self._own_edge = {r: self.edges[f"edge-{r}"] for r in regions}
        self.edge_links = {r: self.links[f"edge-{r}"] for r in regions}
        self.cdn_enabled = scenario.cdn.enabled
        self.hit_latency = scenario.cdn.hit_latency
        self.dns_failover = scenario.cdn.dns_failover
        self.db: DatabaseTier | None = None
        self.failover: Failover | None = None
        self.backups: Backups | None = None
        if scenario.database.enabled:
            dbc = scenario.database
            self.db = DatabaseTier(dbc, kernel, emit, self.links["app-db"],
                                   self.links["db-repl"], net.connect_timeout)
            self.failover = Failover(dbc.failover, kernel, self.db, emit)
            self.backups = Backups(dbc.backup, kernel, self.db, emit)
        self.cluster = Cluster(scenario.app, kernel, emit, self.db)
        self.balancer = Balancer(
            scenario.balancer, kernel, self.links["lb-app"], net.connect_timeout, emit, self.reply
        )
        self.cluster.start(self.balancer)
        self.autoscaler = Autoscaler(scenario.app.autoscaler, kernel, self.cluster, emit)
        zipf = Zipf(scenario.traffic.keys, scenario.traffic.zipf_s)
        self.regions = {
            r: Region(r, scenario.traffic.regions[r], scenario.traffic, kernel, zipf, self.arrive,
                      self.edges[f"edge-{r}"], self.client_links[r], self.edge_links[r])
            for r in regions
        }
        # the request path's callbacks, bound once (each scheduling would allocate them anew)
        self._at_edge_cb = self._at_edge
        self._receive = self.balancer.receive
        # request-level accounting
        self.arrived = 0
        self.completed = 0
        self.failed = 0
        self.errors: dict[str, int] = {}
        self.sojourn_total = 0.0
        """Seconds from arrival to answer, summed over finished requests (Little's law: the
        mean of ``in_flight`` is the arrival rate times their mean)."""
        self.recent = RollingHistogram(10, keep_total=True)
        """Latencies of completed requests: the last 10 s, and (``all_time()``) the run."""
        self.arrivals = Meter()
        self.done = Meter()
        self.errors_meter = Meter()
        self.p99_series = Series()
        self.slo = SloBudget(scenario.slo.target, scenario.slo.latency, scenario.slo.window)
        for region in self.regions.values():
            region.start()
        kernel.call_later(1.0, self._second)

    @property
    def in_flight(self) -> int:
        return self.arrived - self.completed - self.failed

    # -- finding things ---------------------------------------------------------------------

    def find(self, kind: str, node_id: str) -> object | None:
        """The live model object of ``kind`` (container, vm, host, link, edge, balancer,
        region, db) called ``node_id``, or None."""
        if kind == "container":
            c = self.cluster.containers.get(node_id)
            return c if c is not None and c.state != TERMINATED else None
        if kind == "vm":
            return self.cluster.vms.get(node_id)
        if kind == "host":
            return next((h for h in self.cluster.hosts if h.id == node_id), None)
        if kind == "link":
            return self.links.get(node_id)
        if kind == "edge":
            return self.edges.get(node_id)
        if kind == "balancer":
            return self.balancer.node(node_id)
        if kind == "region":
            return self.regions.get(node_id)
        if kind == "db":
            return self.db.nodes.get(node_id) if self.db is not None else None
        return None

    def ids(self, kind: str) -> list[str]:
        """Every id of ``kind`` there is now."""
        if kind == "container":
            return [c.id for c in self.cluster.containers.values() if c.state != TERMINATED]
        if kind == "vm":
            return list(self.cluster.vms)
        if kind == "host":
            return [h.id for h in self.cluster.hosts]
        if kind == "link":
            return list(self.links)
        if kind == "edge":
            return list(self.edges)
        if kind == "balancer":
            return self.balancer.node_ids()
        if kind == "region":
            return list(self.regions)
        if kind == "db":
            return list(self.db.nodes) if self.db is not None else []
        return []

    def edge_of(self, region: str) -> Edge:
        """The CDN edge that serves ``region``'s clients."""
        return self._own_edge[region]

    # -- partitions -------------------------------------------------------------------------

    def cut(self, node: object) -> None:
        """Partition a container, link, edge (its uplink) or database node off the network."""
        if isinstance(node, DbNode):
            assert self.failover is not None
            self.failover.set_partition(node, "all")
            return
        if isinstance(node, Edge):
            node = self.edge_links[node.region]
        if isinstance(node, Link | Container):
            node.cut() if isinstance(node, Link) else node.cut_off()
        self.balancer.invalidate()

    def heal(self, node: object) -> None:
        """Undo :meth:`cut`."""
        if isinstance(node, DbNode):
            assert self.failover is not None
            self.failover.set_partition(node, "")
            return
        if isinstance(node, Edge):
            node = self.edge_links[node.region]
        if isinstance(node, Link):
            node.heal()
        elif isinstance(node, Container):
            node.reconnect()
        self.balancer.invalidate()

    def region_outage(self, region: str) -> None:
        """A region's edge and its uplink go dark."""
        self.fail_edge(self.edge_of(region))
        self.edge_links[region].cut()

    def region_recovers(self, region: str) -> None:
        self.recover_edge(self.edge_of(region))
        self.edge_links[region].heal()

    # -- CDN edges and DNS ------------------------------------------------------------------

    def fail_edge(self, edge: Edge) -> None:
        """Take ``edge`` down; DNS moves its region's clients elsewhere after ``dns_failover``."""
        if not edge.up:
            return
        edge.fail(self.kernel.now)
        self.kernel.call_later(self.dns_failover, self._dns_moves, (edge, edge.down_since))

    def recover_edge(self, edge: Edge) -> None:
        """Bring ``edge`` back; clients DNS had sent elsewhere return to it."""
        if edge.up:
            return
        moved = self.kernel.now - edge.down_since >= self.dns_failover
        edge.recover()
        if moved:
            self.emit("info", edge.id, "dns_back",
                      f"DNS sends {edge.region} clients back to {edge.id}",
                      f"{edge.id} is up again: they stop paying the cross-region trip")

    def _dns_moves(self, arg: tuple[Edge, float]) -> None:
        edge, since = arg
        if edge.up or edge.down_since != since:
            return
        region = edge.region
        other = next((e for e in self.edges.values() if e.up), None)
        if other is None:
            self.emit("error", edge.id, "dns_nowhere", f"DNS has no edge for {region} clients",
                      f"{edge.id} has been down {self.dns_failover:g} s and every other edge "
                      "is down too")
            return
        self.emit("warning", edge.id, "dns_failover",
                  f"DNS sends {region} clients to {other.id}",
                  f"{edge.id} has been down {self.dns_failover:g} s; they pay about "
                  f"{CROSS_REGION * 1000:g} ms more each way")

    # -- the request path -------------------------------------------------------------------

    def _edge_for(self, region: str) -> tuple[Edge | None, float]:
        own = self.edges[f"edge-{region}"]
        if own.up:
            return own, 0.0
        if self.kernel.now - own.down_since < self.dns_failover:
            return None, 0.0
        for edge in self.edges.values():
            if edge.up:
                return edge, CROSS_REGION
        return None, 0.0

    def arrive(self, region: Region) -> None:
        now = self.kernel.now
        # the request's endpoint (by the mix), key (Zipf) and client, from the region's stream
        random = region._random
        u = random()
        endpoint = STATIC if u < region.p_static else READ if u < region.p_read else WRITE
        u = random()
        zipf = region.zipf
        # Zipf.rank, inline (floor is int() for these non-negative numbers, without a type call)
        guide = zipf.guide
        j = floor(u * zipf.slots)
        key = guide[j]
        if key != guide[j + 1]:
            key = bisect_left(zipf.cdf, u, key, guide[j + 1] + 1)
        client = floor(random() * region.clients)
        self.arrived = rid = self.arrived + 1
        edge: Edge | None = region.edge
        penalty = 0.0
        if not region.edge.up:
            edge, penalty = self._edge_for(region.name)
        req = Request(rid, now, region, endpoint, key, client, edge)
        if edge is None:
            self.finish(req, False, "edge_down", self.connect_timeout)
            return
        clink = region.client_link
        if clink.partitioned:
            self.finish(req, False, "partition", self.connect_timeout)
            return
        # Link.delay inline (see Link.simple), here and on the rest of the request path
        delay = penalty + (
            clink.lo + clink.draw() * clink.span if clink.simple else clink.delay(now))
        edge.seen += 1
        if endpoint == STATIC and self.cdn_enabled:
            self.kernel.call_later(delay, self._at_edge_cb, req)
            return
        elink = edge.uplink
        if elink.partitioned:
            self.finish(req, False, "partition", delay + self.connect_timeout)
        else:
            delay += elink.lo + elink.draw() * elink.span if elink.simple else elink.delay(now)
            self.kernel.call_later(delay, self._receive, req)

    def _at_edge(self, req: Request) -> None:
        edge = req.edge
        assert edge is not None
        now = self.kernel.now
        back = req.region.client_link
        if not edge.up:
            self.finish(req, False, "edge_down", back.delay(now))
            return
        if edge.lookup(req.key, now):
            self.finish(req, True, "", self.hit_latency + (
                back.lo + back.draw() * back.span if back.simple else back.delay(now)))
            return
        if edge.collapse:
            fetch = edge.inflight.get(req.key)
            if fetch is not None:
                assert fetch.waiters is not None
                fetch.waiters.append(req)
                edge.collapsed += 1
                return
        fetch = Request(0, now, req.region, STATIC, req.key, req.client, edge)
        fetch.waiters = [req]
        if edge.collapse:
            edge.inflight[req.key] = fetch
        edge.fetches += 1
        elink = edge.uplink
        if elink.partitioned:
            self.kernel.call_later(self.connect_timeout, self._fetch_unreachable, fetch)
        else:
            self.kernel.call_later(elink.delay(now), self._receive, fetch)

    def _fetch_unreachable(self, fetch: Request) -> None:
        self.reply(fetch, False, "partition")

    def reply(self, req: Request, ok: bool, cause: str) -> None:
        """The balancer's final answer for a request (after any retries)."""
        edge = req.edge
        assert edge is not None
        now = self.kernel.now
        up = edge.uplink
        back = up.lo + up.draw() * up.span if up.simple else up.delay(now)
        if req.waiters is None:  # a client request: its answer goes on to the client
            clink = req.region.client_link
            back += clink.lo + clink.draw() * clink.span if clink.simple else clink.delay(now)
            self.finish(req, ok, cause, back)
            return
        self.kernel.call_later(back + req.slack, self._fetch_back, (req, ok, cause))

    def _fetch_back(self, arg: tuple[Request, bool, str]) -> None:
        """An origin fetch's answer reaches its edge: cache it and answer the waiters."""
        req, ok, cause = arg
        edge = req.edge
        assert edge is not None
        now = self.kernel.now
        if edge.inflight.get(req.key) is req:
            del edge.inflight[req.key]
        if ok:
            edge.store(req.key, now)
        stale = not ok and edge.has_stale(req.key)
        assert req.waiters is not None
        for w in req.waiters:
            clink = w.region.client_link
            d = clink.lo + clink.draw() * clink.span if clink.simple else clink.delay(now)
            if ok:
                self.finish(w, True, "", d)
            elif stale:
                edge.stale_served += 1
                self.finish(w, True, "", d)
            else:
                self.finish(w, False, cause, d)

    def finish(self, req: Request, ok: bool, cause: str, delay: float) -> None:
        """The final answer leaves for the client and reaches it ``delay`` seconds from now
        (plus the trips folded into the request's earlier events). Nothing is decided on the
        way, so the request is counted now, with its latency to the moment it lands."""
        now = self.kernel.now
        t0 = req.t0
        self.sojourn_total += now - t0
        latency = now + delay + req.slack - t0
        slo = self.slo
        slo.total += 1
        if ok:
            self.completed += 1
            self.recent.record(now, latency)
            if latency <= slo.latency:
                slo.good += 1
        else:
            self.failed += 1
            self.errors[cause] = self.errors.get(cause, 0) + 1

    def _second(self, _: object) -> None:
        now = self.kernel.now
        self.slo.roll(now)
        self.p99_series.set(now - 1.0, self.recent.quantile(now, 0.99))
        self.arrivals.sample(now, self.arrived)
        self.done.sample(now, self.completed)
        self.errors_meter.sample(now, self.failed)
        for edge in self.edges.values():
            edge.sample(now)
        for b in self.balancer.backends.values():
            b.meter.sample(now, b.picks)
        for c in self.cluster.containers.values():
            c.sample(now)
        if self.db is not None:
            for node in self.db.nodes.values():
                node.ops.sample(now, node.reads + node.writes)
        self.kernel.call_later(1.0, self._second)
