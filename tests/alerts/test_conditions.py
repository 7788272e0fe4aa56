"""Event-driven conditions: failed runs and tasks, failure streaks, failed checks, measures above thresholds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alert_support import T0, Clock, checks_evaluated, result, run_ended, task_ended

from agent.errors import ConfigError
from agent.records import RunStatus
from agent.store import SQLiteRunStore
from alerts.conditions import (
    CheckFailed,
    ConsecutiveFailures,
    DriftAbove,
    DuplicatesAbove,
    NullFractionAbove,
    RowsLostAbove,
    RunFailed,
    TaskFailed,
)
from alerts.evaluator import AlertEvaluator
from alerts.rules import Rule

Make = Callable[..., AlertEvaluator]


def firing(ev: AlertEvaluator) -> list[dict[str, str]]:
    return [dict(a.labels) for a in ev.alerts() if str(a.state) == "firing"]


@pytest.mark.parametrize(
    ("status", "fires"),
    [
        ("failed", True),
        ("timed_out", True),
        ("interrupted", True),
        ("success", False),
        ("cancelled", False),
    ],
)
def test_run_failed_fires_for_failures_only(make_evaluator: Make, status: str, fires: bool) -> None:
    """Failed, timed-out and interrupted runs fire; successes and cancellations do not."""
    ev = make_evaluator([Rule("Failed", RunFailed())])
    ev.handle(run_ended("orders", status, run_id="r1", at=T0), now=T0)
    assert bool(firing(ev)) is fires


def test_run_failed_holds_until_the_next_success_and_ignores_cancellations(make_evaluator: Make) -> None:
    """A cancelled run neither resolves nor re-fires; the next success resolves; the value counts the streak."""
    ev = make_evaluator([Rule("Failed", RunFailed())])
    ev.handle(run_ended("orders", "failed", run_id="r1", at=T0), now=T0)
    ev.handle(run_ended("orders", "failed", run_id="r2", at=T0 + 60), now=T0 + 60)
    ev.handle(run_ended("orders", "cancelled", run_id="r3", at=T0 + 90), now=T0 + 90)
    [alert] = ev.alerts()
    assert (alert.value, alert.run_id) == (2.0, "r2")
    ev.handle(run_ended("orders", "success", run_id="r4", at=T0 + 120), now=T0 + 120)
    assert ev.alerts() == []


def test_pipeline_globs_choose_the_pipelines_watched(make_evaluator: Make) -> None:
    """pipelines: ["orders*"] watches orders and orders_daily but not billing."""
    ev = make_evaluator([Rule("Failed", RunFailed(pipelines=["orders*"]))])
    for i, name in enumerate(("orders", "orders_daily", "billing")):
        ev.handle(run_ended(name, "failed", run_id=f"r{i}", at=T0), now=T0)
    assert sorted(a["pipeline"] for a in firing(ev)) == ["orders", "orders_daily"]


def test_consecutive_failures_fire_at_the_count_and_reset_on_success(make_evaluator: Make) -> None:
    """count: 3 fires at the third failure in a row (cancelled runs do not break it), a success resets it."""
    ev = make_evaluator([Rule("Repeated", ConsecutiveFailures(count=3))])
    for i, status in enumerate(["failed", "failed", "cancelled"]):
        ev.handle(run_ended("orders", status, run_id=f"r{i}", at=T0 + i), now=T0 + i)
    assert firing(ev) == []
    ev.handle(run_ended("orders", "failed", run_id="r3", at=T0 + 3), now=T0 + 3)
    assert [a.value for a in ev.alerts()] == [3.0]
    ev.handle(run_ended("orders", "success", run_id="r4", at=T0 + 4), now=T0 + 4)
    ev.handle(run_ended("orders", "failed", run_id="r5", at=T0 + 5), now=T0 + 5)
    assert firing(ev) == []


def test_failure_streaks_continue_from_the_run_store_after_a_restart(make_evaluator: Make, tmp_path: Path) -> None:
    """Two failures recorded by an earlier process plus one now make three in a row."""
    store = SQLiteRunStore(tmp_path / "pipewarden.db")
    for i in range(2):
        store.create_run(run_id=f"old{i}", pipeline="orders", trigger="cron", now=T0 + i)
        store.start_run(f"old{i}", now=T0 + i)
        store.finish_run(f"old{i}", RunStatus.FAILED, now=T0 + i + 0.5)
    ev = make_evaluator([Rule("Repeated", ConsecutiveFailures(count=3))], history=store)
    ev.handle(run_ended("orders", "failed", run_id="new", at=T0 + 10), now=T0 + 10)
    assert [(a.value, a.run_id) for a in ev.alerts()] == [(3.0, "new")]
    store.close()


def test_a_run_the_store_and_the_event_both_report_counts_once(make_evaluator: Make, tmp_path: Path) -> None:
    """The orchestrator writes a run before emitting it: seeding from the store and the event do not double it."""
    store = SQLiteRunStore(tmp_path / "pipewarden.db")
    store.create_run(run_id="r1", pipeline="orders", trigger="cron", now=T0)
    store.start_run("r1", now=T0)
    store.finish_run("r1", RunStatus.FAILED, now=T0 + 1)
    ev = make_evaluator([Rule("Repeated", ConsecutiveFailures(count=2))], history=store)
    ev.handle(run_ended("orders", "failed", run_id="r1", at=T0 + 1), now=T0 + 1)
    assert firing(ev) == []
    store.close()


def test_task_failed_ignores_attempts_that_will_be_retried(make_evaluator: Make) -> None:
    """An attempt followed by a retry does not fire; the last failed attempt does; a success resolves it."""
    ev = make_evaluator([Rule("TaskFailed", TaskFailed(tasks=["load"]))])
    ev.handle(task_ended("orders", "load", "failed", run_id="r1", at=T0, retry_in=2.0), now=T0)
    ev.handle(task_ended("orders", "extract", "failed", run_id="r1", at=T0), now=T0)
    assert firing(ev) == []
    ev.handle(task_ended("orders", "load", "timed_out", run_id="r1", at=T0 + 5, attempt=2), now=T0 + 5)
    assert firing(ev) == [{"alertname": "TaskFailed", "severity": "warning", "pipeline": "orders", "task": "load"}]
    ev.handle(task_ended("orders", "load", "success", run_id="r2", at=T0 + 60), now=T0 + 60)
    assert firing(ev) == []


def test_task_failed_hears_a_mapped_task_not_its_items(make_evaluator: Make) -> None:
    """A failed item of a mapped task does not fire (nor a successful one resolve); the mapped task's own end does."""
    from dataclasses import replace

    ev = make_evaluator([Rule("TaskFailed", TaskFailed(tasks=["load"]))])
    ev.handle(replace(task_ended("orders", "load", "failed", run_id="r1", at=T0), item=3), now=T0)
    assert firing(ev) == []
    ev.handle(task_ended("orders", "load", "failed", run_id="r1", at=T0 + 1), now=T0 + 1)
    ev.handle(replace(task_ended("orders", "load", "success", run_id="r2", at=T0 + 2), item=0), now=T0 + 2)
    assert len(firing(ev)) == 1


def test_check_failed_labels_the_alert_by_dataset_check_and_kind(make_evaluator: Make) -> None:
    """A failing check fires one alert per pipeline, dataset, check and kind; a pass resolves it."""
    ev = make_evaluator([Rule("CheckFailed", CheckFailed())])
    ev.handle(
        checks_evaluated("orders", "clean_orders", result("unique(order_id)", "duplication", "fail", observed=4.0)),
        now=T0,
    )
    [alert] = ev.alerts()
    assert dict(alert.labels) == {
        "alertname": "CheckFailed",
        "severity": "warning",
        "pipeline": "orders",
        "dataset": "clean_orders",
        "check": "unique(order_id)",
        "kind": "duplication",
    }
    assert alert.value == 4.0
    ev.handle(checks_evaluated("orders", "clean_orders", result("unique(order_id)", "duplication", "pass")), now=T0)
    assert ev.alerts() == []


def test_check_results_on_task_ended_use_the_task_as_dataset(make_evaluator: Make) -> None:
    """Results carried by TaskEnded without a dataset are about the task's output."""
    ev = make_evaluator([Rule("CheckFailed", CheckFailed())])
    ev.handle(
        task_ended(
            "orders",
            "transform",
            "success",
            run_id="r1",
            at=T0,
            checks=(result("not_null(amount)", "completeness", "fail", column="amount"),),
        ),
        now=T0,
    )
    assert [a["dataset"] for a in firing(ev)] == ["transform"]


def test_one_failing_column_makes_the_check_fail(make_evaluator: Make) -> None:
    """A check with one result per column fires when any column fails, whatever the order of the results."""
    ev = make_evaluator([Rule("CheckFailed", CheckFailed())])
    ev.handle(
        checks_evaluated(
            "orders",
            "d",
            result("not_null", "completeness", "fail", column="a"),
            result("not_null", "completeness", "pass", column="b"),
        ),
        now=T0,
    )
    assert len(firing(ev)) == 1


@pytest.mark.parametrize(
    ("condition", "status", "kind", "severity", "fires"),
    [
        (CheckFailed(), "error", "schema", "fail", True),
        (CheckFailed(statuses=["fail"]), "error", "schema", "fail", False),
        (CheckFailed(kinds=["drift"]), "fail", "schema", "fail", False),
        (CheckFailed(kinds=["drift"]), "fail", "drift", "fail", True),
        (CheckFailed(severities=["fail"]), "fail", "volume", "warn", False),
        (CheckFailed(statuses=["warn"]), "warn", "volume", "warn", True),
        (CheckFailed(datasets=["raw_*"]), "fail", "volume", "fail", False),
    ],
)
def test_check_failed_filters(
    make_evaluator: Make, condition: CheckFailed, status: str, kind: str, severity: str, fires: bool
) -> None:
    """statuses, kinds, severities and datasets choose which results fire."""
    ev = make_evaluator([Rule("CheckFailed", condition)])
    ev.handle(checks_evaluated("orders", "clean", result("c", kind, status, severity=severity)), now=T0)
    assert bool(firing(ev)) is fires


def test_an_error_when_only_failures_are_watched_neither_fires_nor_resolves(make_evaluator: Make) -> None:
    """A check that could not run says nothing about whether the data failed it."""
    ev = make_evaluator([Rule("CheckFailed", CheckFailed(statuses=["fail"]))])
    ev.handle(checks_evaluated("orders", "d", result("c", "volume", "fail")), now=T0)
    ev.handle(checks_evaluated("orders", "d", result("c", "volume", "error")), now=T0 + 1)
    assert len(firing(ev)) == 1


MEASURES: list[tuple[Any, Any, Any, dict[str, str]]] = [
    (
        DriftAbove(above=0.25),
        result("drift(amount)", "drift", "fail", observed=0.4, measure="psi", column="amount"),
        result("drift(amount)", "drift", "pass", observed=0.1, measure="psi", column="amount"),
        {"column": "amount", "method": "psi"},
    ),
    (
        RowsLostAbove(above=10),
        result("loss", "loss", "fail", observed=11, measure="rows_lost"),
        result("loss", "loss", "pass", observed=10, measure="rows_lost"),
        {"check": "loss"},
    ),
    (
        DuplicatesAbove(),
        result("unique(id)", "duplication", "fail", observed=2, measure="duplicates"),
        result("unique(id)", "duplication", "pass", observed=0, measure="duplicates"),
        {"check": "unique(id)"},
    ),
    (
        NullFractionAbove(above=0.05),
        result("not_null", "completeness", "warn", observed=0.2, measure="null_fraction", column="amount"),
        result("not_null", "completeness", "pass", observed=0.01, measure="null_fraction", column="amount"),
        {"column": "amount"},
    ),
]


@pytest.mark.parametrize(
    ("condition", "above", "below", "labels"), MEASURES, ids=["drift", "rows_lost", "duplicates", "null_fraction"]
)
def test_measures_above_their_threshold_fire_and_resolve_below(
    make_evaluator: Make, condition: Any, above: Any, below: Any, labels: dict[str, str]
) -> None:
    """The observed measure above the threshold fires (labels as the catalogue's gauge); at or below resolves."""
    ev = make_evaluator([Rule("Measure", condition)])
    ev.handle(checks_evaluated("orders", "clean", above), now=T0)
    [alert] = ev.alerts()
    assert labels.items() <= alert.labels.items() and alert.value == float(above.observed)
    ev.handle(checks_evaluated("orders", "clean", below), now=T0 + 1)
    assert ev.alerts() == []


def test_drift_watches_only_the_methods_named(make_evaluator: Make) -> None:
    """A KS score above a PSI threshold is not compared: scores of different methods differ in scale."""
    ev = make_evaluator([Rule("Drift", DriftAbove(above=0.25, methods=["psi"]))])
    ev.handle(
        checks_evaluated("orders", "d", result("drift(x)", "drift", "fail", observed=0.9, measure="ks", column="x")),
        now=T0,
    )
    assert ev.alerts() == []


def test_a_measure_from_a_check_that_errored_is_ignored(make_evaluator: Make) -> None:
    """An error result carries no real measurement."""
    ev = make_evaluator([Rule("Lost", RowsLostAbove(above=0))])
    ev.handle(checks_evaluated("orders", "d", result("loss", "loss", "error", observed=5, measure="rows_lost")), now=T0)
    assert ev.alerts() == []


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ConsecutiveFailures(count=0), "count"),
        (lambda: CheckFailed(kinds=["dupes"]), "kinds must be among"),
        (lambda: CheckFailed(statuses=["broken"]), "statuses must be among"),
        (lambda: DriftAbove(above=0.1, methods=["pci"]), "methods must be among psi"),
        (lambda: NullFractionAbove(above=5), "fraction"),
        (lambda: RunFailed(pipelines=[""]), "non-empty"),
    ],
)
def test_conditions_refuse_bad_arguments_naming_what_is_allowed(make: Callable[[], Any], match: str) -> None:
    """Wrong arguments raise ConfigError when the condition is made, saying what is allowed."""
    with pytest.raises(ConfigError, match=match):
        make()


def test_clock_is_not_read_when_now_is_given(make_evaluator: Make, clock: Clock) -> None:
    """The alert's times are the ``now`` passed in, not the clock."""
    ev = make_evaluator([Rule("Failed", RunFailed())])
    ev.handle(run_ended("orders", "failed", run_id="r1", at=T0 + 500), now=T0 + 500)
    assert ev.alerts()[0].fired_at == T0 + 500 != clock()
