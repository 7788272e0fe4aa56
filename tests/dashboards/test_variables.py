"""Grafana's substitution of template variables into Prometheus queries, as dashboards.variables does it."""

from __future__ import annotations

import pytest

from dashboards.variables import builtin_intervals, interpolate, label_values_call, regex_value


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (None, ".*"),
        (["orders"], "orders"),
        (["orders", "billing"], "(orders|billing)"),
        (["a.b"], "a\\\\.b"),
        (["x(1)|y"], "x\\\\(1\\\\)\\\\|y"),
    ],
)
def test_regex_value_is_what_grafana_writes(values: list[str] | None, expected: str) -> None:
    """All is .*, several values are (a|b), regex characters are escaped twice (inside a PromQL string)."""
    assert regex_value(values) == expected


@pytest.mark.parametrize(
    ("start", "end", "step", "scrape", "expected"),
    [
        (0, 3600, 15, 15, {"__range": "3600s", "__interval": "15s", "__rate_interval": "60s"}),
        (0, 86400, 60, 15, {"__range": "86400s", "__interval": "60s", "__rate_interval": "75s"}),
        (0, 30, 0.5, 1, {"__range": "30s", "__interval": "1s", "__rate_interval": "4s"}),
    ],
)
def test_builtin_intervals_follow_grafanas_rules(
    start: float, end: float, step: float, scrape: float, expected: dict[str, str]
) -> None:
    """$__interval is never below the scrape interval; $__rate_interval is max(interval + scrape, 4 x scrape)."""
    got = builtin_intervals(start, end, step=step, scrape_interval=scrape)
    assert {k: got[k] for k in expected} == expected


def test_interpolate_replaces_every_syntax_and_leaves_unknown_names() -> None:
    """$name, ${name}, ${name:format} and [[name]] are replaced; a name not given stays as written."""
    expr = 'x{a=~"$a", b=~"${b}", c=~"${c:regex}", d=~"[[d]]"}[$__rate_interval] $unknown'
    out = interpolate(expr, {"a": "1", "b": "2", "c": "3", "d": "4", "__rate_interval": "4s"})
    assert out == 'x{a=~"1", b=~"2", c=~"3", d=~"4"}[4s] $unknown'


def test_interpolate_prefers_the_longest_name() -> None:
    """$__range_s is not $__range followed by _s."""
    assert interpolate("$__range_s $__range", {"__range": "60s", "__range_s": "60"}) == "60 60s"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("label_values(pipewarden_task_runs_total, pipeline)", ("pipewarden_task_runs_total", "pipeline")),
        ('label_values(m{pipeline=~"(a|b)"}, task)', ('m{pipeline=~"(a|b)"}', "task")),
        ("label_values(job)", (None, "job")),
    ],
)
def test_label_values_call_is_parsed(query: str, expected: tuple[str | None, str]) -> None:
    """label_values([selector,] label) gives the series selector and the label Grafana asks Prometheus for."""
    assert label_values_call(query) == expected


def test_other_variable_queries_are_refused() -> None:
    """A query that is not label_values() raises ValueError naming it."""
    with pytest.raises(ValueError, match="query_result"):
        label_values_call("query_result(up)")
