"""Counting a pipeline's active runs (the scheduler asks at every due tick) costs the active runs, not the history."""

from __future__ import annotations

from pathlib import Path

from agent.records import RunStatus
from agent.store import SQLiteRunStore


def test_active_runs_counts_queued_and_running_runs_of_that_pipeline_only(tmp_path: Path) -> None:
    """Queued and running runs of the pipeline count; finished ones and other pipelines' do not."""
    store = SQLiteRunStore(tmp_path / "p.db")
    for i, (pipeline, status) in enumerate(
        [("p", RunStatus.QUEUED), ("p", RunStatus.RUNNING), ("p", RunStatus.SUCCESS), ("q", RunStatus.QUEUED)]
    ):
        store.create_run(run_id=f"r{i}", pipeline=pipeline, trigger="cron", status=status, now=float(i))
    assert (store.active_runs("p"), store.active_runs("q"), store.active_runs("nope")) == (2, 1, 0)
    store.close()


def test_active_runs_searches_the_status_index(tmp_path: Path) -> None:
    """The query SQLite runs for active_runs is planned on the status index, not on the pipeline's runs."""
    store = SQLiteRunStore(tmp_path / "p.db")
    for i in range(200):
        store.create_run(run_id=f"r{i}", pipeline="p", trigger="cron", status=RunStatus.SUCCESS, now=float(i))
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    assert store.active_runs("p") == 0
    store.conn.set_trace_callback(None)
    [sql] = [s for s in statements if "count(*)" in s]
    plan = " ".join(str(row[-1]) for row in store.conn.execute("EXPLAIN QUERY PLAN " + sql))
    assert "runs_by_status" in plan, plan
    store.close()
