"""The catalogue turned into live metrics on a registry you can pass in."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.metrics import MetricWrapperBase

from exporters.catalogue import CATALOGUE, MetricSpec, MetricType
from exporters.cells import PipelineCollector, TaskCollector

__all__ = ["CELL_FAMILIES", "DAEMON_FAMILIES", "Metrics", "build_metric"]

#: Families kept in cells (``exporters.cells``): one lock per task or pipeline on the hot path.
CELL_FAMILIES: frozenset[str] = frozenset(
    m.name for m in CATALOGUE if m.name.startswith(("pipewarden_task_", "pipewarden_pipeline_"))
)
#: Families only the daemon has: a script or `pipewarden run` has no configuration to reload, no API and
#: no schedule loop, and a gauge without labels would read 0 ("reload failed") in every such process.
DAEMON_FAMILIES: frozenset[str] = frozenset(
    {
        "pipewarden_config_last_reload_successful",
        "pipewarden_config_last_reload_success_timestamp_seconds",
        "pipewarden_api_requests_total",
        "pipewarden_scheduler_lateness_seconds",
    }
)


class Metrics:
    """Every catalogue metric, registered on one registry.

    >>> m = Metrics()
    >>> m["pipewarden_check_results_total"].labels("orders", "clean", "unique", "duplication", "fail").inc()
    >>> m.sample("pipewarden_check_results_total", pipeline="orders", dataset="clean", check="unique",
    ...          kind="duplication", status="fail")
    1.0

    The task and pipeline families live in :attr:`tasks` and :attr:`pipelines`
    (cells); the others are prometheus_client objects, ``metrics[name]``.
    ``daemon=True`` adds the families only the daemon exports (:data:`DAEMON_FAMILIES`).
    A fresh ``Metrics()`` gets a fresh registry, so tests never share state.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, daemon: bool = False) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.tasks = TaskCollector(self.registry)
        self.pipelines = PipelineCollector(self.registry)
        self._metrics: dict[str, Any] = {}
        for spec in CATALOGUE:
            if spec.name not in CELL_FAMILIES and (daemon or spec.name not in DAEMON_FAMILIES):
                self._metrics[spec.name] = build_metric(spec, self.registry)
        self["pipewarden_agent_start_time_seconds"].set(time.time())

    def __getitem__(self, name: str) -> Any:
        try:
            return self._metrics[name]
        except KeyError:
            if name in CELL_FAMILIES:
                raise KeyError(f"{name!r} is kept in cells: use Metrics.tasks or Metrics.pipelines") from None
            if name in DAEMON_FAMILIES:
                raise KeyError(f"{name!r} is the daemon's: build Metrics(daemon=True)") from None
            raise KeyError(f"{name!r} is not in the pipewarden metric catalogue") from None

    def __contains__(self, name: object) -> bool:
        return name in self._metrics or name in CELL_FAMILIES

    def sample(self, name: str, **labels: str) -> float | None:
        """The current value of one sample (``None`` if it has not been recorded)."""
        return self.registry.get_sample_value(name, labels)


def build_metric(spec: MetricSpec, registry: CollectorRegistry) -> MetricWrapperBase:
    """The prometheus_client metric for ``spec`` (its name, help, labels and buckets), on ``registry``."""
    kw: dict[str, Any] = {"registry": registry}
    if spec.type is MetricType.COUNTER:
        return Counter(spec.base_name, spec.help, spec.labels, **kw)
    if spec.type is MetricType.GAUGE:
        return Gauge(spec.base_name, spec.help, spec.labels, **kw)
    if spec.type is MetricType.HISTOGRAM:
        return Histogram(spec.base_name, spec.help, spec.labels, buckets=spec.buckets, **kw)
    labels = tuple(label for label in spec.labels if label not in spec.info_keys)
    return Info(spec.base_name, spec.help, labels, **kw)
