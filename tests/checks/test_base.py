"""The check protocol: the context's clock, and run_check on plain callables."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import pytest

from checks import CheckContext, CheckResult, Kind, MemoryStore, Status, run_check, volume

UTC_NOON = dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "now",
    [
        dt.datetime(2024, 1, 1, 12),  # naive: taken as UTC
        UTC_NOON,
        dt.datetime(2024, 1, 1, 14, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    ],
)
def test_context_now_is_aware_utc(now: dt.datetime) -> None:
    """CheckContext turns a naive now into UTC and converts an aware one to UTC."""
    ctx = CheckContext(now=now)
    assert ctx.now == UTC_NOON and ctx.now.utcoffset() == dt.timedelta(0)


def test_volume_gives_the_store_an_aware_now() -> None:
    """A naive context clock reaches the store as UTC, so .timestamp() there is not shifted by the local offset."""
    seen: list[dt.datetime] = []

    class Recording(MemoryStore):
        def add_row_count(self, pipeline: str, dataset: str, rows: int, *, run_id: str, now: dt.datetime) -> None:
            seen.append(now)
            super().add_row_count(pipeline, dataset, rows, run_id=run_id, now=now)

    ctx = CheckContext(store=Recording(), dataset="d", now=dt.datetime(2024, 1, 1, 12))
    volume()(pd.DataFrame({"a": [1]}), ctx)
    assert seen == [UTC_NOON] and seen[0].tzinfo is not None


def _result(df: Any) -> CheckResult:
    return CheckResult("mine", Kind.CUSTOM, Status.PASS)


def _raises(df: Any) -> bool:
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("check", "status"),
    [
        (_result, Status.PASS),
        (lambda df: [_result(df), _result(df)], Status.PASS),
        (lambda df: False, Status.FAIL),
        (_raises, Status.ERROR),
        (lambda df: 3, Status.ERROR),
        (lambda df: [1], Status.ERROR),
    ],
)
def test_run_check_stamps_the_dataset_on_plain_callables(check: Any, status: Status) -> None:
    """Every result of a plain callable without a dataset gets context.dataset, as a Check's results do."""
    results = run_check(check, pd.DataFrame({"a": [1]}), CheckContext(dataset="orders"))
    assert [r.status for r in results] == [status] * len(results)
    assert {r.dataset for r in results} == {"orders"}


def test_run_check_keeps_a_dataset_the_check_set() -> None:
    """A result that names its own dataset keeps it; without a context dataset nothing is stamped."""
    own = CheckResult("mine", Kind.CUSTOM, Status.PASS, dataset="elsewhere")
    assert run_check(lambda df: own, None, CheckContext(dataset="orders"))[0].dataset == "elsewhere"
    assert run_check(_result, None, CheckContext())[0].dataset is None


@pytest.mark.parametrize(
    ("kwargs", "blocking"),
    [({}, True), ({"on_error": "warn"}, False), ({"severity": "warn"}, False)],
    ids=["default", "on_error=warn", "severity=warn"],
)
def test_a_check_that_cannot_run_blocks_unless_told_otherwise(kwargs: dict[str, Any], blocking: bool) -> None:
    """An error result blocks like a failure; on_error="warn" or severity="warn" records it without blocking."""
    from checks import unique

    [result] = unique("idd", **kwargs)(pd.DataFrame({"id": [1]}))
    assert result.status is Status.ERROR
    assert result.blocking is blocking
