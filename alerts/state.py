"""One alert's state machine: inactive -> pending -> firing -> resolved, with ``for`` and ``keep_firing_for``.

>>> from alerts.conditions import RunFailed
>>> from alerts.rules import Rule
>>> rule = Rule("Failed", RunFailed(), for_=60)
>>> t, entered = observe(None, rule, {"pipeline": "orders"}, True, now=0.0)
>>> entered, t.event.state
([<AlertState.PENDING: 'pending'>], <AlertState.PENDING: 'pending'>)
>>> advance(t, now=60.0), t.event.fired_at
([<AlertState.FIRING: 'firing'>], 60.0)

An alert is identified by the fingerprint of its labels (rule name included).
A condition holds from the observation that says so until one that says it
does not: ``pending`` becomes ``firing`` once it held for ``for`` seconds;
``firing`` becomes ``resolved`` once it has not held for ``keep_firing_for``
seconds. A pending alert whose condition stops holding goes back to
``inactive`` without a notification. A resolved alert that holds again starts
a new incident (new ``active_at`` and ``fired_at``, acknowledgement cleared).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.records import AlertEvent, AlertState

if TYPE_CHECKING:
    from alerts.rules import Rule

__all__ = ["Tracked", "advance", "fingerprint", "observe"]


def fingerprint(labels: Mapping[str, str]) -> str:
    """16 hex digits identifying a label set (the rule's name is the ``alertname`` label)."""
    h = hashlib.sha256()
    for key in sorted(labels):
        h.update(key.encode())
        h.update(b"\x00")
        h.update(str(labels[key]).encode())
        h.update(b"\x01")
    return h.hexdigest()[:16]


@dataclass(slots=True, eq=False)
class Tracked:
    """An alert the evaluator holds: its stored state, whether its condition holds, since when it stopped."""

    rule: Rule
    event: AlertEvent
    holds: bool = True
    cleared_at: float | None = None


def _set(t: Tracked, now: float, **changes: object) -> None:
    t.event = dataclasses.replace(t.event, updated_at=now, **changes)  # type: ignore[arg-type]


def observe(
    t: Tracked | None,
    rule: Rule,
    labels: Mapping[str, str],
    holds: bool,
    *,
    now: float,
    value: float | None = None,
    run_id: str | None = None,
) -> tuple[Tracked | None, list[AlertState]]:
    """Apply one observation of the condition to the alert ``t`` (None: not tracked); return the alert
    (None when there is none to track) and the states it entered, in order."""
    live = t is not None and t.event.state in (AlertState.PENDING, AlertState.FIRING)
    if not holds:
        if t is None or not live:
            return t, []
        t.holds = False
        if value is not None:
            t.event = dataclasses.replace(t.event, value=value)
        if t.event.state is AlertState.PENDING:
            _set(t, now, state=AlertState.INACTIVE)
            return t, [AlertState.INACTIVE]
        if t.cleared_at is None:
            t.cleared_at = now
        return t, advance(t, now)
    if t is not None and live:
        t.holds = True
        t.cleared_at = None
        t.event = dataclasses.replace(
            t.event, value=value if value is not None else t.event.value, run_id=run_id or t.event.run_id
        )
        return t, advance(t, now)
    full = rule.alert_labels(labels)
    firing = rule.for_ <= 0
    event = AlertEvent(
        fingerprint=fingerprint(full),
        alert=rule.name,
        state=AlertState.FIRING if firing else AlertState.PENDING,
        severity=rule.severity,
        labels=full,
        value=value,
        active_at=now,
        fired_at=now if firing else None,
        run_id=run_id,
        updated_at=now,
    )
    return Tracked(rule, event), [event.state]


def advance(t: Tracked, now: float) -> list[AlertState]:
    """Let time pass for ``t``: fire a pending alert that held for ``for``, resolve a firing one that has
    not held for ``keep_firing_for``. Returns the states entered."""
    state = t.event.state
    if (
        state is AlertState.PENDING
        and t.holds
        and t.event.active_at is not None
        and now - t.event.active_at >= t.rule.for_
    ):
        _set(t, now, state=AlertState.FIRING, fired_at=now)
        return [AlertState.FIRING]
    if state is AlertState.FIRING and not t.holds:
        cleared = t.cleared_at if t.cleared_at is not None else now
        t.cleared_at = cleared
        if now - cleared >= t.rule.keep_firing_for:
            _set(t, now, state=AlertState.RESOLVED, resolved_at=now)
            return [AlertState.RESOLVED]
    return []
