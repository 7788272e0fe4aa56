"""Real servers for tests: Prometheus, Pushgateway, Alertmanager, Dask; OTLP and webhook receivers.

The programs are the Debian packages' binaries (``.ci/run`` installs them), started on
loopback ports with their state in a temporary directory, and stopped after. A missing
binary skips the test on a laptop and fails it under CI (see :func:`in_ci`), so CI can
never pass by skipping. The fixtures in ``tests/conftest.py`` wrap these classes.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

__all__ = [
    "AlertmanagerServer",
    "DaskCluster",
    "OtlpReceiver",
    "ProcessServer",
    "PrometheusServer",
    "PushgatewayServer",
    "ReceivedSpan",
    "RecordedRequest",
    "RecordingReceiver",
    "StartError",
    "TricklingServer",
    "WebhookReceiver",
    "free_port",
    "http_get",
    "in_ci",
    "live_servers",
    "require_binary",
    "require_module",
    "start_dask_scheduler",
    "require_postgres",
    "wait_until",
]

T = TypeVar("T")

BINARIES: dict[str, tuple[str, ...]] = {
    "prometheus": ("prometheus",),
    "promtool": ("promtool",),
    "pushgateway": ("prometheus-pushgateway", "pushgateway"),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
    "amtool": ("amtool",),
    "chromium": ("chromium", "chromium-browser"),
}
_STARTUP_TIMEOUT = 30.0
_LIVE: list[ProcessServer] = []


def in_ci(env: Mapping[str, str] = os.environ) -> bool:
    """True when the ``CI`` variable is set to anything but empty, ``0`` or ``false``."""
    return env.get("CI", "").strip().lower() not in ("", "0", "false")


def require_binary(tool: str) -> str:
    """The path of ``tool`` (a key of ``BINARIES``); skip the test if absent, fail it under CI."""
    names = BINARIES[tool]
    for name in names:
        if path := shutil.which(name):
            return path
    reason = (
        f"{tool} is not installed (looked for {', '.join(names)} on PATH); install the Debian packages as .ci/run does"
    )
    if in_ci():
        pytest.fail(f"{reason} — CI must not skip tests that need it", pytrace=False)
    pytest.skip(reason)


def require_postgres() -> Path:
    """The directory of PostgreSQL's initdb and pg_ctl, with psycopg importable; skip the test if not, fail it
    under CI."""
    import pg_cluster

    bindir = pg_cluster.find_bindir()
    problem = None
    if bindir is None:
        problem = "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH)"
    else:
        try:
            import psycopg  # noqa: F401
            import psycopg_pool  # noqa: F401
        except ImportError as exc:
            problem = f"psycopg is not installed ({exc}); pip install -e '.[postgresql]'"
    if problem is None:
        assert bindir is not None
        return bindir
    reason = f"{problem}; install them as .ci/run does"
    if in_ci():
        pytest.fail(f"{reason} — CI must not skip tests that need it", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, *, timeout: float = 5.0) -> bytes:
    """The body of a GET; raises ``urllib.error`` errors on failure."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return bytes(resp.read())


def wait_until(
    probe: Callable[[], T | None], *, timeout: float = 20.0, interval: float = 0.2, what: str = "condition"
) -> T:
    """Call ``probe`` until it returns something other than ``None``; return that.

    Exceptions from ``probe`` count as "not yet"; after ``timeout`` seconds an
    ``AssertionError`` names ``what`` and the last exception seen.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = probe()
            if result is not None:
                return result
        except Exception as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}" + (f"; last error: {last!r}" if last else "")
            )
        time.sleep(interval)


def live_servers() -> list[ProcessServer]:
    """The processes started by this module and not yet stopped (for failure reports)."""
    return list(_LIVE)


# --- processes ------------------------------------------------------------------------------


@dataclass
class ProcessServer:
    """One real program listening on ``127.0.0.1:port``, its output in ``log_path``."""

    name: str
    argv: list[str]
    port: int
    workdir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str = "/-/ready", timeout: float = _STARTUP_TIMEOUT) -> None:
        """Start the program and wait until ``ready_path`` answers; raise ``StartError`` if not."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        _LIVE.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                urllib.request.urlopen(self.url + ready_path, timeout=1).close()
                return
            except OSError:  # refused, or 503 while it loads
                time.sleep(0.1)
        code = self.proc.poll()
        self.stop()
        state = f"exited with code {code}" if code is not None else f"not ready after {timeout}s"
        raise StartError(f"{self.name} {state}: {' '.join(self.argv)}\n--- {self.log_path} ---\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate the program and wait for it (kill after 10 s); safe to call twice."""
        if self in _LIVE:
            _LIVE.remove(self)
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines the program printed."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def get(self, path: str) -> bytes:
        return http_get(self.url + path)

    def get_json(self, path: str) -> Any:
        return json.loads(self.get(path))


class StartError(RuntimeError):
    """A server process exited or never became ready; the message holds its log."""


def _start(
    name: str, argv_for_port: Callable[[int], list[str]], workdir: Path, ready_path: str = "/-/ready", attempts: int = 3
) -> ProcessServer:
    """Start ``name`` on a free port; retry elsewhere if the port was taken meanwhile."""
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, attempts + 1):
        port = free_port()
        server = ProcessServer(name, argv_for_port(port), port, workdir, workdir / f"{name}-{attempt}.log")
        try:
            server.start(ready_path)
            return server
        except StartError as exc:
            if attempt == attempts or "address already in use" not in str(exc):
                pytest.fail(str(exc), pytrace=False)
    raise AssertionError("unreachable")


@dataclass
class PrometheusServer:
    """A Prometheus scraping ``targets`` every second; query it with :meth:`query`.

    ``targets`` are ``host:port`` strings, all in job ``pipewarden`` with ``metrics_path``
    ``/metrics``. The web lifecycle API is on, so :meth:`reload` applies a rewritten config.
    """

    process: ProcessServer
    config_path: Path

    @property
    def url(self) -> str:
        return self.process.url

    def query(self, expr: str, *, at: float | None = None) -> list[dict[str, Any]]:
        """The ``result`` list of an instant query (at Unix time ``at``, default now); raises on a query error."""
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        body = self.process.get_json("/api/v1/query?" + urllib.parse.urlencode(params))
        if body.get("status") != "success":
            raise AssertionError(f"query {expr!r} failed: {body}")
        return list(body["data"]["result"])

    def wait_for_value(self, expr: str, expected: float, *, timeout: float = 30.0) -> float:
        """Poll ``expr`` until its single result equals ``expected``; return the value."""

        def probe() -> float | None:
            result = self.query(expr)
            if len(result) == 1 and float(result[0]["value"][1]) == expected:
                return expected
            return None

        try:
            return wait_until(probe, timeout=timeout, what=f"{expr} == {expected}")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; last result: {self._safe_query(expr)}; targets: {self._safe_targets()}"
            ) from None

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health and last error."""
        return list(self.process.get_json("/api/v1/targets")["data"]["activeTargets"])

    def reload(self, targets: Sequence[str], **config: Any) -> None:
        """Rewrite the config (same arguments as :func:`prometheus_config`) and apply it."""
        self.config_path.write_text(prometheus_config(targets, **config))
        request = urllib.request.Request(self.url + "/-/reload", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def _safe_query(self, expr: str) -> object:
        try:
            return self.query(expr)
        except Exception as exc:
            return exc

    def _safe_targets(self) -> object:
        try:
            return [(t["scrapeUrl"], t["health"], t["lastError"]) for t in self.targets()]
        except Exception as exc:
            return exc


def prometheus_config(
    targets: Sequence[str],
    *,
    scrape_interval: str = "1s",
    rule_files: Iterable[str | os.PathLike[str]] = (),
    alertmanagers: Sequence[str] = (),
    honor_labels: bool = False,
) -> str:
    """A prometheus.yml (JSON is valid YAML) scraping ``targets`` as job ``pipewarden``.

    ``honor_labels`` keeps the job and instance labels of the samples, as a Pushgateway's scrape needs.
    """
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
        },
        "scrape_configs": [
            {
                "job_name": "pipewarden",
                "metrics_path": "/metrics",
                "honor_labels": honor_labels,
                "static_configs": [{"targets": list(targets)}],
            }
        ],
    }
    if rules := [str(p) for p in rule_files]:
        config["rule_files"] = rules
    if alertmanagers:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}
    return json.dumps(config, indent=2)


def start_prometheus(workdir: Path, targets: Sequence[str], **config: Any) -> PrometheusServer:
    """Start Prometheus in ``workdir`` (config, TSDB and log live there)."""
    binary = require_binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(prometheus_config(targets, **config))
    process = _start(
        "prometheus",
        lambda port: [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--log.level=info",
        ],
        workdir,
    )
    return PrometheusServer(process, config_path)


@dataclass
class PushgatewayServer:
    """A Pushgateway; :meth:`groups` reads what it holds through its JSON API."""

    process: ProcessServer

    @property
    def url(self) -> str:
        return self.process.url

    def groups(self) -> list[dict[str, Any]]:
        """``/api/v1/metrics``: one entry per group, with ``labels`` and one key per family."""
        body = self.process.get_json("/api/v1/metrics")
        return list(body.get("data") or [])

    def metrics_text(self) -> str:
        """What Prometheus would scrape from the gateway."""
        return self.process.get("/metrics").decode()


def start_pushgateway(workdir: Path) -> PushgatewayServer:
    binary = require_binary("pushgateway")
    return PushgatewayServer(
        _start(
            "pushgateway",
            lambda port: [
                binary,
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=info",
                # Debian's build persists to /var/lib/prometheus/pushgateway.data by default, which
                # would carry one test's groups into the next gateway: keep everything in memory.
                "--persistence.file=",
            ],
            workdir,
        )
    )


# --- in-process HTTP receivers ---------------------------------------------------------------


class _Receiver:
    """A ThreadingHTTPServer on 127.0.0.1, port 0, in a daemon thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.receiver = self  # type: ignore[attr-defined]
        self.port = int(self._server.server_address[1])
        self.lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name=f"{type(self).__name__}:{self.port}"
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
        return body

    def _reply(self, code: int, body: bytes = b"", content_type: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class WebhookReceiver(_Receiver):
    """Collects the JSON bodies Alertmanager posts to ``url``."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        super().__init__(_WebhookHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook"

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every notification received, in arrival order."""
        with self.lock:
            return [a for p in self.payloads for a in p.get("alerts", [])]


class _WebhookHandler(_QuietHandler):
    def do_POST(self) -> None:
        receiver: WebhookReceiver = self.server.receiver  # type: ignore[attr-defined]
        payload = json.loads(self._body() or b"{}")
        with receiver.lock:
            receiver.payloads.append(payload)
        self._reply(200)


@dataclass(frozen=True)
class RecordedRequest:
    """One request a :class:`RecordingReceiver` answered: path, headers and the raw body bytes."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RecordingReceiver(_Receiver):
    """Records every POST with its headers and raw body (to check signatures); answers ``statuses`` in turn.

    ``statuses`` is a list of HTTP codes used one per request (then 200);
    while ``gate`` is cleared, requests wait for it (a receiver that hangs).
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.statuses: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()  # set when a request is held at the gate
        super().__init__(_RecordingHandler)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self) -> list[RecordedRequest]:
        with self.lock:
            return list(self.requests)

    def wait_for(self, count: int, *, timeout: float = 10.0) -> list[RecordedRequest]:
        """Poll until at least ``count`` requests arrived; return them all."""
        return wait_until(
            lambda: r if len(r := self.received()) >= count else None,
            timeout=timeout,
            what=f"{count} requests at {self.url('')}",
        )

    def close(self) -> None:
        """Stop at once: a connection wakes the server loop instead of waiting out its 0.5 s poll."""
        self.gate.set()
        stopper = threading.Thread(target=self._server.shutdown)
        stopper.start()
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        stopper.join()
        self._server.server_close()
        self._thread.join()


class _RecordingHandler(_QuietHandler):
    def do_POST(self) -> None:
        receiver: RecordingReceiver = self.server.receiver  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not receiver.gate.is_set():
            receiver.waiting.set()
            receiver.gate.wait(30)
        with receiver.lock:
            receiver.requests.append(RecordedRequest(self.path, dict(self.headers.items()), body))
            status = receiver.statuses.pop(0) if receiver.statuses else 200
        self._reply(status, b"ok" if status < 300 else b"told to fail")


class TricklingServer:
    """Accepts connections, reads the request, then answers one byte every ``interval`` seconds.

    ``sent`` counts the bytes it managed to send before the client went away;
    the answer is a valid 200 response whose body is ``length`` bytes long.
    """

    def __init__(self, *, interval: float = 0.05, length: int = 2000) -> None:
        self.interval = interval
        self.answer = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            + f"Content-Length: {length}\r\n\r\n".encode()
            + b"x" * length
        )
        self.sent = 0
        self.closed_by_client = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen()
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name=f"trickle:{self.port}")
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(65536)
                for byte in self.answer:
                    if self._stop.is_set():
                        return
                    conn.sendall(bytes([byte]))
                    self.sent += 1
                    time.sleep(self.interval)
            except OSError:
                self.closed_by_client.set()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(2)


@dataclass
class AlertmanagerServer:
    """An Alertmanager routing every alert to :attr:`webhook` (group_wait 0s, group_interval 1s)."""

    process: ProcessServer
    webhook: WebhookReceiver
    config_path: Path

    @property
    def url(self) -> str:
        return self.process.url

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Send alerts as Prometheus would (``POST /api/v2/alerts``)."""
        request = urllib.request.Request(
            self.url + "/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=5).close()

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds (``GET /api/v2/alerts``)."""
        return list(self.process.get_json("/api/v2/alerts"))


def alertmanager_config(webhook_url: str) -> str:
    """An alertmanager.yml with one webhook receiver and fast grouping for tests."""
    return json.dumps(
        {
            "route": {
                "receiver": "webhook",
                "group_by": ["alertname"],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [{"name": "webhook", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
        },
        indent=2,
    )


def start_alertmanager(workdir: Path, webhook: WebhookReceiver) -> AlertmanagerServer:
    binary = require_binary("alertmanager")
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "alertmanager.yml"
    config_path.write_text(alertmanager_config(webhook.url))
    process = _start(
        "alertmanager",
        lambda port: [
            binary,
            f"--config.file={config_path}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip port: one instance, nothing else to bind
            "--log.level=info",
        ],
        workdir,
    )
    return AlertmanagerServer(process, webhook, config_path)


# --- OTLP/HTTP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as an OTLP/HTTP receiver decoded it, with its resource and scope flattened in."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: dict[str, Any]
    status_code: int
    status_message: str
    events: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""


class OtlpReceiver(_Receiver):
    """A minimal OTLP/HTTP trace receiver: ``POST /v1/traces`` with protobuf, gzip or not.

    Point an ``OTLPSpanExporter(endpoint=receiver.endpoint + "/v1/traces")`` (or
    ``OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint``) at it; read :meth:`spans`.
    Set ``status`` to answer with another HTTP code (e.g. 503) to test export failures.
    """

    def __init__(self) -> None:
        self.requests: list[Any] = []  # ExportTraceServiceRequest messages
        self.headers: list[dict[str, str]] = []
        self.status = 200
        super().__init__(_OtlpHandler)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far, in arrival order."""
        with self.lock:
            requests = list(self.requests)
        return [span for request in requests for span in _flatten(request)]

    def wait_for_spans(self, count: int, *, timeout: float = 10.0) -> list[ReceivedSpan]:
        """Poll until at least ``count`` spans arrived; return them all."""
        return wait_until(
            lambda: s if len(s := self.spans()) >= count else None,
            timeout=timeout,
            what=f"{count} spans at {self.endpoint}",
        )

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.headers.clear()


class _OtlpHandler(_QuietHandler):
    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        receiver: OtlpReceiver = self.server.receiver  # type: ignore[attr-defined]
        if self.path.rstrip("/") != "/v1/traces":
            self._reply(404, b"only /v1/traces is served here")
            return
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type != "application/x-protobuf":
            self._reply(415, f"Content-Type {content_type!r} unsupported; send application/x-protobuf".encode())
            return
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(self._body())
        with receiver.lock:
            receiver.requests.append(request)
            receiver.headers.append(dict(self.headers.items()))
        if receiver.status != 200:
            self._reply(receiver.status, b"told to fail")
            return
        self._reply(200, trace_service_pb2.ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")


def _flatten(request: Any) -> Iterable[ReceivedSpan]:
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                yield ReceivedSpan(
                    name=s.name,
                    trace_id=s.trace_id.hex(),
                    span_id=s.span_id.hex(),
                    parent_span_id=s.parent_span_id.hex(),
                    kind=int(s.kind),
                    start_time_unix_nano=int(s.start_time_unix_nano),
                    end_time_unix_nano=int(s.end_time_unix_nano),
                    attributes=_attributes(s.attributes),
                    status_code=int(s.status.code),
                    status_message=s.status.message,
                    events=[
                        {
                            "name": e.name,
                            "attributes": _attributes(e.attributes),
                            "time_unix_nano": int(e.time_unix_nano),
                        }
                        for e in s.events
                    ],
                    links=[
                        {
                            "trace_id": ln.trace_id.hex(),
                            "span_id": ln.span_id.hex(),
                            "attributes": _attributes(ln.attributes),
                        }
                        for ln in s.links
                    ],
                    resource=resource,
                    scope=scope_spans.scope.name,
                )


def _attributes(pairs: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in pairs}


def _any_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind)


# --- Dask distributed -------------------------------------------------------------------------


def require_module(name: str) -> None:
    """Skip the test when the Python package ``name`` is not installed; fail it under CI."""
    if importlib.util.find_spec(name) is not None:
        return
    reason = f"the Python package {name} is not installed; pip install 'pipewarden[dask]' as .ci/run does"
    if in_ci():
        pytest.fail(f"{reason} — CI must not skip tests that need it", pytrace=False)
    pytest.skip(reason)


def dask_cli(command: str, *, blocked: Sequence[str] = ()) -> list[str]:
    """The ``dask`` CLI of this interpreter's environment (``python -m dask scheduler|worker``).

    ``blocked`` names modules the program cannot import: a scheduler or worker installed without them.
    """
    require_module("distributed")
    if not blocked:
        return [sys.executable, "-m", "dask", command]
    module = {"scheduler": "dask_scheduler", "worker": "dask_worker"}[command]
    code = (
        f"import sys; sys.modules.update(dict.fromkeys({list(blocked)!r})); "
        f"from distributed.cli.{module} import main; sys.argv[0] = 'dask {command}'; main()"
    )
    return [sys.executable, "-c", code]


@dataclass
class DaskCluster:
    """A real ``dask scheduler`` on loopback and the ``dask worker`` processes started against it.

    ``address`` is the scheduler's ``tcp://127.0.0.1:PORT``; the scheduler's HTTP server
    (``/health``, ``/json/identity.json``) is ``scheduler.port``. Every program runs from
    ``workdir`` with ``env`` (``PYTHONPATH`` names this repository, so they load pipewarden's
    code under test) in its own session, so :meth:`stop` leaves none of its processes behind.
    """

    scheduler: ProcessServer
    address: str
    workdir: Path
    env: dict[str, str]
    worker_groups: list[ProcessServer] = field(default_factory=list)

    def workers(self) -> dict[str, Any]:
        """The workers the scheduler knows, by address."""
        return dict(self.scheduler.get_json("/json/identity.json")["workers"])

    def add_workers(self, n: int = 1, *, nthreads: int = 1, wait: bool = True) -> ProcessServer:
        """Start one ``dask worker`` process with ``n`` worker processes (each under a nanny that restarts it)."""
        before = len(self.workers())
        group = ProcessServer(
            "dask-worker",
            [
                "env",
                *(f"{k}={v}" for k, v in self.env.items()),
                *dask_cli("worker"),
                self.address,
                "--nworkers",
                str(n),
                "--nthreads",
                str(nthreads),
                "--host",
                "127.0.0.1",
                "--no-dashboard",
            ],
            0,
            self.workdir,
            self.workdir / f"dask-worker-{len(self.worker_groups) + 1}.log",
        )
        with open(group.log_path, "ab") as log:
            group.proc = subprocess.Popen(
                group.argv,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _LIVE.append(group)
        self.worker_groups.append(group)
        if wait:
            self.wait_for_workers(before + n, what=f"{n} new Dask workers")
        return group

    def wait_for_workers(self, n: int, *, timeout: float = 60.0, what: str = "") -> None:
        wait_until(
            lambda: len(self.workers()) >= n or None,
            timeout=timeout,
            what=what or f"{n} Dask workers to register at {self.address}",
        )

    def worker_pids(self) -> set[int]:
        """The worker processes (children of the ``dask worker`` processes) that run tasks."""
        import psutil

        pids: set[int] = set()
        for group in self.worker_groups:
            if group.proc is not None and group.proc.poll() is None:
                with contextlib.suppress(psutil.Error):
                    pids |= {
                        c.pid
                        for c in psutil.Process(group.proc.pid).children()
                        if "resource_tracker" not in " ".join(c.cmdline())
                    }
        return pids

    def stop(self) -> None:
        """Stop the workers (SIGKILL to their sessions after 2 s: a task may sleep on), then the scheduler."""
        for group in self.worker_groups:
            if group in _LIVE:
                _LIVE.remove(group)
            if group.proc is None:
                continue
            with contextlib.suppress(OSError):
                os.killpg(group.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                group.proc.wait(2)
            with contextlib.suppress(OSError):
                os.killpg(group.proc.pid, signal.SIGKILL)
            group.proc.wait()
        self.scheduler.stop()


def start_dask_scheduler(
    workdir: Path, *, allowed_failures: int = 0, env: Mapping[str, str] | None = None, blocked: Sequence[str] = ()
) -> DaskCluster:
    """Start ``dask scheduler`` in ``workdir`` with no worker (add them with :meth:`DaskCluster.add_workers`).

    ``allowed_failures=0`` is the start docs/orchestrator.md asks for: a worker that dies fails the task.
    """
    repo = Path(__file__).resolve().parents[1]
    environment = {
        "PYTHONPATH": str(repo),
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": str(allowed_failures),
        **(env or {}),
    }
    tcp: dict[str, int] = {}

    def argv(http_port: int) -> list[str]:
        tcp["port"] = free_port()
        return [
            "env",
            *(f"{k}={v}" for k, v in environment.items()),
            *dask_cli("scheduler", blocked=blocked),
            "--host",
            "127.0.0.1",
            "--port",
            str(tcp["port"]),
            "--dashboard-address",
            f"127.0.0.1:{http_port}",
            "--no-dashboard",
        ]

    process = _start("dask-scheduler", argv, workdir, ready_path="/health")
    return DaskCluster(process, f"tcp://127.0.0.1:{tcp['port']}", workdir, environment)
