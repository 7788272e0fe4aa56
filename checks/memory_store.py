"""An in-memory :class:`~checks.base.CheckStore`, for tests and users without a run store."""

from __future__ import annotations

import copy
import datetime as dt
import threading
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from checks.base import Acceptance, StoredProfile

__all__ = ["MemoryStore"]

Key = tuple[str, str]  # (pipeline, dataset)


@dataclass(frozen=True)
class _KeyBatch:
    added_at: dt.datetime
    run_id: str
    hashes: np.ndarray  # sorted, distinct uint64


class MemoryStore:
    """Profiles, key sightings and row-count history held in this process, keyed by pipeline and dataset.

    >>> import datetime as dt, numpy as np
    >>> s = MemoryStore()
    >>> now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    >>> s.add_keys("etl", "orders", np.array([1, 2], dtype=np.uint64), run_id="r1", now=now)
    >>> s.seen_keys("etl", "orders", np.array([2, 3], dtype=np.uint64)).tolist()
    [True, False]
    >>> s.seen_keys("other", "orders", np.array([2], dtype=np.uint64)).tolist()
    [False]

    Each run's distinct key hashes are one sorted batch, stamped with the run's
    time: a reload is a new sighting, so a key is forgotten only when its last
    batch is pruned. Lookups are one vectorised binary search. How long keys
    are kept is the check's decision (``unique_across_runs(retention_days=)``
    calls ``prune_keys``); ``key_retention``, None by default, adds a pruning
    of this store's own whenever keys are added, and ``max_keys`` bounds the
    hashes held per dataset by dropping the oldest batches first.
    """

    def __init__(
        self,
        *,
        key_retention: dt.timedelta | None = None,
        max_keys: int | None = None,
        max_row_counts: int = 1000,
    ) -> None:
        self.key_retention = key_retention
        self.max_keys = max_keys
        self.max_row_counts = max_row_counts
        self._lock = threading.Lock()
        self._named: dict[Key, dict[str, Any]] = {}
        self._profiles: dict[tuple[str, str, str], list[StoredProfile]] = {}  # oldest first
        self._acceptances: dict[Key, list[Acceptance]] = {}
        self._newest_run: dict[Key, str] = {}  # the run of the latest profile of any check
        self._batches: dict[Key, list[_KeyBatch]] = {}
        self._merged: dict[Key, np.ndarray] = {}
        self._counts: dict[Key, list[tuple[dt.datetime, str, int]]] = {}

    # -- named reference profiles ------------------------------------------------------------
    def save_profile(self, pipeline: str, name: str, profile: dict[str, Any]) -> None:
        with self._lock:
            self._named[(pipeline, name)] = copy.deepcopy(dict(profile))

    def load_profile(self, pipeline: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            p = self._named.get((pipeline, name))
            return None if p is None else copy.deepcopy(p)

    # -- run profiles ------------------------------------------------------------------------
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
        rec = StoredProfile(run_id, check, now, accepted, now if pinned else None, copy.deepcopy(dict(profile)))
        with self._lock:
            rows = self._profiles.setdefault((pipeline, dataset, check), [])
            rows.append(rec)
            self._newest_run[(pipeline, dataset)] = run_id
            newest = {id(r) for r in rows[-max(int(keep), 1) :]}
            rows[:] = [r for r in rows if r.pinned is not None or id(r) in newest]

    def profiles(
        self, pipeline: str, dataset: str, check: str, *, limit: int, accepted_only: bool = True
    ) -> list[StoredProfile]:
        with self._lock:
            rows = [
                r
                for r in reversed(self._profiles.get((pipeline, dataset, check), []))
                if r.accepted or not accepted_only
            ]
            return [replace(r, profile=copy.deepcopy(r.profile)) for r in rows[: max(limit, 0)]]

    def accept_profiles(
        self, pipeline: str, dataset: str, run_id: str | None, *, now: dt.datetime, by: str, note: str
    ) -> int:
        with self._lock:
            accepted = 0
            chosen = run_id if run_id is not None else self._newest_run.get((pipeline, dataset), "")
            for (p, d, _), rows in self._profiles.items():
                if (p, d) != (pipeline, dataset) or not rows:
                    continue
                last = [len(rows) - 1]
                idx = last if run_id is None else [i for i, r in enumerate(rows) if r.run_id == run_id]
                for i in idx:
                    rows[i] = replace(rows[i], accepted=True, pinned=now)
                    accepted += 1
            if accepted:
                self._acceptances.setdefault((pipeline, dataset), []).append(
                    Acceptance(pipeline, dataset, chosen, now, by, note, accepted)
                )
            return accepted

    def acceptances(self, pipeline: str, dataset: str, *, limit: int = 50) -> list[Acceptance]:
        with self._lock:
            return list(reversed(self._acceptances.get((pipeline, dataset), [])))[: max(limit, 0)]

    # -- key hashes ----------------------------------------------------------------------------
    def seen_keys(self, pipeline: str, dataset: str, hashes: Any) -> np.ndarray:
        h = np.asarray(hashes, dtype=np.uint64)
        with self._lock:
            known = self._merged_keys((pipeline, dataset))
        if len(known) == 0 or len(h) == 0:
            return np.zeros(len(h), dtype=bool)
        pos = np.searchsorted(known, h)
        pos[pos == len(known)] = len(known) - 1
        return known[pos] == h

    def add_keys(self, pipeline: str, dataset: str, hashes: Any, *, run_id: str, now: dt.datetime) -> None:
        h = np.unique(np.asarray(hashes, dtype=np.uint64))
        key = (pipeline, dataset)
        with self._lock:
            batches = self._batches.setdefault(key, [])
            batches.append(_KeyBatch(now, run_id, h))
            if self.key_retention is not None:
                self._prune(key, now - self.key_retention)
            if self.max_keys is not None:
                while len(batches) > 1 and sum(len(b.hashes) for b in batches) > self.max_keys:
                    batches.pop(0)
            self._merged.pop(key, None)

    def prune_keys(self, pipeline: str, dataset: str, before: dt.datetime) -> int:
        with self._lock:
            return self._prune((pipeline, dataset), before)

    def key_count(self, pipeline: str, dataset: str) -> int:
        """Distinct key hashes remembered for ``dataset`` of ``pipeline``."""
        with self._lock:
            return len(self._merged_keys((pipeline, dataset)))

    def _prune(self, key: Key, before: dt.datetime) -> int:
        batches = self._batches.get(key, [])
        keep = [b for b in batches if b.added_at >= before]
        if len(keep) == len(batches):
            return 0
        known = len(self._merged_keys(key))
        self._batches[key] = keep
        self._merged.pop(key, None)
        return known - len(self._merged_keys(key))

    def _merged_keys(self, key: Key) -> np.ndarray:
        merged = self._merged.get(key)
        if merged is None:
            parts = [b.hashes for b in self._batches.get(key, [])]
            merged = np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.uint64)
            self._merged[key] = merged
        return merged

    # -- row counts ----------------------------------------------------------------------------
    def row_count_history(self, pipeline: str, dataset: str, limit: int) -> list[tuple[dt.datetime, int]]:
        with self._lock:
            rows = self._counts.get((pipeline, dataset), [])
            return [(t, r) for t, _, r in reversed(rows[-limit:])] if limit > 0 else []

    def add_row_count(self, pipeline: str, dataset: str, rows: int, *, run_id: str, now: dt.datetime) -> None:
        with self._lock:
            hist = self._counts.setdefault((pipeline, dataset), [])
            hist.append((now, run_id, int(rows)))
            del hist[: max(len(hist) - self.max_row_counts, 0)]
