"""Pipelines overview: are the pipelines succeeding, how fast, on how much data, and since when."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from dashboards.kit import bars, board, gauge_bars, label_variable, query, stat_panel, table_panel, timeseries

__all__ = ["UID", "build"]

UID = "pipewarden-pipelines"

P = 'pipeline=~"$pipeline"'
PT = 'pipeline=~"$pipeline", task=~"$task"'

RUNS = f"pipewarden_pipeline_runs_total{{{P}}}"
SUCCESS_RATE = (
    f'sum by (pipeline) (increase(pipewarden_pipeline_runs_total{{{P}, status="success"}}[$__range]))'
    f" / sum by (pipeline) (increase({RUNS}[$__range]))"
)
LAST_SUCCESS_AGE = f"time() - max by (pipeline) (pipewarden_pipeline_last_success_timestamp_seconds{{{P}}})"
UPTIME = f"avg by (pipeline) (avg_over_time(pipewarden_pipeline_up{{{P}}}[$__range]))"
MTTR = (
    f"sum by (pipeline) (increase(pipewarden_pipeline_recovery_seconds_sum{{{P}}}[$__range]))"
    f" / sum by (pipeline) (increase(pipewarden_pipeline_recovery_seconds_count{{{P}}}[$__range]))"
)
CHANGE_FAILURE_RATE = (
    f"(sum by (pipeline) (increase(pipewarden_pipeline_failed_changes_total{{{P}}}[$__range]))"
    f" / sum by (pipeline) (increase(pipewarden_pipeline_changes_total{{{P}}}[$__range])))"
    f" * on (pipeline) group_left (version) topk by (pipeline) (1, pipewarden_pipeline_version_info{{{P}}})"
)
# Over the attempts that ran (the duration histogram's count), as the README defines it: a task skipped
# (a branch not taken, a failure upstream) or cached did not run, and is neither a success nor an error.
TASK_SUCCESS_RATE = (
    f'sum by (pipeline, task) (increase(pipewarden_task_runs_total{{{PT}, status="success"}}[$__range]))'
    f" / sum by (pipeline, task) (increase(pipewarden_task_duration_seconds_count{{{PT}}}[$__range]))"
)
DAY = 86_400.0


def _latency(q: float) -> str:
    return (
        f"histogram_quantile({q}, sum by (le, pipeline, task) "
        f"(rate(pipewarden_task_duration_seconds_bucket{{{PT}}}[$__rate_interval])))"
    )


def build() -> Dashboard:
    """The dashboard, as a foundation-SDK builder."""
    b = board(
        UID,
        "pipewarden / Pipelines",
        "Success and error rates, latency, throughput, uptime, recovery "
        "and change failure rate of pipewarden pipelines and their tasks.",
        [
            label_variable("pipeline", "Pipeline", "pipewarden_pipeline_runs_total", "Pipelines that reported a run."),
            label_variable(
                "task", "Task", 'pipewarden_task_runs_total{pipeline=~"$pipeline"}', "Tasks of the selected pipelines."
            ),
        ],
    )
    b = b.with_row(Row("Pipelines at a glance"))
    b = b.with_panel(
        stat_panel(
            "Run success rate",
            "Which share of the selected pipelines' runs in the time range succeeded?",
            "percentunit",
            [
                query(
                    f'sum(increase(pipewarden_pipeline_runs_total{{{P}, status="success"}}[$__range]))'
                    f" / sum(increase({RUNS}[$__range]))",
                    "success rate",
                    instant=True,
                )
            ],
            steps=[(None, "red"), (0.95, "green")],
        )
    )
    b = b.with_panel(
        stat_panel(
            "Error rate",
            "Which share of the runs in the time range failed?",
            "percentunit",
            [
                query(
                    f'sum(increase(pipewarden_pipeline_runs_total{{{P}, status="failed"}}[$__range]))'
                    f" / sum(increase({RUNS}[$__range]))",
                    "error rate",
                    instant=True,
                )
            ],
            steps=[(None, "green"), (0.05, "red")],
        )
    )
    b = b.with_panel(
        stat_panel(
            "Pipelines failing now",
            "How many pipelines' last run that reached a verdict failed?",
            "none",
            [
                query(
                    f"count(max by (pipeline) (pipewarden_pipeline_up{{{P}}}) == 0) or vector(0)",
                    "failing",
                    instant=True,
                )
            ],
            steps=[(None, "green"), (1, "red")],
        )
    )
    b = b.with_panel(
        stat_panel(
            "Oldest last success",
            "How long ago did the pipeline that has waited longest last succeed?",
            "s",
            [query(f"max({LAST_SUCCESS_AGE})", "oldest", instant=True)],
            steps=[(None, "green"), (DAY, "red")],
        )
    )
    b = b.with_panel(
        table_panel(
            "Pipelines",
            "How is each pipeline doing over the time range: runs, success rate, time since its last "
            "success, uptime and mean time to recovery? Click a pipeline for its runs on the status page.",
            [
                query(f"sum by (pipeline) (increase({RUNS}[$__range]))", instant=True, table_format=True),
                query(SUCCESS_RATE, instant=True, table_format=True),
                query(LAST_SUCCESS_AGE, instant=True, table_format=True),
                query(UPTIME, instant=True, table_format=True),
                query(MTTR, instant=True, table_format=True),
            ],
            columns=[
                ("A", "Runs", "short"),
                ("B", "Success rate", "percentunit"),
                ("C", "Since last success", "s"),
                ("D", "Uptime", "percentunit"),
                ("E", "Mean time to recovery", "s"),
            ],
        )
    )

    b = b.with_row(Row("Runs"))
    b = b.with_panel(
        bars(
            "Runs by status",
            "How many runs ended, and how (success, failed, cancelled, interrupted)?",
            "short",
            [query(f"sum by (pipeline, status) (increase({RUNS}[$__rate_interval]))", "{{pipeline}} {{status}}")],
            link=True,
        )
    )
    b = b.with_panel(
        timeseries(
            "Last success age",
            "How long ago did each pipeline last succeed? Red above a day.",
            "s",
            [query(LAST_SUCCESS_AGE, "{{pipeline}}")],
            steps=[(None, "green"), (DAY, "red")],
            link=True,
        )
    )
    b = b.with_panel(
        timeseries(
            "Uptime",
            "Which share of the time range was each pipeline up (its last verdict a success)?",
            "percentunit",
            [query(UPTIME, "{{pipeline}}")],
            steps=[(None, "red"), (0.95, "orange"), (0.99, "green")],
            link=True,
            span=8,
            min_value=0,
        )
    )
    b = b.with_panel(
        gauge_bars(
            "Mean time to recovery",
            "From the end of a failed run to the end of the next successful one: how long "
            "did recoveries in the time range take on average?",
            "s",
            [query(MTTR, "{{pipeline}}", instant=True)],
            link=True,
            span=8,
        )
    )
    b = b.with_panel(
        gauge_bars(
            "Change failure rate by version",
            "Of the runs that were the first of a new pipeline version (git commit "
            "or source hash) in the time range, which share failed? Labelled with the version running now.",
            "percentunit",
            [query(CHANGE_FAILURE_RATE, "{{pipeline}} @ {{version}}", instant=True)],
            steps=[(None, "green"), (0.15, "orange"), (0.3, "red")],
            link=True,
            span=8,
            max_value=1,
        )
    )
    b = b.with_panel(
        timeseries(
            "Pipeline run duration p95",
            "How long do whole runs take (95th percentile)?",
            "s",
            [
                query(
                    "histogram_quantile(0.95, sum by (le, pipeline) "
                    f"(rate(pipewarden_pipeline_duration_seconds_bucket{{{P}}}[$__rate_interval])))",
                    "{{pipeline}}",
                )
            ],
            link=True,
            span=24,
        )
    )

    b = b.with_row(Row("Tasks"))
    b = b.with_panel(
        gauge_bars(
            "Task success rate",
            "Which share of each task's attempts that ran in the time range succeeded (skipped or cached did not run)?",
            "percentunit",
            [query(TASK_SUCCESS_RATE, "{{pipeline}}/{{task}}", instant=True)],
            steps=[(None, "red"), (0.95, "green")],
            link=True,
            max_value=1,
        )
    )
    b = b.with_panel(
        timeseries(
            "Task latency p50 / p95 / p99",
            "How long do task attempts take? Quantiles of the duration histogram.",
            "s",
            [
                query(_latency(0.5), "p50 {{pipeline}}/{{task}}"),
                query(_latency(0.95), "p95 {{pipeline}}/{{task}}"),
                query(_latency(0.99), "p99 {{pipeline}}/{{task}}"),
            ],
            link=True,
        )
    )
    b = b.with_panel(
        bars(
            "Retries",
            "How often did tasks retry a failed attempt?",
            "short",
            [
                query(
                    f"sum by (pipeline, task) (increase(pipewarden_task_retries_total{{{PT}}}[$__rate_interval]))",
                    "{{pipeline}}/{{task}}",
                )
            ],
            link=True,
        )
    )
    b = b.with_panel(
        timeseries(
            "Throughput",
            "How many rows per second do tasks return (out), and receive (in)?",
            "rowsps",
            [
                query(
                    f"sum by (pipeline, task) (rate(pipewarden_task_rows_out_total{{{PT}}}[$__rate_interval]))",
                    "out {{pipeline}}/{{task}}",
                ),
                query(
                    f"sum by (pipeline, task) (rate(pipewarden_task_rows_in_total{{{PT}}}[$__rate_interval]))",
                    "in {{pipeline}}/{{task}}",
                ),
            ],
            link=True,
            min_value=0,
        )
    )
    b = b.with_panel(
        timeseries(
            "CPU per task",
            "How much CPU do tasks use? CPU seconds per second: 100% is one core busy.",
            "percentunit",
            [
                query(
                    f"sum by (pipeline, task) (rate(pipewarden_task_cpu_seconds_total{{{PT}}}[$__rate_interval]))",
                    "{{pipeline}}/{{task}}",
                )
            ],
            link=True,
            min_value=0,
        )
    )
    b = b.with_panel(
        gauge_bars(
            "Peak memory per task",
            "How much resident memory did the process (or worker) hold at the end of each task's last attempt?",
            "bytes",
            [
                query(
                    f"max by (pipeline, task) (pipewarden_task_peak_memory_bytes{{{PT}}})",
                    "{{pipeline}}/{{task}}",
                    instant=True,
                )
            ],
            link=True,
        )
    )
    return b
