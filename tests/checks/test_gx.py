"""The Great Expectations adapter gives GX's own verdicts as CheckResults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from checks import Kind, Status, gx_suite

gx = pytest.importorskip("great_expectations")

FRAME = pd.DataFrame(
    {
        "id": [1, 2, 2, 4, 5],
        "amount": [10.0, np.nan, 30.0, 40.0, 5000.0],
        "country": ["DE", "US", "US", "FR", None],
    }
)

SUITE = {
    "name": "orders",
    "expectations": [
        {
            "type": "expect_table_row_count_to_be_between",
            "kwargs": {"min_value": 1, "max_value": 10},
        },
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "amount"}},
        {
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": "country", "mostly": 0.5},
        },
        {
            "type": "expect_column_max_to_be_between",
            "kwargs": {"column": "amount", "max_value": 100},
        },
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "country", "value_set": ["DE", "US", "FR"]},
        },
        {
            "type": "expect_compound_columns_to_be_unique",
            "kwargs": {"column_list": ["id", "country"]},
        },
    ],
}


def _key(etype: str, kwargs: dict[str, Any]) -> str:
    return etype + json.dumps({k: v for k, v in kwargs.items() if k != "batch_id"}, sort_keys=True, default=str)


@pytest.fixture(scope="module")
def gx_verdicts() -> dict[str, bool]:
    """GX's own verdicts on FRAME, validated through the same shared ephemeral context."""
    from checks.gx import gx_batch_definition

    batch = gx_batch_definition().get_batch(batch_parameters={"dataframe": FRAME})
    outcome = batch.validate(gx.ExpectationSuite(**SUITE))
    return {
        _key(r.expectation_config.type, dict(r.expectation_config.kwargs)): bool(r.success) for r in outcome.results
    }


def test_verdicts_equal_gx(gx_verdicts: dict[str, bool]) -> None:
    """Each expectation maps to one result whose status is GX's success."""
    results = gx_suite(SUITE)(FRAME)
    assert len(results) == len(SUITE["expectations"])
    for r in results:
        assert r.kind is Kind.GX
        success = gx_verdicts[_key(r.details["expectation_type"], r.details["kwargs"])]
        assert r.status is (Status.PASS if success else Status.FAIL), r.message
    by_type = {(r.details["expectation_type"], r.column): r for r in results}
    assert by_type[("expect_table_row_count_to_be_between", None)].observed == 5
    assert by_type[("expect_column_values_to_be_unique", "id")].observed == 2  # unexpected_count


def test_suite_from_file_object_and_legacy_names(tmp_path: Path) -> None:
    """A saved JSON file, an ExpectationSuite and 0.x key names all give the same verdicts."""
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(SUITE))
    legacy = {
        "expectation_suite_name": "orders",
        "expectations": [{"expectation_type": e["type"], "kwargs": e["kwargs"]} for e in SUITE["expectations"]],
    }
    suites = [str(path), gx.ExpectationSuite(**SUITE), legacy]
    verdicts = [sorted((r.details["expectation_type"], r.status.value) for r in gx_suite(s)(FRAME)) for s in suites]
    assert verdicts[0] == verdicts[1] == verdicts[2]


def test_missing_column_is_an_error_result() -> None:
    """An expectation on a column the frame lacks is status error, with GX's reason."""
    spec = {
        "name": "s",
        "expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "nope"}}],
    }
    (r,) = gx_suite(spec)(FRAME)
    assert r.status is Status.ERROR and "nope" in r.message


def test_unreadable_suite_path_raises_at_construction(tmp_path: Path) -> None:
    """A suite path that does not exist is refused when the check is built."""
    with pytest.raises(ValueError, match="cannot read suite JSON"):
        gx_suite(str(tmp_path / "missing.json"))
