"""Apps on a fixed seed with the driver paused: time moves only when a test steps it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from stackyard.core.run import open_run
from stackyard.tui.app import StackyardApp
from stackyard.tui.pacing import FPS_DEFAULT

SEED = 7
AppFactory = Callable[..., StackyardApp]


def build_app(theme_dir: Path, *, scenario: str = "default", seed: int = SEED,
              warmup: float = 5.0, storage: bool = False, theme: str | None = None,
              speed: float = 1.0, fps: float = FPS_DEFAULT) -> StackyardApp:
    """An app over a paused session, ``warmup`` simulated seconds in."""
    session = open_run(scenario, seed=seed, storage=storage).session(paused=True, speed=speed)
    if warmup:
        session.advance(warmup)
    return StackyardApp(session, theme=theme, theme_dir=theme_dir, fps=fps)


@pytest.fixture
def make_app(tmp_path: Path) -> AppFactory:
    """Build apps whose user theme directory is an empty temporary one."""
    def factory(**kwargs: object) -> StackyardApp:
        return build_app(tmp_path / "themes", **kwargs)  # type: ignore[arg-type]

    return factory
