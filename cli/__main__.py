"""``python -m stackyard.cli``: the same as the ``stackyard`` command."""

from __future__ import annotations

from stackyard.cli.main import main

raise SystemExit(main())
