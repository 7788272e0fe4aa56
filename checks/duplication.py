"""Duplicate keys and rows within a frame, and keys loaded again across runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from checks.base import Check, CheckContext
from checks.errors import CheckInputError
from checks.frame import as_columns, null_count, require_columns, require_frame
from checks.keys import duplicate_stats, example_keys, jsonable, key_hashes
from checks.result import CheckResult, Kind, Status

__all__ = [
    "NoDuplicateRows",
    "Unique",
    "UniqueAcrossRuns",
    "no_duplicate_rows",
    "unique",
    "unique_across_runs",
]


def _key_list(key: str | Sequence[str]) -> list[str]:
    cols = as_columns(key)
    if not cols:
        raise ValueError("a key needs at least one column")
    return cols


class Unique(Check):
    """Keys that occur more than once in the frame (single or compound key).

    >>> import pandas as pd
    >>> r = unique("id")(pd.DataFrame({"id": [1, 2, 2, 3, 3, 3]}))[0]
    >>> r.status, r.observed, r.details["rows_involved"]
    (<Status.FAIL: 'fail'>, 3.0, 5)
    """

    kind = Kind.DUPLICATION

    def __init__(
        self,
        key: str | Sequence[str],
        *,
        max_duplicates: int = 0,
        name: str | None = None,
        severity: str = "fail",
        on_error: str = "fail",
    ) -> None:
        self.key = _key_list(key)
        super().__init__(name=name or f"unique({','.join(self.key)})", severity=severity, on_error=on_error)
        self.max_duplicates = int(max_duplicates)

    def evaluate(self, df: Any, context: CheckContext) -> CheckResult:
        frame = require_frame(df)
        require_columns(frame, self.key)
        st = duplicate_stats(frame, self.key)
        status = Status.FAIL if st.extra > self.max_duplicates else Status.PASS
        examples = example_keys(frame, self.key, st.positions)
        null_keys = sum(null_count(frame[c]) for c in self.key)
        msg = (
            f"{self.name}: {st.extra} duplicate occurrence(s) of {st.groups} key(s) over "
            f"{st.involved} rows; e.g. {examples[:3]}"
            if st.extra
            else f"{self.name}: keys are unique"
        )
        return self.result(
            status,
            observed=float(st.extra),
            threshold=float(self.max_duplicates),
            column=self.key[0] if len(self.key) == 1 else None,
            measure="duplicates",
            message=msg,
            details={
                "key": self.key,
                "duplicates": st.extra,
                "rows_involved": st.involved,
                "duplicate_keys": st.groups,
                "rows": len(frame),
                "null_key_values": null_keys,
                "examples": examples,
            },
        )


class NoDuplicateRows(Check):
    """Rows that repeat another row in every column (or in ``columns``).

    >>> import pandas as pd
    >>> no_duplicate_rows()(pd.DataFrame({"a": [1, 1, 2], "b": ["x", "x", "y"]}))[0].observed
    1.0
    """

    kind = Kind.DUPLICATION

    def __init__(
        self,
        columns: str | Sequence[str] | None = None,
        *,
        max_duplicates: int = 0,
        name: str | None = None,
        severity: str = "fail",
        on_error: str = "fail",
    ) -> None:
        self.columns = as_columns(columns)
        super().__init__(name=name or "no_duplicate_rows", severity=severity, on_error=on_error)
        self.max_duplicates = int(max_duplicates)

    def evaluate(self, df: Any, context: CheckContext) -> CheckResult:
        frame = require_frame(df)
        cols = self.columns or [str(c) for c in frame.columns]
        require_columns(frame, cols)
        if frame.columns.has_duplicates:
            raise CheckInputError("the frame has repeated column labels; rename them first")
        st = duplicate_stats(frame, cols)
        status = Status.FAIL if st.extra > self.max_duplicates else Status.PASS
        index = [jsonable(v) for v in frame.index[st.positions[:10]]]
        msg = (
            f"{self.name}: {st.extra} duplicate row(s) ({st.involved} rows involved); e.g. rows at index {index[:5]}"
            if st.extra
            else f"{self.name}: no duplicate rows"
        )
        return self.result(
            status,
            observed=float(st.extra),
            threshold=float(self.max_duplicates),
            measure="duplicates",
            message=msg,
            details={
                "duplicates": st.extra,
                "rows_involved": st.involved,
                "distinct_duplicated": st.groups,
                "rows": len(frame),
                "example_index": index,
                "columns": len(cols),
            },
        )


class UniqueAcrossRuns(Check):
    """Keys loaded in an earlier run and again now (a reloaded batch, a replayed file).

    Keys are kept in the store as 64-bit hashes, under the context's pipeline
    and the dataset. This check decides how long: before each lookup it has
    the store forget sightings older than ``retention_days`` (30 by default)
    through ``prune_keys``. Every load is a sighting, so a key reloaded within
    the retention is remembered for another ``retention_days`` from then.
    Within-frame repeats are :class:`Unique`'s business, not this one's.

    >>> import datetime as dt, pandas as pd
    >>> from checks.base import CheckContext
    >>> from checks.memory_store import MemoryStore
    >>> store, check = MemoryStore(), unique_across_runs("id", dataset="orders")
    >>> _ = check(pd.DataFrame({"id": [1, 2]}), CheckContext(store=store, run_id="r1"))
    >>> check(pd.DataFrame({"id": [2, 3]}), CheckContext(store=store, run_id="r2"))[0].observed
    1.0
    """

    kind = Kind.DUPLICATION
    needs_store: ClassVar[bool] = True

    def __init__(
        self,
        key: str | Sequence[str],
        *,
        dataset: str | None = None,
        retention_days: float = 30.0,
        max_duplicates: int = 0,
        name: str | None = None,
        severity: str = "fail",
        on_error: str = "fail",
    ) -> None:
        self.key = _key_list(key)
        super().__init__(name=name or f"unique_across_runs({','.join(self.key)})", severity=severity, on_error=on_error)
        if retention_days <= 0:
            raise ValueError(f"retention_days must be positive — got {retention_days}")
        self.dataset = dataset
        self.retention = dt.timedelta(days=float(retention_days))
        self.max_duplicates = int(max_duplicates)

    def evaluate(self, df: Any, context: CheckContext) -> CheckResult:
        frame = require_frame(df)
        require_columns(frame, self.key)
        store = context.store
        if store is None:
            raise CheckInputError(
                "needs a CheckStore to remember earlier runs' keys; pass context.store "
                "(checks.MemoryStore or the agent's run store)"
            )
        dataset = self.dataset or context.dataset
        if not dataset:
            raise CheckInputError("needs a dataset name to keep keys under: pass dataset= or set context.dataset")
        pipeline = context.pipeline
        store.prune_keys(pipeline, dataset, context.now - self.retention)
        hashes = key_hashes(frame, self.key)
        distinct = pd.unique(hashes)
        seen = np.asarray(store.seen_keys(pipeline, dataset, distinct), dtype=bool)
        repeated = distinct[seen]
        rows = 0
        examples: list[Any] = []
        if len(repeated):
            row_mask = np.isin(hashes, repeated)
            rows = int(np.count_nonzero(row_mask))
            examples = example_keys(frame, self.key, np.flatnonzero(row_mask))
        store.add_keys(pipeline, dataset, distinct, run_id=context.run_id, now=context.now)
        n_rep = len(repeated)
        status = Status.FAIL if n_rep > self.max_duplicates else Status.PASS
        msg = (
            f"{self.name}: {n_rep} key(s) ({rows} rows) were loaded in an earlier run; e.g. {examples[:3]}"
            if n_rep
            else f"{self.name}: no key was loaded before"
        )
        return self.result(
            status,
            observed=float(n_rep),
            threshold=float(self.max_duplicates),
            column=self.key[0] if len(self.key) == 1 else None,
            measure="duplicates",
            message=msg,
            details={
                "key": self.key,
                "keys_seen_before": n_rep,
                "rows_seen_before": rows,
                "distinct_keys": len(distinct),
                "examples": examples,
                "retention_days": self.retention.total_seconds() / 86400,
            },
        )


def unique(key: str | Sequence[str], **kwargs: Any) -> Unique:
    """Duplicate keys within the frame (see :class:`Unique`)."""
    return Unique(key, **kwargs)


def no_duplicate_rows(columns: str | Sequence[str] | None = None, **kwargs: Any) -> NoDuplicateRows:
    """Full-row duplicates (see :class:`NoDuplicateRows`)."""
    return NoDuplicateRows(columns, **kwargs)


def unique_across_runs(key: str | Sequence[str], **kwargs: Any) -> UniqueAcrossRuns:
    """Keys seen in earlier runs (see :class:`UniqueAcrossRuns`)."""
    return UniqueAcrossRuns(key, **kwargs)
