"""Drift and profiles over a stream: scores exact against a reference, a stream's profile within its bound."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from checks import CheckContext, MemoryStore, Status, drift, profile, run_checks
from checks.drift_stream import PROFILES_HELD

RNG_SEED = 20240601
DISTRIBUTIONS = {
    "normal": lambda rng, n: rng.normal(10.0, 2.0, n),
    "lognormal": lambda rng, n: rng.lognormal(3.5, 0.8, n),
    "poisson": lambda rng, n: rng.poisson(2.0, n).astype(np.int64) + 1,
}
#: The documented bound for KS against a profile merged from a stream's batches, as against the whole frame's.
KS_BOUND = 0.002


def _batches(x: np.ndarray, count: int) -> list[pd.DataFrame]:
    return [pd.DataFrame({"x": part}) for part in np.array_split(x, count)]


def _empirical(x: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.sort(x)
    return np.searchsorted(s, q, side="left") / len(s), np.searchsorted(s, q, side="right") / len(s)


@pytest.mark.parametrize("dist", list(DISTRIBUTIONS))
@pytest.mark.parametrize("count", [7, PROFILES_HELD, 3 * PROFILES_HELD])
def test_a_streams_profile_is_within_one_grid_cell_per_merge_level(dist: str, count: int) -> None:
    """Counts, extremes and mean are exact; the CDF at the knots is within 0.001 per level of merging."""
    rng = np.random.default_rng(RNG_SEED)
    x = DISTRIBUTIONS[dist](rng, 200_000).astype(np.float64)
    merged = profile(_batches(x, count)).columns["x"]
    whole = profile(pd.DataFrame({"x": x})).columns["x"]
    assert (merged.count, merged.nulls, merged.finite, merged.min, merged.max) == (
        whole.count,
        whole.nulls,
        whole.finite,
        whole.min,
        whole.max,
    )
    assert merged.mean == pytest.approx(whole.mean, rel=1e-12)
    assert merged.std == pytest.approx(whole.std, rel=1e-9)
    levels = 1 if count <= PROFILES_HELD else 2
    below, at = _empirical(x, np.asarray(merged.quantiles))
    n = len(x)
    assert np.max(np.abs(np.asarray(merged.below) / n - below)) <= 0.001 * levels + 1 / n
    assert np.max(np.abs(np.asarray(merged.at_or_below) / n - at)) <= 0.001 * levels + 1 / n


@pytest.mark.parametrize("dist", list(DISTRIBUTIONS))
@pytest.mark.parametrize("shift", [1.0, 1.05])
def test_ks_against_a_streams_profile_is_within_the_bound(dist: str, shift: float) -> None:
    """KS against a profile merged from 50 batches is within 0.002 of KS against the whole frame's profile."""
    rng = np.random.default_rng(RNG_SEED + 1)
    ref = DISTRIBUTIONS[dist](rng, 200_000).astype(np.float64)
    cur = pd.DataFrame({"x": DISTRIBUTIONS[dist](rng, 100_000) * shift})
    by_whole = drift("x", reference=profile(pd.DataFrame({"x": ref})))(cur)[0].observed
    by_stream = drift("x", reference=profile(_batches(ref, 50)))(cur)[0].observed
    assert by_stream == pytest.approx(by_whole, abs=KS_BOUND)


def test_a_moving_baseline_recorded_from_streams_judges_like_one_from_frames() -> None:
    """Runs streamed in batches keep baselines that give the verdicts, and KS within the bound, of whole runs."""
    rng = np.random.default_rng(RNG_SEED + 2)
    runs = [
        pd.DataFrame({"x": rng.normal(level, 1.0, 40_000), "c": rng.choice(["a", "b", "c"], 40_000, p=p)})
        for level, p in ((0.0, (0.5, 0.3, 0.2)), (0.0, (0.5, 0.3, 0.2)), (0.3, (0.3, 0.3, 0.4)))
    ]
    verdicts: dict[str, list[tuple[str | None, Status, float]]] = {"whole": [], "stream": []}
    for mode in verdicts:
        store, check = MemoryStore(), drift(["x", "c"])
        for i, frame in enumerate(runs):
            ctx = CheckContext(store=store, pipeline="p", dataset="d", run_id=f"r{i}")
            data = [frame.iloc[j : j + 7_000] for j in range(0, len(frame), 7_000)]
            results = check(frame, ctx) if mode == "whole" else run_checks([check], data, ctx)
            verdicts[mode] += [(r.column, r.status, r.observed or 0.0) for r in results]
    for (col, status, score), (col2, status2, score2) in zip(verdicts["whole"], verdicts["stream"], strict=True):
        assert (col, status) == (col2, status2)
        assert score2 == pytest.approx(score, abs=KS_BOUND if col == "x" else 1e-9)
    assert verdicts["stream"][-2][1] is Status.FAIL


def test_identifier_like_columns_are_skipped_on_a_stream_too() -> None:
    """With columns=None, a column of distinct ids is skipped (its share from a sketch), a low-cardinality one kept."""
    rng = np.random.default_rng(RNG_SEED + 3)
    n = 60_000
    frame = pd.DataFrame({"id": rng.permutation(n), "c": rng.choice(["a", "b"], n), "x": rng.normal(size=n)})
    ref = frame.sample(frac=1.0, random_state=1)
    whole = drift(reference=ref)(frame)
    streamed = run_checks([drift(reference=ref)], [frame.iloc[i : i + 9_000] for i in range(0, n, 9_000)])
    assert [(r.column, r.status, r.measure) for r in whole] == [(r.column, r.status, r.measure) for r in streamed]
    skipped = streamed[0]
    assert skipped.column == "id" and skipped.details["skipped"] == "identifier-like"
    assert skipped.details["distinct_share"] == pytest.approx(1.0, abs=0.03)
