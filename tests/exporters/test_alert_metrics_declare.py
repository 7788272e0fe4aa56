"""The alert metrics exist at zero before their first event, so a rate over them counts the first one too."""

from __future__ import annotations

from agent.events import RunEnded
from agent.records import RunStatus
from alerts.config import evaluator_from_config
from exporters.alert_metrics import PrometheusAlertMetrics
from exporters.metrics import Metrics


def test_receivers_actions_and_a_firing_alerts_series_start_at_zero() -> None:
    """Receivers and rule actions are declared at 0; a firing alert's response series exist before it resolves."""
    m = Metrics()
    evaluator = evaluator_from_config(
        {
            "rules": [
                {
                    "name": "Failed",
                    "condition": {"kind": "run_failed"},
                    "for": "0s",
                    "actions": [{"kind": "resume", "max": 1, "per": "1h"}],
                }
            ],
            "receivers": [{"name": "log", "kind": "log"}],
        },
        metrics=PrometheusAlertMetrics(m),
        tick_interval=None,
    )
    assert m.sample("pipewarden_notifications_total", receiver="log", outcome="failed") == 0
    assert m.sample("pipewarden_alert_actions_total", alert="Failed", action="resume", outcome="started") == 0
    evaluator.handle(RunEnded("r1", "orders", RunStatus.FAILED, 0.0, 1.0), now=1.0)
    labels = {"alert": "Failed", "severity": "warning", "pipeline": "orders"}
    assert m.sample("pipewarden_alert_transitions_total", **labels, state="firing") == 1
    assert m.sample("pipewarden_alert_transitions_total", **labels, state="resolved") == 0
    assert m.sample("pipewarden_alert_response_seconds_count", **labels) == 0
    assert m.sample("pipewarden_incident_response_seconds_count", **labels) == 0
    evaluator.stop(5)
