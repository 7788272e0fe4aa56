"""Volume: row count against the robust spread of earlier runs."""

from __future__ import annotations

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
