"""Prometheus delivery: the ``/metrics`` scrape endpoint, Pushgateway pushes, textfile output.

Three ways for the samples of a :class:`~exporters.metrics.Metrics` registry to reach
Prometheus, one per kind of process:

- a daemon or long-lived worker serves ``/metrics`` (:func:`serve_metrics`);
- a short-lived script pushes to a Pushgateway when a run ends (:func:`push`);
- a cron job on a host with node_exporter writes a textfile (:func:`write_textfile`).

Nothing here listens or sends unless called; :class:`PrometheusSettings` reads which of
them the environment asks for. Push and textfile failures never reach the pipeline: they
are logged once per exporter, counted in ``pipewarden_export_errors_total`` and swallowed.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, pushadd_to_gateway, start_http_server
from prometheus_client import write_to_textfile as _write_to_textfile
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporters.metrics import Metrics

if TYPE_CHECKING:
    from exporters.tracing import ErrorHook

__all__ = [
    "PIPEWARDEN_METRICS_ADDR",
    "PIPEWARDEN_METRICS_PORT",
    "PIPEWARDEN_PUSHGATEWAY_URL",
    "PIPEWARDEN_PUSH_TIMEOUT",
    "PIPEWARDEN_TEXTFILE_DIR",
    "ExportErrors",
    "MetricsEndpoint",
    "PipelineView",
    "PrometheusSettings",
    "push",
    "serve_metrics",
    "textfile_name",
    "write_textfile",
]

# The same names as agent.settings (a test keeps them equal): exporters import nothing of agent.
#: Port of the ``/metrics`` scrape endpoint; setting it starts the endpoint.
PIPEWARDEN_METRICS_PORT = "PIPEWARDEN_METRICS_PORT"
#: Address the scrape endpoint binds; default ``127.0.0.1``.
PIPEWARDEN_METRICS_ADDR = "PIPEWARDEN_METRICS_ADDR"
#: Pushgateway base URL (``http://host:9091``); setting it pushes metrics at the end of each run.
PIPEWARDEN_PUSHGATEWAY_URL = "PIPEWARDEN_PUSHGATEWAY_URL"
#: Seconds a push may take before it is abandoned; default 2.
PIPEWARDEN_PUSH_TIMEOUT = "PIPEWARDEN_PUSH_TIMEOUT"
#: node_exporter textfile-collector directory; setting it writes one ``.prom`` file per pipeline.
PIPEWARDEN_TEXTFILE_DIR = "PIPEWARDEN_TEXTFILE_DIR"

DEFAULT_ADDR = "127.0.0.1"
DEFAULT_PUSH_TIMEOUT = 2.0
#: Families a failed run leaves out of its push, so the gateway keeps the last success time.
_SUCCESS_ONLY_SUFFIX = "_last_success_timestamp_seconds"
_EXPORT_ERRORS = "pipewarden_export_errors"

logger = logging.getLogger("pipewarden.exporters")

Registry = CollectorRegistry | Metrics


# --- settings -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrometheusSettings:
    """Which Prometheus outputs the environment asks for; ``None`` means off.

    >>> s = PrometheusSettings.from_env({"PIPEWARDEN_METRICS_PORT": "9464"})
    >>> (s.metrics_port, s.metrics_addr, s.pushgateway_url, s.textfile_dir)
    (9464, '127.0.0.1', None, None)
    >>> PrometheusSettings.from_env({"PIPEWARDEN_METRICS_PORT": "http"})
    Traceback (most recent call last):
    ...
    ValueError: PIPEWARDEN_METRICS_PORT must be an integer port from 0 to 65535 — got 'http'
    """

    metrics_port: int | None = None
    metrics_addr: str = DEFAULT_ADDR
    pushgateway_url: str | None = None
    push_timeout: float = DEFAULT_PUSH_TIMEOUT
    textfile_dir: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> PrometheusSettings:
        """Read the ``PIPEWARDEN_*`` variables; an empty value counts as unset.

        Every invalid value is reported in one ``ValueError``, one line per variable.
        """
        problems: list[str] = []

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        port: int | None = None
        if (raw := get(PIPEWARDEN_METRICS_PORT)) is not None:
            try:
                port = int(raw)
            except ValueError:
                port = -1
            if not 0 <= port <= 65535:
                problems.append(f"{PIPEWARDEN_METRICS_PORT} must be an integer port from 0 to "
                                f"65535 — got {raw!r}")
                port = None

        timeout = DEFAULT_PUSH_TIMEOUT
        if (raw := get(PIPEWARDEN_PUSH_TIMEOUT)) is not None:
            try:
                timeout = float(raw)
            except ValueError:
                timeout = math.nan
            if not (math.isfinite(timeout) and timeout > 0):
                problems.append(f"{PIPEWARDEN_PUSH_TIMEOUT} must be a positive number of seconds "
                                f"(e.g. 2 or 0.5) — got {raw!r}")
                timeout = DEFAULT_PUSH_TIMEOUT

        url = get(PIPEWARDEN_PUSHGATEWAY_URL)
        if url is not None and "://" in url and not url.startswith(("http://", "https://")):
            problems.append(f"{PIPEWARDEN_PUSHGATEWAY_URL} must be an http:// or https:// URL "
                            f"such as http://localhost:9091 — got {url!r}")

        textfile = get(PIPEWARDEN_TEXTFILE_DIR)
        if problems:
            raise ValueError("\n".join(problems))
        return cls(
            metrics_port=port,
            metrics_addr=get(PIPEWARDEN_METRICS_ADDR) or DEFAULT_ADDR,
            pushgateway_url=url,
            push_timeout=timeout,
            textfile_dir=Path(textfile) if textfile else None,
        )


# --- scrape endpoint ------------------------------------------------------------------------


@dataclass(slots=True)
class MetricsEndpoint:
    """A running ``/metrics`` endpoint: the bound port, and ``close()``.

    >>> endpoint = serve_metrics(Metrics().registry, port=0)
    >>> endpoint.port > 0 and endpoint.url.startswith("http://127.0.0.1:")
    True
    >>> endpoint.close()

    It unpacks like prometheus_client's ``(server, thread)`` pair and is a context manager.
    """

    server: WSGIServer
    thread: threading.Thread
    addr: str
    port: int

    @property
    def url(self) -> str:
        """The scrape URL, ``http://addr:port/metrics``."""
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join()
        self.server.server_close()

    def __iter__(self) -> Iterator[Any]:
        return iter((self.server, self.thread))

    def __enter__(self) -> MetricsEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_metrics(registry: Registry, *, port: int, addr: str = DEFAULT_ADDR) -> MetricsEndpoint:
    """Serve ``registry`` at ``http://addr:port/metrics`` from a daemon thread.

    ``port=0`` binds a free port (read it from ``.port``). Errors binding the port raise:
    the caller asked for the endpoint explicitly and must hear that it is not there.
    """
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"serve_metrics port must be an integer from 0 to 65535 — got {port!r}")
    server, thread = start_http_server(port, addr=addr, registry=_registry_of(registry))
    return MetricsEndpoint(server=server, thread=thread, addr=addr, port=server.server_port)


# --- push and textfile ----------------------------------------------------------------------


class PipelineView:
    """A read-only collector showing one pipeline's samples of another collector.

    >>> m = Metrics()
    >>> m["pipewarden_pipeline_runs_total"].labels("orders", "success").inc()
    >>> m["pipewarden_pipeline_runs_total"].labels("billing", "success").inc()
    >>> view = CollectorRegistry()
    >>> view.register(PipelineView(m.registry, "orders"))
    >>> view.get_sample_value("pipewarden_pipeline_runs_total",
    ...                       {"pipeline": "billing", "status": "success"}) is None
    True

    Samples without a ``pipeline`` label (agent-wide metrics) are left out, so files and
    push groups of several pipelines never hold the same series twice. ``drop_suffixes``
    leaves out whole families by name.
    """

    def __init__(self, source: Collector, pipeline: str, *,
                 drop_suffixes: Iterable[str] = ()) -> None:
        self.source = source
        self.pipeline = pipeline
        self.drop_suffixes = tuple(drop_suffixes)

    def collect(self) -> Iterable[Metric]:
        for family in self.source.collect():
            if self.drop_suffixes and family.name.endswith(self.drop_suffixes):
                continue
            samples = [s for s in family.samples if s.labels.get("pipeline") == self.pipeline]
            if samples:
                view = Metric(family.name, family.documentation, family.type, family.unit)
                view.samples = samples
                yield view

    def describe(self) -> Iterable[Metric]:
        return ()  # nothing to check at registration; collect() decides per call


@dataclass
class ExportErrors:
    """Counts and logs export failures: one warning per exporter per instance, a count for each.

    >>> errors = ExportErrors()
    >>> m = Metrics()
    >>> errors.report("textfile", m.registry, OSError("disk full"))
    >>> errors.report("textfile", m.registry, OSError("disk full"))
    >>> m.sample("pipewarden_export_errors_total", exporter="textfile")
    2.0

    The module keeps one instance for the process (``push`` and ``write_textfile`` use it
    unless given their own), so a pipeline failing every minute logs one line, not thousands.
    """

    _warned: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def report(self, exporter: str, registry: Collector, error: BaseException) -> None:
        """Count ``error`` in ``registry`` (if it has the metric) and warn once for ``exporter``."""
        counter = _export_errors_counter(registry)
        if counter is not None:
            counter.labels(exporter).inc()
        with self._lock:
            first = exporter not in self._warned
            self._warned.add(exporter)
        if first:
            logger.warning("%s export failed (further failures are counted in "
                           "pipewarden_export_errors_total, not logged): %s: %s",
                           exporter, type(error).__name__, error)


_ERRORS = ExportErrors()


def push(
    registry: Registry,
    url: str,
    *,
    pipeline: str,
    instance: str | None = None,
    success: bool,
    timeout: float = DEFAULT_PUSH_TIMEOUT,
    job: str = "pipewarden",
    errors: ExportErrors | None = None,
    on_error: ErrorHook | None = None,
) -> bool:
    """Push ``pipeline``'s samples to the Pushgateway at ``url``; ``True`` if it took them.

    The group is ``{job, pipeline, instance}`` (``instance`` defaults to the host name).
    POST semantics: families this push leaves out stay in the gateway. A failed run
    (``success=False``) leaves out every ``*_last_success_timestamp_seconds`` family, so
    the gateway keeps the time of the last success. Never raises: a failure is logged
    once, counted as ``pipewarden_export_errors_total{exporter="pushgateway"}``, and
    ``False`` is returned. ``timeout`` bounds the whole request.
    """
    source = _registry_of(registry)
    view = CollectorRegistry(auto_describe=False)
    view.register(PipelineView(source, pipeline,
                               drop_suffixes=() if success else (_SUCCESS_ONLY_SUFFIX,)))
    key = {"pipeline": pipeline, "instance": instance or socket.gethostname()}
    try:
        pushadd_to_gateway(url, job=job, registry=view, grouping_key=key, timeout=timeout)
    except Exception as exc:  # telemetry never breaks the host program
        _report("pushgateway", source, exc, errors, on_error)
        return False
    return True


def textfile_name(pipeline: str) -> str:
    """The file name for ``pipeline``: ``pipewarden_<name>.prom``, safe on any filesystem.

    >>> textfile_name("orders"), textfile_name("sales/eu")
    ('pipewarden_orders.prom', 'pipewarden_sales_eu-8a1a4e26.prom')

    A name that had to be changed gets a short hash so ``a/b`` and ``a_b`` never share a file.
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", pipeline).strip(".") or "_"
    if safe != pipeline:
        safe += "-" + hashlib.sha256(pipeline.encode()).hexdigest()[:8]
    return f"pipewarden_{safe}.prom"


def write_textfile(
    registry: Registry,
    directory: str | os.PathLike[str],
    *,
    pipeline: str,
    errors: ExportErrors | None = None,
    on_error: ErrorHook | None = None,
) -> Path | None:
    """Write ``pipeline``'s samples for node_exporter's textfile collector; the path, or ``None``.

    The file (:func:`textfile_name`) is written to a temporary name in the same directory
    and renamed over the old one, so node_exporter never reads half a file. The directory
    must exist. Never raises: a failure is logged once, counted as
    ``pipewarden_export_errors_total{exporter="textfile"}``, and ``None`` is returned.
    """
    source = _registry_of(registry)
    path = Path(directory) / textfile_name(pipeline)
    view = CollectorRegistry(auto_describe=False)
    view.register(PipelineView(source, pipeline))
    try:
        _write_to_textfile(str(path), view)
    except Exception as exc:  # telemetry never breaks the host program
        _report("textfile", source, exc, errors, on_error)
        return None
    return path


def _report(exporter: str, registry: CollectorRegistry, exc: BaseException, errors: ExportErrors | None,
            on_error: ErrorHook | None) -> None:
    """Hand a failure to the caller's hook (an agent's Telemetry counts and warns itself), else to ``errors``."""
    if on_error is not None:
        on_error(exporter, exc)
    else:
        (errors or _ERRORS).report(exporter, registry, exc)


def _registry_of(registry: Registry) -> CollectorRegistry:
    return registry.registry if isinstance(registry, Metrics) else registry


def _export_errors_counter(registry: Collector) -> Counter | None:
    # prometheus_client has no public lookup of a registered collector by name.
    collectors = getattr(registry, "_names_to_collectors", {})
    counter = collectors.get(_EXPORT_ERRORS)
    if isinstance(counter, Counter) and counter._labelnames == ("exporter",):
        return counter
    return None
