"""The alerting sink (``alerts.metrics.AlertMetrics``) on the catalogue's alert metrics.

>>> from prometheus_client import CollectorRegistry
>>> registry = CollectorRegistry()
>>> sink = PrometheusAlertMetrics(registry=registry)
>>> sink.notification("ops-webhook", "sent")
>>> registry.get_sample_value("pipewarden_notifications_total", {"receiver": "ops-webhook", "outcome": "sent"})
1.0

Give it the process's ``exporters.metrics.Metrics`` (``metrics=``) so the
alert metrics are served with every other metric, or a registry of its own
(``registry=``): then only the six alert metrics are built on it, from their
catalogue specs. Names, labels, help and buckets come from the catalogue only.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from exporters.catalogue import by_name
from exporters.metrics import build_metric

__all__ = ["ALERT_METRICS", "PrometheusAlertMetrics"]

#: The catalogue metrics the alerting parts update.
ALERT_METRICS = (
    "pipewarden_alerts_firing",
    "pipewarden_alert_transitions_total",
    "pipewarden_alert_response_seconds",
    "pipewarden_incident_response_seconds",
    "pipewarden_notifications_total",
    "pipewarden_alert_actions_total",
)


class _Lookup(Protocol):
    def __getitem__(self, name: str) -> Any: ...


class PrometheusAlertMetrics:
    """Updates ``pipewarden_alerts_firing``, ``..._alert_transitions_total``, ``..._alert_response_seconds``,
    ``..._incident_response_seconds``, ``..._notifications_total`` and ``..._alert_actions_total``.

    Never raises: a metrics failure must not stop an alert (the same rule as every exporter).
    """

    def __init__(self, metrics: _Lookup | None = None, *, registry: CollectorRegistry | None = None) -> None:
        if metrics is not None and registry is not None:
            raise TypeError("give metrics= (an exporters.metrics.Metrics) or registry=, not both")
        self.registry: CollectorRegistry | None
        if metrics is None:
            self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
            built = {name: build_metric(by_name(name), self.registry) for name in ALERT_METRICS}
            self._m: dict[str, Any] = built
        else:
            self.registry = getattr(metrics, "registry", None)
            self._m = {name: metrics[name] for name in ALERT_METRICS}

    def transition(self, alert: str, severity: str, pipeline: str, state: str) -> None:
        with contextlib.suppress(Exception):
            if str(state) in ("pending", "firing"):
                # Every series this alert will move exists (at 0) before its first move, so increase()
                # counts its first resolution and acknowledgement too.
                for s in ("pending", "firing", "resolved"):
                    self._m["pipewarden_alert_transitions_total"].labels(alert, severity, pipeline, s)
                self._m["pipewarden_alert_response_seconds"].labels(alert, severity, pipeline)
                self._m["pipewarden_incident_response_seconds"].labels(alert, severity, pipeline)
            self._m["pipewarden_alert_transitions_total"].labels(alert, severity, pipeline, str(state)).inc()

    def firing(self, alert: str, severity: str, pipeline: str, count: int) -> None:
        with contextlib.suppress(Exception):
            self._m["pipewarden_alerts_firing"].labels(alert, severity, pipeline).set(count)

    def response(self, alert: str, severity: str, pipeline: str, seconds: float) -> None:
        with contextlib.suppress(Exception):
            self._m["pipewarden_alert_response_seconds"].labels(alert, severity, pipeline).observe(seconds)

    def incident_response(self, alert: str, severity: str, pipeline: str, seconds: float) -> None:
        with contextlib.suppress(Exception):
            self._m["pipewarden_incident_response_seconds"].labels(alert, severity, pipeline).observe(seconds)

    def notification(self, receiver: str, outcome: str) -> None:
        with contextlib.suppress(Exception):
            self._m["pipewarden_notifications_total"].labels(receiver, str(outcome)).inc()

    def action(self, alert: str, action: str, outcome: str) -> None:
        with contextlib.suppress(Exception):
            self._m["pipewarden_alert_actions_total"].labels(alert, action, str(outcome)).inc()

    def declare(self, notifications: list[tuple[str, str]], actions: list[tuple[str, str, str]]) -> None:
        with contextlib.suppress(Exception):
            for receiver, outcome in notifications:
                self._m["pipewarden_notifications_total"].labels(receiver, outcome)
            for alert, action, result in actions:
                self._m["pipewarden_alert_actions_total"].labels(alert, action, result)
