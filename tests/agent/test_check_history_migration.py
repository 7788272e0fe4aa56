"""Schema 2: check history written by schema 1 (keyed by dataset alone) is filed under its pipeline."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd

from agent.store import MIGRATIONS, SQLiteRunStore, statements
from checks import CheckContext, Status, drift, profile

T = dt.datetime(2025, 1, 1, tzinfo=dt.UTC).timestamp()


def _version_one(path: Path) -> None:
    """A store as schema 1 left it: two pipelines with a task `transform`, one with a task `load`."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
    for stmt in statements(1, "sqlite"):
        conn.execute(stmt)
    conn.execute("INSERT INTO schema_version VALUES (1, 0)")
    for run_id, pipeline in (("a1", "a"), ("b1", "b"), ("a2", "a")):
        conn.execute(
            "INSERT INTO runs (run_id, pipeline, status, trigger, created_at) VALUES (?,?,?,?,?)",
            (run_id, pipeline, "success", "manual", T),
        )
    for run_id, dataset, check in (
        ("a1", "transform", "drift(x)"),
        ("b1", "transform", "drift(x)"),
        ("a2", "load", "drift(x)"),
    ):
        result = {"check": check, "kind": "drift", "status": "pass", "dataset": dataset}
        conn.execute(
            "INSERT INTO check_results (task_run_id, run_id, task, check_name, status, result) VALUES (0,?,?,?,?,?)",
            (run_id, dataset, check, "pass", json.dumps(result)),
        )
    ref = json.dumps(profile(pd.DataFrame({"x": np.arange(1000.0)})).to_dict())
    for name in ("transform", "load", "load:schema", "orders_ref"):
        conn.execute("INSERT INTO profiles VALUES (?,?,?)", (name, ref, T))
    hashes = np.array([1, 2, 3], dtype="<u8").tobytes()
    for dataset, run_id in (("transform", "a1"), ("load", ""), ("transform", "gone")):
        conn.execute(
            "INSERT INTO key_sets (dataset, run_id, created_at, n, hashes) VALUES (?,?,?,3,?)",
            (dataset, run_id, T, hashes),
        )
        conn.execute(
            "INSERT INTO row_counts (dataset, run_id, rows, created_at) VALUES (?,?,?,?)", (dataset, run_id, 10, T)
        )
    conn.commit()
    conn.close()


def test_history_is_filed_under_the_pipeline_that_wrote_it(tmp_path: Path) -> None:
    """Keys and row counts go to their run's pipeline, else to the one pipeline whose checks name the dataset."""
    _version_one(tmp_path / "pw.db")
    store = SQLiteRunStore(tmp_path / "pw.db")
    keys = np.array([1, 2, 3], dtype=np.uint64)
    assert store.schema_version == len(MIGRATIONS)
    assert store.seen_keys("a", "transform", keys).all()  # run a1 belongs to a
    assert not store.seen_keys("b", "transform", keys).any()
    assert store.seen_keys("a", "load", keys).all()  # no run, but only pipeline a checks `load`
    assert store.seen_keys("", "transform", keys).all()  # run `gone` is unknown and `transform` is ambiguous
    assert [n for _, n in store.row_count_history("a", "load", 5)] == [10]
    assert store.row_count_history("b", "load", 5) == []


def test_an_unambiguous_profile_becomes_the_baseline_and_an_ambiguous_one_is_not_used(tmp_path: Path) -> None:
    """`load` (only pipeline a) keeps its baseline; `transform` (a and b) is no one's, and drift says so."""
    _version_one(tmp_path / "pw.db")
    store = SQLiteRunStore(tmp_path / "pw.db")
    assert [p.run_id for p in store.profiles("a", "load", "drift(x)", limit=5)] == [""]
    assert store.load_profile("a", "load:schema") is not None and store.load_profile("", "orders_ref") is not None
    assert store.profiles("a", "transform", "drift(x)", limit=5) == []
    frame = pd.DataFrame({"x": np.arange(1000.0) + 5000})
    (moved,) = drift("x")(frame, CheckContext(store=store, pipeline="a", dataset="load", run_id="a3"))
    assert moved.status is Status.FAIL  # compared with the migrated baseline
    (fresh,) = drift("x")(frame, CheckContext(store=store, pipeline="b", dataset="transform", run_id="b2"))
    assert fresh.status is Status.WARN and "was not used" in fresh.message
