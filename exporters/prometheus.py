"""Prometheus delivery: the ``/metrics`` scrape endpoint, Pushgateway pushes, textfile output.

Three ways for the samples of a :class:`~exporters.metrics.Metrics` registry to reach
Prometheus, one per kind of process:

- a daemon or long-lived worker serves ``/metrics`` (:func:`serve_metrics`);
- a short-lived script pushes to a Pushgateway when a run ends (:func:`push`);
- a cron job on a host with node_exporter writes a textfile (:func:`write_textfile`).

Nothing here listens or sends unless called; :class:`PrometheusSettings` reads which of
them the environment asks for. :func:`push` and :func:`write_textfile` raise on failure;
the exporters of :mod:`exporters.outputs` call them, count every failure in
``pipewarden_export_errors_total`` with the pipeline's label, and never let one reach a run.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, push_to_gateway, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporters import http
from exporters.files import write_atomic
from exporters.metrics import Metrics

__all__ = [
    "PIPEWARDEN_METRICS_ADDR",
    "PIPEWARDEN_METRICS_PORT",
    "PIPEWARDEN_PUSHGATEWAY_URL",
    "PIPEWARDEN_PUSH_TIMEOUT",
    "PIPEWARDEN_TEXTFILE_DIR",
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
                problems.append(f"{PIPEWARDEN_METRICS_PORT} must be an integer port from 0 to 65535 — got {raw!r}")
                port = None

        timeout = DEFAULT_PUSH_TIMEOUT
        if (raw := get(PIPEWARDEN_PUSH_TIMEOUT)) is not None:
            try:
                timeout = float(raw)
            except ValueError:
                timeout = math.nan
            if not (math.isfinite(timeout) and timeout > 0):
                problems.append(
                    f"{PIPEWARDEN_PUSH_TIMEOUT} must be a positive number of seconds (e.g. 2 or 0.5) — got {raw!r}"
                )
                timeout = DEFAULT_PUSH_TIMEOUT

        url = get(PIPEWARDEN_PUSHGATEWAY_URL)
        if url is not None and "://" in url and not url.startswith(("http://", "https://")):
            problems.append(
                f"{PIPEWARDEN_PUSHGATEWAY_URL} must be an http:// or https:// URL "
                f"such as http://localhost:9091 — got {url!r}"
            )

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
    >>> m["pipewarden_dq_rows"].labels("orders", "raw").set(3)
    >>> m["pipewarden_dq_rows"].labels("billing", "raw").set(4)
    >>> view = CollectorRegistry()
    >>> view.register(PipelineView(m.registry, "orders"))
    >>> view.get_sample_value("pipewarden_dq_rows", {"pipeline": "billing", "dataset": "raw"}) is None
    True

    Samples without a ``pipeline`` label (agent-wide metrics) are left out, so files and
    push groups of several pipelines never hold the same series twice. ``drop_suffixes``
    leaves out whole families by name.
    """

    def __init__(self, source: Collector, pipeline: str, *, drop_suffixes: Iterable[str] = ()) -> None:
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


def push(
    registry: Registry,
    url: str,
    *,
    pipeline: str,
    instance: str | None = None,
    timeout: float = DEFAULT_PUSH_TIMEOUT,
    job: str = "pipewarden",
) -> None:
    """Replace ``pipeline``'s group at the Pushgateway at ``url`` with its samples in ``registry``.

    The group is ``{job, pipeline, instance}`` (``instance`` defaults to the host name).
    PUT semantics: the push carries every series of the pipeline (cumulative totals read
    from the run store, every status present), so nothing stale is left behind.
    ``timeout`` bounds the WHOLE request, however slowly the server answers: a server
    that trickles one byte a second is abandoned at the deadline. Raises on failure
    (``TimeoutError`` at the deadline); :class:`exporters.outputs.PushgatewayExporter`
    counts and swallows.
    """
    source = _registry_of(registry)
    view = CollectorRegistry(auto_describe=False)
    view.register(PipelineView(source, pipeline))
    key = {"pipeline": pipeline, "instance": instance or socket.gethostname()}
    push_to_gateway(url, job=job, registry=view, grouping_key=key, timeout=timeout, handler=_deadline_handler(timeout))


def _deadline_handler(deadline: float) -> Any:
    """A prometheus_client push handler whose request must finish within ``deadline`` seconds in all.

    The request runs in the caller's thread over sockets that re-arm their timeout with the time
    left (:mod:`exporters.http`): at the deadline the connection is closed, nothing is left behind.
    """

    def handler(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes) -> Any:
        def run() -> None:
            try:
                answer = http.request(method, url, data, dict(headers), timeout=deadline)
            except http.DeadlineExceeded:
                raise TimeoutError(f"no complete answer from {url} within {deadline:g}s") from None
            if not answer.ok:
                raise OSError(f"error talking to the Pushgateway: {answer.status} {answer.reason}")

        return run

    return handler


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


def write_textfile(registry: Registry, directory: str | os.PathLike[str], *, pipeline: str) -> Path:
    """Write ``pipeline``'s samples for node_exporter's textfile collector; returns the path.

    The file (:func:`textfile_name`) is written to a temporary name in the same directory
    and renamed over the old one, so node_exporter never reads half a file. The directory
    must exist. Raises on failure; :class:`exporters.outputs.TextfileExporter` counts and swallows.

    The file is never writable by others, whatever the umask: ``0644`` in a directory
    others can enter (node_exporter usually runs as another user and must read it),
    ``0600`` in a private one (such as the state directory).
    """
    source = _registry_of(registry)
    path = Path(directory) / textfile_name(pipeline)
    view = CollectorRegistry(auto_describe=False)
    view.register(PipelineView(source, pipeline))
    private = os.stat(path.parent).st_mode & 0o077 == 0
    write_atomic(path, generate_latest(view), mode=0o600 if private else 0o644)
    return path


def _registry_of(registry: Registry) -> CollectorRegistry:
    return registry.registry if isinstance(registry, Metrics) else registry
