"""The scheduler between ticks: an idle ``tick`` evaluates no cron and asks the store nothing, yet nothing is missed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from agent.pipeline import Pipeline
from agent.scheduler import Scheduler
from agent.schedules import Cron, FileArrival
from agent.store import SQLiteRunStore

UTC = dt.UTC


def at(minute: int, second: int = 0) -> dt.datetime:
    return dt.datetime(2025, 1, 1, 9, minute, second, tzinfo=UTC)


class Counting:
    """A run store that counts the calls made to it."""

    def __init__(self, store: SQLiteRunStore) -> None:
        self.store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return getattr(self.store, name)


def pipe(name: str, schedule: str = "* * * * *") -> Pipeline:
    p = Pipeline(name, schedule=schedule)
    p.task(name="work")(lambda: None)
    return p


@pytest.fixture
def counting(tmp_path: Path) -> Counting:
    return Counting(SQLiteRunStore(tmp_path / "p.db"))


def test_idle_ticks_ask_the_store_nothing_and_evaluate_no_cron(
    counting: Counting, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between two minute boundaries a tick makes no store call and builds no cron iterator."""
    s = Scheduler(counting, [pipe(f"p{i}") for i in range(5)])  # type: ignore[arg-type]
    s.tick(at(0, 30))
    assert len(s.tick(at(1))) == 5
    evaluated: list[object] = []
    original = Cron.ticks
    monkeypatch.setattr(Cron, "ticks", lambda self, *a: evaluated.append(a) or original(self, *a))
    counting.calls.clear()
    for second in (1, 15, 30, 59):
        assert s.tick(at(1, second)) == []
    assert counting.calls == [] and evaluated == []


def test_the_next_boundary_is_still_due_and_next_due_points_at_it(counting: Counting) -> None:
    """After idle ticks the next minute is claimed once, and next_due names it all along."""
    s = Scheduler(counting, [pipe("every_minute"), pipe("hourly", "0 * * * *")])  # type: ignore[arg-type]
    s.tick(at(0, 30))
    for second in (31, 45, 59):
        s.tick(at(0, second))
        assert s.next_due(at(0, second)) == at(1)
    due = s.tick(at(1, 0))
    assert [(d.pipeline, d.logical_date) for d in due] == [("every_minute", at(1))]
    assert s.next_due(at(1, 0)) == at(2)
    assert s.tick(at(1, 0)) == []  # the same instant again claims nothing twice


def test_a_removed_and_added_pipeline_is_evaluated_afresh(counting: Counting) -> None:
    """A pipeline replaced by a reload with another schedule follows its new schedule at the next tick."""
    s = Scheduler(counting, [pipe("p", "0 * * * *")])  # type: ignore[arg-type]
    s.tick(at(0, 30))
    s.remove("p")
    s.add(pipe("p", "* * * * *"))
    assert [d.logical_date for d in s.tick(at(1))] == [at(1)]


def test_a_file_arrival_pipeline_asks_the_store_only_when_a_file_is_stable(counting: Counting, tmp_path: Path) -> None:
    """An empty inbox costs no store query per tick; a stable file is queued, within max_active_runs."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    p = Pipeline("ingest", schedule=FileArrival(str(inbox), "*.csv", stable_seconds=0))
    p.task(name="work")(lambda: None)
    s = Scheduler(counting, [p])  # type: ignore[arg-type]
    s.tick(at(0))
    counting.calls.clear()
    for second in (1, 2, 3):
        assert s.tick(at(0, second)) == []
    assert counting.calls == []
    (inbox / "a.csv").write_text("x")
    assert [d.params["path"] for d in s.tick(at(0, 4))] == [str(inbox / "a.csv")]
    assert "active_runs" in counting.calls
