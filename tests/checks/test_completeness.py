"""Null fractions per column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from checks import Status, completeness, not_null

COLUMNS = {
    "float": pd.Series([1.0, np.nan, np.inf, -np.inf]),
    "Int64": pd.Series([1, None, 3, None], dtype="Int64"),
    "string": pd.Series(["a", None, "b", "c"], dtype="string"),
    "arrow": pd.Series(["a", None, None, "c"], dtype="string[pyarrow]"),
    "object": pd.Series([1, "x", None, float("nan")], dtype=object),
    "category": pd.Series(["a", None, "b", "a"], dtype="category"),
    "datetime": pd.Series(pd.to_datetime(["2024-01-01", None, "2024-01-02", None])),
    "tz": pd.Series(pd.to_datetime(["2024-01-01", None, None, None]).tz_localize("UTC")),
    "int": pd.Series([1, 2, 3, 4]),
    "bool": pd.Series([True, False, True, False]),
}


@pytest.mark.parametrize("name", list(COLUMNS))
def test_null_fraction_equals_pandas(name: str) -> None:
    """The null fraction equals pandas' isna().mean() for every dtype; infinities are not null."""
    df = pd.DataFrame({name: COLUMNS[name]})
    (r,) = not_null(name, max_fraction=0.3)(df)
    expected = df[name].isna().mean()
    assert r.observed == pytest.approx(expected)
    assert r.status is (Status.FAIL if expected > 0.3 else Status.PASS)
    assert (r.measure, r.column) == ("null_fraction", name)


def test_one_result_per_column_and_all_columns_by_default() -> None:
    """Without columns every column gets a result, in frame order."""
    df = pd.DataFrame(COLUMNS)
    results = completeness()(df)
    assert [r.column for r in results] == list(COLUMNS)


def test_missing_column_is_an_error_but_others_still_run() -> None:
    """A missing column is an error result naming it; the other columns are still judged."""
    df = pd.DataFrame({"a": [1.0, None]})
    bad, good = not_null(["nope", "a"])(df)
    assert bad.status is Status.ERROR and "column 'nope' not found; columns are: a" in bad.message
    assert good.observed == 0.5
