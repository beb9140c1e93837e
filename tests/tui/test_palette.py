"""The command palette holds every action, parameterised ones included."""

from __future__ import annotations

import pytest
from textual.command import CommandPalette

from stackyard.core.protocol import Command
from tests.tui.conftest import AppFactory
from tests.tui.helpers import last_sent, screen_text, select, session


async def run_palette(pilot, text: str) -> None:  # type: ignore[no-untyped-def]
    await pilot.press("ctrl+p")
    await pilot.pause()
    assert isinstance(pilot.app.screen, CommandPalette)
    await pilot.press(*text)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.press("enter")
    await pilot.pause()


@pytest.mark.parametrize(
    ("typed", "command"),
    [
        ("link latency 200 ms on app-db",
         Command("link_latency", "app-db", {"latency": 0.2})),
        ("bandwidth cap 20 msg/s on link app-db",
         Command("bandwidth_cap", "app-db", {"rate": 20.0})),
        ("switch balancer to power_of_two", Command("set_algorithm",
                                                   params={"name": "power_of_two"})),
        ("replication: sync", Command("set_replication", params={"mode": "sync"})),
        ("traffic spike x5 everywhere", Command("traffic_spike", "", {"factor": 5.0})),
        ("scale to 8 replicas", Command("set_replicas", params={"n": 8})),
    ],
)
async def test_palette_sends_parameterised_commands(make_app: AppFactory, typed: str,
                                                    command: Command) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await run_palette(pilot, typed)
        sent, reply = last_sent(app)
        assert sent == command
        assert reply.ok, reply.error
        assert sent.kind in screen_text(app) or str(sent.params.get("name", "")) in \
            screen_text(app) or "replicas" in screen_text(app)


async def test_palette_lists_every_fault_kind_and_control(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("h")  # an active fault, so that "clear f1" is offered too
        await pilot.pause()
        entries = app.palette_entries()
        kinds = {e.command.kind for e in entries if e.command is not None}
        assert kinds == {a.name for a in session(app).catalogue}
        texts = [e.text for e in entries]
        for fragment in ("pause / resume", "speed 100x", "SQL console", "open container app-1",
                         "undo the last fault", "clear all faults", "help: every key",
                         "clear f1: cpu hog on app-1", "switch over to db-2",
                         "region outage on us", "cpu hog 2 cores on container app-1",
                         "kill container on app-2"):
            assert any(fragment in t for t in texts), fragment


async def test_palette_drives_the_clock_and_keeps_the_theme_switcher(
        make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await run_palette(pilot, "step 1 s")
        assert session(app).engine.now == pytest.approx(6.0)
        await run_palette(pilot, "Theme")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        assert "catppuccin-mocha" in screen_text(app)
        await pilot.press(*"stackyard-high")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "stackyard-high-contrast" in screen_text(app)
        await pilot.press("enter")
        await pilot.pause()
        assert app.theme == "stackyard-high-contrast"


async def test_a_new_catalogue_entry_appears_in_help_palette_and_keys(
        make_app: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault declared only in core's catalogue: help, the palette, the footer and its key
    pick it up with no change to the app."""
    from stackyard.core import catalogue
    from stackyard.core.commands import Action, Key, Param

    def inject(world, target, params, fault) -> str:  # type: ignore[no-untyped-def]
        world.links[target].set_loss(params["amount"])
        return "a made-up fault for this test"

    def clear(world, target, params, fault) -> None:  # type: ignore[no-untyped-def]
        world.links[target].set_loss(0.0)

    fake = Action("gremlins", "fault", "gremlins chew a link's packets", inject,
                  targets=("link",), params=(Param("amount", default=0.3, min=0.0, max=1.0,
                                                   unit="fraction", presets=(0.6,)),),
                  keys=(Key("g", "gremlins", "node"),), clear=clear)
    monkeypatch.setitem(catalogue.CATALOGUE, "gremlins", fake)
    app = make_app()
    async with app.run_test(size=(120, 60)) as pilot:
        texts = [e.text for e in app.palette_entries()]
        assert "gremlins 30% on link app-db" in texts and "gremlins 60% on link lb-app" in texts
        await pilot.press("question_mark")
        await pilot.pause()
        assert "gremlins: link (gremlins)" in screen_text(app)
        await pilot.press("escape")
        await select(pilot, "app-db", "link")
        assert "g gremlins" in screen_text(app).splitlines()[-1]
        await pilot.press("g")
        await pilot.pause()
        sent, reply = last_sent(app)
        assert sent == Command("gremlins", "app-db") and reply.ok, reply.error
        assert session(app).engine.world.links["app-db"].loss == 0.3
        assert "fault f1: gremlins on app-db" in screen_text(app)
