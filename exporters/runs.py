"""Run counters and duration histograms that move together, kept in one set of cells.

Every finished run increments ``..._runs_total{status}`` and observes
``..._duration_seconds{status}``. With two prometheus_client objects that is
two locked updates (three with the histogram's sum) on the hot path of every
monitored call; here one lock covers both. The exposition is exactly what a
Counter and a Histogram of the same names would produce.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from exporters.catalogue import MetricSpec

__all__ = ["RunCell", "RunCollector"]


class RunCell:
    """One label set: a run count and a duration distribution."""

    __slots__ = ("_bounds", "_lock", "buckets", "count", "created", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = bounds
        self._lock = threading.Lock()
        self.count = 0.0
        self.sum = 0.0
        self.buckets = [0] * (len(bounds) + 1)
        self.created = time.time()

    def record(self, seconds: float) -> None:
        """A finished run that took ``seconds``: counts it and observes its duration."""
        i = bisect.bisect_left(self._bounds, seconds)
        with self._lock:
            self.count += 1
            self.sum += seconds
            self.buckets[i] += 1

    # The prometheus_client-style halves, for callers that record one without the other.
    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"counters only go up: inc({amount})")
        with self._lock:
            self.count += amount

    def observe(self, seconds: float) -> None:
        i = bisect.bisect_left(self._bounds, seconds)
        with self._lock:
            self.sum += seconds
            self.buckets[i] += 1

    def snapshot(self) -> tuple[float, float, list[int], float]:
        with self._lock:
            return self.count, self.sum, list(self.buckets), self.created


class _Half:
    """``metrics[name]`` for one of the two names: ``.labels(...)`` gives the shared cell."""

    def __init__(self, owner: RunCollector) -> None:
        self._owner = owner

    def labels(self, *values: Any, **kw: Any) -> RunCell:
        if kw:
            values = tuple(kw[name] for name in self._owner.labelnames)
        return self._owner.cell(*values)


class RunCollector(Collector):
    """The pair ``runs`` (counter) and ``duration`` (histogram) with the same labels.

    >>> from prometheus_client import CollectorRegistry
    >>> from exporters.catalogue import by_name
    >>> reg = CollectorRegistry()
    >>> c = RunCollector(by_name("pipewarden_pipeline_runs_total"),
    ...                  by_name("pipewarden_pipeline_duration_seconds"), reg)
    >>> c.cell("orders", "success").record(0.2)
    >>> reg.get_sample_value("pipewarden_pipeline_runs_total", {"pipeline": "orders", "status": "success"})
    1.0
    """

    def __init__(self, runs: MetricSpec, duration: MetricSpec, registry: Any) -> None:
        if runs.labels != duration.labels:
            raise ValueError(f"{runs.name} and {duration.name} must have the same labels")
        self.runs_spec = runs
        self.duration_spec = duration
        self.labelnames = runs.labels
        self._bounds = tuple(duration.buckets)
        self._cells: dict[tuple[str, ...], RunCell] = {}
        self._lock = threading.Lock()
        self.runs = _Half(self)
        self.duration = _Half(self)
        registry.register(self)

    def cell(self, *values: Any) -> RunCell:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.runs_spec.name} takes labels {', '.join(self.labelnames)}; got {values!r}")
        key = tuple(str(v) for v in values)
        c = self._cells.get(key)
        if c is None:
            with self._lock:
                c = self._cells.setdefault(key, RunCell(self._bounds))
        return c

    def describe(self) -> Iterable[Metric]:
        return self._families(include_samples=False)

    def collect(self) -> Iterable[Metric]:
        return self._families(include_samples=True)

    def _families(self, *, include_samples: bool) -> list[Metric]:
        runs = CounterMetricFamily(self.runs_spec.base_name, self.runs_spec.help, labels=self.labelnames)
        hist = HistogramMetricFamily(self.duration_spec.name, self.duration_spec.help, labels=self.labelnames)
        if include_samples:
            with self._lock:
                items = list(self._cells.items())
            edges = [*(_fmt(b) for b in self._bounds), "+Inf"]
            for key, cell in items:
                count, total, buckets, created = cell.snapshot()
                runs.add_metric(list(key), count, created=created)
                cumulative, acc = [], 0
                for edge, n in zip(edges, buckets, strict=True):
                    acc += n
                    cumulative.append((edge, float(acc)))
                hist.add_metric(list(key), cumulative, total)
                # A prometheus_client Histogram exposes its creation time too (as the counter does).
                hist.samples.append(Sample(f"{hist.name}_created", dict(zip(self.labelnames, key,
                                                                          strict=True)), created))
        return [runs, hist]


def _fmt(bound: float) -> str:
    # prometheus_client's own formatting of bucket bounds ("0.005", "1.0", "+Inf").
    return "+Inf" if math.isinf(bound) else repr(float(bound))
