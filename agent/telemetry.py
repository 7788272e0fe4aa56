"""One place where runs become spans and metrics: used by ``@monitor`` and the runner alike.

A :class:`Telemetry` holds the metric registry, the tracer and the Prometheus
output settings. Scopes are context managers, one per pipeline run or task run:

>>> from opentelemetry.sdk.trace import TracerProvider
>>> tel = Telemetry(tracer_provider=TracerProvider())
>>> with tel.pipeline_scope("orders", run_id="r1") as run:
...     with tel.task_scope("orders", "extract") as task:
...         task.rows_out(10)
>>> tel.metrics.sample("pipewarden_task_rows_out_total", pipeline="orders", task="extract")
10.0

Telemetry never breaks the host program: a failure inside pipewarden's own
bookkeeping is logged and swallowed, and the user's exception passes through
untouched.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import itertools
import logging
import os
import resource
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, StatusCode

from agent.errors import ConfigError, TaskTimeoutError
from agent.records import _OTEL_RESULT, RunStatus, otel_result
from agent.settings import PIPEWARDEN_LOG_FORMAT
from checks.base import CheckContext, run_check
from checks.result import CheckResult, Status
from exporters.metrics import Metrics

__all__ = ["Scope", "Telemetry", "current_scope", "get_telemetry", "rows_of", "set_telemetry"]

log = logging.getLogger("pipewarden.telemetry")

_VERSION = "0.1.0"
_DRIFT_MEASURES = frozenset({"psi", "ks", "wasserstein", "js", "chi2"})
#: Calls shorter than this keep the task's last peak-memory reading: the process
#: high-water mark cannot move materially in a millisecond, and the syscall is
#: a measurable share of a short call's overhead.
_PEAK_SAMPLE_AFTER = 0.001
_FAILED = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.INTERRUPTED})

_current: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("pipewarden_scope", default=None)


def current_scope() -> Scope | None:
    """The innermost pipewarden scope active in this context (thread or task), if any."""
    return _current.get()


@dataclass
class _PipelineState:
    """What a process remembers between runs of one pipeline (the run store remembers more)."""

    failing_since: float | None = None
    version: str | None = None
    up: float | None = None


class _Live:
    """An in-progress gauge read at scrape time (``Gauge.set_function``).

    It changes twice per call, so it is two ``itertools.count`` objects:
    ``next()`` on one is atomic under the GIL and costs a fraction of a locked
    gauge update. The value is started minus finished, read only when scraped.
    """

    __slots__ = ("finished", "started")

    def __init__(self) -> None:
        self.started = itertools.count()
        self.finished = itertools.count()

    def value(self) -> float:
        finished = _peek(self.finished)  # first: a call finishing between the reads cannot make it negative
        return float(_peek(self.started) - finished)


def _peek(counter: itertools.count[int]) -> int:
    """The next value of a count without advancing it."""
    return int(repr(counter)[6:-1])


class _Stamp:
    """A timestamp gauge kept as a plain float, read at scrape time; NaN until first set."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = float("nan")

    def get(self) -> float:
        return self.value


class _Bundle:
    """The bound metric children of one (pipeline, task) or one pipeline, resolved once.

    ``labels()`` hashes and looks up its label values on every call; a monitored
    function is called with the same labels every time, so they are bound here once.
    """

    __slots__ = ("by_status", "cpu", "last_success", "live", "peak", "peak_value", "retries",
                 "rows_in", "rows_out", "span_name", "state")

    live: _Live
    last_success: _Stamp
    span_name: str
    state: _PipelineState
    cpu: Any
    peak: Any
    rows_in: Any
    rows_out: Any
    retries: Any

    def __init__(self) -> None:
        self.by_status: dict[RunStatus, Any] = {}
        self.peak_value = -1.0


class Telemetry:
    """Metrics, tracer and Prometheus outputs for one process (or one test).

    Every argument is optional so tests can pass fresh instances; :meth:`from_env`
    builds the process default from the environment.
    """

    def __init__(
        self,
        *,
        metrics: Metrics | None = None,
        tracer_provider: TracerProvider | None = None,
        prometheus: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics if metrics is not None else Metrics()
        # A provider with no processor records nothing and costs little.
        self.tracer_provider = tracer_provider if tracer_provider is not None else TracerProvider()
        self.tracer = self.tracer_provider.get_tracer("pipewarden", _VERSION)
        self.prometheus = prometheus
        self.clock = clock
        self._children: dict[tuple[Any, ...], Any] = {}
        self._task_bundles: dict[tuple[str, str], _Bundle] = {}
        self._pipeline_bundles: dict[str, _Bundle] = {}
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self.server: Any = None

    # --- construction ---------------------------------------------------------------

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, home: str | os.PathLike[str] | None = None,
                 metrics: Metrics | None = None) -> Telemetry:
        """Telemetry as the environment configures it (``OTEL_*`` and ``PIPEWARDEN_*``).

        Starts the scrape endpoint only when ``PIPEWARDEN_METRICS_PORT`` is set.
        """
        from exporters.logs import configure_logging, install_trace_context
        from exporters.prometheus import PrometheusSettings
        from exporters.tracing import build_tracer_provider

        env = os.environ if env is None else env
        try:
            prometheus = PrometheusSettings.from_env(env)
            # `tel` is looked up when an export fails, by which time it exists.
            provider = build_tracer_provider(env, home=home, on_error=lambda name, exc: tel.export_error(name, exc))
        except ValueError as exc:  # a bad environment variable: a configuration error, named
            raise ConfigError(str(exc), problems=str(exc).splitlines()) from None
        tel = cls(metrics=metrics, tracer_provider=provider, prometheus=prometheus)
        install_trace_context()
        if env.get(PIPEWARDEN_LOG_FORMAT, "").strip().lower() == "json":
            configure_logging("json")
        if prometheus.metrics_port is not None:
            tel.serve(prometheus.metrics_port, prometheus.metrics_addr)
        return tel

    def serve(self, port: int, addr: str = "127.0.0.1") -> Any:
        """Start the ``/metrics`` endpoint for this registry (once); returns the server handle."""
        from exporters.prometheus import serve_metrics

        if self.server is None:
            self.server = serve_metrics(self.metrics.registry, port=port, addr=addr)
        return self.server

    # --- scopes -----------------------------------------------------------------------

    def task_scope(self, pipeline: str, task: str, *, run_id: str | None = None, attempt: int = 1,
                   retry: bool | None = None, dataset: str | None = None,
                   attributes: Mapping[str, Any] | None = None) -> Scope:
        """A scope for one task attempt: a child span of the current span and the task metrics.

        ``retry`` says whether this attempt retries a failure (counted in
        ``pipewarden_task_retries_total``); by default, any attempt after the first.
        A resumed run's first attempt is not a retry: pass ``retry=False``.
        """
        scope = Scope(self, pipeline, task, pipeline_level=False, run_id=run_id, attempt=attempt,
                      dataset=dataset, attributes=attributes)
        if retry is not None:
            scope.retry = retry
        return scope

    def pipeline_scope(self, pipeline: str, *, run_id: str | None = None, version: str | None = None,
                       trigger: str | None = None, first_of_version: bool | None = None,
                       failing_since: float | None = None,
                       attributes: Mapping[str, Any] | None = None) -> Scope:
        """A scope for one pipeline run: the root span ``RUN <pipeline>`` and the pipeline metrics.

        A runner with durable history passes what it knows better than this
        process: ``first_of_version`` (this run is the first of ``version``:
        counted as a change) and ``failing_since`` (when the current streak of
        failures began: the time to recovery on success). Left None, they come
        from what this process has seen.
        """
        attrs = dict(attributes or {})
        if trigger:
            attrs["pipewarden.trigger"] = trigger
        scope = Scope(self, pipeline, None, pipeline_level=True, run_id=run_id, version=version,
                      attributes=attrs)
        scope.first_of_version = first_of_version
        scope.failing_since = failing_since
        return scope

    def record_task_state(self, pipeline: str, task: str, status: str, *, reason: str = "",
                          run_id: str | None = None) -> None:
        """Record a task that never ran (skipped, upstream failed, cancelled, interrupted)."""
        try:
            status = RunStatus(status)
            self.child("pipewarden_task_runs_total", pipeline, task, status).inc()
            span = self.tracer.start_span(f"RUN {task}", attributes=_task_attrs(pipeline, task, run_id, 1))
            span.set_attribute("cicd.pipeline.task.run.result", otel_result(status))
            span.set_attribute("pipewarden.status", str(status))
            if reason:
                span.set_attribute("pipewarden.reason", reason)
            if status in _FAILED:
                span.set_status(StatusCode.ERROR, reason or str(status))
            span.end(end_time=span.start_time)  # type: ignore[attr-defined]
        except Exception:
            log.exception("pipewarden could not record task state for %s.%s", pipeline, task)

    # --- checks -----------------------------------------------------------------------

    def record_check_results(self, pipeline: str, dataset: str, results: Iterable[CheckResult]) -> None:
        """Counters by kind and status, and the observed-value gauges (see the catalogue)."""
        for r in results:
            ds = r.dataset or dataset
            self.child("pipewarden_check_results_total", pipeline, ds, r.check, r.kind, r.status).inc()
            if r.observed is None or r.status is Status.ERROR:
                continue
            value = float(r.observed)
            m = r.measure
            if m == "row_count":
                self.child("pipewarden_dq_rows", pipeline, ds).set(value)
            elif m == "null_fraction" and r.column is not None:
                self.child("pipewarden_dq_null_fraction", pipeline, ds, r.column).set(value)
            elif m == "duplicates":
                self.child("pipewarden_dq_duplicates", pipeline, ds, r.check).set(value)
            elif m == "rows_lost":
                self.child("pipewarden_dq_rows_lost", pipeline, ds, r.check).set(value)
            elif m == "freshness_lag_seconds" and r.column is not None:
                self.child("pipewarden_dq_freshness_lag_seconds", pipeline, ds, r.column).set(value)
            elif m in _DRIFT_MEASURES and r.column is not None:
                self.child("pipewarden_dq_drift_score", pipeline, ds, r.column, m).set(value)

    # --- outputs ----------------------------------------------------------------------

    def flush(self, pipeline: str, *, success: bool) -> None:
        """Push to the Pushgateway and write the textfile, if configured. Never raises."""
        settings = self.prometheus
        if settings is None:
            return
        try:
            if settings.pushgateway_url:
                from exporters.prometheus import push

                push(self.metrics.registry, settings.pushgateway_url, pipeline=pipeline, success=success,
                     timeout=settings.push_timeout, on_error=self.export_error)
            if settings.textfile_dir:
                from exporters.prometheus import write_textfile

                write_textfile(self.metrics.registry, settings.textfile_dir, pipeline=pipeline,
                               on_error=self.export_error)
        except Exception as exc:  # the exporters swallow their own errors; this is the last guard
            self.export_error("prometheus", exc)

    def export_error(self, exporter: str, exc: BaseException | None) -> None:
        """Count a failed export and warn once per exporter; never raises."""
        try:
            self.child("pipewarden_export_errors_total", exporter).inc()
            if exporter not in self._warned:
                self._warned.add(exporter)
                log.warning("pipewarden could not export to %s (%s); the pipeline goes on, "
                            "further failures are only counted in pipewarden_export_errors_total",
                            exporter, exc or "export failed")
        except Exception:
            pass

    def shutdown(self) -> None:
        """Flush and stop the span processors and the scrape endpoint."""
        try:
            self.tracer_provider.shutdown()
        except Exception:
            log.debug("tracer provider shutdown failed", exc_info=True)
        if self.server is not None and hasattr(self.server, "close"):
            self.server.close()
            self.server = None

    # --- internals --------------------------------------------------------------------

    def child(self, name: str, *labels: Any) -> Any:
        """The labelled child of a catalogue metric, cached (``labels()`` is the hot-path cost)."""
        key = (name, *labels)
        c = self._children.get(key)
        if c is None:
            metric = self.metrics[name]
            c = metric.labels(*(str(v) for v in labels)) if labels else metric
            self._children[key] = c
        return c

    def task_bundle(self, pipeline: str, task: str) -> _Bundle:
        b = self._task_bundles.get((pipeline, task))
        if b is None:
            with self._lock:
                b = self._task_bundles.get((pipeline, task)) or self._new_bundle(pipeline, task)
                self._task_bundles[(pipeline, task)] = b
        return b

    def pipeline_bundle(self, pipeline: str) -> _Bundle:
        b = self._pipeline_bundles.get(pipeline)
        if b is None:
            with self._lock:
                b = self._pipeline_bundles.get(pipeline) or self._new_bundle(pipeline, None)
                self._pipeline_bundles[pipeline] = b
        return b

    def _new_bundle(self, pipeline: str, task: str | None) -> _Bundle:
        b = _Bundle()
        b.live = _Live()
        b.last_success = _Stamp()
        b.span_name = f"RUN {pipeline if task is None else task}"
        if task is None:
            self.metrics["pipewarden_pipeline_active_runs"].labels(pipeline).set_function(b.live.value)
            self.metrics["pipewarden_pipeline_last_success_timestamp_seconds"].labels(pipeline).set_function(
                b.last_success.get)
            b.state = _PipelineState()
            return b
        self.metrics["pipewarden_task_in_progress"].labels(pipeline, task).set_function(b.live.value)
        self.metrics["pipewarden_task_last_success_timestamp_seconds"].labels(pipeline, task).set_function(
            b.last_success.get)
        b.cpu = self.child("pipewarden_task_cpu_seconds_total", pipeline, task)
        b.peak = self.child("pipewarden_task_peak_memory_bytes", pipeline, task)
        b.rows_in = self.child("pipewarden_task_rows_in_total", pipeline, task)
        b.rows_out = self.child("pipewarden_task_rows_out_total", pipeline, task)
        b.retries = self.child("pipewarden_task_retries_total", pipeline, task)
        return b

    def by_status(self, bundle: _Bundle, status: RunStatus, pipeline: str, task: str | None) -> Any:
        """The run-count/duration cell (see :mod:`exporters.runs`) for one status."""
        cell = bundle.by_status.get(status)
        if cell is None:
            if task is None:
                cell = self.metrics.run_collectors["pipewarden_pipeline_runs_total"].cell(pipeline, status)
            else:
                cell = self.metrics.run_collectors["pipewarden_task_runs_total"].cell(pipeline, task, status)
            bundle.by_status[status] = cell
        return cell



def _task_attrs(pipeline: str, task: str, run_id: str | None, attempt: int) -> dict[str, Any]:
    attrs: dict[str, Any] = {"cicd.pipeline.name": pipeline, "cicd.pipeline.task.name": task}
    if run_id:
        attrs["cicd.pipeline.run.id"] = run_id
    if attempt != 1:
        attrs["pipewarden.task.attempt"] = attempt
    return attrs


class Scope:
    """One pipeline run or task attempt in progress; create it through :class:`Telemetry`.

    Inside the block: :meth:`rows_in`, :meth:`rows_out`, :meth:`run_checks`,
    :meth:`set_status`. On exit the span ends and the metrics are recorded; an
    exception escaping the block marks the run failed (timed out for
    :class:`~agent.errors.TaskTimeoutError`), is recorded on the span and
    propagates unchanged.
    """

    # Defaults live on the class: a scope is created per call, and most of these
    # are only ever written by a runner, on the rare path.
    status: RunStatus | None = None
    reason = ""
    duration = 0.0
    #: Set by a runner that knows more than this process (its store); None: use memory.
    first_of_version: bool | None = None
    failing_since: float | None = None
    retry: bool | None = None
    parent: Scope | None = None
    check_results: list[CheckResult] = []  # noqa: RUF012 - replaced per instance on first write
    _rows_in = 0
    _rows_out = 0
    _extra_cpu = 0.0
    _peak: int | None = None

    def __init__(self, tel: Telemetry, pipeline: str, task: str | None, *, pipeline_level: bool,
                 run_id: str | None = None, attempt: int = 1, dataset: str | None = None,
                 version: str | None = None, attributes: Mapping[str, Any] | None = None) -> None:
        self.tel = tel
        self.pipeline = pipeline
        self.task = task
        self.pipeline_level = pipeline_level
        self.run_id = run_id
        self.attempt = attempt
        self.dataset = dataset or task or pipeline
        self.version = version
        self.attributes = attributes

    # --- inside the block --------------------------------------------------------------

    def rows_in(self, n: int) -> None:
        self._rows_in += n

    def rows_out(self, n: int) -> None:
        self._rows_out += n

    def add_cpu(self, seconds: float) -> None:
        """CPU spent elsewhere on this task's behalf (a worker process)."""
        self._extra_cpu += seconds

    def set_peak_memory(self, nbytes: int) -> None:
        """Peak memory measured elsewhere (a worker process); replaces this process's figure."""
        self._peak = nbytes

    def set_status(self, status: str, reason: str = "") -> None:
        self.status = RunStatus(status)
        self.reason = reason

    def set_attribute(self, key: str, value: Any) -> None:
        self.span.set_attribute(key, value)

    def context(self, *, inputs: Sequence[Any] = (), store: Any = None,
                now: dt.datetime | None = None) -> CheckContext:
        """A check context for this scope's pipeline, task and run."""
        return CheckContext(pipeline=self.pipeline, task=self.task or "", dataset=self.dataset,
                            run_id=self.run_id or "", inputs=tuple(inputs), store=store,
                            now=now or dt.datetime.fromtimestamp(self.tel.clock(), dt.UTC))

    def run_checks(self, checks: Iterable[Any], output: Any, context: CheckContext | None = None
                   ) -> list[CheckResult]:
        """Run checks on ``output``: a span per check, metrics per result; returns every result."""
        ctx = context if context is not None else self.context()
        tel = self.tel
        out: list[CheckResult] = []
        for check in checks:
            name = getattr(check, "name", None) or getattr(check, "__name__", None) or type(check).__name__
            t0 = time.perf_counter()
            with tel.tracer.start_as_current_span(f"CHECK {name}", end_on_exit=True) as span:
                results = run_check(check, output, ctx)
                elapsed = time.perf_counter() - t0
                try:
                    _annotate_check_span(span, name, results)
                    if results:
                        tel.child("pipewarden_check_duration_seconds", self.pipeline,
                                  results[0].kind).observe(elapsed)
                    tel.record_check_results(self.pipeline, self.dataset, results)
                except Exception:
                    log.exception("pipewarden could not record results of check %s", name)
            out.extend(results)
        self.check_results = [*self.check_results, *out]
        return out

    # --- enter / exit --------------------------------------------------------------------

    def __enter__(self) -> Scope:
        tel = self.tel
        parent = self.parent = _current.get()
        if self.run_id is None and parent is not None:
            self.run_id = parent.run_id
        task = self.task
        if self.pipeline_level:
            b = self._pbundle = tel.pipeline_bundle(self.pipeline)
            attrs: dict[str, Any] = {"cicd.pipeline.name": self.pipeline}
            if task is not None:
                attrs["cicd.pipeline.task.name"] = task
            if self.run_id:
                attrs["cicd.pipeline.run.id"] = self.run_id
            if self.version:
                attrs["pipewarden.pipeline.version"] = self.version
            if self.attributes:
                attrs.update(self.attributes)
            self.span = tel.tracer.start_span(b.span_name, kind=SpanKind.SERVER, attributes=attrs)
            next(b.live.started)
        if task is not None:
            tb = self._tbundle = tel.task_bundle(self.pipeline, task)
            if not self.pipeline_level:
                attrs = _task_attrs(self.pipeline, task, self.run_id, self.attempt)
                if self.attributes:
                    attrs.update(self.attributes)
                self.span = tel.tracer.start_span(tb.span_name, attributes=attrs)
            next(tb.live.started)
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        self._var_token = _current.set(self)
        self._c0 = time.thread_time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self.duration = time.perf_counter() - self._t0
        cpu = time.thread_time() - self._c0 + self._extra_cpu
        try:
            self._finish(exc, cpu)
        except Exception:
            log.exception("pipewarden could not record the end of %s", getattr(self.span, "name", self.task))
        finally:
            _current.reset(self._var_token)
            otel_context.detach(self._token)
        if self.pipeline_level and self.tel.prometheus is not None:
            self.tel.flush(self.pipeline, success=self.status is RunStatus.SUCCESS)

    def _finish(self, exc: BaseException | None, cpu: float) -> None:
        tel, span, pipeline, task = self.tel, self.span, self.pipeline, self.task
        if exc is not None and self.status in (None, RunStatus.SUCCESS):
            self.status = _status_of(exc)
        elif self.status is None:
            self.status = RunStatus.SUCCESS
        status = self.status
        if exc is not None:
            span.record_exception(exc)
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
        elif status in _FAILED:  # skipped, upstream failed, cancelled: not an error of this span
            span.set_status(StatusCode.ERROR, self.reason or str(status))
        if self.reason:
            span.set_attribute("pipewarden.reason", self.reason)
        result = _OTEL_RESULT.get(status, "error")
        # One write: each set_attribute call takes the span's lock and validates again.
        end_attrs: dict[str, Any] = (
            {"cicd.pipeline.result": result} if self.pipeline_level
            else {"cicd.pipeline.task.run.result": result})
        if self._rows_in:
            end_attrs["pipewarden.rows_in"] = self._rows_in
        if self._rows_out:
            end_attrs["pipewarden.rows_out"] = self._rows_out
        span.set_attributes(end_attrs)
        if task is not None:
            self._record_task(tel, pipeline, task, status, cpu)
        if self.pipeline_level:
            self._record_pipeline(tel, pipeline, status)
        span.end()

    def _record_task(self, tel: Telemetry, pipeline: str, task: str, status: RunStatus, cpu: float) -> None:
        b = self._tbundle
        next(b.live.finished)
        (b.by_status.get(status) or tel.by_status(b, status, pipeline, task)).record(self.duration)
        if cpu > 0:
            b.cpu.inc(cpu)
        peak = self._peak
        if peak is None and (self.duration >= _PEAK_SAMPLE_AFTER or b.peak_value < 0):
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        if peak is not None and peak != b.peak_value:  # the high-water mark rarely moves
            b.peak.set(peak)
            b.peak_value = peak
        if self._rows_in:
            b.rows_in.inc(self._rows_in)
        if self._rows_out:
            b.rows_out.inc(self._rows_out)
        if self.retry if self.retry is not None else self.attempt > 1:
            b.retries.inc()
        if status is RunStatus.SUCCESS:
            b.last_success.value = tel.clock()

    def _record_pipeline(self, tel: Telemetry, pipeline: str, status: RunStatus) -> None:
        now = tel.clock()
        b = self._pbundle
        next(b.live.finished)
        (b.by_status.get(status) or tel.by_status(b, status, pipeline, None)).record(self.duration)
        state: _PipelineState = b.state
        failing_since = self.failing_since if self.failing_since is not None else state.failing_since
        if status is RunStatus.SUCCESS:
            b.last_success.value = now
            if state.up != 1.0:
                tel.child("pipewarden_pipeline_up", pipeline).set(1)
                state.up = 1.0
            if failing_since is not None:
                tel.child("pipewarden_pipeline_recovery_seconds", pipeline).observe(max(0.0, now - failing_since))
            state.failing_since = None
        elif status in _FAILED:
            tel.child("pipewarden_pipeline_last_failure_timestamp_seconds", pipeline).set(now)
            tel.child("pipewarden_pipeline_up", pipeline).set(0)
            state.up = 0.0
            if failing_since is None:
                failing_since = now
            state.failing_since = failing_since
        if self.version:
            tel.metrics["pipewarden_pipeline_version_info"].labels(pipeline).info({"version": self.version})
            first = self.first_of_version
            if first is None:
                first = state.version != self.version
            state.version = self.version
            if first:
                tel.child("pipewarden_pipeline_changes_total", pipeline).inc()
                if status is not RunStatus.SUCCESS:
                    tel.child("pipewarden_pipeline_failed_changes_total", pipeline).inc()


def _status_of(exc: BaseException) -> RunStatus:
    """The end state an exception escaping a scope means."""
    if isinstance(exc, TaskTimeoutError):
        return RunStatus.TIMED_OUT
    if isinstance(exc, KeyboardInterrupt):
        return RunStatus.INTERRUPTED
    if isinstance(exc, asyncio.CancelledError):
        return RunStatus.CANCELLED
    return RunStatus.FAILED


# type -> how to count its rows (None: not a table); filled on first sight of each type, so the
# hot path is one dict lookup and pandas/pyarrow are never imported by pipewarden itself.
_ROW_COUNTERS: dict[type, Callable[[Any], int] | None] = {}


def rows_of(x: Any) -> int | None:
    """Rows of a pandas DataFrame/Series, a pyarrow Table/RecordBatch or a polars frame; None otherwise."""
    t = type(x)
    try:
        counter = _ROW_COUNTERS[t]
    except KeyError:
        counter = _ROW_COUNTERS[t] = _row_counter_for(t)
    return None if counter is None else counter(x)


def _row_counter_for(t: type) -> Callable[[Any], int] | None:
    module = t.__module__ or ""
    if module.startswith("pandas") and t.__name__ in ("DataFrame", "Series"):
        return len
    if module.startswith("pyarrow") and t.__name__ in ("Table", "RecordBatch"):
        return cast(Callable[[Any], int], lambda x: x.num_rows)
    if module.startswith("polars") and t.__name__ in ("DataFrame", "Series"):
        return len
    return None



def _annotate_check_span(span: Any, name: str, results: list[CheckResult]) -> None:
    span.set_attribute("pipewarden.check.name", name)
    if not results:
        return
    worst = max(results, key=lambda r: _STATUS_RANK[r.status])
    span.set_attribute("pipewarden.check.kind", str(worst.kind))
    span.set_attribute("pipewarden.check.status", str(worst.status))
    span.set_attribute("pipewarden.check.results", len(results))
    if worst.observed is not None:
        span.set_attribute("pipewarden.check.observed", float(worst.observed))
    if worst.threshold is not None:
        span.set_attribute("pipewarden.check.threshold", float(worst.threshold))
    if worst.column:
        span.set_attribute("pipewarden.check.column", worst.column)
    if worst.message:
        span.set_attribute("pipewarden.check.message", worst.message)
    if worst.status in (Status.FAIL, Status.ERROR):
        span.set_status(StatusCode.ERROR, worst.message or f"{name}: {worst.status}")


_STATUS_RANK = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2, Status.ERROR: 3}

_default: Telemetry | None = None
_default_lock = threading.Lock()


def get_telemetry() -> Telemetry:
    """The process default, built from the environment on first use."""
    global _default
    tel = _default
    if tel is None:
        with _default_lock:
            if _default is None:
                _default = Telemetry.from_env()
            tel = _default
    return tel


def set_telemetry(tel: Telemetry | None) -> Telemetry | None:
    """Replace the process default (None: rebuild from the environment on next use); returns the old one."""
    global _default
    with _default_lock:
        old, _default = _default, tel
    return old
