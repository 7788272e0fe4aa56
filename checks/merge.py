"""Merging profiles: the reference made of several runs (drift's ``window`` baseline).

>>> import numpy as np, pandas as pd
>>> from checks.profile import profile
>>> a = profile(pd.DataFrame({"x": np.arange(0.0, 500.0), "c": ["a", "b"] * 250}))
>>> b = profile(pd.DataFrame({"x": np.arange(500.0, 1000.0), "c": ["b"] * 500}))
>>> m = merge_profiles([a, b])
>>> m.rows, abs(m.columns["x"].quantile(0.5) - 499.5) <= 1, dict(m.columns["c"].top)
(1000, True, {'b': 750, 'a': 250})

Counts, nulls, extremes, mean and standard deviation merge exactly, and so
do the categories (or their hashed buckets). A numeric column's CDF is known
exactly at each profile's ~1000 quantiles; between them it is interpolated,
so the merged CDF is within one grid cell (about 0.001 of the mass) of the
CDF of the pooled raw values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from checks.profile import ColumnProfile, Profile, bucket_counts, quantile_grid

__all__ = ["merge_profiles"]


def merge_profiles(profiles: Sequence[Profile]) -> Profile:
    """One profile of the rows of all ``profiles``; a column is merged from the profiles that have it."""
    if not profiles:
        raise ValueError("merge_profiles needs at least one profile")
    if len(profiles) == 1:
        return profiles[0]
    names: list[str] = []
    for p in profiles:
        names += [c for c in p.columns if c not in names]
    cols = {}
    for name in names:
        parts = [p.columns[name] for p in profiles if name in p.columns]
        kinds = {c.kind for c in parts}
        if len(kinds) > 1:  # the column changed kind between runs: keep the newest (the first given)
            cols[name] = parts[0]
        elif parts[0].kind in ("numeric", "datetime"):
            cols[name] = _merge_numeric(parts)
        elif parts[0].kind == "categorical":
            cols[name] = _merge_categorical(parts)
        else:
            cols[name] = parts[0]
    return Profile(
        rows=sum(p.rows for p in profiles),
        columns=cols,
        created_at=profiles[0].created_at,
    )


class _Cdf:
    """One profile's counts below / at or below any x, and sums below x, interpolated inside grid cells."""

    def __init__(self, c: ColumnProfile) -> None:
        q = np.asarray(c.quantiles, dtype=np.float64)
        uq, first = np.unique(q, return_index=True)
        last = np.searchsorted(q, uq, side="right") - 1
        self.knots = uq
        self.below = np.asarray(c.below, dtype=np.float64)[first]
        self.at = np.asarray(c.at_or_below, dtype=np.float64)[last]
        self.sums = np.asarray(c.sum_below, dtype=np.float64)[first]
        self.min = float(c.min if c.min is not None else 0.0)
        self.n = float(c.finite)

    def evaluate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Counts below x, at or below x, and the sum of (v - min) over values below x."""
        k = self.knots
        if len(k) == 0:
            z = np.zeros(len(x))
            return z, z, z
        j = np.searchsorted(k, x, side="left")  # k[j-1] < x <= k[j]
        exact = (j < len(k)) & (k[np.minimum(j, len(k) - 1)] == x)
        below, at, sums = np.zeros(len(x)), np.zeros(len(x)), np.zeros(len(x))
        above = j >= len(k)
        below[above] = at[above] = self.n
        sums[above] = self.sums[-1] + (self.n - self.below[-1]) * (k[-1] - self.min)
        ji = np.minimum(j[exact], len(k) - 1)
        below[exact], at[exact], sums[exact] = self.below[ji], self.at[ji], self.sums[ji]
        inner = ~exact & ~above & (j > 0)
        if inner.any():
            lo, hi = j[inner] - 1, j[inner]
            t = (x[inner] - k[lo]) / (k[hi] - k[lo])
            start, inside = self.at[lo], np.maximum(self.below[hi] - self.at[lo], 0.0)
            count = start + t * inside
            below[inner] = at[inner] = count
            # values inside the cell, spread evenly: those below x average (k[lo] + x) / 2
            base = self.sums[lo] + (self.at[lo] - self.below[lo]) * (k[lo] - self.min)
            sums[inner] = base + t * inside * ((k[lo] + x[inner]) / 2 - self.min)
        return below, at, sums


def _merge_numeric(parts: list[ColumnProfile]) -> ColumnProfile:
    finite = [c for c in parts if c.finite > 0 and c.quantiles]
    n = sum(c.finite for c in finite)
    base = dict(
        name=parts[0].name,
        dtype=parts[0].dtype,
        kind=parts[0].kind,
        count=sum(c.count for c in parts),
        nulls=sum(c.nulls for c in parts),
        finite=n,
        pos_inf=sum(c.pos_inf for c in parts),
        neg_inf=sum(c.neg_inf for c in parts),
        text=parts[0].text,
    )
    if not finite:
        return ColumnProfile(**base)  # type: ignore[arg-type]
    lo = min(float(c.min) for c in finite if c.min is not None)
    hi = max(float(c.max) for c in finite if c.max is not None)
    mean = sum(c.finite * float(c.mean or 0.0) for c in finite) / n
    ss = sum((c.finite - 1) * float(c.std or 0.0) ** 2 + c.finite * (float(c.mean or 0.0) - mean) ** 2 for c in finite)
    std = math.sqrt(ss / (n - 1)) if n > 1 else 0.0
    cdfs = [_Cdf(c) for c in finite]
    xs = np.unique(np.concatenate([c.knots for c in cdfs]))
    below = sum(f.evaluate(xs)[0] for f in cdfs)
    at = sum(f.evaluate(xs)[1] for f in cdfs)
    assert isinstance(below, np.ndarray) and isinstance(at, np.ndarray)
    # the merged count of values <= x, as a step at each knot: (x, below) then (x, at)
    gx = np.repeat(xs, 2)
    gy = np.empty(2 * len(xs))
    gy[0::2], gy[1::2] = below, at
    probs = quantile_grid()
    # np.quantile's 'linear' rule: sorted value number h = p (n - 1), counted from 0, is the
    # smallest x with more than h values at or below it
    q = np.interp(probs * (n - 1) + 0.5, gy, gx)
    q[0], q[-1] = lo, hi
    b = np.zeros(len(q))
    a = np.zeros(len(q))
    sums = np.zeros(len(q))
    for f in cdfs:
        fb, fa, fs = f.evaluate(q)
        b += fb
        a += fa
        sums += fs + fb * (f.min - lo)
    return ColumnProfile(
        **base,  # type: ignore[arg-type]
        min=lo,
        max=hi,
        mean=mean,
        std=std,
        probs=tuple(probs.tolist()),
        quantiles=tuple(q.tolist()),
        below=tuple(np.round(b).astype(np.int64).tolist()),
        at_or_below=tuple(np.round(a).astype(np.int64).tolist()),
        sum_below=tuple(sums.tolist()),
    )


def _merge_categorical(parts: list[ColumnProfile]) -> ColumnProfile:
    top_k = max(c.top_k for c in parts) or max(len(c.top) for c in parts) or 1
    totals: dict[str, int] = {}
    for c in parts:
        for k, v in c.top:
            totals[k] = totals.get(k, 0) + v
    items = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    exact = all(not c.other for c in parts) and len(items) <= top_k
    buckets: tuple[int, ...] = ()
    other = sum(c.other for c in parts) + sum(v for _, v in items[top_k:])
    if not exact:
        sizes = {len(c.buckets) for c in parts if c.buckets}
        if len(sizes) <= 1:
            size = sizes.pop() if sizes else top_k
            cells = np.zeros(size, dtype=np.int64)
            for c in parts:
                if c.buckets:
                    cells += np.asarray(c.buckets, dtype=np.int64)
                elif c.top:
                    labels, counts = zip(*c.top, strict=True)
                    cells += bucket_counts(labels, counts, size)
            buckets = tuple(cells.tolist())
    return ColumnProfile(
        name=parts[0].name,
        dtype=parts[0].dtype,
        kind="categorical",
        count=sum(c.count for c in parts),
        nulls=sum(c.nulls for c in parts),
        top=tuple(items[:top_k]),
        other=other,
        distinct=len(items) if exact else max(len(items), max(c.distinct for c in parts)),
        top_k=top_k,
        buckets=buckets,
    )
