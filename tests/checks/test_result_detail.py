"""CheckResult.detail: the message without the check name it starts with."""

from __future__ import annotations

import pytest

from checks.result import CheckResult, Kind, Status


@pytest.mark.parametrize(
    ("check", "message", "detail"),
    [
        ("unique(id)", "unique(id): 1 duplicate occurrence(s)", "1 duplicate occurrence(s)"),
        ("unique(id)", "keys are unique", "keys are unique"),
        ("unique(id)", "", ""),
        ("row_count", "row_count:no space", "row_count:no space"),
    ],
)
def test_detail_drops_only_a_leading_check_name(check: str, message: str, detail: str) -> None:
    """The leading "<check>: " is removed; any other message is returned as it is."""
    assert CheckResult(check, Kind.CUSTOM, Status.PASS, message=message).detail == detail
