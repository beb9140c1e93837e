"""The pure pieces the panes are drawn from: numbers, bars, rows, header, keys."""

from __future__ import annotations

import pytest

from stackyard.core.protocol import (
    Command,
    ContainerNode,
    DbNode,
    DriverStatus,
    EdgeNode,
    LinkNode,
    RegionInfo,
    Snapshot,
)
from stackyard.core.run import open_run
from stackyard.core.session import LocalSession
from stackyard.tui.format import bar, clock, count, ms, sparkline, speed, state_class
from stackyard.tui.keys import bindings, command_for, node_keys, region_of
from stackyard.tui.widgets.header import header_content
from stackyard.tui.widgets.rows import node_row


@pytest.mark.parametrize(("fraction", "text"), [(0.0, "    "), (0.5, "██  "), (1.0, "████"),
                                                (2.0, "████"), (0.1, "▍   ")])
def test_bar(fraction: float, text: str) -> None:
    assert bar(fraction, 4) == text


def test_sparkline_scales_to_its_range() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7], 8) == "▁▂▃▄▅▆▇█"
    assert sparkline([5, 5, 5], 8) == "▄▄▄"
    assert sparkline(list(range(100)), 4) == "▁▃▆█"


@pytest.mark.parametrize(("value", "text"), [(0.0631, "63ms"), (0.0052, "5.2ms"), (1.5, "1.5s"),
                                             (42.0, "42s")])
def test_ms(value: float, text: str) -> None:
    assert ms(value) == text


def test_counts_clocks_and_speeds() -> None:
    assert [count(x) for x in (7, 12.5, 987, 12_345, 4_500_000)] == \
        ["7", "12.5", "987", "12k", "4.5M"]
    assert clock(83.25) == "1:23.2" and clock(3725) == "1:02:05.0"
    assert [speed(x) for x in (0.25, 1, 2.5, 100)] == ["0.25x", "1x", "2.5x", "100x"]


def test_state_classes() -> None:
    assert [state_class(s) for s in ("running", "booting", "ejected", "weird")] == \
        ["good", "busy", "bad", "other"]


def test_header_shows_the_achieved_speed_when_behind() -> None:
    session = paused_session()
    session.advance(3)
    snap = session.latest
    status = DriverStatus(paused=False, speed=100.0, achieved=27.4, behind=True)
    behind = header_content(snap, status, 100).plain
    assert "behind" in behind and "100x (got 27x)" in behind
    status = DriverStatus(paused=True, speed=2.0, achieved=0.0, behind=False)
    paused = header_content(snap, status, 100).plain
    assert "paused" in paused and "2x" in paused and "got" not in paused


def test_rows_fit_their_width_and_mark_faults() -> None:
    session = paused_session()
    session.advance(5)
    assert session.latest is not None
    for node in session.latest.nodes:
        for width in (24, 30, 48, 70):
            row = node_row(node, width, selected=False)
            assert row.cell_length <= width, (node.id, width, row.plain)
            assert row.plain[1:].startswith(node.id[:8])
    container = session.latest.node("app-1")
    assert node_row(container, 30, selected=True, active_faults=1).plain.startswith("!")


def paused_session() -> LocalSession:
    return open_run("default", seed=1).session(paused=True)


def test_keys_follow_the_catalogue_target_types() -> None:
    cat = paused_session().catalogue
    container = ContainerNode(id="app-1", state="running")
    link = LinkNode(id="app-db", state="ok")
    db = DbNode(id="db-2", state="replica")
    snap = Snapshot(time=0.0, seq=1, regions=(RegionInfo(name="us", edge="edge-us"),
                                              RegionInfo(name="eu", edge="edge-eu")))

    def sent(key: str, node: object) -> Command | None:
        for b in bindings(cat):
            if b.key.key == key:
                command = command_for(b, node, snap)  # type: ignore[arg-type]
                if command is not None:
                    return command
        return None

    assert sent("d", container) == Command("kill_container", "app-1", origin="key")
    assert sent("p", container) == Command("partition", "app-1", origin="key")
    assert sent("p", db) == Command("db_partition", "db-2", origin="key")
    assert sent("w", link) == Command("bandwidth_cap", "app-db", origin="key")
    assert sent("w", db) == Command("slow_disk", "db-2", origin="key")
    assert sent("l", container) is None
    assert sent("v", db) == Command("switchover", "db-2", origin="key")
    assert sent("v", container) == Command("switchover", "", origin="key")
    assert sent("O", EdgeNode(id="edge-eu", state="up", region="eu")) == \
        Command("region_outage", "eu", origin="key")
    assert sent("O", container) == Command("region_outage", "us", origin="key")
    assert sent("space", None) == Command("pause", params={"paused": "toggle"}, origin="key")
    assert [b.key.key for b in node_keys(cat, link)] == ["l", "o", "w", "p"]
    assert region_of(EdgeNode(id="edge-us", state="up", region="us"), snap) == "us"
    assert region_of(container, snap) == "us"


def test_an_event_shows_the_fault_it_is_traced_to_and_can_be_found_by_it() -> None:
    from stackyard.core.protocol import Event
    from stackyard.tui.widgets.event_log import event_line, matches

    ev = Event(time=61.5, severity="error", component="db-2", kind="promoted",
               message="db-2 is the new primary", why="3 writes lost", cause="f1")
    assert event_line(ev, 80).plain == "  1:01.5 ✖ db-2 is the new primary [f1] — 3 writes lost"
    assert matches(ev, "f1") and not matches(ev, "f2")
    plain = Event(time=0.0, severity="info", component="app-1", kind="container_up",
                  message="app-1 running")
    assert "[" not in event_line(plain, 80).plain
