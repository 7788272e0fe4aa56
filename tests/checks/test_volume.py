"""Volume: row count against the robust spread of earlier runs."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from checks import CheckContext, MemoryStore, Status, volume


def _run(history: list[int], rows: int, **kwargs) -> tuple:
    store = MemoryStore()
    ctx = CheckContext(store=store, dataset="orders")
    check = volume(**kwargs)
    for n in history:
        check(pd.DataFrame({"a": range(n)}), ctx)
    (r,) = check(pd.DataFrame({"a": range(rows)}), ctx)
    return r, store


@pytest.mark.parametrize(
    ("history", "rows", "status"),
    [
        ([1000, 1010, 990, 1005, 995], 1002, Status.PASS),
        ([1000, 1010, 990, 1005, 995], 500, Status.FAIL),
        ([1000, 1010, 990, 1005, 995], 1500, Status.FAIL),
        ([1000] * 5, 1001, Status.PASS),  # a steady history does not flag one extra row
        ([1000] * 5, 1060, Status.PASS),  # within 3.5 * 2% of the median
        ([1000] * 5, 1080, Status.FAIL),
        ([1000, 1010, 990], 5, Status.PASS),  # not enough history yet
    ],
)
def test_volume_table(history: list[int], rows: int, status: Status) -> None:
    """Counts within max_z robust deviations pass; outliers fail; short histories pass."""
    r, _ = _run(history, rows)
    assert r.status is status, r.message


def test_records_every_count_and_says_when_history_is_short() -> None:
    """Each run's count goes to the store; before min_history the message says how many exist."""
    r, store = _run([10, 11], 12, min_history=5)
    assert "2 earlier run(s)" in r.message
    assert [n for _, n in store.row_count_history("", "orders", 10)] == [12, 11, 10]


def test_needs_store() -> None:
    """Without a store volume is an error naming what it needs."""
    (r,) = volume()(pd.DataFrame({"a": [1]}), CheckContext(dataset="d"))
    assert r.status is Status.ERROR and "CheckStore" in r.message


def _weekly(days: int, seed: int = 0) -> list[tuple[dt.datetime, int]]:
    rng = np.random.default_rng(seed)
    level = {5: 700, 6: 850}  # quiet weekends, 1000 on weekdays
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)  # a Monday
    return [(start + dt.timedelta(days=i), int(level.get(i % 7, 1000) * rng.normal(1.0, 0.01))) for i in range(days)]


def _feed(series: list[tuple[dt.datetime, int]], **kwargs) -> list:
    store, check = MemoryStore(), volume(**kwargs)
    out = []
    for day, n in series:
        (r,) = check(pd.DataFrame({"a": range(n)}), CheckContext(store=store, dataset="d", logical_date=day))
        out.append(r)
    return out


def test_a_weekly_rhythm_does_not_alarm() -> None:
    """Six weeks with 30% quieter Saturdays pass every day; without seasonality the Saturdays fail."""
    series = _weekly(42)
    assert [r.status for r in _feed(series)] == [Status.PASS] * 42
    flat = _feed(series, seasonality="none")
    assert {r.details["weekday"] for r in flat if r.status is Status.FAIL} >= {"Saturday"}


@pytest.mark.parametrize(("factor", "status"), [(0.8, Status.FAIL), (0.5, Status.FAIL), (0.98, Status.PASS)])
def test_a_weekday_drop_fails(factor: float, status: Status) -> None:
    """After five steady weeks, a Wednesday 20% or 50% down fails and one 2% down passes."""
    series = _weekly(38)
    day, n = series[-1]
    assert day.weekday() == 2
    series[-1] = (day, int(n * factor))
    assert _feed(series)[-1].status is status


def test_learning_the_week_is_said() -> None:
    """Before two earlier runs on its weekday, a run passes and says what it waits for."""
    results = _feed(_weekly(10))
    assert results[7].status is Status.PASS and results[7].observed is None
    assert "2 on a Monday" in results[7].message
    assert results[9].observed is None and results[9].details["same_weekday"] == 1


def test_bad_seasonality_raises() -> None:
    """An unknown seasonality is refused when the check is built."""
    with pytest.raises(ValueError, match="weekly, none"):
        volume(seasonality="monthly")
