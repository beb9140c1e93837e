"""Viewers over a broker: real apps under ``run_test()`` attached to one served run."""

from __future__ import annotations

import time
from pathlib import Path

from stackyard.core.mqtt.config import BrokerConfig
from stackyard.core.mqtt.remote import RemoteSession
from stackyard.core.protocol import Snapshot
from stackyard.tui.app import StackyardApp
from stackyard.tui.screens.detail import DetailScreen
from tests.mqtt.conftest import Mosquitto, served, until
from tests.tui.helpers import screen_text, select

SIZE = (100, 30)


async def attached(broker: BrokerConfig, name: str, tmp_path: Path,
                   run_id: str = "test") -> tuple[StackyardApp, RemoteSession]:
    session = RemoteSession(broker, run_id, viewer=name)
    await session.open()
    return StackyardApp(session, theme_dir=tmp_path / "themes"), session


async def test_two_viewers_see_the_same_run_and_each_others_faults(
        amqtt_broker: BrokerConfig, tmp_path: Path) -> None:
    async with served(amqtt_broker, allow_control=True) as (local, _):
        alice_app, alice = await attached(amqtt_broker, "alice", tmp_path)
        bob_app, bob = await attached(amqtt_broker, "bob", tmp_path)
        seen: dict[str, dict[int, Snapshot]] = {"alice": {}, "bob": {}}
        alice.subscribe(lambda s: seen["alice"].__setitem__(s.seq, s))
        bob.subscribe(lambda s: seen["bob"].__setitem__(s.seq, s))
        async with alice_app.run_test(size=SIZE) as a, bob_app.run_test(size=SIZE) as b:
            await until(lambda: len(set(seen["alice"]) & set(seen["bob"])) >= 3,
                        "both viewers to receive the same snapshots")
            common = sorted(set(seen["alice"]) & set(seen["bob"]))
            assert all(seen["alice"][seq] == seen["bob"][seq] for seq in common)
            assert alice.status.link == "connected" and alice.status.control
            # alice kills a container with its key; bob sees it, named, in his event log.
            await select(a, "app-2", "container")
            await a.press("d")
            await until(lambda: any(c.origin == "remote:alice" for c, _ in local.sent),
                        "alice's command at the server", timeout=20)
            await until(lambda: any(e.message == "alice sent kill_container on app-2"
                                    for e in bob_app.events), "bob's event log to name alice",
                        timeout=20)
            await until(lambda: any(e.kind == "fault" and "kill_container on app-2" in e.message
                                    for e in bob_app.events), "the fault in bob's event log")

            async def on_bobs_screen() -> bool:
                await b.pause()
                return "alice sent kill_container" in screen_text(bob_app)

            deadline = time.monotonic() + 5
            while not await on_bobs_screen():
                assert time.monotonic() < deadline, screen_text(bob_app)
            # The server's own log has it, with the viewer's name as the command's origin.
            assert "alice sent kill_container on app-2" in [e.message for e in
                                                             local.engine.events]
            command, reply = local.sent[-1]
            assert command.origin == "remote:alice" and command.target == "app-2"
            assert reply.ok and reply.result.startswith("f")
            assert local.engine.commands[-1][1] == command
        await alice.close()
        await bob.close()


async def test_a_viewer_without_control_is_told_so(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with served(mosquitto.config, allow_control=False) as (local, server):
        app, session = await attached(mosquitto.config, "carol", tmp_path)
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await until(lambda: app.session.latest is not None, "a snapshot")
            await pilot.pause()
            header = screen_text(app).splitlines()[0]
            assert "control off" in header and "⇄" in header
            await select(pilot, "app-1", "container")
            await pilot.press("d")
            deadline = time.monotonic() + 5
            while "control is off" not in " ".join(screen_text(app).split()):
                assert time.monotonic() < deadline, screen_text(app)
                await pilot.pause(0.05)
            assert not local.sent and server.counts["refused"] == 1
            # The server goes away: the header says so, though no snapshot comes to redraw it.
            await server.close()
            deadline = time.monotonic() + 5
            while "⚠ server offline" not in screen_text(app).splitlines()[0]:
                assert time.monotonic() < deadline, screen_text(app)
                await pilot.pause(0.05)
        await session.close()


async def test_a_viewer_shows_recent_trends_within_two_seconds_of_attaching(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with served(mosquitto.config) as (local, _):
        for _ in range(40):  # 40 simulated seconds of history, one snapshot a second
            local.advance(1.0)
        started = time.monotonic()
        app, session = await attached(mosquitto.config, "dave", tmp_path)
        # Connected, with the run's status, catalogue, snapshot and recent history, in < 2 s
        # (the app's own start-up is not the link's to pay for).
        assert time.monotonic() - started < 2.0
        async with app.run_test(size=SIZE) as pilot:
            await until(lambda: len(app.history.kpi_rings.get("rps", ())) >= 30,
                        "the attached app's history", timeout=2.0)
            # The events of before the viewer attached are in its log too.
            assert any(e.time < 30 for e in app.events)
            app.open_detail("app-1", "container")
            await pilot.pause()
            assert isinstance(app.screen, DetailScreen)
            assert len(app.history.series("app-1", "container")["rps"]) >= 30
        await session.close()
