"""Drift scores against reference implementations, and the defaults' verdicts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from checks import CheckContext, MemoryStore, Profile, Status, drift, profile
from checks.thresholds import limits

RNG_SEED = 20240601

DISTRIBUTIONS = {
    "normal": lambda rng, n: rng.normal(10.0, 2.0, n),
    "lognormal": lambda rng, n: rng.lognormal(3.5, 0.8, n),
    "poisson": lambda rng, n: rng.poisson(2.0, n).astype(np.int64) + 1,
    "uniform": lambda rng, n: rng.uniform(-1.0, 1.0, n),
}
SHIFTS = {"same": lambda x: x, "scaled": lambda x: x * 1.1, "shifted": lambda x: x + 1}


def _frames(dist: str, shift: str, n: int = 20_000) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(RNG_SEED)
    ref = DISTRIBUTIONS[dist](rng, n)
    cur = SHIFTS[shift](DISTRIBUTIONS[dist](rng, n))
    return pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur})


def _score(ref: pd.DataFrame, cur: pd.DataFrame, method: str, column: str = "x") -> float:
    (r,) = drift(column, reference=profile(ref), method=method)(cur)
    assert r.status is not Status.ERROR, r.message
    assert r.observed is not None
    return r.observed


def _decile_counts(cur: np.ndarray, ref: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1)
    return c, r


@pytest.mark.parametrize("dist", list(DISTRIBUTIONS))
@pytest.mark.parametrize("shift", list(SHIFTS))
def test_ks_matches_scipy(dist: str, shift: str) -> None:
    """Profile-based KS is within 0.002 (one grid cell) of scipy's ks_2samp on raw data."""
    ref, cur = _frames(dist, shift)
    expected = stats.ks_2samp(cur["x"], ref["x"]).statistic
    assert _score(ref, cur, "ks") == pytest.approx(expected, abs=2e-3)


@pytest.mark.parametrize("dist", list(DISTRIBUTIONS))
@pytest.mark.parametrize("shift", list(SHIFTS))
def test_psi_matches_baseline_definition(dist: str, shift: str, baseline_suite) -> None:
    """Numeric PSI from a profile equals baseline_suite.psi_numeric on raw data to 1e-6."""
    ref, cur = _frames(dist, shift)
    expected = baseline_suite.psi_numeric(cur["x"].to_numpy(), ref["x"].to_numpy())
    assert _score(ref, cur, "psi") == pytest.approx(expected, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("dist", list(DISTRIBUTIONS))
@pytest.mark.parametrize("shift", list(SHIFTS))
def test_js_matches_scipy_on_decile_bins(dist: str, shift: str) -> None:
    """Numeric JS distance equals scipy's jensenshannon (base 2) on the reference's decile bins."""
    ref, cur = _frames(dist, shift)
    c, r = _decile_counts(cur["x"].to_numpy(), ref["x"].to_numpy())
    expected = jensenshannon(c / c.sum(), r / r.sum(), base=2)
    assert _score(ref, cur, "js") == pytest.approx(expected, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(
    ("dist", "rel"),
    [("normal", 0.01), ("lognormal", 0.01), ("uniform", 0.01), ("poisson", 0.05)],
)
@pytest.mark.parametrize("shift", ["scaled", "shifted"])
def test_wasserstein_matches_scipy(dist: str, rel: float, shift: str) -> None:
    """Wasserstein from a profile is within 1% of scipy's (5% for discrete data)."""
    ref, cur = _frames(dist, shift, n=200_000)
    (r,) = drift("x", reference=profile(ref), method="wasserstein")(cur)
    expected = stats.wasserstein_distance(cur["x"], ref["x"])
    assert r.details["wasserstein_raw"] == pytest.approx(expected, rel=rel)
    assert r.observed == pytest.approx(r.details["wasserstein_raw"] / r.details["scale"])


def _categorical(shares: list[float], n: int, seed: int) -> pd.Series:
    rng = np.random.default_rng(seed)
    labels = [f"c{i}" for i in range(len(shares))]
    p = np.asarray(shares) / np.sum(shares)
    return pd.Series(pd.Categorical.from_codes(rng.choice(len(labels), n, p=p), categories=labels))


CATEGORICAL_CASES = {
    "same": ([5, 3, 2, 1], [5, 3, 2, 1]),
    "shifted": ([5, 3, 2, 1], [3, 3, 3, 1]),
    "two": ([9, 1], [8, 2]),
}


@pytest.mark.parametrize("case", list(CATEGORICAL_CASES))
@pytest.mark.parametrize("as_strings", [False, True])
def test_chi2_psi_js_match_references(case: str, as_strings: bool, baseline_suite) -> None:
    """Categorical chi2 equals scipy's chi2_contingency; PSI and JS equal direct formulas."""
    ref_shares, cur_shares = CATEGORICAL_CASES[case]
    ref = _categorical(ref_shares, 30_000, 1)
    cur = _categorical(cur_shares, 20_000, 2)
    if as_strings:
        ref, cur = ref.astype(str), cur.astype(str)
    vc = cur.value_counts(sort=False)
    vr = ref.value_counts(sort=False).reindex(vc.index, fill_value=0)
    table = np.vstack([vc.to_numpy(), vr.to_numpy()])
    chi2 = stats.chi2_contingency(table, correction=False)[0]
    psi = baseline_suite._psi(vc.to_numpy() / vc.sum(), vr.to_numpy() / vr.sum())
    js = jensenshannon(vc.to_numpy() / vc.sum(), vr.to_numpy() / vr.sum(), base=2)
    ref_df, cur_df = pd.DataFrame({"c": ref}), pd.DataFrame({"c": cur})
    assert _score(ref_df, cur_df, "chi2", "c") == pytest.approx(chi2, rel=1e-9)
    assert _score(ref_df, cur_df, "psi", "c") == pytest.approx(psi, rel=1e-9)
    assert _score(ref_df, cur_df, "js", "c") == pytest.approx(js, rel=1e-9, abs=1e-12)


def test_new_and_vanished_categories_are_reported() -> None:
    """A category only in the current frame is new, one only in the reference has vanished."""
    ref = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 50})
    cur = pd.DataFrame({"c": ["a"] * 50 + ["z"] * 50})
    (r,) = drift("c", reference=ref)(cur)
    assert r.details["new_categories"] == ["z"]
    assert r.details["vanished_categories"] == ["b"]
    assert r.status is Status.FAIL


def test_profile_round_trip_gives_same_scores() -> None:
    """A profile stored as JSON and read back gives the same drift scores as the in-memory one."""
    ref, cur = _frames("lognormal", "scaled")
    p = profile(ref)
    back = Profile.from_dict(json.loads(json.dumps(p.to_dict())))
    assert back == p
    methods = ["ks", "psi", "js", "wasserstein"]
    a = [r.observed for r in drift("x", reference=p, method=methods)(cur)]
    b = [r.observed for r in drift("x", reference=back, method=methods)(cur)]
    assert a == b


def test_dataframe_reference_equals_profile_reference() -> None:
    """A DataFrame reference is profiled once and scores exactly like its profile."""
    ref, cur = _frames("normal", "shifted")
    a = drift("x", reference=ref, method="psi")(cur)[0].observed
    b = drift("x", reference=profile(ref), method="psi")(cur)[0].observed
    assert a == b


@pytest.mark.parametrize(
    ("method", "n", "m", "dof", "expected"),
    [
        ("ks", 1_000_000, 1_000_000, 1, (0.03, 0.10)),  # effect floor dominates
        ("ks", 1_000, 1_000, 1, (1.9495 * np.sqrt(2 / 1_000), 0.10)),  # noise dominates warn
        ("ks", 200, 200, 1, (1.9495 * np.sqrt(2 / 200),) * 2),  # noise dominates both
        ("psi", 1_000_000, 1_000_000, 9, (0.1, 0.25)),
        ("chi2", 1_000_000, 1_000_000, 19, (0.1**2 * 500_000, 0.3**2 * 500_000)),
        ("js", 100_000, 100_000, 9, (0.1, 0.2)),
        ("wasserstein", 1_000_000, 1_000_000, 1, (0.1, 0.25)),
    ],
)
def test_limits_table(method: str, n: int, m: int, dof: int, expected: tuple[float, float]) -> None:
    """Limits are the effect floor on large samples and the noise floor on small ones."""
    from checks.thresholds import DEFAULT_THRESHOLDS

    lim = limits(method, n, m, dof, DEFAULT_THRESHOLDS[method])
    assert (lim.warn, lim.fail) == pytest.approx(expected, rel=1e-4)


def test_bench_drift_is_flagged_and_clean_frame_is_not(orders_data) -> None:
    """On the bench frames the defaults flag amount and country on _drift and nothing on _cur."""
    n = 200_000
    ref = orders_data.generate(n, seed=1000 + n % 997)
    cur = orders_data.generate(n, seed=2000 + n % 997)
    drifted = orders_data.generate(n, seed=2000 + n % 997, drift=True)
    cols = ["amount", "score", "quantity", "country", "status", "discount", "created_at", "channel"]
    check = drift(cols, reference=profile(ref, cols))
    assert [r for r in check(cur) if r.status is not Status.PASS] == []
    flagged = {r.column for r in check(drifted) if r.status in (Status.WARN, Status.FAIL)}
    assert flagged == {"amount", "country"}


SAME_DISTRIBUTION = {
    "normal": lambda rng, n: pd.Series(rng.normal(0, 1, n)),
    "lognormal": lambda rng, n: pd.Series(rng.lognormal(0, 1.5, n)),
    "poisson": lambda rng, n: pd.Series(rng.poisson(3, n)),
    "categorical": lambda rng, n: pd.Series(rng.choice(list("abcdefghij"), n, p=[0.3] + [0.7 / 9] * 9)),
}


@pytest.mark.parametrize("n", [1_000, 100_000, 1_000_000])
@pytest.mark.parametrize("dist", list(SAME_DISTRIBUTION))
def test_no_false_alarm_on_same_distribution(n: int, dist: str) -> None:
    """Two samples of one distribution are not flagged by the default thresholds of any method."""
    rng = np.random.default_rng(n + len(dist))
    ref = pd.DataFrame({"x": SAME_DISTRIBUTION[dist](rng, n)})
    cur = pd.DataFrame({"x": SAME_DISTRIBUTION[dist](rng, n)})
    results = drift("x", reference=profile(ref), method=["psi", "ks", "wasserstein", "js", "chi2"])(cur)
    assert results and all(r.status is Status.PASS for r in results), [r.message for r in results]


def test_moving_baseline_first_run_then_compares() -> None:
    """reference=None passes the first run ("no reference yet"), then compares with the last."""
    store = MemoryStore()
    ctx = CheckContext(store=store, dataset="orders")
    check = drift("x")
    rng = np.random.default_rng(3)
    first = check(pd.DataFrame({"x": rng.normal(size=5000)}), ctx)
    assert first[0].status is Status.PASS and "no reference yet" in first[0].message
    assert [p.run_id for p in store.profiles("", "orders", "drift(x)", limit=5)] == [""]
    second = check(pd.DataFrame({"x": rng.normal(size=5000)}), ctx)
    assert second[0].status is Status.PASS and second[0].measure == "ks"
    bad = check(pd.DataFrame({"x": rng.normal(5, 1, size=5000)}), ctx)
    assert bad[0].status is Status.FAIL
    again = check(pd.DataFrame({"x": rng.normal(size=5000)}), ctx)
    assert again[0].status is Status.PASS  # the failed frame did not become the reference


@pytest.mark.parametrize(
    ("kwargs", "context", "needle"),
    [
        ({"reference": "nope"}, CheckContext(store=MemoryStore()), "no profile named 'nope'"),
        ({"reference": "nope"}, CheckContext(), "needs a CheckStore"),
        ({}, CheckContext(store=MemoryStore()), "no dataset is named"),
        ({"reference": pd.DataFrame({"x": ["a"]})}, CheckContext(), "categorical"),
        ({"reference": pd.DataFrame({"y": [1.0]})}, CheckContext(), "not in the reference profile"),
        (
            {"reference": pd.DataFrame({"x": [1.0]}), "method": "chi2"},
            CheckContext(),
            "do not apply",
        ),
    ],
)
def test_unusable_reference_is_an_error_result(kwargs: dict, context: CheckContext, needle: str) -> None:
    """A reference that cannot be used gives status error with a message that says why."""
    (r,) = drift("x", **kwargs)(pd.DataFrame({"x": [1.0, 2.0]}), context)
    assert r.status is Status.ERROR and needle in r.message


@pytest.mark.parametrize(
    ("reference", "needs_store"),
    [(None, True), ("orders_ref", True), (pd.DataFrame({"x": [1.0]}), False)],
)
def test_needs_store_follows_the_reference(reference, needs_store: bool) -> None:
    """Only a stored or moving reference asks the runner for a store."""
    assert drift("x", reference=reference).needs_store is needs_store


def test_severity_warn_downgrades_failure() -> None:
    """With severity warn, a drift past the fail limit is reported as warn."""
    ref, cur = _frames("normal", "shifted")
    (r,) = drift("x", reference=ref, severity="warn")(cur)
    assert r.status is Status.WARN and r.details["verdict"] == "fail"


@pytest.mark.parametrize("shift", [0.0, 0.1, 0.15])
def test_ks_p_value_matches_scipy(shift: float) -> None:
    """p-values are absent by default and, when asked for, within 0.05 of scipy's asymptotic KS p-value."""
    rng = np.random.default_rng(RNG_SEED)
    ref, cur = rng.normal(10.0, 2.0, 5000), rng.normal(10.0, 2.0, 5000) + shift
    (plain,) = drift("x", reference=pd.DataFrame({"x": ref}))(pd.DataFrame({"x": cur}))
    (with_p,) = drift("x", reference=pd.DataFrame({"x": ref}), p_values=True)(pd.DataFrame({"x": cur}))
    assert "p_value" not in plain.details
    expected = stats.ks_2samp(cur, ref, method="asymp").pvalue
    assert with_p.details["p_value"] == pytest.approx(expected, abs=0.05)


def test_chi2_p_value_matches_scipy() -> None:
    """The chi2 p-value equals scipy's chi2_contingency p-value of the same 2 x k table."""
    rng = np.random.default_rng(RNG_SEED)
    cats = np.array(list("abcde"))
    ref = rng.choice(cats, 3000, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    cur = rng.choice(cats, 2000, p=[0.28, 0.26, 0.2, 0.16, 0.1])
    (r,) = drift("c", reference=pd.DataFrame({"c": ref}), p_values=True)(pd.DataFrame({"c": cur}))
    table = np.array([[np.sum(cur == c) for c in cats], [np.sum(ref == c) for c in cats]])
    assert r.measure == "chi2"
    assert r.details["p_value"] == pytest.approx(stats.chi2_contingency(table)[1], rel=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"method": "pci"}, "must be one of"),
        ({"thresholds": {"ks": (0.2, 0.1)}}, "above fail"),
        ({"bins": 1}, "at least 2"),
        ({"thresholds": {"kl": 1}}, "must be one of"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs: dict, needle: str) -> None:
    """Wrong arguments are caught when the check is built, not when it runs."""
    with pytest.raises(ValueError, match=needle):
        drift("x", **kwargs)


def _ctx(store: MemoryStore, run_id: str) -> CheckContext:
    return CheckContext(store=store, pipeline="etl", dataset="orders", run_id=run_id)


def test_first_run_with_its_column_missing_is_an_error() -> None:
    """The first run of a moving baseline errors on a missing column and passes only a checkable one."""
    store = MemoryStore()
    results = drift(["x", "gone"])(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), _ctx(store, "r1"))
    by_column = {r.column: r for r in results}
    assert by_column["x"].status is Status.PASS and "no reference yet" in by_column["x"].message
    assert by_column["gone"].status is Status.ERROR and "'gone' not found" in by_column["gone"].message
    (profile_row,) = store.profiles("etl", "orders", "drift(x,gone)", limit=5, accepted_only=False)
    assert profile_row.accepted is False  # a frame that could not be checked is no baseline


def _run_shift(check, store: MemoryStore, run_id: str, shift: float, n: int = 4000) -> Status:
    frame = pd.DataFrame({"x": np.random.default_rng(len(run_id) * 7 + int(shift * 100)).normal(shift, 1.0, n)})
    return check(frame, _ctx(store, run_id))[0].status


def test_fixed_baseline_does_not_creep_with_small_steps() -> None:
    """Eleven steps of 0.03 sd each pass against the previous run, but fail against a fixed first run."""
    from checks import accept_baseline

    steps = [0.03 * i for i in range(11)]
    for mode, last in (("previous", Status.PASS), ("fixed", Status.FAIL)):
        store, check = MemoryStore(), drift("x", baseline=mode)
        statuses = [_run_shift(check, store, f"r{i}", s, n=20_000) for i, s in enumerate(steps)]
        assert statuses[1] is Status.PASS and statuses[-1] is last, mode
    accept_baseline(store, pipeline="etl", dataset="orders")  # the latest run becomes the fixed baseline
    assert _run_shift(check, store, "r11", 0.3, n=20_000) is Status.PASS


def test_window_baseline_merges_the_last_accepted_runs() -> None:
    """baseline='window' compares with the merged profiles of the last accepted runs, named in the details."""
    store, check = MemoryStore(), drift("x", baseline="window", window=3)
    for i in range(4):
        _run_shift(check, store, f"r{i}", 0.0)
    (r,) = check(pd.DataFrame({"x": np.random.default_rng(9).normal(0, 1, 4000)}), _ctx(store, "r9"))
    assert r.status is Status.PASS and r.details["baseline_runs"] == ["r3", "r2", "r1"]
    assert r.details["n_reference"] == 3 * 4000


def test_failed_runs_do_not_become_the_previous_baseline() -> None:
    """A failed run is recorded but not accepted, so the next run compares with the last good one."""
    store, check = MemoryStore(), drift("x")
    assert _run_shift(check, store, "aug", 0.0) is Status.PASS
    assert _run_shift(check, store, "sep", 1.0) is Status.FAIL
    (r,) = check(pd.DataFrame({"x": np.random.default_rng(5).normal(0, 1, 4000)}), _ctx(store, "oct"))
    assert r.status is Status.PASS and r.details["baseline_runs"] == ["aug"]


def test_min_effect_raises_the_floors() -> None:
    """min_effect=0.2 lets a KS of about 0.1 pass; a mapping sets it per method."""
    ref, cur = _frames("normal", "scaled")
    (default,) = drift("x", reference=ref)(cur)
    (lenient,) = drift("x", reference=ref, min_effect=0.2)(cur)
    (per_method,) = drift("x", reference=ref, min_effect={"chi2": 0.5})(cur)
    assert default.status is Status.FAIL and lenient.status is Status.PASS
    assert per_method.status is Status.FAIL


def test_the_noise_tail_is_shared_among_a_checks_comparisons() -> None:
    """A check over four columns gives each comparison a quarter of the 0.001 tail, and a higher floor."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({c: rng.normal(size=500) for c in "abcd"})
    one = drift("a", reference=frame)(frame)[0].details
    four = drift(list("abcd"), reference=frame)(frame)[0].details
    assert one["noise_tail"] == 0.001 and four["noise_tail"] == pytest.approx(0.00025)
    assert four["noise_floor"] > one["noise_floor"]


def _zipf(rng: np.random.Generator, n: int, k: int = 5_000) -> pd.DataFrame:
    p = 1.0 / np.arange(1, k + 1)
    return pd.DataFrame({"c": pd.Series([f"v{i}" for i in rng.choice(k, n, p=p / p.sum())], dtype=object)})


@pytest.mark.parametrize("seed", range(3))
def test_high_cardinality_column_has_no_selection_bias(seed: int) -> None:
    """5,000 Zipf categories, beyond top_k: two samples of one distribution pass (the kept top-k would fail)."""
    rng = np.random.default_rng(seed)
    (r,) = drift("c", reference=_zipf(rng, 200_000))(_zipf(rng, 200_000))
    assert r.status is Status.PASS and r.details["hashed_buckets"] == 1000


def test_high_cardinality_column_still_sees_a_frequent_category_double() -> None:
    """Among 5,000 hashed categories, the top category's share doubling is flagged as with every category kept."""
    rng = np.random.default_rng(1)
    ref, cur = _zipf(rng, 100_000), _zipf(rng, 100_000)
    cur.loc[cur.index[:11_000], "c"] = "v0"  # about 11% -> 22%: Cohen's w about 0.2, a small effect
    (hashed,) = drift("c", reference=ref)(cur)
    (exact,) = drift("c", reference=ref, top_k=10_000)(cur)
    assert hashed.status in (Status.WARN, Status.FAIL) and exact.status in (Status.WARN, Status.FAIL)
    assert "hashed_buckets" not in exact.details


def test_text_timestamps_that_stop_parsing_are_an_error() -> None:
    """A column of ISO timestamps in the reference that holds other text now is an error that says so."""
    ref = pd.DataFrame({"t": [f"2024-01-{d:02d} 10:00:00" for d in range(1, 29)]})
    (r,) = drift("t", reference=ref)(pd.DataFrame({"t": ["soon"] * 28}))
    assert r.status is Status.ERROR and "ISO 8601" in r.message


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"baseline": "latest"}, ValueError, "must be one of previous, window, fixed"),
        ({"baseline": "window", "reference": "orders_ref"}, ValueError, "needs reference=None"),
        ({"window": 0}, ValueError, "window"),
        ({"top_k": 0}, ValueError, "top_k"),
        ({"min_effect": -0.1}, ValueError, "negative"),
        ({"min_effect": {"kl": 0.1}}, ValueError, "min_effect key"),
        ({"min_effect": "big"}, TypeError, "min_effect"),
    ],
)
def test_bad_baseline_arguments_raise_at_construction(kwargs: dict, error: type, needle: str) -> None:
    """Baseline, window, top_k and min_effect mistakes are caught when the check is built."""
    with pytest.raises(error, match=needle):
        drift("x", **kwargs)


def test_profile_needs_a_positive_top_k() -> None:
    """profile(top_k=0) is refused: a column's categories need at least one cell."""
    with pytest.raises(ValueError, match="top_k"):
        profile(pd.DataFrame({"c": ["a"]}), top_k=0)
