"""Reference profiles: what drift compares a frame against, small enough to store.

A :class:`Profile` holds, per column, counts, nulls and dtype and, for numeric
and datetime columns, the quantiles at a fixed probability grid together with
the *exact* reference counts below and at-or-below each quantile; for
categorical columns the top-k category counts plus an "other" bucket.

Why exact counts at the quantiles: the empirical CDF of the reference is then
known exactly at ~1000 points, so the decile bins of PSI and JS are exact
(identical to computing them on the raw reference), the KS statistic is exact
at every grid point and at most ``1/1000`` (plus one grid cell of the
reference's own mass) away from the raw-data value between them, and the
Wasserstein distance is a trapezoid over the grid plus exact tails. The grid
is uniform in probability (``i/1000``) with extra points in both tails
(``1e-6 … 5e-4``) so heavy-tailed columns keep their extremes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from checks.base import _is_stream
from checks.frame import (
    ColumnKind,
    as_columns,
    column_kind,
    null_count,
    numeric_values,
    require_columns,
    require_frame,
    text_timestamps,
)

__all__ = ["ColumnProfile", "Profile", "PROFILE_VERSION", "profile", "quantile_grid"]

PROFILE_VERSION = 2
DEFAULT_TOP_K = 1000
_TAILS = (1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4)


def quantile_grid(points: int = 1000) -> np.ndarray:
    """Probabilities ``i/points`` for i in 0..points, plus tail points near 0 and 1."""
    uniform = np.arange(points + 1) / points
    tails = np.array(_TAILS)
    return np.unique(np.concatenate([uniform, tails, 1.0 - tails]))


def _lerp_quantiles(sorted_values: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``np.quantile(x, probs)`` (method 'linear') on a sorted array, without re-partitioning."""
    n = len(sorted_values)
    h = probs * (n - 1)
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    t = h - lo
    a, b = sorted_values[lo], sorted_values[hi]
    diff = b - a
    # numpy's _lerp: the same two-sided formula keeps results bit-identical to np.quantile
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


@dataclass(frozen=True)
class ColumnProfile:
    """What a profile knows about one column (see the module docstring for the numeric part)."""

    name: str
    dtype: str
    kind: ColumnKind
    count: int
    nulls: int
    # numeric and datetime columns (finite values only; infinities are counted apart)
    finite: int = 0
    pos_inf: int = 0
    neg_inf: int = 0
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    probs: tuple[float, ...] = ()
    quantiles: tuple[float, ...] = ()
    below: tuple[int, ...] = ()
    at_or_below: tuple[int, ...] = ()
    sum_below: tuple[float, ...] = ()  # sum of (x - min) over values below each quantile
    text: bool = False  # datetime parsed from ISO 8601 text
    # categorical columns: labels are compared as strings
    top: tuple[tuple[str, int], ...] = ()
    other: int = 0
    distinct: int = 0
    top_k: int = 0
    buckets: tuple[int, ...] = ()  # every category's count hashed into top_k buckets, when distinct > top_k

    @property
    def null_fraction(self) -> float:
        return self.nulls / self.count if self.count else 0.0

    def quantile(self, p: float) -> float | None:
        """The stored quantile at probability ``p`` (linear interpolation on the grid)."""
        if not self.quantiles:
            return None
        return float(np.interp(p, self.probs, self.quantiles))

    def robust_scale(self) -> float:
        """IQR / 1.349 (the sd for normal data, not inflated by heavy tails), else the std."""
        q1, q3 = self.quantile(0.25), self.quantile(0.75)
        if q1 is not None and q3 is not None and q3 > q1:
            return (q3 - q1) / 1.349
        return float(self.std or 0.0)

    def cdf_spread(self) -> float:
        """Integral of sqrt(F (1 - F)) over the grid: the scale of Wasserstein sampling noise."""
        if len(self.quantiles) < 2:
            return 0.0
        q, p = np.asarray(self.quantiles), np.asarray(self.probs)
        mid = (p[1:] + p[:-1]) / 2
        return float(np.sum(np.diff(q) * np.sqrt(mid * (1 - mid))))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "dtype": self.dtype,
            "kind": self.kind,
            "count": self.count,
            "nulls": self.nulls,
        }
        if self.kind in ("numeric", "datetime"):
            d.update(
                finite=self.finite,
                pos_inf=self.pos_inf,
                neg_inf=self.neg_inf,
                min=self.min,
                max=self.max,
                mean=self.mean,
                std=self.std,
                probs=list(self.probs),
                quantiles=list(self.quantiles),
                below=list(self.below),
                at_or_below=list(self.at_or_below),
                sum_below=list(self.sum_below),
            )
            if self.text:
                d["text"] = True
        elif self.kind == "categorical":
            d.update(top=[[k, v] for k, v in self.top], other=self.other, distinct=self.distinct, top_k=self.top_k)
            if self.buckets:
                d["buckets"] = list(self.buckets)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ColumnProfile:
        return cls(
            name=str(d["name"]),
            dtype=str(d["dtype"]),
            kind=d["kind"],
            count=int(d["count"]),
            nulls=int(d["nulls"]),
            finite=int(d.get("finite", 0)),
            pos_inf=int(d.get("pos_inf", 0)),
            neg_inf=int(d.get("neg_inf", 0)),
            min=d.get("min"),
            max=d.get("max"),
            mean=d.get("mean"),
            std=d.get("std"),
            probs=tuple(float(x) for x in d.get("probs", ())),
            quantiles=tuple(float(x) for x in d.get("quantiles", ())),
            below=tuple(int(x) for x in d.get("below", ())),
            at_or_below=tuple(int(x) for x in d.get("at_or_below", ())),
            sum_below=tuple(float(x) for x in d.get("sum_below", ())),
            text=bool(d.get("text", False)),
            top=tuple((str(k), int(v)) for k, v in d.get("top", ())),
            other=int(d.get("other", 0)),
            distinct=int(d.get("distinct", 0)),
            top_k=int(d.get("top_k", 0)),
            buckets=tuple(int(x) for x in d.get("buckets", ())),
        )


@dataclass(frozen=True)
class Profile:
    """A frame's reference profile, JSON-ready through :meth:`to_dict`.

    >>> import pandas as pd
    >>> p = profile(pd.DataFrame({"x": [1.0, 2.0, None], "c": ["a", "b", "a"]}))
    >>> p.columns["x"].nulls, p.columns["c"].top
    (1, (('a', 2), ('b', 1)))
    >>> Profile.from_dict(p.to_dict()) == p
    True
    """

    rows: int
    columns: dict[str, ColumnProfile] = field(default_factory=dict)
    created_at: str = ""
    version: int = PROFILE_VERSION

    def schema(self) -> dict[str, str]:
        """Column name -> dtype string, in column order."""
        return {name: c.dtype for name, c in self.columns.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "rows": self.rows,
            "created_at": self.created_at,
            "columns": [c.to_dict() for c in self.columns.values()],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Profile:
        cols = [ColumnProfile.from_dict(c) for c in d.get("columns", ())]
        return cls(
            rows=int(d["rows"]),
            columns={c.name: c for c in cols},
            created_at=str(d.get("created_at", "")),
            version=int(d.get("version", 1)),
        )

    def save(self, store: Any, name: str, *, pipeline: str = "") -> None:
        """Store under ``name`` in a :class:`~checks.base.CheckStore`, for ``pipeline`` (default: every pipeline)."""
        store.save_profile(pipeline, name, self.to_dict())

    @classmethod
    def load(cls, store: Any, name: str, *, pipeline: str = "") -> Profile | None:
        """The profile stored under ``name`` for ``pipeline``, or None."""
        d = store.load_profile(pipeline, name)
        return None if d is None else cls.from_dict(d)


def _numeric_profile(
    name: str, s: pd.Series, nulls: int, probs: np.ndarray, x: np.ndarray | None = None
) -> ColumnProfile:
    text = x is not None
    if x is None:
        x = numeric_values(s)
    finite_mask = np.isfinite(x)
    n_finite = int(np.count_nonzero(finite_mask))
    pos_inf = int(np.count_nonzero(x == np.inf))
    neg_inf = int(np.count_nonzero(x == -np.inf))
    base = dict(
        name=name,
        dtype=str(s.dtype),
        kind="datetime" if text else column_kind(s.dtype),
        count=len(s),
        nulls=nulls,
        finite=n_finite,
        pos_inf=pos_inf,
        neg_inf=neg_inf,
        text=text,
    )
    if n_finite == 0:
        return ColumnProfile(**base)  # type: ignore[arg-type]
    xs = np.sort(x[finite_mask] if n_finite < len(x) else x)
    q = _lerp_quantiles(xs, probs)
    below = np.searchsorted(xs, q, side="left")
    prefix = np.concatenate([[0.0], np.cumsum(xs - xs[0])])
    return ColumnProfile(
        **base,  # type: ignore[arg-type]
        min=float(xs[0]),
        max=float(xs[-1]),
        mean=float(xs.mean()),
        std=float(xs.std(ddof=1)) if n_finite > 1 else 0.0,
        probs=tuple(probs.tolist()),
        quantiles=tuple(q.tolist()),
        below=tuple(below.tolist()),
        at_or_below=tuple(np.searchsorted(xs, q, side="right").tolist()),
        sum_below=tuple(prefix[below].tolist()),
    )


def category_counts(s: pd.Series) -> tuple[list[str], np.ndarray]:
    """Non-null category labels (as strings) and their counts; codes + bincount for categoricals."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        codes = s.cat.codes.to_numpy()
        cats = s.cat.categories
        counts = np.bincount(codes.astype(np.int64) + 1, minlength=len(cats) + 1)[1:]
        return [str(c) for c in cats], counts
    vc = s.value_counts(dropna=True, sort=False)
    return [str(k) for k in vc.index], vc.to_numpy(dtype=np.int64)


def _merge_labels(labels: list[str], counts: np.ndarray) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, v in zip(labels, counts.tolist(), strict=True):
        out[k] = out.get(k, 0) + int(v)  # distinct values may share a string form (1 and "1")
    return out


def bucket_counts(labels: Sequence[str], counts: Any, buckets: int) -> np.ndarray:
    """Counts of ``labels`` summed into ``buckets`` cells by a fixed hash of the label text.

    The cell of a label depends on the label alone (pandas' fixed-key hash), so
    a reference and a current frame share cells whatever their counts: no
    category is favoured for having been frequent in one of them.
    """
    if not len(labels):
        return np.zeros(buckets, dtype=np.int64)
    h = pd.util.hash_pandas_object(pd.Series(list(labels), dtype=object), index=False).to_numpy()
    cells = (h % np.uint64(buckets)).astype(np.int64)
    return np.bincount(cells, weights=np.asarray(counts, dtype=np.float64), minlength=buckets).astype(np.int64)


def _categorical_profile(name: str, s: pd.Series, nulls: int, top_k: int) -> ColumnProfile:
    merged = _merge_labels(*category_counts(s))
    items = sorted(((k, v) for k, v in merged.items() if v > 0), key=lambda kv: (-kv[1], kv[0]))
    top = tuple(items[:top_k])
    other = sum(v for _, v in items[top_k:])
    buckets: tuple[int, ...] = ()
    if other:
        labels, counts = zip(*items, strict=True)
        buckets = tuple(bucket_counts(labels, counts, top_k).tolist())
    return ColumnProfile(
        name=name,
        dtype=str(s.dtype),
        kind="categorical",
        count=len(s),
        nulls=nulls,
        top=top,
        other=other,
        distinct=len(items),
        top_k=top_k,
        buckets=buckets,
    )


def profile_column(
    name: str, s: pd.Series, *, top_k: int = DEFAULT_TOP_K, probs: np.ndarray | None = None
) -> ColumnProfile:
    """The profile of one column (one sort for numerics, one count for categoricals)."""
    nulls = null_count(s)
    kind = column_kind(s.dtype)
    grid = quantile_grid() if probs is None else probs
    if kind in ("numeric", "datetime"):
        return _numeric_profile(name, s, nulls, grid)
    if kind == "categorical":
        stamps = text_timestamps(s)
        if stamps is not None:
            return _numeric_profile(name, s, nulls, grid, stamps)
        try:
            return _categorical_profile(name, s, nulls, top_k)
        except TypeError:  # unhashable objects (lists, dicts): only counts
            pass
    return ColumnProfile(name=name, dtype=str(s.dtype), kind="other", count=len(s), nulls=nulls)


def profile(
    df: pd.DataFrame,
    columns: str | Sequence[str] | None = None,
    *,
    top_k: int = DEFAULT_TOP_K,
    now: dt.datetime | None = None,
) -> Profile:
    """Profile ``columns`` of ``df`` (all by default): one pass per column, JSON-ready.

    ``df`` may also be a table read in batches (see :mod:`checks.source`):
    each batch is profiled and the profiles merged (:mod:`checks.drift_stream`).

    >>> import pandas as pd
    >>> profile(pd.DataFrame({"a": range(5)})).columns["a"].quantile(0.5)
    2.0
    """
    if int(top_k) < 1:
        raise ValueError(f"profile top_k must be at least 1 — got {top_k}")
    if not isinstance(df, pd.DataFrame) and _is_stream(df):
        from checks.drift_stream import profile_stream

        return profile_stream(df, as_columns(columns), top_k=top_k, now=now or dt.datetime.now(dt.UTC))
    df = require_frame(df)
    names = as_columns(columns)
    if names is None:
        names = [str(c) for c in df.columns]
    require_columns(df, names)
    probs = quantile_grid()
    cols = {c: profile_column(c, df[c], top_k=top_k, probs=probs) for c in names}
    stamp = (now or dt.datetime.now(dt.UTC)).isoformat()
    return Profile(rows=len(df), columns=cols, created_at=stamp)
