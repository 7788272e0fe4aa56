"""Run history: runs, task states, check results, and the history cross-run checks need.

:class:`RunStore` is the interface (a PostgreSQL backend can implement it);
:class:`SQLiteRunStore` is the default, one file at ``$PIPEWARDEN_HOME/pipewarden.db``.

Durability: every state change is one small statement committed before the
runner acts on it, in WAL mode. ``synchronous=NORMAL`` (the default) makes a
commit survive the death of the process (what resume needs) at ~20 µs;
``FULL`` also survives power loss at the price of an fsync per commit (~0.5 ms
on a typical SSD) — ``bench/orchestrator.py`` prints both.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import datetime as dt
import errno
import functools
import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from agent.errors import RunLimitError, StoreError
from agent.records import (
    FAILURES,
    AlertEvent,
    AlertHistoryEntry,
    AlertState,
    HistoryKind,
    RunRecord,
    RunStatus,
    TaskAttempt,
)
from checks.base import Acceptance, StoredProfile
from checks.result import CheckResult
from exporters.files import FILE_MODE, make_private_dirs, tighten

__all__ = ["RunStore", "SQLiteRunStore", "open_store", "pid_alive"]

P = ParamSpec("P")
R = TypeVar("R")

DB_NAME = "pipewarden.db"

# Each entry is one schema version; never edit a released entry, append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: runs, task states, checks, check-store history, schedule claims
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            pipeline TEXT NOT NULL,
            status TEXT NOT NULL,
            trigger TEXT NOT NULL,
            version TEXT NOT NULL DEFAULT '',
            params TEXT NOT NULL DEFAULT '{}',
            logical_date TEXT,
            target TEXT,
            tasks TEXT NOT NULL DEFAULT '[]',
            idempotency_key TEXT UNIQUE,
            scheduled_for REAL,
            created_at REAL NOT NULL,
            started_at REAL,
            ended_at REAL,
            owner_pid INTEGER,
            owner_host TEXT,
            owner_start TEXT,
            lease_until REAL,
            error TEXT)""",
        "CREATE INDEX runs_by_pipeline ON runs (pipeline, created_at)",
        "CREATE INDEX runs_by_status ON runs (status)",
        """CREATE TABLE task_runs (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            task TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            status TEXT NOT NULL,
            started_at REAL,
            ended_at REAL,
            rows_in INTEGER,
            rows_out INTEGER,
            error TEXT,
            reason TEXT,
            output_ref TEXT)""",
        "CREATE INDEX task_runs_by_run ON task_runs (run_id, task)",
        """CREATE TABLE check_results (
            id INTEGER PRIMARY KEY,
            task_run_id INTEGER NOT NULL REFERENCES task_runs (id),
            run_id TEXT NOT NULL,
            task TEXT NOT NULL,
            check_name TEXT NOT NULL,
            status TEXT NOT NULL,
            result TEXT NOT NULL)""",
        "CREATE INDEX check_results_by_run ON check_results (run_id)",
        "CREATE TABLE profiles (name TEXT PRIMARY KEY, profile TEXT NOT NULL, updated_at REAL NOT NULL)",
        """CREATE TABLE key_sets (
            id INTEGER PRIMARY KEY,
            dataset TEXT NOT NULL,
            run_id TEXT NOT NULL,
            created_at REAL NOT NULL,
            n INTEGER NOT NULL,
            hashes BLOB NOT NULL)""",
        "CREATE INDEX key_sets_by_dataset ON key_sets (dataset, id)",
        """CREATE TABLE row_counts (
            id INTEGER PRIMARY KEY,
            dataset TEXT NOT NULL,
            run_id TEXT NOT NULL,
            rows INTEGER NOT NULL,
            created_at REAL NOT NULL)""",
        "CREATE INDEX row_counts_by_dataset ON row_counts (dataset, id)",
    ),
    (  # 2: check history keyed by (pipeline, dataset); run profiles, baseline acceptances
        # Which pipeline a dataset belongs to, where the recorded check results say so unambiguously.
        """CREATE TEMP TABLE dataset_pipeline AS
            SELECT json_extract(c.result, '$.dataset') AS dataset, min(r.pipeline) AS pipeline
            FROM check_results c JOIN runs r ON r.run_id = c.run_id
            WHERE json_extract(c.result, '$.dataset') IS NOT NULL
            GROUP BY 1 HAVING count(DISTINCT r.pipeline) = 1""",
        "ALTER TABLE key_sets ADD COLUMN pipeline TEXT NOT NULL DEFAULT ''",
        """UPDATE key_sets SET pipeline = coalesce(
            (SELECT pipeline FROM runs WHERE runs.run_id = key_sets.run_id),
            (SELECT pipeline FROM dataset_pipeline d WHERE d.dataset = key_sets.dataset), '')""",
        "DROP INDEX key_sets_by_dataset",
        "CREATE INDEX key_sets_by_dataset ON key_sets (pipeline, dataset, id)",
        "CREATE INDEX key_sets_by_time ON key_sets (pipeline, dataset, created_at)",
        "ALTER TABLE row_counts ADD COLUMN pipeline TEXT NOT NULL DEFAULT ''",
        """UPDATE row_counts SET pipeline = coalesce(
            (SELECT pipeline FROM runs WHERE runs.run_id = row_counts.run_id),
            (SELECT pipeline FROM dataset_pipeline d WHERE d.dataset = row_counts.dataset), '')""",
        "DROP INDEX row_counts_by_dataset",
        "CREATE INDEX row_counts_by_dataset ON row_counts (pipeline, dataset, id)",
        """CREATE TABLE reference_profiles (
            pipeline TEXT NOT NULL,
            name TEXT NOT NULL,
            profile TEXT NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (pipeline, name))""",
        """CREATE TABLE check_profiles (
            id INTEGER PRIMARY KEY,
            pipeline TEXT NOT NULL,
            dataset TEXT NOT NULL,
            check_name TEXT NOT NULL,
            run_id TEXT NOT NULL,
            created_at REAL NOT NULL,
            accepted INTEGER NOT NULL,
            pinned_at REAL,
            profile TEXT NOT NULL)""",
        "CREATE INDEX check_profiles_by_check ON check_profiles (pipeline, dataset, check_name, id)",
        """CREATE TABLE baseline_acceptances (
            id INTEGER PRIMARY KEY,
            pipeline TEXT NOT NULL,
            dataset TEXT NOT NULL,
            run_id TEXT NOT NULL,
            accepted_at REAL NOT NULL,
            accepted_by TEXT NOT NULL,
            note TEXT NOT NULL,
            profiles INTEGER NOT NULL)""",
        "CREATE INDEX baseline_acceptances_by_dataset ON baseline_acceptances (pipeline, dataset, id)",
        # Old profiles were keyed by name alone: they stay named references, under the dataset's
        # pipeline when it is unambiguous ("<dataset>:schema" too), else under the empty pipeline.
        """INSERT INTO reference_profiles (pipeline, name, profile, updated_at)
            SELECT coalesce(d.pipeline, ''), p.name, p.profile, p.updated_at FROM profiles p
            LEFT JOIN dataset_pipeline d ON d.dataset = CASE WHEN p.name LIKE '%:schema'
                THEN substr(p.name, 1, length(p.name) - 7) ELSE p.name END""",
        # A profile named like a dataset was that dataset's moving drift baseline: it becomes the
        # accepted baseline of each drift check recorded on the dataset, if the pipeline is known.
        """INSERT INTO check_profiles (pipeline, dataset, check_name, run_id, created_at, accepted, pinned_at,
                                       profile)
            SELECT d.pipeline, p.name, c.check_name, '', p.updated_at, 1, NULL, p.profile FROM profiles p
            JOIN dataset_pipeline d ON d.dataset = p.name
            JOIN (SELECT DISTINCT json_extract(result, '$.dataset') AS dataset, check_name FROM check_results
                  WHERE json_extract(result, '$.kind') = 'drift') c ON c.dataset = p.name""",
        "DROP TABLE profiles",
        "DROP TABLE dataset_pipeline",
    ),
    (  # 3: cumulative metric samples per pipeline, for outputs that outlive the process (push, textfile)
        """CREATE TABLE metric_samples (
            pipeline TEXT NOT NULL,
            name TEXT NOT NULL,
            labels TEXT NOT NULL,
            kind TEXT NOT NULL,
            value REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (pipeline, name, labels))""",
        "CREATE INDEX runs_by_pipeline_end ON runs (pipeline, ended_at)",
    ),
    (  # 4: alert states (one row per alert fingerprint) and their history: transitions, notifications, actions, acks
        """CREATE TABLE alert_states (
            fingerprint TEXT PRIMARY KEY,
            alert TEXT NOT NULL,
            state TEXT NOT NULL,
            severity TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            annotations TEXT NOT NULL DEFAULT '{}',
            value REAL,
            active_at REAL,
            fired_at REAL,
            resolved_at REAL,
            last_sent_at REAL,
            acknowledged_at REAL,
            acknowledged_by TEXT,
            run_id TEXT,
            updated_at REAL NOT NULL)""",
        "CREATE INDEX alert_states_by_state ON alert_states (state)",
        "CREATE INDEX alert_states_by_update ON alert_states (updated_at)",
        """CREATE TABLE alert_history (
            id INTEGER PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            alert TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            outcome TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '',
            run_id TEXT,
            at REAL NOT NULL)""",
        "CREATE INDEX alert_history_by_alert ON alert_history (fingerprint, kind, at)",
        "CREATE INDEX alert_history_by_time ON alert_history (at)",
    ),
    (  # 5: the worker processes that ran a run's tasks ([[pid, start], ...]): resume waits until they are gone
        "ALTER TABLE runs ADD COLUMN workers TEXT",
    ),
    (  # 6: small store-wide facts (when retention last ran); runs found by when they ended
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE INDEX runs_by_end ON runs (coalesce(ended_at, created_at))",
    ),
    (  # 7: items of mapped tasks, sensor pokes, and the outputs cached across runs
        "ALTER TABLE task_runs ADD COLUMN item INTEGER",
        "ALTER TABLE task_runs ADD COLUMN pokes INTEGER",
        """CREATE TABLE task_cache (
            pipeline TEXT NOT NULL,
            task TEXT NOT NULL,
            key TEXT NOT NULL,
            output_ref TEXT NOT NULL,
            run_id TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL,
            PRIMARY KEY (pipeline, task, key))""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
#: ``PRAGMA application_id`` of a pipewarden run store ("PwRs"): tells it from another application's SQLite file.
APPLICATION_ID = 0x50775273

_ACTIVE = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
_FAILED = tuple(sorted(s.value for s in FAILURES))


def pid_alive(pid: int, start: str | None = None) -> bool:
    """True when process ``pid`` runs (and, when ``start`` is given, is the same process, not a reuse).

    A zombie (dead, not yet reaped by its parent: state ``Z`` or ``X`` in
    ``/proc/<pid>/stat``) does not run: its run is interrupted.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _proc_stat(pid)
    if fields is None:
        return True  # no /proc (not Linux): the signal said it exists
    if fields[0] in ("Z", "X", "x"):
        return False
    return not (start and fields[19] != start)


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name: [0] the state, [19] the start time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2 :].decode().split()
        return fields if len(fields) > 19 else None
    except (OSError, ValueError):
        return None


def _process_start(pid: int) -> str | None:
    # Field 22 of /proc/<pid>/stat: start time in clock ticks since boot; tells a pid reuse apart.
    fields = _proc_stat(pid)
    return fields[19] if fields is not None else None


class RunStore(abc.ABC):
    """Where runs and task states are kept; also the history cross-run checks use (``CheckStore``).

    Every method raises :class:`~agent.errors.StoreError` (never a raw driver
    error) when the store cannot be read or written.
    """

    # --- runs ---------------------------------------------------------------------------
    @abc.abstractmethod
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
    ) -> bool:
        """Record a new run; False (and nothing written) when ``idempotency_key`` was already used."""

    @abc.abstractmethod
    def start_run(
        self,
        run_id: str,
        *,
        now: float,
        lease_until: float | None = None,
        version: str | None = None,
        tasks: Sequence[str] | None = None,
        max_active: int | None = None,
    ) -> None:
        """Mark a run RUNNING and owned by this process.

        With ``max_active``, atomically (two processes never both get the last
        slot): only when fewer than ``max_active`` other runs of its pipeline are
        RUNNING; otherwise raise :class:`~agent.errors.RunLimitError` and change nothing.
        """

    @abc.abstractmethod
    def discard_run(self, run_id: str) -> None:
        """Delete a run recorded QUEUED that never started (a start refused by ``max_active_runs``)."""

    @abc.abstractmethod
    def finish_run(self, run_id: str, status: RunStatus, *, now: float, error: str | None = None) -> None: ...

    @abc.abstractmethod
    def renew_lease(self, run_id: str, lease_until: float) -> None: ...

    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunRecord | None: ...

    @abc.abstractmethod
    def list_runs(self, *, pipeline: str | None = None, status: str | None = None, limit: int = 50) -> list[RunRecord]:
        """Newest first, without task states (``get_run`` has them)."""

    @abc.abstractmethod
    def recover_interrupted(self, *, now: float) -> list[str]:
        """Mark RUNNING runs whose owner died (or whose lease expired) INTERRUPTED; return their ids."""

    @abc.abstractmethod
    def active_runs(self, pipeline: str) -> int:
        """Runs of ``pipeline`` queued or running."""

    @abc.abstractmethod
    def last_scheduled(self, pipeline: str, triggers: Sequence[str]) -> float | None:
        """The latest ``scheduled_for`` of runs of ``pipeline`` made by these triggers."""

    @abc.abstractmethod
    def has_key(self, idempotency_key: str) -> bool: ...

    @abc.abstractmethod
    def queued_runs(self, pipeline: str) -> list[RunRecord]:
        """Runs of ``pipeline`` recorded QUEUED and not started (oldest first)."""

    @abc.abstractmethod
    def pipeline_history(self, pipeline: str, *, limit: int | None = None) -> list[RunRecord]:
        """Finished runs of ``pipeline``, oldest first, without task states (for KPIs)."""

    @abc.abstractmethod
    def recent_runs(self, pipeline: str) -> list[RunRecord]:
        """Finished runs of ``pipeline`` from its last success on (all if none), oldest first: what
        :func:`agent.kpis.health_of` needs to know where the pipeline stands."""

    @abc.abstractmethod
    def record_workers(self, run_id: str, pids: Sequence[int]) -> None:
        """Record the worker processes (of this host) that may run the run's tasks."""

    @abc.abstractmethod
    def live_workers(self, run_id: str) -> list[int]:
        """The recorded worker processes of the run that still run (resume must not start its tasks)."""

    @abc.abstractmethod
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
        """Delete finished runs that ended before ``before``, with their task states and check results.

        Returns the ids of the runs deleted (or that would be, with ``dry_run``). With
        ``mark``, prune at most once per ``every`` seconds: None when the last prune
        recorded under ``mark`` was less than ``every`` seconds before ``now``.
        Queued and running runs, check history and metric totals are never pruned.
        """

    # --- what @monitor runs leave behind ----------------------------------------------------
    @abc.abstractmethod
    def append_events(self, events: Sequence[Any]) -> None:
        """Record run events that nobody wrote before (``@monitor`` runs), in one transaction."""

    # --- cumulative metrics for outputs that outlive the process ---------------------------
    @abc.abstractmethod
    def merge_metric_samples(
        self,
        pipeline: str,
        added: Mapping[tuple[str, str], float],
        values: Mapping[tuple[str, str], float],
        *,
        now: float,
        replaced: Iterable[str] = (),
    ) -> list[tuple[str, str, float]]:
        """Add ``added`` to the pipeline's stored counter samples and set its gauge ``values`` (keys are
        ``(sample name, labels as JSON)``); samples named in ``replaced`` are first dropped (an info
        metric whose labels changed). Returns every stored sample of the pipeline, sorted."""

    # --- task states ------------------------------------------------------------------------
    @abc.abstractmethod
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
        """Record a task attempt RUNNING (a sensor's WAITING; ``item``: one item of a mapped task);
        returns its id for :meth:`finish_task`."""

    @abc.abstractmethod
    def poked(self, task_run_id: int, pokes: int) -> None:
        """Record how often a waiting sensor has looked at its condition so far."""

    @abc.abstractmethod
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
    ) -> None: ...

    @abc.abstractmethod
    def cancel_running_tasks(
        self, run_id: str, *, now: float, reason: str, status: RunStatus = RunStatus.CANCELLED
    ) -> list[str]:
        """Mark the RUNNING task attempts of a run ``status`` (the runner gave up waiting); return their tasks."""

    @abc.abstractmethod
    def record_task_state(
        self, run_id: str, task: str, status: RunStatus, *, now: float, reason: str | None = None
    ) -> None:
        """Record a task that ends without running (skipped, upstream_failed, cancelled, interrupted)."""

    def record_task_states(
        self, run_id: str, states: Iterable[tuple[str, RunStatus, str | None]], *, now: float
    ) -> None:
        """Several :meth:`record_task_state` at once (a failure skipping a whole subtree)."""
        for task, status, reason in states:
            self.record_task_state(run_id, task, status, now=now, reason=reason)

    # --- outputs cached across runs -----------------------------------------------------------
    @abc.abstractmethod
    def cache_get(self, pipeline: str, task: str, key: str, *, now: float) -> tuple[str, str, float] | None:
        """``(output_ref, run_id, created_at)`` of the output cached under ``key``, unless none is or it expired."""

    @abc.abstractmethod
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
        """Cache ``output_ref`` under ``key`` (replacing an older entry), drop the task's expired entries,
        and return the output references no entry names any more (their files can go)."""

    @abc.abstractmethod
    def prune_cache(self, *, now: float) -> list[str]:
        """Drop every expired cache entry; return the output references no entry names any more."""

    # --- CheckStore (checks.base): every history call is keyed by pipeline and dataset ---------
    @abc.abstractmethod
    def save_profile(self, pipeline: str, name: str, profile: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def load_profile(self, pipeline: str, name: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def add_profile(
        self,
        pipeline: str,
        dataset: str,
        check: str,
        profile: dict[str, Any],
        *,
        run_id: str,
        now: dt.datetime,
        accepted: bool,
        pinned: bool = False,
        keep: int = 100,
    ) -> None: ...

    @abc.abstractmethod
    def profiles(
        self, pipeline: str, dataset: str, check: str, *, limit: int, accepted_only: bool = True
    ) -> list[StoredProfile]: ...

    @abc.abstractmethod
    def accept_profiles(
        self, pipeline: str, dataset: str, run_id: str | None, *, now: dt.datetime, by: str, note: str
    ) -> int: ...

    @abc.abstractmethod
    def acceptances(self, pipeline: str, dataset: str, *, limit: int = 50) -> list[Acceptance]: ...

    @abc.abstractmethod
    def seen_keys(self, pipeline: str, dataset: str, hashes: Any) -> Any: ...

    @abc.abstractmethod
    def add_keys(self, pipeline: str, dataset: str, hashes: Any, *, run_id: str, now: dt.datetime) -> None: ...

    @abc.abstractmethod
    def prune_keys(self, pipeline: str, dataset: str, before: dt.datetime) -> int:
        """Forget key sightings before ``before``; return how many distinct keys are no longer remembered.

        The check that stores keys (``unique_across_runs(retention_days=...)``) calls
        this: its retention is the only one, the store keeps keys until told.
        """

    @abc.abstractmethod
    def row_count_history(self, pipeline: str, dataset: str, limit: int) -> list[tuple[dt.datetime, int]]: ...

    @abc.abstractmethod
    def add_row_count(self, pipeline: str, dataset: str, rows: int, *, run_id: str, now: dt.datetime) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""

    @classmethod
    def default(cls, home: str | os.PathLike[str] | None = None) -> RunStore:
        """The process's shared store under ``home`` (default ``$PIPEWARDEN_HOME``), opened on first use."""
        from agent.settings import home as home_dir

        path = (home_dir(home) / DB_NAME).resolve()
        with _DEFAULTS_LOCK:
            store = _DEFAULTS.get(path)
            if store is None or store._conn is None:
                store = _DEFAULTS[path] = SQLiteRunStore(path)
                _retain(store, strict=False)
            return store

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_DEFAULTS: dict[Path, SQLiteRunStore] = {}
_DEFAULTS_LOCK = threading.Lock()


def _guarded(method: Callable[P, R]) -> Callable[P, R]:
    """Serialise access to the shared connection and turn driver errors into StoreError."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        self = args[0]
        assert isinstance(self, SQLiteRunStore)
        with self._lock:
            if self._conn is None:
                raise StoreError(f"run store {self.path} is closed", path=str(self.path))
            try:
                return method(*args, **kwargs)
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.rollback()
                raise _store_error(exc, self.path) from exc

    return wrapper


class SQLiteRunStore(RunStore):
    """The default run store: one SQLite file in WAL mode.

    >>> import tempfile
    >>> with SQLiteRunStore(tempfile.mkdtemp() + "/pipewarden.db") as store:
    ...     store.create_run(run_id="r1", pipeline="orders", trigger="manual", now=0.0)
    True

    ``timeout`` is how long a write waits for another process's lock before
    :class:`~agent.errors.StoreError`. Key history is kept until
    :meth:`prune_keys` (the duplicate check's retention) drops it.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        sync = synchronous.upper()
        if sync not in ("NORMAL", "FULL", "EXTRA"):
            raise StoreError(f"synchronous must be NORMAL, FULL or EXTRA — got {synchronous!r}", path=str(path))
        self.synchronous = sync
        self._lock = threading.RLock()
        self._keys: dict[tuple[str, str], tuple[int, Any]] = {}
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._start = _process_start(self._pid)
        self._conn: sqlite3.Connection | None = None
        try:
            make_private_dirs(self.path.parent)
            existed = _create_private(self.path)
        except OSError as exc:
            raise StoreError(
                f"run store {self.path} cannot be created: {exc.strerror or exc} at "
                f"{exc.filename or self.path.parent}; set PIPEWARDEN_HOME (or --home) to a writable directory",
                path=str(self.path),
            ) from exc
        try:
            conn = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False, cached_statements=256
            )
        except sqlite3.Error as exc:
            raise _store_error(exc, self.path) from exc
        self._conn = conn
        try:
            _identify(conn, self.path)  # before anything writes: another application's file stays untouched
            if existed:
                for f in (
                    self.path,
                    self.path.with_name(self.path.name + "-wal"),
                    self.path.with_name(self.path.name + "-shm"),
                ):
                    tighten(f)  # a store written 0644 by an older version
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={sync}")
            self._migrate()
        except sqlite3.Error as exc:
            conn.close()
            self._conn = None
            raise _store_error(exc, self.path) from exc
        except StoreError:
            conn.close()
            self._conn = None
            raise

    def __repr__(self) -> str:
        return f"<SQLiteRunStore {str(self.path)!r}>"

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"run store {self.path} is closed", path=str(self.path))
        return self._conn

    def _migrate(self) -> None:
        conn = self.conn
        # The header first: another process opening the new file meanwhile must find a pipewarden
        # store, not a file with one foreign-looking table (it would refuse it).
        if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
        current = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"run store {self.path} has schema version {current}, newer than this pipewarden "
                f"supports ({SCHEMA_VERSION}); upgrade pipewarden or set PIPEWARDEN_HOME to "
                "another directory",
                path=str(self.path),
            )
        if current == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for stmt in MIGRATIONS[version - 1]:
                    conn.execute(stmt)
                conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- runs ---------------------------------------------------------------------------

    @_guarded
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
    ) -> bool:
        try:
            self.conn.execute(
                "INSERT INTO runs (run_id, pipeline, status, trigger, version, params, logical_date, target,"
                " tasks, idempotency_key, scheduled_for, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    pipeline,
                    str(status),
                    trigger,
                    version,
                    _dumps(params or {}),
                    logical_date.isoformat() if logical_date else None,
                    target,
                    json.dumps(list(tasks)),
                    idempotency_key,
                    scheduled_for,
                    time.time() if now is None else now,
                ),
            )
        except sqlite3.IntegrityError as exc:
            if idempotency_key is not None and "idempotency_key" in str(exc):
                return False
            raise
        return True

    @_guarded
    def start_run(
        self,
        run_id: str,
        *,
        now: float,
        lease_until: float | None = None,
        version: str | None = None,
        tasks: Sequence[str] | None = None,
        max_active: int | None = None,
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
        if max_active is not None:  # one statement: SQLite runs it under the write lock, so the count holds
            sql += (
                " AND (SELECT count(*) FROM runs o WHERE o.pipeline=runs.pipeline AND o.status='running'"
                " AND o.run_id!=runs.run_id) < ?"
            )
            args += (max_active,)
        cur = self.conn.execute(sql, args)
        if cur.rowcount == 1:
            return
        row = self.conn.execute("SELECT pipeline FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"run {run_id!r} is not in the run store {self.path}", path=str(self.path))
        running = self.conn.execute(
            "SELECT run_id, owner_pid, owner_host FROM runs WHERE pipeline=? AND status='running' AND run_id!=?"
            " ORDER BY started_at",
            (row[0], run_id),
        ).fetchall()
        who = ", ".join(f"{r[0]} (pid {r[1]} on {r[2]})" for r in running[:3]) + (" ..." if len(running) > 3 else "")
        raise RunLimitError(
            f"pipeline {row[0]!r} already has {len(running)} run(s) running, its limit "
            f"(max_active_runs={max_active}): {who}; this run was not started. Queue it "
            "(pipewarden run --wait, or wait= in Runner.run), or raise Pipeline(max_active_runs=...)",
            pipeline=row[0],
            limit=max_active or 0,
            running=[r[0] for r in running],
        )

    @_guarded
    def discard_run(self, run_id: str) -> None:
        self.conn.execute(
            "DELETE FROM runs WHERE run_id=? AND status='queued' AND NOT EXISTS"
            " (SELECT 1 FROM task_runs t WHERE t.run_id=runs.run_id)",
            (run_id,),
        )

    @_guarded
    def finish_run(self, run_id: str, status: RunStatus, *, now: float, error: str | None = None) -> None:
        self.conn.execute(
            "UPDATE runs SET status=?, ended_at=?, error=?, lease_until=NULL WHERE run_id=?",
            (str(status), now, error, run_id),
        )

    @_guarded
    def renew_lease(self, run_id: str, lease_until: float) -> None:
        self.conn.execute("UPDATE runs SET lease_until=? WHERE run_id=? AND status='running'", (lease_until, run_id))

    @_guarded
    def get_run(self, run_id: str) -> RunRecord | None:
        row = self.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            return None
        checks: dict[int, list[CheckResult]] = {}
        for tr_id, result in self.conn.execute(
            "SELECT task_run_id, result FROM check_results WHERE run_id=? ORDER BY id", (run_id,)
        ):
            checks.setdefault(tr_id, []).append(CheckResult.from_dict(json.loads(result)))
        status = {s.value: s for s in RunStatus}
        # Positional, in field order: a run of 10,000 tasks is read back once per run, and keywords cost more.
        attempts = tuple(
            TaskAttempt(
                run_id,
                r[1],
                r[2],
                status[r[3]],
                r[4],
                r[5],
                r[6],
                r[7],
                r[8],
                r[9],
                r[10],
                tuple(checks[r[0]]) if r[0] in checks else (),
                r[0],
                r[11],
                r[12],
            )
            for r in self.conn.execute(
                "SELECT id, task, attempt, status, started_at, ended_at, rows_in, rows_out, error, reason,"
                " output_ref, item, pokes FROM task_runs WHERE run_id=? ORDER BY id",
                (run_id,),
            )
        )
        return _run_record(row, attempts)

    @_guarded
    def list_runs(self, *, pipeline: str | None = None, status: str | None = None, limit: int = 50) -> list[RunRecord]:
        where, args = [], []
        if pipeline:
            where.append("pipeline=?")
            args.append(pipeline)
        if status:
            where.append("status=?")
            args.append(status)
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        return [_run_record(r, ()) for r in self.conn.execute(sql, (*args, limit))]

    @_guarded
    def recover_interrupted(self, *, now: float) -> list[str]:
        rows = self.conn.execute(
            "SELECT run_id, owner_pid, owner_host, owner_start, lease_until FROM runs WHERE status='running'"
        ).fetchall()
        dead = []
        for run_id, pid, host, start, lease in rows:
            if host == self._host and pid is not None:
                gone = not pid_alive(pid, start)
            else:
                gone = lease is not None and lease < now
            if gone:
                dead.append(run_id)
        for run_id in dead:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "UPDATE task_runs SET status='interrupted', ended_at=?, reason=? WHERE run_id=?"
                " AND status IN ('running', 'waiting')",
                (now, "the process running it died", run_id),
            )
            self.conn.execute(
                "UPDATE runs SET status='interrupted', ended_at=?, lease_until=NULL, error=? "
                "WHERE run_id=? AND status='running'",
                (now, "the process running it died", run_id),
            )
            self.conn.execute("COMMIT")
        return dead

    @_guarded
    def record_workers(self, run_id: str, pids: Sequence[int]) -> None:
        workers = [[pid, _process_start(pid)] for pid in pids]
        self.conn.execute(
            "UPDATE runs SET workers=? WHERE run_id=?", (json.dumps({"host": self._host, "workers": workers}), run_id)
        )

    @_guarded
    def live_workers(self, run_id: str) -> list[int]:
        row = self.conn.execute("SELECT workers FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if not row or not row[0]:
            return []
        recorded = json.loads(row[0])
        if recorded.get("host") != self._host:
            return []
        return [pid for pid, start in recorded.get("workers", ()) if pid_alive(pid, start)]

    @_guarded
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
        conn = self.conn
        now = time.time() if now is None else now
        conn.execute("BEGIN IMMEDIATE")
        try:
            if mark is not None:
                row = conn.execute("SELECT value FROM meta WHERE key=?", (mark,)).fetchone()
                if row is not None and now - float(row[0]) < every:
                    conn.execute("ROLLBACK")
                    return None
                if not dry_run:
                    conn.execute(
                        "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                        (mark, repr(now)),
                    )
            sql = (
                "SELECT run_id FROM runs WHERE status NOT IN ('queued', 'running')"
                " AND coalesce(ended_at, created_at) < ?"
            )
            args: tuple[Any, ...] = (before,)
            if pipeline is not None:
                sql += " AND pipeline=?"
                args += (pipeline,)
            ids = [r[0] for r in conn.execute(sql, args)]
            if ids and not dry_run:
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS pruned (run_id TEXT PRIMARY KEY)")
                conn.execute("DELETE FROM pruned")
                conn.executemany("INSERT INTO pruned VALUES (?)", [(i,) for i in ids])
                for table in ("check_results", "task_runs", "runs"):
                    conn.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT run_id FROM pruned)")
                conn.execute("DELETE FROM pruned")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return ids

    @_guarded
    def active_runs(self, pipeline: str) -> int:
        return int(
            self.conn.execute(
                "SELECT count(*) FROM runs WHERE pipeline=? AND status IN (?, ?)", (pipeline, *_ACTIVE)
            ).fetchone()[0]
        )

    @_guarded
    def last_scheduled(self, pipeline: str, triggers: Sequence[str]) -> float | None:
        marks = ",".join("?" * len(triggers))
        row = self.conn.execute(
            f"SELECT max(scheduled_for) FROM runs WHERE pipeline=? AND trigger IN ({marks})", (pipeline, *triggers)
        ).fetchone()
        return row[0]

    @_guarded
    def has_key(self, idempotency_key: str) -> bool:
        return (
            self.conn.execute("SELECT 1 FROM runs WHERE idempotency_key=?", (idempotency_key,)).fetchone() is not None
        )

    @_guarded
    def queued_runs(self, pipeline: str) -> list[RunRecord]:
        return [
            _run_record(r, ())
            for r in self.conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE pipeline=? AND status='queued' ORDER BY created_at, rowid",
                (pipeline,),
            )
        ]

    @_guarded
    def pipeline_history(self, pipeline: str, *, limit: int | None = None) -> list[RunRecord]:
        sql = (
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE pipeline=? AND status NOT IN ('queued', 'running')"
            " ORDER BY coalesce(ended_at, created_at) DESC, rowid DESC"
        )
        args: tuple[Any, ...] = (pipeline,)
        if limit is not None:
            sql += " LIMIT ?"
            args += (limit,)
        return [_run_record(r, ()) for r in self.conn.execute(sql, args)][::-1]

    @_guarded
    def recent_runs(self, pipeline: str) -> list[RunRecord]:
        since = self.conn.execute(
            "SELECT max(ended_at) FROM runs WHERE pipeline=? AND status='success'", (pipeline,)
        ).fetchone()[0]
        return [
            _run_record(r, ())
            for r in self.conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE pipeline=? AND ended_at IS NOT NULL AND ended_at >= ?"
                " AND status NOT IN ('queued', 'running') ORDER BY ended_at, rowid",
                (pipeline, since or 0.0),
            )
        ]

    # --- @monitor runs --------------------------------------------------------------------

    @_guarded
    def append_events(self, events: Sequence[Any]) -> None:
        from agent.events import RunEnded, RunStarted, TaskEnded

        conn = self.conn
        conn.execute("BEGIN")
        try:
            for e in events:
                if isinstance(e, TaskEnded):
                    cur = conn.execute(
                        "INSERT INTO task_runs (run_id, task, attempt, status, started_at, ended_at, rows_in,"
                        " rows_out, error, reason) VALUES (?,?,?,?,?,?,?,?,?,?)",
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
                    )
                    if e.checks:
                        conn.executemany(
                            "INSERT INTO check_results (task_run_id, run_id, task, check_name, status, result)"
                            " VALUES (?,?,?,?,?,?)",
                            [
                                (cur.lastrowid, e.run_id, e.task, c.check, str(c.status), _dumps(c.to_dict()))
                                for c in e.checks
                            ],
                        )
                elif isinstance(e, RunStarted):
                    conn.execute(
                        "INSERT OR IGNORE INTO runs (run_id, pipeline, status, trigger, version, params, tasks,"
                        " created_at, started_at, owner_pid, owner_host, owner_start)"
                        " VALUES (?,?,'running',?,?,?,?,?,?,?,?,?)",
                        (
                            e.run_id,
                            e.pipeline,
                            e.trigger,
                            e.version,
                            _dumps(e.params),
                            json.dumps(list(e.tasks)),
                            e.started_at,
                            e.started_at,
                            self._pid,
                            self._host,
                            self._start,
                        ),
                    )
                elif isinstance(e, RunEnded):
                    conn.execute(
                        "UPDATE runs SET status=?, ended_at=?, error=?, tasks=(SELECT json_group_array(task) FROM"
                        " (SELECT task FROM task_runs WHERE run_id=? GROUP BY task ORDER BY min(started_at), min(id)))"
                        " WHERE run_id=?",
                        (str(e.status), e.ended_at, e.error, e.run_id, e.run_id),
                    )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # --- cumulative metric samples ---------------------------------------------------------

    @_guarded
    def merge_metric_samples(
        self,
        pipeline: str,
        added: Mapping[tuple[str, str], float],
        values: Mapping[tuple[str, str], float],
        *,
        now: float,
        replaced: Iterable[str] = (),
    ) -> list[tuple[str, str, float]]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "DELETE FROM metric_samples WHERE pipeline=? AND name=?", [(pipeline, name) for name in replaced]
            )
            conn.executemany(
                "INSERT INTO metric_samples VALUES (?,?,?,'counter',?,?) ON CONFLICT (pipeline, name, labels)"
                " DO UPDATE SET value=value+excluded.value, updated_at=excluded.updated_at",
                [(pipeline, name, labels, v, now) for (name, labels), v in added.items()],
            )
            conn.executemany(
                "INSERT INTO metric_samples VALUES (?,?,?,'gauge',?,?) ON CONFLICT (pipeline, name, labels)"
                " DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at",
                [(pipeline, name, labels, v, now) for (name, labels), v in values.items()],
            )
            rows = conn.execute(
                "SELECT name, labels, value FROM metric_samples WHERE pipeline=? ORDER BY name, labels", (pipeline,)
            ).fetchall()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return [(n, lab, float(v)) for n, lab, v in rows]

    # --- task states --------------------------------------------------------------------

    @_guarded
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
        cur = self.conn.execute(
            "INSERT INTO task_runs (run_id, task, attempt, status, started_at, item) VALUES (?,?,?,?,?,?)",
            (run_id, task, attempt, str(status), now, item),
        )
        return int(cur.lastrowid or 0)

    @_guarded
    def poked(self, task_run_id: int, pokes: int) -> None:
        self.conn.execute("UPDATE task_runs SET pokes=? WHERE id=?", (pokes, task_run_id))

    @_guarded
    def cache_get(self, pipeline: str, task: str, key: str, *, now: float) -> tuple[str, str, float] | None:
        row = self.conn.execute(
            "SELECT output_ref, run_id, created_at FROM task_cache WHERE pipeline=? AND task=? AND key=?"
            " AND (expires_at IS NULL OR expires_at > ?)",
            (pipeline, task, key, now),
        ).fetchone()
        return (str(row[0]), str(row[1]), float(row[2])) if row else None

    @_guarded
    def prune_cache(self, *, now: float) -> list[str]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            gone = [
                r[0] for r in conn.execute("DELETE FROM task_cache WHERE expires_at <= ? RETURNING output_ref", (now,))
            ]
            still = {r[0] for r in conn.execute("SELECT DISTINCT output_ref FROM task_cache")}
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return [ref for ref in dict.fromkeys(gone) if ref not in still]

    @_guarded
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
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            gone = [
                r[0]
                for r in conn.execute(
                    "DELETE FROM task_cache WHERE pipeline=? AND task=? AND (key=? OR expires_at <= ?)"
                    " RETURNING output_ref",
                    (pipeline, task, key, now),
                )
            ]
            conn.execute(
                "INSERT INTO task_cache VALUES (?,?,?,?,?,?,?)",
                (pipeline, task, key, output_ref, run_id, now, expires_at),
            )
            still = {
                r[0]
                for r in conn.execute("SELECT output_ref FROM task_cache WHERE pipeline=? AND task=?", (pipeline, task))
            }
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return [ref for ref in dict.fromkeys(gone) if ref not in still]

    @_guarded
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
    ) -> None:
        conn = self.conn
        sql = (
            "UPDATE task_runs SET status=?, ended_at=?, rows_in=?, rows_out=?, error=?, reason=?, output_ref=?"
            " WHERE id=?"
        )
        args = (str(status), now, rows_in, rows_out, error, reason, output_ref, task_run_id)
        if not checks:
            conn.execute(sql, args)
            return
        conn.execute("BEGIN")
        try:
            # RETURNING names the row's run and task: no second query.
            [(run_id, task)] = conn.execute(sql + " RETURNING run_id, task", args).fetchall()
            conn.executemany(
                "INSERT INTO check_results (task_run_id, run_id, task, check_name, status, result)"
                " VALUES (?,?,?,?,?,?)",
                [(task_run_id, run_id, task, c.check, str(c.status), _dumps(c.to_dict())) for c in checks],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @_guarded
    def cancel_running_tasks(
        self, run_id: str, *, now: float, reason: str, status: RunStatus = RunStatus.CANCELLED
    ) -> list[str]:
        rows = self.conn.execute(
            "UPDATE task_runs SET status=?, ended_at=?, reason=? WHERE run_id=? AND status IN ('running', 'waiting')"
            " RETURNING task, item",
            (str(status), now, reason, run_id),
        ).fetchall()
        return list(dict.fromkeys(r[0] for r in rows if r[1] is None))

    @_guarded
    def record_task_state(
        self, run_id: str, task: str, status: RunStatus, *, now: float, reason: str | None = None
    ) -> None:
        self.conn.execute(
            "INSERT INTO task_runs (run_id, task, attempt, status, started_at, ended_at, reason)"
            " VALUES (?,?,0,?,?,?,?)",
            (run_id, task, str(status), now, now, reason),
        )

    @_guarded
    def record_task_states(
        self, run_id: str, states: Iterable[tuple[str, RunStatus, str | None]], *, now: float
    ) -> None:
        rows = [(run_id, t, str(s), now, now, r) for t, s, r in states]
        if rows:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT INTO task_runs (run_id, task, attempt, status, started_at, ended_at, reason)"
                " VALUES (?,?,0,?,?,?,?)",
                rows,
            )
            self.conn.execute("COMMIT")

    # --- CheckStore ----------------------------------------------------------------------

    @_guarded
    def save_profile(self, pipeline: str, name: str, profile: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO reference_profiles VALUES (?,?,?,?) ON CONFLICT (pipeline, name) DO UPDATE"
            " SET profile=excluded.profile, updated_at=excluded.updated_at",
            (pipeline, name, _dumps(profile), time.time()),
        )

    @_guarded
    def load_profile(self, pipeline: str, name: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT profile FROM reference_profiles WHERE pipeline=? AND name=?", (pipeline, name)
        ).fetchone()
        return json.loads(row[0]) if row else None

    @_guarded
    def add_profile(
        self,
        pipeline: str,
        dataset: str,
        check: str,
        profile: dict[str, Any],
        *,
        run_id: str,
        now: dt.datetime,
        accepted: bool,
        pinned: bool = False,
        keep: int = 100,
    ) -> None:
        conn = self.conn
        t = now.timestamp()
        conn.execute("BEGIN")
        try:
            conn.execute(
                "INSERT INTO check_profiles (pipeline, dataset, check_name, run_id, created_at, accepted,"
                " pinned_at, profile) VALUES (?,?,?,?,?,?,?,?)",
                (pipeline, dataset, check, run_id, t, int(accepted), t if pinned else None, _dumps(profile)),
            )
            conn.execute(
                "DELETE FROM check_profiles WHERE pipeline=? AND dataset=? AND check_name=?"
                " AND pinned_at IS NULL AND id NOT IN (SELECT id FROM check_profiles WHERE pipeline=?"
                " AND dataset=? AND check_name=? ORDER BY id DESC LIMIT ?)",
                (pipeline, dataset, check, pipeline, dataset, check, max(int(keep), 1)),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @_guarded
    def profiles(
        self, pipeline: str, dataset: str, check: str, *, limit: int, accepted_only: bool = True
    ) -> list[StoredProfile]:
        sql = (
            "SELECT run_id, check_name, created_at, accepted, pinned_at, profile FROM check_profiles"
            " WHERE pipeline=? AND dataset=? AND check_name=?"
        )
        if accepted_only:
            sql += " AND accepted=1"
        rows = self.conn.execute(sql + " ORDER BY id DESC LIMIT ?", (pipeline, dataset, check, max(limit, 0)))
        return [
            StoredProfile(r[0], r[1], _utc(r[2]), bool(r[3]), None if r[4] is None else _utc(r[4]), json.loads(r[5]))
            for r in rows
        ]

    @_guarded
    def accept_profiles(
        self, pipeline: str, dataset: str, run_id: str | None, *, now: dt.datetime, by: str, note: str
    ) -> int:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if run_id is None:  # each check's newest profile
                ids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT max(id) FROM check_profiles WHERE pipeline=? AND dataset=? GROUP BY check_name",
                        (pipeline, dataset),
                    )
                ]
                row = conn.execute(
                    "SELECT run_id FROM check_profiles WHERE pipeline=? AND dataset=? ORDER BY id DESC LIMIT 1",
                    (pipeline, dataset),
                ).fetchone()
                chosen = row[0] if row else ""
            else:
                ids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM check_profiles WHERE pipeline=? AND dataset=? AND run_id=?",
                        (pipeline, dataset, run_id),
                    )
                ]
                chosen = run_id
            if ids:
                marks = ",".join("?" * len(ids))
                conn.execute(
                    f"UPDATE check_profiles SET accepted=1, pinned_at=? WHERE id IN ({marks})", (now.timestamp(), *ids)
                )
                conn.execute(
                    "INSERT INTO baseline_acceptances (pipeline, dataset, run_id, accepted_at, accepted_by,"
                    " note, profiles) VALUES (?,?,?,?,?,?,?)",
                    (pipeline, dataset, chosen, now.timestamp(), by, note, len(ids)),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(ids)

    @_guarded
    def acceptances(self, pipeline: str, dataset: str, *, limit: int = 50) -> list[Acceptance]:
        rows = self.conn.execute(
            "SELECT pipeline, dataset, run_id, accepted_at, accepted_by, note, profiles FROM baseline_acceptances"
            " WHERE pipeline=? AND dataset=? ORDER BY id DESC LIMIT ?",
            (pipeline, dataset, max(limit, 0)),
        )
        return [Acceptance(r[0], r[1], r[2], _utc(r[3]), r[4], r[5], r[6]) for r in rows]

    @_guarded
    def baseline_pipelines(self, dataset: str, run_id: str | None = None) -> list[str]:
        """Pipelines with a drift profile of ``dataset`` (of run ``run_id``, when given); for the CLI."""
        sql = "SELECT DISTINCT pipeline FROM check_profiles WHERE dataset=?"
        args: tuple[Any, ...] = (dataset,)
        if run_id is not None:
            sql += " AND run_id=?"
            args += (run_id,)
        return sorted(r[0] for r in self.conn.execute(sql, args))

    @_guarded
    def seen_keys(self, pipeline: str, dataset: str, hashes: Any) -> Any:
        import numpy as np

        h = np.ascontiguousarray(hashes, dtype=np.uint64)
        known = self._known_keys(pipeline, dataset)
        if known.size == 0 or h.size == 0:
            return np.zeros(h.shape, dtype=bool)
        # Probing in sorted order keeps searchsorted cache-friendly (several times faster than np.isin).
        order = np.argsort(h, kind="stable")
        out = np.empty(h.shape, dtype=bool)
        out[order] = _contains(known, h[order])
        return out

    def _known_keys(self, pipeline: str, dataset: str) -> Any:
        # Sorted, unique uint64 array of every key with a sighting on record; extended incrementally.
        import numpy as np

        key = (pipeline, dataset)
        last_id, known = self._keys.get(key, (0, np.empty(0, dtype=np.uint64)))
        rows = self.conn.execute(
            "SELECT id, hashes FROM key_sets WHERE pipeline=? AND dataset=? AND id>? ORDER BY id",
            (pipeline, dataset, last_id),
        ).fetchall()
        if rows:
            parts = [known, *(np.frombuffer(blob, dtype="<u8").astype(np.uint64) for _, blob in rows)]
            known = _sorted_unique(np.concatenate(parts))
            last_id = rows[-1][0]
            self._keys[key] = (last_id, known)
        return known

    @_guarded
    def add_keys(self, pipeline: str, dataset: str, hashes: Any, *, run_id: str, now: dt.datetime) -> None:
        import numpy as np

        # Every key of the run is stored, seen before or not: a reload is a sighting, and the
        # retention of a key counts from its last one.
        h = _sorted_unique(np.ascontiguousarray(hashes, dtype=np.uint64))
        if h.size:
            self.conn.execute(
                "INSERT INTO key_sets (pipeline, dataset, run_id, created_at, n, hashes) VALUES (?,?,?,?,?,?)",
                (pipeline, dataset, run_id, now.timestamp(), int(h.size), h.astype("<u8").tobytes()),
            )

    @_guarded
    def prune_keys(self, pipeline: str, dataset: str, before: dt.datetime) -> int:
        """Delete the sightings of ``dataset``'s keys before ``before``; return how many keys are forgotten.

        A key sighted again since is still remembered: its newer sighting stays.
        """
        import numpy as np

        rows = self.conn.execute(
            "DELETE FROM key_sets WHERE pipeline=? AND dataset=? AND created_at<? RETURNING hashes",
            (pipeline, dataset, before.timestamp()),
        ).fetchall()
        if not rows:
            return 0
        self._keys.pop((pipeline, dataset), None)  # the cached array still holds the dropped sightings
        dropped = _sorted_unique(np.concatenate([np.frombuffer(b, dtype="<u8").astype(np.uint64) for (b,) in rows]))
        known = self._known_keys(pipeline, dataset)
        if known.size == 0:
            return int(dropped.size)
        return int(dropped.size - np.count_nonzero(_contains(known, dropped)))

    @_guarded
    def row_count_history(self, pipeline: str, dataset: str, limit: int) -> list[tuple[dt.datetime, int]]:
        return [
            (_utc(r[0]), r[1])
            for r in self.conn.execute(
                "SELECT created_at, rows FROM row_counts WHERE pipeline=? AND dataset=? ORDER BY id DESC LIMIT ?",
                (pipeline, dataset, limit),
            )
        ]

    @_guarded
    def add_row_count(self, pipeline: str, dataset: str, rows: int, *, run_id: str, now: dt.datetime) -> None:
        self.conn.execute(
            "INSERT INTO row_counts (pipeline, dataset, run_id, rows, created_at) VALUES (?,?,?,?,?)",
            (pipeline, dataset, run_id, int(rows), now.timestamp()),
        )

    # --- alert states (alerts.store.AlertStateStore) ------------------------------------------

    @_guarded
    def save_alert(self, event: AlertEvent) -> None:
        # An acknowledgement stored for the same incident (same fired_at) survives a save that has none:
        # `pipewarden alerts ack` may have written it since the evaluator read the alert.
        self.conn.execute(
            f"INSERT INTO alert_states ({_ALERT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (fingerprint) DO UPDATE SET alert=excluded.alert, state=excluded.state,"
            " severity=excluded.severity, labels=excluded.labels, annotations=excluded.annotations,"
            " value=excluded.value, active_at=excluded.active_at, fired_at=excluded.fired_at,"
            " resolved_at=excluded.resolved_at, last_sent_at=excluded.last_sent_at, run_id=excluded.run_id,"
            " updated_at=excluded.updated_at,"
            " acknowledged_at=CASE WHEN excluded.acknowledged_at IS NULL AND excluded.fired_at IS NOT NULL"
            "   AND alert_states.fired_at IS excluded.fired_at THEN alert_states.acknowledged_at"
            "   ELSE excluded.acknowledged_at END,"
            " acknowledged_by=CASE WHEN excluded.acknowledged_at IS NULL AND excluded.fired_at IS NOT NULL"
            "   AND alert_states.fired_at IS excluded.fired_at THEN alert_states.acknowledged_by"
            "   ELSE excluded.acknowledged_by END",
            _alert_row(event),
        )

    @_guarded
    def get_alert(self, fingerprint: str) -> AlertEvent | None:
        row = self.conn.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alert_states WHERE fingerprint=?", (fingerprint,)
        ).fetchone()
        return _alert_event(row) if row else None

    @_guarded
    def list_alerts(
        self,
        *,
        states: Iterable[str] | None = None,
        updated_since: float | None = None,
        prefix: str | None = None,
        limit: int | None = None,
    ) -> list[AlertEvent]:
        where: list[str] = []
        args: list[Any] = []
        if states is not None:
            wanted = [str(s) for s in states]
            if not wanted:
                return []
            where.append(f"state IN ({','.join('?' * len(wanted))})")
            args.extend(wanted)
        if updated_since is not None:
            where.append("updated_at >= ?")
            args.append(updated_since)
        if prefix is not None:
            where.append("substr(fingerprint, 1, ?) = ?")  # not LIKE: the prefix is typed by a person
            args.extend((len(prefix), prefix))
        sql = f"SELECT {_ALERT_COLUMNS} FROM alert_states"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY updated_at DESC, fingerprint DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_alert_event(r) for r in self.conn.execute(sql, args)]

    @_guarded
    def acknowledge_alert(self, fingerprint: str, *, by: str, now: float) -> AlertEvent | None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alert_states WHERE fingerprint=?", (fingerprint,)
            ).fetchone()
            current = _alert_event(row) if row else None
            if current is None or current.state is not AlertState.FIRING or current.acknowledged_at is not None:
                conn.execute("COMMIT")
                return current if current is not None and current.state is AlertState.FIRING else None
            conn.execute(
                "UPDATE alert_states SET acknowledged_at=?, acknowledged_by=?, updated_at=? WHERE fingerprint=?",
                (now, by, now, fingerprint),
            )
            conn.execute(
                "INSERT INTO alert_history (fingerprint, alert, kind, name, run_id, at) VALUES (?,?,?,?,?,?)",
                (fingerprint, current.alert, str(HistoryKind.ACK), by, current.run_id, now),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return dataclasses.replace(current, acknowledged_at=now, acknowledged_by=by, updated_at=now)

    @_guarded
    def add_alert_history(self, entry: AlertHistoryEntry) -> None:
        self.conn.execute(
            "INSERT INTO alert_history (fingerprint, alert, kind, name, outcome, detail, run_id, at)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (
                entry.fingerprint,
                entry.alert,
                str(entry.kind),
                entry.name,
                str(entry.outcome),
                entry.detail,
                entry.run_id,
                entry.at,
            ),
        )

    @_guarded
    def alert_history(
        self,
        *,
        fingerprint: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        limit: int | None = 100,
    ) -> list[AlertHistoryEntry]:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("fingerprint", fingerprint), ("kind", kind)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(str(value))
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        sql = "SELECT id, fingerprint, alert, kind, name, outcome, detail, run_id, at FROM alert_history"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [
            AlertHistoryEntry(
                fingerprint=r[1],
                alert=r[2],
                kind=r[3],
                at=r[8],
                name=r[4],
                outcome=r[5],
                detail=r[6],
                run_id=r[7],
                id=r[0],
            )
            for r in self.conn.execute(sql, args)
        ]

    @_guarded
    def count_alert_history(
        self, *, fingerprint: str, kind: str, since: float, name: str | None = None, outcome: str | None = None
    ) -> int:
        sql = "SELECT count(*) FROM alert_history WHERE fingerprint=? AND kind=? AND at >= ?"
        args: list[Any] = [fingerprint, str(kind), since]
        for column, value in (("name", name), ("outcome", outcome)):
            if value is not None:
                sql += f" AND {column}=?"
                args.append(str(value))
        return int(self.conn.execute(sql, args).fetchone()[0])

    @_guarded
    def prune_alerts(self, before: float) -> int:
        conn = self.conn
        conn.execute("BEGIN")
        try:
            states = conn.execute(
                "DELETE FROM alert_states WHERE state IN ('resolved', 'inactive') AND updated_at < ?", (before,)
            ).rowcount
            history = conn.execute("DELETE FROM alert_history WHERE at < ?", (before,)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return int(states) + int(history)


def _create_private(path: Path) -> bool:
    """Create an empty store file ``0600`` (SQLite gives its -wal and -shm files the same mode);
    True when it existed already."""
    if path.exists():
        return True
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # exactly 0600, whatever the umask
    finally:
        os.close(fd)
    return False


def _identify(conn: sqlite3.Connection, path: Path) -> None:
    """Raise StoreError, having written nothing, unless the file is empty or a pipewarden run store.

    A store says so in its header (``PRAGMA application_id``); stores made before
    that are known by their tables.
    """
    if conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID:
        return
    tables = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"))
    if not tables or {"schema_version", "runs", "task_runs"} <= set(tables):
        return
    shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
    raise StoreError(
        f"{path} is not a pipewarden run store (it holds tables {shown}); pipewarden left it "
        "untouched. Set PIPEWARDEN_HOME (or --home) to another directory, or move that file away",
        path=str(path),
    )


def _utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)


def _sorted_unique(a: Any) -> Any:
    import numpy as np

    a = np.sort(a)
    if a.size < 2:
        return a
    keep = np.empty(a.size, dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def _contains(known: Any, sorted_probe: Any) -> Any:
    """Membership of a sorted probe in a sorted, unique array."""
    import numpy as np

    idx = np.searchsorted(known, sorted_probe)
    np.minimum(idx, known.size - 1, out=idx)
    return known[idx] == sorted_probe


_RUN_COLUMNS = (
    "run_id, pipeline, status, trigger, version, params, logical_date, target, tasks, "
    "idempotency_key, created_at, started_at, ended_at, owner_pid, owner_host, error"
)


def _run_record(r: Sequence[Any], attempts: tuple[TaskAttempt, ...]) -> RunRecord:
    return RunRecord(
        run_id=r[0],
        pipeline=r[1],
        status=RunStatus(r[2]),
        trigger=r[3],
        version=r[4],
        params=json.loads(r[5]),
        logical_date=dt.datetime.fromisoformat(r[6]) if r[6] else None,
        target=r[7],
        tasks=tuple(json.loads(r[8])),
        idempotency_key=r[9],
        created_at=r[10],
        started_at=r[11],
        ended_at=r[12],
        owner_pid=r[13],
        owner_host=r[14],
        error=r[15],
        attempts=attempts,
    )


_ALERT_COLUMNS = (
    "fingerprint, alert, state, severity, labels, annotations, value, active_at, fired_at, resolved_at,"
    " last_sent_at, acknowledged_at, acknowledged_by, run_id, updated_at"
)


def _alert_row(e: AlertEvent) -> tuple[Any, ...]:
    return (
        e.fingerprint,
        e.alert,
        str(e.state),
        e.severity,
        _dumps(dict(e.labels)),
        _dumps(dict(e.annotations)),
        e.value,
        e.active_at,
        e.fired_at,
        e.resolved_at,
        e.last_sent_at,
        e.acknowledged_at,
        e.acknowledged_by,
        e.run_id,
        e.updated_at if e.updated_at is not None else time.time(),
    )


def _alert_event(r: Sequence[Any]) -> AlertEvent:
    return AlertEvent(
        fingerprint=r[0],
        alert=r[1],
        state=AlertState(r[2]),
        severity=r[3],
        labels=json.loads(r[4]),
        annotations=json.loads(r[5]),
        value=r[6],
        active_at=r[7],
        fired_at=r[8],
        resolved_at=r[9],
        last_sent_at=r[10],
        acknowledged_at=r[11],
        acknowledged_by=r[12],
        run_id=r[13],
        updated_at=r[14],
    )


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, separators=(",", ":"))


def _json_default(o: Any) -> Any:
    if isinstance(o, dt.datetime | dt.date):
        return o.isoformat()
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    return repr(o)


def _store_error(exc: BaseException, path: Path) -> StoreError:
    text = str(exc)
    low = text.lower()
    where = f"run store {path}"
    if "locked" in low or "busy" in low:
        msg = (
            f"{where} is locked by another process ({text}); wait for the other pipewarden to finish, "
            "or set PIPEWARDEN_HOME (or --home) to another directory"
        )
    elif "readonly" in low or "read-only" in low:
        msg = (
            f"{where} is read-only ({text}); make {path} and its directory writable, "
            "or set PIPEWARDEN_HOME (or --home) to a writable directory"
        )
    elif "unable to open" in low or "permission" in low or getattr(exc, "errno", None) in (errno.EACCES, errno.EROFS):
        msg = (
            f"{where} cannot be opened for writing ({text}); make {path.parent} writable, "
            "or set PIPEWARDEN_HOME (or --home) to a writable directory"
        )
    elif "not a database" in low or "malformed" in low:
        msg = (
            f"{where} is not a readable pipewarden database ({text}); move the file aside, "
            "or set PIPEWARDEN_HOME (or --home) to another directory"
        )
    elif "disk" in low or "full" in low:
        msg = f"{where} could not be written ({text}); free disk space or set PIPEWARDEN_HOME elsewhere"
    else:
        msg = f"{where}: {type(exc).__name__}: {text}"
    return StoreError(msg, path=str(path))


def open_store(home: str | os.PathLike[str] | None = None, **options: Any) -> SQLiteRunStore:
    """The default store: ``pipewarden.db`` in ``home`` (argument > ``$PIPEWARDEN_HOME`` > the per-user default)."""
    from agent.settings import home as home_dir

    store = SQLiteRunStore(home_dir(home) / DB_NAME, **options)
    try:
        _retain(store, strict=True)
    except BaseException:
        store.close()
        raise
    return store


def _retain(store: SQLiteRunStore, *, strict: bool) -> None:
    """Apply the retention (at most once a day); a store that is busy now is pruned another time."""
    from agent.errors import ConfigError
    from agent.retention import apply_retention

    try:
        apply_retention(store, store.path.parent)
    except ConfigError as exc:
        if strict:
            raise
        logging.getLogger("pipewarden.retention").warning("%s; runs are kept", exc)
    except StoreError as exc:
        logging.getLogger("pipewarden.retention").warning("retention skipped this time: %s", exc)
