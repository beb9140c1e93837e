"""The one catalogue of everything a user can do: faults, controls and driver commands.

Assembled from :data:`core.faults.FAULTS`, :data:`core.controls.CONTROLS` and
:data:`core.controls.DRIVER`; the engine and the driver dispatch from it, viewers read it as
:class:`~core.protocol.ActionInfo` records (help, palette, keys, validation).
"""

from __future__ import annotations

from stackyard.core.commands import Action, catalogue_info
from stackyard.core.controls import CONTROLS, DRIVER
from stackyard.core.faults import FAULTS
from stackyard.core.protocol import ActionInfo

CATALOGUE: dict[str, Action] = {**FAULTS, **CONTROLS, **DRIVER}


def actions() -> tuple[ActionInfo, ...]:
    """The catalogue as records, in declaration order (faults, controls, driver)."""
    return catalogue_info(CATALOGUE)
