"""The ``stackyard`` command line (parses, dispatches and formats; no Textual until the app)."""

from __future__ import annotations

from stackyard.cli.main import main

__all__ = ["main"]
