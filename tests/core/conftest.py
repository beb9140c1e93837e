"""Helpers for engine tests: scenarios built from a built-in plus overrides, and an independent
census of the requests still inside the simulated system."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

import pytest

from stackyard.core.config import Scenario
from stackyard.core.engine import Engine
from stackyard.core.model.balancer import Attempt
from stackyard.core.model.traffic import Request
from stackyard.core.scenario import scenario_from_dict


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def scenario(base: str = "default", **sections: Any) -> Scenario:
    """A built-in scenario with sections overridden, e.g. ``scenario(cdn={"capacity": 10})``."""
    text = resources.files("stackyard.core.scenarios").joinpath(f"{base}.toml").read_text()
    data = merge(tomllib.loads(text), sections)
    return scenario_from_dict(data, f"{base}+overrides")


def live_requests(engine: Engine) -> set[int]:
    """Ids of client requests still somewhere in the system, found by walking the event heap,
    the containers' queues and jobs and the edges' pending fetches — not from the counters."""
    live: set[int] = set()

    def visit(obj: Any) -> None:
        if isinstance(obj, Attempt):
            if not obj.done:
                visit(obj.req)
        elif isinstance(obj, Request):
            if obj.fetch:
                for w in obj.waiters or ():
                    visit(w)
            else:
                live.add(obj.id)
        elif isinstance(obj, tuple):
            for x in obj:
                visit(x)

    for entry in engine.kernel._heap:
        if entry[2] is not None:
            visit(entry[3])
    for c in engine.world.cluster.containers.values():
        for att in (*c.queue, *c.jobs):
            visit(att)
    for edge in engine.world.edges.values():
        for fetch in edge.inflight.values():
            visit(fetch)
    return live


@pytest.fixture
def default_engine() -> Engine:
    return Engine(scenario("default"), seed=7)
