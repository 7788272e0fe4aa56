"""Drift over a table read in batches, and the profile of such a table.

The current column is never sorted: it is counted against the reference's
grid (:func:`checks.distances.count_numeric`) or its categories, and those
counts add up over batches. So every drift score against a given reference
is the one the whole frame gives (up to the order of floating-point sums,
for Wasserstein).

Two things are estimates on a stream:

* the profile recorded for a moving baseline (``reference=None``) and the
  profile of a stream (:func:`profile_stream`): each batch is profiled, and
  batch profiles are merged as :func:`checks.merge.merge_profiles` merges
  them (counts, nulls, extremes, mean, std and categories exactly; a numeric
  CDF within one grid cell, about 0.001 of the mass, of the pooled data).
  Up to :data:`PROFILES_HELD` batches are merged at once; past that, each
  :data:`PROFILES_HELD` are merged into one first, which can add up to one
  more cell per level;
* with ``columns=None``, the distinct share that marks a column as
  identifier-like: exact up to :data:`SKETCH` distinct values, beyond them a
  k-minimum-values sketch, whose relative error is about ``1/sqrt(SKETCH)``
  (0.8%).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from checks.distances import NumericCounts, compare_buckets, compare_categorical, count_numeric
from checks.frame import column_kind, null_count, numeric_values, require_columns, text_timestamps
from checks.merge import merge_profiles
from checks.profile import ColumnProfile, Profile, bucket_counts, category_counts, profile
from checks.result import CheckResult
from checks.stream import Plan, Reader

if TYPE_CHECKING:
    from checks.base import CheckContext
    from checks.drift import Drift

__all__ = ["PROFILES_HELD", "SKETCH", "DriftPlan", "ProfilePlan", "profile_stream"]

#: Batch profiles held before they are merged into one.
PROFILES_HELD = 64
#: Hashes a distinct-count sketch keeps (the smallest ones).
SKETCH = 1 << 14
#: Distinct labels a categorical column may have on a stream before it is given up (memory).
MAX_LABELS = 1 << 21


# -- partial states, one per column ------------------------------------------------------------------
@dataclass
class _Num:
    rows: int = 0
    finite: int = 0
    counts: NumericCounts | None = None
    problem: str | None = None
    not_text: bool = False

    def __add__(self, o: _Num) -> _Num:
        counts = o.counts if self.counts is None else self.counts if o.counts is None else self.counts + o.counts
        return _Num(
            self.rows + o.rows, self.finite + o.finite, counts, self.problem or o.problem, self.not_text or o.not_text
        )


@dataclass
class _Cat:
    labels: dict[str, int] | None = None
    buckets: np.ndarray | None = None
    problem: str | None = None

    def __add__(self, o: _Cat) -> _Cat:
        problem = self.problem or o.problem
        if self.buckets is not None or o.buckets is not None:
            a = self.buckets if self.buckets is not None else 0
            b = o.buckets if o.buckets is not None else 0
            return _Cat(buckets=a + b, problem=problem)  # type: ignore[arg-type]
        labels = dict(self.labels or {})
        for k, v in (o.labels or {}).items():
            labels[k] = labels.get(k, 0) + v
        if len(labels) > MAX_LABELS:
            return _Cat(problem=problem or f"more than {MAX_LABELS:,} distinct values; too many to count on a stream")
        return _Cat(labels=labels, problem=problem)


@dataclass
class _First:
    """The first run: can the column be profiled (a problem), and does it have values."""

    values: bool = False
    problem: str | None = None

    def __add__(self, o: _First) -> _First:
        return _First(self.values or o.values, self.problem or o.problem)


@dataclass
class _Ident:
    """Non-null values, a sketch of distinct hashes, and whether every value is an ISO 8601 time."""

    values: int = 0
    sketch: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    text_times: bool | None = None  # None: no value seen yet

    def __add__(self, o: _Ident) -> _Ident:
        sketch = np.unique(np.concatenate([self.sketch, o.sketch]))[:SKETCH]
        times = (
            o.text_times
            if self.text_times is None
            else self.text_times
            if o.text_times is None
            else (self.text_times and o.text_times)
        )
        return _Ident(self.values + o.values, sketch, times)

    def distinct(self) -> int:
        if len(self.sketch) < SKETCH:
            return len(self.sketch)
        return round((SKETCH - 1) / (float(self.sketch[-1]) / 2.0**64))


def _ident(s: pd.Series) -> _Ident:
    values = s.dropna()
    if values.empty:
        return _Ident()
    try:
        h = pd.util.hash_pandas_object(values, index=False).to_numpy(dtype=np.uint64)
    except TypeError:
        return _Ident(len(values), np.empty(0, dtype=np.uint64), False)
    times = column_kind(s.dtype) == "categorical" and text_timestamps(s) is not None
    return _Ident(len(values), np.unique(h)[:SKETCH], times)


# -- profiles of a stream ---------------------------------------------------------------------------
def _profiles_merge(a: list[Profile], b: list[Profile]) -> list[Profile]:
    out = a + b
    if len(out) > PROFILES_HELD:
        out = [merge_profiles(out)]
    return out


class ProfilePlan(Plan):
    """A profile of ``columns``: each batch profiled, the batch profiles merged."""

    def __init__(self, columns: list[str], top_k: int, now: Any = None) -> None:
        self.names = columns
        self.columns = columns
        self.top_k, self.now = top_k, now

    def partial(self, batch: pd.DataFrame, offset: int, side: int = 0) -> Any:
        return [profile(batch, self.names, top_k=self.top_k, now=self.now)]

    def merge(self, a: Any, b: Any) -> Any:
        return _profiles_merge(a, b)

    def result(self, states: list[Any]) -> Profile:
        merged = merge_profiles(states[0])
        return Profile(
            rows=merged.rows, columns={c: merged.columns[c] for c in self.names}, created_at=merged.created_at
        )


def profile_stream(data: Any, columns: list[str] | None = None, *, top_k: int, now: Any = None) -> Profile:
    """The profile of a table read in batches (see the module docstring for its accuracy)."""
    from checks.source import as_source
    from checks.stream import collect

    source = as_source(data)
    proto = source.prototype()
    cols = columns if columns is not None else [str(c) for c in proto.columns]
    require_columns(proto, cols)
    plan = ProfilePlan(cols, top_k, now)
    return plan.result(collect(plan, source))


# -- drift ------------------------------------------------------------------------------------------
class DriftPlan(Plan):
    """Drift on a stream: per compared column, counts on the reference's grid or categories, added up."""

    def __init__(self, check: Drift, context: CheckContext, prototype: pd.DataFrame) -> None:
        self.check, self.context, self.proto = check, context, prototype
        self.top_k, self.now = check.top_k, context.now  # what partial needs on a worker
        self.history = check.reference is None
        if self.history:
            check._store(context)
            check._dataset(context)
        self.ref, self.about = check._resolve(context)
        ref = self.ref
        names = list(check.columns) if check.columns is not None else [str(c) for c in prototype.columns]
        if check.columns is None and ref is not None:
            names += [c for c in ref.columns if c not in names]
        self.names = names
        self.ident = []
        if check.columns is None:
            from checks.drift import identifier_candidate

            self.ident = [
                c
                for c in names
                if c in prototype.columns
                and identifier_candidate(prototype[c].dtype, ref.columns.get(c) if ref is not None else None)
            ]
        # what each column is compared as, decided from its dtype: (kind, methods, text) or fixed results
        self.setup: dict[str, Any] = {}
        for col in names:
            if ref is None:
                continue
            if check.columns is None and col not in ref.columns:
                self.setup[col] = [check._new_column(col)]
            else:
                self.setup[col] = check._setup(prototype, ref, col)
        read = set(self.ident) | {c for c in names if c in prototype.columns}
        self.columns = [c for c in map(str, prototype.columns) if c in read]

    # -- per batch ----------------------------------------------------------------------------------
    def partial(self, batch: pd.DataFrame, offset: int, side: int = 0) -> Any:
        cols: dict[Any, Any] = {}
        for c in self.ident:
            cols[("ident", c)] = _ident(batch[c])
        for col in self.names:
            if col not in batch.columns:
                continue
            if self.ref is None:
                cols[col] = self._first(batch[col])
                continue
            setup = self.setup[col]
            if isinstance(setup, list):
                continue
            kind, methods, text = setup
            cref = self.ref.columns[col]
            if kind == "numeric":
                cols[col] = self._numeric(batch[col], cref, methods, text)
            else:
                cols[col] = self._categorical(batch[col], cref)
        present = [c for c in self.names if c in batch.columns]
        profiles = [profile(batch, present, top_k=self.top_k, now=self.now)] if self.history else []
        return len(batch), cols, profiles

    def merge(self, a: Any, b: Any) -> Any:
        cols = dict(a[1])
        for k, v in b[1].items():
            cols[k] = cols[k] + v if k in cols else v
        return a[0] + b[0], cols, _profiles_merge(a[2], b[2])

    def _first(self, s: pd.Series) -> _First:
        from checks.drift import _uncheckable

        problem = _uncheckable(s.to_frame(), str(s.name))
        if problem is None:
            return _First(True)
        if problem.endswith("in the current frame"):
            return _First(False)
        return _First(False, problem)

    def _numeric(self, s: pd.Series, cref: ColumnProfile, methods: list[str], text: bool) -> _Num:
        if text:
            x = text_timestamps(s)
            if x is None:
                return _Num(len(s), not_text=bool(len(s) - null_count(s)))
        else:
            try:
                x = numeric_values(s)
            except (TypeError, ValueError) as exc:
                return _Num(len(s), problem=f"column {s.name!r} ({s.dtype}) cannot be read as numbers: {exc}")
        finite = np.isfinite(x)
        if np.count_nonzero(finite) < len(x):
            x = x[finite]
        counts = count_numeric(cref, x, tails="wasserstein" in methods) if cref.finite else None
        return _Num(len(s), len(x), counts)

    def _categorical(self, s: pd.Series, cref: ColumnProfile) -> _Cat:
        try:
            labels, counts = category_counts(s)
        except TypeError as exc:
            return _Cat(problem=f"column {s.name!r} ({s.dtype}) holds unhashable values: {exc}")
        if cref.buckets:
            return _Cat(buckets=bucket_counts(labels, counts, len(cref.buckets)))
        merged: dict[str, int] = {}
        for k, v in zip(labels, counts.tolist(), strict=True):
            merged[k] = merged.get(k, 0) + int(v)
        return _Cat(labels=merged)

    # -- the end ------------------------------------------------------------------------------------
    def finish(self, states: list[Any], summary: Any, reader: Reader) -> list[CheckResult]:
        from checks.drift import identifier_share

        check, ref, ctx = self.check, self.ref, self.context
        _, cols, profiles = states[0]

        def share_of(c: str) -> float | None:
            st = cols.get(("ident", c))
            if st is None:
                return None
            return identifier_share(st.values, st.distinct(), bool(st.text_times))

        results: list[CheckResult] = []
        columns = check._columns(self.proto, ref, results, share_of if check.columns is None else None)
        if ref is None:
            results += check._first_run(lambda col: self._first_problem(col, cols), columns, ctx)
        else:
            found: list[Any] = []
            for col in columns:
                setup = self.setup[col]
                if isinstance(setup, list):
                    found.extend(setup)
                    continue
                found.extend(self._scores(col, setup, cols.get(col)))
            results += check._judge_all(found)
        if self.history:

            def profile_of(present: list[str]) -> Profile:
                merged = merge_profiles(profiles) if profiles else profile(self.proto, present, now=ctx.now)
                return Profile(merged.rows, {c: merged.columns[c] for c in present}, merged.created_at)

            check._record(profile_of, self.proto, columns, results, ctx)
        return results

    def _first_problem(self, col: str, cols: dict[Any, Any]) -> str | None:
        from checks.drift import _uncheckable

        static = _uncheckable(self.proto, col)
        if static is not None and not static.endswith("in the current frame"):
            return static
        st: _First = cols.get(col, _First())
        if st.problem:
            return st.problem
        if not st.values:
            which = "non-null" if column_kind(self.proto[col].dtype) == "categorical" else "finite"
            return f"column {col!r} has no {which} values in the current frame"
        return None

    def _scores(self, col: str, setup: tuple[str, list[str], bool], st: Any) -> list[Any]:
        kind, methods, text = setup
        check, about = self.check, self.about
        assert self.ref is not None
        cref = self.ref.columns[col]
        if kind == "numeric":
            num: _Num = st if st is not None else _Num()
            if num.not_text:
                return [check._not_text(col, self.proto[col].dtype)]
            if num.problem:
                return [check._error(col, num.problem)]
            return check._numeric_scores(cref, num.counts, num.rows, num.finite, col, methods, about, text)
        cat: _Cat = st if st is not None else _Cat(labels={})
        if cat.problem:
            return [check._error(col, cat.problem)]
        if cat.buckets is not None:
            cmp = compare_buckets(cref, cat.buckets)
        else:
            labels = cat.labels or {}
            cmp = compare_categorical(cref, list(labels), np.array(list(labels.values()), dtype=np.int64))
        return check._categorical_scores(cmp, col, methods, about)
