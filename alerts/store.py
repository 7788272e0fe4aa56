"""Where alert states and their history are kept: a protocol, and an in-memory implementation.

The evaluator keeps every alert that is pending or firing in an
:class:`AlertStateStore`, so a restart neither re-notifies nor forgets a
firing alert; every transition, notification outcome, automated response and
acknowledgement goes into the alert's history. The run store (SQLite or
PostgreSQL, ``agent.sql_history.AlertStateSQL``) implements the protocol;
:class:`MemoryAlertStore` is for tests and for processes that keep no history.

>>> from agent.records import AlertEvent, AlertState
>>> store = MemoryAlertStore()
>>> store.save_alert(AlertEvent("ab12", "PipelineRunFailed", AlertState.FIRING, fired_at=10.0, updated_at=10.0))
>>> store.acknowledge_alert("ab12", by="alice", now=70.0).acknowledged_by
'alice'
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from agent.errors import PipewardenError
from agent.records import AlertEvent, AlertHistoryEntry, AlertState, HistoryKind

__all__ = [
    "AlertHistoryEntry",
    "AlertNotFoundError",
    "AlertStateStore",
    "HistoryKind",
    "MemoryAlertStore",
    "find_alert",
    "merge_acknowledgement",
]


@runtime_checkable
class AlertStateStore(Protocol):
    """Alert states by fingerprint, and their history. Implementations are safe to share between threads."""

    def save_alert(self, event: AlertEvent) -> None:
        """Insert or replace the state of ``event.fingerprint``.

        An acknowledgement already stored for the same incident (same
        ``fired_at``) is kept when ``event`` carries none: another process may
        have acknowledged it since the caller read it (see :func:`merge_acknowledgement`).
        """

    def get_alert(self, fingerprint: str) -> AlertEvent | None: ...

    def list_alerts(
        self,
        *,
        states: Iterable[str] | None = None,
        updated_since: float | None = None,
        prefix: str | None = None,
        limit: int | None = None,
    ) -> list[AlertEvent]:
        """Alerts in ``states`` (default: all), changed at or after ``updated_since``, whose fingerprint starts
        with ``prefix``; most recently changed first."""

    def acknowledge_alert(self, fingerprint: str, *, by: str, now: float) -> AlertEvent | None:
        """Mark the firing alert ``fingerprint`` acknowledged by ``by`` at ``now`` and record it in its history.

        Returns the alert; unchanged when it was acknowledged already; None when
        no firing alert has that fingerprint.
        """

    def add_alert_history(self, entry: AlertHistoryEntry) -> None: ...

    def alert_history(
        self,
        *,
        fingerprint: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        limit: int | None = 100,
    ) -> list[AlertHistoryEntry]:
        """History entries, newest first."""

    def count_alert_history(
        self, *, fingerprint: str, kind: str, since: float, name: str | None = None, outcome: str | None = None
    ) -> int:
        """How many entries match, at or after ``since`` (the rate limit of automated responses)."""

    def prune_alerts(self, before: float) -> int:
        """Forget resolved and inactive alerts last changed before ``before``, and history older than it;
        return how many rows were dropped."""


def merge_acknowledgement(new: AlertEvent, old: AlertEvent | None) -> AlertEvent:
    """``new``, keeping ``old``'s acknowledgement when both are the same incident and ``new`` has none."""
    if (
        old is not None
        and new.acknowledged_at is None
        and old.acknowledged_at is not None
        and old.fired_at is not None
        and old.fired_at == new.fired_at
    ):
        return dataclasses.replace(new, acknowledged_at=old.acknowledged_at, acknowledged_by=old.acknowledged_by)
    return new


class MemoryAlertStore:
    """An :class:`AlertStateStore` in a dict; nothing survives the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._alerts: dict[str, AlertEvent] = {}
        self._history: list[AlertHistoryEntry] = []
        self._next_id = 1

    def save_alert(self, event: AlertEvent) -> None:
        with self._lock:
            self._alerts[event.fingerprint] = merge_acknowledgement(event, self._alerts.get(event.fingerprint))

    def get_alert(self, fingerprint: str) -> AlertEvent | None:
        with self._lock:
            return self._alerts.get(fingerprint)

    def list_alerts(
        self,
        *,
        states: Iterable[str] | None = None,
        updated_since: float | None = None,
        prefix: str | None = None,
        limit: int | None = None,
    ) -> list[AlertEvent]:
        wanted = {str(s) for s in states} if states is not None else None
        with self._lock:
            rows = [
                a
                for a in self._alerts.values()
                if (wanted is None or str(a.state) in wanted)
                and (updated_since is None or (a.updated_at or 0.0) >= updated_since)
                and (prefix is None or a.fingerprint.startswith(prefix))
            ]
        rows.sort(key=lambda a: (a.updated_at or 0.0, a.fingerprint), reverse=True)
        return rows if limit is None else rows[:limit]

    def acknowledge_alert(self, fingerprint: str, *, by: str, now: float) -> AlertEvent | None:
        with self._lock:
            current = self._alerts.get(fingerprint)
            if current is None or current.state != AlertState.FIRING:
                return None
            if current.acknowledged_at is not None:
                return current
            acked = dataclasses.replace(current, acknowledged_at=now, acknowledged_by=by, updated_at=now)
            self._alerts[fingerprint] = acked
            self._append(
                AlertHistoryEntry(fingerprint, current.alert, HistoryKind.ACK, now, name=by, run_id=current.run_id)
            )
            return acked

    def add_alert_history(self, entry: AlertHistoryEntry) -> None:
        with self._lock:
            self._append(entry)

    def _append(self, entry: AlertHistoryEntry) -> None:
        self._history.append(dataclasses.replace(entry, id=self._next_id))
        self._next_id += 1

    def alert_history(
        self,
        *,
        fingerprint: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        limit: int | None = 100,
    ) -> list[AlertHistoryEntry]:
        with self._lock:
            rows = [
                e
                for e in reversed(self._history)
                if (fingerprint is None or e.fingerprint == fingerprint)
                and (kind is None or e.kind == kind)
                and (since is None or e.at >= since)
            ]
        rows.sort(key=lambda e: (e.at, e.id), reverse=True)
        return rows if limit is None else rows[:limit]

    def count_alert_history(
        self, *, fingerprint: str, kind: str, since: float, name: str | None = None, outcome: str | None = None
    ) -> int:
        with self._lock:
            return sum(
                1
                for e in self._history
                if e.fingerprint == fingerprint
                and e.kind == kind
                and e.at >= since
                and (name is None or e.name == name)
                and (outcome is None or e.outcome == outcome)
            )

    def prune_alerts(self, before: float) -> int:
        done = (AlertState.RESOLVED, AlertState.INACTIVE)
        with self._lock:
            old = [fp for fp, a in self._alerts.items() if a.state in done and (a.updated_at or 0.0) < before]
            for fp in old:
                del self._alerts[fp]
            kept = [e for e in self._history if e.at >= before]
            dropped = len(self._history) - len(kept)
            self._history = kept
        return len(old) + dropped


def find_alert(store: AlertStateStore, alert_id: str) -> AlertEvent:
    """The alert whose fingerprint is ``alert_id`` or starts with it (at least 4 characters).

    Raises :class:`AlertNotFoundError` (also a ``LookupError``) naming what was
    found: no alert, or several that the prefix does not tell apart.
    """
    text = alert_id.strip().lower()
    exact = store.get_alert(text) if text else None
    if exact is not None:
        return exact
    if len(text) < 4:
        raise AlertNotFoundError(
            f"alert id {alert_id!r} is too short; give at least 4 characters of the id `pipewarden alerts list` shows"
        )
    found = store.list_alerts(prefix=text, limit=5)
    if len(found) == 1:
        return found[0]
    if not found:
        raise AlertNotFoundError(f"there is no alert {alert_id!r} in the store; `pipewarden alerts list` shows them")
    ids = ", ".join(a.fingerprint for a in found)
    raise AlertNotFoundError(f"alert id {alert_id!r} matches several alerts ({ids}); give more characters")


class AlertNotFoundError(PipewardenError, LookupError):
    """No alert (or more than one) matches the id given."""
