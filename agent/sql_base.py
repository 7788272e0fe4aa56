"""What the SQL run stores share below their queries: a session, the store's identity, rows to records.

A backend (:mod:`agent.sqlite_store`, :mod:`agent.pg_store`) supplies
:meth:`SQLBase._db`, a context manager giving a :class:`Session` and turning
driver errors into :class:`~agent.errors.StoreError`; the queries
(:mod:`agent.sql_store`, :mod:`agent.sql_history`) are written once, with ``?``
placeholders, in SQL both SQLite and PostgreSQL accept.
"""

from __future__ import annotations

import abc
import datetime as dt
import json
import os
import socket
import threading
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from agent.records import AlertEvent, AlertState, RunRecord, RunStatus, TaskAttempt
from agent.store import RunStore, _process_start

__all__ = ["SQLBase", "Session"]


class Session(Protocol):
    """One connection for the length of a ``with store._db() as db:`` block."""

    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Any:
        """Run one statement; returns a DB-API cursor (``fetchone``, ``fetchall``, ``rowcount``, iteration)."""

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...

    def transaction(self) -> AbstractContextManager[Any]:
        """Statements inside commit together, or not at all (SQLite: ``BEGIN IMMEDIATE``, the write lock)."""

    def lock(self, key: str) -> None:
        """Inside a transaction: wait for other agents holding ``key`` until the transaction ends.

        PostgreSQL takes an advisory lock; SQLite's transaction holds the only write lock already.
        """


class SQLBase(RunStore):
    """The identity a store writes as a run's owner, and the session every query runs in.

    ``host`` is the name a RUNNING run records as its owner's host (default: this
    machine's host name). Agents sharing one store must have different names:
    a run of this host is judged by its process, a run of another by its lease.
    """

    dialect = ""

    def __init__(self, *, host: str | None = None) -> None:
        self._host = host or socket.gethostname()
        self._pid = os.getpid()
        self._start = _process_start(self._pid)
        # (pipeline, dataset) -> (last key_sets id read, rows read, sorted unique keys): key history, read once.
        self._keys: dict[tuple[str, str], tuple[int, int, Any]] = {}
        self._keys_lock = threading.Lock()

    @property
    def host(self) -> str:
        return self._host

    @abc.abstractmethod
    def _db(self) -> AbstractContextManager[Session]:
        """A session; every driver error inside the block leaves it as a StoreError."""


def utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)


def sorted_unique(a: Any) -> Any:
    import numpy as np

    a = np.sort(a)
    if a.size < 2:
        return a
    keep = np.empty(a.size, dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def contains(known: Any, sorted_probe: Any) -> Any:
    """Membership of a sorted probe in a sorted, unique array."""
    import numpy as np

    idx = np.searchsorted(known, sorted_probe)
    np.minimum(idx, known.size - 1, out=idx)
    return known[idx] == sorted_probe


RUN_COLUMNS = (
    "run_id, pipeline, status, trigger, version, params, logical_date, target, tasks, "
    "idempotency_key, created_at, started_at, ended_at, owner_pid, owner_host, error, triggered_by"
)


def run_record(r: Sequence[Any], attempts: tuple[TaskAttempt, ...]) -> RunRecord:
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
        triggered_by=r[16],
        attempts=attempts,
    )


ALERT_COLUMNS = (
    "fingerprint, alert, state, severity, labels, annotations, value, active_at, fired_at, resolved_at,"
    " last_sent_at, acknowledged_at, acknowledged_by, run_id, updated_at"
)


def alert_row(e: AlertEvent, now: float) -> tuple[Any, ...]:
    return (
        e.fingerprint,
        e.alert,
        str(e.state),
        e.severity,
        dumps(dict(e.labels)),
        dumps(dict(e.annotations)),
        e.value,
        e.active_at,
        e.fired_at,
        e.resolved_at,
        e.last_sent_at,
        e.acknowledged_at,
        e.acknowledged_by,
        e.run_id,
        e.updated_at if e.updated_at is not None else now,
    )


def alert_event(r: Sequence[Any]) -> AlertEvent:
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


def dumps(obj: Any) -> str:
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


def chunks(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    """``items`` in slices of at most ``size`` (an ``IN (?, ...)`` list stays under every driver's limit)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
