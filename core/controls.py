"""Control and driver commands: everything a user does besides breaking things.

Controls act on the engine (clear a fault, switch the balancer's algorithm, scale, change the
replication mode, take a backup...); driver commands act on how the run is driven (pause, resume,
speed, step). Each is one :class:`~core.commands.Action`, like the faults, so validation, keys,
help and the palette come from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stackyard.core.commands import Action, CommandError, Key, Param
from stackyard.core.config import ALGORITHMS
from stackyard.core.protocol import REPLICATION_MODES, Scalar

if TYPE_CHECKING:
    from stackyard.core.engine import Engine
    from stackyard.core.model.database import DatabaseTier
    from stackyard.core.realtime import RealtimeDriver

SPEEDS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
"""The speeds ``next`` / ``previous`` step through."""
MIN_SPEED, MAX_SPEED = SPEEDS[0], SPEEDS[-1]
MAX_REPLICAS = 100_000
"""A replica count no scenario's VMs could hold (the real bound depends on the VM group)."""


def _db(engine: Engine, name: str) -> DatabaseTier:
    if engine.world.db is None:
        raise CommandError(f"{name}: this scenario has no database tier")
    return engine.world.db


# -- faults ----------------------------------------------------------------------------------


def _clear(engine: Engine, target: str, p: dict[str, Scalar]) -> str:
    if target not in engine.faults:
        active = ", ".join(engine.faults) or "none"
        raise CommandError(f"clear.target: expected an active fault id ({active}), "
                           f"got {target!r}")
    engine.clear_fault(target, "cleared by the user")
    return target


def _clear_all(engine: Engine, target: str, p: dict[str, Scalar]) -> str:
    for fid in list(engine.faults):
        engine.clear_fault(fid, "cleared by the user (all)")
    return ""


def _undo(engine: Engine, target: str, p: dict[str, Scalar]) -> str:
    if not engine.faults:
        raise CommandError("undo: no active fault to undo")
    fid = next(reversed(engine.faults))
    engine.clear_fault(fid, "undone by the user")
    return fid


# -- the balancer and the deployment ---------------------------------------------------------


def _set_algorithm(engine: Engine, target: str, p: dict[str, Scalar]) -> str:
    name = str(p["name"])
    engine.world.balancer.set_algorithm(name)
    engine.emit("info", "balancer", "algorithm", f"balancer algorithm: {name}",
                "changed by the user")
    return name


def _set_replicas(engine: Engine, target: str, p: dict[str, Scalar]) -> str:
    n = int(p["n"])
    cluster = engine.world.cluster
    most = cluster.cfg.vm.max * cluster.vm_capacity()
    if not 0 <= n <= most:
        raise CommandError(f"set_replicas.n: expected 0..{most} (what {cluster.cfg.vm.max} "
                           f"VMs hold), got {n}")
    engine.emit("info", "autoscaler", "replicas", f"replicas set to {n}", "set by the user")
    cluster.set_replicas(n)
    return str(n)


def _set_autoscaler(engine: Engine, target: str, p: dict[str, Scalar]) -> str:
    on = bool(p["enabled"])
    engine.world.autoscaler.enabled = on
    engine.emit("info", "autoscaler", "autoscaler", f"autoscaler {'on' if on else 'off'}",
                "changed by the user")
    return "on" if on else "off"


def _set_retries(engine: Engine, target: str, p: dict[str, Scalar]) -> str:
    b = engine.world.balancer
    budget = float(p["budget"]) if "budget" in p else b.retry_budget
    b.set_retries(int(p["retries"]), budget)
    engine.emit("info", "balancer", "retries", f"retries {b.retries}, budget {b.retry_budget:g}",
                "changed by the user")
    return ""


def _set_timeout(engine: Engine, target: str, p: dict[str, Scalar]) -> str:
    seconds = float(p["seconds"])
    engine.world.balancer.timeout = seconds
    engine.emit("info", "balancer", "timeout", f"per-attempt timeout {seconds:g} s",
                "changed by the user")
    return ""


def _balancer_now(engine: Engine) -> Mapping[str, Scalar]:
    a = engine.world.autoscaler
    return {"name": engine.world.balancer.algorithm, "n": engine.world.cluster.replicas,
            "enabled": a.enabled}


# -- the database ----------------------------------------------------------------------------


def _switchover(engine: Engine, target: str, p: dict[str, Scalar]) -> str:
    db = _db(engine, "switchover")
    chosen = None
    if target and target != db.leader:  # away from the primary: any replica will do
        chosen = db.nodes[target]
    assert engine.world.failover is not None
    try:
        return str(engine.world.failover.switchover(chosen).id)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def _set_replication(engine: Engine, target: str, p: dict[str, Scalar]) -> str:
    db = _db(engine, "set_replication")
    mode = str(p["mode"])
    k = int(p["k"]) if "k" in p else db.k
    if not 1 <= k <= max(len(db.nodes) - 1, 1):
        raise CommandError(f"set_replication.k: expected 1..{len(db.nodes) - 1}, got {k}")
    engine.emit("info", "database", "replication", f"replication: {mode}"
                + (f" (k={k})" if mode != "async" else ""), "changed by the user")
    db.set_mode(mode, k)
    return mode


def _set_fencing(engine: Engine, target: str, p: dict[str, Scalar]) -> str:
    db = _db(engine, "set_fencing")
    db.fencing = bool(p["enabled"])
    engine.emit("info", "database", "fencing", f"fencing {'on' if db.fencing else 'off'}",
                "changed by the user")
    return "on" if db.fencing else "off"


def _database_now(engine: Engine) -> Mapping[str, Scalar]:
    db = engine.world.db
    return {} if db is None else {"mode": db.mode, "enabled": db.fencing}


def _restore(engine: Engine, target: str, p: dict[str, Scalar]) -> str:
    _db(engine, "restore")
    t: float | None = float(p["time"]) if "time" in p else None
    if "ago" in p:
        if t is not None:
            raise CommandError("restore: give time or ago, not both")
        t = max(engine.now - float(p["ago"]), 0.0)
    assert engine.world.backups is not None
    try:
        engine.world.backups.restore(t)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    return ""


def _backup(engine: Engine, target: str, p: dict[str, Scalar]) -> str:
    _db(engine, "backup")
    assert engine.world.backups is not None
    if not engine.world.backups.take(manual=True):
        raise CommandError("backup: no healthy primary to copy")
    return ""


def _control(name: str, description: str, apply: Any, params: tuple[Param, ...] = (),
             keys: tuple[Key, ...] = (), phrase: str = "", current: Any = None,
             targets: tuple[Any, ...] = (), default: str = "") -> Action:
    return Action(name, "control", description, apply, targets=targets,
                  target_optional=bool(default), params=params, keys=keys, phrase=phrase,
                  current=current, default_target=default)


CONTROLS: dict[str, Action] = {
    a.name: a
    for a in (
        _control("clear", "clear an active fault", _clear, targets=("fault",),
                 phrase="clear {target}"),
        _control("clear_all", "clear every active fault", _clear_all,
                 keys=(Key("x", "clear all"),), phrase="clear all faults"),
        _control("undo", "clear the most recent active fault", _undo,
                 keys=(Key("u", "undo", footer=True),), phrase="undo the last fault"),
        _control("set_algorithm", "switch the balancer's algorithm", _set_algorithm,
                 (Param("name", "choice", choices=ALGORITHMS, required=True),),
                 (Key("a", "algorithm", params={"name": "next"}),),
                 "switch balancer to {name}", _balancer_now),
        _control("set_replicas", "set the deployment's replica count", _set_replicas,
                 (Param("n", "integer", min=0, max=MAX_REPLICAS, relative=True, required=True,
                        presets=(1, 2, 4, 6, 8, 12, 16)),),
                 (Key("]", "replica+", params={"n": "next"}),
                  Key("[", "replica-", params={"n": "previous"})),
                 "scale to {n} replicas", _balancer_now),
        _control("set_autoscaler", "turn the autoscaler on or off", _set_autoscaler,
                 (Param("enabled", "bool", relative=True, required=True),),
                 (Key("A", "autoscaler", params={"enabled": "toggle"}),),
                 "autoscaler {enabled}", _balancer_now),
        _control("set_retries", "set the balancer's retries and retry budget", _set_retries,
                 (Param("retries", "integer", min=0, max=10, required=True,
                        presets=(0, 1, 2, 3), what="a count between 0 and 10"),
                  Param("budget", min=0.0, max=10.0,
                        help="retries in flight as a fraction of requests in flight")),
                 phrase="balancer retries {retries}"),
        _control("set_timeout", "set the balancer's per-attempt timeout (0: none)", _set_timeout,
                 (Param("seconds", min=0.0, max=600.0, unit="s", required=True,
                        presets=(0.25, 0.5, 1.0, 2.0, 5.0)),),
                 phrase="balancer timeout {seconds}"),
        _control("switchover", "hand the primary role to a replica gracefully (default: the "
                 "most advanced)", _switchover, targets=("db",),
                 default="the most advanced replica",
                 keys=(Key("v", "switchover", "selection"),), phrase="switch over to {target}"),
        _control("set_replication", "set the replication mode", _set_replication,
                 (Param("mode", "choice", choices=REPLICATION_MODES, required=True),
                  Param("k", "integer", min=1, max=8,
                        help="replicas that must confirm a write (sync, semi-sync)")),
                 (Key("M", "replication", params={"mode": "next"}),),
                 "replication: {mode}", _database_now),
        _control("set_fencing", "turn primary self-fencing on or off", _set_fencing,
                 (Param("enabled", "bool", relative=True, required=True),),
                 phrase="fencing {enabled}", current=_database_now),
        _control("restore", "point-in-time restore of the database (default: the latest point)",
                 _restore,
                 (Param("time", min=0.0, max=1e9, unit="s", help="simulated time to restore to"),
                  Param("ago", min=0.0, max=1e9, unit="s", presets=(30.0, 60.0, 300.0),
                        help="seconds before now to restore to")),
                 phrase="restore to {ago} ago"),
        _control("backup", "take a full base backup now", _backup,
                 keys=(Key("b", "backup"),), phrase="back up the database now"),
    )
}


# -- the driver ------------------------------------------------------------------------------


def _pause(driver: RealtimeDriver, p: dict[str, Scalar]) -> str:
    if p.get("paused", True):
        driver.pause()
        return "paused"
    driver.resume()
    return "running"


def _resume(driver: RealtimeDriver, p: dict[str, Scalar]) -> str:
    driver.resume()
    return "running"


def _speed(driver: RealtimeDriver, p: dict[str, Scalar]) -> str:
    return f"{driver.set_speed(float(p['x'])):g}"


def _step(driver: RealtimeDriver, p: dict[str, Scalar]) -> str:
    driver.step(float(p["seconds"]))
    return f"{driver.engine.now:g}"


def _driver_now(driver: RealtimeDriver) -> Mapping[str, Scalar]:
    return {"paused": driver.paused, "x": driver.speed}


def _driver(name: str, description: str, apply: Any, params: tuple[Param, ...] = (),
            keys: tuple[Key, ...] = (), phrase: str = "") -> Action:
    return Action(name, "driver", description, apply, params=params, keys=keys, phrase=phrase,
                  current=_driver_now)


DRIVER: dict[str, Action] = {
    a.name: a
    for a in (
        _driver("pause", "pause the simulation (paused false resumes it)", _pause,
                (Param("paused", "bool", True, relative=True),),
                (Key("space", "pause", params={"paused": "toggle"}, footer=True),),
                "pause / resume"),
        _driver("resume", "resume the simulation", _resume, phrase="resume"),
        _driver("speed", "simulated seconds per wall second", _speed,
                (Param("x", min=MIN_SPEED, max=MAX_SPEED, steps=SPEEDS, relative=True,
                       required=True, unit="x", presets=SPEEDS,
                       what=f"a speed between {MIN_SPEED:g} and {MAX_SPEED:g}"),),
                (Key("+", "faster", params={"x": "next"}),
                 Key("=", "faster", params={"x": "next"}),
                 Key("-", "slower", params={"x": "previous"}),
                 Key("_", "slower", params={"x": "previous"})),
                "speed {x}"),
        _driver("step", "pause, then advance simulated time", _step,
                (Param("seconds", default=1.0, min=0.001, max=3600.0, unit="s",
                       presets=(10.0, 60.0)),),
                (Key(".", "step"),), "step {seconds}"),
    )
}
