"""Row counts, loss across a step and key reconciliation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checks import CheckContext, Status, loss, reconcile, row_count


@pytest.mark.parametrize(
    ("rows", "bounds", "status"),
    [
        (0, {"min": 1}, Status.FAIL),
        (1, {"min": 1}, Status.PASS),
        (10, {"max": 9}, Status.FAIL),
        (10, {"min": 5, "max": 10}, Status.PASS),
        (10, {}, Status.PASS),
    ],
)
def test_row_count_bounds(rows: int, bounds: dict, status: Status) -> None:
    """row_count passes inside [min, max] and fails outside, reporting the count."""
    (r,) = row_count(**bounds)(pd.DataFrame({"a": range(rows)}))
    assert r.status is status and r.observed == rows and r.measure == "row_count"


@pytest.mark.parametrize(
    ("rows_in", "rows_out", "kwargs", "status", "lost"),
    [
        (100, 99, {"max_loss": 0.01}, Status.PASS, 1),
        (100, 98, {"max_loss": 0.01}, Status.FAIL, 2),
        (100, 100, {}, Status.PASS, 0),
        (100, 120, {}, Status.PASS, 0),  # rows gained are not lost
        (1000, 990, {"max_loss": None, "max_rows": 10}, Status.PASS, 10),
        (1000, 989, {"max_loss": 0.5, "max_rows": 10}, Status.FAIL, 11),
        (0, 0, {}, Status.PASS, 0),
    ],
)
def test_loss_fraction_and_count(rows_in: int, rows_out: int, kwargs: dict, status: Status, lost: int) -> None:
    """loss compares the call's input rows with the output rows, as a fraction or a count."""
    ctx = CheckContext(inputs=[pd.DataFrame({"a": range(rows_in)})])
    (r,) = loss(**kwargs)(pd.DataFrame({"a": range(rows_out)}), ctx)
    assert (r.status, r.observed, r.measure) == (status, lost, "rows_lost")


def test_loss_without_inputs_is_an_error() -> None:
    """Without input frames in the context, loss says it needs them."""
    (r,) = loss()(pd.DataFrame({"a": [1]}))
    assert r.status is Status.ERROR and "context.inputs" in r.message


def test_loss_picks_the_input_frame() -> None:
    """input= picks among the DataFrame arguments, skipping non-frames."""
    ctx = CheckContext(inputs=["config", pd.DataFrame({"a": range(5)}), pd.DataFrame({"a": range(50)})])
    (r,) = loss(max_loss=0.5, input=1)(pd.DataFrame({"a": range(10)}), ctx)
    assert r.details["rows_in"] == 50 and r.status is Status.FAIL


@settings(max_examples=50, deadline=None)
@given(
    src=st.lists(st.integers(0, 30), max_size=40),
    tgt=st.lists(st.integers(0, 30), max_size=40),
    compound=st.booleans(),
)
def test_reconcile_counts_equal_pandas(src: list[int], tgt: list[int], compound: bool) -> None:
    """Missing source rows equal pandas' anti-join count, for single and compound keys."""
    s = pd.DataFrame({"k": src, "j": [v % 3 for v in src]})
    t = pd.DataFrame({"k": tgt, "j": [v % 3 for v in tgt]})
    key = ["k", "j"] if compound else "k"
    cols = key if isinstance(key, list) else [key]
    merged = s.merge(t[cols].drop_duplicates(), on=cols, how="left", indicator=True)
    lost = merged[merged["_merge"] == "left_only"]
    expected = len(lost)
    (r,) = reconcile(s, key=key)(t)
    assert r.observed == expected
    assert r.details["missing_keys"] == len(lost[cols].drop_duplicates())
    assert r.status is (Status.FAIL if expected else Status.PASS)


@pytest.mark.parametrize("key", ["k", ["k", "j"]])
def test_reconcile_int_keys_match_float_keys(key: str | list[str]) -> None:
    """Integer source keys are found among the same keys as floats (after an outer join), single or compound."""
    src = pd.DataFrame({"k": [1, 2, 3], "j": [1, 2, 3]})
    out = pd.DataFrame({"k": [1.0, 2.0, 3.0, np.nan], "j": [1.0, 2.0, 3.0, np.nan]})
    (r,) = reconcile(src, key=key)(out)
    assert r.status is Status.PASS and r.observed == 0 and r.details["missing_keys"] == 0


def test_reconcile_sum_and_examples_from_inputs() -> None:
    """With the source taken from the inputs, examples name missing keys and sums are compared."""
    src = pd.DataFrame({"id": np.arange(10), "amount": np.arange(10, dtype=float)})
    out = src[src["id"] % 4 != 0]
    r_keys, r_sum = reconcile(0, key="id", sum_column="amount")(out, CheckContext(inputs=[src]))
    assert r_keys.observed == 3 and r_keys.details["examples"] == [0, 4, 8]
    assert r_sum.measure == "sum_difference" and r_sum.status is Status.FAIL
    assert r_sum.details["difference"] == pytest.approx(-12.0)


def test_reconcile_missing_key_in_source_names_it() -> None:
    """A key column absent from the source is an error that says so."""
    (r,) = reconcile(pd.DataFrame({"x": [1]}), key="id")(pd.DataFrame({"id": [1]}))
    assert r.status is Status.ERROR and "source" in r.message and "'id'" in r.message


def test_loss_with_key_counts_lost_rows_behind_a_fan_out() -> None:
    """With key=, rows dropped behind a fan-out join are lost even though the output has more rows."""
    src = pd.DataFrame({"id": np.arange(23_000)})
    kept = src[src["id"] >= 12_258]  # 12,258 rows lost
    out = pd.concat([kept, kept, kept], ignore_index=True)  # and every kept row tripled by a join
    (plain,) = loss()(out, CheckContext(inputs=[src]))
    (keyed,) = loss(key="id")(out, CheckContext(inputs=[src]))
    assert plain.status is Status.PASS and "pass key=" in plain.message
    assert keyed.status is Status.FAIL and keyed.observed == 12_258
    assert keyed.details["rows_gained"] == 2 * len(kept) and keyed.details["rows_out"] == len(out)


def test_loss_key_missing_from_the_input_names_it() -> None:
    """A key column absent from the input frame is an error that says which side lacks it."""
    ctx = CheckContext(inputs=[pd.DataFrame({"x": [1]})])
    (r,) = loss(key="id")(pd.DataFrame({"id": [1]}), ctx)
    assert r.status is Status.ERROR and "input" in r.message and "'id'" in r.message
