"""A store failing in the middle of a tick loses no run: what was recorded QUEUED is handed out by the next tick."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from agent.errors import StoreError
from agent.pipeline import Pipeline
from agent.records import new_run_id
from agent.scheduler import Scheduler
from agent.store import SQLiteRunStore

UTC = dt.UTC


def at(minute: int, second: int = 0) -> dt.datetime:
    return dt.datetime(2025, 1, 1, 9, minute, second, tzinfo=UTC)


class FailingOnce:
    """A run store whose ``create_run`` fails once, on its ``fail_at``-th call (a locked database, say)."""

    def __init__(self, store: SQLiteRunStore, fail_at: int) -> None:
        self.store = store
        self.calls = 0
        self.fail_at = fail_at

    def create_run(self, **kw: Any) -> bool:
        self.calls += 1
        if self.calls == self.fail_at:
            raise StoreError("run store: database is locked")
        return self.store.create_run(**kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_runs_recorded_before_a_store_error_are_handed_out_by_the_next_tick(tmp_path: Path) -> None:
    """Two runs recorded before the failure come back with the three others at the next tick, none left behind."""
    store = SQLiteRunStore(tmp_path / "p.db")
    pipes = []
    for i in range(5):
        p = Pipeline(f"p{i}", schedule="* * * * *")
        p.task(name="work")(lambda: None)
        pipes.append(p)
    s = Scheduler(FailingOnce(store, fail_at=3), pipes)  # type: ignore[arg-type]
    assert s.tick(at(0, 30)) == []
    with pytest.raises(StoreError):
        s.tick(at(1))
    due = s.tick(at(1, 1))
    assert sorted((d.pipeline, d.logical_date) for d in due) == [(f"p{i}", at(1)) for i in range(5)]
    queued = {r.run_id for i in range(5) for r in store.queued_runs(f"p{i}")}
    assert queued == {d.run_id for d in due}
    assert s.tick(at(1, 2)) == []


def test_run_ids_issued_in_one_second_never_repeat() -> None:
    """100,000 run ids for the same second are all different and all start with that second."""
    ids = [new_run_id(1_700_000_000.5) for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    assert {i.split("-")[0] for i in ids} == {"20231114T221320"}
