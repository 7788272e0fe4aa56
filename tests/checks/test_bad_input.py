"""Every check returns results on awkward frames and never raises."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from checks import (
    CheckContext,
    CheckResult,
    MemoryStore,
    Status,
    drift,
    freshness,
    loss,
    no_duplicate_rows,
    not_null,
    reconcile,
    row_count,
    schema,
    unique,
    unique_across_runs,
    volume,
)

REF = pd.DataFrame({"x": np.linspace(0, 1, 100), "c": ["a", "b"] * 50})

FRAMES: dict[str, Callable[[], object]] = {
    "empty": lambda: pd.DataFrame({"x": pd.Series([], dtype=float), "c": pd.Series([], dtype=object)}),
    "no_columns": lambda: pd.DataFrame(),
    "all_null": lambda: pd.DataFrame({"x": [np.nan, np.nan], "c": [None, None]}),
    "one_row": lambda: pd.DataFrame({"x": [0.5], "c": ["a"]}),
    "mixed_objects": lambda: pd.DataFrame({"x": [1, "a", None, 2.5], "c": [1, "b", (1, 2), None]}),
    "nan_inf": lambda: pd.DataFrame({"x": [np.nan, np.inf, -np.inf, 1.0], "c": ["a", "b", "a", "b"]}),
    "nullable": lambda: pd.DataFrame(
        {
            "x": pd.array([1, None, 3], dtype="Int64"),
            "c": pd.array(["a", None, "b"], dtype="string"),
        }
    ),
    "arrow": lambda: pd.DataFrame(
        {
            "x": pd.array([0.1, None, 0.9], dtype="double[pyarrow]"),
            "c": pd.array(["a", None, "b"], dtype="string[pyarrow]"),
        }
    ),
    "categorical": lambda: pd.DataFrame({"x": pd.Categorical([1, 2, 2]), "c": pd.Categorical(["a", "b", None])}),
    "tz_aware": lambda: pd.DataFrame({"x": pd.to_datetime(["2024-01-01", None]).tz_localize("UTC"), "c": ["a", "b"]}),
    "naive_ts": lambda: pd.DataFrame({"x": pd.to_datetime(["2024-01-01", "2024-01-02"]), "c": ["a", "b"]}),
    "unhashable": lambda: pd.DataFrame({"x": [[1], [1]], "c": [{"k": 1}, {"k": 1}]}),
    "not_a_frame": lambda: None,
    "missing_columns": lambda: pd.DataFrame({"a": [1], "b": [2]}),
}

CHECKS: dict[str, Callable[[], object]] = {
    "row_count": lambda: row_count(min=1),
    "loss": lambda: loss(max_loss=0.1),
    "reconcile": lambda: reconcile(REF, key="x", sum_column="x"),
    "not_null": lambda: not_null(["x", "c"]),
    "unique": lambda: unique("x"),
    "unique_compound": lambda: unique(["x", "c"]),
    "no_duplicate_rows": lambda: no_duplicate_rows(),
    "unique_across_runs": lambda: unique_across_runs("x"),
    "drift_all_methods": lambda: drift(["x", "c"], reference=REF, method=["psi", "ks", "wasserstein", "js", "chi2"]),
    "drift_moving": lambda: drift(["x", "c"]),
    "schema": lambda: schema({"x": "float64", "c": "string"}),
    "freshness": lambda: freshness("x", max_age=3600),
    "volume": lambda: volume(min_history=1),
}


@pytest.mark.parametrize("frame", list(FRAMES))
@pytest.mark.parametrize("check", list(CHECKS))
def test_check_never_raises(check: str, frame: str) -> None:
    """The check returns a non-empty list of CheckResults, errors naming a column or the input."""
    df = FRAMES[frame]()
    store = MemoryStore()
    ctx = CheckContext(
        store=store,
        dataset="d",
        run_id="r",
        inputs=[REF],
        now=dt.datetime(2024, 1, 3, tzinfo=dt.UTC),
    )
    c = CHECKS[check]()
    results = c(df, ctx)
    results += c(df, ctx)  # a second run exercises the stored history
    assert results and all(isinstance(r, CheckResult) for r in results)
    json.dumps([r.to_dict() for r in results])  # JSON-ready for the run store
    for r in results:
        assert r.dataset == "d"
        if r.status is Status.ERROR:
            assert r.message.startswith(c.name + ": ")
            assert "Traceback" not in r.message
            assert "'x'" in r.message or "'c'" in r.message or "DataFrame" in r.message or "column" in r.message, (
                r.message
            )


@pytest.mark.parametrize(
    ("check", "message"),
    [
        (unique("order_id"), "unique(order_id): column 'order_id' not found; columns are: a, b"),
        (
            not_null("order_id"),
            "not_null(order_id): column 'order_id' not found; columns are: a, b",
        ),
        (freshness("ts", 60), "freshness(ts): column 'ts' not found; columns are: a, b"),
        (
            drift("amount", reference=pd.DataFrame({"amount": [1.0]})),
            "drift(amount): column 'amount' not found; columns are: a, b",
        ),
    ],
)
def test_missing_column_message(check, message: str) -> None:
    """A missing column's message names the check, the column and the columns the frame has."""
    (r,) = check(pd.DataFrame({"a": [1], "b": [2]}))
    assert r.status is Status.ERROR and r.message == message
