"""The history queries of the run store, written once for SQLite and PostgreSQL.

:class:`CheckHistorySQL` is the ``checks.base.CheckStore`` protocol (profiles,
baseline acceptances, key sightings, row counts, keyed by pipeline and
dataset); :class:`AlertStateSQL` the ``alerts.store.AlertStateStore`` one
(alert states and their history). Both are mixed into
:class:`agent.sql_store.SQLRunStore`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Iterable
from typing import Any

from agent.records import AlertEvent, AlertHistoryEntry, AlertState, HistoryKind
from agent.sql_base import ALERT_COLUMNS, Session, SQLBase, alert_event, alert_row, contains, dumps, sorted_unique, utc
from checks.base import Acceptance, StoredProfile

__all__ = ["AlertStateSQL", "CheckHistorySQL"]


class CheckHistorySQL(SQLBase):
    """Check history in SQL: what cross-run checks (drift, duplicates across runs, volume) read and write.

    >>> import tempfile; from agent.sqlite_store import SQLiteRunStore; from checks import CheckStore
    >>> isinstance(SQLiteRunStore(tempfile.mkdtemp() + "/pipewarden.db"), CheckStore)
    True
    """

    def save_profile(self, pipeline: str, name: str, profile: dict[str, Any]) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO reference_profiles VALUES (?,?,?,?) ON CONFLICT (pipeline, name) DO UPDATE"
                " SET profile=excluded.profile, updated_at=excluded.updated_at",
                (pipeline, name, dumps(profile), time.time()),
            )

    def load_profile(self, pipeline: str, name: str) -> dict[str, Any] | None:
        with self._db() as db:
            row = db.execute(
                "SELECT profile FROM reference_profiles WHERE pipeline=? AND name=?", (pipeline, name)
            ).fetchone()
        return json.loads(row[0]) if row else None

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
        t = now.timestamp()
        with self._db() as db, db.transaction():
            db.execute(
                "INSERT INTO check_profiles (pipeline, dataset, check_name, run_id, created_at, accepted,"
                " pinned_at, profile) VALUES (?,?,?,?,?,?,?,?)",
                (pipeline, dataset, check, run_id, t, int(accepted), t if pinned else None, dumps(profile)),
            )
            db.execute(
                "DELETE FROM check_profiles WHERE pipeline=? AND dataset=? AND check_name=?"
                " AND pinned_at IS NULL AND id NOT IN (SELECT id FROM check_profiles WHERE pipeline=?"
                " AND dataset=? AND check_name=? ORDER BY id DESC LIMIT ?)",
                (pipeline, dataset, check, pipeline, dataset, check, max(int(keep), 1)),
            )

    def profiles(
        self, pipeline: str, dataset: str, check: str, *, limit: int, accepted_only: bool = True
    ) -> list[StoredProfile]:
        sql = (
            "SELECT run_id, check_name, created_at, accepted, pinned_at, profile FROM check_profiles"
            " WHERE pipeline=? AND dataset=? AND check_name=?"
        )
        if accepted_only:
            sql += " AND accepted=1"
        with self._db() as db:
            rows = db.execute(sql + " ORDER BY id DESC LIMIT ?", (pipeline, dataset, check, max(limit, 0))).fetchall()
        return [
            StoredProfile(r[0], r[1], utc(r[2]), bool(r[3]), None if r[4] is None else utc(r[4]), json.loads(r[5]))
            for r in rows
        ]

    def accept_profiles(
        self, pipeline: str, dataset: str, run_id: str | None, *, now: dt.datetime, by: str, note: str
    ) -> int:
        with self._db() as db, db.transaction():
            db.lock(f"baseline:{pipeline}:{dataset}")
            if run_id is None:  # each check's newest profile
                ids = [
                    r[0]
                    for r in db.execute(
                        "SELECT max(id) FROM check_profiles WHERE pipeline=? AND dataset=? GROUP BY check_name",
                        (pipeline, dataset),
                    ).fetchall()
                ]
                row = db.execute(
                    "SELECT run_id FROM check_profiles WHERE pipeline=? AND dataset=? ORDER BY id DESC LIMIT 1",
                    (pipeline, dataset),
                ).fetchone()
                chosen = row[0] if row else ""
            else:
                ids = [
                    r[0]
                    for r in db.execute(
                        "SELECT id FROM check_profiles WHERE pipeline=? AND dataset=? AND run_id=?",
                        (pipeline, dataset, run_id),
                    ).fetchall()
                ]
                chosen = run_id
            if ids:
                marks = ",".join("?" * len(ids))
                db.execute(
                    f"UPDATE check_profiles SET accepted=1, pinned_at=? WHERE id IN ({marks})", (now.timestamp(), *ids)
                )
                db.execute(
                    "INSERT INTO baseline_acceptances (pipeline, dataset, run_id, accepted_at, accepted_by,"
                    " note, profiles) VALUES (?,?,?,?,?,?,?)",
                    (pipeline, dataset, chosen, now.timestamp(), by, note, len(ids)),
                )
        return len(ids)

    def acceptances(self, pipeline: str, dataset: str, *, limit: int = 50) -> list[Acceptance]:
        with self._db() as db:
            rows = db.execute(
                "SELECT pipeline, dataset, run_id, accepted_at, accepted_by, note, profiles FROM baseline_acceptances"
                " WHERE pipeline=? AND dataset=? ORDER BY id DESC LIMIT ?",
                (pipeline, dataset, max(limit, 0)),
            ).fetchall()
        return [Acceptance(r[0], r[1], r[2], utc(r[3]), r[4], r[5], r[6]) for r in rows]

    def baseline_pipelines(self, dataset: str, run_id: str | None = None) -> list[str]:
        """Pipelines with a drift profile of ``dataset`` (of run ``run_id``, when given); for the CLI."""
        sql = "SELECT DISTINCT pipeline FROM check_profiles WHERE dataset=?"
        args: tuple[Any, ...] = (dataset,)
        if run_id is not None:
            sql += " AND run_id=?"
            args += (run_id,)
        with self._db() as db:
            return sorted(r[0] for r in db.execute(sql, args).fetchall())

    def seen_keys(self, pipeline: str, dataset: str, hashes: Any) -> Any:
        import numpy as np

        h = np.ascontiguousarray(hashes, dtype=np.uint64)
        with self._db() as db:
            known = self._known_keys(db, pipeline, dataset)
        if known.size == 0 or h.size == 0:
            return np.zeros(h.shape, dtype=bool)
        # Probing in sorted order keeps searchsorted cache-friendly (several times faster than np.isin).
        order = np.argsort(h, kind="stable")
        out = np.empty(h.shape, dtype=bool)
        out[order] = contains(known, h[order])
        return out

    def _known_keys(self, db: Session, pipeline: str, dataset: str) -> Any:
        """Sorted, unique uint64 array of every key with a sighting on record; extended incrementally.

        Sightings are added with ids in commit order (:meth:`add_keys` holds a lock per dataset), so the
        rows past the last id read are the new ones; rows gone below it (another agent pruned) start over.
        """
        import numpy as np

        key = (pipeline, dataset)
        with self._keys_lock:
            last_id, count, known = self._keys.get(key, (0, 0, np.empty(0, dtype=np.uint64)))
        if last_id:
            (still,) = db.execute(
                "SELECT count(*) FROM key_sets WHERE pipeline=? AND dataset=? AND id<=?", (pipeline, dataset, last_id)
            ).fetchone()
            if still != count:
                last_id, count, known = 0, 0, np.empty(0, dtype=np.uint64)
        rows = db.execute(
            "SELECT id, hashes FROM key_sets WHERE pipeline=? AND dataset=? AND id>? ORDER BY id",
            (pipeline, dataset, last_id),
        ).fetchall()
        if rows or not last_id:
            parts = [known, *(np.frombuffer(blob, dtype="<u8").astype(np.uint64) for _, blob in rows)]
            known = sorted_unique(np.concatenate(parts))
            last_id, count = (rows[-1][0], count + len(rows)) if rows else (0, 0)
            with self._keys_lock:
                self._keys[key] = (last_id, count, known)
        return known

    def add_keys(self, pipeline: str, dataset: str, hashes: Any, *, run_id: str, now: dt.datetime) -> None:
        import numpy as np

        # Every key of the run is stored, seen before or not: a reload is a sighting, and the
        # retention of a key counts from its last one.
        h = sorted_unique(np.ascontiguousarray(hashes, dtype=np.uint64))
        if not h.size:
            return
        with self._db() as db, db.transaction():
            db.lock(f"keys:{pipeline}:{dataset}")  # ids of one dataset's sightings commit in order
            db.execute(
                "INSERT INTO key_sets (pipeline, dataset, run_id, created_at, n, hashes) VALUES (?,?,?,?,?,?)",
                (pipeline, dataset, run_id, now.timestamp(), int(h.size), h.astype("<u8").tobytes()),
            )

    def prune_keys(self, pipeline: str, dataset: str, before: dt.datetime) -> int:
        """Delete the sightings of ``dataset``'s keys before ``before``; return how many keys are forgotten.

        A key sighted again since is still remembered: its newer sighting stays.
        """
        import numpy as np

        with self._db() as db:
            rows = db.execute(
                "DELETE FROM key_sets WHERE pipeline=? AND dataset=? AND created_at<? RETURNING hashes",
                (pipeline, dataset, before.timestamp()),
            ).fetchall()
            if not rows:
                return 0
            with self._keys_lock:
                self._keys.pop((pipeline, dataset), None)  # the cached array still holds the dropped sightings
            dropped = sorted_unique(np.concatenate([np.frombuffer(b, dtype="<u8").astype(np.uint64) for (b,) in rows]))
            known = self._known_keys(db, pipeline, dataset)
        if known.size == 0:
            return int(dropped.size)
        return int(dropped.size - np.count_nonzero(contains(known, dropped)))

    def row_count_history(self, pipeline: str, dataset: str, limit: int) -> list[tuple[dt.datetime, int]]:
        with self._db() as db:
            rows = db.execute(
                "SELECT created_at, rows FROM row_counts WHERE pipeline=? AND dataset=? ORDER BY id DESC LIMIT ?",
                (pipeline, dataset, limit),
            ).fetchall()
        return [(utc(r[0]), r[1]) for r in rows]

    def add_row_count(self, pipeline: str, dataset: str, rows: int, *, run_id: str, now: dt.datetime) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO row_counts (pipeline, dataset, run_id, rows, created_at) VALUES (?,?,?,?,?)",
                (pipeline, dataset, run_id, int(rows), now.timestamp()),
            )


class AlertStateSQL(SQLBase):
    """Alert states (one row per fingerprint) and their history, in SQL (``alerts.store.AlertStateStore``).

    >>> import tempfile; from agent.sqlite_store import SQLiteRunStore; from alerts.store import AlertStateStore
    >>> isinstance(SQLiteRunStore(tempfile.mkdtemp() + "/pipewarden.db"), AlertStateStore)
    True
    """

    def save_alert(self, event: AlertEvent) -> None:
        # An acknowledgement stored for the same incident (same fired_at) survives a save that has none:
        # `pipewarden alerts ack` may have written it since the evaluator read the alert.
        same_incident = "excluded.acknowledged_at IS NULL AND alert_states.fired_at = excluded.fired_at"
        with self._db() as db:
            db.execute(
                f"INSERT INTO alert_states ({ALERT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (fingerprint) DO UPDATE SET alert=excluded.alert, state=excluded.state,"
                " severity=excluded.severity, labels=excluded.labels, annotations=excluded.annotations,"
                " value=excluded.value, active_at=excluded.active_at, fired_at=excluded.fired_at,"
                " resolved_at=excluded.resolved_at, last_sent_at=excluded.last_sent_at, run_id=excluded.run_id,"
                " updated_at=excluded.updated_at,"
                f" acknowledged_at=CASE WHEN {same_incident} THEN alert_states.acknowledged_at"
                "   ELSE excluded.acknowledged_at END,"
                f" acknowledged_by=CASE WHEN {same_incident} THEN alert_states.acknowledged_by"
                "   ELSE excluded.acknowledged_by END",
                alert_row(event, time.time()),
            )

    def get_alert(self, fingerprint: str) -> AlertEvent | None:
        with self._db() as db:
            row = db.execute(f"SELECT {ALERT_COLUMNS} FROM alert_states WHERE fingerprint=?", (fingerprint,)).fetchone()
        return alert_event(row) if row else None

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
        sql = f"SELECT {ALERT_COLUMNS} FROM alert_states"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY updated_at DESC, fingerprint DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._db() as db:
            rows = db.execute(sql, args).fetchall()
        return [alert_event(r) for r in rows]

    def acknowledge_alert(self, fingerprint: str, *, by: str, now: float) -> AlertEvent | None:
        with self._db() as db, db.transaction():
            db.lock(f"alert:{fingerprint}")  # two people acknowledging at once: the first one counts
            row = db.execute(f"SELECT {ALERT_COLUMNS} FROM alert_states WHERE fingerprint=?", (fingerprint,)).fetchone()
            current = alert_event(row) if row else None
            if current is None or current.state is not AlertState.FIRING or current.acknowledged_at is not None:
                return current if current is not None and current.state is AlertState.FIRING else None
            db.execute(
                "UPDATE alert_states SET acknowledged_at=?, acknowledged_by=?, updated_at=? WHERE fingerprint=?",
                (now, by, now, fingerprint),
            )
            db.execute(
                "INSERT INTO alert_history (fingerprint, alert, kind, name, run_id, at) VALUES (?,?,?,?,?,?)",
                (fingerprint, current.alert, str(HistoryKind.ACK), by, current.run_id, now),
            )
        return dataclasses.replace(current, acknowledged_at=now, acknowledged_by=by, updated_at=now)

    def add_alert_history(self, entry: AlertHistoryEntry) -> None:
        with self._db() as db:
            db.execute(
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
        with self._db() as db:
            rows = db.execute(sql, args).fetchall()
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
            for r in rows
        ]

    def count_alert_history(
        self, *, fingerprint: str, kind: str, since: float, name: str | None = None, outcome: str | None = None
    ) -> int:
        sql = "SELECT count(*) FROM alert_history WHERE fingerprint=? AND kind=? AND at >= ?"
        args: list[Any] = [fingerprint, str(kind), since]
        for column, value in (("name", name), ("outcome", outcome)):
            if value is not None:
                sql += f" AND {column}=?"
                args.append(str(value))
        with self._db() as db:
            return int(db.execute(sql, args).fetchone()[0])

    def prune_alerts(self, before: float) -> int:
        with self._db() as db, db.transaction():
            states = db.execute(
                "DELETE FROM alert_states WHERE state IN ('resolved', 'inactive') AND updated_at < ?", (before,)
            ).rowcount
            history = db.execute("DELETE FROM alert_history WHERE at < ?", (before,)).rowcount
        return int(states) + int(history)
