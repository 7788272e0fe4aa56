"""The Prometheus side of the alerting sink: the catalogue's alert metrics, read back from the exposition text."""

from __future__ import annotations

from alert_support import T0, RecordingActions, run_ended
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from alerts.conditions import RunFailed
from alerts.evaluator import AlertEvaluator
from alerts.metrics import AlertMetrics
from alerts.receivers import LogReceiver
from alerts.rules import Resume, Rule
from exporters.alert_metrics import ALERT_METRICS, PrometheusAlertMetrics
from exporters.catalogue import by_name


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_it_is_an_alert_metrics_sink_built_from_the_catalogue() -> None:
    """The sink satisfies the protocol and exposes exactly the six catalogue alert metrics, with their help."""
    registry = CollectorRegistry()
    sink = PrometheusAlertMetrics(registry=registry)
    assert isinstance(sink, AlertMetrics)
    sink.firing("A", "warning", "orders", 1)
    sink.transition("A", "warning", "orders", "firing")
    sink.response("A", "warning", "orders", 1.0)
    sink.incident_response("A", "warning", "orders", 1.0)
    sink.notification("am", "sent")
    sink.action("A", "resume", "started")
    families = {
        f.name: f
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        if not f.name.endswith("_created")
    }  # the text format puts counters' _created apart
    expected = {by_name(n).base_name if by_name(n).type == "counter" else n for n in ALERT_METRICS}
    assert set(families) == expected
    assert families["pipewarden_alerts_firing"].documentation == by_name("pipewarden_alerts_firing").help


def test_an_evaluated_alert_moves_every_metric() -> None:
    """Fire, act, acknowledge, resolve: firing gauge, transitions, actions, notifications and both response times."""
    registry = CollectorRegistry()
    ev = AlertEvaluator(
        [Rule("Failed", RunFailed(), actions=(Resume(),))],
        receivers=[LogReceiver()],
        metrics=PrometheusAlertMetrics(registry=registry),
        actions=RecordingActions(),
    )
    ev.handle(run_ended("orders", "failed", run_id="r1", at=T0), now=T0)
    ev.ack(ev.alerts()[0].fingerprint, by="ann", now=T0 + 30)
    ev.handle(run_ended("orders", "success", run_id="r2", at=T0 + 90), now=T0 + 90)
    assert ev.flush(5)
    got = samples(registry)
    alert = (("alert", "Failed"), ("pipeline", "orders"), ("severity", "warning"))
    assert got[("pipewarden_alerts_firing", alert)] == 0.0
    for state in ("firing", "resolved"):
        key = tuple(sorted((*alert, ("state", state))))
        assert got[("pipewarden_alert_transitions_total", key)] == 1.0
    assert got[("pipewarden_alert_response_seconds_sum", alert)] == 90.0
    assert got[("pipewarden_incident_response_seconds_sum", alert)] == 30.0
    assert got[("pipewarden_incident_response_seconds_bucket", tuple(sorted((*alert, ("le", "30.0")))))] == 1.0
    assert got[("pipewarden_notifications_total", (("outcome", "sent"), ("receiver", "log")))] == 2.0
    assert (
        got[("pipewarden_alert_actions_total", (("action", "resume"), ("alert", "Failed"), ("outcome", "started")))]
        == 1.0
    )
    ev.stop(1)


class _Lookup:
    """Stands for exporters.metrics.Metrics: metrics by catalogue name, on one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.built = PrometheusAlertMetrics(registry=self.registry)

    def __getitem__(self, name: str) -> object:
        return self.built._m[name]


def test_it_uses_the_metrics_of_a_shared_catalogue_object() -> None:
    """Given metrics=, it updates those objects (the process's registry) instead of building its own."""
    shared = _Lookup()
    sink = PrometheusAlertMetrics(shared)
    sink.notification("slack", "throttled")
    assert sink.registry is shared.registry
    assert (
        shared.registry.get_sample_value(
            "pipewarden_notifications_total", {"receiver": "slack", "outcome": "throttled"}
        )
        == 1.0
    )
