"""The shape of the seam: one package, core free of the UI, the command line free of Textual
until the app opens, and a viewer that reads typed records, never agreed dict keys."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports(folder: str) -> dict[Path, set[str]]:
    """Every module each file of ``folder`` imports (absolute names)."""
    out: dict[Path, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        out[path] = names
    return out


def test_core_never_imports_the_ui_or_the_command_line() -> None:
    for path, names in imports("core").items():
        bad = {n for n in names if n.split(".")[0] in ("textual", "rich")
               or n.startswith(("stackyard.tui", "stackyard.cli"))}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_every_import_goes_through_the_stackyard_package() -> None:
    for folder in ("core", "tui", "cli", "tests", "bench"):
        for path, names in imports(folder).items():
            bad = {n for n in names if n.split(".")[0] in ("core", "tui", "themes", "cli")}
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


UNTYPED = re.compile(r"""\[\s*["'][\w-]+["']\s*\]|\.get\(\s*["'][\w-]+["']"""
                     r"""|removeprefix\(\s*["'][\w]+-""")
"""A dict indexed by a string key, or an id's prefix cut off to find what it means."""
NOT_SNAPSHOTS = {"themes.py"}
"""Modules that read other data (theme files), not records from the engine."""


def test_the_viewer_reads_typed_fields_not_agreed_keys() -> None:
    for path in sorted((ROOT / "tui").rglob("*.py")):
        if path.name in NOT_SNAPSHOTS:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not UNTYPED.search(line), f"{path.relative_to(ROOT)}:{number}: {line.strip()}"


def test_run_and_validate_do_not_import_textual(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from stackyard.cli import main\n"
        "assert main(['validate', 'default']) == 0\n"
        "assert main(['run', 'default', '--duration', '2s', '--json']) == 0\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_version() -> None:
    done = subprocess.run([sys.executable, "-m", "stackyard.cli", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and re.fullmatch(r"stackyard \d+\.\d+\.\d+\S*\n", done.stdout)
