"""Drift scores computed from a reference profile and the current column, with numpy only.

A numeric column is compared through the reference's quantile grid: the
current values are counted below and at each reference quantile (one bucketed
pass), which gives both empirical CDFs exactly at ~1000 points. From those:

* ``ks``: the largest CDF gap at the grid points (exact there; the raw-data
  statistic can exceed it by at most the reference mass inside one grid cell,
  about 1/1000);
* ``psi`` and ``js``: on the reference's quantile bins (deciles by default), the
  same bins as ``bench/baseline_suite.psi_numeric``;
* ``wasserstein``: the area between the CDFs, trapezoids over the grid plus the
  exact area outside the reference's range.

A categorical column is compared through aligned category counts (every
category of the reference, or, beyond ``top_k`` distinct categories, buckets
of a fixed hash of the label that both sides share): ``psi``, ``js`` and the
``chi2`` statistic of the 2 x k contingency table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from checks.profile import ColumnProfile, _merge_labels, bucket_counts

__all__ = [
    "CategoricalComparison",
    "NumericComparison",
    "NumericCounts",
    "PSI_EPS",
    "chi2_quantile",
    "compare_buckets",
    "compare_categorical",
    "compare_counts",
    "compare_numeric",
    "count_numeric",
    "js_distance",
    "psi",
]

PSI_EPS = 1e-6
_TABLE_MIN_ROWS = 50_000
_MAX_KNOTS_PER_CELL = 6


def psi(cur: np.ndarray, ref: np.ndarray, eps: float = PSI_EPS) -> float:
    """Population stability index of two count (or share) vectors, shares clipped at ``eps``."""
    c = np.maximum(cur / max(cur.sum(), 1), eps)
    r = np.maximum(ref / max(ref.sum(), 1), eps)
    return float(np.sum((c - r) * np.log(c / r)))


def js_distance(cur: np.ndarray, ref: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, so within [0, 1]) of two count vectors."""
    p = cur / max(cur.sum(), 1)
    q = ref / max(ref.sum(), 1)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0)
    return math.sqrt(max(float(kl_p.sum() + kl_q.sum()) / 2, 0.0))


def _dof(cur: np.ndarray, ref: np.ndarray) -> int:
    """Degrees of freedom of a 2 x k table of two count vectors: occupied cells minus one (at least 1)."""
    return max(int(np.count_nonzero((cur + ref) > 0)) - 1, 1)


def chi2_quantile(dof: int, z: float = 3.09) -> float:
    """Upper chi-square quantile by Wilson-Hilferty (z=3.09: tail probability 0.001)."""
    k = max(int(dof), 1)
    a = 2.0 / (9.0 * k)
    return k * (1.0 - a + z * math.sqrt(a)) ** 3


def _knot_index(uq: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``np.searchsorted(uq, x, side="right")`` for sorted distinct knots, via a lookup table.

    A binary search over 1000 knots mispredicts ~10 branches per value; a
    table of 2**16 uniform cells maps a value to the knots of its cell, then a
    few vectorised steps finish the count. Falls back to searchsorted for small
    inputs or when the knots crowd into few cells.
    """
    if len(x) < _TABLE_MIN_ROWS or len(uq) < 32:
        return np.searchsorted(uq, x, side="right")
    lo, hi = float(uq[0]), float(uq[-1])
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        return np.searchsorted(uq, x, side="right")
    cells = 1 << 16
    scale = cells / (hi - lo)
    knot_cells = np.minimum(((uq - lo) * scale).astype(np.int64), cells - 1)
    per_cell = int(np.bincount(knot_cells).max())
    if per_cell > _MAX_KNOTS_PER_CELL:
        return np.searchsorted(uq, x, side="right")
    # start one cell early, so rounding in (x - lo) * scale can never skip a knot
    edges = lo + (np.arange(cells, dtype=np.float64) - 1.0) / scale
    start = np.searchsorted(uq, edges, side="right")
    c = (x - lo) * scale
    np.clip(c, 0, cells - 1, out=c)
    idx = start[c.astype(np.intp)]
    del c
    ext = np.append(uq, np.inf)
    for _ in range(2 * per_cell + 1):
        idx += ext[idx] <= x
    return idx


def _interval_areas(
    knots: np.ndarray, below: np.ndarray, at: np.ndarray, sums: np.ndarray, n: int, offset: float
) -> np.ndarray:
    """Area under an empirical CDF on each interval between consecutive knots.

    On (a, b) the CDF is F(a) plus the share of values already passed, so the
    area is (b - a) F(a) + sum over values v inside of (b - v) / n.
    """
    a, b = knots[:-1] - offset, knots[1:] - offset
    inside = np.maximum(below[1:] - at[:-1], 0.0)  # share strictly inside (a, b)
    sum_inside = (sums[1:] - sums[:-1]) / max(n, 1) - a * (at[:-1] - below[:-1])
    return (b - a) * at[:-1] + b * inside - sum_inside


@dataclass
class NumericComparison:
    """Both empirical CDFs at the reference's distinct quantiles, as fractions."""

    n_cur: int
    n_ref: int
    knots: np.ndarray  # distinct reference quantiles
    cur_below: np.ndarray  # F_cur(knot-) fraction
    cur_at: np.ndarray  # F_cur(knot)
    ref_below: np.ndarray
    ref_at: np.ndarray
    probs: np.ndarray = field(default_factory=lambda: np.empty(0))
    knot_of_grid: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    cur_sums: np.ndarray = field(default_factory=lambda: np.empty(0))  # sum of (x - offset) below each knot
    ref_sums: np.ndarray = field(default_factory=lambda: np.empty(0))
    offset: float = 0.0
    tail_below: float = 0.0  # sum of (min_ref - x) over current values below the reference's min
    tail_above: float = 0.0  # sum of (x - max_ref) over current values above its max
    scale: float = 1.0
    spread: float = 1.0  # reference's integral of sqrt(F(1-F)) over its scale

    def ks(self) -> float:
        """Kolmogorov-Smirnov statistic at the grid points."""
        gap = np.maximum(np.abs(self.cur_below - self.ref_below), np.abs(self.cur_at - self.ref_at))
        return float(gap.max()) if len(gap) else 0.0

    def bin_counts(self, bins: int) -> tuple[np.ndarray, np.ndarray]:
        """Current and reference counts in ``bins`` reference-quantile bins (edges count upward)."""
        targets = np.arange(1, bins) / bins
        pos = np.clip(np.searchsorted(self.probs, targets), 0, len(self.probs) - 1)
        prev = np.clip(pos - 1, 0, len(self.probs) - 1)
        pos = np.where(np.abs(self.probs[prev] - targets) < np.abs(self.probs[pos] - targets), prev, pos)
        k = self.knot_of_grid[pos]
        cur_cum = np.concatenate([[0.0], self.cur_below[k], [1.0]]) * self.n_cur
        ref_cum = np.concatenate([[0.0], self.ref_below[k], [1.0]]) * self.n_ref
        return np.round(np.diff(cur_cum)), np.round(np.diff(ref_cum))

    def wasserstein_raw(self) -> float:
        """Earth mover's distance in the column's own units: the area between the two CDFs.

        Per grid interval the area under each CDF is exact (from the counts and
        the sums of the values inside it); the absolute difference of the two
        areas equals the area between the CDFs unless they cross inside one
        interval. Outside the reference's range the area is exact.
        """
        if len(self.knots) < 2:
            return (self.tail_below + self.tail_above) / max(self.n_cur, 1)
        area_c = _interval_areas(self.knots, self.cur_below, self.cur_at, self.cur_sums, self.n_cur, self.offset)
        area_r = _interval_areas(self.knots, self.ref_below, self.ref_at, self.ref_sums, self.n_ref, self.offset)
        inner = float(np.sum(np.abs(area_c - area_r)))
        return inner + (self.tail_below + self.tail_above) / max(self.n_cur, 1)

    def wasserstein(self) -> float:
        """Wasserstein distance divided by the reference's robust scale (IQR / 1.349)."""
        raw = self.wasserstein_raw()
        if self.scale > 0:
            return raw / self.scale
        return 0.0 if raw == 0 else math.inf


@dataclass
class NumericCounts:
    """A current column counted against a reference grid: additive, so batches' counts sum to the whole's.

    ``counts[j]`` is the number of values with j knots at or below them;
    ``eq[j]`` the number equal to knot j; ``sums`` (Wasserstein only) the sum
    of ``x - offset`` per slot; the tails are sums beyond the reference's range.
    """

    n: int
    counts: np.ndarray
    eq: np.ndarray
    sums: np.ndarray | None = None
    tail_below: float = 0.0
    tail_above: float = 0.0

    def __add__(self, other: NumericCounts) -> NumericCounts:
        sums = None if self.sums is None or other.sums is None else self.sums + other.sums
        return NumericCounts(
            self.n + other.n,
            self.counts + other.counts,
            self.eq + other.eq,
            sums,
            self.tail_below + other.tail_below,
            self.tail_above + other.tail_above,
        )


def _knots(ref: ColumnProfile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q = np.asarray(ref.quantiles, dtype=np.float64)
    return np.unique(q, return_index=True, return_inverse=True)


def count_numeric(ref: ColumnProfile, x: np.ndarray, *, tails: bool = False) -> NumericCounts:
    """Count the finite current values ``x`` against the reference's quantile grid (one pass)."""
    uq = _knots(ref)[0]
    idx = _knot_index(uq, x)
    counts = np.bincount(idx, minlength=len(uq) + 1)
    # values equal to a knot land just above it: count them, so F_cur(knot) is exact with ties
    ext = np.append(uq, np.nan)
    eq = ext[idx - 1] == x  # idx == 0 wraps to the NaN sentinel, never equal
    eq_counts = np.bincount(idx[eq] - 1, minlength=len(uq))[: len(uq)]
    out = NumericCounts(len(x), counts, eq_counts)
    if tails:
        offset = float(ref.min) if ref.min is not None else 0.0
        out.sums = np.bincount(idx, weights=x - offset, minlength=len(uq) + 1)
        low = x[idx == 0]
        out.tail_below = float(np.sum(uq[0] - low)) if len(low) else 0.0
        high = x[idx == len(uq)]
        out.tail_above = float(np.sum(high - uq[-1])) if len(high) else 0.0
    return out


def compare_numeric(ref: ColumnProfile, x: np.ndarray, *, tails: bool = False) -> NumericComparison:
    """Count the finite current values ``x`` against the reference's quantile grid (one pass)."""
    return compare_counts(ref, count_numeric(ref, x, tails=tails))


def compare_counts(ref: ColumnProfile, cur: NumericCounts) -> NumericComparison:
    """Both empirical CDFs at the reference's knots, from the current column's counts."""
    q = np.asarray(ref.quantiles, dtype=np.float64)
    uq, first, inverse = _knots(ref)
    last = np.searchsorted(q, uq, side="right") - 1
    below_ref = np.asarray(ref.below, dtype=np.float64)[first]
    at_ref = np.asarray(ref.at_or_below, dtype=np.float64)[last]
    n = cur.n
    below_cur = np.cumsum(cur.counts)[: len(uq)].astype(np.float64)
    at_cur = below_cur + cur.eq
    offset = float(ref.min) if ref.min is not None else 0.0
    cur_sums: np.ndarray = np.empty(0)
    ref_sums: np.ndarray = np.empty(0)
    tail_below = tail_above = 0.0
    if cur.sums is not None and n:
        cur_sums = np.cumsum(cur.sums)[: len(uq)]
        ref_sums = np.asarray(ref.sum_below, dtype=np.float64)[first]
        tail_below, tail_above = cur.tail_below, cur.tail_above
    n_ref = max(ref.finite, 1)
    return NumericComparison(
        n_cur=n,
        n_ref=ref.finite,
        knots=uq,
        cur_below=below_cur / max(n, 1),
        cur_at=at_cur / max(n, 1),
        ref_below=below_ref / n_ref,
        ref_at=at_ref / n_ref,
        probs=np.asarray(ref.probs, dtype=np.float64),
        knot_of_grid=inverse.reshape(-1),
        cur_sums=cur_sums,
        ref_sums=ref_sums,
        offset=offset,
        tail_below=tail_below,
        tail_above=tail_above,
        scale=ref.robust_scale(),
        spread=ref.cdf_spread() / ref.robust_scale() if ref.robust_scale() > 0 else 1.0,
    )


OTHER = "(other)"


@dataclass
class CategoricalComparison:
    """Current and reference counts on aligned categories."""

    labels: list[str]
    cur: np.ndarray
    ref: np.ndarray
    new: list[str]
    vanished: list[str]
    hashed: int = 0  # the number of hashed buckets compared, when categories were too many to keep

    @property
    def n_cur(self) -> int:
        return int(self.cur.sum())

    @property
    def n_ref(self) -> int:
        return int(self.ref.sum())

    @property
    def dof(self) -> int:
        return _dof(self.cur, self.ref)

    def psi(self) -> float:
        return psi(self.cur, self.ref)

    def js(self) -> float:
        return js_distance(self.cur, self.ref)

    def chi2(self) -> float:
        """Pearson chi-square statistic of the 2 x k table (no continuity correction)."""
        keep = (self.cur + self.ref) > 0
        table = np.vstack([self.cur[keep], self.ref[keep]]).astype(np.float64)
        total = table.sum()
        if total == 0 or table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
            return 0.0
        expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / total
        return float(np.sum((table - expected) ** 2 / expected))


def compare_buckets(ref: ColumnProfile, cur_buckets: np.ndarray) -> CategoricalComparison:
    """The current column's counts hashed into the reference's buckets, against the reference's."""
    return CategoricalComparison(
        labels=[f"#{i}" for i in range(len(ref.buckets))],
        cur=np.asarray(cur_buckets, dtype=np.float64),
        ref=np.asarray(ref.buckets, dtype=np.float64),
        new=[],
        vanished=[],
        hashed=len(ref.buckets),
    )


def compare_categorical(ref: ColumnProfile, labels: list[str], counts: np.ndarray) -> CategoricalComparison:
    """Align current category counts with the reference's categories, or with its hashed buckets.

    A reference with more distinct categories than its ``top_k`` is compared
    through buckets that both sides fill by the same hash of the label: an
    unbiased comparison whatever the cardinality. (Keeping the reference's
    top-k and lumping the rest is biased: categories chosen for being frequent
    in the reference sample are rarer in any fresh sample.)
    """
    cur_counts = {k: v for k, v in _merge_labels(labels, counts).items() if v}
    if ref.buckets:
        return compare_buckets(ref, bucket_counts(list(cur_counts), list(cur_counts.values()), len(ref.buckets)))
    ref_counts = dict(ref.top)
    names = list(ref_counts)
    other_cur = 0
    new: list[str] = []
    for k in cur_counts:
        if k in ref_counts:
            continue
        if ref.other > 0:
            other_cur += cur_counts[k]  # may be in the reference's long tail: cannot call it new
        else:
            new.append(k)
            names.append(k)
    cur = np.array([cur_counts.get(k, 0) for k in names], dtype=np.float64)
    refv = np.array([ref_counts.get(k, 0) for k in names], dtype=np.float64)
    if ref.other > 0 or other_cur > 0:
        names.append(OTHER)
        cur = np.append(cur, other_cur)
        refv = np.append(refv, ref.other)
    vanished = [k for k in ref_counts if cur_counts.get(k, 0) == 0]
    return CategoricalComparison(labels=names, cur=cur, ref=refv, new=new, vanished=vanished)
