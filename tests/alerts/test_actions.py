"""Automated responses: resume or trigger when a rule fires, at most N per window, every outcome in history."""

from __future__ import annotations

from collections.abc import Callable

from alert_support import T0, RecordedMetrics, RecordingActions, checks_evaluated, result, run_ended, task_ended

from alerts.conditions import CheckFailed, RunFailed
from alerts.evaluator import AlertEvaluator
from alerts.rules import Resume, Rule, Trigger
from alerts.store import MemoryAlertStore

Make = Callable[..., AlertEvaluator]


def outcomes(store: MemoryAlertStore) -> list[tuple[str, str, str | None]]:
    return [(e.name, e.outcome, e.run_id) for e in reversed(store.alert_history(kind="action"))]


def test_resume_runs_once_per_failed_run_up_to_its_limit_per_window(
    make_evaluator: Make, metrics: RecordedMetrics
) -> None:
    """max 2 per hour: two failed runs are resumed, the third is refused and recorded as limited."""
    store = MemoryAlertStore()
    host = RecordingActions()
    ev = make_evaluator([Rule("Failed", RunFailed(), actions=(Resume(max=2, per=3600),))], store=store, actions=host)
    for i in range(3):
        ev.handle(run_ended("orders", "failed", run_id=f"r{i}", at=T0 + i * 60), now=T0 + i * 60)
    assert host.calls == [("resume", "r0"), ("resume", "r1")]
    assert outcomes(store) == [("resume", "started", "r0"), ("resume", "started", "r1"), ("resume", "limited", "r2")]
    assert metrics.actions == {("Failed", "resume", "started"): 2, ("Failed", "resume", "limited"): 1}
    details = [e.detail for e in reversed(store.alert_history(kind="action"))]
    assert details[0] == "run r0-resumed-1" and "allows 2" in details[2]


def test_the_limit_counts_from_history_so_a_new_window_or_a_restart_behaves(make_evaluator: Make) -> None:
    """After the window passes, resume is allowed again; a new evaluator on the same store keeps counting."""
    store = MemoryAlertStore()
    rule = Rule("Failed", RunFailed(), actions=(Resume(max=1, per=3600),))
    host = RecordingActions()
    first = make_evaluator([rule], store=store, actions=host)
    first.handle(run_ended("orders", "failed", run_id="r0", at=T0), now=T0)
    first.stop(1)
    second = make_evaluator([rule], store=store, actions=host)
    second.handle(run_ended("orders", "failed", run_id="r1", at=T0 + 60), now=T0 + 60)
    second.handle(run_ended("orders", "failed", run_id="r2", at=T0 + 3601), now=T0 + 3601)
    assert host.calls == [("resume", "r0"), ("resume", "r2")]
    assert [o for _, o, _ in outcomes(store)] == ["started", "limited", "started"]


def test_one_run_reported_twice_is_acted_on_once(make_evaluator: Make) -> None:
    """A failing check seen in TaskEnded and in ChecksEvaluated of one run triggers one action."""
    host = RecordingActions()
    ev = make_evaluator([Rule("CheckFailed", CheckFailed(), actions=(Trigger("repair_{{ pipeline }}"),))], actions=host)
    failing = result("unique(id)", "duplication", "fail")
    ev.handle(task_ended("orders", "load", "success", run_id="r1", at=T0, checks=(failing,)), now=T0)
    ev.handle(checks_evaluated("orders", "load", failing, run_id="r1"), now=T0)
    assert host.calls == [("trigger", ("repair_orders", {}))]


def test_trigger_renders_the_pipeline_and_passes_params(make_evaluator: Make) -> None:
    """trigger: "{{ pipeline }}" starts the alert's own pipeline with the rule's params."""
    host = RecordingActions()
    ev = make_evaluator(
        [Rule("Failed", RunFailed(), actions=(Trigger("{{ pipeline }}", params={"mode": "full"}),))], actions=host
    )
    ev.handle(run_ended("billing", "failed", run_id="r1", at=T0), now=T0)
    assert host.calls == [("trigger", ("billing", {"mode": "full"}))]


def test_no_action_while_pending(make_evaluator: Make) -> None:
    """A rule with for: 10m does not act until it fires."""
    host = RecordingActions()
    ev = make_evaluator([Rule("Failed", RunFailed(), for_=600, actions=(Resume(),))], actions=host)
    ev.handle(run_ended("orders", "failed", run_id="r1", at=T0), now=T0)
    assert host.calls == []
    ev.tick(T0 + 600)
    assert host.calls == [("resume", "r1")]


def test_a_host_that_fails_is_recorded_and_the_evaluation_goes_on(
    make_evaluator: Make, metrics: RecordedMetrics
) -> None:
    """A handler that raises is recorded as failed with its message; the alert still fires."""
    store = MemoryAlertStore()
    ev = make_evaluator(
        [Rule("Failed", RunFailed(), actions=(Resume(),))], store=store, actions=RecordingActions(fail=True)
    )
    ev.handle(run_ended("orders", "failed", run_id="r1", at=T0), now=T0)
    [entry] = store.alert_history(kind="action")
    assert (entry.outcome, entry.detail) == ("failed", "RuntimeError: the runner is not available")
    assert metrics.actions == {("Failed", "resume", "failed"): 1}
    assert [str(a.state) for a in ev.alerts()] == ["firing"]


def test_without_a_handler_no_action_runs_and_nothing_is_recorded(make_evaluator: Make) -> None:
    """A script's evaluator without an action handler leaves actions to the daemon."""
    store = MemoryAlertStore()
    ev = make_evaluator([Rule("Failed", RunFailed(), actions=(Resume(),))], store=store)
    ev.handle(run_ended("orders", "failed", run_id="r1", at=T0), now=T0)
    assert store.alert_history(kind="action") == []
