"""Regression tests for the defects of issue 10, each seen through the app as a user sees it
(Pilot on the real app and engine; the tmux ones are in test_tmux.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from textual.widgets import Input, Select

from stackyard.core.protocol import DbNode, Event
from stackyard.tui.app import StackyardApp
from stackyard.tui.screens.main import MainScreen
from stackyard.tui.screens.sql import SqlScreen
from stackyard.tui.widgets.event_log import EventLog
from stackyard.tui.widgets.rows import figures
from stackyard.tui.widgets.tier_pane import TierPane
from tests.tui.conftest import AppFactory
from tests.tui.helpers import advance, row_of, screen_text, select, session

ROOT = Path(__file__).resolve().parents[2]


def logged(app: StackyardApp) -> list[Event]:
    """Every event the event log holds, oldest first."""
    store = app.events
    return list(getattr(store, "events", store))


def event_text(event: Event) -> str:
    """An event as the log writes it in full: message, [the fault it is traced to], why."""
    text = event.message + (f" [{event.cause}]" if getattr(event, "cause", "") else "")
    return f"{text} — {event.why}" if event.why else text


def order_of(app: StackyardApp, *fragments: str) -> list[int]:
    """Where the first event whose text contains each fragment sits in the log."""
    events = [f"{e.message} — {e.why}" for e in logged(app)]
    out = []
    for frag in fragments:
        found = [i for i, text in enumerate(events) if frag in text]
        assert found, f"no event with {frag!r} in:\n" + "\n".join(events[-30:])
        out.append(found[0])
    return out


# -- 1. keys typed in the SQL console never reach the app -----------------------------------


async def test_sql_console_keeps_typed_keys_after_choosing_another_node(
        make_app: AppFactory) -> None:
    app = make_app(storage=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await select(pilot, "db-1")
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, SqlScreen)
        await pilot.click("#sql-node")
        await pilot.pause()
        await pilot.press("down", "enter")  # db-2 in the drop-down list
        await pilot.pause()
        assert app.screen.query_one("#sql-node", Select).value == "db-2"
        await pilot.press(*"select q, s, t, d from writes")
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, SqlScreen), "a key quit or left"
        assert app.screen.query_one("#sql-input", Input).value == "select q, s, t, d from writes"
        assert "SQL console on db-2" in screen_text(app)
        assert not session(app).sent, "a key typed as SQL sent a command"


async def test_no_shortcut_fires_from_the_open_drop_down(make_app: AppFactory) -> None:
    app = make_app(storage=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("s")
        await pilot.click("#sql-node")
        await pilot.pause()
        await pilot.press("q", "question_mark", "t")
        await pilot.pause()
        assert app.is_running and app.theme == "stackyard-dark"
        assert isinstance(app.screen, SqlScreen)


async def test_filter_box_keeps_typed_keys(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("slash", *"d q s")
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, MainScreen)
        assert not session(app).sent


# -- 2. the event log can be focused, scrolled back, and read in full ------------------------


async def test_event_log_scrolls_back_to_the_first_event_and_shows_it_whole(
        make_app: AppFactory) -> None:
    app = make_app(warmup=0.0)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("S")  # a spike: scale-ups, VM boots, a stream of events
        for _ in range(12):
            await advance(pilot, 10)
        first = logged(app)[0]
        assert len(logged(app)) > 20
        assert first.message not in screen_text(app)
        log = app.screen.query_one(EventLog)
        for _ in range(5):
            if log.has_focus:
                break
            await pilot.press("tab")
        assert log.has_focus, "tab never reaches the event log"
        await pilot.press("pageup", "pageup", "home")
        await pilot.pause()
        text = screen_text(app)
        assert event_text(first) in " ".join(text.split())
        # the longest why of all, selected, reads whole (wrapped) on an 80-column screen
        longest = max(logged(app), key=lambda e: len(e.message + e.why))
        assert len(longest.message + longest.why) > 70
        for _ in range(len(logged(app))):
            if log.selected is longest:
                break
            await pilot.press("down")
        joined = " ".join(screen_text(app).split())
        assert " ".join(event_text(longest).split()) in joined
        await pilot.press("end")
        await pilot.pause()
        assert log.cursor is None


# -- 3. recoveries are logged ---------------------------------------------------------------


async def test_a_fenced_primary_that_resumes_says_so(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        for replica in ("db-2", "db-3"):  # nobody left to promote
            await select(pilot, replica)
            await pilot.press("d")
        await select(pilot, "db-1")
        await pilot.press("p")
        await advance(pilot, 35)
        assert session(app).latest.node("db-1").state == "fenced"  # type: ignore[union-attr]
        await pilot.press("u")  # heal the partition
        await advance(pilot, 1)
        assert "db-1 is primary again" in screen_text(app)
        assert session(app).latest.node("db-1").state == "primary"  # type: ignore[union-attr]


async def test_dns_moving_clients_away_from_a_dead_edge_and_back_is_logged(
        make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await select(pilot, "edge-eu", "edge")
        await pilot.press("e")
        await advance(pilot, 31)
        assert "DNS sends eu clients to edge-us" in screen_text(app)
        await pilot.press("u")
        await advance(pilot, 1)
        assert "DNS sends eu clients back to edge-eu" in screen_text(app)


# -- 4. causes before effects --------------------------------------------------------------


async def test_a_vm_goes_down_before_its_containers_are_gone(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, "vm-1")
        await pilot.press("d")
        await pilot.pause()
        fault, down, gone = order_of(app, "kill_vm on vm-1", "vm-1 down",
                                     "its VM vm-1 went down")
        assert fault < down < gone


async def test_a_killed_host_logs_host_then_vm_then_containers_then_ejections(
        make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, "host-2")
        await pilot.press("d")
        await pilot.pause()
        host, vm, gone = order_of(app, "host-2 down", "vm-2 down", "its VM vm-2 went down")
        assert host < vm < gone
        ejections = [i for i, e in enumerate(logged(app)) if e.kind == "ejected"]
        assert all(i > gone for i in ejections)


async def test_the_lease_expires_before_the_primary_demotes_itself(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, "db-1")
        await pilot.press("p")
        await advance(pilot, 40)
        expired, demoted, promoting = order_of(app, "leader lease expired",
                                               "db-1 demoted itself", "promoting")
        assert expired < demoted and expired < promoting


async def test_scaling_in_logs_the_decision_before_the_containers_go(
        make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("A")  # autoscaler off, so only the user scales
        await pilot.press("left_square_bracket", "left_square_bracket")
        await pilot.pause()
        events = logged(app)
        first_set = next(i for i, e in enumerate(events) if e.message == "replicas set to 3")
        scaled = [i for i, e in enumerate(events) if "scaled in" in e.why]
        assert scaled and all(i > first_set for i in scaled)
        # each container scaled in is logged at that moment, after its own decision, whether
        # it goes at once (terminated) or finishes its requests first (draining)
        second_set = next(i for i, e in enumerate(events) if e.message == "replicas set to 2")
        assert len(scaled) == 2, [f"{e.message} — {e.why}" for e in events[first_set:]]
        assert first_set < scaled[0] < second_set < scaled[1]


async def test_a_kill_logs_the_fault_before_the_crash(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await select(pilot, "app-2")
        await pilot.press("d")
        await pilot.pause()
        fault, crash = order_of(app, "kill_container on app-2", "app-2 crashed")
        assert fault < crash


# -- 5. a manual backup, and the backup line --------------------------------------------------


async def test_a_manual_backup_says_so_and_the_pane_reads_plainly(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await advance(pilot, 10)
        await pilot.press("b")
        await pilot.pause()
        backup = next(e for e in logged(app) if e.kind == "backup")
        assert "taken on request" in backup.why and "scheduled" not in backup.why
        app.screen.query_one("#pane-database", TierPane).focus()
        await pilot.pause()
        text = screen_text(app)
        assert "1 backup," in text and "1 backups" not in text
        assert "last at 0:15" in text


# -- 6. the header counts kills ---------------------------------------------------------------


async def test_the_header_counts_a_kill_until_its_target_recovers(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("D")  # kill the primary
        await pilot.pause()
        assert "faults 1" in screen_text(app).splitlines()[0]
        await select(pilot, "host-3")
        await pilot.press("d")
        await pilot.pause()
        assert "faults 2" in screen_text(app).splitlines()[0]
        await advance(pilot, 200)  # the host reboots, the primary restarts and rejoins
        assert "faults 0" in screen_text(app).splitlines()[0]


# -- 7. the light theme's borders show --------------------------------------------------------


def _luminance(rgb: tuple[int, int, int]) -> float:
    def channel(v: int) -> float:
        c = v / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = rgb
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


@pytest.mark.parametrize("theme", ["stackyard-light", "stackyard-dark",
                                   "stackyard-high-contrast"])
async def test_unfocused_borders_and_the_events_rule_stand_out(make_app: AppFactory,
                                                               theme: str) -> None:
    app = make_app(theme=theme)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        for widget in (app.screen.query_one("#pane-network"), app.screen.query_one(EventLog)):
            _, colour = widget.styles.border_top
            base = widget.background_colors[0]
            drawn = base + colour
            hi, lo = sorted((_luminance(drawn.rgb), _luminance(base.rgb)), reverse=True)
            assert (hi + 0.05) / (lo + 0.05) >= 2.0, (theme, widget, drawn, base)


# -- 8, 9, 10. what 80 columns show: whole labels, whole states and ids, one number format ----


def footer_items(app: StackyardApp) -> list[str]:
    """Every 'key label' the screen could show in its footer."""
    items = [f"{app.get_key_display(a.binding)} {a.binding.description}"
             for a in app.screen.active_bindings.values() if a.binding.show and a.enabled]
    return [*items, "^p palette"]


def whole_items(footer: str, items: list[str]) -> list[str]:
    """``footer`` split into whole items; fails on anything that is not one."""
    out, rest = [], footer.strip()
    while rest:
        item = next((i for i in sorted(items, key=len, reverse=True)
                     if rest == i or rest.startswith(i + " ")), None)
        assert item is not None, f"{rest!r} does not start with a whole key label"
        out.append(item)
        rest = rest[len(item):].strip()
    return out


async def test_footer_at_80_columns_shows_whole_labels_only(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        for node in ("app-1", "db-1", "edge-eu", "host-1", "lb-1"):
            await select(pilot, node)
            await pilot.pause()
            footer = screen_text(app).splitlines()[-1]
            assert "▏" not in footer
            shown = whole_items(footer, footer_items(app))
            assert shown[:2] == ["? help", "q quit"], shown
            assert "u undo" in shown


async def test_rows_never_cut_an_id_or_a_state(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await select(pilot, "client-eu", "link")
        await pilot.press("p")  # partitioned: the longest state of the pane
        await select(pilot, "app-2")
        await pilot.press("d")
        await advance(pilot, 12)  # app-2 restarts: unhealthy or ejected
        text = screen_text(app)
        for word in ("client-eu", "client-us", "cut off"):
            assert word in text, word
        for cut in ("client-e ", "client-u ", "◐degrade ", "✖unhealt ", "✖parted "):
            assert cut not in text


@pytest.mark.parametrize("size", [(100, 30), (160, 48)])
async def test_wider_screens_keep_the_fault_count_and_whole_db_rows(make_app: AppFactory,
                                                                    size: tuple[int, int]
                                                                    ) -> None:
    app = make_app()
    async with app.run_test(size=size) as pilot:
        await select(pilot, "db-2")
        await pilot.press("r")
        await advance(pilot, 5)
        text = screen_text(app)
        assert "faults 1" in text.splitlines()[0]
        snap = session(app).latest
        assert snap is not None
        for node in snap.nodes:
            if isinstance(node, DbNode):
                cell = row_of(app, node.id)
                assert any(v in cell for v in figures(node).variants), cell


async def test_one_number_format_and_correct_plurals(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await select(pilot, "host-3")
        await pilot.press("n")
        await advance(pilot, 5)
        text = screen_text(app)
        assert not re.search(r"(?<![\d])\.\dms", text), "a duration without its leading zero"
        assert "0.5ms" in text
        for wrong in ("1 vms", "1 rows", "1 backups", "1 ejections", "1 containers"):
            assert wrong not in text
        assert "1 vm" in text
        # a rate reads the same in the header and the panes: whole numbers above 10
        assert not re.search(r"\b\d{2,}\.\d req/s", text)


# -- 11. the SLO over a rolling window --------------------------------------------------------


async def test_an_early_incident_leaves_the_slo_window(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("D")
        await advance(pilot, 40)
        header = screen_text(app).splitlines()[0]
        assert ("slo spent" in header and "burn" not in header) or "slo spent" in header
        kpis = session(app).latest.kpis  # type: ignore[union-attr]
        assert kpis.slo_budget == 0.0 and kpis.slo_burn > 1
        await advance(pilot, 330)  # past the 5-minute window
        header = screen_text(app).splitlines()[0]
        assert "slo 100%" in header, header
        summary = await session(app).summary()
        assert 0.0 <= summary.slo.budget_remaining <= 1.0
        assert summary.slo.window_budget_remaining == 1.0 and summary.slo.burn_rate > 1


# -- 12. the promotion says what the leader's figure is ---------------------------------------


async def test_the_promotion_names_the_lease_stores_optime(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("D")
        await advance(pilot, 45)
        promoting = next(e for e in logged(app) if e.kind == "promoting")
        assert "old leader's last optime in the lease store" in promoting.why


# -- 13. help lists themes and defaults; the default scenario points to files that exist ----


def test_help_lists_theme_names_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from stackyard.cli.main import main

    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for name in ("dark", "light", "high-contrast", "ansi-16"):
        assert name in out
    assert "(default: 1;" in out and "(default: dark)" in out
    assert main(["run", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "default: the scenario's run.duration; 10m for default" in out


def test_the_default_scenario_names_only_files_that_exist() -> None:
    text = (ROOT / "core" / "scenarios" / "default.toml").read_text()
    for name in re.findall(r"[\w/.-]+\.md", text):
        assert (ROOT / name).exists(), f"default.toml points to {name}, which does not exist"
