"""The one callback through which model components report notable happenings."""

from __future__ import annotations

from collections.abc import Callable

from stackyard.core.protocol import Severity

Emit = Callable[[Severity, str, str, str, str], None]
"""``emit(severity, component, kind, message, why)``: the engine turns it into an Event."""
