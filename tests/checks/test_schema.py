"""Schema drift: added, removed and changed columns."""

from __future__ import annotations

import pandas as pd
import pytest

from checks import CheckContext, MemoryStore, Status, profile, schema

FRAME = pd.DataFrame({"id": [1], "amount": [1.5], "name": ["x"], "ts": pd.to_datetime(["2024-01-01"])})


@pytest.mark.parametrize(
    ("expected", "kwargs", "status", "changes"),
    [
        ({"id": "int64", "amount": "float64"}, {}, Status.PASS, 0),
        ({"id": "int64", "amount": "float64"}, {"allow_extra": False}, Status.FAIL, 2),
        (
            {"id": "integer", "amount": "numeric", "name": "string", "ts": "datetime"},
            {},
            Status.PASS,
            0,
        ),
        ({"id": "float64"}, {}, Status.FAIL, 1),
        ({"id": "int64", "gone": "int64"}, {}, Status.FAIL, 1),
    ],
)
def test_schema_table(expected: dict, kwargs: dict, status: Status, changes: int) -> None:
    """Removed and changed columns fail; added ones only when allow_extra is False."""
    (r,) = schema(expected, **kwargs)(FRAME)
    assert (r.status, r.observed, r.measure) == (status, changes, "schema_changes")


def test_schema_from_profile_and_details() -> None:
    """A profile is an expected schema; details list what changed."""
    other = FRAME.assign(id=FRAME["id"].astype(float)).drop(columns="name").assign(extra=1)
    (r,) = schema(profile(FRAME))(other)
    assert r.details["removed"] == ["name"]
    assert r.details["added"] == ["extra"]
    assert r.details["changed"] == {"id": {"expected": "int64", "found": "float64"}}


def test_schema_against_previous_run() -> None:
    """expected=None remembers the previous run's schema in the store."""
    ctx = CheckContext(store=MemoryStore(), dataset="orders")
    check = schema()
    assert "no reference yet" in check(FRAME, ctx)[0].message
    assert check(FRAME, ctx)[0].status is Status.PASS
    assert check(FRAME.drop(columns="ts"), ctx)[0].status is Status.FAIL


def test_unknown_dtype_is_refused_at_construction() -> None:
    """schema({'x': 'bigint'}) raises one clear line naming the type and what is allowed."""
    with pytest.raises(ValueError, match=r"'bigint', which is not a pandas dtype; use an exact dtype") as info:
        schema({"x": "bigint"})
    assert "\n" not in str(info.value) and "integer" in str(info.value)


def test_dtype_aliases_are_read_as_pandas_names_them() -> None:
    """An alias such as 'int' is compared as the dtype pandas makes of it, so int64 columns pass."""
    (r,) = schema({"x": "int"})(pd.DataFrame({"x": [1, 2]}))
    assert r.status is Status.PASS
