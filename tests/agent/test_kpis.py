"""The delivery KPIs are defined once (agent.kpis) and the metrics, the store and the CLI agree with it."""

from __future__ import annotations

import contextlib
import doctest
import threading
from typing import Any

import pytest

import agent.kpis
from agent import kpis
from agent.monitor import monitor
from agent.pipeline import Pipeline
from agent.records import RunRecord, RunStatus
from agent.runner import run
from agent.telemetry import Telemetry
from exporters.metrics import Metrics

S, F, C, INT = RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED


def test_doctests_run() -> None:
    """The examples in the module's docstrings run as written."""
    result = doctest.testmod(agent.kpis)
    assert result.attempted > 0 and result.failed == 0


def history(*runs: tuple[RunStatus, str, float]) -> list[RunRecord]:
    return [RunRecord(str(i), "p", status, version=v, ended_at=end) for i, (status, v, end) in enumerate(runs)]


@pytest.mark.parametrize(
    ("runs", "changes", "failed", "rate", "recoveries"),
    [
        # the first verdict of a pipeline is a change
        ([(S, "v1", 10)], 1, 0, 1.0, []),
        # cancelling the first run of a new version is no change; the run that follows is, and it succeeded
        ([(S, "v1", 10), (C, "v2", 20), (S, "v2", 30)], 2, 0, 1.0, []),
        # a new version that fails is a failed change; its fix in the same version is not another change
        ([(S, "v1", 10), (F, "v2", 20), (F, "v2", 25), (S, "v2", 40)], 2, 1, 0.5, [20.0]),
        # an interrupted run is a failure; recovery runs from the first failure after the last success
        ([(S, "v1", 10), (INT, "v1", 15), (F, "v1", 18), (S, "v1", 19)], 1, 0, 0.5, [4.0]),
        # cancelled runs between failures do not reset the streak
        ([(F, "v1", 1), (C, "v1", 2), (S, "v1", 6)], 1, 1, 0.5, [5.0]),
    ],
    ids=["first", "cancel-then-success", "failed-change", "interrupted", "cancel-in-streak"],
)
def test_report_follows_the_documented_rules(
    runs: list[tuple[RunStatus, str, float]], changes: int, failed: int, rate: float, recoveries: list[float]
) -> None:
    """Changes, failed changes, success rate and recovery times follow the rules in agent.kpis."""
    r = kpis.report(history(*runs))
    assert (r.changes, r.failed_changes, r.success_rate, r.recovery_times) == (changes, failed, rate, recoveries)


def test_metrics_and_kpis_agree_when_the_first_run_of_a_version_is_cancelled(store: Any) -> None:
    """Cancel the first run of a new version, then run it: no failed change in the metrics or in agent.kpis."""
    tel = Telemetry(metrics=Metrics())
    pipe = Pipeline("cfr")
    started, release = threading.Event(), threading.Event()

    @pipe.task
    def work() -> None:
        started.set()
        release.wait(5)

    @pipe.task
    def after(work: None) -> None:  # never started once the run is cancelled
        pass

    pipe.version = "v1"
    cancel = threading.Event()
    runner = threading.Thread(target=lambda: run(pipe, store=store, telemetry=tel, cancel=cancel))
    runner.start()
    assert started.wait(5)
    cancel.set()
    release.set()
    runner.join(10)
    assert store.list_runs(pipeline="cfr")[0].status is RunStatus.CANCELLED
    assert run(pipe, store=store, telemetry=tel).ok

    report = kpis.report(store.pipeline_history("cfr"))
    m = tel.metrics
    assert (report.changes, report.failed_changes) == (1, 0)
    assert m.sample("pipewarden_pipeline_changes_total", pipeline="cfr") == report.changes
    assert m.sample("pipewarden_pipeline_failed_changes_total", pipeline="cfr") == report.failed_changes == 0


def test_runner_metrics_equal_the_report_of_its_history(store: Any) -> None:
    """After a mixed history (failures, a cancel, a fix), the metrics say what kpis.report says of the store."""
    tel = Telemetry(metrics=Metrics())
    plan = iter([("v1", True), ("v2", False), ("v2", False), ("v2", True), ("v3", True)])
    pipe = Pipeline("mixed")
    ok = {"now": True}

    @pipe.task
    def work() -> None:
        if not ok["now"]:
            raise RuntimeError("down")

    for version, good in plan:
        pipe.version, ok["now"] = version, good
        run(pipe, store=store, telemetry=tel)
    report = kpis.report(store.pipeline_history("mixed"))
    m = tel.metrics
    assert m.sample("pipewarden_pipeline_changes_total", pipeline="mixed") == report.changes == 3
    assert m.sample("pipewarden_pipeline_failed_changes_total", pipeline="mixed") == report.failed_changes == 1
    assert m.sample("pipewarden_pipeline_recovery_seconds_count", pipeline="mixed") == len(report.recovery_times)
    assert m.sample("pipewarden_pipeline_recovery_seconds_sum", pipeline="mixed") == pytest.approx(
        sum(report.recovery_times)
    )
    successes = m.sample("pipewarden_pipeline_runs_total", pipeline="mixed", status="success")
    failures = m.sample("pipewarden_pipeline_runs_total", pipeline="mixed", status="failed")
    assert successes / (successes + failures) == report.success_rate


def test_a_monitored_script_seeds_its_kpis_from_the_store(store: Any) -> None:
    """A new process (fresh telemetry) continues a failure streak recorded by an earlier one: recovery counts."""

    def process(ok: bool) -> Telemetry:
        tel = Telemetry(metrics=Metrics(), store=store)

        @monitor(pipeline="cron", telemetry=tel, version="v1")
        def job() -> None:
            if not ok:
                raise RuntimeError("down")

        with contextlib.suppress(RuntimeError):
            job()
        tel.shutdown()
        return tel

    process(True)
    process(False)
    last = process(True)
    assert last.metrics.sample("pipewarden_pipeline_recovery_seconds_count", pipeline="cron") == 1
    assert last.metrics.sample("pipewarden_pipeline_changes_total", pipeline="cron") == 0  # v1 ran before
    report = kpis.report(store.pipeline_history("cron"))
    assert (report.verdicts, report.successes, len(report.recovery_times)) == (3, 2, 1)


def test_the_cli_prints_the_same_kpis(store: Any, tmp_path: Any) -> None:
    """`pipewarden kpis --json` reports what kpis.report says of the store's history."""
    import json

    from click.testing import CliRunner

    from agent.cli import cli

    pipe = Pipeline("shown")
    ok = {"now": False}

    @pipe.task
    def work() -> None:
        if not ok["now"]:
            raise RuntimeError("down")

    for good in (False, True, True):
        ok["now"] = good
        run(pipe, store=store, telemetry=Telemetry(metrics=Metrics()))
    result = CliRunner().invoke(cli, ["kpis", "--json", "--home", str(store.path.parent)])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)["shown"]
    report = kpis.report(store.pipeline_history("shown"))
    assert (shown["runs"], shown["success_rate"], shown["recoveries"], shown["changes"]) == (
        3,
        report.success_rate,
        1,
        report.changes,
    )
    assert shown["success_rate"] == 2 / 3 and shown["up"] is True
