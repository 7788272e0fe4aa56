"""The terminal display: a live table while running and a summary at the end (CLI only)."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from agent.pipeline import Pipeline
from agent.progress import LiveProgress, RunObserver, render_summary, summary_text
from agent.records import RunStatus
from agent.runner import run


def _record(run_opts: dict[str, Any], observer: RunObserver | None = None) -> Any:
    pipe = Pipeline("shown")
    pipe.task(name="extract")(lambda: [1, 2])
    pipe.task(name="boom", depends_on=["extract"])(lambda: 1 / 0)
    pipe.task(name="after", depends_on=["boom"])(lambda: None)
    return run(pipe, observer=observer, **run_opts)


def test_observer_sees_every_task_state(run_opts: dict[str, Any]) -> None:
    """The runner reports starts and ends of every task to the observer."""
    events: list[tuple[str, str]] = []

    class Recorder(RunObserver):
        def task_started(self, task: str, attempt: int) -> None:
            events.append((task, "started"))

        def task_finished(self, task: str, status: RunStatus, attempt: int, duration: float | None,
                          detail: str | None) -> None:
            events.append((task, str(status)))

    _record(run_opts, Recorder())
    assert events == [("extract", "started"), ("extract", "success"), ("boom", "started"), ("boom", "failed"),
                      ("after", "upstream_failed")]


def test_a_broken_observer_does_not_break_the_run(run_opts: dict[str, Any]) -> None:
    """Exceptions from an observer are logged and the run goes on."""

    class Broken(RunObserver):
        def task_started(self, task: str, attempt: int) -> None:
            raise RuntimeError("display crashed")

    assert _record(run_opts, Broken()).task_state("extract") is RunStatus.SUCCESS


def _text(renderable: Any) -> str:
    out = io.StringIO()
    Console(file=out, width=120, force_terminal=False).print(renderable)
    return out.getvalue()


def test_live_progress_and_summary_render(run_opts: dict[str, Any]) -> None:
    """The live table and the summary table each show every task with its state and error."""
    with LiveProgress(Console(file=io.StringIO(), width=120, force_terminal=False)) as live:
        rec = _record(run_opts, live)
        table = live._render()
    for text in (_text(table), _text(render_summary(rec))):
        cells = [line.replace("│", " ").split() for line in text.splitlines()]
        rows = {c[0]: " ".join(c) for c in cells if c}
        assert rows["extract"].startswith("extract success ")
        assert rows["boom"].startswith("boom failed ") and "ZeroDivisionError" in rows["boom"]
        assert rows["after"].startswith("after upstream_failed ")
    plain = summary_text(rec)
    assert plain.splitlines()[0].startswith(f"shown run {rec.run_id}: failed")


def test_live_table_is_gone_before_the_summary_is_printed(run_opts: dict[str, Any]) -> None:
    """The live display stops and erases itself when the run finishes, inside its own with block."""
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=True)
    with LiveProgress(console) as live:
        _record(run_opts, live)
        assert live._live is None          # stopped at run_finished
        assert not console.is_alt_screen
        console.print("SUMMARY")           # what the CLI prints next lands after the erased table
    text = out.getvalue()
    assert text.rstrip().endswith("SUMMARY")


def test_live_table_shows_during_every_run_of_one_display(run_opts: dict[str, Any]) -> None:
    """One display over several runs (a backfill) is live during each run and erased after each."""
    shown: list[bool] = []

    class Watching(LiveProgress):
        def task_started(self, task: str, attempt: int) -> None:
            shown.append(self._live is not None and self._live.is_started)
            super().task_started(task, attempt)

    console = Console(file=io.StringIO(), width=120, force_terminal=True)
    with Watching(console) as live:
        for _ in range(3):
            _record(run_opts, live)
            assert live._live is None
    assert shown == [True, True] * 3  # extract and boom start in each run
    assert live._live is None
