"""Duplicate counts equal pandas' own; keys across runs are remembered as hashes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.pandas import column, data_frames, range_indexes

from checks import CheckContext, MemoryStore, Status, no_duplicate_rows, unique, unique_across_runs
from checks.keys import duplicate_stats

FRAMES = data_frames(
    [
        column("i", elements=st.integers(-3, 3)),
        column("f", elements=st.sampled_from([0.0, -0.0, 1.5, np.nan, np.inf])),
        column("s", elements=st.sampled_from(["a", "b", None])),
        column("big", elements=st.integers(-(2**62), 2**62)),
    ],
    index=range_indexes(min_size=0, max_size=60),
)
SUBSETS = [["i"], ["f"], ["s"], ["big"], ["i", "s"], ["i", "f", "s"], ["i", "f", "s", "big"]]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=FRAMES, subset=st.sampled_from(SUBSETS))
def test_unique_counts_equal_pandas(df: pd.DataFrame, subset: list[str]) -> None:
    """Extra occurrences and rows involved equal df.duplicated(subset), keep='first' and False."""
    (r,) = unique(subset)(df)
    assert r.observed == df.duplicated(subset).sum()
    assert r.details["rows_involved"] == df.duplicated(subset, keep=False).sum()
    assert r.status is (Status.FAIL if r.observed else Status.PASS)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=FRAMES)
def test_full_row_duplicates_equal_pandas(df: pd.DataFrame) -> None:
    """no_duplicate_rows counts what df.duplicated() counts."""
    (r,) = no_duplicate_rows()(df)
    assert r.observed == df.duplicated().sum()
    assert r.details["rows_involved"] == df.duplicated(keep=False).sum()


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        (np.r_[np.arange(1000), [5, 5, 17]], "int64"),  # dense range: counting pass
        (np.r_[np.arange(1000) * 10**12, [5 * 10**12]], "int64"),  # sparse: hash pass
        ([1, 2, None, None, 2], "Int64"),
        (["a", "b", "a", None, None], "string"),
        (["a", "b", "a", None, None], "string[pyarrow]"),
        (["x", "y", "x"], "category"),
        ([1, "1", 1.0, None, (1, 2), (1, 2)], "object"),
        ([True, False, True], "bool"),
        (pd.to_datetime(["2024-01-01", "2024-01-01", None]), "datetime64[ns]"),
    ],
)
def test_single_key_dtypes_equal_pandas(values, dtype: str) -> None:
    """Single-column keys of every common dtype give pandas' duplicate counts."""
    s = pd.Series(values, dtype=dtype)
    df = pd.DataFrame({"k": s, "other": np.arange(len(s))})
    st_ = duplicate_stats(df, ["k"])
    assert st_.extra == df.duplicated(["k"]).sum()
    assert st_.involved == df.duplicated(["k"], keep=False).sum()


def test_large_frame_counts_and_examples() -> None:
    """On 300k rows with injected repeats, counts match pandas and examples are repeated keys."""
    rng = np.random.default_rng(0)
    n = 300_000
    df = pd.DataFrame({"id": rng.permutation(n), "v": rng.normal(size=n), "c": rng.choice(["a", "b"], n)})
    df.loc[10:19, "id"] = df.loc[100:109, "id"].to_numpy()
    df.iloc[200:205] = df.iloc[300:305].to_numpy()
    df = df.astype({"id": "int64", "v": "float64"})
    (r,) = unique("id")(df)
    assert r.observed == df["id"].duplicated().sum()
    assert set(r.details["examples"]) <= set(df.loc[df["id"].duplicated(keep=False), "id"])
    (rows,) = no_duplicate_rows()(df)
    assert rows.observed == df.duplicated().sum() == 5


def test_unhashable_values_are_an_error_result() -> None:
    """A key column of lists cannot be compared: status error naming the column."""
    df = pd.DataFrame({"k": [[1], [1], [2]]})
    (r,) = unique("k")(df)
    assert r.status is Status.ERROR and "'k'" in r.message


def _ctx(store: MemoryStore, run: str, day: int) -> CheckContext:
    return CheckContext(store=store, dataset="orders", run_id=run, now=dt.datetime(2024, 1, day, tzinfo=dt.UTC))


def test_unique_across_runs_reports_reloaded_keys() -> None:
    """Keys of an earlier run seen again are counted, with example keys; new keys pass."""
    store = MemoryStore()
    check = unique_across_runs("id")
    assert check(pd.DataFrame({"id": [1, 2, 3]}), _ctx(store, "r1", 1))[0].status is Status.PASS
    (r,) = check(pd.DataFrame({"id": [3, 4, 3, 5, 1]}), _ctx(store, "r2", 2))
    assert r.status is Status.FAIL
    assert r.observed == 2 and r.details["rows_seen_before"] == 3
    assert sorted(r.details["examples"]) == [1, 3]


def test_unique_across_runs_compound_key_and_retention() -> None:
    """Compound keys are hashed together; keys older than the retention are forgotten."""
    store = MemoryStore(key_retention=None)
    check = unique_across_runs(["a", "b"], retention_days=7)
    df = pd.DataFrame({"a": [1, 1], "b": ["x", "y"]})
    check(df, _ctx(store, "r1", 1))
    assert check(pd.DataFrame({"a": [1], "b": ["z"]}), _ctx(store, "r2", 2))[0].observed == 0
    assert check(pd.DataFrame({"a": [1], "b": ["x"]}), _ctx(store, "r3", 3))[0].observed == 1
    assert check(pd.DataFrame({"a": [1], "b": ["y"]}), _ctx(store, "r4", 20))[0].observed == 0


def test_unique_across_runs_retention_is_set_on_the_check() -> None:
    """retention_days=60 remembers a key loaded 40 days ago; the store keeps no shorter retention of its own."""
    store = MemoryStore()
    check = unique_across_runs("id", retention_days=60)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    for day, run, key in ((0, "r1", 1), (39, "r2", 2)):
        ctx = CheckContext(store=store, dataset="orders", run_id=run, now=start + dt.timedelta(days=day))
        check(pd.DataFrame({"id": [key]}), ctx)
    ctx = CheckContext(store=store, dataset="orders", run_id="r3", now=start + dt.timedelta(days=40))
    (r,) = check(pd.DataFrame({"id": [1]}), ctx)
    assert r.observed == 1 and r.details["examples"] == [1]


def test_unique_across_runs_millions_of_keys() -> None:
    """Two million-key runs overlapping by 1000 keys report exactly 1000."""
    store = MemoryStore()
    check = unique_across_runs("id")
    first = pd.DataFrame({"id": np.arange(1_000_000, dtype=np.int64)})
    second = pd.DataFrame({"id": np.arange(999_000, 1_999_000, dtype=np.int64)})
    check(first, _ctx(store, "r1", 1))
    (r,) = check(second, _ctx(store, "r2", 2))
    assert r.observed == 1000
    assert store.key_count("", "orders") == 1_999_000


@pytest.mark.parametrize(
    ("context", "needle"),
    [
        (CheckContext(dataset="d"), "needs a CheckStore"),
        (CheckContext(store=MemoryStore()), "dataset"),
    ],
)
def test_unique_across_runs_needs_store_and_dataset(context: CheckContext, needle: str) -> None:
    """Without a store or a dataset name the check returns an error that says what is missing."""
    (r,) = unique_across_runs("id")(pd.DataFrame({"id": [1]}), context)
    assert r.status is Status.ERROR and needle in r.message


def test_memory_store_max_keys_drops_the_oldest_batches() -> None:
    """MemoryStore(max_keys=) bounds a dataset's hashes by dropping the oldest batches first."""
    store = MemoryStore(max_keys=3, key_retention=None)
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    store.add_keys("p", "d", np.array([1, 2], dtype=np.uint64), run_id="a", now=now)
    store.add_keys("p", "d", np.array([3, 4], dtype=np.uint64), run_id="b", now=now)
    assert store.seen_keys("p", "d", np.array([1, 3], dtype=np.uint64)).tolist() == [False, True]


def test_memory_store_satisfies_protocol() -> None:
    """MemoryStore is a CheckStore by the runtime protocol check."""
    from checks import CheckStore

    assert isinstance(MemoryStore(), CheckStore)
