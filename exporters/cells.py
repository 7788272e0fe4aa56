"""The metrics of one task or one pipeline, kept together in one cell under one lock.

Every finished task attempt moves seven series at once (the run counter by
status, the duration histogram, retries, rows in and out, CPU, peak memory).
As prometheus_client objects that is seven locked updates and seven label
lookups on the hot path of every monitored call; here it is one lookup and one
lock. The collectors expose the cells as the catalogue declares them
(``exporters/catalogue.py``), without ``_created`` series, and with the status
series the KPIs divide by (``success``, ``failed``) present from the first run.

>>> from prometheus_client import CollectorRegistry
>>> reg = CollectorRegistry()
>>> tasks = TaskCollector(reg)
>>> from agent.events import TaskEnded
>>> tasks.cell("orders", "load").record(TaskEnded("r1", "orders", "load", 1, "success", 0.0, 0.2, 0.2))
>>> reg.get_sample_value("pipewarden_task_runs_total", {"pipeline": "orders", "task": "load", "status": "failed"})
0.0
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporters.catalogue import MetricSpec, by_name

__all__ = [
    "ALWAYS_EXPORTED",
    "PIPELINE_STATUSES",
    "Histogram",
    "PipelineCell",
    "PipelineCollector",
    "TaskCell",
    "TaskCollector",
]

#: Task statuses exported at 0 before they first happen (rates over attempts divide by the duration
#: histogram's count, which is always there; these are the ones people select).
ALWAYS_EXPORTED: tuple[str, ...] = ("success", "failed")
#: Every end state of a pipeline run, exported at 0 from the first run: the success rate divides by
#: the verdicts (success, failed, interrupted) and nothing may appear mid-window.
PIPELINE_STATUSES: tuple[str, ...] = ("success", "failed", "cancelled", "interrupted")


class Histogram:
    """Bucket counts, sum and count of one label set (not thread-safe: its cell holds the lock)."""

    __slots__ = ("bounds", "buckets", "count", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        out, acc = [], 0
        for edge, n in zip((*(_fmt(b) for b in self.bounds), "+Inf"), self.buckets, strict=True):
            acc += n
            out.append((edge, float(acc)))
        return out


class TaskCell:
    """Everything exported about one (pipeline, task)."""

    __slots__ = ("cpu", "duration", "items", "lock", "peak", "retries", "rows_in", "rows_out", "runs")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, float] = dict.fromkeys(ALWAYS_EXPORTED, 0.0)
        self.duration = Histogram(bounds)
        self.retries = 0.0
        self.rows_in = 0.0
        self.rows_out = 0.0
        self.cpu = 0.0
        self.peak: float | None = None
        self.items: dict[str, float] | None = None  # a mapped task's items by status

    def record(self, e: Any) -> None:
        """One finished attempt, a :class:`~agent.events.TaskEnded` (attempt 0: it ended without running;
        ``item`` set: one item of a mapped task, counted by status apart from the task's own end)."""
        status = e.status
        with self.lock:
            if e.item is not None:
                items = self.items
                if items is None:
                    items = self.items = dict.fromkeys(ALWAYS_EXPORTED, 0.0)
                items[status] = items.get(status, 0.0) + 1
            else:
                runs = self.runs
                runs[status] = runs.get(status, 0.0) + 1
                if e.attempt:
                    self.duration.observe(e.duration)
            if e.rows_in:
                self.rows_in += e.rows_in
            if e.rows_out:
                self.rows_out += e.rows_out
            if e.cpu_seconds > 0:
                self.cpu += e.cpu_seconds
            if e.peak_memory_bytes is not None:
                self.peak = e.peak_memory_bytes
            if e.retry:
                self.retries += 1


class PipelineCell:
    """Everything exported about one pipeline's runs (``active`` is set by the daemon, which owns run slots)."""

    __slots__ = (
        "active",
        "changes",
        "duration",
        "failed_changes",
        "last_failure",
        "last_success",
        "lock",
        "recovery",
        "runs",
        "up",
        "version",
    )

    def __init__(self, bounds: Sequence[float], recovery_bounds: Sequence[float]) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, float] = dict.fromkeys(PIPELINE_STATUSES, 0.0)
        self.duration = Histogram(bounds)
        self.recovery = Histogram(recovery_bounds)
        self.changes = 0.0
        self.failed_changes = 0.0
        self.active = 0
        self.last_success: float | None = None
        self.last_failure: float | None = None
        self.up: float | None = None
        self.version: str | None = None

    def ended(self, e: Any) -> None:
        """One finished run, a :class:`~agent.events.RunEnded`; one that reached no verdict (cancelled)
        leaves up, changes and recovery alone."""
        o = e.outcome
        status = e.status
        with self.lock:
            runs = self.runs
            runs[status] = runs.get(status, 0.0) + 1
            self.duration.observe(e.duration)
            if e.version:
                self.version = e.version
            if not o.counted:
                return
            if status == "success":
                self.last_success = e.ended_at
                self.up = 1.0
            else:
                self.last_failure = e.ended_at
                self.up = 0.0
            if o.recovery_seconds is not None:
                self.recovery.observe(o.recovery_seconds)
            if o.change:
                self.changes += 1
                if o.failed_change:
                    self.failed_changes += 1


class TaskCollector(Collector):
    """The task families of the catalogue, from one cell per (pipeline, task)."""

    def __init__(self, registry: Any = None) -> None:
        self._spec = {
            n: by_name(n)
            for n in (
                "pipewarden_task_runs_total",
                "pipewarden_task_duration_seconds",
                "pipewarden_task_retries_total",
                "pipewarden_task_rows_in_total",
                "pipewarden_task_rows_out_total",
                "pipewarden_task_cpu_seconds_total",
                "pipewarden_task_peak_memory_bytes",
                "pipewarden_task_items_total",
            )
        }
        self._bounds = tuple(self._spec["pipewarden_task_duration_seconds"].buckets)
        self._cells: dict[tuple[str, str], TaskCell] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def cell(self, pipeline: str, task: str) -> TaskCell:
        key = (pipeline, task)
        c = self._cells.get(key)
        if c is None:
            with self._lock:
                c = self._cells.setdefault(key, TaskCell(self._bounds))
        return c

    def describe(self) -> Iterable[Metric]:
        return self._families([])

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            items = list(self._cells.items())
        return self._families(items)

    def _families(self, items: list[tuple[tuple[str, str], TaskCell]]) -> list[Metric]:
        s = self._spec
        runs = _counter(s["pipewarden_task_runs_total"])
        duration = HistogramMetricFamily(
            s["pipewarden_task_duration_seconds"].name,
            s["pipewarden_task_duration_seconds"].help,
            labels=("pipeline", "task"),
        )
        retries = _counter(s["pipewarden_task_retries_total"])
        rows_in = _counter(s["pipewarden_task_rows_in_total"])
        rows_out = _counter(s["pipewarden_task_rows_out_total"])
        cpu = _counter(s["pipewarden_task_cpu_seconds_total"])
        peak = _gauge(s["pipewarden_task_peak_memory_bytes"])
        mapped = _counter(s["pipewarden_task_items_total"])
        for (pipeline, task), c in items:
            key = [pipeline, task]
            with c.lock:
                for status, n in c.runs.items():
                    runs.add_metric([pipeline, task, status], n)
                duration.add_metric(key, c.duration.cumulative(), c.duration.sum)
                retries.add_metric(key, c.retries)
                rows_in.add_metric(key, c.rows_in)
                rows_out.add_metric(key, c.rows_out)
                cpu.add_metric(key, c.cpu)
                if c.peak is not None:
                    peak.add_metric(key, c.peak)
                if c.items is not None:
                    for status, n in c.items.items():
                        mapped.add_metric([pipeline, task, status], n)
        return [runs, duration, retries, rows_in, rows_out, cpu, peak, mapped]


class PipelineCollector(Collector):
    """The pipeline-run families of the catalogue, from one cell per pipeline."""

    def __init__(self, registry: Any = None) -> None:
        self._spec = {
            m: by_name(m)
            for m in (
                "pipewarden_pipeline_runs_total",
                "pipewarden_pipeline_duration_seconds",
                "pipewarden_pipeline_last_success_timestamp_seconds",
                "pipewarden_pipeline_last_failure_timestamp_seconds",
                "pipewarden_pipeline_up",
                "pipewarden_pipeline_recovery_seconds",
                "pipewarden_pipeline_changes_total",
                "pipewarden_pipeline_failed_changes_total",
                "pipewarden_pipeline_active_runs",
                "pipewarden_pipeline_version_info",
            )
        }
        self._bounds = tuple(self._spec["pipewarden_pipeline_duration_seconds"].buckets)
        self._recovery_bounds = tuple(self._spec["pipewarden_pipeline_recovery_seconds"].buckets)
        self._cells: dict[str, PipelineCell] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def cell(self, pipeline: str) -> PipelineCell:
        c = self._cells.get(pipeline)
        if c is None:
            with self._lock:
                c = self._cells.setdefault(pipeline, PipelineCell(self._bounds, self._recovery_bounds))
        return c

    def describe(self) -> Iterable[Metric]:
        return self._families([])

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            items = list(self._cells.items())
        return self._families(items)

    def _families(self, items: list[tuple[str, PipelineCell]]) -> list[Metric]:
        s = self._spec
        runs = _counter(s["pipewarden_pipeline_runs_total"])
        duration = _histogram(s["pipewarden_pipeline_duration_seconds"])
        last_success = _gauge(s["pipewarden_pipeline_last_success_timestamp_seconds"])
        last_failure = _gauge(s["pipewarden_pipeline_last_failure_timestamp_seconds"])
        up = _gauge(s["pipewarden_pipeline_up"])
        recovery = _histogram(s["pipewarden_pipeline_recovery_seconds"])
        changes = _counter(s["pipewarden_pipeline_changes_total"])
        failed_changes = _counter(s["pipewarden_pipeline_failed_changes_total"])
        active = _gauge(s["pipewarden_pipeline_active_runs"])
        version = InfoMetricFamily(
            s["pipewarden_pipeline_version_info"].base_name,
            s["pipewarden_pipeline_version_info"].help,
            labels=("pipeline",),
        )
        for pipeline, c in items:
            key = [pipeline]
            with c.lock:
                for status, n in c.runs.items():
                    runs.add_metric([pipeline, status], n)
                duration.add_metric(key, c.duration.cumulative(), c.duration.sum)
                recovery.add_metric(key, c.recovery.cumulative(), c.recovery.sum)
                changes.add_metric(key, c.changes)
                failed_changes.add_metric(key, c.failed_changes)
                active.add_metric(key, c.active)
                for fam, value in ((last_success, c.last_success), (last_failure, c.last_failure), (up, c.up)):
                    if value is not None:
                        fam.add_metric(key, value)
                if c.version:
                    version.add_metric(key, {"version": c.version})
        return [runs, duration, last_success, last_failure, up, recovery, changes, failed_changes, active, version]


def _counter(spec: MetricSpec) -> CounterMetricFamily:
    return CounterMetricFamily(spec.base_name, spec.help, labels=spec.labels)


def _gauge(spec: MetricSpec) -> GaugeMetricFamily:
    return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)


def _histogram(spec: MetricSpec) -> HistogramMetricFamily:
    return HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)


def _fmt(bound: float) -> str:
    # prometheus_client's own formatting of bucket bounds ("0.005", "1.0", "+Inf").
    return "+Inf" if math.isinf(bound) else repr(float(bound))
