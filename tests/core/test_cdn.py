"""CDN edges against the real engine: an emergent hit ratio, request collapsing, the stampede
after a purge, and DNS failover around a dead edge (DESIGN.md §3, network tier)."""

from __future__ import annotations

from typing import Any

import pytest

from stackyard.core.config import Scenario
from stackyard.core.engine import Engine
from stackyard.core.protocol import Command

from .conftest import merge, scenario

SEED = 7
STATIC_ONLY = {"mix": {"static": 1.0, "read": 0.0, "write": 0.0}}


def static(**sections: Any) -> Scenario:
    """The default scenario with every request a static (cacheable) one."""
    return scenario(**merge({"traffic": STATIC_ONLY}, sections))


def totals(engine: Engine, field: str) -> int:
    return sum(getattr(edge, field) for edge in engine.world.edges.values())


def hit_ratio(engine: Engine) -> float:
    hits, misses = totals(engine, "hits"), totals(engine, "misses")
    return hits / (hits + misses)


def test_a_larger_cache_gives_a_higher_hit_ratio() -> None:
    ratios = []
    for capacity in (100, 1000, 5000):
        engine = Engine(static(cdn={"capacity": capacity}), seed=SEED)
        engine.run_for(45.0)
        assert engine.world.failed == 0
        assert all(len(e.cache) <= capacity for e in engine.world.edges.values())
        ratios.append(hit_ratio(engine))
    assert ratios[0] > 0.2, "even 100 objects catch the head of a Zipf popularity"
    assert ratios[0] + 0.1 < ratios[1] < ratios[2] < 0.95, ratios


def test_no_cache_means_no_hits() -> None:
    engine = Engine(static(cdn={"capacity": 0}), seed=SEED)
    engine.run_for(10.0)
    assert totals(engine, "hits") == 0
    world = engine.world
    # every request that reached an edge missed; a few are still on the client link
    assert world.completed + world.failed <= totals(engine, "misses") <= world.arrived
    assert world.completed > 0


def slow_uplinks(collapse: bool, keys: int, ttl: float) -> Scenario:
    """Static traffic on ``keys`` objects behind 250 ms uplinks: a miss takes half a second to
    fill, so misses on one key overlap."""
    slow = {"latency": 0.25, "jitter": 0.0}
    return static(
        traffic={"keys": keys},
        cdn={"ttl": ttl, "collapse": collapse},
        network={"links": {"edge-eu": slow, "edge-us": slow}},
    )


@pytest.mark.parametrize("collapse", [True, False])
def test_every_miss_is_either_a_fetch_or_collapsed_into_one(collapse: bool) -> None:
    engine = Engine(slow_uplinks(collapse, keys=50, ttl=1.0), seed=SEED)
    engine.run_for(20.0)
    misses, fetches, collapsed = (totals(engine, f) for f in ("misses", "fetches", "collapsed"))
    assert misses == fetches + collapsed
    assert (collapsed > 0) is collapse


def test_request_collapsing_reduces_origin_fetches_on_concurrent_misses() -> None:
    def stampede(collapse: bool) -> int:
        engine = Engine(slow_uplinks(collapse, keys=10, ttl=300.0), seed=SEED)
        engine.run_for(5.0)
        assert all(len(e.cache) == 10 for e in engine.world.edges.values())
        before = totals(engine, "fetches")
        engine.apply(Command("cache_purge"))  # every key misses until its fetch returns
        engine.run_for(1.0)
        return totals(engine, "fetches") - before

    with_collapse, without = stampede(True), stampede(False)
    # over a hundred requests arrive while the first fetches are on their way: with
    # collapsing they make one fetch per key and edge
    assert with_collapse == 2 * 10
    assert without > 5 * with_collapse
    # and in a steady state with overlapping expiries
    fetches = {}
    for collapse in (True, False):
        engine = Engine(slow_uplinks(collapse, keys=50, ttl=1.0), seed=SEED)
        engine.run_for(20.0)
        fetches[collapse] = totals(engine, "fetches")
    assert fetches[True] < 0.8 * fetches[False], fetches


def test_an_object_is_cached_only_once_its_fetch_is_back_at_the_edge() -> None:
    # After a purge nothing can be a hit before a fetch has gone up the 250 ms uplink and come
    # back down it: the edge stores the object when the answer arrives, not when the origin
    # sends it.
    engine = Engine(slow_uplinks(False, keys=10, ttl=300.0), seed=SEED)
    engine.run_for(5.0)
    engine.apply(Command("cache_purge"))
    hits = totals(engine, "hits")
    engine.run_for(0.45)
    assert totals(engine, "hits") == hits, "hits before any fetch could have returned"
    engine.run_for(0.2)
    assert totals(engine, "hits") > hits


def test_a_cache_purge_spikes_origin_fetches() -> None:
    # 500 keys fit in the cache: once warm only stragglers miss (the TTL is 300 s)
    engine = Engine(scenario(traffic={"keys": 500}), seed=SEED)
    engine.run_for(50.0)

    def fetches_per_second(seconds: float) -> float:
        f0 = totals(engine, "fetches")
        engine.run_for(seconds)
        return (totals(engine, "fetches") - f0) / seconds

    before = fetches_per_second(5.0)
    engine.apply(Command("cache_purge"))
    assert all(not e.cache for e in engine.world.edges.values())
    first = fetches_per_second(1.0)
    assert first > 50
    assert first > 20 * before, (before, first)
    # the stampede passes as the cache refills
    engine.run_for(30.0)
    assert fetches_per_second(5.0) < first / 3


def requests_through(engine: Engine, edge: str) -> int:
    """Requests sent to ``edge`` so far."""
    return engine.world.edges[edge].seen


def test_edge_outage_fails_the_region_until_dns_failover_then_serves_via_the_other_edge() -> None:
    engine = Engine(scenario(), seed=SEED)
    engine.run_for(20.0)
    world = engine.world
    dns = engine.scenario.cdn.dns_failover
    timeout = engine.scenario.network.connect_timeout
    engine.apply(Command("edge_outage", "edge-eu"))
    arrived0 = world.arrived
    us0, eu0 = requests_through(engine, "edge-us"), requests_through(engine, "edge-eu")
    assert world.failed == 0

    # until DNS gives up on edge-eu, every eu request fails
    engine.run_for(dns)
    eu_arrivals = (world.arrived - arrived0) - (requests_through(engine, "edge-us") - us0)
    engine.run_for(timeout + 0.5)  # let the last refusals reach their clients
    down = world.errors.get("edge_down", 0)
    assert eu_arrivals == pytest.approx(200 * dns, rel=0.05)
    # plus the few static requests already on their way to the edge when it died
    assert 0 <= down - eu_arrivals <= 10, (down, eu_arrivals)
    assert set(world.errors) == {"edge_down"}

    # after failover the eu clients succeed through edge-us
    failed, us1 = world.failed, requests_through(engine, "edge-us")
    engine.run_for(20.0)
    assert world.errors["edge_down"] == down, "no refusals after DNS failover"
    assert world.failed == failed
    assert (requests_through(engine, "edge-us") - us1) / 20.0 == pytest.approx(400.0, rel=0.05)
    assert requests_through(engine, "edge-eu") == eu0, "nobody is sent to the dead edge"
