"""The balancer pair against the real engine: each algorithm's defining property, slow start,
active health checks, passive outlier ejection and retries (DESIGN.md §3, network tier)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from stackyard.core.config import ALGORITHMS, Scenario
from stackyard.core.engine import Engine
from stackyard.core.model.balancer import Backend
from stackyard.core.model.traffic import READ, Request
from stackyard.core.protocol import Command, Event

from .conftest import merge, scenario

SEED = 7


def fixed(replicas: int = 4, **sections: Any) -> Scenario:
    """The default scenario with the autoscaler off and exactly ``replicas`` containers."""
    base = {
        "app": {
            "autoscaler": {"enabled": False, "initial": replicas, "min": 1, "max": replicas},
            "vm": {"initial": max(2, math.ceil(replicas / 4))},
        }
    }
    return scenario(**merge(base, sections))


def probe(engine: Engine, client: int = 0, tried: tuple[str, ...] = ()) -> Request:
    """A request as the balancer would see it now (never dispatched)."""
    req = Request(0, engine.now, "eu", READ, 0, client)
    req.tried = list(tried)
    return req


def picks(engine: Engine) -> dict[str, int]:
    return {b.id: b.picks for b in engine.world.balancer.backends.values()}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items()}


def events(engine: Engine, kind: str, component: str | None = None) -> list[Event]:
    return [
        e
        for e in engine.events
        if e.kind == kind and (component is None or e.component == component)
    ]


def backend(engine: Engine, cid: str) -> Backend:
    return engine.world.balancer.backends[cid]


# --- algorithms -------------------------------------------------------------------------------


def test_round_robin_splits_evenly() -> None:
    engine = Engine(fixed(4), seed=SEED)
    engine.run_for(60.0)
    p = picks(engine)
    assert len(p) == 4
    assert sum(p.values()) == engine.world.balancer.forwarded > 10_000
    assert max(p.values()) - min(p.values()) <= 1, p


@pytest.mark.parametrize("weights", [{"vm-1": 3.0, "vm-2": 1.0}, {"vm-1": 1.0, "vm-2": 2.5}])
def test_weighted_round_robin_follows_vm_weights(weights: dict[str, float]) -> None:
    engine = Engine(
        fixed(4, balancer={"algorithm": "weighted_round_robin", "weights": weights}), seed=SEED
    )
    engine.run_for(60.0)
    backends = engine.world.balancer.backends.values()
    for b in backends:
        assert b.container.vm is not None
        assert b.weight == weights[b.container.vm.id], "a container inherits its VM's weight"
    assert {b.container.vm.id for b in backends if b.container.vm} == set(weights)
    total = sum(b.picks for b in backends)
    total_weight = sum(b.weight for b in backends)
    for b in backends:
        # smooth weighted round robin is exact up to one partial cycle
        assert abs(b.picks - total * b.weight / total_weight) <= 2, (b.id, b.picks, total)


def test_least_connections_never_picks_a_busier_backend() -> None:
    # Slow service so several attempts are in flight per backend and counts differ.
    engine = Engine(
        fixed(
            4,
            balancer={"algorithm": "least_connections"},
            app={"service": {"read": 0.012, "write": 0.016}},
        ),
        seed=SEED,
    )
    engine.run_for(20.0)
    balancer = engine.world.balancer
    uneven = 0
    for i in range(400):
        engine.run_for(0.05)
        eligible = balancer.eligible()
        assert len(eligible) == 4
        actives = [b.active for b in eligible]
        chosen = balancer.pick(probe(engine, client=i))
        assert chosen is not None
        assert chosen.active == min(actives), (engine.now, chosen.id, actives)
        if max(actives) > min(actives):
            uneven += 1
    assert uneven >= 200, "the load should leave the backends unevenly busy most of the time"


def test_random_is_roughly_uniform_but_not_round_robin() -> None:
    engine = Engine(fixed(4, balancer={"algorithm": "random"}), seed=SEED)
    engine.run_for(60.0)
    p = picks(engine)
    mean = sum(p.values()) / len(p)
    # ~4000 picks each: one standard deviation is ~1.4%; allow 5%.
    for cid, n in p.items():
        assert n == pytest.approx(mean, rel=0.05), (cid, p)
    assert max(p.values()) - min(p.values()) > 2, "independent draws are not exactly even"


@pytest.mark.parametrize("removal", ["kill", "scale_in"])
def test_consistent_hash_moves_only_the_lost_backends_keys(removal: str) -> None:
    n = 8
    engine = Engine(
        fixed(n, balancer={"algorithm": "consistent_hash", "health": {"fall": 3}}), seed=SEED
    )
    engine.run_for(10.0)
    balancer = engine.world.balancer
    clients = range(engine.scenario.traffic.sticky_clients)

    def owners() -> dict[int, str]:
        out = {}
        for k in clients:
            b = balancer.pick(probe(engine, client=k))
            assert b is not None
            out[k] = b.id
        return out

    before = owners()
    assert owners() == before, "the mapping is a pure function of the client"
    assert len(set(before.values())) == n
    if removal == "kill":
        engine.apply(Command("kill_container", "app-3"))
        for _ in range(20):
            engine.run_for(0.5)
            if not backend(engine, "app-3").healthy:
                break
        gone = "app-3"
    else:
        ids = set(balancer.backends)
        engine.apply(Command("set_replicas", "", {"n": n - 1}))
        engine.run_for(1.0)
        (gone,) = ids - {b.id for b in balancer.eligible()}
    assert gone not in {b.id for b in balancer.eligible()}
    assert len(balancer.eligible()) == n - 1
    after = owners()
    moved = {k for k in clients if after[k] != before[k]}
    assert moved == {k for k in clients if before[k] == gone}, (
        "only keys of the backend that went may move"
    )
    frac = len(moved) / len(clients)
    assert 0.5 / n <= frac <= 1.5 / n, frac
    # virtual nodes spread the orphaned keys over many survivors, not onto one neighbour
    assert len({after[k] for k in moved}) >= n // 2


@pytest.mark.parametrize(
    ("fault", "target", "params", "slowed"),
    [
        ("cpu_hog", "app-1", {"cores": 3.0}, {"app-1"}),
        ("noisy_neighbour", "host-1", {"steal": 0.4}, {"app-1", "app-3"}),
    ],
)
@pytest.mark.parametrize("algorithm", ["power_of_two", "peak_ewma"])
def test_load_aware_algorithms_send_less_to_a_slow_backend_than_round_robin(
    algorithm: str, fault: str, target: str, params: dict[str, float], slowed: set[str]
) -> None:
    def slowed_share(algo: str) -> float:
        engine = Engine(fixed(4, balancer={"algorithm": algo}), seed=SEED)
        engine.run_for(10.0)
        engine.apply(Command(fault, target, params))
        engine.run_for(10.0)
        p0 = picks(engine)
        engine.run_for(30.0)
        d = delta(picks(engine), p0)
        assert not events(engine, "ejected") and not events(engine, "health_down")
        return sum(d[c] for c in slowed) / sum(d.values())

    fair = len(slowed) / 4
    rr = slowed_share("round_robin")
    aware = slowed_share(algorithm)
    assert rr == pytest.approx(fair, abs=0.01), "round robin ignores the slowdown"
    assert aware < 0.9 * rr, (algorithm, aware, rr)


def test_slow_start_ramps_a_new_backends_share() -> None:
    engine = Engine(fixed(4, app={"autoscaler": {"max": 5}}), seed=SEED)
    engine.run_for(20.0)
    engine.apply(Command("set_replicas", "", {"n": 5}))
    new = backend(engine, "app-5")
    assert new.added_at == 20.0
    while not new.healthy:
        engine.run_for(0.5)
    slow_start = engine.scenario.balancer.slow_start
    shares = []
    t = engine.now
    while t < new.added_at + slow_start + 10.0:
        p0 = picks(engine)
        engine.run_for(4.0)
        t = engine.now
        d = delta(picks(engine), p0)
        shares.append(d["app-5"] / sum(d.values()))
    fair = 1 / 5
    assert shares[0] < 0.5 * fair, shares
    assert shares[-1] == pytest.approx(fair, rel=0.15), shares
    assert all(b >= a - 0.01 for a, b in itertools.pairwise(shares)), shares
    assert shares[-2] > 2 * shares[0], shares


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_retry_never_goes_back_to_a_tried_backend(algorithm: str) -> None:
    engine = Engine(fixed(4, balancer={"algorithm": algorithm}), seed=SEED)
    engine.run_for(5.0)
    balancer = engine.world.balancer
    for client in range(200):
        first = balancer.pick(probe(engine, client=client))
        assert first is not None
        again = balancer.pick(probe(engine, client=client, tried=(first.id,)))
        assert again is not None and again.id != first.id, (client, first.id)


# --- health checks, ejection, retries -------------------------------------------------------


@pytest.mark.parametrize(("kill_at", "expected"), [(30.0, 6.0), (30.5, 5.5), (31.9, 4.1)])
def test_killed_container_is_marked_down_within_interval_times_fall(
    kill_at: float, expected: float
) -> None:
    engine = Engine(fixed(4), seed=SEED)
    engine.run_for(kill_at)  # health checks run at every multiple of 2 s
    engine.apply(Command("kill_container", "app-1"))
    hc = engine.scenario.balancer.health
    for _ in range(int(hc.interval * hc.fall / 0.25) + 1):
        engine.run_for(0.25)
    downs = events(engine, "health_down", "app-1")
    assert len(downs) == 1
    took = downs[0].time - kill_at
    assert took <= hc.interval * hc.fall
    assert took == pytest.approx(expected, abs=1e-9)
    assert f"{hc.fall} consecutive" in downs[0].why
    assert "app-1" not in {b.id for b in engine.world.balancer.eligible()}


def long_outage(replicas: int = 4, **sections: Any) -> Scenario:
    """Killed containers stay down for minutes and health checks never mark them down, so only
    passive ejection keeps traffic away from them."""
    return fixed(
        replicas,
        **merge(
            {
                "traffic": {"regions": {"eu": {"rate": 50.0}, "us": {"rate": 50.0}}},
                "balancer": {"health": {"fall": 1000}},
                "app": {"container": {"backoff_initial": 300.0, "backoff_max": 300.0}},
            },
            sections,
        ),
    )


def step_until_idle(engine: Engine, cid: str) -> None:
    while backend(engine, cid).active:
        engine.step()


def test_five_consecutive_failures_eject_a_backend() -> None:
    engine = Engine(long_outage(), seed=SEED)
    engine.run_for(10.0)
    step_until_idle(engine, "app-1")  # nothing in flight: every later answer is a refusal
    engine.apply(Command("kill_container", "app-1"))
    b = backend(engine, "app-1")
    seen: list[int] = []
    while b.ejected_until <= engine.now:
        engine.step()
        if b.consecutive_5xx and (not seen or seen[-1] != b.consecutive_5xx):
            seen.append(b.consecutive_5xx)
        assert engine.now < 20.0, "never ejected"
    assert seen == [1, 2, 3, 4], "ejected on the fifth consecutive failure, not before"
    assert b.consecutive_5xx == 0
    (ev,) = events(engine, "ejected", "app-1")
    assert ev.time == engine.now
    assert "5 consecutive failures" in ev.why
    assert b.ejected_until == pytest.approx(engine.now + 30.0)


def test_ejection_lasts_base_time_times_its_count() -> None:
    engine = Engine(long_outage(), seed=SEED)
    engine.run_for(10.0)
    engine.apply(Command("kill_container", "app-1"))
    engine.run_for(170.0)  # ejected at ~10, ~40 and ~100 s; the fourth would come at ~190 s
    ejected = events(engine, "ejected", "app-1")
    back = events(engine, "unejected", "app-1")
    assert [e.message for e in ejected] == [
        "app-1 ejected for 30 s",
        "app-1 ejected for 60 s",
        "app-1 ejected for 90 s",
    ]
    assert len(back) == 2
    for n, (out, ret) in enumerate(zip(ejected, back, strict=False), start=1):
        assert ret.time - out.time == pytest.approx(30.0 * n, abs=1e-9)
    for ret, out in zip(back, ejected[1:], strict=False):
        # back in rotation, still refusing: ejected again within a second
        assert 0.0 <= out.time - ret.time < 1.0
    assert backend(engine, "app-1").ejections == 3


@pytest.mark.parametrize(("replicas", "killed", "limit"), [(4, 2, 1), (20, 3, 2)])
def test_at_most_ten_percent_of_backends_are_ejected_at_once(
    replicas: int, killed: int, limit: int
) -> None:
    engine = Engine(long_outage(replicas), seed=SEED)
    engine.run_for(10.0)
    victims = [f"app-{i}" for i in range(1, killed + 1)]
    for cid in victims:
        engine.apply(Command("kill_container", cid))
    balancer = engine.world.balancer
    most = 0
    refused_despite_failures = False
    for _ in range(400):
        engine.run_for(0.05)
        now = engine.now
        out = [b for b in balancer.backends.values() if b.ejected_until > now]
        most = max(most, len(out))
        assert len(out) <= limit, (now, [b.id for b in out])
        refused_despite_failures |= any(balancer.backends[c].consecutive_5xx >= 5 for c in victims)
    assert most == limit
    assert refused_despite_failures, "a failing backend stayed in because of the cap"


def test_retries_to_another_backend_hide_a_killed_container() -> None:
    def failures(retries: int) -> int:
        engine = Engine(fixed(4, balancer={"retries": retries}), seed=SEED)
        engine.run_for(20.0)
        before = engine.world.failed
        engine.apply(Command("kill_container", "app-1"))
        engine.run_for(20.0)
        return engine.world.failed - before

    without = failures(0)
    with_one = failures(1)
    assert without >= 5, "the kill should fail requests when nothing retries"
    assert with_one < without / 2, (with_one, without)
