"""The evaluator: transitions recorded and counted, grouping, repeats, restarts, acknowledgements, the event bus."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from alert_support import T0, Clock, Collect, RecordedMetrics, checks_evaluated, result, run_ended

from agent.events import EventBus, TaskStarted
from agent.records import AlertEvent, AlertState
from alerts.conditions import CheckFailed, ConsecutiveFailures, RunFailed
from alerts.delivery import AlertMatch
from alerts.evaluator import AlertEvaluator
from alerts.rules import DEFAULT_RULES, Rule
from alerts.store import AlertNotFoundError, MemoryAlertStore

Make = Callable[..., AlertEvaluator]
FAILED = Rule("Failed", RunFailed(), annotations={"summary": "{{ pipeline }} failed in {{ run_id }}"})


def fail(ev: AlertEvaluator, pipeline: str = "orders", *, at: float, run_id: str = "r1") -> None:
    ev.handle(run_ended(pipeline, "failed", run_id=run_id, at=at), now=at)


def succeed(ev: AlertEvaluator, pipeline: str = "orders", *, at: float, run_id: str = "r2") -> None:
    ev.handle(run_ended(pipeline, "success", run_id=run_id, at=at), now=at)


def test_a_failed_run_is_stored_counted_and_sent_with_its_annotations(
    make_evaluator: Make, collect: Collect, metrics: RecordedMetrics
) -> None:
    """Firing is written to the store, counted, and the receiver gets the alert with rendered annotations."""
    store = MemoryAlertStore()
    ev = make_evaluator([FAILED], store=store)
    fail(ev, at=T0)
    [stored] = store.list_alerts()
    assert (stored.state, stored.last_sent_at, stored.annotations["summary"]) == (
        AlertState.FIRING,
        T0,
        "orders failed in r1",
    )
    assert collect.alerts() == [("Failed", "firing", "orders")]
    assert metrics.transitions == [("Failed", "warning", "orders", "firing")]
    assert metrics.firing_now == {("Failed", "warning", "orders"): 1}
    assert [e.name for e in store.alert_history(kind="transition")] == ["firing"]


def test_resolution_is_sent_counted_and_its_response_time_observed(
    make_evaluator: Make, collect: Collect, metrics: RecordedMetrics
) -> None:
    """A success resolves the alert: resolved notification, firing gauge back to 0, response time observed."""
    ev = make_evaluator([FAILED])
    fail(ev, at=T0)
    succeed(ev, at=T0 + 300)
    assert collect.alerts() == [("Failed", "firing", "orders"), ("Failed", "resolved", "orders")]
    assert metrics.firing_now == {("Failed", "warning", "orders"): 0}
    assert metrics.responses == [("Failed", 300.0)]
    assert [t[3] for t in metrics.transitions] == ["firing", "resolved"]


def test_pending_alerts_are_not_sent_and_fire_on_the_timer(
    make_evaluator: Make, collect: Collect, metrics: RecordedMetrics
) -> None:
    """With for: 5m the receiver hears nothing until a tick 5 minutes later fires the alert."""
    ev = make_evaluator([dataclasses.replace(FAILED, for_=300)])
    fail(ev, at=T0)
    ev.tick(T0 + 299)
    assert collect.alerts() == []
    ev.tick(T0 + 300)
    assert collect.alerts() == [("Failed", "firing", "orders")]
    assert [t[3] for t in metrics.transitions] == ["pending", "firing"]


def test_alerts_changed_in_one_step_go_out_grouped(make_evaluator: Make, collect: Collect) -> None:
    """group_by pipeline: the two rules firing on one failed run make one notification with both alerts."""
    ev = make_evaluator([FAILED, Rule("Streak", ConsecutiveFailures(count=1))], group_by=["pipeline"])
    fail(ev, at=T0)
    collect.flush(5)
    assert [sorted(a.alert for a in n.alerts) for n in collect.items] == [["Failed", "Streak"]]
    assert collect.items[0].group_labels == {"pipeline": "orders"}


def test_group_wait_holds_a_new_group_and_gathers_what_follows(make_evaluator: Make, collect: Collect) -> None:
    """With group_wait 30s, alerts of one group within 30 s go out together at the tick after it."""
    ev = make_evaluator([Rule("CheckFailed", CheckFailed())], group_wait=30, group_by=["pipeline"])
    ev.handle(checks_evaluated("orders", "a", result("c1", "volume", "fail")), now=T0)
    ev.handle(checks_evaluated("orders", "b", result("c2", "schema", "fail")), now=T0 + 10)
    ev.tick(T0 + 29)
    assert collect.alerts() == []
    ev.tick(T0 + 31)
    collect.flush(5)
    assert [len(n.alerts) for n in collect.items] == [2]


def test_firing_alerts_are_repeated_after_repeat_interval_unless_acknowledged(
    make_evaluator: Make, collect: Collect
) -> None:
    """The group is sent again once repeat_interval passed; an acknowledged alert is not repeated."""
    ev = make_evaluator([FAILED], repeat_interval=3600)
    fail(ev, at=T0)
    fail(ev, "billing", at=T0)
    ev.tick(T0 + 3599)
    assert len(collect.alerts()) == 2
    ev.ack(next(a.fingerprint for a in ev.alerts() if a.labels["pipeline"] == "billing"), by="ann", now=T0 + 100)
    ev.tick(T0 + 3600)
    collect.flush(5)
    assert [(n.repeat, [a.labels["pipeline"] for a in n.alerts]) for n in collect.items][2:] == [(True, ["orders"])]


def test_receivers_get_only_what_they_match(make_evaluator: Make) -> None:
    """A receiver matching critical alerts hears only those; one without send_resolved hears no resolution."""
    critical = Collect("critical", match=AlertMatch(severities=("critical",)))
    no_resolved = Collect("no-resolved", send_resolved=False)
    ev = make_evaluator(
        [FAILED, Rule("Streak", ConsecutiveFailures(count=1), severity="critical")], receivers=[critical, no_resolved]
    )
    fail(ev, at=T0)
    succeed(ev, at=T0 + 1)
    assert critical.alerts() == [("Streak", "firing", "orders"), ("Streak", "resolved", "orders")]
    assert sorted(no_resolved.alerts()) == [("Failed", "firing", "orders"), ("Streak", "firing", "orders")]
    critical.stop(1)
    no_resolved.stop(1)


def test_a_restart_while_firing_neither_notifies_again_nor_forgets(
    make_evaluator: Make, collect: Collect, metrics: RecordedMetrics
) -> None:
    """A new evaluator on the same store keeps the alert firing, sends nothing on its ticks, then resolves it."""
    store = MemoryAlertStore()
    first = make_evaluator([FAILED], store=store)
    fail(first, at=T0)
    first.stop(1)
    second = make_evaluator([FAILED], store=store)
    second.start(now=T0 + 60)
    second.tick(T0 + 61)
    second.tick(T0 + 120)
    assert [str(a.state) for a in second.alerts()] == ["firing"]
    assert metrics.firing_now[("Failed", "warning", "orders")] == 1
    succeed(second, at=T0 + 200)
    assert collect.alerts() == [("Failed", "firing", "orders"), ("Failed", "resolved", "orders")]
    assert metrics.responses == [("Failed", 200.0)]


def test_an_alert_stored_but_never_sent_is_sent_after_a_restart(make_evaluator: Make, collect: Collect) -> None:
    """A firing alert without last_sent_at (the process died between saving and sending) goes out at the next tick."""
    store = MemoryAlertStore()
    labels = {"alertname": "Failed", "severity": "warning", "pipeline": "orders"}
    from alerts.state import fingerprint

    store.save_alert(
        AlertEvent(
            fingerprint(labels), "Failed", AlertState.FIRING, labels=labels, active_at=T0, fired_at=T0, updated_at=T0
        )
    )
    ev = make_evaluator([FAILED], store=store)
    ev.tick(T0 + 5)
    assert collect.alerts() == [("Failed", "firing", "orders")]
    assert collect.items[0].repeat is False


def test_alerts_of_rules_no_longer_configured_are_left_alone(make_evaluator: Make) -> None:
    """A stored alert whose rule is gone is neither evaluated nor resolved."""
    store = MemoryAlertStore()
    store.save_alert(AlertEvent("f" * 16, "Removed", AlertState.FIRING, fired_at=T0, updated_at=T0))
    ev = make_evaluator([FAILED], store=store)
    ev.tick(T0 + 10)
    assert ev.alerts() == [] and store.get_alert("f" * 16).state is AlertState.FIRING  # type: ignore[union-attr]


def test_acknowledging_records_who_and_observes_the_incident_response_time(
    make_evaluator: Make, metrics: RecordedMetrics
) -> None:
    """ack by a prefix of the id stores who and when, writes history, and observes firing-to-ack once."""
    store = MemoryAlertStore()
    ev = make_evaluator([FAILED], store=store)
    fail(ev, at=T0)
    fp = ev.alerts()[0].fingerprint
    acked = ev.ack(fp[:6], by="ann", now=T0 + 90)
    again = ev.ack(fp, by="bob", now=T0 + 95)
    assert (
        (acked.acknowledged_by, acked.acknowledged_at)
        == ("ann", T0 + 90)
        == (again.acknowledged_by, again.acknowledged_at)
    )
    assert metrics.incidents == [("Failed", 90.0)]
    assert [(e.kind, e.name) for e in store.alert_history(kind="ack")] == [("ack", "ann")]


def test_ack_of_an_unknown_or_resolved_alert_says_so(make_evaluator: Make) -> None:
    """An id nobody has raises AlertNotFoundError; a resolved alert cannot be acknowledged."""
    ev = make_evaluator([FAILED])
    fail(ev, at=T0)
    fp = ev.alerts()[0].fingerprint
    succeed(ev, at=T0 + 1)
    with pytest.raises(AlertNotFoundError, match="no alert"):
        ev.ack("deadbeef", by="ann")
    with pytest.raises(ValueError, match="resolved, not firing"):
        ev.ack(fp, by="ann")


def test_an_ack_written_by_another_process_is_picked_up_at_the_next_sync(
    make_evaluator: Make, clock: Clock, metrics: RecordedMetrics, collect: Collect
) -> None:
    """The CLI acknowledges in the store; the evaluator's tick observes the incident time and stops repeating."""
    store = MemoryAlertStore()
    ev = make_evaluator([FAILED], store=store, repeat_interval=600, sync_interval=5)
    fail(ev, at=T0)
    fp = ev.alerts()[0].fingerprint
    store.acknowledge_alert(fp, by="cli-user", now=T0 + 120)
    ev.tick(T0 + 130)
    assert metrics.incidents == [("Failed", 120.0)]
    ev.tick(T0 + 700)
    assert len(collect.alerts()) == 1  # no repeat of an acknowledged alert
    fail(ev, at=T0 + 800, run_id="r9")  # still firing; a save keeps the acknowledgement
    assert store.get_alert(fp).acknowledged_by == "cli-user"  # type: ignore[union-attr]


def test_the_evaluator_hears_runs_through_the_event_bus_on_its_own_thread(clock: Clock, collect: Collect) -> None:
    """Added to the bus as a queued listener, it only hears the events it asks for and fires on a failed run."""
    clock.t = T0
    ev = AlertEvaluator([FAILED], receivers=[collect], clock=clock)
    bus = EventBus()
    errors: list[str] = []
    bus.on_error = lambda name, what, exc: errors.append(what)
    bus.add(ev)
    assert not bus.wants(TaskStarted)
    bus.emit(run_ended("orders", "failed", run_id="r1", at=T0))
    assert bus.close(5)
    assert [str(a.state) for a in ev.alerts()] == ["firing"] and errors == []
    ev.stop(1)


def test_default_rules_have_unique_names_and_annotations_that_render() -> None:
    """The default set builds, and each rule's annotations render with its own labels."""
    assert len({r.name for r in DEFAULT_RULES}) == len(DEFAULT_RULES)
    for rule in DEFAULT_RULES:
        values = {**rule.alert_labels({k: k for k in rule.condition.labels}), "value": 1.0}
        assert rule.render(values)["summary"]


def test_duplicate_rule_names_are_refused(make_evaluator: Make) -> None:
    """Two rules with one name would share alerts: a configuration error."""
    from agent.errors import ConfigError

    with pytest.raises(ConfigError, match="unique"):
        make_evaluator([FAILED, FAILED])
