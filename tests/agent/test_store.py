"""The run store: schema versions, durability settings, clear errors, CheckStore history, KPIs."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agent import kpis
from agent.errors import StoreError
from agent.records import RunStatus
from agent.store import APPLICATION_ID, SCHEMA_VERSION, SQLiteRunStore, _process_start, open_store
from checks.base import CheckStore
from checks.result import CheckResult, Kind, Status

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


def test_new_store_is_wal_with_schema_version(tmp_path: Path) -> None:
    """A new store is in WAL mode, synchronous NORMAL, at the latest schema version."""
    s = SQLiteRunStore(tmp_path / "pw.db")
    assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert s.schema_version == SCHEMA_VERSION
    s.close()
    again = SQLiteRunStore(tmp_path / "pw.db", synchronous="FULL")  # reopening migrates nothing
    assert again.conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    assert again.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    again.close()


def test_open_store_uses_pipewarden_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default store lives at $PIPEWARDEN_HOME/pipewarden.db."""
    monkeypatch.setenv("PIPEWARDEN_HOME", str(tmp_path / "state"))
    with open_store() as s:
        assert s.path == tmp_path / "state" / "pipewarden.db"


def test_store_from_a_newer_pipewarden_is_refused(tmp_path: Path) -> None:
    """A schema version newer than the code raises StoreError saying to upgrade."""
    SQLiteRunStore(tmp_path / "pw.db").close()
    with sqlite3.connect(tmp_path / "pw.db") as c:
        c.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match=r"newer than this pipewarden supports.*upgrade"):
        SQLiteRunStore(tmp_path / "pw.db")


def test_locked_store_gives_a_clear_store_error(tmp_path: Path) -> None:
    """Another connection holding an exclusive lock makes writes fail with StoreError naming path and fix."""
    path = tmp_path / "pw.db"
    SQLiteRunStore(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        store = SQLiteRunStore(path, timeout=0.1)
        with pytest.raises(StoreError) as err:
            store.create_run(run_id="r", pipeline="p", trigger="manual", now=0.0)
        msg = str(err.value)
        assert str(path) in msg and "locked by another process" in msg and "PIPEWARDEN_HOME" in msg
        assert err.value.path == str(path)
        store.close()
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_store_locked_before_it_exists_fails_at_open(tmp_path: Path) -> None:
    """A brand-new file locked by another process fails at open with the same clear error."""
    path = tmp_path / "pw.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    other.execute("CREATE TABLE x (a)")
    try:
        with pytest.raises(StoreError, match="locked by another process"):
            SQLiteRunStore(path, timeout=0.1)
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_unwritable_store_path_gives_a_clear_store_error(tmp_path: Path) -> None:
    """A home whose parent is a file raises StoreError naming the path and how to fix it."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(StoreError) as err:
        SQLiteRunStore(blocker / "home" / "pipewarden.db")
    msg = str(err.value)
    assert "cannot be created" in msg and "PIPEWARDEN_HOME" in msg and str(blocker) in msg


def test_store_path_that_is_a_directory_gives_a_clear_store_error(tmp_path: Path) -> None:
    """A database path that is a directory raises StoreError, not a raw sqlite3 error."""
    (tmp_path / "pipewarden.db").mkdir()
    with pytest.raises(StoreError, match=r"cannot be opened for writing.*PIPEWARDEN_HOME"):
        SQLiteRunStore(tmp_path / "pipewarden.db")


def test_state_changes_are_committed_immediately(tmp_path: Path) -> None:
    """Every write is visible to another connection at once: nothing waits in an open transaction."""
    s = SQLiteRunStore(tmp_path / "pw.db")
    s.create_run(run_id="r", pipeline="p", trigger="manual", tasks=["a"], now=1.0)
    s.start_run("r", now=2.0)
    tid = s.start_task("r", "a", 1, now=3.0)
    other = sqlite3.connect(tmp_path / "pw.db")
    assert other.execute("SELECT status FROM task_runs WHERE id=?", (tid,)).fetchone() == ("running",)
    s.finish_task(tid, RunStatus.SUCCESS, now=4.0, checks=[CheckResult("c", Kind.CUSTOM, Status.PASS)])
    assert other.execute("SELECT status FROM task_runs WHERE id=?", (tid,)).fetchone() == ("success",)
    assert other.execute("SELECT count(*) FROM check_results").fetchone() == (1,)
    assert not s.conn.in_transaction
    s.close()


def test_runs_of_dead_processes_are_marked_interrupted(store: SQLiteRunStore) -> None:
    """A RUNNING run whose owner pid is dead becomes interrupted with its running task; live ones stay."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.create_run(run_id="dead", pipeline="p", trigger="manual", tasks=["a", "b"], now=1.0)
    store.start_run("dead", now=1.0)
    store.start_task("dead", "a", 1, now=1.0)
    store.conn.execute("UPDATE runs SET owner_pid=? WHERE run_id='dead'", (dead.pid,))
    store.create_run(run_id="alive", pipeline="p", trigger="manual", now=1.0)
    store.start_run("alive", now=1.0)
    store.create_run(run_id="other-host", pipeline="p", trigger="manual", now=1.0)
    store.start_run("other-host", now=1.0, lease_until=50.0)
    store.conn.execute("UPDATE runs SET owner_host='elsewhere' WHERE run_id='other-host'")
    assert sorted(store.recover_interrupted(now=100.0)) == ["dead", "other-host"]
    rec = store.get_run("dead")
    assert rec.status is RunStatus.INTERRUPTED and rec.task_state("a") is RunStatus.INTERRUPTED
    assert store.get_run("alive").status is RunStatus.RUNNING
    assert store.recover_interrupted(now=100.0) == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process states are read from /proc")
def test_a_run_whose_owner_is_an_unreaped_zombie_is_interrupted(store: SQLiteRunStore) -> None:
    """An owner that died but was not reaped (state Z) counts as dead: its run becomes interrupted."""
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{zombie.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        store.create_run(run_id="zombie", pipeline="p", trigger="manual", now=1.0)
        store.start_run("zombie", now=1.0)
        store.conn.execute(
            "UPDATE runs SET owner_pid=?, owner_start=? WHERE run_id='zombie'", (zombie.pid, _process_start(zombie.pid))
        )
        assert store.recover_interrupted(now=2.0) == ["zombie"]
        assert store.get_run("zombie").status is RunStatus.INTERRUPTED
    finally:
        zombie.wait()


def test_another_applications_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    """A foreign SQLite file at the store path raises StoreError; its bytes, mode and journal mode stay as they were."""
    path = tmp_path / "pipewarden.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (body) VALUES ('mine')")
    conn.close()
    os.chmod(path, 0o644)
    before = (path.read_bytes(), path.stat().st_mode, sorted(p.name for p in tmp_path.iterdir()))
    with pytest.raises(StoreError, match=r"is not a pipewarden run store .*notes.*untouched"):
        SQLiteRunStore(path)
    assert (path.read_bytes(), path.stat().st_mode, sorted(p.name for p in tmp_path.iterdir())) == before
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["notes"]
    conn.close()


def test_a_new_store_carries_pipewardens_application_id(tmp_path: Path) -> None:
    """A store pipewarden creates says so in its header, so it is recognised even with no table in common."""
    SQLiteRunStore(tmp_path / "pipewarden.db").close()
    with sqlite3.connect(tmp_path / "pipewarden.db") as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()


def test_idempotency_key_allows_one_run(store: SQLiteRunStore) -> None:
    """A second run with the same idempotency key is not created."""
    assert store.create_run(run_id="a", pipeline="p", trigger="cron", idempotency_key="p@t", now=0.0)
    assert not store.create_run(run_id="b", pipeline="p", trigger="cron", idempotency_key="p@t", now=0.0)
    assert store.get_run("b") is None and store.has_key("p@t")


def test_seen_keys_over_millions_of_keys(store: SQLiteRunStore) -> None:
    """seen_keys answers for a million keys against a million stored, exactly; each run's keys are one sighting.

    The behaviour every CheckStore shares is in tests/checks/test_store_conformance.py.
    """
    assert isinstance(store, CheckStore)
    rng = np.random.default_rng(0)
    first = rng.integers(0, 2**63, 1_000_000, dtype=np.uint64)
    store.add_keys("p", "orders", first, run_id="r1", now=NOW)
    probe = np.concatenate([first[:500_000], rng.integers(0, 2**63, 500_000, dtype=np.uint64)])
    seen = store.seen_keys("p", "orders", probe)
    assert seen.dtype == bool and seen.shape == (1_000_000,)
    assert seen[:500_000].all() and not seen[500_000:].any()  # 63-bit random keys: no collision (seed 0)
    store.add_keys("p", "orders", probe, run_id="r2", now=NOW)  # a reload is a sighting: stored again
    total = store.conn.execute("SELECT sum(n) FROM key_sets WHERE dataset='orders'").fetchone()[0]
    assert total == 2_000_000
    assert store.seen_keys("p", "orders", probe).all()
    assert not store.seen_keys("p", "customers", probe[:10]).any()


def _finished(store: SQLiteRunStore, run_id: str, status: RunStatus, end: float, version: str = "v1") -> None:
    store.create_run(run_id=run_id, pipeline="p", trigger="manual", version=version, now=end - 1)
    store.start_run(run_id, now=end - 1)
    store.finish_run(run_id, status, now=end)


def test_kpis_from_history(store: SQLiteRunStore) -> None:
    """Success rate, time to recovery and change failure rate come from the runs recorded."""
    _finished(store, "1", RunStatus.SUCCESS, 100, "v1")
    _finished(store, "2", RunStatus.FAILED, 200, "v2")
    _finished(store, "3", RunStatus.FAILED, 300, "v2")
    _finished(store, "4", RunStatus.SUCCESS, 500, "v2")
    _finished(store, "5", RunStatus.CANCELLED, 550, "v3")
    _finished(store, "6", RunStatus.SUCCESS, 600, "v3")
    r = kpis.report(store.pipeline_history("p"))
    assert r.success_rate == pytest.approx(3 / 5)  # the cancelled run reached no verdict
    assert r.recovery_times == [300.0]
    assert r.mean_time_to_recovery == 300.0
    assert (r.changes, r.failed_changes) == (3, 1)  # v1, v2 (failed), v3 (its first verdict succeeded)
    assert r.change_failure_rate == pytest.approx(1 / 3)
    assert kpis.report(store.pipeline_history("nothing")).success_rate is None
    assert kpis.health_of(store.recent_runs("p")).failing_since is None


def test_recent_runs_start_at_the_last_success(store: SQLiteRunStore) -> None:
    """recent_runs gives the last success and what followed: where the current failure streak began."""
    _finished(store, "1", RunStatus.SUCCESS, 100)
    _finished(store, "2", RunStatus.SUCCESS, 150, "v0")
    _finished(store, "3", RunStatus.FAILED, 200)
    _finished(store, "4", RunStatus.INTERRUPTED, 300)
    assert [r.run_id for r in store.recent_runs("p")] == ["2", "3", "4"]
    health = kpis.health_of(store.recent_runs("p"))
    assert (health.failing_since, health.version, health.up) == (200, "v1", False)


def test_list_and_get_runs(store: SQLiteRunStore) -> None:
    """list_runs is newest first and filters; get_run carries attempts and check results."""
    for i in range(3):
        _finished(store, f"r{i}", RunStatus.SUCCESS if i != 1 else RunStatus.FAILED, 100 + i)
    assert [r.run_id for r in store.list_runs()] == ["r2", "r1", "r0"]
    assert [r.run_id for r in store.list_runs(status="failed")] == ["r1"]
    assert store.list_runs(pipeline="other") == []
    assert store.get_run("nope") is None
    check = CheckResult("min_rows", Kind.VOLUME, Status.FAIL, observed=2.0, threshold=10.0, column="id")
    tid = store.start_task("r1", "load", 1, now=100.5)
    store.finish_task(tid, RunStatus.FAILED, now=101.0, rows_in=5, rows_out=2, error="too few", checks=[check])
    [attempt] = store.get_run("r1").attempts
    assert (attempt.task, attempt.attempt, attempt.status, attempt.rows_in, attempt.rows_out, attempt.error) == (
        "load",
        1,
        RunStatus.FAILED,
        5,
        2,
        "too few",
    )
    assert attempt.duration == pytest.approx(0.5)
    assert attempt.checks == (check,)
    assert store.get_run("r1").check_results == [check]


def test_closed_store_raises_store_error(tmp_path: Path) -> None:
    """Using a closed store raises StoreError rather than a driver error."""
    s = SQLiteRunStore(tmp_path / "pw.db")
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.list_runs()


def test_store_errors_are_also_oserrors(tmp_path: Path) -> None:
    """StoreError is a PipewardenError and an OSError, with .path."""
    from agent.errors import PipewardenError

    blocker = tmp_path / "f"
    blocker.write_text("")
    with pytest.raises(OSError) as err:
        SQLiteRunStore(blocker / "x.db")
    assert isinstance(err.value, PipewardenError)
    assert getattr(err.value, "path", None) == str(blocker / "x.db")
