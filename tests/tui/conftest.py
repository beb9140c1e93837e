"""Apps on a fixed seed with the driver paused: time moves only when a test steps it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from stackyard.core.engine import Engine
from stackyard.core.scenario import resolve
from stackyard.core.session import LocalSession
from stackyard.core.storage import Storage
from stackyard.tui.app import StackyardApp

SEED = 7
AppFactory = Callable[..., StackyardApp]


def build_app(theme_dir: Path, *, scenario: str = "default", seed: int = SEED,
              warmup: float = 5.0, storage: bool = False, theme: str | None = None,
              speed: float = 1.0) -> StackyardApp:
    """An app over a paused session, ``warmup`` simulated seconds in."""
    engine = Engine(resolve(scenario), seed=seed)
    store = None
    if storage:
        store = Storage(engine.db_nodes())
        engine.attach_storage(store)
    session = LocalSession(engine, paused=True, storage=store, speed=speed)
    if warmup:
        session.advance(warmup)
    return StackyardApp(session, theme=theme, theme_dir=theme_dir)


@pytest.fixture
def make_app(tmp_path: Path) -> AppFactory:
    """Build apps whose user theme directory is an empty temporary one."""
    def factory(**kwargs: object) -> StackyardApp:
        return build_app(tmp_path / "themes", **kwargs)  # type: ignore[arg-type]

    return factory
