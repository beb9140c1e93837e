"""The lesson pane: the current step's text, what to do, and what the model is waiting for;
then the debrief with the run's own figures. It takes the event log's place at 80x24 (``L``
switches between the two); on a tall terminal both show."""

from __future__ import annotations

from textual.content import Content
from textual.widget import Widget

from stackyard.core.lesson import LessonRun
from stackyard.tui.layout import clip, wrap


def lesson_title(run: LessonRun) -> str:
    lesson = run.lesson
    if run.done:
        return f"Lesson done: {lesson.title}"
    return f"Lesson step {run.index + 1} of {len(lesson.steps)}: {lesson.title}"


def lesson_lines(run: LessonRun, width: int, height: int) -> list[Content]:
    """What the pane shows for ``run`` in ``width`` x ``height`` cells. The instruction and the
    waiting line always show; text that does not fit ends in an ellipsis."""
    if width <= 0 or height <= 0:
        return []
    body: list[str]
    tail: list[Content] = []
    step = run.step
    if step is not None:
        body = wrap(step.text, width)
        if step.instruction:
            tail += [Content.styled(line, "bold $accent")
                     for line in wrap("▶ " + step.instruction, width)]
        tail.append(clip(Content.styled(f"… waiting for {step.waiting}", "italic $text-muted"),
                         width))
    elif not run.debrief:
        body = ["Every step done: gathering this run's figures…"]
    else:
        body = wrap(run.debrief, width)
        tail.append(clip(Content.styled("`stackyard learn` lists the other lessons; L shows "
                                        "the event log", "italic $text-muted"), width))
    tail = tail[-height:]
    room = height - len(tail)
    if len(body) > room:
        body = body[:room]
        if body:
            body[-1] = clip(body[-1] + " …", width).plain
    return [Content(line) for line in body] + tail


class LessonPane(Widget):
    """The lesson under way, drawn from a :class:`LessonRun` the app keeps up to date."""

    def __init__(self, run: LessonRun | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.run = run
        self._shown: tuple[int, str] = (-1, "")

    def update_run(self) -> None:
        """Redraw when the step or the debrief changed."""
        if self.run is None:
            return
        now = (self.run.index, self.run.debrief)
        if now != self._shown:
            self._shown = now
            self.border_title = lesson_title(self.run)
            self.refresh()

    def on_mount(self) -> None:
        self.update_run()

    def render(self) -> Content:
        if self.run is None:
            return Content("")
        size = self.content_size
        return Content("\n").join(lesson_lines(self.run, size.width, size.height))
