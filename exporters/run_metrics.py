"""From run events to metrics: the one place where facts become Prometheus samples.

:class:`RunMetrics` is an inline run-event listener (see :mod:`agent.events`):

>>> from agent.events import RunEnded, RunStarted
>>> >>> from exporters.metrics import Metrics
>>> listener = RunMetrics(Metrics())
>>> listener.handle(RunStarted("r1", "orders", 0.0))
>>> listener.handle(RunEnded("r1", "orders", RunStatus.SUCCESS, 0.0, 1.5, duration=1.5))
>>> listener.metrics.sample("pipewarden_pipeline_runs_total", pipeline="orders", status="success")
1.0
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from agent.events import ChecksEvaluated, RunEnded, TaskEnded
from exporters.metrics import Metrics

__all__ = ["CHECK_STATUSES", "DRIFT_MEASURES", "RunMetrics"]

log = logging.getLogger("pipewarden.exporters")

DRIFT_MEASURES = frozenset({"psi", "ks", "wasserstein", "js", "chi2"})
#: Every check's result counter is exported for all four statuses from its first result on,
#: so a failure rate divides by series that exist.
CHECK_STATUSES = ("pass", "warn", "fail", "error")
#: measure of a check result -> (gauge, which label follows dataset: the column, the check, or none).
_GAUGES: dict[str, tuple[str, str | None]] = {
    "row_count": ("pipewarden_dq_rows", None),
    "null_fraction": ("pipewarden_dq_null_fraction", "column"),
    "duplicates": ("pipewarden_dq_duplicates", "check"),
    "rows_lost": ("pipewarden_dq_rows_lost", "check"),
    "freshness_lag_seconds": ("pipewarden_dq_freshness_lag_seconds", "column"),
    "volume_zscore": ("pipewarden_dq_volume_zscore", None),
}


class RunMetrics:
    """Keeps the catalogue's run, task and check metrics current from run events.

    Inline and cheap: a task end is one cell lookup and one locked update.
    """

    name = "metrics"
    events = (TaskEnded, ChecksEvaluated, RunEnded)

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._tasks = metrics.tasks
        self._pipelines = metrics.pipelines
        self._children: dict[tuple[Any, ...], Any] = {}
        self._dispatch: dict[type, Callable[[Any], None]] = {
            TaskEnded: self._task_ended,
            ChecksEvaluated: self._checks,
            RunEnded: self._run_ended,
        }

    def handle(self, event: Any) -> None:
        self._dispatch[type(event)](event)

    @property
    def handlers(self) -> dict[type, Callable[[Any], None]]:
        """One handler per event type: the bus calls them directly."""
        return dict(self._dispatch)

    def child(self, name: str, *labels: Any) -> Any:
        """The labelled child of a catalogue metric, cached (``labels()`` hashes on every call)."""
        key = (name, *labels)
        c = self._children.get(key)
        if c is None:
            metric = self.metrics[name]
            c = self._children[key] = metric.labels(*(str(v) for v in labels)) if labels else metric
        return c

    # --- events -------------------------------------------------------------------------

    def _task_ended(self, e: TaskEnded) -> None:
        self._tasks.cell(e.pipeline, e.task).record(e)
        if e.pokes is not None:  # a sensor: its duration is its wait
            self.child("pipewarden_sensor_wait_seconds", e.pipeline, e.task).observe(e.duration)
            self.child("pipewarden_sensor_pokes_total", e.pipeline, e.task).inc(e.pokes)

    def _run_ended(self, e: RunEnded) -> None:
        self._pipelines.cell(e.pipeline).ended(e)

    def _checks(self, e: ChecksEvaluated) -> None:
        if e.results:
            self.child("pipewarden_check_duration_seconds", e.pipeline, e.results[0].kind).observe(e.seconds)
        self.record_results(e.pipeline, e.dataset, e.results)

    def record_results(self, pipeline: str, dataset: str, results: Iterable[Any]) -> None:
        """Counters by kind and status, and the observed-value gauges (see the catalogue)."""
        for r in results:
            ds = r.dataset or dataset
            first = ("pipewarden_check_results_total", pipeline, ds, r.check, r.kind, r.status) not in self._children
            if first:
                for status in CHECK_STATUSES:
                    self.child("pipewarden_check_results_total", pipeline, ds, r.check, r.kind, status)
            self.child("pipewarden_check_results_total", pipeline, ds, r.check, r.kind, r.status).inc()
            if r.observed is None or r.status == "error":
                continue
            self._gauge(pipeline, ds, r, float(r.observed))

    def _gauge(self, pipeline: str, dataset: str, r: Any, value: float) -> None:
        m = r.measure
        if m in DRIFT_MEASURES:
            if r.column is not None:
                self.child("pipewarden_dq_drift_score", pipeline, dataset, r.column, m).set(value)
            return
        target = _GAUGES.get(m)
        if target is None:
            return
        name, extra = target
        if extra == "column":
            if r.column is None:
                return
            self.child(name, pipeline, dataset, r.column).set(value)
        elif extra == "check":
            self.child(name, pipeline, dataset, r.check).set(value)
        else:
            self.child(name, pipeline, dataset).set(value)
        if m == "rows_lost":  # a loss check counts both ways: its gains are a gauge of their own
            gained = (r.details or {}).get("rows_gained")
            if isinstance(gained, int | float):
                self.child("pipewarden_dq_rows_gained", pipeline, dataset, r.check).set(float(gained))
        if m == "volume_zscore":
            expected = (r.details or {}).get("expected", (r.details or {}).get("median"))
            if isinstance(expected, int | float):
                self.child("pipewarden_dq_volume_expected_rows", pipeline, dataset).set(float(expected))

    # --- the agent's own failures ----------------------------------------------------------

    def export_error(self, pipeline: str, exporter: str, n: int = 1) -> None:
        self.child("pipewarden_export_errors_total", pipeline, exporter).inc(n)

    def listener_error(self, pipeline: str, listener: str, reason: str) -> None:
        self.child("pipewarden_listener_errors_total", pipeline, listener, reason).inc()
