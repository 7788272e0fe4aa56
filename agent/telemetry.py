"""Where a process's run facts go: the event bus and its listeners, the tracer, the metric outputs.

A :class:`Telemetry` wires one process (or one test) together. ``@monitor`` and
the runner open :class:`~agent.scope.Scope` objects through it; scopes emit run
events on :attr:`Telemetry.bus`, and the listeners do the rest:

- the Prometheus metrics (:class:`exporters.run_metrics.RunMetrics`, inline);
- the run store, for runs nobody recorded before (``@monitor`` runs), on its own thread;
- the metric outputs that outlive the process (Pushgateway, textfile), on their own thread;
- whatever else is added: the progress display, the alert evaluator.

>>> from opentelemetry.sdk.trace import TracerProvider
>>> tel = Telemetry(tracer_provider=TracerProvider())
>>> with tel.pipeline_scope("orders", run_id="r1"):
...     with tel.task_scope("orders", "extract") as task:
...         task.rows_out(10)
>>> tel.metrics.sample("pipewarden_task_rows_out_total", pipeline="orders", task="extract")
10.0
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, StatusCode

from agent.errors import ConfigError
from agent.events import EventBus, RunEnded, RunOutcome, RunStarted, TaskEnded
from agent.kpis import KpiTracker
from agent.records import FAILURES, RunStatus, new_run_id, otel_result
from agent.scope import Scope, current_scope, rows_of
from agent.settings import PIPEWARDEN_LOG_FORMAT
from exporters.metrics import Metrics
from exporters.run_metrics import RunMetrics

__all__ = ["Scope", "Telemetry", "current_scope", "get_telemetry", "rows_of", "set_telemetry"]

log = logging.getLogger("pipewarden.telemetry")

_VERSION = "0.1.0"
#: Seconds ``shutdown`` waits in all for listeners, span exporters and metric outputs.
DEFAULT_EXIT_TIMEOUT = 10.0


class Telemetry:
    """Metrics, tracer, run events and their listeners for one process (or one test).

    Every argument is optional so tests can pass fresh instances; :meth:`from_env`
    builds the process default from the environment. ``store`` (a run store)
    turns on the history of ``@monitor`` runs, seeds the KPIs from earlier runs
    and keeps the cumulative totals that ``exporters`` push.
    """

    def __init__(
        self,
        *,
        metrics: Metrics | None = None,
        tracer_provider: TracerProvider | None = None,
        store: Any = None,
        exporters: Sequence[Any] = (),
        clock: Callable[[], float] = time.time,
        history: bool = True,
    ) -> None:
        self.metrics = metrics if metrics is not None else Metrics()
        # A provider with no processor records nothing and costs little.
        self.tracer_provider = tracer_provider if tracer_provider is not None else TracerProvider()
        self.tracer = self.tracer_provider.get_tracer("pipewarden", _VERSION)
        self.clock = clock
        self.store = store
        self.kpis = KpiTracker(store, on_error=self._store_failed)
        self.bus = EventBus(on_error=self._listener_failed)
        self.run_metrics = RunMetrics(self.metrics)
        self.bus.add(self.run_metrics, inline=True)
        self.outputs: Any = None
        self.server: Any = None
        #: The alert evaluator of a pipewarden.yml (see :meth:`add_alerts`), or None.
        self.alerts: Any = None
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        #: Called with (exporter, pipeline) after each counted export failure (the alert evaluator listens).
        self.on_export_error: list[Callable[[str, str], None]] = []
        self._templates: dict[tuple[str, str | None, bool], tuple[str, dict[str, Any]]] = {}
        self._peaked: set[tuple[str, str]] = set()
        self._id_prefix = new_run_id()
        if store is not None and history:
            from agent.recorder import HistoryRecorder

            self.bus.add(HistoryRecorder(store), events=(RunStarted, TaskEnded, RunEnded))
        if exporters:
            from exporters.outputs import CumulativeSamples, MetricOutputs

            self.outputs = MetricOutputs(
                CumulativeSamples(self.metrics.registry, store, clock),
                exporters,
                on_error=lambda p, name, exc: self.export_error(name, exc, pipeline=p),
            )
            self.bus.add(self.outputs)

    # --- construction ---------------------------------------------------------------

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        metrics: Metrics | None = None,
        store: Any = None,
        history: bool = True,
        config: str | os.PathLike[str] | None = None,
    ) -> Telemetry:
        """Telemetry as the environment configures it (``OTEL_*`` and ``PIPEWARDEN_*``).

        Opens the run store under ``home`` (argument > ``$PIPEWARDEN_HOME`` > default)
        unless one is given; a store that cannot be opened costs the history and
        the cumulative totals, with one warning, never the pipeline. Starts the
        scrape endpoint only when ``PIPEWARDEN_METRICS_PORT`` is set. With a
        pipewarden.yml (``config``, else ``$PIPEWARDEN_CONFIG``), its ``agent.env``
        settings apply under the environment's and its alert rules that follow
        run events are evaluated (the timed ones are the daemon's).
        """
        from agent.settings import PIPEWARDEN_CONFIG

        env = os.environ if env is None else env
        config = config or env.get(PIPEWARDEN_CONFIG) or None
        loaded = None
        if config is not None:
            from agent.config import load_config

            loaded = load_config(config, env=env)
            env = {**loaded.agent.env, **env}
        tel = cls._from_env(env, home=home, metrics=metrics, store=store, history=history)
        if loaded is not None:
            tel.add_alerts(loaded.alerts)
        return tel

    def add_alerts(self, alerts: Any) -> None:
        """Evaluate the event-driven alert rules of an ``alerts:`` section (None: the default rules)."""
        from alerts.config import evaluator_from_config
        from exporters.alert_metrics import PrometheusAlertMetrics

        self.alerts = evaluator_from_config(
            alerts, store=self.store, metrics=PrometheusAlertMetrics(self.metrics), clock=self.clock, tick_interval=None
        )
        self.bus.add(self.alerts)
        self.on_export_error.append(
            lambda exporter, pipeline: self.alerts.export_failed(exporter, pipeline=pipeline or None)
        )
        self.alerts.start()

    @classmethod
    def _from_env(
        cls,
        env: Mapping[str, str],
        *,
        home: str | os.PathLike[str] | None,
        metrics: Metrics | None,
        store: Any,
        history: bool,
    ) -> Telemetry:
        from exporters.logs import configure_logging, install_trace_context
        from exporters.outputs import PushgatewayExporter, TextfileExporter
        from exporters.prometheus import PrometheusSettings
        from exporters.tracing import build_tracer_provider, traces_exporter_names

        made: list[Telemetry] = []

        def span_export_failed(name: str, exc: BaseException | None, pipelines: Sequence[str] = ()) -> None:
            if made:  # the provider exports only after the telemetry exists
                made[0].export_error(name, exc, *pipelines)

        # A bad environment variable is a configuration error, named; every one is reported at once.
        problems: list[str] = []
        try:
            prometheus = PrometheusSettings.from_env(env)
        except ValueError as exc:
            problems += str(exc).splitlines()
        try:
            traces_exporter_names(env)
        except ValueError as exc:
            problems += str(exc).splitlines()
        log_format = env.get(PIPEWARDEN_LOG_FORMAT, "").strip()
        if log_format.lower() not in ("", "text", "json"):
            problems.append(f"{PIPEWARDEN_LOG_FORMAT} must be one of text, json — got {log_format!r}")
        if problems:
            raise ConfigError("\n".join(problems), problems=problems)
        provider = build_tracer_provider(env, home=home, on_error=span_export_failed)
        if store is None:
            store = _open_store(home, env)
        exporters: list[Any] = []
        if prometheus.pushgateway_url:
            exporters.append(PushgatewayExporter(prometheus.pushgateway_url, timeout=prometheus.push_timeout))
        if prometheus.textfile_dir:
            exporters.append(TextfileExporter(prometheus.textfile_dir))
        tel = cls(metrics=metrics, tracer_provider=provider, store=store, exporters=exporters, history=history)
        made.append(tel)
        install_trace_context()
        if env.get(PIPEWARDEN_LOG_FORMAT, "").strip().lower() == "json":
            configure_logging("json")
        if prometheus.metrics_port is not None:
            tel.serve(prometheus.metrics_port, prometheus.metrics_addr)
        return tel

    def serve(self, port: int, addr: str = "127.0.0.1") -> Any:
        """Start the ``/metrics`` endpoint for this registry (once); returns the server handle, or None.

        A port already taken or an address that cannot be bound is one warning and
        one count (``exporter="metrics_endpoint"``); the pipeline runs without the endpoint.
        """
        from exporters.prometheus import serve_metrics

        if self.server is None:
            try:
                self.server = serve_metrics(self.metrics.registry, port=port, addr=addr)
            except (OSError, ValueError) as exc:  # a name that cannot be encoded is a UnicodeError (ValueError)
                self.export_error("metrics_endpoint", OSError(f"cannot serve /metrics on {addr}:{port}: {exc}"))
        return self.server

    # --- scopes -----------------------------------------------------------------------

    def span_template(self, pipeline: str, task: str | None, pipeline_level: bool) -> tuple[str, dict[str, Any]]:
        """The span name and the attributes every span of this pipeline (and task) carries; cached."""
        key = (pipeline, task, pipeline_level)
        found = self._templates.get(key)
        if found is None:
            attrs = {"cicd.pipeline.name": pipeline}
            if task is not None:
                attrs["cicd.pipeline.task.name"] = task
            found = self._templates[key] = (f"RUN {pipeline if pipeline_level else task}", attrs)
        return found

    def first_peak(self, pipeline: str, task: str) -> bool:
        """True the first time it is asked for a task: its first call always reads the peak memory."""
        key = (pipeline, task)
        if key in self._peaked:
            return False
        self._peaked.add(key)
        return True

    def next_run_id(self) -> str:
        """A new run id, unique in this process and sortable by start (cheap: one counter step)."""
        return f"{self._id_prefix}.{next(self._ids)}"

    def task_scope(
        self,
        pipeline: str,
        task: str,
        *,
        run_id: str | None = None,
        attempt: int = 1,
        retry: bool | None = None,
        dataset: str | None = None,
        durable: bool = False,
        attributes: Mapping[str, Any] | None = None,
        item: int | None = None,
    ) -> Scope:
        """A scope for one task attempt: a child span of the current span, a TaskEnded at the end.

        ``retry`` says whether this attempt retries a failure (counted in
        ``pipewarden_task_retries_total``); by default, any attempt after the first.
        A resumed run's first attempt is not a retry: pass ``retry=False``.
        ``item``: the attempt runs one item of a mapped task.
        """
        scope = Scope(
            self,
            pipeline,
            task,
            pipeline_level=False,
            run_id=run_id,
            attempt=attempt,
            dataset=dataset,
            durable=durable,
            attributes=attributes,
        )
        if retry is not None:
            scope.retry = retry
        if item is not None:
            scope.item = item
        return scope

    def pipeline_scope(
        self,
        pipeline: str,
        *,
        run_id: str | None = None,
        version: str = "",
        trigger: str = "manual",
        tasks: Sequence[str] = (),
        kept: Sequence[str] = (),
        params: Mapping[str, Any] | None = None,
        resumed: bool = False,
        durable: bool = False,
        task: str | None = None,
        dataset: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Scope:
        """A scope for one pipeline run: the root span ``RUN <pipeline>``, RunStarted and RunEnded.

        With ``task``, the run is also that task's one attempt (an outermost ``@monitor`` call).
        """
        return Scope(
            self,
            pipeline,
            task,
            pipeline_level=True,
            run_id=run_id,
            version=version,
            trigger=trigger,
            tasks=tasks,
            kept=kept,
            params=params,
            resumed=resumed,
            durable=durable,
            dataset=dataset,
            attributes=attributes,
        )

    def task_state(
        self,
        pipeline: str,
        task: str,
        status: RunStatus | str,
        *,
        reason: str = "",
        run_id: str,
        durable: bool = False,
        item: int | None = None,
    ) -> None:
        """A task (or an ``item`` of a mapped one) that ends without running (skipped, upstream failed,
        cancelled, interrupted, cached): span and event."""
        try:
            status = RunStatus(status)
            now = self.clock()
            attrs: dict[str, str | int] = {
                "cicd.pipeline.name": pipeline,
                "cicd.pipeline.task.name": task,
                "cicd.pipeline.run.id": run_id,
                "cicd.pipeline.task.run.result": otel_result(status),
                "pipewarden.status": str(status),
            }
            if reason:
                attrs["pipewarden.reason"] = reason
            if item is not None:
                attrs["pipewarden.task.item"] = item
            span = self.tracer.start_span(f"RUN {task}", attributes=attrs)
            if status in FAILURES:
                span.set_status(StatusCode.ERROR, reason or str(status))
            span.end(end_time=span.start_time)  # type: ignore[attr-defined]
            self.bus.emit(
                TaskEnded(
                    run_id, pipeline, task, 0, status, now, now, reason=reason or None, durable=durable, item=item
                )
            )
        except Exception:
            log.exception("pipewarden could not record task state for %s.%s", pipeline, task)

    def run_state(
        self,
        pipeline: str,
        run_id: str,
        status: RunStatus,
        *,
        started_at: float,
        ended_at: float,
        outcome: RunOutcome,
        version: str = "",
        trigger: str = "manual",
        reason: str = "",
        durable: bool = False,
    ) -> None:
        """A run found ended after the fact (its process died): its root span and its RunEnded."""
        try:
            attrs = {
                "cicd.pipeline.name": pipeline,
                "cicd.pipeline.run.id": run_id,
                "cicd.pipeline.result": otel_result(status),
                "pipewarden.status": str(status),
            }
            if reason:
                attrs["pipewarden.reason"] = reason
            span = self.tracer.start_span(
                f"RUN {pipeline}", kind=SpanKind.SERVER, attributes=attrs, start_time=int(started_at * 1e9)
            )
            if status in FAILURES:
                span.set_status(StatusCode.ERROR, reason or str(status))
            span.end(end_time=int(ended_at * 1e9))
            self.bus.emit(
                RunEnded(
                    run_id,
                    pipeline,
                    status,
                    started_at,
                    ended_at,
                    max(0.0, ended_at - started_at),
                    trigger,
                    version,
                    reason or None,
                    outcome,
                    durable,
                )
            )
        except Exception:
            log.exception("pipewarden could not record the end of run %s", run_id)

    def child(self, name: str, *labels: Any) -> Any:
        """The labelled child of a catalogue metric (the scheduler counts its triggers with it)."""
        return self.run_metrics.child(name, *labels)

    # --- failures of pipewarden's own outputs ----------------------------------------------

    def export_error(
        self, exporter: str, exc: BaseException | None, *pipelines: str, pipeline: str | None = None
    ) -> None:
        """Count a failed export (once per pipeline it concerned) and warn once per exporter; never raises."""
        try:
            names = (*pipelines, *([pipeline] if pipeline is not None else [])) or ("",)
            for p in names:
                self.run_metrics.export_error(p, exporter)
                for hook in self.on_export_error:
                    hook(exporter, p)
            self._warn_once(
                exporter,
                "pipewarden could not export to %s (%s); the pipeline goes on, further "
                "failures are only counted in pipewarden_export_errors_total",
                exporter,
                exc or "export failed",
            )
        except Exception:
            pass

    def _listener_failed(self, listener: str, reason: str, exc: BaseException | None, pipeline: str = "") -> None:
        self.run_metrics.listener_error(pipeline, listener, reason)

    def _store_failed(self, exc: BaseException) -> None:
        self._warn_once(
            "store", "pipewarden could not read the run store (%s); KPIs start from this process's runs", exc
        )

    def _warn_once(self, key: str, msg: str, *args: Any) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        log.warning(msg, *args)

    # --- the end ------------------------------------------------------------------------

    def flush(self, timeout: float = DEFAULT_EXIT_TIMEOUT) -> bool:
        """Deliver everything pending: listeners, spans, and metric outputs that changed since. Never raises."""
        deadline = time.monotonic() + timeout
        ok = self.bus.flush(timeout)
        try:
            ok = self.tracer_provider.force_flush(int(max(0.0, deadline - time.monotonic()) * 1000)) and ok
        except Exception:
            log.debug("span flush failed", exc_info=True)
        if self.outputs is not None:
            # Errors of the span exporters above are counted now; they travel with the pipeline's samples.
            ok = self.outputs.force_flush(max(0.0, deadline - time.monotonic())) and ok
        return ok

    def shutdown(self, timeout: float = DEFAULT_EXIT_TIMEOUT) -> None:
        """Flush, then stop the listeners, the span processors and the scrape endpoint; idempotent."""
        self.flush(timeout)
        if self.alerts is not None:  # its notifications go out before the process leaves
            self.alerts.stop(min(timeout, 5.0))
            self.alerts = None
        self.bus.close(0.0)
        try:
            self.tracer_provider.shutdown()
        except Exception:
            log.debug("tracer provider shutdown failed", exc_info=True)
        if self.outputs is not None:
            self.outputs.shutdown()
        if self.server is not None and hasattr(self.server, "close"):
            self.server.close()
            self.server = None


def _open_store(home: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> Any:
    """The run store in force (``PIPEWARDEN_STORE`` of ``env``, else SQLite under ``home``), or None (with one
    warning) when it cannot be opened."""
    from agent.errors import ConfigError, StoreError
    from agent.store import RunStore

    try:
        return RunStore.default(home, env=env)
    except (StoreError, ConfigError) as exc:
        log.warning("pipewarden runs without history: %s", exc)
        return None


_default: Telemetry | None = None
_default_lock = threading.Lock()


def get_telemetry() -> Telemetry:
    """The process default, built from the environment on first use and flushed at exit."""
    global _default
    tel = _default
    if tel is None:
        with _default_lock:
            if _default is None:
                _default = Telemetry.from_env()
                atexit.register(_shutdown_default)
            tel = _default
    return tel


def _shutdown_default() -> None:
    tel = _default
    if tel is not None:
        tel.shutdown()


def set_telemetry(tel: Telemetry | None) -> Telemetry | None:
    """Replace the process default (None: rebuild from the environment on next use); returns the old one."""
    global _default
    with _default_lock:
        old, _default = _default, tel
    return old
