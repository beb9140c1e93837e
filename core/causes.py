"""Tracing what happens back to the faults that led to it.

Every event carries a ``cause``: the id of the fault it is traced back to. Events emitted while a
fault is being injected or cleared are that fault's, plainly. Later consequences (a lease that
expires, a replica promoted with writes lost, a container marked down behind a slow database)
are traced by where they happen: a fault's own node and the nodes built on it or wired to it
come first, then its tier, then anything else; among equals, a fault still in force beats one
that ended, and a recent one beats an older one. Faults more than :data:`HORIZON` seconds over
are no longer blamed. Routine happenings (scheduled backups, idle VMs shutting down, a user's
settings) are nobody's fault.

:meth:`Causes.blame` answers the question a failed check asks: which fault is most likely
responsible for something that went wrong at time ``t``? The faults in force then come first,
then those of the tier the metric belongs to, then those the events of the seconds before ``t``
were traced to, then the most recent.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from stackyard.core.model.compute import Container, Host, Vm
from stackyard.core.model.database import DbNode
from stackyard.core.model.network import Edge

if TYPE_CHECKING:
    from stackyard.core.model.world import World
    from stackyard.core.protocol import Severity

HORIZON: Final = 300.0
"""Seconds after a fault ends (or, for one that heals on its own, after it struck) during which
its consequences are still traced back to it."""
EVIDENCE: Final = 10.0
"""Seconds of events before a check broke that count as evidence against a fault."""
ROUTINE: Final = frozenset({"backup", "vm_shutdown", "algorithm", "replicas", "autoscaler",
                            "retries", "timeout", "replication", "fencing", "switchover",
                            "command_skipped"})
"""Kinds of event that are never a fault's doing."""
MAX_FAULTS: Final = 1000
"""Faults remembered (the oldest are forgotten first)."""

Tier = str
_GLOBAL_REACH: Final[dict[str, tuple[Tier, frozenset[str]]]] = {
    "retry_storm": ("network", frozenset({"balancer", "lb-1", "lb-2", "lb-app"})),
    "traffic_spike": ("load", frozenset()),
    "cache_purge": ("network", frozenset()),
}
"""The tier and nodes a fault without a target reaches."""


@dataclass
class FaultRecord:
    """A fault as the tracer remembers it."""

    id: str
    kind: str
    target: str
    since: float
    reversible: bool
    tier: Tier
    reach: frozenset[str]
    until: float | None = None
    """When it was cleared (None while in force, and for one that heals on its own)."""

    def live(self, t: float) -> bool:
        """In force at ``t`` (one that heals on its own counts for :data:`HORIZON`)."""
        if t < self.since:
            return False
        if not self.reversible:
            return t <= self.since + HORIZON
        return self.until is None or t <= self.until

    def recent(self, t: float) -> bool:
        """Still worth blaming at ``t``."""
        if t < self.since:
            return False
        end = self.since if not self.reversible else self.until
        return end is None or t <= end + HORIZON

    def text(self) -> str:
        where = f" on {self.target}" if self.target else ""
        return f"{self.id} {self.kind}{where} at {self.since:.1f}s"


class Causes:
    """The faults of a run and the tracing of events and broken checks back to them."""

    def __init__(self) -> None:
        self._world: World | None = None
        self.faults: dict[str, FaultRecord] = {}
        self._evidence: deque[tuple[float, str]] = deque(maxlen=100_000)
        """(time, fault id) of the warnings and errors traced to a fault, the last minute."""

    @property
    def world(self) -> World:
        assert self._world is not None, "Causes.bind(world) first"
        return self._world

    def bind(self, world: World) -> None:
        """The world whose nodes events come from (built after the tracer, as it emits)."""
        self._world = world

    # -- the faults -------------------------------------------------------------------------

    def injected(self, fault_id: str, kind: str, target: str, now: float,
                 reversible: bool) -> FaultRecord:
        tier, reach = self._reach(kind, target)
        record = FaultRecord(fault_id, kind, target, now, reversible, tier, reach)
        self.faults[fault_id] = record
        if len(self.faults) > MAX_FAULTS:
            del self.faults[next(iter(self.faults))]
        return record

    def cleared(self, fault_id: str, now: float) -> None:
        record = self.faults.get(fault_id)
        if record is not None:
            record.until = now

    def _reach(self, kind: str, target: str) -> tuple[Tier, frozenset[str]]:
        if not target:
            return _GLOBAL_REACH.get(kind, ("", frozenset()))
        tier, _ = self._where(target)
        reach = {target}
        node = self._node(target)
        if isinstance(node, Host):
            for vm in node.vms:
                reach.add(vm.id)
                reach.update(c.id for c in vm.containers)
        elif isinstance(node, Vm):
            reach.update(c.id for c in node.containers)
        elif isinstance(node, DbNode) and self.world.db is not None:
            reach.update(self.world.db.nodes)
            reach.update(("database", "backup"))
        elif target in self.world.regions:
            edge = self.world.edge_of(target).id
            reach.update((edge, f"client-{target}", f"edge-{target}"))
            tier = "network"
        return tier, frozenset(reach)

    def _node(self, name: str) -> object | None:
        world = self.world
        for kind in ("container", "vm", "host", "db", "edge", "link", "balancer", "region"):
            node = world.find(kind, name)
            if node is not None:
                return node
        return None

    def _where(self, component: str) -> tuple[Tier, set[str]]:
        """The tier of a component and the names of what it is built on or wired to."""
        world = self.world
        node = self._node(component)
        if isinstance(node, Container):
            near = {component, "lb-app", "app-db", "balancer"}
            if node.vm is not None:
                near |= {node.vm.id, node.vm.host.id}
            return "app", near
        if isinstance(node, Vm):
            return "app", {component, node.host.id}
        if isinstance(node, Host) or component in ("vm-group", "autoscaler"):
            return "app", {component}
        if isinstance(node, DbNode) or component in ("database", "backup"):
            names = set(world.db.nodes) if world.db is not None else set()
            return "database", names | {component, "database", "backup", "app-db", "db-repl"}
        if isinstance(node, Edge):
            return "network", {component, node.region, f"client-{node.region}",
                               f"edge-{node.region}"}
        if component in ("balancer", "lb-1", "lb-2"):
            return "network", {component, "balancer", "lb-app"}
        if node is not None:  # a link or a region
            return "network", {component}
        return "", {component}

    # -- tracing events ---------------------------------------------------------------------

    def attribute(self, severity: Severity, component: str, kind: str, now: float) -> str:
        """The id of the fault an event is most likely a consequence of ('' for none)."""
        if kind in ROUTINE or not self.faults:
            return ""
        tier, near = self._where(component)
        best: tuple[int, bool, float] | None = None
        chosen = ""
        for record in self.faults.values():
            if not record.recent(now):
                continue
            if record.reach & near:
                score = 3
            elif record.tier in (tier, "load"):
                score = 2
            else:
                score = 1
            key = (score, record.live(now), record.since)
            if best is None or key > best:
                best, chosen = key, record.id
        if best is None or (severity == "info" and best[0] < 2):
            return ""
        return chosen

    def note(self, severity: Severity, cause: str, now: float) -> None:
        """Remember a warning or error traced to ``cause`` as evidence against it."""
        if cause and severity != "info":
            evidence = self._evidence
            evidence.append((now, cause))
            while evidence and evidence[0][0] < now - 60.0:
                evidence.popleft()

    # -- blaming a broken check -------------------------------------------------------------

    def blame(self, t: float, tier: str = "") -> FaultRecord | None:
        """The fault most likely responsible for something that broke at ``t``, measured by a
        metric of ``tier`` ('' for end-to-end figures)."""
        candidates = [r for r in self.faults.values() if r.since <= t and r.recent(t)]
        if not candidates:
            return None
        counts = Counter(c for when, c in self._evidence if t - EVIDENCE <= when <= t)
        return max(candidates, key=lambda r: (r.live(t), bool(tier) and r.tier == tier,
                                              counts[r.id], r.since))
