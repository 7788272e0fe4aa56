"""Every metric pipewarden exports: name, type, labels, help, unit.

This module is the single source of truth. Dashboards and Prometheus rule
files may reference only these names (a test parses every PromQL expression
they hold), and ``docs/metrics.md`` is generated from it
(``python -m exporters.catalogue > docs/metrics.md``; a test keeps the two equal).

Names follow the Prometheus conventions: ``pipewarden_`` prefix, base units,
``_total`` on counters, ``_seconds`` / ``_bytes`` / ``_timestamp_seconds``.
Labels are bounded: pipeline, task, dataset, column, check, kind, status,
severity, method, exporter, trigger, alert, state, receiver, outcome, action, listener,
reason, route, code. Never run ids, row values or file names. The one exception is
``version`` on the ``_info`` metric, which holds one series per pipeline at a time (the
version currently deployed).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "CATALOGUE",
    "CHECK_BUCKETS",
    "DURATION_BUCKETS",
    "LATENCY_BUCKETS",
    "RECOVERY_BUCKETS",
    "TASK_BUCKETS",
    "MetricSpec",
    "MetricType",
    "by_name",
    "render_markdown",
]


class MetricType(enum.StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"
    INFO = "info"


#: Pipeline runs: from 5 ms to 4 hours; one histogram per pipeline, so it can be fine.
DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
)
#: Task attempts: one histogram per task, so few buckets keep a task at 15 series (docs/metrics.md).
TASK_BUCKETS: tuple[float, ...] = (0.1, 1.0, 10.0, 60.0, 600.0)
#: Time to recovery, alert and incident response: from a second to two days.
RECOVERY_BUCKETS: tuple[float, ...] = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    43200.0,
    86400.0,
    172800.0,
)
#: Checks are meant to be cheap: from 1 ms to 5 minutes.
CHECK_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0)
#: Schedule lateness and HTTP handling: from a millisecond to a minute.
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 60.0)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One exported metric. ``name`` is the exposition name (counters end in ``_total``)."""

    name: str
    type: MetricType
    labels: tuple[str, ...]
    help: str
    unit: str = ""
    buckets: tuple[float, ...] = ()
    kpi: str = ""
    #: For info metrics: the labels that carry the info itself (set together, one series per rest).
    info_keys: tuple[str, ...] = ()

    @property
    def base_name(self) -> str:
        """The name prometheus_client wants: counters without ``_total``, info without ``_info``."""
        if self.type is MetricType.COUNTER and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        if self.type is MetricType.INFO and self.name.endswith("_info"):
            return self.name[: -len("_info")]
        return self.name

    @property
    def series_names(self) -> tuple[str, ...]:
        """Every sample name this metric puts in the exposition (``_created`` series aside: prometheus_client
        adds them to some counters, pipewarden's outputs never rely on them)."""
        if self.type is MetricType.HISTOGRAM:
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


C, G, H, INFO = MetricType.COUNTER, MetricType.GAUGE, MetricType.HISTOGRAM, MetricType.INFO
PT = ("pipeline", "task")

CATALOGUE: tuple[MetricSpec, ...] = (
    # --- tasks (one per @monitor call or orchestrator task attempt): 15 series per task --------
    MetricSpec(
        "pipewarden_task_runs_total",
        C,
        (*PT, "status"),
        "Task attempts by final status (success, failed, timed_out, skipped, upstream_failed, "
        "cancelled, interrupted, cached); success and failed are exported from the first attempt on. "
        "A mapped task counts once (its items are in pipewarden_task_items_total); skipped and cached "
        "tasks did not run and are not in the duration histogram's count.",
        kpi="task success rate, error rate",
    ),
    MetricSpec(
        "pipewarden_task_duration_seconds",
        H,
        PT,
        "Wall-clock duration of a task attempt (any status; the status is on the run counter).",
        "seconds",
        TASK_BUCKETS,
        kpi="task latency, completion time",
    ),
    MetricSpec("pipewarden_task_retries_total", C, PT, "Task attempts that retried a failed attempt.", kpi="retries"),
    MetricSpec(
        "pipewarden_task_rows_in_total",
        C,
        PT,
        "Rows received by tasks (DataFrame, Series or Arrow table arguments).",
        kpi="throughput",
    ),
    MetricSpec("pipewarden_task_rows_out_total", C, PT, "Rows returned by tasks.", kpi="throughput"),
    MetricSpec(
        "pipewarden_task_cpu_seconds_total",
        C,
        PT,
        "CPU time (user + system) spent in task attempts.",
        "seconds",
        kpi="resource utilisation",
    ),
    MetricSpec(
        "pipewarden_task_items_total",
        C,
        (*PT, "status"),
        "Items of mapped tasks by final status (success, failed, timed_out, cancelled, cached); exported "
        "from a mapped task's first item on. Rows, CPU and retries of items count in the task's families.",
    ),
    MetricSpec(
        "pipewarden_task_peak_memory_bytes",
        G,
        PT,
        "Peak resident memory of the process (or worker) at the end of the task's last attempt.",
        "bytes",
        kpi="resource utilisation",
    ),
    MetricSpec(
        "pipewarden_cache_lookups_total",
        C,
        (*PT, "outcome"),
        "Looks for a cached output of a task with cache= (hit: reused, the task ended cached; miss: "
        "none, or expired; unkeyed: an argument has no fingerprint, the task ran uncached).",
    ),
    MetricSpec(
        "pipewarden_sensor_wait_seconds",
        H,
        PT,
        "How long a sensor waited for its condition, from its first poke to its end (ready, timed out, cancelled).",
        "seconds",
        RECOVERY_BUCKETS,
    ),
    MetricSpec(
        "pipewarden_sensor_pokes_total",
        C,
        PT,
        "Looks of sensors at their condition; a look that finds it false is not a failed attempt.",
    ),
    MetricSpec(
        "pipewarden_sensors_waiting",
        G,
        ("pipeline",),
        "Sensors waiting for their condition in this process now (they hold no worker).",
    ),
    # --- pipeline runs (orchestrator runs; an outermost @monitor call counts as one) -------
    MetricSpec(
        "pipewarden_pipeline_runs_total",
        C,
        ("pipeline", "status"),
        "Pipeline runs by final status (success, failed, cancelled, interrupted); success and "
        "failed are exported from the first run on.",
        kpi="pipeline success rate",
    ),
    MetricSpec(
        "pipewarden_pipeline_duration_seconds",
        H,
        ("pipeline",),
        "Wall-clock duration of a pipeline run (any status).",
        "seconds",
        DURATION_BUCKETS,
        kpi="pipeline completion time",
    ),
    MetricSpec(
        "pipewarden_pipeline_last_success_timestamp_seconds",
        G,
        ("pipeline",),
        "Unix time of the pipeline's last successful run.",
        "seconds",
        kpi="uptime / last success age",
    ),
    MetricSpec(
        "pipewarden_pipeline_last_failure_timestamp_seconds",
        G,
        ("pipeline",),
        "Unix time of the pipeline's last failed run.",
        "seconds",
    ),
    MetricSpec(
        "pipewarden_pipeline_up",
        G,
        ("pipeline",),
        "1 when the pipeline's last run that reached a verdict succeeded, 0 when it failed; "
        "avg_over_time gives uptime.",
        kpi="uptime",
    ),
    MetricSpec(
        "pipewarden_pipeline_recovery_seconds",
        H,
        ("pipeline",),
        "Time from the end of the first failed run to the end of the next successful run.",
        "seconds",
        RECOVERY_BUCKETS,
        kpi="time to recovery",
    ),
    MetricSpec(
        "pipewarden_pipeline_changes_total",
        C,
        ("pipeline",),
        "Runs that were the first verdict of a new pipeline version (git commit or source hash); "
        "cancelled runs are not changes.",
        kpi="change failure rate",
    ),
    MetricSpec(
        "pipewarden_pipeline_failed_changes_total",
        C,
        ("pipeline",),
        "Changes (see pipewarden_pipeline_changes_total) whose run failed.",
        kpi="change failure rate",
    ),
    MetricSpec(
        "pipewarden_pipeline_active_runs", G, ("pipeline",), "Pipeline runs currently in progress in this process."
    ),
    MetricSpec(
        "pipewarden_pipeline_version_info",
        INFO,
        ("pipeline", "version"),
        "The version of the pipeline that ran last (git commit or source hash).",
        info_keys=("version",),
    ),
    # --- data quality -------------------------------------------------------------------
    MetricSpec(
        "pipewarden_check_results_total",
        C,
        ("pipeline", "dataset", "check", "kind", "status"),
        "Data-quality check results by kind and status (pass, warn, fail, error); all four are "
        "exported from a check's first result on.",
        kpi="data-quality results",
    ),
    MetricSpec(
        "pipewarden_check_duration_seconds",
        H,
        ("pipeline", "kind"),
        "Time spent evaluating one check.",
        "seconds",
        CHECK_BUCKETS,
    ),
    MetricSpec(
        "pipewarden_dq_rows", G, ("pipeline", "dataset"), "Rows in the dataset at its last check.", kpi="volume"
    ),
    MetricSpec(
        "pipewarden_dq_volume_zscore",
        G,
        ("pipeline", "dataset"),
        "How far the dataset's row count was from its history at the last volume check (robust z-score).",
        kpi="volume",
    ),
    MetricSpec(
        "pipewarden_dq_volume_expected_rows",
        G,
        ("pipeline", "dataset"),
        "The row count the volume check expected from the dataset's history.",
        kpi="volume",
    ),
    MetricSpec(
        "pipewarden_dq_null_fraction",
        G,
        ("pipeline", "dataset", "column"),
        "Fraction of null values in a column at its last check.",
        "ratio",
        kpi="completeness",
    ),
    MetricSpec(
        "pipewarden_dq_duplicates",
        G,
        ("pipeline", "dataset", "check"),
        "Duplicate rows (extra occurrences of a key or of a full row) at the last check.",
        kpi="duplication",
    ),
    MetricSpec(
        "pipewarden_dq_rows_lost",
        G,
        ("pipeline", "dataset", "check"),
        "Rows or keys lost across a step or against a source at the last check.",
        kpi="loss",
    ),
    MetricSpec(
        "pipewarden_dq_rows_gained",
        G,
        ("pipeline", "dataset", "check"),
        "Rows or keys gained across a step (a fan-out join) at the last check.",
        kpi="loss",
    ),
    MetricSpec(
        "pipewarden_dq_drift_score",
        G,
        ("pipeline", "dataset", "column", "method"),
        "Drift score of a column against its reference (psi, ks, wasserstein, js, chi2).",
        kpi="drift",
    ),
    MetricSpec(
        "pipewarden_dq_freshness_lag_seconds",
        G,
        ("pipeline", "dataset", "column"),
        "Age of the newest timestamp in a column at the last check.",
        "seconds",
        kpi="freshness lag",
    ),
    # --- scheduling ----------------------------------------------------------------------
    MetricSpec(
        "pipewarden_scheduler_triggers_total",
        C,
        ("pipeline", "trigger"),
        "Runs started by the scheduler, by trigger (cron, interval, file, after, manual, backfill, alert).",
    ),
    MetricSpec(
        "pipewarden_scheduler_missed_runs_total", C, ("pipeline",), "Schedule ticks skipped by the catch-up policy."
    ),
    MetricSpec(
        "pipewarden_scheduler_lateness_seconds",
        H,
        (),
        "How late the daemon started a due run after its scheduled time.",
        "seconds",
        LATENCY_BUCKETS,
    ),
    # --- alerts ----------------------------------------------------------------------------
    MetricSpec(
        "pipewarden_alerts_firing",
        G,
        ("alert", "severity", "pipeline"),
        "Alerts currently firing.",
        kpi="alerts firing",
    ),
    MetricSpec(
        "pipewarden_alert_transitions_total",
        C,
        ("alert", "severity", "pipeline", "state"),
        "Alert state changes (pending, firing, resolved).",
    ),
    MetricSpec(
        "pipewarden_alert_response_seconds",
        H,
        ("alert", "severity", "pipeline"),
        "Time from an alert firing to its resolution.",
        "seconds",
        RECOVERY_BUCKETS,
        kpi="alert response time",
    ),
    MetricSpec(
        "pipewarden_incident_response_seconds",
        H,
        ("alert", "severity", "pipeline"),
        "Time from an alert firing to its acknowledgement by a person.",
        "seconds",
        RECOVERY_BUCKETS,
        kpi="incident response time",
    ),
    MetricSpec(
        "pipewarden_notifications_total",
        C,
        ("receiver", "outcome"),
        "Notifications by receiver and outcome (sent, failed, retried, throttled).",
    ),
    MetricSpec(
        "pipewarden_alert_actions_total",
        C,
        ("alert", "action", "outcome"),
        "Automated responses of alert rules (resume, trigger) by outcome (started, limited, failed).",
    ),
    # --- the agent itself -----------------------------------------------------------------
    MetricSpec(
        "pipewarden_export_errors_total",
        C,
        ("pipeline", "exporter"),
        "Telemetry exports that failed (pushgateway, textfile, otlp, jsonl, ...); the pipeline went on. "
        "pipeline is empty for failures no pipeline caused.",
    ),
    MetricSpec(
        "pipewarden_listener_errors_total",
        C,
        ("pipeline", "listener", "reason"),
        "Run-event listeners that raised, fell behind (dropped) or did not finish in time (stalled); the run went on.",
    ),
    MetricSpec(
        "pipewarden_config_last_reload_successful",
        G,
        (),
        "1 when the daemon's last configuration load succeeded, 0 when the new file was refused.",
    ),
    MetricSpec(
        "pipewarden_config_last_reload_success_timestamp_seconds",
        G,
        (),
        "Unix time of the daemon's last successful configuration load.",
        "seconds",
    ),
    MetricSpec(
        "pipewarden_api_requests_total",
        C,
        ("route", "code"),
        "Requests to the daemon's HTTP API and status page by route and response code (401: a missing or bad token).",
    ),
    MetricSpec(
        "pipewarden_agent_start_time_seconds",
        G,
        (),
        "Unix time the agent process started; time() minus it is the agent's uptime.",
        "seconds",
        kpi="agent uptime",
    ),
)

_BY_NAME = {m.name: m for m in CATALOGUE}


def by_name(name: str) -> MetricSpec:
    """The spec of an exposition name; raises KeyError naming the known metrics."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not in the pipewarden metric catalogue") from None


def render_markdown() -> str:
    """The metric reference page, ``docs/metrics.md``."""
    lines = [
        "# Metric catalogue",
        "",
        "Generated from `exporters/catalogue.py` by `python -m exporters.catalogue > docs/metrics.md`;",
        "a test keeps this page equal to the code.",
        "",
        "## How many series",
        "",
        "Labels are bounded (pipeline, task, dataset, column, check, ...), never run ids or values.",
        "A task exports 15 series: `pipewarden_task_runs_total` for `success` and `failed` (both from",
        "the first attempt on; another status adds one series the first time it happens), the duration",
        f"histogram without a status label ({len(TASK_BUCKETS)} buckets, `+Inf`, `_sum`, `_count`), and one",
        "series each for retries, rows in, rows out, CPU seconds and peak memory. A 1,000-task pipeline",
        "exposes about 15,000 task series. The pipeline-run histogram has finer buckets (one per",
        "pipeline). `_created` series are not part of the contract (the task and pipeline families have",
        "none). A mapped task adds `pipewarden_task_items_total` (its items by status, `success` and",
        "`failed` from its first item on); a sensor adds its wait histogram",
        f"({len(RECOVERY_BUCKETS)} buckets) and its pokes; a cached task its cache lookups by outcome.",
        "",
        "## What short-lived processes send",
        "",
        "A scrape endpoint serves what its process counted since it started. A process that lives for",
        "one run (a cron job) pushes to the Pushgateway, or writes a node_exporter textfile, the",
        "pipeline's cumulative totals kept in the run store: each run adds what it counted, so",
        "`rate()` and `increase()` work across runs, and every series of the pipeline is in every",
        "push (a push replaces the pipeline's group; nothing is left stale or erased).",
        "",
        "## Metrics",
        "",
        "| metric | type | labels | unit | KPI | help |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for m in CATALOGUE:
        labels = ", ".join(m.labels) or "-"
        lines.append(f"| `{m.name}` | {m.type} | {labels} | {m.unit or '-'} | {m.kpi or '-'} | {m.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
