"""Data quality: what the checks found, and the measures behind their verdicts."""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from dashboards.kit import bars, board, label_variable, query, stat_panel, table_panel, timeseries

__all__ = ["UID", "build"]

UID = "pipewarden-data-quality"

PD = 'pipeline=~"$pipeline", dataset=~"$dataset"'
RESULTS = f"pipewarden_check_results_total{{{PD}}}"
#: The volume check's default cut-off for its robust z-score (checks.volume, Iglewicz and Hoaglin).
MAX_Z = 3.5


def _gauge(metric: str, by: str) -> str:
    return f"max by ({by}) ({metric}{{{PD}}})"


def _results(title: str, description: str, status: str, legend: str, colour: str) -> stat.Panel:
    """How many check results with ``status`` (a label matcher) the time range had; ``colour`` from one up."""
    expr = f"round(sum(increase(pipewarden_check_results_total{{{PD}, {status}}}[$__range])))"
    return stat_panel(
        title,
        description,
        "none",
        [query(expr, legend, instant=True)],
        steps=[(None, "green"), (1, colour)],
        span=8,
    )


def build() -> Dashboard:
    """The dashboard, as a foundation-SDK builder."""
    b = board(
        UID,
        "pipewarden / Data quality",
        "Check results by kind and status, rows lost, duplicates, "
        "drift, nulls, freshness and volume of the datasets pipewarden checks.",
        [
            label_variable(
                "pipeline", "Pipeline", "pipewarden_check_results_total", "Pipelines whose checks reported a result."
            ),
            label_variable(
                "dataset",
                "Dataset",
                'pipewarden_check_results_total{pipeline=~"$pipeline"}',
                "Datasets (task outputs) of the selected pipelines.",
            ),
        ],
    )
    b = b.with_row(Row("Check results"))
    b = b.with_panel(
        stat_panel(
            "Check pass rate",
            "Which share of the check results in the time range passed?",
            "percentunit",
            [
                query(
                    f'sum(increase(pipewarden_check_results_total{{{PD}, status="pass"}}[$__range]))'
                    f" / sum(increase({RESULTS}[$__range]))",
                    "pass rate",
                    instant=True,
                )
            ],
            steps=[(None, "red"), (0.95, "green")],
            span=8,
        )
    )
    b = b.with_panel(
        _results(
            "Checks that failed",
            "How many check results in the time range failed or could not run (error)?",
            'status=~"fail|error"',
            "fail or error",
            "red",
        )
    )
    b = b.with_panel(
        _results(
            "Warnings",
            "How many check results in the time range were warnings (a violation of a warn-only check)?",
            'status="warn"',
            "warn",
            "orange",
        )
    )
    b = b.with_panel(
        bars(
            "Check results by kind and status",
            "What did the checks say over time, by kind (loss, duplication, "
            "drift, ...) and status (pass, warn, fail, error)?",
            "short",
            [query(f"sum by (kind, status) (increase({RESULTS}[$__rate_interval]))", "{{kind}} {{status}}")],
            span=24,
        )
    )
    b = b.with_panel(
        table_panel(
            "Checks that warned, failed or errored",
            "Which checks of which datasets did not pass in the time range, "
            "and how often? Click a pipeline for its runs on the status page.",
            [
                query(
                    f"sum by (pipeline, dataset, check, kind, status) (increase(pipewarden_check_results_total{{{PD}, "
                    f'status=~"warn|fail|error"}}[$__range])) > 0',
                    instant=True,
                    table_format=True,
                )
            ],
            columns=[("A", "Results", "none")],
        )
    )

    b = b.with_row(Row("What the checks measured"))
    b = b.with_panel(
        timeseries(
            "Rows lost and gained",
            "How many rows (or keys) did a step lose at the last loss check, and how many did it gain "
            "(a fan-out join)?",
            "short",
            [
                query(_gauge("pipewarden_dq_rows_lost", "pipeline, dataset, check"), "lost {{dataset}} ({{check}})"),
                query(
                    _gauge("pipewarden_dq_rows_gained", "pipeline, dataset, check"), "gained {{dataset}} ({{check}})"
                ),
            ],
            link=True,
            min_value=0,
        )
    )
    b = b.with_panel(
        timeseries(
            "Duplicates",
            "How many extra occurrences of a key (or of a whole row) did the last check find?",
            "short",
            [query(_gauge("pipewarden_dq_duplicates", "pipeline, dataset, check"), "{{dataset}} ({{check}})")],
            link=True,
            min_value=0,
        )
    )
    b = b.with_panel(
        timeseries(
            "Drift score per column and method",
            "How far has each column's distribution moved from its reference "
            "(the previous run, a window or an accepted baseline)? Each method has its own scale and limit.",
            "none",
            [
                query(
                    _gauge("pipewarden_dq_drift_score", "pipeline, dataset, column, method"),
                    "{{dataset}}.{{column}} {{method}}",
                )
            ],
            link=True,
            min_value=0,
        )
    )
    b = b.with_panel(
        timeseries(
            "Null fraction",
            "Which share of each checked column's values was null at the last check?",
            "percentunit",
            [query(_gauge("pipewarden_dq_null_fraction", "pipeline, dataset, column"), "{{dataset}}.{{column}}")],
            link=True,
            min_value=0,
        )
    )
    b = b.with_panel(
        timeseries(
            "Freshness lag",
            "How old was the newest timestamp in each checked column at the last check?",
            "s",
            [
                query(
                    _gauge("pipewarden_dq_freshness_lag_seconds", "pipeline, dataset, column"), "{{dataset}}.{{column}}"
                )
            ],
            link=True,
            min_value=0,
        )
    )
    b = b.with_panel(
        timeseries(
            "Volume against its history",
            "How many rows did each dataset have, against what its history predicted?",
            "short",
            [
                query(_gauge("pipewarden_dq_rows", "pipeline, dataset"), "rows {{dataset}}"),
                query(_gauge("pipewarden_dq_volume_expected_rows", "pipeline, dataset"), "expected {{dataset}}"),
            ],
            link=True,
            min_value=0,
        )
    )
    b = b.with_panel(
        timeseries(
            "Volume z-score",
            f"How unusual was the last row count (robust z-score against the history)? Beyond "
            f"±{MAX_Z} the volume check flags it.",
            "none",
            [query(_gauge("pipewarden_dq_volume_zscore", "pipeline, dataset"), "{{dataset}}")],
            steps=[(None, "red"), (-MAX_Z, "green"), (MAX_Z, "red")],
            link=True,
        )
    )
    b = b.with_panel(
        timeseries(
            "Check duration p95",
            "How long do checks take to evaluate, by kind (95th percentile)?",
            "s",
            [
                query(
                    "histogram_quantile(0.95, sum by (le, kind) (rate(pipewarden_check_duration_seconds_bucket"
                    '{pipeline=~"$pipeline"}[$__rate_interval])))',
                    "{{kind}}",
                )
            ],
        )
    )
    return b
