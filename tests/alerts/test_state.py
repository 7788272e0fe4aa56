"""The alert state machine: inactive -> pending -> firing -> resolved, with for and keep_firing_for."""

from __future__ import annotations

from agent.records import AlertState
from alerts.conditions import RunFailed
from alerts.rules import Rule
from alerts.state import advance, fingerprint, observe

P, F, R, OFF = AlertState.PENDING, AlertState.FIRING, AlertState.RESOLVED, AlertState.INACTIVE
LABELS = {"pipeline": "orders"}


def test_without_for_an_alert_fires_at_once() -> None:
    """for: 0 goes straight from inactive to firing, with fired_at the time of the observation."""
    t, entered = observe(None, Rule("A", RunFailed()), LABELS, True, now=10.0, value=1.0, run_id="r1")
    assert t is not None and entered == [F]
    assert (t.event.fired_at, t.event.active_at, t.event.run_id) == (10.0, 10.0, "r1")


def test_pending_fires_once_the_condition_held_for_its_for() -> None:
    """With for: 60 the alert is pending until 60 s after it became active, then fires."""
    t, entered = observe(None, Rule("A", RunFailed(), for_=60), LABELS, True, now=0.0)
    assert t is not None and entered == [P]
    assert advance(t, 59.0) == []
    assert advance(t, 60.0) == [F] and t.event.fired_at == 60.0


def test_pending_that_stops_holding_goes_back_to_inactive_without_firing() -> None:
    """A pending alert whose condition clears becomes inactive and never fired."""
    rule = Rule("A", RunFailed(), for_=60)
    t, _ = observe(None, rule, LABELS, True, now=0.0)
    t, entered = observe(t, rule, LABELS, False, now=30.0)
    assert entered == [OFF] and t is not None and t.event.fired_at is None
    assert advance(t, 120.0) == []


def test_firing_resolves_when_the_condition_clears() -> None:
    """keep_firing_for: 0 resolves at the observation that clears it."""
    rule = Rule("A", RunFailed())
    t, _ = observe(None, rule, LABELS, True, now=0.0)
    t, entered = observe(t, rule, LABELS, False, now=50.0)
    assert entered == [R] and t is not None and t.event.resolved_at == 50.0


def test_keep_firing_for_holds_a_cleared_alert_then_resolves() -> None:
    """A cleared alert keeps firing for keep_firing_for seconds; holding again in between cancels that."""
    rule = Rule("A", RunFailed(), keep_firing_for=100)
    t, _ = observe(None, rule, LABELS, True, now=0.0)
    t, entered = observe(t, rule, LABELS, False, now=10.0)
    assert entered == [] and t is not None and t.event.state is F
    t, entered = observe(t, rule, LABELS, True, now=50.0)  # flaps back: the clock restarts
    assert t is not None
    t, _ = observe(t, rule, LABELS, False, now=60.0)
    assert t is not None
    assert advance(t, 159.0) == []
    assert advance(t, 160.0) == [R] and t.event.resolved_at == 160.0


def test_a_resolved_alert_that_holds_again_is_a_new_incident() -> None:
    """After resolution, the next activation starts over: new fired_at, no acknowledgement."""
    rule = Rule("A", RunFailed())
    t, _ = observe(None, rule, LABELS, True, now=0.0)
    t, _ = observe(t, rule, LABELS, False, now=5.0)
    t2, entered = observe(t, rule, LABELS, True, now=100.0)
    assert entered == [F] and t2 is not t and t2 is not None
    assert (t2.event.fired_at, t2.event.resolved_at, t2.event.acknowledged_at) == (100.0, None, None)


def test_an_inactive_observation_of_an_unknown_alert_creates_nothing() -> None:
    """No alert is tracked for a condition that never held."""
    assert observe(None, Rule("A", RunFailed()), LABELS, False, now=0.0) == (None, [])


def test_fingerprint_depends_on_every_label_and_not_on_their_order() -> None:
    """Same labels in another order: same fingerprint; one label different: another."""
    a = fingerprint({"alertname": "A", "pipeline": "orders", "severity": "warning"})
    assert a == fingerprint({"severity": "warning", "pipeline": "orders", "alertname": "A"})
    assert a != fingerprint({"alertname": "A", "pipeline": "orders2", "severity": "warning"})
    assert len(a) == 16 and int(a, 16) >= 0
