"""File arrival: real files in tmp_path, an injected clock for the stability window."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from agent.pipeline import Pipeline
from agent.runner import run
from agent.scheduler import Scheduler
from agent.schedules import FileArrival
from agent.store import SQLiteRunStore
from agent.triggers import FileTrigger


def _names(files: list[Any]) -> list[str]:
    return [Path(f.path).name for f in files]


def test_a_file_still_being_written_is_not_picked_up(tmp_path: Path) -> None:
    """A file is offered only after its size and mtime stayed the same for stable_seconds."""
    f = tmp_path / "orders.csv"
    f.write_text("id\n1\n")
    trig = FileTrigger(tmp_path, "*.csv", stable_seconds=5)
    assert trig.poll(now=100.0) == []
    with f.open("a") as out:
        out.write("2\n")  # the writer is still at it
    assert trig.poll(now=103.0) == []
    assert trig.poll(now=107.0) == []  # only 4 s since the last change
    ready = trig.poll(now=108.0)
    assert _names(ready) == ["orders.csv"] and ready[0].size == len("id\n1\n2\n")


def test_a_file_is_offered_once_per_version(tmp_path: Path) -> None:
    """After mark_done a file is not offered again until it changes."""
    f = tmp_path / "a.csv"
    f.write_text("1")
    trig = FileTrigger(tmp_path, "*.csv", stable_seconds=1)
    trig.poll(now=0.0)
    [ready] = trig.poll(now=1.0)
    trig.mark_done(ready)
    assert trig.poll(now=5.0) == []
    f.write_text("12")
    assert trig.poll(now=6.0) == []
    assert _names(trig.poll(now=7.0)) == ["a.csv"]


def test_glob_pattern_and_recursion(tmp_path: Path) -> None:
    """Only files matching the pattern count; subdirectories only when recursive."""
    (tmp_path / "sub").mkdir()
    for name in ("a.csv", "b.json", "sub/c.csv"):
        (tmp_path / name).write_text("x")
    flat = FileTrigger(tmp_path, "*.csv", stable_seconds=0)
    assert _names(flat.poll(now=0.0)) == ["a.csv"]
    deep = FileTrigger(tmp_path, "**/*.csv", stable_seconds=0)
    assert sorted(_names(deep.poll(now=0.0))) == ["a.csv", "c.csv"]


def test_watchdog_reports_new_files(tmp_path: Path) -> None:
    """With the watcher started, a new file is reported by watchdog and offered once stable."""
    trig = FileTrigger(tmp_path, "*.csv", stable_seconds=2)
    trig.start()
    try:
        assert trig.poll(now=0.0) == []  # the initial scan: nothing yet
        (tmp_path / "late.csv").write_text("x")
        deadline = time.monotonic() + 10
        while trig.pending_events() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert trig.pending_events() > 0
        assert trig.poll(now=10.0) == []
        assert _names(trig.poll(now=12.0)) == ["late.csv"]
    finally:
        trig.stop()


def test_file_arrival_schedule_passes_the_path_and_survives_a_restart(tmp_path: Path, tel: Any) -> None:
    """The scheduler queues one run per stable file with `path` as a run parameter, once, even after a restart."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    store = SQLiteRunStore(tmp_path / "home" / "pipewarden.db")
    got: list[str] = []

    def make() -> Pipeline:
        pipe = Pipeline("ingest", schedule=FileArrival(str(inbox), "*.csv", stable_seconds=3), max_active_runs=5)
        pipe.task(name="load")(lambda path: got.append(path))
        return pipe

    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    (inbox / "day1.csv").write_text("id\n1\n")
    pipe = make()
    s = Scheduler(store, [pipe])
    assert s.tick(t0) == []
    [due] = s.tick(t0 + dt.timedelta(seconds=3))
    assert due.trigger == "file" and due.params == {"path": str(inbox / "day1.csv")}
    assert run(pipe, store=store, run_id=due.run_id, telemetry=tel).ok
    assert got == [str(inbox / "day1.csv")]
    restarted = Scheduler(store, [make()])
    assert restarted.tick(t0 + dt.timedelta(seconds=10)) == []
    assert restarted.tick(t0 + dt.timedelta(seconds=20)) == []
    assert len(store.list_runs()) == 1
    store.close()
