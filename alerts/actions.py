"""Automated responses: a firing rule resumes the failed run or triggers a pipeline, at most N times per window.

The host provides an :class:`ActionHandler` (the daemon implements it with its
runner: it queues the run and returns its id at once). The evaluator decides
when to act, limits how often and records every action, refusal and failure
in the alert's history; the limit is counted from that history, so a restart
does not reset it.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from alerts.durations import format_duration
from alerts.metrics import ActionOutcome, AlertMetrics
from alerts.rules import Resume, Trigger
from alerts.state import Tracked
from alerts.store import AlertHistoryEntry, AlertStateStore, HistoryKind
from alerts.templates import Template

__all__ = ["ActionHandler", "ActionRunner"]

log = logging.getLogger("pipewarden.alerts")

_REMEMBERED = 10_000  # (alert, action, run) triples remembered, so one run is acted on once


@runtime_checkable
class ActionHandler(Protocol):
    """What the host does for an alert's automated responses; each returns the id of the run it started.

    Called on the evaluator's thread: return quickly (queue the run), raise to report a failure.
    """

    def resume(self, run_id: str) -> str: ...

    def trigger(self, pipeline: str, params: Mapping[str, str]) -> str: ...


class ActionRunner:
    """Runs a rule's actions for one alert: once per run, within the rule's limit, each outcome recorded."""

    def __init__(self, handler: ActionHandler, store: AlertStateStore, metrics: AlertMetrics) -> None:
        self.handler = handler
        self.store = store
        self.metrics = metrics
        self._done: collections.OrderedDict[tuple[str, int, str | None], None] = collections.OrderedDict()

    def run(self, t: Tracked, values: Mapping[str, Any], *, now: float) -> None:
        """Run every action of ``t``'s rule for the run ``t`` is about (each at most once per run)."""
        event = t.event
        for index, action in enumerate(t.rule.actions):
            key = (event.fingerprint, index, event.run_id)
            if key in self._done:
                continue
            self._done[key] = None
            if len(self._done) > _REMEMBERED:
                self._done.popitem(last=False)
            self._one(t, action, values, now)

    def _one(self, t: Tracked, action: Resume | Trigger, values: Mapping[str, Any], now: float) -> None:
        event = t.event
        used = self.store.count_alert_history(
            fingerprint=event.fingerprint,
            kind=HistoryKind.ACTION,
            name=action.name,
            outcome=ActionOutcome.STARTED,
            since=now - action.per,
        )
        if used >= action.max:
            self._record(
                t,
                action,
                ActionOutcome.LIMITED,
                now,
                f"{used} {action.name}(s) in the last {format_duration(action.per)}; the rule allows {action.max}",
            )
            return
        try:
            if isinstance(action, Resume):
                if not event.run_id:
                    raise LookupError("the alert is about no run, so there is none to resume")
                started = self.handler.resume(event.run_id)
            else:
                pipeline = Template(action.pipeline).render(values)
                started = self.handler.trigger(pipeline, dict(action.params))
        except Exception as exc:
            self._record(t, action, ActionOutcome.FAILED, now, f"{type(exc).__name__}: {exc}")
            log.warning("pipewarden alert %s: %s failed: %s", event.alert, action.name, exc)
            return
        self._record(t, action, ActionOutcome.STARTED, now, f"run {started}")
        log.info("pipewarden alert %s: %s started run %s", event.alert, action.name, started)

    def _record(self, t: Tracked, action: Resume | Trigger, outcome: ActionOutcome, now: float, detail: str) -> None:
        event = t.event
        self.metrics.action(event.alert, action.name, outcome)
        self.store.add_alert_history(
            AlertHistoryEntry(
                event.fingerprint,
                event.alert,
                HistoryKind.ACTION,
                now,
                name=action.name,
                outcome=outcome,
                detail=detail,
                run_id=event.run_id,
            )
        )
