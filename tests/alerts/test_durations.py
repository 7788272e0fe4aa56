"""Durations in pipewarden.yml and templates: parsing, refusal of nonsense, short human form."""

from __future__ import annotations

import pytest

from alerts.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        (" 10 m ", 600.0),
        (90, 90.0),
        (0.5, 0.5),
        ("0s", 0.0),
    ],
)
def test_durations_parse_to_seconds(text: object, seconds: float) -> None:
    """Prometheus-style units and plain numbers become seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5", "5x", "m5", "1h 30", "-5m", True, None, [1], float("nan"), -1])
def test_nonsense_durations_are_refused_with_what_to_write(bad: object) -> None:
    """A value that is not a duration raises ValueError naming an example of what to write (or the rule broken)."""
    with pytest.raises(ValueError, match=r"duration|'5m'|negative"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (45, "45s"),
        (300, "5m"),
        (5400, "1h30m"),
        (93600, "1d2h"),
        (90061, "1d1h"),
    ],
)
def test_durations_format_in_at_most_two_units(seconds: float, text: str) -> None:
    """The human form keeps the two largest units."""
    assert format_duration(seconds) == text
