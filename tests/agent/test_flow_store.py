"""Schema 8 of the run store: items of mapped tasks, sensor pokes, and the outputs cached across runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.records import RunStatus
from agent.store import MIGRATIONS, SQLiteRunStore, statements


def _version_seven(path: Path) -> None:
    """A store as schema 7 left it, with one finished run and its task."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
    for version in range(1, 8):
        for stmt in statements(version, "sqlite"):
            conn.execute(stmt)
        conn.execute("INSERT INTO schema_version VALUES (?, 0)", (version,))
    conn.execute(
        "INSERT INTO runs (run_id, pipeline, status, trigger, created_at) VALUES ('r1', 'p', 'success', 'manual', 0)"
    )
    conn.execute(
        "INSERT INTO task_runs (run_id, task, attempt, status, started_at, ended_at)"
        " VALUES ('r1', 't', 1, 'success', 0, 1)"
    )
    conn.commit()
    conn.close()


def test_a_schema_seven_store_gains_items_pokes_and_the_cache(tmp_path: Path) -> None:
    """Opening a schema-7 store migrates it: old task rows read back with no item and no pokes."""
    path = tmp_path / "pipewarden.db"
    _version_seven(path)
    with SQLiteRunStore(path) as store:
        assert store.schema_version == len(MIGRATIONS) == 8
        rec = store.get_run("r1")
        assert rec is not None
        [a] = rec.attempts
        assert (a.task, a.item, a.pokes, a.status) == ("t", None, None, RunStatus.SUCCESS)
        assert store.cache_get("p", "t", "k", now=0.0) is None


def test_item_rows_and_pokes_read_back(tmp_path: Path) -> None:
    """Item rows carry their index, a waiting sensor its pokes; latest() holds the tasks, items() the items."""
    with SQLiteRunStore(tmp_path / "pipewarden.db") as store:
        store.create_run(run_id="r", pipeline="p", trigger="manual", now=0.0)
        parent = store.start_task("r", "each", 1, now=1.0)
        for i in (0, 1):
            row = store.start_task("r", "each", 1, now=1.0, item=i)
            store.finish_task(row, RunStatus.SUCCESS, now=2.0)
        sensor = store.start_task("r", "ready", 1, now=1.0, status=RunStatus.WAITING)
        store.poked(sensor, 4)
        rec = store.get_run("r")
        assert rec is not None
        assert rec.latest()["each"].id == parent and rec.latest()["ready"].status is RunStatus.WAITING
        assert rec.latest()["ready"].pokes == 4
        assert [a.label for a in rec.items("each").values()] == ["each[0]", "each[1]"]
        assert rec.execution_counts() == {"each": 1, "ready": 1}


def test_a_dead_runner_leaves_waiting_sensors_and_running_items_interrupted(tmp_path: Path) -> None:
    """Recovery marks the waiting and running rows of a run whose process is gone interrupted, items too."""
    with SQLiteRunStore(tmp_path / "pipewarden.db") as store:
        store.create_run(run_id="r", pipeline="p", trigger="manual", now=0.0)
        store.start_run("r", now=0.0)
        store.start_task("r", "ready", 1, now=1.0, status=RunStatus.WAITING)
        store.start_task("r", "each", 1, now=1.0, item=3)
        store.conn.execute("UPDATE runs SET owner_pid=2147483646")
        assert store.recover_interrupted(now=5.0) == ["r"]
        rec = store.get_run("r")
        assert rec is not None
        assert {a.label: str(a.status) for a in rec.attempts} == {"ready": "interrupted", "each[3]": "interrupted"}


def test_cache_entries_expire_and_a_new_one_returns_what_no_entry_names(tmp_path: Path) -> None:
    """cache_get ignores an expired entry; cache_put drops the task's expired entries and names their outputs."""
    with SQLiteRunStore(tmp_path / "pipewarden.db") as store:
        assert store.cache_put("p", "t", "k1", "cache/a/k1.arrow", run_id="r1", now=0.0, expires_at=10.0) == []
        assert store.cache_get("p", "t", "k1", now=5.0) == ("cache/a/k1.arrow", "r1", 0.0)
        assert store.cache_get("p", "t", "k1", now=10.0) is None
        assert store.cache_get("p", "other", "k1", now=5.0) is None
        gone = store.cache_put("p", "t", "k2", "json:[1]", run_id="r2", now=20.0, expires_at=None)
        assert gone == ["cache/a/k1.arrow"]
        assert store.cache_get("p", "t", "k2", now=1e12) == ("json:[1]", "r2", 20.0)


def test_retention_drops_expired_cache_entries_and_their_files(tmp_path: Path) -> None:
    """The daily retention pass deletes expired cached outputs (row and file), and keeps those still valid."""
    from agent.retention import apply_retention

    home = tmp_path / "home"
    with SQLiteRunStore(home / "pipewarden.db") as store:
        for name, expires in (("old", 50.0), ("new", 500.0)):
            path = home / "cache" / "abc" / f"{name}.arrow"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
            store.cache_put("p", name, name, f"cache/abc/{name}.arrow", run_id="r", now=0.0, expires_at=expires)
        assert apply_retention(store, home, now=100.0, env={}) == []
        assert not (home / "cache" / "abc" / "old.arrow").exists() and (home / "cache" / "abc" / "new.arrow").exists()
        assert store.cache_get("p", "new", "new", now=100.0) is not None
