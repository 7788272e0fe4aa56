"""The terminal display: a live table while running and a summary at the end (CLI only)."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from agent.events import RunEnded, RunStarted, TaskEnded, TaskStarted
from agent.pipeline import Pipeline
from agent.progress import LiveProgress, render_summary, summary_text
from agent.records import RunStatus
from agent.runner import run


def _record(run_opts: dict[str, Any], listener: Any = None) -> Any:
    pipe = Pipeline("shown")
    pipe.task(name="extract")(lambda: [1, 2])
    pipe.task(name="boom", depends_on=["extract"])(lambda: 1 / 0)
    pipe.task(name="after", depends_on=["boom"])(lambda: None)
    bus = run_opts["telemetry"].bus
    if listener is not None:
        bus.add(listener, inline=True)
    try:
        return run(pipe, **run_opts)
    finally:
        if listener is not None:
            bus.remove(listener)


def test_a_listener_hears_every_task_state(run_opts: dict[str, Any]) -> None:
    """The runner emits the start and end of the run and of every task, in order."""
    events: list[tuple[str, str]] = []

    def hear(e: Any) -> None:
        if isinstance(e, TaskStarted):
            events.append((e.task, "started"))
        elif isinstance(e, TaskEnded):
            events.append((e.task, str(e.status)))
        elif isinstance(e, RunStarted | RunEnded):
            events.append(("run", type(e).__name__))

    _record(run_opts, hear)
    assert events == [
        ("run", "RunStarted"),
        ("extract", "started"),
        ("extract", "success"),
        ("boom", "started"),
        ("boom", "failed"),
        ("after", "upstream_failed"),
        ("run", "RunEnded"),
    ]


def test_a_broken_listener_does_not_break_the_run(run_opts: dict[str, Any]) -> None:
    """Exceptions from an inline listener are counted and the run goes on."""

    def broken(e: Any) -> None:
        raise RuntimeError("display crashed")

    assert _record(run_opts, broken).task_state("extract") is RunStatus.SUCCESS
    assert (
        run_opts["telemetry"].metrics.sample(
            "pipewarden_listener_errors_total", pipeline="shown", listener="function", reason="raised"
        )
        >= 1
    )


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
        assert live._live is None  # stopped at run_finished
        assert not console.is_alt_screen
        console.print("SUMMARY")  # what the CLI prints next lands after the erased table
    text = out.getvalue()
    assert text.rstrip().endswith("SUMMARY")


def test_live_table_shows_during_every_run_of_one_display(run_opts: dict[str, Any]) -> None:
    """One display over several runs (a backfill) is live during each run and erased after each."""
    shown: list[bool] = []

    class Watching(LiveProgress):
        def handle(self, event: Any) -> None:
            if isinstance(event, TaskStarted):
                shown.append(self._live is not None and self._live.is_started)
            super().handle(event)

    console = Console(file=io.StringIO(), width=120, force_terminal=True)
    with Watching(console) as live:
        for _ in range(3):
            _record(run_opts, live)
            assert live._live is None
    assert shown == [True, True] * 3  # extract and boom start in each run
    assert live._live is None


def test_live_table_counts_items_and_shows_a_waiting_sensor(run_opts: dict[str, Any]) -> None:
    """The live row of a mapped task counts its items by state; a sensor's row says it is waiting."""
    live = LiveProgress(Console(file=io.StringIO(), width=120, force_terminal=False))
    live.handle(RunStarted("r", "p", 0.0, tasks=("each", "ready")))
    live.handle(TaskStarted("r", "p", "ready", 1, 0.0, waiting=True))
    live.handle(TaskStarted("r", "p", "each", 1, 0.0))
    for i, status in enumerate((RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.SUCCESS)):
        live.handle(TaskStarted("r", "p", "each", 1, 0.0, item=i))
        live.handle(TaskEnded("r", "p", "each", 1, status, 0.0, 1.0, item=i))
    rows = {
        c[0]: " ".join(c) for c in (line.replace("│", " ").split() for line in _text(live._render()).splitlines()) if c
    }
    assert rows["each"].startswith("each running ") and rows["each"].endswith("items failed 1, success 2")
    assert rows["ready"].startswith("ready waiting ")
