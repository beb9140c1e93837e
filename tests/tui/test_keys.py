"""Every key path: the key reaches the engine as a Command and the screen shows the result."""

from __future__ import annotations

import pytest

from stackyard.core.protocol import Command, Reply
from stackyard.tui.screens.detail import DetailScreen
from stackyard.tui.screens.help import HelpScreen
from stackyard.tui.screens.main import MainScreen
from tests.tui.conftest import AppFactory
from tests.tui.helpers import advance, last_sent, pane, row_of, screen_text, select, session

NODE_FAULTS = [
    ("d", "app-2", "container", "kill_container"),
    ("c", "app-2", "container", "crash_loop"),
    ("m", "app-2", "container", "memory_leak"),
    ("h", "app-2", "container", "cpu_hog"),
    ("p", "app-3", "container", "partition"),
    ("d", "vm-1", "vm", "kill_vm"),
    ("d", "host-2", "host", "kill_host"),
    ("n", "host-1", "host", "noisy_neighbour"),
    ("l", "app-db", "link", "link_latency"),
    ("o", "app-db", "link", "packet_loss"),
    ("p", "lb-app", "link", "partition"),
    ("f", "lb-2", "balancer", "lb_failure"),
    ("e", "edge-us", "edge", "edge_outage"),
    ("d", "db-2", "db", "kill_db"),
    ("p", "db-3", "db", "db_partition"),
    ("r", "db-2", "db", "replica_lag"),
    ("w", "db-1", "db", "slow_disk"),
    ("z", "db-3", "db", "clock_skew"),
]


@pytest.mark.parametrize(("key", "node", "kind", "fault"), NODE_FAULTS,
                         ids=[f"{k}-{n}-{f}" for k, n, _, f in NODE_FAULTS])
async def test_node_fault_key(make_app: AppFactory, key: str, node: str, kind: str,
                              fault: str) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, node, kind)
        await pilot.press(key)
        await pilot.pause()
        command, reply = last_sent(app)
        assert command == Command(fault, node)
        assert reply.ok, reply.error
        text = screen_text(app)
        assert f"fault {reply.result}: {fault} on {node}" in text
        info = next(a for a in session(app).catalogue if a.name == fault)
        # a kill counts until its target recovers, like a reversible fault until cleared
        assert "faults 1" in text.splitlines()[0]
        if info.reversible:
            assert row_of(app, node).startswith("!")


async def test_killed_container_goes_down_then_health_checks_and_ejection_act(
        make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, "app-2")
        assert "running" in row_of(app, "app-2")
        await pilot.press("d")
        await pilot.pause()
        assert "backoff" in row_of(app, "app-2")
        assert "app-2 crashed" in screen_text(app)
        await advance(pilot, 6)
        assert "app-2 marked down" in screen_text(app)
        await advance(pilot, 10)
        assert "app-2 running" in screen_text(app)
        assert "ejected" in row_of(app, "app-2")
        await advance(pilot, 20)
        assert "back in rotation" in screen_text(app)
        assert "running" in row_of(app, "app-2")


async def test_spike_makes_the_autoscaler_scale_up(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("S")
        await pilot.pause()
        command, reply = last_sent(app)
        assert command == Command("traffic_spike", "") and reply.ok
        await advance(pilot, 40)
        scaler = session(app).latest.autoscaler  # type: ignore[union-attr]
        assert scaler is not None and scaler.replicas > 4
        assert f"{scaler.ready}/{scaler.replicas} ready" in screen_text(app)


GLOBAL_FAULTS = [
    ("S", "traffic_spike", ""),
    ("P", "cache_purge", ""),
    ("R", "retry_storm", ""),
    ("F", "lb_failure", ""),
    ("D", "kill_db", ""),
]


@pytest.mark.parametrize(("key", "fault", "target"), GLOBAL_FAULTS)
async def test_global_fault_key(make_app: AppFactory, key: str, fault: str, target: str) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press(key)
        await pilot.pause()
        command, reply = last_sent(app)
        assert command.kind == fault and reply.ok, reply.error
        assert f"{fault} on" in screen_text(app)


async def test_region_outage_takes_the_selected_nodes_region(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, "edge-us", "edge")
        await pilot.press("O")
        await pilot.pause()
        command, reply = last_sent(app)
        assert command == Command("region_outage", "us") and reply.ok
        assert "down" in row_of(app, "edge-us")


async def test_undo_and_clear_all(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, "app-db", "link")
        await pilot.press("l", "o")
        await pilot.pause()
        assert "faults 2" in screen_text(app)
        await pilot.press("u")
        await pilot.pause()
        command, reply = last_sent(app)
        assert command == Command("undo") and reply.result == "f2"
        assert "fault f2 cleared" in screen_text(app)
        assert "faults 1" in screen_text(app)
        await pilot.press("x")
        await pilot.pause()
        assert last_sent(app)[0] == Command("clear_all")
        assert "faults 0" in screen_text(app)
        await pilot.press("u")
        await pilot.pause()
        assert not last_sent(app)[1].ok


async def test_a_key_that_does_not_fit_the_node_says_so(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await select(pilot, "lb-1")
        before = len(session(app).sent)
        await pilot.press("l")
        await pilot.pause()
        assert len(session(app).sent) == before
        assert "does not apply to lb-1" in screen_text(app)


async def test_footer_shows_the_keys_that_fit_the_selection(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await select(pilot, "app-1")
        footer = screen_text(app).splitlines()[-1]
        assert "d kill" in footer and "c crash" in footer and "l latency" not in footer
        await select(pilot, "app-db", "link")
        footer = screen_text(app).splitlines()[-1]
        assert "l latency" in footer and "c crash" not in footer


async def test_space_pauses_and_resumes(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        assert "paused" in screen_text(app).splitlines()[0]
        await pilot.press("space")
        await pilot.pause()
        assert not session(app).status.paused
        header = screen_text(app).splitlines()[0]
        assert "▶" in header and "paused" not in header
        await pilot.press("space")
        await pilot.pause()
        assert session(app).status.paused
        frozen = session(app).engine.now
        await pilot.pause()
        assert session(app).engine.now == frozen
        assert "paused" in screen_text(app).splitlines()[0]


async def test_step_advances_one_simulated_second(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        assert "0:05.0" in screen_text(app).splitlines()[0]
        await pilot.press("full_stop")
        await pilot.pause()
        assert session(app).engine.now == pytest.approx(6.0)
        assert "0:06.0" in screen_text(app).splitlines()[0]


async def test_plus_and_minus_change_speed(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("plus", "plus")
        await pilot.pause()
        assert session(app).status.speed == 5.0
        assert " 5x" in screen_text(app).splitlines()[0]
        for _ in range(12):
            await pilot.press("minus")
        await pilot.pause()
        assert session(app).status.speed == 0.25
        assert "0.25x" in screen_text(app).splitlines()[0]


async def test_tab_and_arrows_move_between_panes_and_nodes(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        assert pane(app, "app").has_focus
        await pilot.press("tab")
        assert pane(app, "database").has_focus
        await pilot.press("shift+tab", "shift+tab")
        assert pane(app, "network").has_focus
        first = pane(app, "network").node
        await pilot.press("down")
        assert pane(app, "network").node != first
        await pilot.press("k")
        assert pane(app, "network").node == first
        await pilot.press("right")
        assert pane(app, "app").has_focus


async def test_mouse_click_selects_and_second_click_opens(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        p = pane(app, "database")
        row = p.content_region.y - p.region.y + p._summary_height + 1
        await pilot.click(p, offset=(3, row))
        assert p.has_focus and p.node is not None and p.node.id == "db-2"
        await pilot.click(p, offset=(3, row))
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen) and app.screen.node_id == "db-2"


async def test_enter_opens_detail_with_charts_and_escape_returns(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, "app-3")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        await advance(pilot, 3)
        text = screen_text(app)
        assert "app-3  container in the app tier" in text
        assert "req/s" in text and "busy workers" in text
        assert any(ch in text for ch in "▁▂▃▄▅▆▇█")
        await pilot.press("h")
        await pilot.pause()
        assert last_sent(app)[0] == Command("cpu_hog", "app-3")
        assert "active faults: f1 cpu_hog" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)


async def test_question_mark_shows_every_key(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 60)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for fragment in ("space", "undo the last fault", "latency: link", "spike"):
            assert fragment in text
        await pilot.press("d")
        assert not session(app).sent, "fault keys must not act behind the help"
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_slash_filters_the_event_log(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await select(pilot, "app-1")
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("slash", *"crashed", "enter")
        await pilot.pause()
        log = screen_text(app).split("Events matching")[1]
        assert "app-1 crashed" in log and "fault f1: kill_container" not in log
        assert "does not apply" not in screen_text(app), "typing a filter must not fire keys"
        assert len(session(app).sent) == 1
        await pilot.press("slash", "escape")
        await pilot.pause()
        assert "Events matching" not in screen_text(app)
        assert "fault f1: kill_container" in screen_text(app)


async def test_t_cycles_themes(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.theme == "stackyard-dark"
        background = app.screen.styles.background
        await pilot.press("t")
        await pilot.pause()
        assert app.theme == "stackyard-light"
        assert app.screen.styles.background != background
        for _ in range(3):
            await pilot.press("t")
        assert app.theme == "stackyard-dark"


async def test_balancer_and_autoscaler_keys(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("a")
        await pilot.pause()
        assert last_sent(app) == (Command("set_algorithm", params={"name": "next"}),
                                  Reply(ok=True, kind="set_algorithm",
                                        result="weighted_round_robin"))
        assert "weighted_round_robin" in screen_text(app)
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert last_sent(app)[0] == Command("set_replicas", params={"n": "next"})
        assert last_sent(app)[1].result == "5"
        await advance(pilot, 1)
        assert "4/5 ready" in screen_text(app)
        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert last_sent(app)[0] == Command("set_replicas", params={"n": "previous"})
        assert last_sent(app)[1].result == "4"
        await pilot.press("A")
        await pilot.pause()
        assert last_sent(app)[0] == Command("set_autoscaler", params={"enabled": "toggle"})
        assert last_sent(app)[1].result == "off"
        assert "(autoscaler off)" in screen_text(app)


async def test_database_keys(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("M")
        await pilot.pause()
        assert last_sent(app)[0] == Command("set_replication", params={"mode": "next"})
        assert last_sent(app)[1].result == "semi_sync"
        assert last_sent(app)[1].ok, last_sent(app)[1].error
        assert "semi-sync, primary db-1" in screen_text(app)
        await pilot.press("b")
        await pilot.pause()
        assert last_sent(app)[0] == Command("backup") and last_sent(app)[1].ok
        await advance(pilot, 5)
        assert "1 backup," in screen_text(app)
        await select(pilot, "db-3")
        await pilot.press("v")
        await pilot.pause()
        assert last_sent(app)[0] == Command("switchover", "db-3")
        assert last_sent(app)[1].ok, last_sent(app)[1].error
        await advance(pilot, 10)
        assert "primary db-3" in screen_text(app)


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
async def test_quit_keys(make_app: AppFactory, key: str) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(key)
        await pilot.pause()
    assert app.return_code == 0
    assert app.session.status.paused
