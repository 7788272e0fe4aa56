"""Freshness: the age of the newest timestamp at the context's clock."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from checks import CheckContext, Status, freshness

NOW = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)

SERIES = {
    "naive": pd.Series(pd.to_datetime(["2024-06-01 10:00", "2024-06-01 11:00", None])),
    "utc": pd.Series(pd.to_datetime(["2024-06-01 11:00"]).tz_localize("UTC")),
    "berlin": pd.Series(pd.to_datetime(["2024-06-01 13:00"]).tz_localize("Europe/Berlin")),
    "arrow": pd.Series(pd.to_datetime(["2024-06-01 11:00"])).astype("timestamp[us][pyarrow]"),
    "strings": pd.Series(["2024-06-01T11:00:00Z", None, "2024-05-01T00:00:00Z"], dtype=object),
    "datetimes": pd.Series([dt.datetime(2024, 6, 1, 11, 0)], dtype=object),
}


@pytest.mark.parametrize("name", list(SERIES))
def test_lag_is_one_hour_for_every_representation(name: str) -> None:
    """Naive (as UTC), tz-aware, Arrow and text timestamps all give a one-hour lag."""
    (r,) = freshness("t", max_age="2h")(pd.DataFrame({"t": SERIES[name]}), CheckContext(now=NOW))
    assert r.status is Status.PASS, r.message
    assert (r.observed, r.measure, r.column) == (3600.0, "freshness_lag_seconds", "t")


@pytest.mark.parametrize(
    ("max_age", "status"),
    [
        (3599, Status.FAIL),
        (3600, Status.PASS),
        (dt.timedelta(minutes=30), Status.FAIL),
        ("1h", Status.PASS),
    ],
)
def test_threshold_forms(max_age, status: Status) -> None:
    """max_age accepts seconds, a timedelta or a duration string."""
    df = pd.DataFrame({"t": pd.to_datetime(["2024-06-01 11:00"])})
    assert freshness("t", max_age=max_age)(df, CheckContext(now=NOW))[0].status is status


def test_naive_now_is_taken_as_utc() -> None:
    """A naive context clock is read as UTC too."""
    df = pd.DataFrame({"t": pd.to_datetime(["2024-06-01 11:00"])})
    (r,) = freshness("t", max_age=7200)(df, CheckContext(now=dt.datetime(2024, 6, 1, 12, 0)))
    assert r.observed == 3600.0


@pytest.mark.parametrize(
    ("values", "status", "needle"),
    [
        (pd.Series([1, 2, 3]), Status.ERROR, "unit='s'"),
        (pd.Series(["nope", "never"], dtype=object), Status.ERROR, "holds no timestamps"),
        (pd.Series([None, None], dtype="datetime64[ns]"), Status.FAIL, "no timestamps"),
        (pd.Series([], dtype="datetime64[ns]"), Status.FAIL, "no timestamps"),
    ],
)
def test_unusable_or_empty_columns(values: pd.Series, status: Status, needle: str) -> None:
    """A column without timestamps fails; a column that cannot hold them is an error saying why."""
    (r,) = freshness("t", max_age=60)(pd.DataFrame({"t": values}), CheckContext(now=NOW))
    assert r.status is status and needle in r.message
