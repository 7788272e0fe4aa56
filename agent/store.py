"""The run store: runs, task states, check results, check history, alert states, schedule claims.

:class:`RunStore` is the interface; two backends implement it with the same SQL
(:mod:`agent.sql_store`, :mod:`agent.sql_history`):

* :class:`~agent.sqlite_store.SQLiteRunStore`, the default: one file at
  ``$PIPEWARDEN_HOME/pipewarden.db``, WAL mode;
* :class:`~agent.pg_store.PostgresRunStore`: one PostgreSQL database shared by
  several agents on several hosts (``PIPEWARDEN_STORE=postgresql://...``, or
  ``agent: {store: ...}`` in pipewarden.yml; psycopg, the ``postgresql`` extra).

:func:`open_store` picks one: the ``url`` argument, else ``$PIPEWARDEN_STORE``,
else SQLite in the state directory. :data:`MIGRATIONS` is the one schema both
run, versioned.

Durability: every state change is committed before the runner acts on it. In
SQLite ``synchronous=NORMAL`` (the default) makes a commit survive the death of
the process (what resume needs) at ~20 µs; ``FULL`` also survives power loss at
the price of an fsync per commit. PostgreSQL commits as the server is set up
(``synchronous_commit``; ``options=-c synchronous_commit=off`` in the URL trades
the last fraction of a second before a server crash for speed);
``bench/orchestrator.py`` prints each.

Ownership: a RUNNING run names its owner (host, pid) and holds a lease
(``lease_until``) its runner renews. A run of this host whose process is gone,
or a run of another host whose lease ran out, is interrupted
(:meth:`RunStore.recover_interrupted`); :meth:`RunStore.start_run` with
``from_status`` is a claim: of two agents handed the same queued run, one starts it.
"""

from __future__ import annotations

import abc
import datetime as dt
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.records import RunRecord, RunStatus
from checks.base import CheckStore
from checks.result import CheckResult

if TYPE_CHECKING:
    from agent.pg_store import PostgresRunStore
    from agent.sql_store import SQLRunStore
    from agent.sqlite_store import SQLiteRunStore

__all__ = [
    "APPLICATION_ID",
    "DB_NAME",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Only",
    "PostgresRunStore",
    "RunStore",
    "SQLiteRunStore",
    "open_store",
    "pid_alive",
    "statements",
]

DB_NAME = "pipewarden.db"
#: ``PRAGMA application_id`` of a pipewarden SQLite store ("PwRs"): tells it from another application's file.
APPLICATION_ID = 0x50775273


@dataclass(frozen=True)
class Only:
    """A migration statement for one backend (``"sqlite"`` or ``"postgresql"``) only."""

    dialect: str
    sql: str


# Each entry is one schema version; never edit a released entry, append a new one. Both backends run the
# same entries: write SQL both accept (SQLite's types, INTEGER PRIMARY KEY, REAL, BLOB, are translated for
# PostgreSQL by agent.pg_store.postgres_ddl); a statement only one of them needs is wrapped in Only(...).
MIGRATIONS: tuple[tuple[str | Only, ...], ...] = (
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
        # SQLite numbers the rows of runs (rowid); list_runs orders ties by it. PostgreSQL gets the same column.
        Only("postgresql", "ALTER TABLE runs ADD COLUMN rowid INTEGER GENERATED ALWAYS AS IDENTITY"),
    ),
    (  # 2: check history keyed by (pipeline, dataset); run profiles, baseline acceptances
        # Which pipeline a dataset belongs to, where the recorded check results say so unambiguously.
        Only(
            "sqlite",
            """CREATE TEMP TABLE dataset_pipeline AS
            SELECT json_extract(c.result, '$.dataset') AS dataset, min(r.pipeline) AS pipeline
            FROM check_results c JOIN runs r ON r.run_id = c.run_id
            WHERE json_extract(c.result, '$.dataset') IS NOT NULL
            GROUP BY 1 HAVING count(DISTINCT r.pipeline) = 1""",
        ),
        "ALTER TABLE key_sets ADD COLUMN pipeline TEXT NOT NULL DEFAULT ''",
        Only(
            "sqlite",
            """UPDATE key_sets SET pipeline = coalesce(
            (SELECT pipeline FROM runs WHERE runs.run_id = key_sets.run_id),
            (SELECT pipeline FROM dataset_pipeline d WHERE d.dataset = key_sets.dataset), '')""",
        ),
        "DROP INDEX key_sets_by_dataset",
        "CREATE INDEX key_sets_by_dataset ON key_sets (pipeline, dataset, id)",
        "CREATE INDEX key_sets_by_time ON key_sets (pipeline, dataset, created_at)",
        "ALTER TABLE row_counts ADD COLUMN pipeline TEXT NOT NULL DEFAULT ''",
        Only(
            "sqlite",
            """UPDATE row_counts SET pipeline = coalesce(
            (SELECT pipeline FROM runs WHERE runs.run_id = row_counts.run_id),
            (SELECT pipeline FROM dataset_pipeline d WHERE d.dataset = row_counts.dataset), '')""",
        ),
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
        Only(
            "sqlite",
            """INSERT INTO reference_profiles (pipeline, name, profile, updated_at)
            SELECT coalesce(d.pipeline, ''), p.name, p.profile, p.updated_at FROM profiles p
            LEFT JOIN dataset_pipeline d ON d.dataset = CASE WHEN p.name LIKE '%:schema'
                THEN substr(p.name, 1, length(p.name) - 7) ELSE p.name END""",
        ),
        # A profile named like a dataset was that dataset's moving drift baseline: it becomes the
        # accepted baseline of each drift check recorded on the dataset, if the pipeline is known.
        Only(
            "sqlite",
            """INSERT INTO check_profiles (pipeline, dataset, check_name, run_id, created_at, accepted, pinned_at,
                                       profile)
            SELECT d.pipeline, p.name, c.check_name, '', p.updated_at, 1, NULL, p.profile FROM profiles p
            JOIN dataset_pipeline d ON d.dataset = p.name
            JOIN (SELECT DISTINCT json_extract(result, '$.dataset') AS dataset, check_name FROM check_results
                  WHERE json_extract(result, '$.kind') = 'drift') c ON c.dataset = p.name""",
        ),
        "DROP TABLE profiles",
        Only("sqlite", "DROP TABLE dataset_pipeline"),
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
    (  # 7: what each task attempt logged and printed; the run whose end started a run (pipelines after pipelines)
        "ALTER TABLE task_runs ADD COLUMN logs TEXT",
        "ALTER TABLE runs ADD COLUMN triggered_by TEXT",
    ),
    (  # 8: items of mapped tasks, sensor pokes, and the outputs cached across runs
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


def statements(version: int, dialect: str) -> Iterator[str]:
    """The statements of schema ``version`` (1-based) that ``dialect`` runs, as written."""
    for stmt in MIGRATIONS[version - 1]:
        if isinstance(stmt, Only):
            if stmt.dialect == dialect:
                yield stmt.sql
        else:
            yield stmt


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


class RunStore(CheckStore, abc.ABC):
    """Where runs and task states are kept; also the history cross-run checks use (``CheckStore``).

    >>> import tempfile
    >>> with open_store(tempfile.mkdtemp()) as store:
    ...     store.create_run(run_id="r1", pipeline="orders", trigger="manual", now=0.0)
    True

    Every method raises :class:`~agent.errors.StoreError` (never a raw driver
    error) when the store cannot be read or written.
    """

    #: Where the store is, for messages: a file path, or a server URL without its password.
    location: str = ""

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
        triggered_by: str | None = None,
    ) -> bool:
        """Record a new run; False (and nothing written) when ``idempotency_key`` was already used.

        ``triggered_by``: the run (of another pipeline) whose end started this one."""

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
        from_status: RunStatus | None = None,
    ) -> None:
        """Mark a run RUNNING and owned by this process (host, pid), its lease until ``lease_until``.

        With ``max_active``, atomically (two processes, on any host, never both get
        the last slot): only when fewer than ``max_active`` other runs of its pipeline
        are RUNNING; otherwise raise :class:`~agent.errors.RunLimitError` and change
        nothing. With ``from_status`` it is a claim: only when the run is still in that
        state; otherwise (another agent started it first) raise
        :class:`~agent.errors.RunClaimedError` and change nothing.
        """

    @abc.abstractmethod
    def discard_run(self, run_id: str) -> None:
        """Delete a run recorded QUEUED that never started (a start refused by ``max_active_runs``)."""

    @abc.abstractmethod
    def finish_run(self, run_id: str, status: RunStatus, *, now: float, error: str | None = None) -> None:
        """Record the end of a run; a run another process owns now (it resumed it) is left to that process."""

    @abc.abstractmethod
    def renew_lease(self, run_id: str, lease_until: float) -> bool:
        """Extend this process's lease on a RUNNING run; False when the run is no longer its own
        (another agent found the lease expired and recorded the run interrupted)."""

    @abc.abstractmethod
    def get_run(self, run_id: str, *, logs: bool = False) -> RunRecord | None:
        """The run with its task attempts; with ``logs``, each attempt's ``logs`` too (they can be large)."""

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
    def upstream_events(
        self, pipeline: str, task: str | None = None, *, since: float
    ) -> list[tuple[str, float, dt.datetime | None]]:
        """``(run_id, at, logical_date)`` of the runs of ``pipeline`` that succeeded at ``at >= since``, oldest
        first; with ``task``, of its runs (running or ended) in which that task succeeded (``at``: when it did)."""

    @abc.abstractmethod
    def get_meta(self, key: str) -> str | None:
        """A small store-wide fact (scheduler marks); None when never set."""

    @abc.abstractmethod
    def set_meta(self, key: str, value: str) -> None: ...

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
        logs: str | None = None,
    ) -> None:
        """Record the end of an attempt; ``logs``: what it logged and printed (:mod:`agent.tasklogs`)."""

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

    @abc.abstractmethod
    def cancel_running_tasks(
        self, run_id: str, *, now: float, reason: str, status: RunStatus = RunStatus.CANCELLED
    ) -> list[str]:
        """Mark the RUNNING and WAITING task attempts of a run ``status`` (the runner gave up waiting); return
        their tasks (not the items of mapped tasks: the runner records the mapped task itself)."""

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

    def close(self) -> None:
        """Release connections."""

    @property
    def closed(self) -> bool:
        return False

    @property
    def files(self) -> tuple[Path, ...]:
        """The local files the store is kept in (its directory first); none for a server."""
        return ()

    @classmethod
    def default(
        cls, home: str | os.PathLike[str] | None = None, *, url: str | None = None, env: Mapping[str, str] | None = None
    ) -> RunStore:
        """The process's shared store, opened on first use: ``url``, else ``$PIPEWARDEN_STORE``, else
        SQLite under ``home`` (default ``$PIPEWARDEN_HOME``)."""
        from agent.settings import home as home_dir

        url = store_url(url, env)
        key = url if url is not None else str((home_dir(home) / DB_NAME).resolve())
        with _DEFAULTS_LOCK:
            found = _DEFAULTS.get(key)
            # A forked child (a process executor's worker) must not share its parent's connections.
            if found is None or found[1] != os.getpid() or found[0].closed:
                store = _connect(home, url)
                _DEFAULTS[key] = (store, os.getpid())
                _retain(store, home, strict=False)
                return store
            return found[0]

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_DEFAULTS: dict[str, tuple[RunStore, int]] = {}
_DEFAULTS_LOCK = threading.Lock()

#: URL schemes of :data:`agent.settings.PIPEWARDEN_STORE` and ``agent.store``.
SCHEMES = ("postgresql://", "postgres://", "sqlite://")


def store_url(url: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """The store URL in force: ``url``, else ``$PIPEWARDEN_STORE``; None for the default (SQLite in the home).

    Raises ConfigError naming what is allowed for a URL of another kind.
    """
    from agent.errors import ConfigError
    from agent.settings import PIPEWARDEN_STORE

    where = "the store URL"
    if url is None:
        url = (os.environ if env is None else env).get(PIPEWARDEN_STORE)
        where = PIPEWARDEN_STORE
    url = (url or "").strip()
    if not url:
        return None
    if not url.lower().startswith(SCHEMES):
        shown = url.split("://", 1)[0] + "://..." if "://" in url else url
        raise ConfigError(
            f"{where} must be a postgresql://user@host:port/database URL (or sqlite:///path/to/pipewarden.db) "
            f"— got {shown!r}"
        )
    return url


def _connect(home: str | os.PathLike[str] | None, url: str | None, **options: Any) -> SQLRunStore:
    if url is not None and url.lower().startswith(("postgresql://", "postgres://")):
        from agent.pg_store import PostgresRunStore

        return PostgresRunStore(url, **options)
    from agent.settings import home as home_dir
    from agent.sqlite_store import SQLiteRunStore

    if url is not None:  # sqlite:///absolute/path or sqlite://relative/path
        path = url.split("://", 1)[1]
        return SQLiteRunStore(path if path else home_dir(home) / DB_NAME, **options)
    return SQLiteRunStore(home_dir(home) / DB_NAME, **options)


def open_store(
    home: str | os.PathLike[str] | None = None,
    *,
    url: str | None = None,
    env: Mapping[str, str] | None = None,
    retain: bool = True,
    **options: Any,
) -> SQLRunStore:
    """A new store: ``url``, else ``$PIPEWARDEN_STORE``, else ``pipewarden.db`` in ``home`` (argument >
    ``$PIPEWARDEN_HOME`` > the per-user default). ``retain``: apply the retention (at most once a day)."""
    store = _connect(home, store_url(url, env), **options)
    if retain:
        try:
            _retain(store, home, strict=True)
        except BaseException:
            store.close()
            raise
    return store


def _retain(store: RunStore, home: str | os.PathLike[str] | None, *, strict: bool) -> None:
    """Apply the retention (at most once a day); a store that is busy now is pruned another time."""
    from agent.errors import ConfigError, StoreError
    from agent.retention import apply_retention
    from agent.settings import home as home_dir

    files = store.files
    try:
        apply_retention(store, files[0] if files else home_dir(home))
    except ConfigError as exc:
        if strict:
            raise
        logging.getLogger("pipewarden.retention").warning("%s; runs are kept", exc)
    except StoreError as exc:
        logging.getLogger("pipewarden.retention").warning("retention skipped this time: %s", exc)


def __getattr__(name: str) -> Any:
    # The backends import this module; naming them here lazily keeps both import orders working
    # (and `import agent.store` from importing psycopg).
    if name == "SQLiteRunStore":
        from agent.sqlite_store import SQLiteRunStore

        return SQLiteRunStore
    if name == "PostgresRunStore":
        from agent.pg_store import PostgresRunStore

        return PostgresRunStore
    raise AttributeError(f"module 'agent.store' has no attribute {name!r}")
