"""The pure pieces the panes are drawn from: numbers, bars, rows, header, keys."""

from __future__ import annotations

import pytest

from stackyard.core.engine import Engine
from stackyard.core.protocol import NodeState
from stackyard.core.realtime import DriverStatus
from stackyard.core.scenario import resolve
from stackyard.core.session import LocalSession
from stackyard.tui.format import bar, clock, count, ms, sparkline, speed, state_class
from stackyard.tui.keys import fault_for_key, keys_for, region_of
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
    session = LocalSession(Engine(resolve("default"), seed=1), paused=True)
    session.advance(3)
    snap = session.latest
    behind = header_content(snap, DriverStatus(False, 100.0, 27.4, True), 100).plain
    assert "behind" in behind and "100x (got 27x)" in behind
    paused = header_content(snap, DriverStatus(True, 2.0, 0.0, False), 100).plain
    assert "paused" in paused and "2x" in paused and "got" not in paused


def test_rows_fit_their_width_and_mark_faults() -> None:
    session = LocalSession(Engine(resolve("default"), seed=1), paused=True)
    session.advance(5)
    assert session.latest is not None
    for node in session.latest.nodes:
        for width in (24, 30, 48, 70):
            row = node_row(node, width, selected=False)
            assert row.cell_length <= width, (node.id, width, row.plain)
            assert row.plain[1:].startswith(node.id[:8])
    container = session.latest.node("app-1")
    assert node_row(container, 30, selected=True, active_faults=1).plain.startswith("!")


def test_fault_keys_follow_the_catalogue_target_types() -> None:
    session = LocalSession(Engine(resolve("default"), seed=1), paused=True)
    cat = session.catalogue
    container = NodeState("app-1", "app", "container", "running")
    link = NodeState("app-db", "network", "link", "ok")
    db = NodeState("db-2", "database", "db", "replica")
    assert fault_for_key(cat, "d", container).name == "kill_container"  # type: ignore[union-attr]
    assert fault_for_key(cat, "p", container).name == "partition"  # type: ignore[union-attr]
    assert fault_for_key(cat, "p", db).name == "db_partition"  # type: ignore[union-attr]
    assert fault_for_key(cat, "l", container) is None
    assert [k.key for k in keys_for(cat, link)] == ["l", "o", "p"]
    assert region_of(NodeState("edge-us", "network", "edge", "up"), ["eu", "us"]) == "us"
    assert region_of(container, ["us", "eu"]) == "eu"
