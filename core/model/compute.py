"""The application tier: hosts run VMs, VMs run containers, containers serve requests.

A container has worker slots and a bounded queue (503 when full). A request holds its worker
through its CPU phase and its database step, so a slow database exhausts workers upstream.

CPU is processor sharing: the requests in their CPU phase (and a CPU hog's threads) share the
container's ``cpu`` cores fairly, each getting at most one core; a VM whose containers want more
than its vCPUs slows them all in proportion, and steal on the host slows everything on it. The
shares are recomputed whenever a request starts or ends its CPU phase, so the sharing is exact.
It runs on virtual time: every request in the phase progresses at the same rate, so each needs
one number (the virtual time at which its demand is met) and the container one kernel timer,
rescheduled when the rate changes, for its next completion.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import TYPE_CHECKING

from stackyard.core.config import AppConfig
from stackyard.core.kernel import Handle, Kernel
from stackyard.core.metrics import Meter, Series
from stackyard.core.model.events import Emit

from .service import EXPONENTIAL, sampler
from .traffic import ENDPOINTS, STATIC, WRITE

if TYPE_CHECKING:
    from .balancer import Attempt, Balancer
    from .database import Database


PENDING = "pending"
STARTING = "starting"
RUNNING = "running"
DRAINING = "draining"
BACKOFF = "backoff"
TERMINATED = "terminated"

_log = math.log

FOLD_LIMIT = 0.001
"""A link delay up to this is folded: the attempt starts on the container at once and the delay
is added to its answer's trip (its state changes land at most this early); a longer one gets an
arrival event of its own."""
DONE = 1e-12
"""Virtual seconds of demand left that count as none (float rounding of the virtual clock)."""

CRASH_RESET_AFTER = 600.0
"""A container that ran this long without crashing starts its back-off from scratch."""
MAX_DOUBLINGS = 60
"""The crash-loop back-off doubles per restart up to its maximum; the exponent stops here so
that a long crash loop (about a thousand restarts) never overflows a float."""
MIN_BACKOFF = 0.1
"""Restarts are at least this far apart, so a crash loop with zero start time and zero
back-off still moves the clock instead of looping at one instant."""


class Host:

    __slots__ = (
        "cores",
        "id",
        "memory_gb",
        "slowdown",
        "steal",
        "up",
        "vms",
    )

    def __init__(self, host_id: str, cores: int, memory_gb: float) -> None:
        self.id = host_id
        self.cores = cores
        self.memory_gb = memory_gb
        self.up = True
        self.steal = 0.0
        """Fraction of CPU taken by a noisy neighbour (0 = none)."""
        self.slowdown = 1.0
        self.vms: list[Vm] = []

    def set_steal(self, steal: float) -> None:
        """A noisy neighbour takes ``steal`` of the CPU: everything on the host slows down."""
        self.steal = min(max(steal, 0.0), 0.95)
        self.slowdown = 1.0 / (1.0 - self.steal)
        for vm in self.vms:
            for c in vm.containers:
                c.reshare()


class Vm:

    __slots__ = (
        "boots",
        "containers",
        "host",
        "id",
        "idle_since",
        "load",
        "memory_gb",
        "ready_at",
        "roomy",
        "state",
        "vcpus",
    )

    def __init__(self, vm_id: str, host: Host, vcpus: int, memory_gb: float) -> None:
        self.id = vm_id
        self.host = host
        self.vcpus = vcpus
        self.memory_gb = memory_gb
        self.state = "booting"
        self.containers: list[Container] = []
        self.load = 0.0
        """Cores busy across its containers (each capped at its own limit)."""
        self.roomy = True
        """Its containers' CPU limits add up to no more than its vCPUs, so its load cannot
        exceed them (placement keeps it so): no container needs to look at the load."""
        self.boots = 0
        """Boot attempts so far: a boot timer from an earlier attempt is ignored."""
        self.idle_since = 0.0
        self.ready_at = 0.0

    def seated(self) -> None:
        """Its containers changed: is it still roomy?"""
        self.roomy = sum(c.cpu for c in self.containers) <= self.vcpus


class Container:
    """One application container: worker slots, a bounded queue, a memory limit."""

    __slots__ = (
        "_complete_cb",
        "_completing",
        "_cpu_timer",
        "_finish_cb",
        "_leak_timer",
        "_random",
        "_respond",
        "_timer",
        "backoff",
        "busy",
        "cluster",
        "completed",
        "cpu",
        "cpu_busy",
        "cpu_mark",
        "cpu_prev",
        "cpu_seconds",
        "cpu_series",
        "crash_after",
        "crash_loop",
        "created",
        "db",
        "done_meter",
        "draws",
        "error_meter",
        "exp_means",
        "failed",
        "hog",
        "hog_fault",
        "id",
        "jobs",
        "kernel",
        "leak_rate",
        "leaked",
        "mark_time",
        "mem_base",
        "mem_limit",
        "mem_per_req",
        "partitioned",
        "ps",
        "qcap",
        "queue",
        "restarts",
        "rng",
        "running_since",
        "started",
        "state",
        "vclock",
        "vm",
        "vm_share",
        "vrate",
        "vstamp",
        "wait_total",
        "workers",
    )

    def __init__(self, cid: str, cluster: Cluster) -> None:
        cfg = cluster.cfg.container
        self.id = cid
        self.cluster = cluster
        self.kernel = cluster.kernel
        self.rng = cluster.kernel.rng(f"container:{cid}")
        self.draws = cluster.draws
        self.exp_means = cluster.exp_means
        self._random = self.rng.random
        self.db = cluster.db
        self._respond = cluster.respond if cluster.balancer is None else cluster.balancer.respond
        """Answers go to the balancer (straight to it once there is one)."""
        self.cpu = cfg.cpu
        self.workers = cfg.workers
        self.qcap = cfg.queue
        self.mem_limit = cfg.memory_mb
        self.mem_base = cfg.base_memory_mb
        self.mem_per_req = cfg.memory_per_request_mb
        self.vm: Vm | None = None
        self.state = PENDING
        self.partitioned = False
        self.hog = 0.0
        self.hog_fault = 0.0
        """Cores a cpu_hog fault burns while the process runs (a restart ends the hog thread
        until the fault re-arms it on the next start)."""
        self.leak_rate = 0.0
        self.leaked = 0.0
        self.crash_loop = False
        self.crash_after = 2.0
        self.busy = 0
        self.cpu_busy = 0
        """Attempts in their CPU phase (sharing the cores)."""
        self.ps: list[tuple[float, int, Attempt]] = []
        """The CPU phase as a heap of (virtual time its demand is met, start number, attempt)."""
        self.vclock = 0.0
        """Virtual time: the CPU seconds each attempt in the phase has received (at ``vstamp``)."""
        self.vstamp = 0.0
        self.vrate = 1.0
        """Virtual seconds per second: each attempt's share of a core now."""
        self.vm_share = 0.0
        """Cores it asks of its VM (counted in the VM's load)."""
        self._cpu_timer: Handle | None = None
        self._completing = False
        """Inside a completion: starts reschedule the timer once, at its end."""
        self._complete_cb = self._complete
        self._finish_cb = self._finish
        """Bound once: scheduling a bound method per request would allocate it anew."""
        self.queue: deque[Attempt] = deque()
        self.jobs: dict[Attempt, None] = {}
        """Attempts holding a worker, in start order (a dict, so iteration is deterministic)."""
        self.restarts = 0
        self.backoff = 0.0
        self.running_since = 0.0
        self.created = cluster.kernel.now
        self.cpu_seconds = 0.0
        self.cpu_prev = 0.0
        self.cpu_series = Series()
        """CPU use per second as a fraction of its limit (sampled once a simulated second)."""
        self.cpu_mark = 0.0
        self.mark_time = cluster.kernel.now
        self.completed = 0
        self.failed = 0
        self.started = 0
        self.wait_total = 0.0
        """Seconds attempts spent queued for a worker, summed over ``started`` attempts."""
        self.done_meter = Meter()
        self.error_meter = Meter()
        self._timer: Handle | None = None
        self._leak_timer: Handle | None = None

    # -- state ------------------------------------------------------------------------------

    def serving(self) -> bool:
        """Whether the balancer may send it new requests (as far as the balancer knows)."""
        return self.state != DRAINING and self.state != TERMINATED and self.state != PENDING

    def probe_ok(self, timeout: float) -> bool:
        """Would an HTTP health check get its answer within ``timeout``? It waits behind the
        queue, so a container draining its queue too slowly fails its checks."""
        if (self.state != RUNNING and self.state != DRAINING) or self.partitioned:
            return False
        return self.probe_wait() < timeout

    def probe_wait(self) -> float:
        """Expected wait behind the queue, by Little's law on recent throughput."""
        if not self.queue:
            return 0.0
        now = self.kernel.now
        throughput = self.done_meter.series.rate(now, 5) + self.error_meter.series.rate(now, 5)
        return len(self.queue) / throughput if throughput > 0 else float("inf")

    def probe_why(self) -> str:
        if self.state not in (RUNNING, DRAINING):
            return f"container is {self.state}"
        if self.partitioned:
            return "container unreachable"
        return f"health check stuck behind a queue of {len(self.queue)}"

    def memory(self) -> float:
        return self.mem_base + self.mem_per_req * (self.busy + len(self.queue)) + self.leaked

    # -- requests ---------------------------------------------------------------------------

    def receive(self, att: Attempt, lead: float = 0.0) -> None:
        """An attempt from the balancer, arriving ``lead`` seconds from now (a short trip is
        folded: the attempt starts at once and its answer travels that much longer)."""
        if lead > FOLD_LIMIT:
            att.handle = self.kernel.call_later(lead, self.receive, att)
            return
        att.handle = None
        att.slack += lead
        att.arrived = self.kernel.now
        state = self.state
        if state != RUNNING and state != DRAINING:
            self._respond(att, False, "conn_refused")
            return
        if self.busy < self.workers:
            self._start(att)
        elif len(self.queue) < self.qcap:
            self.queue.append(att)
            if self.memory() > self.mem_limit:
                self.crash("oom", "memory above its limit")
        else:
            self.failed += 1
            self._respond(att, False, "queue_full")

    def _start(self, att: Attempt) -> None:
        """Give ``att`` a worker: it enters the CPU phase with a demand drawn for its endpoint."""
        self.started += 1
        now = self.kernel.now
        wait = now - att.arrived
        if wait > 0.0:
            self.wait_total += wait
        self.busy += 1
        self.jobs[att] = None
        endpoint = att.req.endpoint
        mean = self.exp_means[endpoint]
        # the default shape drawn here, as service.sampler's exponential draws it (one call less
        # per request); other shapes through their sampler
        demand = -_log(1.0 - self._random()) * mean if mean else self.draws[endpoint](self.rng)
        self.cpu_seconds += demand
        att.cpu = True
        n = self.cpu_busy
        # an idle phase restarts its clock: no drift over a long run
        vclock = self.vclock + (now - self.vstamp) * self.vrate if n else 0.0
        self.vclock = vclock
        self.vstamp = now
        heapq.heappush(self.ps, (vclock + demand, self.started, att))  # started: a tie-break
        self.cpu_busy = n + 1
        if not self._completing:
            self._retime()

    def share(self) -> float:
        """Each CPU-phase attempt's progress per second: a fair share of the cores (at most
        one), scaled down by an oversubscribed VM and by steal on the host."""
        load = self.cpu_busy + self.hog
        cpu = self.cpu
        rate = cpu / load if load > cpu else 1.0
        vm = self.vm
        if vm is not None:
            if vm.load > vm.vcpus:
                rate *= vm.vcpus / vm.load
            rate *= 1.0 - vm.host.steal
        return rate

    def _retime(self) -> None:
        """The CPU phase changed (``vstamp`` is now): bring its part of the VM's load in line
        (siblings re-time if the VM is or was oversubscribed), recompute the share and point the
        timer at the next completion."""
        load = self.cpu_busy + self.hog
        cpu = self.cpu
        vm = self.vm
        if vm is not None:
            want = load if load < cpu else cpu
            delta = want - self.vm_share
            if delta:
                self.vm_share = want
                before = vm.load
                vm.load = before + delta
                if not vm.roomy and (before > vm.vcpus or vm.load > vm.vcpus):
                    for c in vm.containers:
                        if c is not self:
                            c.reshare()
        ps = self.ps
        timer = self._cpu_timer
        if not ps:
            if timer is not None:
                self.kernel.cancel(timer)
                self._cpu_timer = None
            return
        if vm is None or vm.host.steal or (not vm.roomy and vm.load > vm.vcpus):
            rate = self.share()
        else:
            rate = cpu / load if load > cpu else 1.0
        self.vrate = rate
        t = self.vstamp + (ps[0][0] - self.vclock) / rate
        if timer is not None:
            if timer[0] == t:
                return
            self.kernel.cancel(timer)
        self._cpu_timer = self.kernel.call_at(t, self._complete_cb)

    def reshare(self) -> None:
        """Something outside changed the shares (steal, the VM's load): re-time the phase."""
        if self.cpu_busy:
            now = self.kernel.now
            self.vclock += (now - self.vstamp) * self.vrate
            self.vstamp = now
            self._retime()

    def _complete(self, _: object) -> None:
        """The timer: every attempt whose demand is met leaves the CPU phase."""
        self._cpu_timer = None
        now = self.kernel.now
        self.vclock = vclock = self.vclock + (now - self.vstamp) * self.vrate
        self.vstamp = now
        ps = self.ps
        limit = vclock + DONE
        pop = heapq.heappop
        att = pop(ps)[2]
        att.cpu = False
        if ps and ps[0][0] <= limit:
            done = [att]
            while ps and ps[0][0] <= limit:
                nxt = pop(ps)[2]
                nxt.cpu = False
                done.append(nxt)
        else:
            done = None
        self.cpu_busy = len(ps)
        self._completing = True
        if done is None:  # _cpu_done, inline (the common case: one attempt at a time)
            endpoint = att.req.endpoint
            db = self.db
            if endpoint == STATIC or db is None:
                self._finish(att, True, "")
            else:
                db.submit(att, endpoint == WRITE, self._finish_cb)
        else:
            for att in done:
                if att in self.jobs:  # an earlier one's answer may have crashed it
                    self._cpu_done(att)
        self._completing = False
        self._retime()

    def _cpu_done(self, att: Attempt) -> None:
        db = self.db
        endpoint = att.req.endpoint
        if endpoint == STATIC or db is None:
            self._finish(att, True, "")
        else:
            db.submit(att, endpoint == WRITE, self._finish_cb)

    def _finish(self, att: Attempt, ok: bool, cause: str) -> None:
        """``att``'s answer leaves the container (the database's answer comes here too)."""
        if self.jobs.pop(att, 0) is not None:
            return  # not held: the container died while the database worked on it
        self.busy -= 1
        if ok:
            self.completed += 1
        else:
            self.failed += 1
        self._respond(att, ok, cause)
        if self.queue:
            self._start(self.queue.popleft())
        elif self.state == DRAINING and not self.busy:
            self.cluster.terminate(self, "drained")

    def _abort_all(self, cause: str) -> None:
        """Fail every attempt it holds (the process is gone)."""
        kernel = self.kernel
        self.failed += len(self.jobs) + len(self.queue)
        self.ps.clear()
        self.cpu_busy = 0
        self._retime()
        jobs = list(self.jobs)
        self.jobs.clear()
        self.busy = 0
        for att in jobs:
            kernel.cancel(att.handle)
            att.handle = None
            att.cpu = False
            self._respond(att, False, cause)
        while self.queue:
            self._respond(self.queue.popleft(), False, cause)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Begin starting on its VM (after placement or a back-off)."""
        self.state = STARTING
        self.leaked = 0.0
        self.kernel.cancel(self._timer)
        self._timer = self.kernel.call_later(self.cluster.cfg.container.start, self._ready)

    def _ready(self, _: object) -> None:
        self._timer = None
        self.state = RUNNING
        now = self.kernel.now
        self.running_since = now
        self.mark_time = now
        self.cpu_mark = self.cpu_seconds
        if self.hog_fault:
            self.set_hog(self.hog_fault)
        self.cluster.changed(self)
        self.cluster.emit("info", self.id, "container_up", f"{self.id} running",
                          "its process started and passes readiness")
        if self.crash_loop:
            self._timer = self.kernel.call_later(self.crash_after, self._crash_loop)

    def _crash_loop(self, _: object) -> None:
        self._timer = None
        if self.crash_loop and self.state == RUNNING:
            self.crash("crash", "its process exits soon after start (crash loop)")

    def crash(self, cause: str, why: str) -> None:
        """The process dies; the restart policy brings it back after a growing back-off."""
        if self.state in (TERMINATED, PENDING, BACKOFF):
            return
        if self.state == DRAINING:  # it was on its way out: it does not come back
            self.cluster.terminate(self, f"{'OOM-killed' if cause == 'oom' else 'killed'} "
                                         "while draining")
            return
        now = self.kernel.now
        was = self.state
        self._abort_all("oom" if cause == "oom" else "conn_reset")
        self.set_hog(0.0)
        if was == RUNNING and now - self.running_since >= CRASH_RESET_AFTER:
            self.restarts = 0
        self.restarts += 1
        cfg = self.cluster.cfg.container
        doubling = 2.0 ** min(self.restarts - 1, MAX_DOUBLINGS)
        self.backoff = max(MIN_BACKOFF, min(cfg.backoff_initial * doubling, cfg.backoff_max))
        self.state = BACKOFF
        self.leaked = 0.0
        self.kernel.cancel(self._timer)
        self._timer = self.kernel.call_later(self.backoff, self._restart)
        self.cluster.changed(self)
        kind = "oom_kill" if cause == "oom" else "container_crash"
        self.cluster.emit("error", self.id, kind,
                          f"{self.id} {'OOM-killed' if cause == 'oom' else 'crashed'}; "
                          f"restart in {self.backoff:g} s", why)

    def _restart(self, _: object) -> None:
        self._timer = None
        if self.state == BACKOFF:
            self.start()
            self.cluster.changed(self)

    def drain(self) -> None:
        if self.state in (TERMINATED, DRAINING):
            return
        if self.state != RUNNING or not self.busy:
            self.cluster.terminate(self, "scaled in")
            return
        self.state = DRAINING
        self.cluster.changed(self)
        self.kernel.cancel(self._timer)
        limit = self.cluster.balancer_drain_timeout()
        self._timer = self.kernel.call_later(limit, self._drain_timeout)
        self.cluster.emit("info", self.id, "draining", f"{self.id} draining",
                          f"scaled in: it finishes its {self.busy} request(s) in progress "
                          f"(at most {limit:g} s), then stops")

    def _drain_timeout(self, _: object) -> None:
        self._timer = None
        if self.state == DRAINING:
            self.cluster.terminate(self, "drain timeout")

    def stop(self, cause: str) -> None:
        """Gone for good: fail what it holds and cancel its timers."""
        if self.jobs or self.queue:
            self._abort_all(cause)
        self.set_hog(0.0)  # after the abort, cpu_busy is 0: this removes the last of its load
        self.kernel.cancel(self._timer)
        self.kernel.cancel(self._leak_timer)
        self._timer = self._leak_timer = None
        self.state = TERMINATED

    def start_crash_loop(self, after: float) -> None:
        """A bad release: the process exits ``after`` seconds after each start, from now on."""
        self.crash_loop = True
        self.crash_after = after
        self.crash("crash", "a bad release: the process exits right after start")

    def stop_crash_loop(self) -> None:
        self.crash_loop = False

    def stop_leak(self) -> None:
        """The leak is fixed: memory stops growing and what leaked is freed."""
        self.set_leak(0.0)
        self.leaked = 0.0

    def hog_cpu(self, cores: float) -> None:
        """A runaway thread burns ``cores`` while the process runs (and after each restart)."""
        self.hog_fault = cores
        self.set_hog(cores if self.state in (RUNNING, DRAINING) else 0.0)

    def stop_hog(self) -> None:
        self.hog_fault = 0.0
        self.set_hog(0.0)

    def cut_off(self) -> None:
        """Nothing reaches it over the network (its process keeps running)."""
        self.partitioned = True

    def reconnect(self) -> None:
        self.partitioned = False

    def set_leak(self, mb_per_s: float) -> None:
        self.leak_rate = mb_per_s
        self.kernel.cancel(self._leak_timer)
        self._leak_timer = self.kernel.call_later(1.0, self._leak) if mb_per_s > 0 else None

    def _leak(self, _: object) -> None:
        if self.state == RUNNING or self.state == DRAINING:
            self.leaked += self.leak_rate
            if self.memory() > self.mem_limit:
                self.crash("oom", f"memory grew {self.leak_rate:g} MB/s past its "
                                  f"{self.mem_limit:g} MB limit (leak)")
        self._leak_timer = self.kernel.call_later(1.0, self._leak)

    def set_hog(self, cores: float) -> None:
        """Add (or remove) a CPU hog of ``cores`` inside the container: its threads take their
        fair share of the cores like any request."""
        if self.cpu_busy:
            now = self.kernel.now
            self.vclock += (now - self.vstamp) * self.vrate
            self.vstamp = now
        self.hog = max(cores, 0.0)
        self._retime()

    def utilisation(self, now: float) -> float:
        """CPU use over the span since the last mark, as a fraction of its limit."""
        span = now - max(self.mark_time, self.running_since)
        if span <= 0:
            return 0.0
        used = self.cpu_seconds - self.cpu_mark + self.hog * span
        return min(used / (self.cpu * span), 1.0)

    def sample(self, now: float) -> None:
        """Record the last second's figures (called once per simulated second)."""
        self.done_meter.sample(now, self.completed)
        self.error_meter.sample(now, self.failed)
        used = self.cpu_seconds - self.cpu_prev + self.hog
        self.cpu_prev = self.cpu_seconds
        self.cpu_series.set(now - 1.0, min(used / self.cpu, 1.0))

    def mark(self, now: float) -> None:
        self.cpu_mark = self.cpu_seconds
        self.mark_time = now


class Cluster:
    """Hosts, the VM group and the container deployment, with placement and reconciliation."""

    __slots__ = (
        "_c_seq",
        "_vm_seq",
        "balancer",
        "cfg",
        "containers",
        "db",
        "draws",
        "emit",
        "exp_means",
        "hosts",
        "kernel",
        "replicas",
        "vm_boots",
        "vm_shutdowns",
        "vms",
    )

    def __init__(self, cfg: AppConfig, kernel: Kernel, emit: Emit, db: Database | None) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.emit = emit
        self.db = db
        self.balancer: Balancer | None = None
        self.hosts = [
            Host(f"host-{i + 1}", cfg.hosts.cores, cfg.hosts.memory_gb)
            for i in range(cfg.hosts.count)
        ]
        self.vms: dict[str, Vm] = {}
        self.containers: dict[str, Container] = {}
        self.replicas = cfg.autoscaler.initial
        self._vm_seq = 0
        self._c_seq = 0
        self.vm_boots = 0
        self.vm_shutdowns = 0
        svc = cfg.service
        self.draws = [sampler(getattr(svc, e), svc.distribution.get(e, EXPONENTIAL))
                      for e in ENDPOINTS]
        """Per endpoint: draws a request's CPU demand."""
        self.exp_means = [
            mean if mean > 0.0 and svc.distribution.get(e, EXPONENTIAL).kind == "exponential"
            else 0.0 for e, mean in ((e, getattr(svc, e)) for e in ENDPOINTS)]
        """Per endpoint: the mean of an exponential demand, or 0 for another shape."""

    def start(self, balancer: Balancer) -> None:
        self.balancer = balancer
        now = self.kernel.now
        for _ in range(self.cfg.vm.initial):
            vm = self._new_vm()
            if vm is not None:
                vm.state = "ready"
                vm.ready_at = vm.idle_since = now
        self.reconcile()
        for c in list(self.containers.values()):
            if c.state == STARTING:  # the initial fleet is already up at t=0
                self.kernel.cancel(c._timer)
                c._ready(None)
                b = balancer.backends.get(c.id)
                if b is not None:
                    b.healthy = True
                    b.added_at = -self.cfg.container.start - balancer.cfg.slow_start
        balancer.invalidate()
        self.kernel.call_later(self.cfg.autoscaler.period, self._housekeeping)

    # -- callbacks from containers ----------------------------------------------------------

    def respond(self, att: Attempt, ok: bool, cause: str) -> None:
        assert self.balancer is not None
        self.balancer.respond(att, ok, cause)

    def changed(self, c: Container) -> None:
        if self.balancer is not None:
            self.balancer.invalidate()

    def balancer_drain_timeout(self) -> float:
        return self.balancer.cfg.drain_timeout if self.balancer is not None else 0.0

    # -- capacity ---------------------------------------------------------------------------

    def vm_capacity(self) -> int:
        """Containers one VM holds, by CPU limit and memory."""
        c = self.cfg.container
        by_cpu = math.floor(self.cfg.vm.vcpus / c.cpu + 1e-9)
        by_mem = math.floor(self.cfg.vm.memory_gb * 1024 / c.memory_mb + 1e-9)
        return max(min(by_cpu, by_mem), 0)

    def live(self) -> list[Container]:
        return [c for c in self.containers.values() if c.state != TERMINATED]

    def _host_for_vm(self) -> Host | None:
        best: Host | None = None
        for h in self.hosts:
            if not h.up:
                continue
            vm = self.cfg.vm
            used = sum(v.vcpus for v in h.vms) + vm.vcpus
            mem = sum(v.memory_gb for v in h.vms) + vm.memory_gb
            fits = used <= h.cores and mem <= h.memory_gb
            if fits and (best is None or len(h.vms) < len(best.vms)):
                best = h
        return best

    def _new_vm(self) -> Vm | None:
        host = self._host_for_vm()
        if host is None:
            return None
        self._vm_seq += 1
        vm = Vm(f"vm-{self._vm_seq}", host, self.cfg.vm.vcpus, self.cfg.vm.memory_gb)
        host.vms.append(vm)
        self.vms[vm.id] = vm
        return vm

    def boot_vm(self, why: str) -> Vm | None:
        vm = self._new_vm()
        if vm is None:
            self.emit("warning", "vm-group", "no_capacity", "no host has room for another VM",
                      why)
            return None
        self.vm_boots += 1
        self.emit("info", vm.id, "vm_boot", f"{vm.id} booting on {vm.host.id}",
                  f"{why}; ready in {self.cfg.vm.boot:g} s")
        vm.boots += 1
        self.kernel.call_later(self.cfg.vm.boot, self._vm_booted, (vm, vm.boots))
        return vm

    def _vm_booted(self, arg: tuple[Vm, int]) -> None:
        vm, boot = arg
        if vm.boots == boot and vm.state == "booting" and vm.host.up and self.vms.get(vm.id) is vm:
            self._vm_ready(vm)

    def _vm_ready(self, vm: Vm) -> None:
        vm.state = "ready"
        vm.ready_at = vm.idle_since = self.kernel.now
        self.emit("info", vm.id, "vm_ready", f"{vm.id} ready",
                  "boot finished; pending containers can be placed")
        self.reconcile()

    # -- deployment -------------------------------------------------------------------------

    def set_replicas(self, n: int) -> None:
        self.replicas = max(n, 0)
        self.reconcile()

    def reconcile(self) -> None:
        """Make the live containers match ``replicas``: place, create, or drain."""
        live = self.live()
        active = [c for c in live if c.state != DRAINING]
        if len(active) > self.replicas:
            order = {PENDING: 0, BACKOFF: 1, STARTING: 2, RUNNING: 3}
            victims = sorted(active, key=lambda c: (order.get(c.state, 4), -c.created, c.id))
            for c in victims[: len(active) - self.replicas]:
                c.drain()
        for _ in range(self.replicas - len(active)):
            self._c_seq += 1
            c = Container(f"app-{self._c_seq}", self)
            self.containers[c.id] = c
        self._place_pending()

    def _place_pending(self) -> None:
        pending = [c for c in self.containers.values() if c.state == PENDING]
        if not pending:
            return
        cap = self.vm_capacity()
        for c in pending:
            vm = self._vm_with_room(cap)
            if vm is None:
                break
            c.vm = vm
            vm.containers.append(c)
            vm.seated()
            c.start()
            if self.balancer is not None:
                b = self.balancer.backends.get(c.id)
                if b is None:
                    self.balancer.add(c)
                    self.balancer.backends[c.id].healthy = False
        still = sum(1 for c in self.containers.values() if c.state == PENDING)
        coming = sum(
            cap - len(v.containers)
            for v in self.vms.values()
            if v.state == "booting" or (v.state == "down" and v.host.up)
        )
        while still > coming and len(self.vms) < self.cfg.vm.max:
            if self.boot_vm(f"{still} container(s) have no VM with room") is None:
                break
            coming += cap

    def _vm_with_room(self, cap: int) -> Vm | None:
        best: Vm | None = None
        for vm in self.vms.values():
            if vm.state != "ready" or not vm.host.up:
                continue
            n = len(vm.containers)
            if n < cap and (best is None or n < len(best.containers)):
                best = vm
        return best

    def terminate(self, c: Container, why: str) -> None:
        if c.state == TERMINATED:
            return
        # Logged first: the failures and ejections its stop causes follow from it.
        self.emit("info", c.id, "container_gone", f"{c.id} terminated", why)
        c.stop("conn_reset")
        if c.vm is not None and c in c.vm.containers:
            c.vm.containers.remove(c)
            c.vm.seated()
            if not c.vm.containers:
                c.vm.idle_since = self.kernel.now
        self.containers.pop(c.id, None)
        if self.balancer is not None:
            self.balancer.remove(c.id)

    # -- faults on the fleet ----------------------------------------------------------------

    def kill_vm(self, vm: Vm, why: str, reboot: bool = True) -> None:
        if vm.state == "down":
            return
        vm.state = "down"
        self.emit("error", vm.id, "vm_down", f"{vm.id} down", why)
        for c in list(vm.containers):
            self.terminate(c, f"its VM {vm.id} went down")
        vm.load = 0.0
        if reboot and vm.host.up:
            self.kernel.call_later(0.0, self._reboot_vm, vm)
        self.reconcile()

    def _reboot_vm(self, vm: Vm) -> None:
        if vm.state == "down" and vm.host.up and self.vms.get(vm.id) is vm:
            vm.state = "booting"
            vm.boots += 1
            self.emit("info", vm.id, "vm_boot", f"{vm.id} rebooting",
                      f"auto-healing; ready in {self.cfg.vm.boot:g} s")
            self.kernel.call_later(self.cfg.vm.boot, self._vm_booted, (vm, vm.boots))

    def kill_host(self, host: Host, why: str) -> None:
        if not host.up:
            return
        host.up = False
        self.emit("error", host.id, "host_down", f"{host.id} down",
                  f"{why}; back in {self.cfg.hosts.reboot:g} s")
        for vm in host.vms:
            self.kill_vm(vm, f"its host {host.id} went down", reboot=False)
        self.kernel.call_later(self.cfg.hosts.reboot, self._host_back, host)

    def _host_back(self, host: Host) -> None:
        if host.up:
            return
        host.up = True
        self.emit("info", host.id, "host_up", f"{host.id} back",
                  "reboot finished; its VMs boot again")
        for vm in host.vms:
            if vm.state == "down":
                self._reboot_vm(vm)

    # -- housekeeping -----------------------------------------------------------------------

    def _housekeeping(self, _: object) -> None:
        now = self.kernel.now
        ready = [v for v in self.vms.values() if v.state != "down" or v.host.up]
        for vm in sorted(self.vms.values(), key=lambda v: -int(v.id.split("-")[1])):
            if len(ready) <= self.cfg.vm.min:
                break
            if (
                vm.state == "ready"
                and not vm.containers
                and now - vm.idle_since >= self.cfg.vm.idle_shutdown
            ):
                self.vms.pop(vm.id)
                vm.host.vms.remove(vm)
                vm.state = "terminated"
                ready.remove(vm)
                self.vm_shutdowns += 1
                self.emit("info", vm.id, "vm_shutdown", f"{vm.id} shut down",
                          f"idle for {self.cfg.vm.idle_shutdown:g} s")
        self.kernel.call_later(self.cfg.autoscaler.period, self._housekeeping)
