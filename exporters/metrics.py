"""The catalogue turned into live prometheus_client metrics on a registry you can pass in."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.metrics import MetricWrapperBase

from exporters.catalogue import CATALOGUE, MetricSpec, MetricType, by_name
from exporters.runs import RunCollector

__all__ = ["Metrics"]

#: Counter/histogram pairs that always move together: one collector each (see exporters.runs).
RUN_PAIRS = (
    ("pipewarden_task_runs_total", "pipewarden_task_duration_seconds"),
    ("pipewarden_pipeline_runs_total", "pipewarden_pipeline_duration_seconds"),
)


class Metrics:
    """Every catalogue metric, registered on one registry.

    >>> m = Metrics()
    >>> m["pipewarden_task_runs_total"].labels("orders", "load", "success").inc()
    >>> m.registry.get_sample_value(
    ...     "pipewarden_task_runs_total", {"pipeline": "orders", "task": "load", "status": "success"})
    1.0

    A fresh ``Metrics()`` gets a fresh registry, so tests never share state.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, Any] = {}
        self.run_collectors: dict[str, RunCollector] = {}
        for runs, duration in RUN_PAIRS:
            pair = RunCollector(by_name(runs), by_name(duration), self.registry)
            self._metrics[runs], self._metrics[duration] = pair.runs, pair.duration
            self.run_collectors[runs] = self.run_collectors[duration] = pair
        for spec in CATALOGUE:
            if spec.name not in self._metrics:
                self._metrics[spec.name] = _build(spec, self.registry)
        self["pipewarden_agent_start_time_seconds"].set(time.time())

    def __getitem__(self, name: str) -> Any:
        try:
            return self._metrics[name]
        except KeyError:
            raise KeyError(f"{name!r} is not in the pipewarden metric catalogue") from None

    def __contains__(self, name: object) -> bool:
        return name in self._metrics

    def sample(self, name: str, **labels: str) -> float | None:
        """The current value of one sample (``None`` if it has not been recorded)."""
        return self.registry.get_sample_value(name, labels)


def _build(spec: MetricSpec, registry: CollectorRegistry) -> MetricWrapperBase:
    kw: dict[str, Any] = {"registry": registry}
    if spec.type is MetricType.COUNTER:
        return Counter(spec.base_name, spec.help, spec.labels, **kw)
    if spec.type is MetricType.GAUGE:
        return Gauge(spec.base_name, spec.help, spec.labels, **kw)
    if spec.type is MetricType.HISTOGRAM:
        return Histogram(spec.base_name, spec.help, spec.labels, buckets=spec.buckets, **kw)
    labels = tuple(label for label in spec.labels if label not in spec.info_keys)
    return Info(spec.base_name, spec.help, labels, **kw)
