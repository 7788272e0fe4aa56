"""Metric outputs that outlive the process: one small exporter shape, cumulative totals from the store.

A scrape endpoint serves what the process counted since it started, and
Prometheus handles the reset when the process restarts. A cron job's process
lives for one run, so what it pushes (Pushgateway) or writes (textfile) must be
the pipeline's totals over every run, or ``rate()`` and ``increase()`` see a
reset at every run. :class:`CumulativeSamples` adds what this process counted
since its last export to the totals kept in the run store and hands the
exporters those totals: every series of the pipeline, every status present.

Exporters have the shape of OpenTelemetry's span exporters:

>>> from prometheus_client import CollectorRegistry
>>> class Printer:
...     name = "printer"
...     def export(self, pipeline, collector): return True
...     def force_flush(self, timeout=5.0): return True
...     def shutdown(self): pass
>>> isinstance(Printer(), MetricExporter)
True
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from exporters.catalogue import CATALOGUE, MetricSpec, MetricType
from exporters.prometheus import DEFAULT_PUSH_TIMEOUT, PipelineView, push, write_textfile

__all__ = [
    "CumulativeSamples",
    "MetricExporter",
    "MetricOutputs",
    "PushgatewayExporter",
    "StoredSamples",
    "TextfileExporter",
]

log = logging.getLogger("pipewarden.exporters")

#: ``on_error(pipeline, exporter, exc)``: an export failed.
ErrorHook = Callable[[str, str, BaseException], None]


@runtime_checkable
class MetricExporter(Protocol):
    """Where a pipeline's samples go when a run ends: ``export`` returns True when they arrived."""

    name: str

    def export(self, pipeline: str, collector: Collector) -> bool: ...

    def force_flush(self, timeout: float = 5.0) -> bool: ...

    def shutdown(self) -> None: ...


class PushgatewayExporter:
    """Replaces the pipeline's group ``{job, pipeline, instance}`` at a Pushgateway; raises on failure.

    ``timeout`` is the deadline of a whole push, however slowly the server answers.
    """

    name = "pushgateway"

    def __init__(
        self, url: str, *, timeout: float = DEFAULT_PUSH_TIMEOUT, instance: str | None = None, job: str = "pipewarden"
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.instance = instance
        self.job = job

    def export(self, pipeline: str, collector: Collector) -> bool:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        push(registry, self.url, pipeline=pipeline, instance=self.instance, timeout=self.timeout, job=self.job)
        return True

    def force_flush(self, timeout: float = 5.0) -> bool:
        return True

    def shutdown(self) -> None:
        pass


class TextfileExporter:
    """Writes ``pipewarden_<pipeline>.prom`` for node_exporter's textfile collector; raises on failure."""

    name = "textfile"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def export(self, pipeline: str, collector: Collector) -> bool:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        write_textfile(registry, self.directory, pipeline=pipeline)
        return True

    def force_flush(self, timeout: float = 5.0) -> bool:
        return True

    def shutdown(self) -> None:
        pass


# --- cumulative samples -------------------------------------------------------------------------


class _TotalsStore(Protocol):
    def merge_metric_samples(
        self,
        pipeline: str,
        added: Mapping[tuple[str, str], float],
        values: Mapping[tuple[str, str], float],
        *,
        now: float,
        replaced: Iterable[str] = (),
    ) -> list[tuple[str, str, float]]: ...


_SPEC_OF_SAMPLE: dict[str, MetricSpec] = {}
for _spec in CATALOGUE:
    for _name in _spec.series_names:
        _SPEC_OF_SAMPLE[_name] = _spec
    if _spec.type is MetricType.INFO:
        _SPEC_OF_SAMPLE[_spec.name] = _spec


def _counts_up(spec: MetricSpec) -> bool:
    return spec.type in (MetricType.COUNTER, MetricType.HISTOGRAM)


class StoredSamples(Collector):
    """Samples read back from the store, exposed as the catalogue's families (with their types and help)."""

    def __init__(self, rows: Iterable[tuple[str, str, float]]) -> None:
        self.rows = list(rows)

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for name, labels, value in self.rows:
            spec = _SPEC_OF_SAMPLE.get(name)
            if spec is None:
                continue
            family = families.get(spec.name)
            if family is None:
                fname = spec.base_name if spec.type in (MetricType.COUNTER, MetricType.INFO) else spec.name
                family = families[spec.name] = Metric(
                    fname, spec.help, str(spec.type), spec.unit if spec.type is not MetricType.INFO else ""
                )
            family.samples.append(Sample(name, json.loads(labels), value))
        for family in families.values():
            family.samples.sort(key=_sample_order)
            yield family

    def describe(self) -> Iterable[Metric]:
        return ()


def _sample_order(s: Sample) -> tuple[Any, ...]:
    # Histograms: each label set's buckets in ascending order, then _count and _sum.
    le = s.labels.get("le")
    rest = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
    bound = float(le) if le is not None else float("inf")
    return (rest, s.name.endswith(("_count", "_sum")), bound, s.name)


class CumulativeSamples:
    """What a pipeline's outputs carry: the run store's totals, brought up to date with this process.

    Without a store, the process's own samples (what a long-lived process has anyway).
    """

    def __init__(
        self, source: Collector, store: _TotalsStore | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.source = source
        self.store = store
        self.clock = clock
        self._sent: dict[str, dict[tuple[str, str], float]] = {}
        self._lock = threading.Lock()

    def pending(self, pipeline: str) -> bool:
        """Whether the pipeline's samples changed since they were last merged."""
        with self._lock:
            added, values = self._changes(pipeline, self._current(pipeline))
            return bool(added) or bool(values)

    def snapshot(self, pipeline: str) -> Collector:
        """A collector with the pipeline's cumulative samples; merges this process's changes into the store."""
        if self.store is None:
            return PipelineView(self.source, pipeline)
        with self._lock:
            current = self._current(pipeline)
            added, values = self._changes(pipeline, current)
            replaced = {name for name, _ in values if _SPEC_OF_SAMPLE[name].type is MetricType.INFO}
            rows = self.store.merge_metric_samples(pipeline, added, values, now=self.clock(), replaced=replaced)
            self._sent[pipeline] = current
        return StoredSamples(rows)

    def _current(self, pipeline: str) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        for family in PipelineView(self.source, pipeline).collect():
            for s in family.samples:
                if s.name.endswith("_created") or s.name not in _SPEC_OF_SAMPLE:
                    continue
                out[(s.name, json.dumps(s.labels, sort_keys=True, separators=(",", ":")))] = float(s.value)
        return out

    def _changes(
        self, pipeline: str, current: Mapping[tuple[str, str], float]
    ) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]]:
        sent = self._sent.get(pipeline, {})
        added: dict[tuple[str, str], float] = {}
        values: dict[tuple[str, str], float] = {}
        for key, value in current.items():
            before = sent.get(key)
            if _counts_up(_SPEC_OF_SAMPLE[key[0]]):
                if before is None or value != before:
                    added[key] = value - (before or 0.0)
            elif before is None or value != before:
                values[key] = value
        return added, values


class MetricOutputs:
    """A run-event listener: when a pipeline run ends, its cumulative samples go to every exporter.

    Queued (it does I/O): it never delays the run. Each exporter failure is
    reported to ``on_error`` with the pipeline (counted with the pipeline's
    samples, so the count travels in the next export) and swallowed.
    :meth:`force_flush` exports again what changed since (at exit: errors the
    span exporters reported while shutting down, for instance).
    """

    name = "metric-outputs"

    def __init__(
        self, samples: CumulativeSamples, exporters: Sequence[MetricExporter], on_error: ErrorHook | None = None
    ) -> None:
        from agent.events import RunEnded

        self.events = (RunEnded,)
        self.samples = samples
        self.exporters = list(exporters)
        self.on_error = on_error
        self._exported: set[str] = set()
        self._lock = threading.Lock()

    def handle(self, event: Any) -> None:
        self.export(event.pipeline)

    def export(self, pipeline: str) -> bool:
        """Send ``pipeline``'s samples to every exporter now; True when all took them."""
        with self._lock:
            self._exported.add(pipeline)
            try:
                collector = self.samples.snapshot(pipeline)
            except Exception as exc:  # the store could not be read: say so, send nothing half-known
                self._report(pipeline, "store", exc)
                return False
            ok = True
            for exporter in self.exporters:
                try:
                    ok = bool(exporter.export(pipeline, collector)) and ok
                except Exception as exc:
                    ok = False
                    self._report(pipeline, exporter.name, exc)
            return ok

    def force_flush(self, timeout: float = 5.0) -> bool:
        """Export again every pipeline whose samples changed since its last export."""
        deadline = time.monotonic() + timeout
        ok = True
        for pipeline in sorted(self._exported):
            if time.monotonic() >= deadline:
                return False
            if self.samples.pending(pipeline):
                ok = self.export(pipeline) and ok
        return ok

    def shutdown(self) -> None:
        for exporter in self.exporters:
            try:
                exporter.shutdown()
            except Exception:
                log.debug("exporter %s failed to shut down", exporter.name, exc_info=True)

    def _report(self, pipeline: str, exporter: str, exc: BaseException) -> None:
        if self.on_error is not None:
            self.on_error(pipeline, exporter, exc)
