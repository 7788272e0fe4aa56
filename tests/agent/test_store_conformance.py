"""What every run store does, run against each backend: SQLite (a file) and PostgreSQL (a real server).

``agents`` opens the same store as several agents would, each under a host name
of its own (agents on several hosts). PostgreSQL's store runs in a schema of its
own in the session's throwaway cluster. The check-history and alert-state halves
of the store have their own conformance suites (tests/checks/, tests/alerts/).
"""

from __future__ import annotations

import datetime as dt
import doctest
import importlib
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.errors import RunClaimedError, RunLimitError, StoreError
from agent.events import RunEnded, RunStarted, TaskEnded
from agent.pipeline import Pipeline
from agent.records import RunStatus
from agent.scheduler import Scheduler
from agent.sql_store import SQLRunStore
from agent.store import SCHEMA_VERSION, RunStore
from checks.result import CheckResult, Kind, Status

Agents = Callable[..., SQLRunStore]
UTC = dt.UTC


@pytest.fixture(params=["sqlite", "postgresql"])
def agents(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Agents]:
    """Factory: ``agents(host="alpha")`` opens the one store of this test as an agent on host ``alpha``."""
    opened: list[SQLRunStore] = []
    if request.param == "postgresql":
        from agent.pg_store import PostgresRunStore

        url = request.getfixturevalue("pg_url")

        def make(host: str | None = None) -> SQLRunStore:
            opened.append(PostgresRunStore(url, host=host))
            return opened[-1]
    else:
        from agent.sqlite_store import SQLiteRunStore

        def make(host: str | None = None) -> SQLRunStore:
            opened.append(SQLiteRunStore(tmp_path / "pipewarden.db", host=host))
            return opened[-1]

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(agents: Agents) -> SQLRunStore:
    return agents()


def _started(store: RunStore, run_id: str, pipeline: str = "p", *, now: float = 1.0, **kw: Any) -> None:
    store.create_run(run_id=run_id, pipeline=pipeline, trigger="manual", tasks=["a", "b"], now=now)
    store.start_run(run_id, now=now, **kw)


def _finished(store: RunStore, run_id: str, status: RunStatus, end: float, version: str = "v1") -> None:
    store.create_run(run_id=run_id, pipeline="p", trigger="manual", version=version, now=end - 1)
    store.start_run(run_id, now=end - 1)
    store.finish_run(run_id, status, now=end)


# --- schema ------------------------------------------------------------------------------------


def test_a_new_store_is_at_the_latest_schema_and_reopening_migrates_nothing(agents: Agents) -> None:
    """A new store is at the latest schema version; a second agent opening it finds it there."""
    first = agents()
    assert first.schema_version == SCHEMA_VERSION
    assert agents(host="other").schema_version == SCHEMA_VERSION


def test_both_backends_have_the_same_tables_and_columns(tmp_path: Path, pg_url: str) -> None:
    """The PostgreSQL schema, made from the same migrations, has SQLite's tables and columns (and runs.rowid)."""
    from agent.pg_store import PostgresRunStore
    from agent.sqlite_store import SQLiteRunStore

    with SQLiteRunStore(tmp_path / "pw.db") as lite:
        tables = [r[0] for r in lite.conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        sqlite = {t: [r[1] for r in lite.conn.execute(f"PRAGMA table_info({t})")] for t in tables}
    with PostgresRunStore(pg_url) as pg, pg._db() as db:
        rows = db.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " ORDER BY table_name, ordinal_position"
        ).fetchall()
    postgres: dict[str, list[str]] = {}
    for table, column in rows:
        postgres.setdefault(table, []).append(column)
    postgres["runs"].remove("rowid")  # what SQLite's rowid is, a column in PostgreSQL
    assert sqlite == postgres


# --- runs -----------------------------------------------------------------------------------------


def test_an_idempotency_key_makes_one_run(store: SQLRunStore) -> None:
    """A second run under a key already used is not recorded; create_run says so."""
    assert store.create_run(run_id="a", pipeline="p", trigger="cron", idempotency_key="p@t", now=0.0)
    assert not store.create_run(run_id="b", pipeline="p", trigger="cron", idempotency_key="p@t", now=0.0)
    assert store.get_run("b") is None and store.has_key("p@t") and not store.has_key("p@u")


def test_a_run_id_used_twice_is_a_store_error(store: SQLRunStore) -> None:
    """Recording a second run under an existing id raises StoreError naming the store."""
    store.create_run(run_id="a", pipeline="p", trigger="manual", now=0.0)
    with pytest.raises(StoreError) as err:
        store.create_run(run_id="a", pipeline="p", trigger="manual", now=0.0)
    assert store.location in str(err.value) and "\n" not in str(err.value)


def test_runs_round_trip_and_list_newest_first(store: SQLRunStore) -> None:
    """Every field of a run reads back; list_runs is newest first (ties in recording order) and filters."""
    when = dt.datetime(2025, 3, 1, 6, tzinfo=UTC)
    store.create_run(
        run_id="r1",
        pipeline="p",
        trigger="cron",
        tasks=["a", "b"],
        params={"n": 3, "day": dt.date(2025, 3, 1)},
        logical_date=when,
        version="v7",
        target="flows.py:p",
        idempotency_key="p@1",
        scheduled_for=when.timestamp(),
        now=10.0,
    )
    for run_id in ("r2", "r3"):
        store.create_run(run_id=run_id, pipeline="q", trigger="manual", now=20.0)
    rec = store.get_run("r1")
    assert rec is not None
    assert (rec.pipeline, rec.trigger, rec.tasks, dict(rec.params), rec.logical_date, rec.version, rec.target) == (
        "p",
        "cron",
        ("a", "b"),
        {"n": 3, "day": "2025-03-01"},
        when,
        "v7",
        "flows.py:p",
    )
    assert (rec.status, rec.created_at, rec.idempotency_key) == (RunStatus.QUEUED, 10.0, "p@1")
    assert [r.run_id for r in store.list_runs()] == ["r3", "r2", "r1"]
    assert [r.run_id for r in store.list_runs(pipeline="q", limit=1)] == ["r3"]
    assert [r.run_id for r in store.list_runs(status="queued", pipeline="p")] == ["r1"]
    assert [r.run_id for r in store.queued_runs("q")] == ["r2", "r3"]
    assert store.active_runs("q") == 2 and store.active_runs("nothing") == 0
    assert store.last_scheduled("p", ["cron"]) == when.timestamp() and store.last_scheduled("p", ["file"]) is None


def test_task_attempts_and_check_results_read_back_in_order(store: SQLRunStore) -> None:
    """Attempts, their rows, errors and check results, and tasks that never ran, come back with the run."""
    _started(store, "r")
    check = CheckResult("min_rows", Kind.VOLUME, Status.FAIL, observed=2.0, threshold=10.0, column="id")
    first = store.start_task("r", "a", 1, now=2.0)
    store.finish_task(first, RunStatus.FAILED, now=3.0, rows_in=5, rows_out=2, error="boom", checks=[check])
    second = store.start_task("r", "a", 2, now=4.0)
    store.finish_task(second, RunStatus.SUCCESS, now=5.0, output_ref="a.json")
    store.record_task_states("r", [("b", RunStatus.SKIPPED, "a: held back")], now=6.0)
    store.record_task_state("r", "c", RunStatus.CANCELLED, now=7.0, reason="cancelled")
    rec = store.get_run("r")
    assert rec is not None
    assert [(a.task, a.attempt, a.status) for a in rec.attempts] == [
        ("a", 1, RunStatus.FAILED),
        ("a", 2, RunStatus.SUCCESS),
        ("b", 0, RunStatus.SKIPPED),
        ("c", 0, RunStatus.CANCELLED),
    ]
    failed = rec.attempts[0]
    assert (failed.rows_in, failed.rows_out, failed.error, failed.checks) == (5, 2, "boom", (check,))
    assert rec.attempts[1].output_ref == "a.json" and rec.attempts[2].reason == "a: held back"
    assert rec.task_state("a") is RunStatus.SUCCESS


def test_task_logs_are_kept_and_read_only_when_asked(store: SQLRunStore) -> None:
    """An attempt's logs come back with get_run(logs=True) only; an attempt that wrote nothing has none."""
    _started(store, "r")
    store.finish_task(store.start_task("r", "a", 1, now=2.0), RunStatus.SUCCESS, now=3.0, logs="loaded 5 rows\n")
    store.finish_task(store.start_task("r", "b", 1, now=3.0), RunStatus.SUCCESS, now=4.0, logs="")
    plain, full = store.get_run("r"), store.get_run("r", logs=True)
    assert plain is not None and full is not None
    assert [a.logs for a in plain.attempts] == [None, None]
    assert [a.logs for a in full.attempts] == ["loaded 5 rows\n", None]


def test_upstream_events_name_successful_runs_and_tasks_since_a_time(store: SQLRunStore) -> None:
    """Runs of a pipeline that succeeded since a time, oldest first, and runs in which a task succeeded,
    running ones included; the run a run was triggered by reads back."""
    day = dt.datetime(2026, 3, 2, tzinfo=UTC)
    for run_id, status, end in (("u1", RunStatus.SUCCESS, 10.0), ("u2", RunStatus.FAILED, 20.0)):
        store.create_run(run_id=run_id, pipeline="up", trigger="cron", tasks=["t"], logical_date=day, now=end - 5)
        store.start_run(run_id, now=end - 5)
        store.finish_task(store.start_task(run_id, "t", 1, now=end - 4), RunStatus.SUCCESS, now=end - 3)
        store.finish_run(run_id, status, now=end)
    store.create_run(run_id="u3", pipeline="up", trigger="cron", tasks=["t"], now=25.0)
    store.start_run("u3", now=25.0)
    store.finish_task(store.start_task("u3", "t", 1, now=26.0), RunStatus.SUCCESS, now=27.0)
    assert store.upstream_events("up", since=0.0) == [("u1", 10.0, day)]
    assert store.upstream_events("up", since=11.0) == []
    assert store.upstream_events("up", "t", since=0.0) == [("u1", 7.0, day), ("u2", 17.0, day), ("u3", 27.0, None)]
    store.create_run(
        run_id="down", pipeline="down", trigger="after", idempotency_key="down@after:u1", triggered_by="u1", now=30.0
    )
    down = store.get_run("down")
    assert down is not None and down.triggered_by == "u1"


def test_meta_keeps_the_last_value_of_a_key(agents: Agents) -> None:
    """A store-wide fact set by one agent is read by another; setting it again replaces it."""
    one, two = agents(host="alpha"), agents(host="beta")
    assert one.get_meta("after:report") is None
    one.set_meta("after:report", "1")
    two.set_meta("after:report", "2")
    assert one.get_meta("after:report") == "2"


def test_cancelling_running_tasks_names_them(store: SQLRunStore) -> None:
    """cancel_running_tasks records the running attempts as given and returns their tasks; finished ones stay."""
    _started(store, "r")
    store.start_task("r", "a", 1, now=2.0)
    done = store.start_task("r", "b", 1, now=2.0)
    store.finish_task(done, RunStatus.SUCCESS, now=3.0)
    assert store.cancel_running_tasks("r", now=4.0, reason="stopped", status=RunStatus.INTERRUPTED) == ["a"]
    rec = store.get_run("r")
    assert rec is not None and rec.task_state("a") is RunStatus.INTERRUPTED and rec.task_state("b") is RunStatus.SUCCESS


def test_items_of_a_mapped_task_and_a_sensors_pokes_read_back(store: SQLRunStore) -> None:
    """Item rows carry their index and a waiting sensor its pokes; cancelling names the tasks, never the items."""
    _started(store, "r")
    first = store.start_task("r", "each", 1, now=2.0, item=0)
    store.finish_task(first, RunStatus.SUCCESS, now=3.0)
    store.start_task("r", "each", 1, now=2.0, item=1)
    wait = store.start_task("r", "sensor", 1, now=2.0, status=RunStatus.WAITING)
    store.poked(wait, 7)
    rec = store.get_run("r")
    assert rec is not None
    assert [(a.task, a.item, a.status, a.pokes) for a in rec.attempts] == [
        ("each", 0, RunStatus.SUCCESS, None),
        ("each", 1, RunStatus.RUNNING, None),
        ("sensor", None, RunStatus.WAITING, 7),
    ]
    assert store.cancel_running_tasks("r", now=4.0, reason="stopped") == ["sensor"]
    after = store.get_run("r")
    assert after is not None and [str(a.status) for a in after.attempts] == ["success", "cancelled", "cancelled"]


def test_a_waiting_sensor_of_a_dead_agent_is_interrupted(agents: Agents) -> None:
    """Recovery marks a sensor that was waiting interrupted, as it does a running task."""
    alpha, beta = agents(host="alpha"), agents(host="beta")
    _started(alpha, "r", now=0.0, lease_until=10.0)
    alpha.start_task("r", "sensor", 1, now=1.0, status=RunStatus.WAITING)
    assert beta.recover_interrupted(now=100.0) == ["r"]
    rec = beta.get_run("r")
    assert rec is not None and rec.task_state("sensor") is RunStatus.INTERRUPTED


def test_the_cache_keeps_one_entry_per_key_until_it_expires(agents: Agents) -> None:
    """cache_put replaces the key's entry and drops the task's expired ones, naming outputs no entry keeps;
    cache_get skips expired entries; prune_cache drops every expired one. Another agent sees the same."""
    one, two = agents(host="alpha"), agents(host="beta")
    assert one.cache_get("p", "t", "k1", now=0.0) is None
    assert one.cache_put("p", "t", "k1", "out/1", run_id="r1", now=10.0, expires_at=100.0) == []
    assert one.cache_put("p", "t", "k2", "out/2", run_id="r1", now=10.0, expires_at=None) == []
    assert one.cache_put("p", "u", "k1", "out/3", run_id="r1", now=10.0, expires_at=50.0) == []
    assert two.cache_get("p", "t", "k1", now=20.0) == ("out/1", "r1", 10.0)
    assert two.cache_get("p", "t", "k1", now=100.0) is None  # expired at 100
    assert two.cache_put("p", "t", "k1", "out/4", run_id="r2", now=30.0, expires_at=200.0) == ["out/1"]
    assert one.cache_get("p", "t", "k1", now=40.0) == ("out/4", "r2", 30.0)
    # Two keys sharing one output: the file stays while an entry names it.
    one.cache_put("p", "v", "a", "same", run_id="r3", now=10.0, expires_at=60.0)
    one.cache_put("p", "v", "b", "same", run_id="r3", now=10.0, expires_at=None)
    assert sorted(two.prune_cache(now=70.0)) == ["out/3"]
    assert one.cache_get("p", "v", "b", now=70.0) == ("same", "r3", 10.0)
    assert one.cache_get("p", "t", "k2", now=1e12) == ("out/2", "r1", 10.0)


def test_history_and_recent_runs_for_kpis(store: SQLRunStore) -> None:
    """pipeline_history is the finished runs oldest first; recent_runs starts at the last success."""
    for run_id, status, end in (
        ("1", RunStatus.SUCCESS, 100),
        ("2", RunStatus.FAILED, 200),
        ("3", RunStatus.FAILED, 300),
    ):
        _finished(store, run_id, status, end)
    _started(store, "running")
    assert [r.run_id for r in store.pipeline_history("p")] == ["1", "2", "3"]
    assert [r.run_id for r in store.pipeline_history("p", limit=2)] == ["2", "3"]
    assert [r.run_id for r in store.recent_runs("p")] == ["1", "2", "3"]
    _finished(store, "4", RunStatus.SUCCESS, 400)
    assert [r.run_id for r in store.recent_runs("p")] == ["4"]


def test_monitor_events_become_a_run(store: SQLRunStore) -> None:
    """append_events records a @monitor run: the run, its attempts with checks, its tasks in the order they ran."""
    check = CheckResult("unique(id)", Kind.DUPLICATION, Status.PASS)
    store.append_events(
        [
            RunStarted("m1", "script", 1.0, tasks=("load",)),
            TaskEnded("m1", "script", "load", 1, RunStatus.SUCCESS, 1.0, 2.0, rows_out=10, checks=(check,)),
            TaskEnded("m1", "script", "clean", 1, RunStatus.FAILED, 2.0, 3.0, error="bad"),
            RunEnded("m1", "script", RunStatus.FAILED, 1.0, 3.0, error="clean failed"),
        ]
    )
    store.append_events([RunStarted("m1", "script", 9.0)])  # seen again: not a second run
    rec = store.get_run("m1")
    assert rec is not None
    assert (rec.status, rec.tasks, rec.error, rec.started_at) == (
        RunStatus.FAILED,
        ("load", "clean"),
        "clean failed",
        1,
    )
    assert rec.attempts[0].checks == (check,) and rec.attempts[0].rows_out == 10


def test_metric_samples_add_counters_and_set_gauges(agents: Agents) -> None:
    """Counters add up across agents, gauges take the latest value, replaced names start over."""
    one, two = agents(host="alpha"), agents(host="beta")
    one.merge_metric_samples("p", {("runs_total", '{"s":"ok"}'): 2.0}, {("last", "{}"): 5.0}, now=1.0)
    got = two.merge_metric_samples("p", {("runs_total", '{"s":"ok"}'): 3.0}, {("last", "{}"): 7.0}, now=2.0)
    assert got == [("last", "{}", 7.0), ("runs_total", '{"s":"ok"}', 5.0)]
    got = one.merge_metric_samples("p", {}, {("info", '{"v":"2"}'): 1.0}, now=3.0, replaced=["runs_total"])
    assert got == [("info", '{"v":"2"}', 1.0), ("last", "{}", 7.0)]
    assert two.merge_metric_samples("other", {}, {}, now=4.0) == []


def test_prune_deletes_finished_runs_with_their_tasks_once_per_mark(store: SQLRunStore) -> None:
    """prune_runs deletes finished runs older than the cut with their states; with a mark, once per `every`."""
    _finished(store, "old", RunStatus.FAILED, 100)
    store.finish_task(store.start_task("old", "a", 1, now=99.0), RunStatus.FAILED, now=100.0, checks=[_check()])
    _finished(store, "new", RunStatus.SUCCESS, 1000)
    _started(store, "live", now=50.0)
    assert store.prune_runs(500.0, dry_run=True) == ["old"] and store.get_run("old") is not None
    assert store.prune_runs(500.0, mark="retention", every=3600.0, now=2000.0) == ["old"]
    assert store.get_run("old") is None and store.get_run("live") is not None and store.get_run("new") is not None
    _finished(store, "old2", RunStatus.FAILED, 100)
    assert store.prune_runs(500.0, mark="retention", every=3600.0, now=2100.0) is None  # not due yet
    assert store.prune_runs(500.0, mark="retention", every=3600.0, now=6000.0) == ["old2"]


def _check() -> CheckResult:
    return CheckResult("c", Kind.CUSTOM, Status.FAIL)


def test_discard_removes_only_a_queued_run_that_never_started(store: SQLRunStore) -> None:
    """discard_run deletes a queued run, and leaves one that started alone."""
    store.create_run(run_id="q", pipeline="p", trigger="manual", now=0.0)
    _started(store, "s")
    store.discard_run("q")
    store.discard_run("s")
    assert store.get_run("q") is None and store.get_run("s") is not None


# --- claims, slots and leases across agents --------------------------------------------------------------


def test_of_two_agents_claiming_one_queued_run_one_starts_it(agents: Agents) -> None:
    """start_run(from_status=queued) by a second agent raises RunClaimedError naming the owner; nothing changes."""
    one, two = agents(host="alpha"), agents(host="beta")
    one.create_run(run_id="r", pipeline="p", trigger="cron", now=0.0)
    one.start_run("r", now=1.0, lease_until=61.0, from_status=RunStatus.QUEUED)
    with pytest.raises(RunClaimedError, match=r"already running \(pid \d+ on alpha\)") as err:
        two.start_run("r", now=1.5, lease_until=61.5, from_status=RunStatus.QUEUED)
    assert (err.value.run_id, err.value.status) == ("r", "running")
    rec = two.get_run("r")
    assert rec is not None and (rec.owner_host, rec.started_at) == ("alpha", 1.0)


def test_claims_from_many_threads_and_agents_start_a_run_once(agents: Agents) -> None:
    """Eight agents racing to start each of 20 queued runs: every run is started by exactly one of them."""
    stores = [agents(host=f"host{i}") for i in range(8)]
    for i in range(20):
        stores[0].create_run(run_id=f"r{i}", pipeline=f"p{i}", trigger="cron", now=0.0)
    wins: list[tuple[str, str]] = []
    barrier = threading.Barrier(len(stores))

    def race(s: SQLRunStore) -> None:
        barrier.wait()
        for i in range(20):
            try:
                s.start_run(f"r{i}", now=1.0, lease_until=100.0, from_status=RunStatus.QUEUED)
                wins.append((f"r{i}", s.host))
            except RunClaimedError:
                pass

    threads = [threading.Thread(target=race, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r for r, _ in wins) == sorted(f"r{i}" for i in range(20))
    for run_id, host in wins:
        rec = stores[0].get_run(run_id)
        assert rec is not None and rec.owner_host == host


def test_max_active_runs_holds_across_agents(agents: Agents) -> None:
    """Agents starting 12 runs of one pipeline at once with max_active=2: exactly two start, the rest are refused."""
    stores = [agents(host=f"host{i}") for i in range(6)]
    for i in range(12):
        stores[0].create_run(run_id=f"r{i}", pipeline="limited", trigger="manual", now=0.0)
    started: list[str] = []
    refused: list[RunLimitError] = []
    barrier = threading.Barrier(len(stores))

    def go(s: SQLRunStore, ids: list[str]) -> None:
        barrier.wait()
        for run_id in ids:
            try:
                s.start_run(run_id, now=1.0, lease_until=100.0, max_active=2, from_status=RunStatus.QUEUED)
                started.append(run_id)
            except RunLimitError as exc:
                refused.append(exc)

    threads = [threading.Thread(target=go, args=(s, [f"r{2 * i}", f"r{2 * i + 1}"])) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(started) == 2 and len(refused) == 10
    assert stores[0].active_runs("limited") == 12  # 2 running, 10 still queued
    assert all(e.limit == 2 and len(e.running) == 2 for e in refused)


def test_a_run_of_another_host_is_interrupted_once_its_lease_runs_out(agents: Agents) -> None:
    """Another agent recovers a run whose owner host stopped renewing its lease, once; a renewed one stays."""
    alpha, beta = agents(host="alpha"), agents(host="beta")
    _started(alpha, "stale", now=0.0, lease_until=60.0)
    _started(alpha, "fresh", now=0.0, lease_until=60.0)
    alpha.start_task("stale", "a", 1, now=1.0)
    assert beta.recover_interrupted(now=59.0) == []  # the lease still holds
    assert alpha.renew_lease("fresh", 200.0)
    assert beta.recover_interrupted(now=61.0) == ["stale"]
    rec = beta.get_run("stale")
    assert rec is not None and rec.status is RunStatus.INTERRUPTED and rec.task_state("a") is RunStatus.INTERRUPTED
    assert "alpha" in (rec.error or "")
    assert alpha.recover_interrupted(now=62.0) == [] and beta.recover_interrupted(now=62.0) == []
    fresh = beta.get_run("fresh")
    assert fresh is not None and fresh.status is RunStatus.RUNNING


def test_an_owner_that_lost_its_lease_learns_it_and_cannot_overwrite_the_new_owner(agents: Agents) -> None:
    """After another agent recovered and resumed a run, the old owner's renewal is refused and its end not recorded."""
    alpha, beta = agents(host="alpha"), agents(host="beta")
    _started(alpha, "r", now=0.0, lease_until=10.0)
    assert not beta.renew_lease("r", 100.0)  # only the owner renews
    assert beta.recover_interrupted(now=11.0) == ["r"]
    assert not alpha.renew_lease("r", 40.0)
    beta.start_run("r", now=12.0, lease_until=72.0, from_status=RunStatus.INTERRUPTED)  # the resume
    alpha.finish_run("r", RunStatus.SUCCESS, now=13.0)
    rec = beta.get_run("r")
    assert rec is not None and (rec.status, rec.owner_host) == (RunStatus.RUNNING, "beta")
    beta.finish_run("r", RunStatus.SUCCESS, now=14.0)
    done = alpha.get_run("r")
    assert done is not None and (done.status, done.ended_at) == (RunStatus.SUCCESS, 14.0)


def test_a_run_of_this_host_whose_process_died_is_interrupted_whatever_its_lease(agents: Agents) -> None:
    """On the owner's own host the process decides: a dead pid's run is interrupted though its lease holds."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store = agents(host="alpha")
    _started(store, "r", now=0.0, lease_until=1e12)
    with store._db() as db:
        db.execute("UPDATE runs SET owner_pid=? WHERE run_id='r'", (dead.pid,))
    _started(store, "mine", now=0.0, lease_until=1.0)  # this process is alive: an old lease does not matter here
    assert agents(host="alpha").recover_interrupted(now=100.0) == ["r"]


def test_workers_of_another_host_are_not_looked_for_here(agents: Agents) -> None:
    """live_workers checks recorded worker pids on their own host only."""
    import os

    alpha, beta = agents(host="alpha"), agents(host="beta")
    _started(alpha, "r")
    alpha.record_workers("r", [os.getpid()])
    assert alpha.live_workers("r") == [os.getpid()]
    assert beta.live_workers("r") == []


# --- scheduling from several agents ---------------------------------------------------------------------


def test_two_schedulers_ticking_together_queue_each_tick_once(agents: Agents) -> None:
    """Two schedulers (two agents) ticking the same minutes concurrently queue every tick exactly once."""
    ticks = [dt.datetime(2025, 1, 1, 9, 0, tzinfo=UTC) + dt.timedelta(minutes=m) for m in range(0, 31)]
    results: dict[str, list[str]] = {}
    barrier = threading.Barrier(2)

    def daemon(host: str) -> None:
        pipe = Pipeline("minutely", schedule="* * * * *", catchup=None, max_active_runs=1000)
        pipe.task(name="work")(lambda: None)
        scheduler = Scheduler(agents(host=host), [pipe])
        scheduler.tick(ticks[0] - dt.timedelta(seconds=30))  # first sight: no catch-up
        barrier.wait()
        got = results.setdefault(host, [])
        for now in ticks:
            got.extend(d.key or "" for d in scheduler.tick(now + dt.timedelta(seconds=1)))

    threads = [threading.Thread(target=daemon, args=(h,)) for h in ("alpha", "beta")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    keys = results["alpha"] + results["beta"]
    assert sorted(keys) == sorted(f"minutely@{t.isoformat()}" for t in ticks)
    store = agents()
    assert store.active_runs("minutely") == len(ticks)


@pytest.mark.parametrize(
    "name",
    ["agent.store", "agent.sql_store", "agent.sql_history", "agent.sqlite_store", "agent.pg_store", "agent.retention"],
)
def test_docstring_examples_run(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every docstring example of the store modules gives the output it shows."""
    if name == "agent.pg_store":
        import servers

        servers.require_postgres()  # psycopg, for the example's connection attempt
    monkeypatch.delenv("PIPEWARDEN_STORE", raising=False)
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
