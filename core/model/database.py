"""The database step of a request.

The application tier talks to the database only through :class:`Database`: ``submit`` starts a
read or write for an attempt and calls back with the outcome. This module's :class:`DelayDatabase`
is a plain service delay; the database-tier issue replaces it with primaries and replicas.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from core.config import DatabaseConfig
from core.kernel import Handle, Kernel

if TYPE_CHECKING:
    from .balancer import Attempt
    from .network import Link

DbCallback = Callable[["Attempt", bool, str], None]


class Database(Protocol):
    """What an application container needs from the database tier."""

    def submit(self, att: Attempt, write: bool, done: DbCallback) -> Handle:
        """Start a read (or write) for ``att``; call ``done(att, ok, cause)`` when it answers.
        The returned handle lets the container cancel the callback if it dies first."""
        ...


class DelayDatabase:
    """A database that always answers after the app-db round trip plus an exponential delay."""

    def __init__(self, cfg: DatabaseConfig, kernel: Kernel, link: Link) -> None:
        self.kernel = kernel
        self.link = link
        self.rng = kernel.rng("database")
        self.read_rate = 1.0 / cfg.read if cfg.read > 0 else 0.0
        self.write_rate = 1.0 / cfg.write if cfg.write > 0 else 0.0
        self.reads = 0
        self.writes = 0

    def submit(self, att: Attempt, write: bool, done: DbCallback) -> Handle:
        now = self.kernel.now
        rate = self.write_rate if write else self.read_rate
        if write:
            self.writes += 1
        else:
            self.reads += 1
        delay = self.link.delay(now) + self.link.delay(now)
        if rate:
            delay += self.rng.expovariate(rate)
        return self.kernel.call_later(delay, _answer, (att, done))


def _answer(arg: tuple[Attempt, DbCallback]) -> None:
    att, done = arg
    done(att, True, "")
