"""The pure renderers under the widgets: fitting by priority, wrapping, the footer's choice of
keys, every node kind and state in a row at pane widths, the lesson pane and the status line."""

from __future__ import annotations

import pytest
from textual.content import Content

from stackyard.core.lesson import LessonRun, load_builtin
from stackyard.core.protocol import (
    NODE_TYPES,
    BalancerNode,
    ContainerNode,
    DbNode,
    EdgeNode,
    HostNode,
    LinkNode,
    VmNode,
)
from stackyard.tui.explain import explain
from stackyard.tui.format import ms, plural, rate
from stackyard.tui.layout import clip, first_fit, fit_parts, wrap
from stackyard.tui.widgets.footer import FooterKey, footer_content, footer_keys
from stackyard.tui.widgets.lesson_pane import lesson_lines
from stackyard.tui.widgets.rows import SHORT, columns, figures, node_row, state_text
from stackyard.tui.widgets.status_line import status_content


@pytest.mark.parametrize(("seconds", "text"), [(0.0, "0ms"), (0.00004, "0ms"), (0.0005, "0.5ms"),
                                               (0.0052, "5.2ms"), (0.0631, "63ms"),
                                               (0.9999, "1.0s"), (1.5, "1.5s"), (42, "42s")])
def test_one_duration_format(seconds: float, text: str) -> None:
    assert ms(seconds) == text


def test_rates_and_plurals() -> None:
    assert [rate(x) for x in (0, 0.44, 7.5, 9.96, 70.8, 71.2, 12_345)] == \
        ["0", "0.4", "7.5", "10", "71", "71", "12k"]
    assert [plural(n, "vm") for n in (0, 1, 2)] == ["0 vms", "1 vm", "2 vms"]
    assert plural(1, "retry", "retries") == "1 retry" and plural(3, "retry", "retries") == \
        "3 retries"


def test_fit_parts_drops_the_least_important_first() -> None:
    parts = [(Content("alpha"), 0), (Content("beta"), 2), (Content("gamma"), 1)]
    assert fit_parts(parts, 40, ", ").plain == "alpha, beta, gamma"
    assert fit_parts(parts, 14, ", ").plain == "alpha, gamma"
    assert fit_parts(parts, 6, ", ").plain == "alpha"
    assert fit_parts(parts, 3, ", ").plain == "al…"
    assert clip("abcdef", 4).plain == "abc…" and clip("abc", 4).plain == "abc"
    assert first_fit(["long text", "short"], 6) == "short"
    assert first_fit(["long text", "shorter"], 6) == "short…"


def test_wrap_breaks_at_spaces_and_keeps_paragraphs() -> None:
    assert wrap("one two three four", 9) == ["one two", "three", "four"]
    assert wrap("a\nb", 5) == ["a", "b"]
    assert wrap("abcdefghijk", 5) == ["abcd…"]


def test_footer_keeps_the_most_important_whole_keys_in_their_order() -> None:
    keys = [FooterKey("question_mark", "?", "help", 0), FooterKey("q", "q", "quit", 1),
            FooterKey("d", "d", "kill", 2), FooterKey("u", "u", "undo", 3),
            FooterKey("space", "space", "pause", 3), FooterKey("ctrl+p", "^p", "palette", 6)]
    line, spans = footer_content(keys, 80)
    assert line.plain == "? help q quit d kill u undo space pause ^p palette"
    assert spans[1] == (7, 13, "q")
    assert [k.label for k in footer_keys(keys, 27)] == ["help", "quit", "kill", "undo"]
    assert [k.label for k in footer_keys(keys, 12)] == ["help"]
    assert footer_content(keys, 5)[0].plain == ""


SAMPLES = [EdgeNode(id="edge-eu", state="up", region="eu", rps=198.4, hit_ratio=0.62),
           BalancerNode(id="lb-1", state="active", inflight=177),
           LinkNode(id="client-eu", state="degraded", latency=0.2, jitter=0.02, loss=0.05),
           HostNode(id="host-1", state="up", vms=1, cores=16, steal=0.5),
           VmNode(id="vm-12", state="booting", parent="host-3", load=3.5, vcpus=4, containers=3),
           ContainerNode(id="app-17", state="running", parent="vm-1", busy=8, workers=8,
                         queue=64, rps=1234.5, share=0.3, cpu=1.0),
           DbNode(id="db-2", state="replica", role="replica", parent="db-1", lsn=123_456,
                  lag_lsn=5432, lag_s=33.2, reads=10_000, writes=0, stale_reads=77)]


@pytest.mark.parametrize("width", [24, 26, 33, 52, 80])
def test_rows_show_whole_ids_states_and_figures_at_pane_widths(width: int) -> None:
    for sample in SAMPLES:
        cls = type(sample)
        cols = columns([sample])
        for state in cls.states():
            node = sample.__class__(**{**{f: getattr(sample, f)
                                          for f in sample.__struct_fields__}, "state": state})
            row = node_row(node, width, selected=False, cols=cols).plain
            assert len(row) <= width, (row, width)
            assert row[1:].startswith(node.id + " ")
            assert state_text(state, cols[1]) in row
            assert state_text(state, cols[1]) in (state, SHORT.get(state))
            rest = row[1 + cols[0] + 2 + cols[1]:].strip(" ▏▎▍▌▋▊▉█")
            assert rest in figures(node).variants or rest.endswith("…"), (rest, width)


def test_columns_fit_the_longest_id_and_state_of_the_pane() -> None:
    assert columns(SAMPLES) == (9, 9)
    assert columns([SAMPLES[0]]) == (7, 4)
    assert all(len(state_text(s, 9)) <= 9 for cls in NODE_TYPES for s in cls.states())


def test_a_lagging_replica_in_plain_words() -> None:
    text = explain(SAMPLES[-1])
    assert text == "replica, 33s (5.4k writes) behind db-1: reads here may be stale"
    assert status_content(SAMPLES[-1], None, 30).plain == "db-2: replica, 33s (5.4k writ…"
    for sample in SAMPLES:
        assert explain(sample)
    keeping_up = DbNode(id="db-3", state="replica", parent="db-1", lag_s=0.0008, lag_lsn=1)
    assert explain(keeping_up) == ("replica, 0.8ms behind db-1 (the usual replication delay): "
                                   "reads here are all but current")


def test_the_lesson_pane_keeps_the_instruction_and_the_wait_visible() -> None:
    run = LessonRun(load_builtin("failover"))
    lines = [c.plain for c in lesson_lines(run, 78, 6)]
    step = run.lesson.steps[0]
    assert lines[-1] == f"… waiting for {step.waiting}"
    assert lines[-2] == "▶ " + step.instruction
    short = [c.plain for c in lesson_lines(run, 40, 4)]
    assert len(short) == 4 and short[-1].startswith("… waiting") and short[-3].endswith("…")
