"""Themes as TOML data: the shipped four, user themes, bad files, NO_COLOR, the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from textual.color import Color

from stackyard.tui.themes import ThemeError, builtin_themes, load_theme, resolve_name, user_themes
from tests.tui.conftest import AppFactory, build_app
from tests.tui.helpers import screen_text

ROOT = Path(__file__).resolve().parents[2]


def test_four_builtin_themes_and_the_ansi_one_uses_only_ansi_colours() -> None:
    themes = {t.name: t for t in builtin_themes()}
    assert list(themes) == ["stackyard-dark", "stackyard-light", "stackyard-high-contrast",
                            "stackyard-ansi"]
    assert themes["stackyard-light"].dark is False
    ansi = themes["stackyard-ansi"]
    assert ansi.ansi
    colours = [getattr(ansi, f) for f in ("primary", "secondary", "accent", "warning", "error",
                                          "success", "foreground", "background", "surface",
                                          "panel", "boost")]
    colours += list(ansi.variables.values())
    assert all(c.startswith("ansi_") for c in colours if c), colours


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name = 'x'\nprimary = 'not-a-colour'\n", "primary: expected a colour"),
        ("primary = '#fff'\n", "name: expected a non-empty string"),
        ("name = 'x'\n", "primary: missing"),
        ("name = 'x'\nprimary = '#fff'\ndark = 'yes'\n", "dark: expected true or false"),
        ("name = 'x'\nprimary = '#fff'\nbogus = 1\n", "bogus: unknown key"),
        ("name = 'x'\nprimary = '#fff\n", "not valid TOML"),
    ],
)
def test_bad_theme_text_is_one_line_naming_file_and_field(text: str, fragment: str) -> None:
    with pytest.raises(ThemeError) as info:
        load_theme(text, "my.toml")
    message = str(info.value)
    assert message.startswith("my.toml: ") and fragment in message and "\n" not in message


def test_resolve_name_accepts_short_names_and_lists_the_choices() -> None:
    names = [t.name for t in builtin_themes()] + ["nord"]
    assert resolve_name("dark", names) == "stackyard-dark"
    assert resolve_name("ansi-16", names) == "stackyard-ansi"
    assert resolve_name("nord", names) == "nord"
    with pytest.raises(ThemeError, match=r"no theme 'nope' \(themes: .*high-contrast"):
        resolve_name("nope", names)


async def test_user_themes_load_and_a_bad_file_gets_a_notice(tmp_path: Path) -> None:
    themes = tmp_path / "themes"
    themes.mkdir()
    (themes / "mine.toml").write_text("name = 'mine'\nprimary = '#ff00ff'\n"
                                      "background = '#101010'\n")
    (themes / "broken.toml").write_text("name = 'broken'\nprimary = 42\n")
    found = user_themes(themes)
    assert found.names() == ["mine"] and len(found.problems) == 1
    app = build_app(themes, theme="mine")
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await pilot.pause()
        assert app.theme == "mine"
        assert app.screen.styles.background == Color.parse("#101010")
        text = screen_text(app)
        assert "theme skipped" in text and "broken.toml" in text
        await pilot.press("t")
        assert app.theme == "stackyard-dark", "user themes join the t cycle after the built-ins"


async def test_no_color_turns_every_colour_grey(make_app: AppFactory,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        svg = app.export_screenshot()
    # The SVG frame's own colours: window buttons and default text.
    chrome = {(0xFF, 0x5F, 0x57), (0xFE, 0xBC, 0x2E), (0x28, 0xC8, 0x40), (0xC5, 0xC8, 0xC6)}
    fills = {c for c in _colours(svg)} - chrome
    assert fills, "no colours found in the screenshot"
    assert all(r == g == b for r, g, b in fills), [c for c in fills if len(set(c)) > 1]


def _colours(svg: str) -> list[tuple[int, int, int]]:
    import re

    return [(int(m[0:2], 16), int(m[2:4], 16), int(m[4:6], 16))
            for m in re.findall(r"#([0-9a-fA-F]{6})\b", svg)]


def test_wheel_ships_themes_scenarios_and_styles(tmp_path: Path) -> None:
    # Build from a copy, so the build leaves nothing in the work tree.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
        "__snapshots__", ".benchmarks"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("stackyard-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in ("themes/dark.toml", "themes/light.toml", "themes/high-contrast.toml",
                 "themes/ansi-16.toml", "core/scenarios/default.toml", "tui/app.tcss",
                 "core/lessons/failover.toml", "core/lessons/request-path.toml",
                 "tui/screens/main.py", "tui/widgets/tier_pane.py", "core/realtime.py",
                 "cli/__init__.py"):
        assert f"stackyard/{path}" in names, path
    # Exactly one top-level import package: nothing named core, tui or themes at the top.
    tops = {name.split("/", 1)[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"stackyard"}, tops
    # Installed on its own, the wheel gives `stackyard` and nothing named core, tui or themes.
    target = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
         str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    probe = ("import importlib.util, sys\n"
             "sys.path = [p for p in sys.path if p not in ('', '.')]\n"
             "import stackyard.core.run, stackyard.tui.app, stackyard.themes\n"
             "assert stackyard.core.run.__file__.startswith(sys.argv[1]), "
             "stackyard.core.run.__file__\n"
             "for name in ('core', 'tui', 'themes', 'cli'):\n"
             "    assert importlib.util.find_spec(name) is None, name\n")
    # -S: no site processing, so no editable install's finder; the dependencies come from the
    # site-packages directory put on the path by hand.
    site = sysconfig.get_paths()["purelib"]
    done = subprocess.run([sys.executable, "-S", "-c", probe, str(target)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path,
                          env={"PYTHONPATH": f"{target}{os.pathsep}{site}"})
    assert done.returncode == 0, done.stderr


# -- hostile theme files: a notice each, never a crash or a hang --------------------------


def _hostile_themes(themes: Path) -> dict[str, str]:
    """Write the hostile files into ``themes``; the fragment each one's notice must carry."""
    themes.mkdir(parents=True, exist_ok=True)
    (themes / "markup.toml").write_text("name = 'markup'\nprimary = '[/]'\n")
    (themes / "[b]odd.toml").write_text("name = 'odd'\nprimary = 7\n")
    (themes / "deep.toml").write_text("name = 'deep'\nprimary = '#fff'\nx = "
                                      + "[" * 1000 + "]" * 1000 + "\n")
    (themes / "cssvar.toml").write_text("name = 'cssvar'\nprimary = '#ff0000'\n"
                                        "[variables]\nscrollbar = 'zzz'\n")
    (themes / "token.toml").write_text("name = 'token'\nprimary = '#ff0000'\n"
                                       "[variables]\nx = ';'\n")
    os.mkfifo(themes / "fifo.toml")
    (themes / "zero.toml").symlink_to("/dev/zero")
    (themes / "huge.toml").write_text("name = 'huge'\nprimary = '#fff'\n#" + "x" * 100_000)
    return {
        "markup.toml": "primary: expected a colour such as '#1e90ff' or 'ansi_blue', got '[/]'",
        "[b]odd.toml": "primary: expected a colour string, got 7",
        "deep.toml": "nested too deeply",
        "cssvar.toml": "variables.scrollbar: Invalid value ('zzz') for the color property",
        "token.toml": "variables.x: Unexpected end of file",
        "fifo.toml": "not a regular file",
        "zero.toml": "not a regular file",
        "huge.toml": "larger than 64 KiB",
    }


def test_hostile_theme_files_are_one_problem_each(tmp_path: Path) -> None:
    expected = _hostile_themes(tmp_path / "themes")
    (tmp_path / "themes" / "fine.toml").write_text(
        "name = 'fine'\nprimary = '#ff00ff'\n[variables]\n"
        "scrollbar = '#123456'\n'block-cursor-text-style' = 'bold underline'\n")
    found = user_themes(tmp_path / "themes")
    assert found.names() == ["fine"]
    assert len(found.problems) == len(expected)
    for problem in found.problems:
        name = Path(problem.split(": ", 1)[0]).name
        assert expected[name] in problem and "\n" not in problem and len(problem) < 400


async def test_the_app_starts_with_hostile_themes_and_shows_their_notices(
    tmp_path: Path,
) -> None:
    _hostile_themes(tmp_path / "themes")
    app = build_app(tmp_path / "themes")
    async with app.run_test(size=(120, 60), notifications=True) as pilot:
        await pilot.pause()
        assert app.is_running and len(app.theme_problems) == 8
        assert "[/]" in screen_text(app), "the notice shows the value as written"
        for _ in app.cycle:  # every theme that loaded can be chosen and drawn
            await pilot.press("t")
            await pilot.pause()
            assert app.is_running
    assert app.return_code in (None, 0)


def test_theme_flag_with_hostile_files_is_one_line(tmp_path: Path) -> None:
    _hostile_themes(tmp_path / "stackyard" / "themes")
    result = subprocess.run(
        [sys.executable, "-m", "stackyard.cli", "--theme", "deep"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert result.stderr.startswith("stackyard: --theme: no theme 'deep'")
    assert len(result.stderr.splitlines()) == 1
