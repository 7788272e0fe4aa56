"""Where facts leave the process: the metric catalogue, Prometheus outputs, OpenTelemetry traces, logs.

Submodules are imported on first use, so reading the catalogue does not start
(or import) any exporter.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "CATALOGUE",
    "Metrics",
    "MetricSpec",
    "PrometheusSettings",
    "build_tracer_provider",
    "configure_logging",
    "push",
    "serve_metrics",
    "write_textfile",
]

_WHERE = {
    "CATALOGUE": "exporters.catalogue",
    "MetricSpec": "exporters.catalogue",
    "Metrics": "exporters.metrics",
    "PrometheusSettings": "exporters.prometheus",
    "push": "exporters.prometheus",
    "serve_metrics": "exporters.prometheus",
    "write_textfile": "exporters.prometheus",
    "build_tracer_provider": "exporters.tracing",
    "configure_logging": "exporters.logs",
}

if TYPE_CHECKING:
    from exporters.catalogue import CATALOGUE, MetricSpec
    from exporters.logs import configure_logging
    from exporters.metrics import Metrics
    from exporters.prometheus import PrometheusSettings, push, serve_metrics, write_textfile
    from exporters.tracing import build_tracer_provider


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'exporters' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
