"""Where the evaluator and the receivers report what they did: a small sink, no metrics library.

:class:`AlertMetrics` is the protocol; ``exporters.alert_metrics.PrometheusAlertMetrics``
implements it on the catalogue's alert metrics (``pipewarden_alerts_firing``,
``pipewarden_alert_transitions_total``, ``pipewarden_alert_response_seconds``,
``pipewarden_incident_response_seconds``, ``pipewarden_notifications_total``,
``pipewarden_alert_actions_total``). :class:`NullAlertMetrics` is the default.
Labels are bounded: ``pipeline`` is ``""`` for an alert about no pipeline.
"""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

__all__ = ["ActionOutcome", "AlertMetrics", "NotificationOutcome", "NullAlertMetrics"]


class NotificationOutcome(enum.StrEnum):
    """What became of one notification to one receiver.

    ``retried``: an attempt failed and another follows; ``failed``: the last
    attempt failed (or the receiver refused it), it is given up; ``throttled``:
    the receiver's queue was full, so it was dropped without an attempt.
    """

    SENT = "sent"
    FAILED = "failed"
    RETRIED = "retried"
    THROTTLED = "throttled"


class ActionOutcome(enum.StrEnum):
    """What became of one automated response: ``limited`` means the rule's ``max`` per window was reached."""

    STARTED = "started"
    LIMITED = "limited"
    FAILED = "failed"


@runtime_checkable
class AlertMetrics(Protocol):
    """What the alerting parts report; every method must be cheap and must not raise."""

    def transition(self, alert: str, severity: str, pipeline: str, state: str) -> None:
        """An alert entered ``state`` (pending, firing, resolved)."""

    def firing(self, alert: str, severity: str, pipeline: str, count: int) -> None:
        """``count`` alerts of this rule, severity and pipeline are firing now."""

    def response(self, alert: str, severity: str, pipeline: str, seconds: float) -> None:
        """An alert resolved ``seconds`` after it started firing (alert response time)."""

    def incident_response(self, alert: str, severity: str, pipeline: str, seconds: float) -> None:
        """A person acknowledged an alert ``seconds`` after it started firing (incident response time)."""

    def notification(self, receiver: str, outcome: str) -> None:
        """One notification to ``receiver`` ended in ``outcome`` (see :class:`NotificationOutcome`)."""

    def action(self, alert: str, action: str, outcome: str) -> None:
        """An automated response (``resume``, ``trigger``) of rule ``alert`` ended in ``outcome``."""

    def declare(self, notifications: list[tuple[str, str]], actions: list[tuple[str, str, str]]) -> None:
        """Every (receiver, outcome) and (rule, action, outcome) there can be: their counters exist (at 0)
        from the start, so a rate over them counts their first outcome too."""


class NullAlertMetrics:
    """Reports nothing: the default when no metrics registry is wired in."""

    def transition(self, alert: str, severity: str, pipeline: str, state: str) -> None:
        pass

    def firing(self, alert: str, severity: str, pipeline: str, count: int) -> None:
        pass

    def response(self, alert: str, severity: str, pipeline: str, seconds: float) -> None:
        pass

    def incident_response(self, alert: str, severity: str, pipeline: str, seconds: float) -> None:
        pass

    def notification(self, receiver: str, outcome: str) -> None:
        pass

    def action(self, alert: str, action: str, outcome: str) -> None:
        pass

    def declare(self, notifications: list[tuple[str, str]], actions: list[tuple[str, str, str]]) -> None:
        pass
