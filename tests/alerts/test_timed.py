"""Conditions the time decides: staleness, SLA deadlines in a time zone, windows over runs, failing exports."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest
from alert_support import T0, run_ended

from agent.errors import ConfigError
from alerts.evaluator import AlertEvaluator
from alerts.rules import Rule
from alerts.timed import DeadlineMissed, DurationAbove, ExportsFailing, Stale, SuccessRateBelow, quantile

Make = Callable[..., AlertEvaluator]
PARIS = ZoneInfo("Europe/Paris")


def at(text: str, tz: ZoneInfo = PARIS) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def states(ev: AlertEvaluator) -> list[tuple[str, str, float | None]]:
    return [(a.labels.get("pipeline", ""), str(a.state), a.value) for a in ev.alerts()]


def test_stale_fires_once_the_last_success_is_older_than_max_age(make_evaluator: Make) -> None:
    """No success for more than max_age fires on the timer (value: the age); a success resolves it."""
    ev = make_evaluator([Rule("Stale", Stale(max_age=3600))])
    ev.handle(run_ended("orders", "success", run_id="r1", at=T0), now=T0)
    ev.tick(T0 + 3600)
    assert states(ev) == []
    ev.tick(T0 + 3601)
    assert states(ev) == [("orders", "firing", 3601.0)]
    ev.handle(run_ended("orders", "success", run_id="r2", at=T0 + 4000), now=T0 + 4000)
    ev.tick(T0 + 4001)
    assert states(ev) == []


def test_a_pipeline_named_but_never_run_is_stale_from_the_evaluators_start(make_evaluator: Make) -> None:
    """pipelines: [orders] watches orders before its first run, counting from when the evaluator started."""
    ev = make_evaluator([Rule("Stale", Stale(max_age=600, pipelines=["orders"]))])
    ev.start(now=T0)
    ev.tick(T0 + 599)
    assert states(ev) == []
    ev.tick(T0 + 601)
    assert states(ev) == [("orders", "firing", 601.0)]


def test_a_pipeline_that_never_succeeded_is_stale_from_its_first_run(make_evaluator: Make) -> None:
    """Only failures since the first run: the age counts from that run."""
    ev = make_evaluator([Rule("Stale", Stale(max_age=600))])
    ev.start(now=T0 - 10_000)
    ev.handle(run_ended("orders", "failed", run_id="r1", at=T0), now=T0)
    ev.tick(T0 + 500)
    assert states(ev) == []
    ev.tick(T0 + 700)
    assert states(ev) == [("orders", "firing", 700.0)]


def test_deadline_fires_when_the_time_of_day_passes_without_a_success(make_evaluator: Make) -> None:
    """06:00 Paris: a success the day before does not meet it; the alert fires at 06:00 and resolves late."""
    rule = Rule("OrdersLate", DeadlineMissed(cron="0 6 * * *", timezone="Europe/Paris", within=6 * 3600))
    ev = make_evaluator([rule])
    ev.start(now=at("2025-03-01T00:00:00"))
    ev.handle(run_ended("orders", "success", run_id="r0", at=at("2025-03-01T05:00:00")), now=at("2025-03-01T05:00"))
    ev.tick(at("2025-03-02T05:59:00"))
    assert states(ev) == []
    ev.tick(at("2025-03-02T06:00:00"))
    assert states(ev) == [("orders", "firing", 0.0)]
    ev.tick(at("2025-03-02T06:30:00"))
    assert states(ev) == [("orders", "firing", 1800.0)]
    ev.handle(run_ended("orders", "success", run_id="r1", at=at("2025-03-02T06:40:00")), now=at("2025-03-02T06:40"))
    ev.tick(at("2025-03-02T06:41:00"))
    assert states(ev) == []


def test_deadline_met_by_a_success_in_its_window(make_evaluator: Make) -> None:
    """A success at 05:30 Paris meets the 06:00 deadline; the next day's deadline is judged on its own."""
    rule = Rule("OrdersLate", DeadlineMissed(cron="0 6 * * *", timezone="Europe/Paris", within=6 * 3600))
    ev = make_evaluator([rule])
    ev.start(now=at("2025-03-01T00:00:00"))
    ev.handle(run_ended("orders", "success", run_id="r1", at=at("2025-03-02T05:30:00")), now=at("2025-03-02T05:30"))
    ev.tick(at("2025-03-02T07:00:00"))
    assert states(ev) == []
    ev.tick(at("2025-03-03T06:00:01"))
    assert [s for _, s, _ in states(ev)] == ["firing"]


def test_deadline_uses_the_time_zone(make_evaluator: Make) -> None:
    """06:00 in Paris is 05:00 UTC in winter: the UTC clock at 05:00:01 already sees it missed."""
    rule = Rule("Late", DeadlineMissed(cron="0 6 * * *", timezone="Europe/Paris", pipelines=["orders"]))
    ev = make_evaluator([rule])
    ev.start(now=at("2025-01-09T12:00:00", dt.UTC))
    ev.tick(at("2025-01-10T04:59:59", dt.UTC))
    assert states(ev) == []
    ev.tick(at("2025-01-10T05:00:01", dt.UTC))
    assert [s for _, s, _ in states(ev)] == ["firing"]


def test_a_deadline_before_the_pipeline_existed_is_not_held_against_it(make_evaluator: Make) -> None:
    """A pipeline first seen after today's deadline is judged from the next one."""
    rule = Rule("Late", DeadlineMissed(cron="0 6 * * *", timezone="UTC"))
    ev = make_evaluator([rule])
    ev.start(now=at("2025-03-02T07:00:00", dt.UTC))
    ev.handle(
        run_ended("orders", "failed", run_id="r1", at=at("2025-03-02T08:00:00", dt.UTC)),
        now=at("2025-03-02T08:00:00", dt.UTC),
    )
    ev.tick(at("2025-03-02T09:00:00", dt.UTC))
    assert states(ev) == []
    ev.tick(at("2025-03-03T06:00:00", dt.UTC))
    assert [s for _, s, _ in states(ev)] == ["firing"]


def test_duration_of_the_last_run_above_the_limit_fires_when_the_run_ends(make_evaluator: Make) -> None:
    """stat last: a slow run fires at once; a fast one resolves it."""
    ev = make_evaluator([Rule("Slow", DurationAbove(above=600))])
    ev.handle(run_ended("orders", "success", run_id="r1", at=T0, duration=900), now=T0)
    assert states(ev) == [("orders", "firing", 900.0)]
    ev.tick(T0 + 86400)  # the timer keeps it: the last run is still the slow one
    assert states(ev) == [("orders", "firing", 900.0)]
    ev.handle(run_ended("orders", "success", run_id="r2", at=T0 + 86500, duration=60), now=T0 + 86500)
    assert states(ev) == []


def test_p95_over_a_window_slides_with_time(make_evaluator: Make) -> None:
    """p95 of the last hour's runs above the limit fires; once the slow runs leave the window, the timer resolves it."""
    ev = make_evaluator([Rule("SlowP95", DurationAbove(above=100, stat="p95", window=3600, min_runs=3))])
    for i, d in enumerate([10, 500, 600]):
        ev.handle(run_ended("orders", "success", run_id=f"r{i}", at=T0 + i, duration=d), now=T0 + i)
    [(_, state, value)] = states(ev)
    assert state == "firing" and value == pytest.approx(quantile([10, 500, 600], 0.95))
    for i, d in enumerate([10, 20, 30], start=3):
        ev.handle(run_ended("orders", "success", run_id=f"r{i}", at=T0 + 3000 + i, duration=d), now=T0 + 3000 + i)
    assert [s for _, s, _ in states(ev)] == ["firing"]
    ev.tick(T0 + 3700)  # r0-r2 ended more than an hour ago
    assert states(ev) == []


def test_success_rate_below_the_limit_over_the_window(make_evaluator: Make) -> None:
    """Two failures in five runs is 60 %, below 80 %: fires; too few runs in the window: resolves."""
    ev = make_evaluator([Rule("Flaky", SuccessRateBelow(below=0.8, window=3600, min_runs=5))])
    for i, status in enumerate(["success", "failed", "success", "cancelled", "failed", "success"]):
        ev.handle(run_ended("orders", status, run_id=f"r{i}", at=T0 + i), now=T0 + i)
    assert states(ev) == [("orders", "firing", 0.6)]
    ev.tick(T0 + 3603)  # r0-r2 leave the window
    assert states(ev) == []


def test_exports_failing_fire_on_the_timer_and_resolve_after_the_window(make_evaluator: Make) -> None:
    """Two pushgateway failures within ten minutes fire (value 2); ten quiet minutes resolve it."""
    ev = make_evaluator([Rule("Exports", ExportsFailing(count=2, window=600))])
    ev.export_failed("pushgateway", pipeline="orders", now=T0)
    ev.tick(T0 + 1)
    assert states(ev) == []
    ev.export_failed("pushgateway", pipeline="orders", now=T0 + 2)
    ev.export_failed("otlp", pipeline="orders", now=T0 + 2)
    ev.tick(T0 + 3)
    assert [(a.labels["exporter"], a.value) for a in ev.alerts()] == [("pushgateway", 2.0)]
    ev.tick(T0 + 601)
    assert states(ev) == []


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Stale(max_age=0), "stale.max_age"),
        (lambda: DeadlineMissed(cron="6 * *"), "not a cron expression"),
        (lambda: DeadlineMissed(timezone="Mars/Olympus"), "time zone"),
        (lambda: DurationAbove(above=10, stat="p42"), "stat must be one of"),
        (lambda: SuccessRateBelow(below=90), "fraction"),
        (lambda: ExportsFailing(count=0), "count"),
    ],
)
def test_timed_conditions_refuse_bad_arguments(make: Callable[[], object], match: str) -> None:
    """Wrong arguments raise ConfigError saying what to write."""
    with pytest.raises(ConfigError, match=match):
        make()


@pytest.mark.parametrize(("q", "expected"), [(0.0, 1.0), (0.5, 2.5), (0.95, 3.85), (1.0, 4.0)])
def test_quantile_interpolates_like_numpy(q: float, expected: float) -> None:
    """Linear interpolation between closest ranks."""
    assert quantile([4.0, 1.0, 3.0, 2.0], q) == pytest.approx(expected)
