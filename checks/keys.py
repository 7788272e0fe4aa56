"""Finding repeated keys and rows: exact, and fast on millions of rows.

Full-row duplicates are found by narrowing, not by grouping the whole frame:
a pair of equal rows is also a pair of equal values in every single column,
so the rows whose value of one selective column repeats are the only
candidates. The first column is tested on the whole frame (a counting pass
for dense integer columns, a hash pass otherwise); every further column only
on the remaining candidates, grouping them exactly with pandas' own equality
(``factorize``: NaN equals NaN, as in ``DataFrame.duplicated``). The result
is exact, and costs one pass over one column when a column is selective.

Keys across runs are stored as 64-bit hashes (``pandas.util.hash_pandas_object``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from checks.errors import CheckInputError

__all__ = ["DuplicateStats", "duplicate_stats", "jsonable", "key_hashes", "shared_key_codes"]

_DENSE_FACTOR = 2  # a counting pass when max - min < 2 n (+ slack)
_MAX_WIDTH = 2**62


@dataclass(frozen=True)
class DuplicateStats:
    """``extra`` is ``df.duplicated(subset).sum()``; ``involved`` is the sum with ``keep=False``."""

    extra: int
    involved: int
    groups: int  # distinct repeated values (keys or rows)
    positions: np.ndarray  # positions of the involved rows, in frame order


def _priority(s: pd.Series) -> int:
    dtype = s.dtype
    if isinstance(dtype, np.dtype):
        if dtype.kind in "iu":
            return 0
        if dtype.kind == "f":
            return 1
        if dtype.kind in "mM":
            return 2
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return 5
    if pd.api.types.is_numeric_dtype(dtype):
        return 3
    return 4


def _repeat_mask(s: pd.Series) -> np.ndarray:
    """Boolean mask of rows whose value appears more than once (``duplicated(keep=False)``)."""
    dtype = s.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iu" and len(s) > 0:
        x = s.to_numpy()
        lo, hi = int(x.min()), int(x.max())
        if hi - lo < _DENSE_FACTOR * len(x) + 1024:
            off = x.astype(np.int64, copy=False) - lo
            counts = np.bincount(off)
            return counts[off] > 1
    try:
        return s.duplicated(keep=False).to_numpy()
    except TypeError as exc:
        raise _unhashable(s, exc) from exc


def _unhashable(s: pd.Series, exc: Exception) -> CheckInputError:
    kinds = sorted({type(v).__name__ for v in s.head(1000)})
    return CheckInputError(
        f"column {s.name!r} ({s.dtype}) holds values that cannot be compared ({', '.join(kinds)}): {exc}",
        column=str(s.name),
    )


def _unhashable_column(s: pd.Series) -> bool:
    try:
        pd.util.hash_pandas_object(s, index=False)
    except TypeError:
        return True
    return False


def _codes(s: pd.Series) -> tuple[np.ndarray, int]:
    try:
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
    except TypeError as exc:
        raise _unhashable(s, exc) from exc
    return codes.astype(np.int64, copy=False) + 1, len(uniques) + 1  # nulls are group 0


def duplicate_stats(df: pd.DataFrame, columns: Sequence[str]) -> DuplicateStats:
    """Exact duplicate counts of ``df`` over ``columns`` (a key, a compound key, every column)."""
    n = len(df)
    if n == 0 or not columns:
        return DuplicateStats(0, 0, 0, np.empty(0, dtype=np.int64))
    order = sorted(columns, key=lambda c: _priority(df[c]))
    mask = _repeat_mask(df[order[0]])
    cand = np.flatnonzero(mask)
    if len(cand) == 0:
        return DuplicateStats(0, 0, 0, cand)
    group, _ = _codes(df[order[0]].iloc[cand])
    for col in order[1:]:
        codes, width = _codes(df[col].iloc[cand])
        group, _ = _codes(pd.Series(group * width + codes))
        keep = np.bincount(group)[group] > 1  # group codes are dense: count, do not re-hash
        cand, group = cand[keep], group[keep]
        if len(cand) == 0:
            return DuplicateStats(0, 0, 0, cand)
    groups = len(np.unique(group))
    return DuplicateStats(extra=len(cand) - groups, involved=len(cand), groups=groups, positions=cand)


def shared_key_codes(a: pd.DataFrame, b: pd.DataFrame, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Dense codes of the key rows of ``a`` and ``b``, equal exactly when the keys are equal.

    Each column is factorised over both frames at once, so values pandas holds
    equal share a code whatever the dtype (``1`` and ``1.0``, as
    ``Series.isin``), for a single key and a compound key alike; every null is
    one value. Returns the codes of ``a``, those of ``b``, and the code count.
    """
    n_a = len(a)
    group = np.zeros(n_a + len(b), dtype=np.int64)
    width = 1
    for c in columns:
        codes, w = _shared_codes(pd.concat([a[c], b[c]], ignore_index=True))
        if width > _MAX_WIDTH // w:  # the mixed-radix code would overflow: make it dense first
            group, width = _dense(group)
        group = group * w + codes
        width *= w
    if width > _DENSE_FACTOR * len(group) + 1024:  # keep the code space small enough to index
        group, width = _dense(group)
    return group[:n_a], group[n_a:], width


def _shared_codes(both: pd.Series) -> tuple[np.ndarray, int]:
    dtype = both.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iu" and len(both) > 0:
        x = both.to_numpy()
        lo = x.min()
        if int(x.max()) - int(lo) < _DENSE_FACTOR * len(x) + 1024:  # dense integers: no hashing
            off = (x - lo).astype(np.int64, copy=False)
            return off, int(off.max()) + 1
    try:
        codes, uniques = pd.factorize(both, use_na_sentinel=False)
    except TypeError as exc:
        raise _unhashable(both, exc) from exc
    return codes.astype(np.int64, copy=False), max(len(uniques), 1)


def _dense(group: np.ndarray) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(group)
    return codes.astype(np.int64, copy=False), max(len(uniques), 1)


def key_hashes(df: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """One uint64 hash per row of the key columns, stable across processes (pandas' fixed hash key).

    Floats are canonicalised first (-0.0 is 0.0; every NaN is one NaN) so equal
    keys always hash equal.
    """
    parts = []
    for c in columns:
        s = df[c]
        if isinstance(s.dtype, np.dtype) and s.dtype.kind == "f":
            v = s.to_numpy(dtype=np.float64) + 0.0
            v[np.isnan(v)] = np.nan
            s = pd.Series(v, name=c)
        parts.append(s.reset_index(drop=True))
    try:
        if len(parts) == 1:
            h = pd.util.hash_pandas_object(parts[0], index=False)
        else:
            h = pd.util.hash_pandas_object(pd.concat(parts, axis=1), index=False)
    except TypeError as exc:
        bad = next((p for p in parts if _unhashable_column(p)), parts[0])
        raise _unhashable(bad, exc) from exc
    return h.to_numpy(dtype=np.uint64)


def jsonable(v: Any) -> Any:
    """A value as JSON-ready Python (numpy scalars unwrapped, NaN as None, the rest as text)."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return None if v != v else v
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    try:
        json.dumps(v)
        return v
    except (TypeError, ValueError):
        return str(v)


def example_keys(df: pd.DataFrame, columns: Sequence[str], positions: np.ndarray, limit: int = 5) -> list[Any]:
    """The first ``limit`` distinct key values at ``positions`` (in frame order), JSON-ready."""
    if len(positions) == 0:
        return []
    window = limit * 50
    while True:  # widen the window until it holds `limit` distinct keys: the first ones, in frame order
        sub = df[list(columns)].iloc[positions[:window]]
        try:
            sub = sub.drop_duplicates()
        except TypeError:
            break
        if len(sub) >= limit or window >= len(positions):
            break
        window *= 8
    sub = sub.head(limit)
    if len(columns) == 1:
        return [jsonable(v) for v in sub.iloc[:, 0].tolist()]
    return [jsonable(r) for r in sub.to_dict("records")]
