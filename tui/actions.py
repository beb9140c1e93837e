"""Every command a user can send, spelled out for the command palette.

Built from the session's catalogue and the latest snapshot, so new fault kinds, nodes and control
commands appear without changes here; known kinds get a few useful parameter values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from stackyard.core.protocol import Command, NodeState, Snapshot
from stackyard.core.session import ActionInfo
from stackyard.tui.keys import NODE_TYPES, key_of, target_type

VARIANTS: dict[str, list[dict[str, float]]] = {
    "link_latency": [{"latency": x / 1000, "jitter": x / 10000} for x in (50, 100, 200, 500, 1000)],
    "packet_loss": [{"loss": x} for x in (0.01, 0.05, 0.2, 0.5)],
    "traffic_spike": [{"factor": x} for x in (2.0, 3.0, 5.0, 10.0)],
    "noisy_neighbour": [{"steal": x} for x in (0.25, 0.5, 0.75)],
    "cpu_hog": [{"cores": x} for x in (0.5, 1.0, 2.0)],
    "memory_leak": [{"rate": x} for x in (5.0, 20.0)],
}
"""Parameter sets offered besides the defaults (defaults when a kind has none here)."""


@dataclass(frozen=True)
class CommandChoice:
    """A palette line that sends ``command``."""

    text: str
    help: str
    command: Command


def human(name: str) -> str:
    return name.replace("_", " ")


def describe_params(name: str, params: dict[str, float]) -> str:
    """Readable parameters: 'latency 200 ms', 'loss 5%', 'x3'."""
    parts = []
    for key, value in params.items():
        if key == "latency":
            parts.append(f"{value * 1000:g} ms")
        elif key == "jitter":
            continue
        elif key in ("loss", "steal"):
            parts.append(f"{value * 100:g}%")
        elif key == "factor":
            parts.append(f"x{value:g}")
        elif key == "cores":
            parts.append(f"{value:g} cores")
        elif key == "rate":
            parts.append(f"{value:g} MB/s")
        else:
            parts.append(f"{key} {value:g}")
    return " ".join(parts)


def targets(info: ActionInfo, snap: Snapshot) -> list[str]:
    """The node ids (or regions) a fault kind can target now; [''] for a global one."""
    t, optional = target_type(info)
    if t == "none":
        return [""]
    if t == "region":
        found = [n.id.removeprefix("edge-") for n in snap.nodes if n.kind == "edge"]
    else:
        kinds = NODE_TYPES.get(t, (t,))
        found = list(dict.fromkeys(n.id for n in snap.nodes if n.kind in kinds))
    return ([""] if optional else []) + found


def _where(info: ActionInfo, target: str) -> str:
    t = target_type(info)[0]
    if not target:
        return "everywhere" if t != "none" else ""
    return f"on {target}" if t == "node" or t in info.name else f"on {t} {target}"


def fault_choices(catalogue: Iterable[ActionInfo], snap: Snapshot,
                  first: NodeState | None = None) -> Iterator[CommandChoice]:
    """Every fault on every target, with parameter variants; ``first``'s faults come first."""
    faults = [a for a in catalogue if a.fault]
    ordered: list[tuple[ActionInfo, str]] = []
    for info in faults:
        for target in targets(info, snap):
            ordered.append((info, target))
    if first is not None:
        ordered.sort(key=lambda pair: pair[1] != first.id)
    for info, target in ordered:
        key = key_of(info.name)
        variants = VARIANTS.get(info.name) or [{}]
        for params in variants:
            shown = describe_params(info.name, params) if params else ""
            text = " ".join(x for x in (human(info.name), shown, _where(info, target)) if x)
            hint = info.description + (f" (key {key})" if key and target else "")
            yield CommandChoice(text, hint, Command(info.name, target, dict(params)))


def control_choices(catalogue: Iterable[ActionInfo], snap: Snapshot) -> Iterator[CommandChoice]:
    """Control commands with their useful parameter values."""
    for info in catalogue:
        if info.fault:
            continue
        name = info.name
        if name in ("clear", "undo", "clear_all"):
            continue
        if name == "set_algorithm":
            for algo in info.choices.get("name", ()):
                yield CommandChoice(f"switch balancer to {algo}", info.description,
                                    Command(name, params={"name": algo}))
        elif name == "set_replicas":
            for n in (1, 2, 4, 6, 8, 12, 16):
                yield CommandChoice(f"scale to {n} replicas", info.description,
                                    Command(name, params={"n": n}))
        elif name == "set_autoscaler":
            for on in (True, False):
                yield CommandChoice(f"autoscaler {'on' if on else 'off'}", info.description,
                                    Command(name, params={"enabled": on}))
        elif name == "set_retries":
            for n in (0, 1, 2, 3):
                yield CommandChoice(f"balancer retries {n}", info.description,
                                    Command(name, params={"retries": n}))
        elif name == "set_timeout":
            for s in (0.25, 0.5, 1.0, 2.0, 5.0):
                yield CommandChoice(f"balancer timeout {s:g} s", info.description,
                                    Command(name, params={"seconds": s}))
        elif name == "set_replication":
            for mode in info.choices.get("mode", ()):
                yield CommandChoice(f"replication: {mode}", info.description,
                                    Command(name, params={"mode": mode}))
        elif name == "set_fencing":
            for on in (True, False):
                yield CommandChoice(f"fencing {'on' if on else 'off'}", info.description,
                                    Command(name, params={"enabled": on}))
        elif name == "restore":
            yield CommandChoice("restore to the latest point", info.description, Command(name))
            for ago in (30, 60, 300):
                when = round(snap.time - ago, 3)
                if when > 0:
                    yield CommandChoice(f"restore to {ago} s ago (t={when:g})", info.description,
                                        Command(name, params={"time": when}))
        elif name == "switchover":
            yield CommandChoice("switch over the primary", info.description, Command(name))
            for node in snap.nodes:
                if node.tier == "database" and node.state == "replica":
                    yield CommandChoice(f"switch over to {node.id}", info.description,
                                        Command(name, node.id))
        else:
            yield CommandChoice(human(name), info.description, Command(name))


def clear_choices(snap: Snapshot) -> Iterator[CommandChoice]:
    yield CommandChoice("undo the last fault", "clear the most recent active fault (key u)",
                        Command("undo"))
    yield CommandChoice("clear all faults", "clear every active fault (key x)",
                        Command("clear_all"))
    for f in snap.faults:
        target = f.get("target") or "everything"
        yield CommandChoice(f"clear {f.get('id')}: {human(str(f.get('kind')))} on {target}",
                            "clear this active fault", Command("clear", str(f.get("id"))))
