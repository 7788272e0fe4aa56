"""Duplicate keys and rows within a frame, and keys loaded again across runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from checks.base import Check, CheckContext, CheckStore
from checks.errors import CheckInputError
from checks.frame import as_columns, null_count, require_columns, require_frame
from checks.keys import _priority, duplicate_stats, example_keys, jsonable, key_hashes
from checks.keyset import EXAMPLES, DupSummary, KeyCoder, dup_summary, positions, records, row_hash
from checks.result import CheckResult, Kind, Status
from checks.stream import Plan, Reader, example_values

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
        examples = example_keys(frame, self.key, st.positions)
        null_keys = sum(null_count(frame[c]) for c in self.key)
        return self._judge(st.extra, st.involved, st.groups, len(frame), null_keys, examples)

    def plan(self, context: CheckContext, prototype: pd.DataFrame) -> Plan:
        return _UniquePlan(self, prototype)

    def _judge(
        self, extra: int, involved: int, groups: int, rows: int, null_keys: int, examples: list[Any]
    ) -> CheckResult:
        status = Status.FAIL if extra > self.max_duplicates else Status.PASS
        msg = (
            f"{self.name}: {extra} duplicate occurrence(s) of {groups} key(s) over {involved} rows; e.g. {examples[:3]}"
            if extra
            else f"{self.name}: keys are unique"
        )
        return self.result(
            status,
            observed=float(extra),
            threshold=float(self.max_duplicates),
            column=self.key[0] if len(self.key) == 1 else None,
            measure="duplicates",
            message=msg,
            details={
                "key": self.key,
                "duplicates": extra,
                "rows_involved": involved,
                "duplicate_keys": groups,
                "rows": rows,
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

    def _columns(self, frame: pd.DataFrame) -> list[str]:
        cols = self.columns or [str(c) for c in frame.columns]
        require_columns(frame, cols)
        if frame.columns.has_duplicates:
            raise CheckInputError("the frame has repeated column labels; rename them first")
        return cols

    def evaluate(self, df: Any, context: CheckContext) -> CheckResult:
        frame = require_frame(df)
        cols = self._columns(frame)
        st = duplicate_stats(frame, cols)
        index = [jsonable(v) for v in frame.index[st.positions[:10]]]
        return self._judge(st.extra, st.involved, st.groups, len(frame), index, len(cols))

    def plan(self, context: CheckContext, prototype: pd.DataFrame) -> Plan:
        return _RowsDupPlan(self, prototype)

    def _judge(self, extra: int, involved: int, groups: int, rows: int, index: list[Any], ncols: int) -> CheckResult:
        status = Status.FAIL if extra > self.max_duplicates else Status.PASS
        msg = (
            f"{self.name}: {extra} duplicate row(s) ({involved} rows involved); e.g. rows at index {index[:5]}"
            if extra
            else f"{self.name}: no duplicate rows"
        )
        return self.result(
            status,
            observed=float(extra),
            threshold=float(self.max_duplicates),
            measure="duplicates",
            message=msg,
            details={
                "duplicates": extra,
                "rows_involved": involved,
                "distinct_duplicated": groups,
                "rows": rows,
                "example_index": index,
                "columns": ncols,
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

    def _where(self, context: CheckContext) -> tuple[CheckStore, str, str]:
        """The store, pipeline and dataset keys are kept under, after forgetting sightings past the retention."""
        store = context.store
        if store is None:
            raise CheckInputError(
                "needs a CheckStore to remember earlier runs' keys; pass context.store "
                "(checks.MemoryStore or the agent's run store)"
            )
        dataset = self.dataset or context.dataset
        if not dataset:
            raise CheckInputError("needs a dataset name to keep keys under: pass dataset= or set context.dataset")
        store.prune_keys(context.pipeline, dataset, context.now - self.retention)
        return store, context.pipeline, dataset

    def plan(self, context: CheckContext, prototype: pd.DataFrame) -> Plan:
        require_columns(prototype, self.key)
        store, pipeline, dataset = self._where(context)
        return _AcrossPlan(self, prototype, store, pipeline, dataset, context)

    def evaluate(self, df: Any, context: CheckContext) -> CheckResult:
        frame = require_frame(df)
        require_columns(frame, self.key)
        store, pipeline, dataset = self._where(context)
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
        return self._judge(len(repeated), rows, len(distinct), examples)

    def _judge(self, n_rep: int, rows: int, distinct: int, examples: list[Any]) -> CheckResult:
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
                "distinct_keys": distinct,
                "examples": examples,
                "retention_days": self.retention.total_seconds() / 86400,
            },
        )


class _UniquePlan(Plan):
    """Key records of every row, partitioned by prefix; null key values counted per batch."""

    keyed = True

    def __init__(self, check: Unique, prototype: pd.DataFrame) -> None:
        require_columns(prototype, check.key)
        self.check, self.prototype = check, prototype
        self.key = list(check.key)
        self.columns = self.key
        self.coder = KeyCoder.for_tables(check.key, prototype)

    def partial(self, batch: pd.DataFrame, offset: int, side: int = 0) -> Any:
        return len(batch), sum(int(null_count(batch[c])) for c in self.key)

    def merge(self, a: Any, b: Any) -> Any:
        return a[0] + b[0], a[1] + b[1]

    def codes(self, batch: pd.DataFrame, offset: int, side: int = 0) -> np.ndarray:
        a, b = self.coder.codes(batch)
        return records(a, b, offset, side)

    def reduce(self, recs: np.ndarray) -> DupSummary:
        return dup_summary(recs)

    def finish(self, states: list[Any], summary: Any, reader: Reader) -> list[CheckResult]:
        rows, null_keys = states[0]
        st: DupSummary = summary
        examples = example_values(self.coder, st.firsts, reader, self.prototype)
        return [self.check._judge(st.extra, st.involved, st.groups, rows, null_keys, examples)]


class _RowsDupPlan(Plan):
    """One record per row: the code of the first column (exact for numbers) and a hash of the whole row.

    Equal rows have equal records; two different rows share one only when they
    agree in the first column and their 64-bit row hashes collide.
    """

    keyed = True

    def __init__(self, check: NoDuplicateRows, prototype: pd.DataFrame) -> None:
        self.check = check
        self.row = check._columns(prototype)
        self.columns = self.row
        first = sorted(self.row, key=lambda c: _priority(prototype[c]))[0]
        self.first = KeyCoder.for_tables([first], prototype)

    def codes(self, batch: pd.DataFrame, offset: int, side: int = 0) -> np.ndarray:
        a, _ = self.first.codes(batch)
        return records(a, row_hash(batch, self.row), offset, side)

    def reduce(self, recs: np.ndarray) -> DupSummary:
        return dup_summary(recs)

    def finish(self, states: list[Any], summary: Any, reader: Reader) -> list[CheckResult]:
        st: DupSummary = summary
        return [
            self.check._judge(st.extra, st.involved, st.groups, int(states[0]), st.involved_positions, len(self.row))
        ]


class _AcrossPlan(Plan):
    """Distinct key hashes per prefix partition, looked up in the store and added to it, one partition at a time.

    The hashes are those of the whole-frame check (``key_hashes``), so streamed
    and whole-frame runs of one dataset see each other's keys.
    """

    keyed = True
    reduce_here = True  # the store is in this process

    def __init__(
        self,
        check: UniqueAcrossRuns,
        prototype: pd.DataFrame,
        store: CheckStore,
        pipeline: str,
        dataset: str,
        context: CheckContext,
    ) -> None:
        self.check, self.prototype, self.store = check, prototype, store
        self.pipeline, self.dataset, self.context = pipeline, dataset, context
        self.key = list(check.key)
        self.columns = self.key

    def codes(self, batch: pd.DataFrame, offset: int, side: int = 0) -> np.ndarray:
        return records(key_hashes(batch, self.key), None, offset, side)

    def reduce(self, recs: np.ndarray) -> tuple[int, int, int, list[tuple[int, int, int]]]:
        if not len(recs):
            return 0, 0, 0, []
        order = np.argsort(recs["a"])
        a, pos = recs["a"][order], positions(recs)[order]
        new = np.ones(len(a), dtype=bool)
        new[1:] = a[1:] != a[:-1]
        starts = np.flatnonzero(new)
        distinct = a[starts]
        seen = np.asarray(self.store.seen_keys(self.pipeline, self.dataset, distinct), dtype=bool)
        counts = np.diff(np.append(starts, len(a)))
        first = np.minimum.reduceat(pos, starts)[seen]
        firsts = sorted(zip(first.tolist(), distinct[seen].tolist(), [0] * len(first), strict=True))[:EXAMPLES]
        self.store.add_keys(self.pipeline, self.dataset, distinct, run_id=self.context.run_id, now=self.context.now)
        return int(seen.sum()), int(counts[seen].sum()), len(distinct), firsts

    def combine(self, a: Any, b: Any) -> Any:
        return a[0] + b[0], a[1] + b[1], a[2] + b[2], sorted(a[3] + b[3])[:EXAMPLES]

    def finish(self, states: list[Any], summary: Any, reader: Reader) -> list[CheckResult]:
        n_rep, rows, distinct, firsts = summary
        examples = example_values(KeyCoder(tuple(self.key), "hash"), firsts, reader, self.prototype)
        return [self.check._judge(n_rep, rows, distinct, examples)]


def unique(key: str | Sequence[str], **kwargs: Any) -> Unique:
    """Duplicate keys within the frame (see :class:`Unique`)."""
    return Unique(key, **kwargs)


def no_duplicate_rows(columns: str | Sequence[str] | None = None, **kwargs: Any) -> NoDuplicateRows:
    """Full-row duplicates (see :class:`NoDuplicateRows`)."""
    return NoDuplicateRows(columns, **kwargs)


def unique_across_runs(key: str | Sequence[str], **kwargs: Any) -> UniqueAcrossRuns:
    """Keys seen in earlier runs (see :class:`UniqueAcrossRuns`)."""
    return UniqueAcrossRuns(key, **kwargs)
