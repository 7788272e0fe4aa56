"""Alerts and the agent: what is firing, how fast people and rules respond, and the agent's own health."""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.models import dashboard as dash_m

from dashboards.kit import bars, board, label_variable, query, stat_panel, table_panel, timeseries

__all__ = ["UID", "build"]

UID = "pipewarden-alerts"

P = 'pipeline=~"$pipeline"'
J = 'job=~"$job"'


def _response(title: str, description: str, metric: str) -> stat.Panel:
    """Mean and 95th percentile of a response-time histogram over the time range."""
    mean = f"sum(increase({metric}_sum{{{P}}}[$__range])) / sum(increase({metric}_count{{{P}}}[$__range]))"
    p95 = f"histogram_quantile(0.95, sum by (le) (increase({metric}_bucket{{{P}}}[$__range])))"
    return stat_panel(title, description, "s", [query(mean, "mean", instant=True), query(p95, "p95", instant=True)])


def _state(ok: str, bad: str) -> dash_m.ValueMap:
    return dash_m.ValueMap(
        {
            "1": dash_m.ValueMappingResult(text=ok, color="green", index=0),
            "0": dash_m.ValueMappingResult(text=bad, color="red", index=1),
        }
    )


def build() -> Dashboard:
    """The dashboard, as a foundation-SDK builder."""
    b = board(
        UID,
        "pipewarden / Alerts and the agent",
        "Alerts firing, alert and incident response times, "
        "notifications, and the health of the pipewarden agents themselves.",
        [
            label_variable(
                "pipeline",
                "Pipeline",
                "pipewarden_alert_transitions_total",
                "Pipelines that had an alert (the alert panels only).",
            ),
            label_variable(
                "job",
                "Agent job",
                "pipewarden_agent_start_time_seconds",
                "Prometheus jobs that scrape long-lived pipewarden agents (the agent panels).",
            ),
        ],
    )
    b = b.with_row(Row("Alerts"))
    b = b.with_panel(
        stat_panel(
            "Alerts firing",
            "How many alerts are firing now?",
            "none",
            [query(f"sum(pipewarden_alerts_firing{{{P}}}) or vector(0)", "firing", instant=True)],
            steps=[(None, "green"), (1, "red")],
        )
    )
    b = b.with_panel(
        _response(
            "Alert response time",
            "From firing to resolved: how long did alerts that resolved in the time range "
            "fire (mean and 95th percentile)?",
            "pipewarden_alert_response_seconds",
        )
    )
    b = b.with_panel(
        _response(
            "Incident response time",
            "From firing to acknowledged by a person: how long did it take in the time "
            "range (mean and 95th percentile)?",
            "pipewarden_incident_response_seconds",
        )
    )
    b = b.with_panel(
        stat_panel(
            "Failed notifications",
            "How many notifications could not be delivered in the time range?",
            "none",
            [
                query(
                    'round(sum(increase(pipewarden_notifications_total{outcome="failed"}[$__range]))) or vector(0)',
                    "failed",
                    instant=True,
                )
            ],
            steps=[(None, "green"), (1, "red")],
        )
    )
    b = b.with_panel(
        table_panel(
            "Firing now",
            "Which alerts are firing, on which pipelines, at what severity? Click a pipeline for its runs.",
            [
                query(
                    f"sum by (alert, severity, pipeline) (pipewarden_alerts_firing{{{P}}}) > 0",
                    instant=True,
                    table_format=True,
                )
            ],
            columns=[("A", "Firing", "none")],
            span=12,
        )
    )
    b = b.with_panel(
        bars(
            "Alert transitions",
            "How many alerts went pending, fired and resolved?",
            "short",
            [
                query(
                    f"sum by (state) (increase(pipewarden_alert_transitions_total{{{P}}}[$__rate_interval]))",
                    "{{state}}",
                )
            ],
        )
    )
    b = b.with_panel(
        bars(
            "Notifications by receiver and outcome",
            "Did notifications reach their receivers (sent, failed, retried, throttled)?",
            "short",
            [
                query(
                    "sum by (receiver, outcome) (increase(pipewarden_notifications_total[$__rate_interval]))",
                    "{{receiver}} {{outcome}}",
                )
            ],
        )
    )
    b = b.with_panel(
        bars(
            "Automated responses",
            "What did alert rules do on their own (resume a run, trigger a pipeline), and did it work?",
            "short",
            [
                query(
                    "sum by (alert, action, outcome) (increase(pipewarden_alert_actions_total[$__rate_interval]))",
                    "{{alert}} {{action}} {{outcome}}",
                )
            ],
        )
    )

    b = b.with_row(Row("The agent"))
    b = b.with_panel(
        stat_panel(
            "Agent up",
            "Does Prometheus reach each agent's /metrics endpoint?",
            "none",
            [query(f"max by (job, instance) (up{{{J}}})", "{{instance}}", instant=True)],
            mappings=[_state("up", "down")],
            steps=[(None, "red"), (1, "green")],
        )
    )
    b = b.with_panel(
        stat_panel(
            "Agent uptime",
            "How long has each agent process been running?",
            "s",
            [
                query(
                    f"time() - max by (job, instance) (pipewarden_agent_start_time_seconds{{{J}}})",
                    "{{instance}}",
                    instant=True,
                )
            ],
        )
    )
    b = b.with_panel(
        stat_panel(
            "Configuration",
            "Did each daemon's last configuration load succeed? (Agents that never loaded a "
            "configuration file are left out.)",
            "none",
            [
                query(
                    f"max by (job, instance) (pipewarden_config_last_reload_successful{{{J}}}) and on (job, instance) "
                    f"pipewarden_config_last_reload_success_timestamp_seconds{{{J}}} > 0",
                    "{{instance}}",
                    instant=True,
                )
            ],
            mappings=[_state("loaded", "refused")],
            steps=[(None, "red"), (1, "green")],
        )
    )
    b = b.with_panel(
        stat_panel(
            "Since the last good configuration",
            "How long ago did each daemon last load its configuration successfully?",
            "s",
            [
                query(
                    "time() - max by (job, instance) "
                    f"(pipewarden_config_last_reload_success_timestamp_seconds{{{J}}} > 0)",
                    "{{instance}}",
                    instant=True,
                )
            ],
        )
    )
    b = b.with_panel(
        bars(
            "Export errors",
            "Which telemetry exports failed (Pushgateway, textfile, OTLP, ...)? The pipelines went on.",
            "short",
            [
                query(
                    "sum by (pipeline, exporter) (increase(pipewarden_export_errors_total[$__rate_interval]))",
                    "{{exporter}} {{pipeline}}",
                )
            ],
            span=8,
        )
    )
    b = b.with_panel(
        bars(
            "Listener errors",
            "Which run-event listeners raised, fell behind or stalled? The runs went on.",
            "short",
            [
                query(
                    "sum by (listener, reason) (increase(pipewarden_listener_errors_total[$__rate_interval]))",
                    "{{listener}} {{reason}}",
                )
            ],
            span=8,
        )
    )
    b = b.with_panel(
        timeseries(
            "API requests",
            "How many requests does the daemon's HTTP API and status page answer, by route and code?",
            "reqps",
            [
                query(
                    f"sum by (route, code) (rate(pipewarden_api_requests_total{{{J}}}[$__rate_interval]))",
                    "{{route}} {{code}}",
                )
            ],
            span=8,
            min_value=0,
        )
    )
    b = b.with_panel(
        bars(
            "Scheduled runs",
            "How many runs did the scheduler start, by trigger, and how many due ticks did its catch-up policy skip?",
            "short",
            [
                query(
                    "sum by (pipeline, trigger) (increase(pipewarden_scheduler_triggers_total[$__rate_interval]))",
                    "{{pipeline}} {{trigger}}",
                ),
                query(
                    "sum by (pipeline) (increase(pipewarden_scheduler_missed_runs_total[$__rate_interval]))",
                    "{{pipeline}} missed",
                ),
            ],
        )
    )
    b = b.with_panel(
        timeseries(
            "Schedule lateness p95",
            "How late does the daemon start due runs (95th percentile)?",
            "s",
            [
                query(
                    "histogram_quantile(0.95, sum by (le) "
                    f"(rate(pipewarden_scheduler_lateness_seconds_bucket{{{J}}}[$__rate_interval])))",
                    "p95",
                )
            ],
            min_value=0,
        )
    )
    return b
