"""Lessons as data: the built-ins load and fit a lesson pane at 80x24, a bad file gets one-line
errors naming the file and the field, and a lesson follows the model headless."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stackyard.core.engine import Engine
from stackyard.core.lesson import (
    PANE_LINES,
    LessonError,
    LessonRun,
    fill,
    lesson_names,
    load_builtin,
    load_lesson,
    wrapped,
)
from stackyard.core.protocol import Command
from stackyard.core.scenario import resolve

GOOD = '''
[lesson]
title = "A small lesson"
summary = "Kill the primary."
scenario = "default"
seed = 4

[[steps]]
text = "The primary takes every write."
keys = ["D"]
until = "database.failovers >= 1"
waiting = "a promotion"

[debrief]
text = "{database.failovers:failover}, {database.lost_writes:write} lost, p99 {latency.p99:ms}."
'''

TOPICS = ["request-path", "cdn-stampede", "balancer", "autoscaling", "noisy-neighbour",
          "replica-lag", "failover", "backups", "split-brain", "retry-storm"]


def test_ten_builtin_lessons_in_teaching_order() -> None:
    assert lesson_names() == TOPICS


@pytest.mark.parametrize("name", TOPICS)
def test_each_builtin_fits_the_pane_and_asks_for_something(name: str) -> None:
    lesson = load_builtin(name)
    assert lesson.title and lesson.summary and lesson.debrief
    assert any(step.keys or step.palette for step in lesson.steps)
    for step in lesson.steps:
        lines = wrapped(step.text) + 1 + (wrapped("▶ " + step.instruction)
                                          if step.instruction else 0)
        assert lines <= PANE_LINES, (name, step.text)


def test_a_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "small.toml"
    path.write_text(GOOD)
    lesson = load_lesson(path)
    assert lesson.name == "small" and lesson.seed == 4
    assert lesson.steps[0].instruction == "Press D (kill primary)."


@pytest.mark.parametrize(("change", "problem"), [
    (("[lesson]", "[lessn]"), "lessn: unknown key (did you mean 'lesson'?)"),
    (('title = "A small lesson"\n', ""), "lesson.title: missing (expected a string)"),
    (('scenario = "default"', 'scenario = "defalt"'),
     "lesson.scenario: defalt: no such built-in scenario or file (did you mean 'default'?"),
    (("seed = 4", "seed = -1"), "lesson.seed: expected an integer >= 0, got -1"),
    (('keys = ["D"]', 'keys = ["Q"]'), "steps[0].keys: 'Q' is not a key of stackyard"),
    (('keys = ["D"]', 'keys = "D"'), "steps[0].keys: expected a list of keys"),
    (('keys = ["D"]', 'keys = ["D"]\npalette = "restore"'), "steps[0]: give keys or palette"),
    (('until = "database.failovers >= 1"', 'until = "database.failover >= 1"'),
     "steps[0].until: database has no field 'failover'"),
    (('until = "database.failovers >= 1"', 'until = "node(\\"db-1\\").state == \\"gone\\""'),
     "steps[0].until: node(\"db-1\").state is never 'gone'"),
    (('until = "database.failovers >= 1"\n', ""), "steps[0].until: missing"),
    (('waiting = "a promotion"', 'waitin = "a promotion"'),
     "steps[0].waitin: unknown key (did you mean 'waiting'?)"),
    (('text = "The primary takes every write."', 'text = "' + "word " * 120 + '"'),
     "steps[0].text: too long for the lesson pane at 80x24"),
    (("{latency.p99:ms}", "{latency.p100:ms}"), "debrief.text: latency has no field 'p100'"),
    (("{latency.p99:ms}", "{latency:ms}"), "debrief.text: {latency} is a record, not a figure"),
    (("{latency.p99:ms}", "{latency.p99:%d}"), "debrief.text: {latency.p99:%d}: expected a "
                                               "format"),
    (("{latency.p99:ms}", "{scenario:pct}"), "a format needs a number, scenario is a string"),
    (("p99 {latency.p99:ms}.", "p99 {latency.p99:ms} {oops."),
     "debrief.text: a '{' or '}' that is not a {path:format} placeholder"),
    (("[debrief]", "[debriefing]"), "debrief: missing table [debrief]"),
])
def test_a_bad_lesson_file_gets_one_line_per_problem(tmp_path: Path, change: tuple[str, str],
                                                     problem: str) -> None:
    path = tmp_path / "bad.toml"
    old, new = change
    assert old in GOOD
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(LessonError) as err:
        load_lesson(path)
    lines = err.value.lines()
    assert all(line.startswith(f"{path}: ") and "\n" not in line for line in lines)
    assert any(problem in line for line in lines), lines


def test_not_toml_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text("[lesson\n")
    with pytest.raises(LessonError, match="invalid TOML"):
        load_lesson(path)
    with pytest.raises(LessonError, match="no such file"):
        load_lesson(tmp_path / "none.toml")


def test_a_lesson_follows_the_model_and_quotes_the_summary(tmp_path: Path) -> None:
    path = tmp_path / "small.toml"
    path.write_text(GOOD)
    lesson = load_lesson(path)
    engine = Engine(resolve(lesson.scenario), seed=lesson.seed)
    run = LessonRun(lesson)
    assert run.observe(engine.snapshot()) and run.index == 0  # the first step begins
    engine.run_for(5)
    assert not run.observe(engine.snapshot())
    engine.apply(Command("kill_db"))
    for _ in range(60):
        engine.run_for(1)
        if run.observe(engine.snapshot()):
            break
    assert run.done and run.finished_at is not None
    summary = engine.summary()
    text = run.finish(summary)
    assert summary.database is not None
    assert text.startswith("1 failover, ")
    assert f"{summary.database.lost_writes} write" in text
    assert f"p99 {summary.latency.p99 * 1000:.0f} ms." in text


def test_fill_formats() -> None:
    engine = Engine(resolve("default"), seed=1)
    engine.run_for(3)
    s = engine.summary()
    assert fill("{seed}", s) == "1"
    assert fill("{cdn.hit_ratio:pct}", s) == f"{s.cdn.hit_ratio * 100:.1f}%".replace(".0%", "%")
    assert fill("{autoscaler.vm_boots:VM boot}", s) == "0 VM boots"
    assert fill("{database.last_restore.rto:s}", s) == "n/a"
    assert fill("{balancer.retries:retry/retries}", s) == f"{s.balancer.retries} " + \
        ("retry" if s.balancer.retries == 1 else "retries")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stackyard.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_learn_lists_the_lessons_without_textual() -> None:
    done = subprocess.run(
        [sys.executable, "-c",
         "import sys\nfrom stackyard.cli import main\nassert main(['learn']) == 0\n"
         "assert not [m for m in sys.modules if m.startswith('textual')]\n"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for name in TOPICS:
        assert name in done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) <= 80


def test_learn_and_validate_report_a_bad_lesson_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace('keys = ["D"]', 'keys = ["Q"]'))
    for args in (["learn", str(path)], ["validate", str(path)]):
        done = run_cli(*args)
        assert done.returncode == 2
        assert done.stderr.startswith(f"stackyard: {path}: steps[0].keys: 'Q' is not a key")
        assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    done = run_cli("validate", str(good))
    assert done.returncode == 0 and done.stdout == f"{good}: ok\n"
    assert run_cli("learn", "no-such-lesson").stderr.startswith(
        "stackyard: no-such-lesson: no such lesson or file")
