"""The run store's queries, written once for SQLite and PostgreSQL: runs, claims, leases, task states.

Check history and alert states are in :mod:`agent.sql_history`; sessions, the
owner identity and row conversions in :mod:`agent.sql_base`. Every statement
uses ``?`` placeholders and SQL both databases accept (``ON CONFLICT``,
``RETURNING``, no ``INSERT OR``, no JSON functions); where several agents could
race, the statement itself decides (a claim is an ``UPDATE ... WHERE status=?``,
a tick a unique idempotency key) or the transaction takes :meth:`Session.lock`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agent.errors import RunClaimedError, RunLimitError, StoreError
from agent.records import RunRecord, RunStatus, TaskAttempt
from agent.sql_base import RUN_COLUMNS, SQLBase, chunks, dumps, run_record
from agent.sql_history import AlertStateSQL, CheckHistorySQL
from agent.store import _process_start, pid_alive
from checks.result import CheckResult

__all__ = ["SQLRunStore"]

_DIED = "the process running it died"


class SQLRunStore(CheckHistorySQL, AlertStateSQL, SQLBase):
    """A :class:`~agent.store.RunStore` over SQL; a backend supplies the connection (``_db``).

    >>> import tempfile; from agent.sqlite_store import SQLiteRunStore
    >>> store = SQLiteRunStore(tempfile.mkdtemp() + "/pipewarden.db")
    >>> isinstance(store, SQLRunStore)
    True
    """

    @property
    def schema_version(self) -> int:
        """The schema version the store is at (:data:`agent.store.SCHEMA_VERSION` once opened)."""
        with self._db() as db:
            return int(db.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0)

    # --- runs ---------------------------------------------------------------------------

    def create_run(
        self,
        *,
        run_id: str,
        pipeline: str,
        trigger: str,
        tasks: Sequence[str] = (),
        params: Mapping[str, Any] | None = None,
        logical_date: dt.datetime | None = None,
        version: str = "",
        target: str | None = None,
        idempotency_key: str | None = None,
        scheduled_for: float | None = None,
        status: RunStatus = RunStatus.QUEUED,
        now: float | None = None,
        triggered_by: str | None = None,
    ) -> bool:
        # The unique key decides: of two agents queueing one tick, the second inserts nothing.
        with self._db() as db:
            cur = db.execute(
                "INSERT INTO runs (run_id, pipeline, status, trigger, version, params, logical_date, target,"
                " tasks, idempotency_key, scheduled_for, created_at, triggered_by)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (idempotency_key) DO NOTHING",
                (
                    run_id,
                    pipeline,
                    str(status),
                    trigger,
                    version,
                    dumps(params or {}),
                    logical_date.isoformat() if logical_date else None,
                    target,
                    json.dumps(list(tasks)),
                    idempotency_key,
                    scheduled_for,
                    time.time() if now is None else now,
                    triggered_by,
                ),
            )
            return bool(cur.rowcount == 1)

    def start_run(
        self,
        run_id: str,
        *,
        now: float,
        lease_until: float | None = None,
        version: str | None = None,
        tasks: Sequence[str] | None = None,
        max_active: int | None = None,
        from_status: RunStatus | None = None,
    ) -> None:
        sql = (
            "UPDATE runs SET status='running', started_at=coalesce(started_at, ?), ended_at=NULL, error=NULL,"
            " owner_pid=?, owner_host=?, owner_start=?, lease_until=?, version=coalesce(?, version),"
            " tasks=coalesce(?, tasks) WHERE run_id=?"
        )
        args: tuple[Any, ...] = (
            now,
            self._pid,
            self._host,
            self._start,
            lease_until,
            version,
            json.dumps(list(tasks)) if tasks is not None else None,
            run_id,
        )
        if from_status is not None:
            sql += " AND status=?"
            args += (str(from_status),)
        with self._db() as db:
            if max_active is None:
                if db.execute(sql, args).rowcount == 1:
                    return
            else:
                with db.transaction():
                    row = db.execute("SELECT pipeline FROM runs WHERE run_id=?", (run_id,)).fetchone()
                    if row is not None:
                        # Agents starting runs of one pipeline queue here, so each count below sees every
                        # run started before it (SQLite: the transaction already holds the write lock).
                        db.lock(f"slots:{row[0]}")
                    sql += (
                        " AND (SELECT count(*) FROM runs o WHERE o.pipeline=runs.pipeline AND o.status='running'"
                        " AND o.run_id<>runs.run_id) < ?"
                    )
                    if db.execute(sql, (*args, max_active)).rowcount == 1:
                        return
            self._refused(db, run_id, max_active, from_status)

    def _refused(self, db: Any, run_id: str, max_active: int | None, from_status: RunStatus | None) -> None:
        """Raise why start_run changed nothing: no such run, claimed by another agent, or no free slot."""
        row = db.execute(
            "SELECT pipeline, status, owner_host, owner_pid FROM runs WHERE run_id=?", (run_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"run {run_id!r} is not in the run store {self.location}", path=self.location)
        pipeline, status, host, pid = row
        if from_status is not None and status != str(from_status):
            owner = f"pid {pid} on {host}" if host else None
            raise RunClaimedError(
                f"run {run_id} of pipeline {pipeline!r} is already {status}"
                + (f" ({owner})" if owner and status == "running" else "")
                + f", not {from_status}: another agent started it first; this one did nothing",
                run_id=run_id,
                status=status,
                owner=owner,
            )
        running = db.execute(
            "SELECT run_id, owner_pid, owner_host FROM runs WHERE pipeline=? AND status='running' AND run_id<>?"
            " ORDER BY started_at",
            (pipeline, run_id),
        ).fetchall()
        who = ", ".join(f"{r[0]} (pid {r[1]} on {r[2]})" for r in running[:3]) + (" ..." if len(running) > 3 else "")
        raise RunLimitError(
            f"pipeline {pipeline!r} already has {len(running)} run(s) running, its limit "
            f"(max_active_runs={max_active}): {who}; this run was not started. Queue it "
            "(pipewarden run --wait, or wait= in Runner.run), or raise Pipeline(max_active_runs=...)",
            pipeline=pipeline,
            limit=max_active or 0,
            running=[r[0] for r in running],
        )

    def discard_run(self, run_id: str) -> None:
        with self._db() as db:
            db.execute(
                "DELETE FROM runs WHERE run_id=? AND status='queued' AND NOT EXISTS"
                " (SELECT 1 FROM task_runs t WHERE t.run_id=runs.run_id)",
                (run_id,),
            )

    def finish_run(self, run_id: str, status: RunStatus, *, now: float, error: str | None = None) -> None:
        # Not over a run another process has taken since (its lease ran out here and it resumed the run).
        with self._db() as db:
            db.execute(
                "UPDATE runs SET status=?, ended_at=?, error=?, lease_until=NULL WHERE run_id=? AND NOT"
                " (status='running' AND (coalesce(owner_host, '')<>? OR coalesce(owner_pid, -1)<>?))",
                (str(status), now, error, run_id, self._host, self._pid),
            )

    def renew_lease(self, run_id: str, lease_until: float) -> bool:
        with self._db() as db:
            cur = db.execute(
                "UPDATE runs SET lease_until=? WHERE run_id=? AND status='running' AND owner_host=? AND owner_pid=?",
                (lease_until, run_id, self._host, self._pid),
            )
            return bool(cur.rowcount == 1)

    def get_run(self, run_id: str, *, logs: bool = False) -> RunRecord | None:
        with self._db() as db:
            row = db.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if row is None:
                return None
            checks: dict[int, list[CheckResult]] = {}
            for tr_id, result in db.execute(
                "SELECT task_run_id, result FROM check_results WHERE run_id=? ORDER BY id", (run_id,)
            ).fetchall():
                checks.setdefault(tr_id, []).append(CheckResult.from_dict(json.loads(result)))
            tasks = db.execute(
                "SELECT id, task, attempt, status, started_at, ended_at, rows_in, rows_out, error, reason,"
                f" output_ref, {'logs' if logs else 'NULL'}, item, pokes FROM task_runs WHERE run_id=? ORDER BY id",
                (run_id,),
            ).fetchall()
        attempts = tuple(
            TaskAttempt(
                run_id=run_id,
                task=r[1],
                attempt=r[2],
                status=RunStatus(r[3]),
                started_at=r[4],
                ended_at=r[5],
                rows_in=r[6],
                rows_out=r[7],
                error=r[8],
                reason=r[9],
                output_ref=r[10],
                checks=tuple(checks.get(r[0], ())),
                id=r[0],
                logs=r[11],
                item=r[12],
                pokes=r[13],
            )
            for r in tasks
        )
        return run_record(row, attempts)

    def list_runs(self, *, pipeline: str | None = None, status: str | None = None, limit: int = 50) -> list[RunRecord]:
        where, args = [], []
        if pipeline:
            where.append("pipeline=?")
            args.append(pipeline)
        if status:
            where.append("status=?")
            args.append(status)
        sql = f"SELECT {RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        # rowid: SQLite's row number; PostgreSQL's runs has a column of that name (insertion order).
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        return self._runs(sql, (*args, limit))

    def _runs(self, sql: str, args: Sequence[Any]) -> list[RunRecord]:
        with self._db() as db:
            rows = db.execute(sql, args).fetchall()
        return [run_record(r, ()) for r in rows]

    def recover_interrupted(self, *, now: float) -> list[str]:
        dead = []
        extra: tuple[Any, ...]
        with self._db() as db:
            rows = db.execute(
                "SELECT run_id, owner_pid, owner_host, owner_start, lease_until FROM runs WHERE status='running'"
            ).fetchall()
            for run_id, pid, host, start, lease in rows:
                if host == self._host and pid is not None:  # a process of this host: alive or not
                    if pid_alive(pid, start):
                        continue
                    reason, guard, extra = _DIED, "", ()
                elif lease is not None and lease < now:  # another host's: its runner stopped renewing the lease
                    reason = f"{_DIED} (on {host}, which stopped renewing the run's lease)"
                    guard, extra = " AND lease_until<?", (now,)  # unless renewed since it was read
                else:
                    continue
                with db.transaction():
                    cur = db.execute(
                        "UPDATE runs SET status='interrupted', ended_at=?, lease_until=NULL, error=?"
                        " WHERE run_id=? AND status='running'" + guard,
                        (now, reason, run_id, *extra),
                    )
                    if cur.rowcount != 1:  # another agent recovered it first, or the owner renewed
                        continue
                    db.execute(
                        "UPDATE task_runs SET status='interrupted', ended_at=?, reason=?"
                        " WHERE run_id=? AND status IN ('running', 'waiting')",
                        (now, reason, run_id),
                    )
                dead.append(run_id)
        return dead

    def record_workers(self, run_id: str, pids: Sequence[int]) -> None:
        workers = [[pid, _process_start(pid)] for pid in pids]
        with self._db() as db:
            db.execute(
                "UPDATE runs SET workers=? WHERE run_id=?",
                (json.dumps({"host": self._host, "workers": workers}), run_id),
            )

    def live_workers(self, run_id: str) -> list[int]:
        with self._db() as db:
            row = db.execute("SELECT workers FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if not row or not row[0]:
            return []
        recorded = json.loads(row[0])
        if recorded.get("host") != self._host:
            return []
        return [pid for pid, start in recorded.get("workers", ()) if pid_alive(pid, start)]

    def prune_runs(
        self,
        before: float,
        *,
        pipeline: str | None = None,
        dry_run: bool = False,
        mark: str | None = None,
        every: float = 0.0,
        now: float | None = None,
    ) -> list[str] | None:
        now = time.time() if now is None else now
        where = "status NOT IN ('queued', 'running') AND coalesce(ended_at, created_at) < ?"
        args: tuple[Any, ...] = (before,)
        if pipeline is not None:
            where += " AND pipeline=?"
            args += (pipeline,)
        with self._db() as db, db.transaction():
            if mark is not None:
                db.lock(f"meta:{mark}")  # agents sharing the store prune once between them
                row = db.execute("SELECT value FROM meta WHERE key=?", (mark,)).fetchone()
                if row is not None and now - float(row[0]) < every:
                    return None
                if not dry_run:
                    db.execute(_SET_META, (mark, repr(now)))
            if dry_run:
                return [r[0] for r in db.execute(f"SELECT run_id FROM runs WHERE {where} ORDER BY rowid", args)]
            # The runs go first, by their own condition: one resumed meanwhile is no longer finished, and stays.
            ids = [r[0] for r in db.execute(f"DELETE FROM runs WHERE {where} RETURNING run_id", args).fetchall()]
            for part in chunks(ids):
                marks = ",".join("?" * len(part))
                for table in ("check_results", "task_runs"):
                    db.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", part)
        return ids

    def active_runs(self, pipeline: str) -> int:
        with self._db() as db:
            row = db.execute(
                # "pipeline || ''" keeps the planner on the status index: it visits the few active runs, not
                # every run the pipeline ever had (the scheduler asks for each pipeline that is due).
                "SELECT count(*) FROM runs WHERE pipeline || '' = ? AND status IN ('queued', 'running')",
                (pipeline,),
            ).fetchone()
        return int(row[0])

    def last_scheduled(self, pipeline: str, triggers: Sequence[str]) -> float | None:
        marks = ",".join("?" * len(triggers))
        with self._db() as db:
            row = db.execute(
                f"SELECT max(scheduled_for) FROM runs WHERE pipeline=? AND trigger IN ({marks})",
                (pipeline, *triggers),
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def has_key(self, idempotency_key: str) -> bool:
        with self._db() as db:
            return db.execute("SELECT 1 FROM runs WHERE idempotency_key=?", (idempotency_key,)).fetchone() is not None

    def upstream_events(
        self, pipeline: str, task: str | None = None, *, since: float
    ) -> list[tuple[str, float, dt.datetime | None]]:
        with self._db() as db:
            if task is None:
                rows = db.execute(
                    "SELECT run_id, ended_at, logical_date FROM runs WHERE pipeline=? AND status='success'"
                    " AND ended_at >= ? ORDER BY ended_at, rowid",
                    (pipeline, since),
                ).fetchall()
            else:  # runs that ended since, or still run: a task ends before its run does
                rows = db.execute(
                    "SELECT r.run_id, min(t.ended_at), r.logical_date FROM task_runs t JOIN runs r"
                    " ON r.run_id=t.run_id WHERE t.task=? AND t.status='success' AND t.ended_at >= ? AND r.run_id IN"
                    " (SELECT run_id FROM runs WHERE pipeline=? AND ended_at >= ?"
                    "  UNION ALL SELECT run_id FROM runs WHERE status='running' AND pipeline=?)"
                    " GROUP BY r.run_id, r.logical_date ORDER BY 2, r.run_id",
                    (task, since, pipeline, since, pipeline),
                ).fetchall()
        return [(r[0], float(r[1]), dt.datetime.fromisoformat(r[2]) if r[2] else None) for r in rows]

    def get_meta(self, key: str) -> str | None:
        with self._db() as db:
            row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._db() as db:
            db.execute(_SET_META, (key, value))

    def queued_runs(self, pipeline: str) -> list[RunRecord]:
        return self._runs(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE pipeline=? AND status='queued' ORDER BY created_at, rowid",
            (pipeline,),
        )

    def pipeline_history(self, pipeline: str, *, limit: int | None = None) -> list[RunRecord]:
        sql = (
            f"SELECT {RUN_COLUMNS} FROM runs WHERE pipeline=? AND status NOT IN ('queued', 'running')"
            " ORDER BY coalesce(ended_at, created_at) DESC, rowid DESC"
        )
        args: tuple[Any, ...] = (pipeline,)
        if limit is not None:
            sql += " LIMIT ?"
            args += (limit,)
        return self._runs(sql, args)[::-1]

    def recent_runs(self, pipeline: str) -> list[RunRecord]:
        with self._db() as db:
            since = db.execute(
                "SELECT max(ended_at) FROM runs WHERE pipeline=? AND status='success'", (pipeline,)
            ).fetchone()[0]
            rows = db.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE pipeline=? AND ended_at IS NOT NULL AND ended_at >= ?"
                " AND status NOT IN ('queued', 'running') ORDER BY ended_at, rowid",
                (pipeline, since or 0.0),
            ).fetchall()
        return [run_record(r, ()) for r in rows]

    # --- @monitor runs --------------------------------------------------------------------

    def append_events(self, events: Sequence[Any]) -> None:
        from agent.events import RunEnded, RunStarted, TaskEnded

        with self._db() as db, db.transaction():
            for e in events:
                if isinstance(e, TaskEnded):
                    (task_run_id,) = db.execute(
                        "INSERT INTO task_runs (run_id, task, attempt, status, started_at, ended_at, rows_in,"
                        " rows_out, error, reason) VALUES (?,?,?,?,?,?,?,?,?,?) RETURNING id",
                        (
                            e.run_id,
                            e.task,
                            e.attempt,
                            str(e.status),
                            e.started_at,
                            e.ended_at,
                            e.rows_in,
                            e.rows_out,
                            e.error,
                            e.reason,
                        ),
                    ).fetchone()
                    if e.checks:
                        db.executemany(_CHECK_ROW, _check_rows(task_run_id, e.run_id, e.task, e.checks))
                elif isinstance(e, RunStarted):
                    db.execute(
                        "INSERT INTO runs (run_id, pipeline, status, trigger, version, params, tasks,"
                        " created_at, started_at, owner_pid, owner_host, owner_start)"
                        " VALUES (?,?,'running',?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                        (
                            e.run_id,
                            e.pipeline,
                            e.trigger,
                            e.version,
                            dumps(e.params),
                            json.dumps(list(e.tasks)),
                            e.started_at,
                            e.started_at,
                            self._pid,
                            self._host,
                            self._start,
                        ),
                    )
                elif isinstance(e, RunEnded):
                    # The tasks in the order they first ran.
                    tasks = db.execute(
                        "SELECT task FROM task_runs WHERE run_id=? GROUP BY task ORDER BY min(started_at), min(id)",
                        (e.run_id,),
                    ).fetchall()
                    db.execute(
                        "UPDATE runs SET status=?, ended_at=?, error=?, tasks=? WHERE run_id=?",
                        (str(e.status), e.ended_at, e.error, json.dumps([t for (t,) in tasks]), e.run_id),
                    )

    # --- cumulative metric samples ---------------------------------------------------------

    def merge_metric_samples(
        self,
        pipeline: str,
        added: Mapping[tuple[str, str], float],
        values: Mapping[tuple[str, str], float],
        *,
        now: float,
        replaced: Iterable[str] = (),
    ) -> list[tuple[str, str, float]]:
        with self._db() as db, db.transaction():
            db.lock(f"metrics:{pipeline}")  # two agents' totals of one pipeline add up, in one order
            db.executemany(
                "DELETE FROM metric_samples WHERE pipeline=? AND name=?", [(pipeline, name) for name in replaced]
            )
            db.executemany(
                "INSERT INTO metric_samples VALUES (?,?,?,'counter',?,?) ON CONFLICT (pipeline, name, labels)"
                " DO UPDATE SET value=metric_samples.value+excluded.value, updated_at=excluded.updated_at",
                [(pipeline, name, labels, v, now) for (name, labels), v in added.items()],
            )
            db.executemany(
                "INSERT INTO metric_samples VALUES (?,?,?,'gauge',?,?) ON CONFLICT (pipeline, name, labels)"
                " DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at",
                [(pipeline, name, labels, v, now) for (name, labels), v in values.items()],
            )
            rows = db.execute(
                "SELECT name, labels, value FROM metric_samples WHERE pipeline=? ORDER BY name, labels", (pipeline,)
            ).fetchall()
        return [(n, lab, float(v)) for n, lab, v in rows]

    # --- task states --------------------------------------------------------------------

    def start_task(
        self,
        run_id: str,
        task: str,
        attempt: int,
        *,
        now: float,
        item: int | None = None,
        status: RunStatus = RunStatus.RUNNING,
    ) -> int:
        with self._db() as db:
            row = db.execute(
                "INSERT INTO task_runs (run_id, task, attempt, status, started_at, item) VALUES (?,?,?,?,?,?)"
                " RETURNING id",
                (run_id, task, attempt, str(status), now, item),
            ).fetchone()
        return int(row[0])

    def poked(self, task_run_id: int, pokes: int) -> None:
        with self._db() as db:
            db.execute("UPDATE task_runs SET pokes=? WHERE id=?", (pokes, task_run_id))

    # --- outputs cached across runs -------------------------------------------------------

    def cache_get(self, pipeline: str, task: str, key: str, *, now: float) -> tuple[str, str, float] | None:
        with self._db() as db:
            row = db.execute(
                "SELECT output_ref, run_id, created_at FROM task_cache WHERE pipeline=? AND task=? AND key=?"
                " AND (expires_at IS NULL OR expires_at > ?)",
                (pipeline, task, key, now),
            ).fetchone()
        return (str(row[0]), str(row[1]), float(row[2])) if row else None

    def cache_put(
        self,
        pipeline: str,
        task: str,
        key: str,
        output_ref: str,
        *,
        run_id: str,
        now: float,
        expires_at: float | None,
    ) -> list[str]:
        with self._db() as db, db.transaction():
            db.lock(f"cache:{pipeline}:{task}")  # agents sharing the store replace an entry one at a time
            gone = [
                r[0]
                for r in db.execute(
                    "DELETE FROM task_cache WHERE pipeline=? AND task=? AND (key=? OR expires_at <= ?)"
                    " RETURNING output_ref",
                    (pipeline, task, key, now),
                ).fetchall()
            ]
            db.execute(
                "INSERT INTO task_cache (pipeline, task, key, output_ref, run_id, created_at, expires_at)"
                " VALUES (?,?,?,?,?,?,?)",
                (pipeline, task, key, output_ref, run_id, now, expires_at),
            )
            still = {
                r[0]
                for r in db.execute(
                    "SELECT output_ref FROM task_cache WHERE pipeline=? AND task=?", (pipeline, task)
                ).fetchall()
            }
        return [ref for ref in dict.fromkeys(gone) if ref not in still]

    def prune_cache(self, *, now: float) -> list[str]:
        with self._db() as db, db.transaction():
            gone = [
                r[0]
                for r in db.execute(
                    "DELETE FROM task_cache WHERE expires_at <= ? RETURNING output_ref", (now,)
                ).fetchall()
            ]
            still = {r[0] for r in db.execute("SELECT DISTINCT output_ref FROM task_cache").fetchall()}
        return [ref for ref in dict.fromkeys(gone) if ref not in still]

    def finish_task(
        self,
        task_run_id: int,
        status: RunStatus,
        *,
        now: float,
        rows_in: int | None = None,
        rows_out: int | None = None,
        error: str | None = None,
        reason: str | None = None,
        output_ref: str | None = None,
        checks: Sequence[CheckResult] = (),
        logs: str | None = None,
    ) -> None:
        args = (str(status), now, rows_in, rows_out, error, reason, output_ref, logs or None, task_run_id)
        with self._db() as db:
            if not checks:
                db.execute(_FINISH, args)
                return
            with db.transaction():
                # RETURNING names the row's run and task: no second query.
                [(run_id, task)] = db.execute(_FINISH_RETURNING, args).fetchall()
                db.executemany(_CHECK_ROW, _check_rows(task_run_id, run_id, task, checks))

    def cancel_running_tasks(
        self, run_id: str, *, now: float, reason: str, status: RunStatus = RunStatus.CANCELLED
    ) -> list[str]:
        with self._db() as db:
            rows = db.execute(
                "UPDATE task_runs SET status=?, ended_at=?, reason=? WHERE run_id=?"
                " AND status IN ('running', 'waiting') RETURNING task, item",
                (str(status), now, reason, run_id),
            ).fetchall()
        return list(dict.fromkeys(r[0] for r in rows if r[1] is None))

    def record_task_state(
        self, run_id: str, task: str, status: RunStatus, *, now: float, reason: str | None = None
    ) -> None:
        with self._db() as db:
            db.execute(_UNRUN, (run_id, task, str(status), now, now, reason))

    def record_task_states(
        self, run_id: str, states: Iterable[tuple[str, RunStatus, str | None]], *, now: float
    ) -> None:
        rows = [(run_id, t, str(s), now, now, r) for t, s, r in states]
        if rows:
            with self._db() as db, db.transaction():
                db.executemany(_UNRUN, rows)


_UNRUN = "INSERT INTO task_runs (run_id, task, attempt, status, started_at, ended_at, reason) VALUES (?,?,0,?,?,?,?)"
_FINISH = (
    "UPDATE task_runs SET status=?, ended_at=?, rows_in=?, rows_out=?, error=?, reason=?, output_ref=?, logs=?"
    " WHERE id=?"
)
_FINISH_RETURNING = _FINISH + " RETURNING run_id, task"
_CHECK_ROW = "INSERT INTO check_results (task_run_id, run_id, task, check_name, status, result) VALUES (?,?,?,?,?,?)"
_SET_META = "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value"


def _check_rows(task_run_id: int, run_id: str, task: str, checks: Iterable[CheckResult]) -> list[tuple[Any, ...]]:
    return [(task_run_id, run_id, task, c.check, str(c.status), dumps(c.to_dict())) for c in checks]
