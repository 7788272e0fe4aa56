"""An in-memory :class:`~checks.base.CheckStore`, for tests and users without a run store."""

from __future__ import annotations

import copy
import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MemoryStore"]


@dataclass(frozen=True)
class _KeyBatch:
    added_at: dt.datetime
    run_id: str
    hashes: np.ndarray  # sorted, distinct uint64


class MemoryStore:
    """Profiles, key hashes and row-count history held in this process.

    >>> import datetime as dt, numpy as np
    >>> s = MemoryStore()
    >>> now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    >>> s.add_keys("orders", np.array([1, 2], dtype=np.uint64), run_id="r1", now=now)
    >>> s.seen_keys("orders", np.array([2, 3], dtype=np.uint64)).tolist()
    [True, False]

    Key hashes are kept per run in sorted arrays and answered with a binary
    search, so checking millions of keys is one vectorised pass. How long keys
    are kept is the check's decision (``unique_across_runs(retention_days=)``
    calls ``prune_keys``); ``key_retention``, None by default, adds a pruning
    of this store's own whenever keys are added, and ``max_keys`` bounds the
    total per dataset by dropping the oldest batches first. Times are
    timezone-aware, as :class:`~checks.base.CheckContext` gives them.
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
        self._profiles: dict[str, dict[str, Any]] = {}
        self._batches: dict[str, list[_KeyBatch]] = {}
        self._merged: dict[str, np.ndarray] = {}
        self._counts: dict[str, list[tuple[dt.datetime, str, int]]] = {}

    # -- profiles ------------------------------------------------------------------------
    def save_profile(self, name: str, profile: dict[str, Any]) -> None:
        with self._lock:
            self._profiles[name] = copy.deepcopy(dict(profile))

    def load_profile(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            p = self._profiles.get(name)
            return None if p is None else copy.deepcopy(p)

    # -- key hashes ----------------------------------------------------------------------
    def seen_keys(self, dataset: str, hashes: Any) -> np.ndarray:
        h = np.asarray(hashes, dtype=np.uint64)
        with self._lock:
            known = self._merged_keys(dataset)
        if len(known) == 0 or len(h) == 0:
            return np.zeros(len(h), dtype=bool)
        pos = np.searchsorted(known, h)
        pos[pos == len(known)] = len(known) - 1
        return known[pos] == h

    def add_keys(self, dataset: str, hashes: Any, *, run_id: str, now: dt.datetime) -> None:
        h = np.unique(np.asarray(hashes, dtype=np.uint64))
        with self._lock:
            batches = self._batches.setdefault(dataset, [])
            batches.append(_KeyBatch(now, run_id, h))
            if self.key_retention is not None:
                self._prune(dataset, now - self.key_retention)
            if self.max_keys is not None:
                while len(batches) > 1 and sum(len(b.hashes) for b in batches) > self.max_keys:
                    batches.pop(0)
            self._merged.pop(dataset, None)

    def prune_keys(self, dataset: str, before: dt.datetime) -> int:
        """Forget key batches added before ``before``; returns how many hashes were dropped."""
        with self._lock:
            return self._prune(dataset, before)

    def key_count(self, dataset: str) -> int:
        """Distinct key hashes held for ``dataset``."""
        with self._lock:
            return len(self._merged_keys(dataset))

    def _prune(self, dataset: str, before: dt.datetime) -> int:
        batches = self._batches.get(dataset, [])
        keep = [b for b in batches if b.added_at >= before]
        dropped = sum(len(b.hashes) for b in batches) - sum(len(b.hashes) for b in keep)
        if len(keep) != len(batches):
            self._batches[dataset] = keep
            self._merged.pop(dataset, None)
        return dropped

    def _merged_keys(self, dataset: str) -> np.ndarray:
        merged = self._merged.get(dataset)
        if merged is None:
            batches = self._batches.get(dataset, [])
            parts = [b.hashes for b in batches]
            merged = np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.uint64)
            self._merged[dataset] = merged
        return merged

    # -- row counts ----------------------------------------------------------------------
    def row_count_history(self, dataset: str, limit: int) -> list[int]:
        with self._lock:
            rows = self._counts.get(dataset, [])
            return [r for _, _, r in reversed(rows[-limit:])] if limit > 0 else []

    def add_row_count(self, dataset: str, rows: int, *, run_id: str, now: dt.datetime) -> None:
        with self._lock:
            hist = self._counts.setdefault(dataset, [])
            hist.append((now, run_id, int(rows)))
            del hist[: max(len(hist) - self.max_row_counts, 0)]
