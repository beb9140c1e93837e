"""Which keys inject which faults, derived from the session's catalogue.

A fault kind's target type says which nodes it fits (``container``, ``vm``, ``host``, ``link``,
``edge``, ``balancer``, ``region``, ``node``, ``db``; a trailing ``?`` makes the target optional;
``none`` is global). A lowercase key applies the fitting kind to the selected node; an uppercase
key applies a global fault. Kinds with no key here still appear in the command palette and in
help, so new ones need no change to the TUI.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stackyard.core.protocol import NodeState
from stackyard.core.session import ActionInfo

NODE_KEYS: dict[str, tuple[str, str]] = {
    # key: (label in the footer and help, fault kinds it may mean, space-separated)
    "d": ("kill", "kill_container kill_vm kill_host kill_db"),
    "c": ("crash", "crash_loop"),
    "m": ("leak", "memory_leak"),
    "h": ("hog", "cpu_hog"),
    "n": ("neighbour", "noisy_neighbour"),
    "l": ("latency", "link_latency"),
    "o": ("loss", "packet_loss"),
    "p": ("partition", "partition db_partition"),
    "f": ("fail", "lb_failure"),
    "e": ("outage", "edge_outage"),
    "r": ("lag", "replica_lag"),
    "w": ("slow disk", "slow_disk"),
    "z": ("skew", "clock_skew"),
}
"""Keys that act on the selected node."""

GLOBAL_KEYS: dict[str, tuple[str, str]] = {
    "S": ("spike", "traffic_spike"),
    "O": ("region out", "region_outage"),
    "P": ("cdn purge", "cache_purge"),
    "R": ("retry storm", "retry_storm"),
    "F": ("fail LB", "lb_failure"),
    "D": ("kill primary", "kill_db"),
}
"""Keys for global faults (an optional target left empty; a region from the selection)."""

NODE_TYPES = {"node": ("container", "edge", "link")}
"""Target types that stand for several node kinds."""


def target_type(info: ActionInfo) -> tuple[str, bool]:
    """(type, optional) of a fault kind's target."""
    return info.target.rstrip("?"), info.target.endswith("?")


def fits(info: ActionInfo, node: NodeState) -> bool:
    """Whether fault kind ``info`` can target ``node``."""
    if not info.fault:
        return False
    t, _ = target_type(info)
    return node.kind == t or node.kind in NODE_TYPES.get(t, ())


def node_faults(catalogue: Iterable[ActionInfo], node: NodeState) -> list[ActionInfo]:
    """The fault kinds that can target ``node``, in catalogue order."""
    return [a for a in catalogue if fits(a, node)]


@dataclass(frozen=True)
class KeyedFault:
    key: str
    label: str
    info: ActionInfo


def fault_for_key(catalogue: Iterable[ActionInfo], key: str, node: NodeState | None) -> \
        ActionInfo | None:
    """The fault kind ``key`` means for ``node`` (None if it means nothing there)."""
    if node is None or key not in NODE_KEYS:
        return None
    names = NODE_KEYS[key][1].split()
    for info in catalogue:
        if info.name in names and fits(info, node):
            return info
    return None


def global_fault(catalogue: Iterable[ActionInfo], key: str) -> ActionInfo | None:
    if key not in GLOBAL_KEYS:
        return None
    name = GLOBAL_KEYS[key][1]
    return next((a for a in catalogue if a.name == name and a.fault), None)


def keys_for(catalogue: Iterable[ActionInfo], node: NodeState | None) -> list[KeyedFault]:
    """The node keys that do something on ``node``, for the footer and help."""
    cat = list(catalogue)
    out = []
    for key, (label, _) in NODE_KEYS.items():
        info = fault_for_key(cat, key, node)
        if info is not None:
            out.append(KeyedFault(key, label, info))
    return out


def key_of(name: str) -> str:
    """The node key bound to fault kind ``name`` ('' if none)."""
    for key, (_, names) in NODE_KEYS.items():
        if name in names.split():
            return key
    return ""


def region_of(node: NodeState | None, regions: Iterable[str]) -> str:
    """The client region a node belongs to (edge-eu, client-eu -> eu), else the first region."""
    known = sorted(regions)
    if node is not None:
        suffix = node.id.rsplit("-", 1)[-1]
        if suffix in known:
            return suffix
    return known[0] if known else ""
