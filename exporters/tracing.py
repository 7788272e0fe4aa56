"""Where spans go: a tracer provider configured from the standard ``OTEL_*`` variables.

Exporters, chosen by ``OTEL_TRACES_EXPORTER`` (comma-separated):

- ``jsonl`` (pipewarden's embedded default): spans appended, one JSON object per
  line, to ``$PIPEWARDEN_HOME/traces.jsonl``. Needs no server.
- ``otlp``: OTLP over HTTP/protobuf to ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` (+ ``/v1/traces``). The default when either
  endpoint variable is set and ``OTEL_TRACES_EXPORTER`` is not.
- ``console``: spans printed to stderr.
- ``none``: no spans leave the process.

The SDK reads ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES`` and the
sampler variables itself; it does not read ``OTEL_TRACES_EXPORTER`` when a
provider is built by hand, so this module does. ``service.name`` defaults to
``pipewarden``. Export runs on a background thread (batch processor); a
failing exporter is counted and logged once, never raised.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)

from exporters.files import PIPEWARDEN_HOME, default_home, make_private_dirs, open_private_append

__all__ = [
    "DEFAULT_OTLP_TIMEOUT",
    "DeadlineSpanExporter",
    "GuardedSpanExporter",
    "JsonLinesSpanExporter",
    "build_tracer_provider",
    "traces_exporter_names",
]

log = logging.getLogger("pipewarden.exporters")

#: Seconds an OTLP export may take (retries included) when ``OTEL_EXPORTER_OTLP_TIMEOUT``
#: is unset: a collector that is down delays the end of a script by at most this much.
DEFAULT_OTLP_TIMEOUT = 3.0
KNOWN_EXPORTERS = ("jsonl", "otlp", "console", "none")
#: Size at which ``traces.jsonl`` is rotated, and how many rotated files are kept.
DEFAULT_TRACES_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_TRACES_BACKUPS = 3

#: ``on_error(exporter, exc, pipelines)``: an export failed; ``pipelines`` are those of the spans it lost.
ErrorHook = Callable[[str, BaseException | None, Sequence[str]], None]


class JsonLinesSpanExporter(SpanExporter):
    """Append finished spans to a JSON-lines file, one compact object per span.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "traces.jsonl"
    >>> exporter = JsonLinesSpanExporter(path)
    >>> exporter.export([])
    <SpanExportResult.SUCCESS: 0>

    The file is private (``0600``, in a directory created ``0700``). When an
    append would take it past ``max_bytes`` (50 MiB), it is renamed
    ``traces.jsonl.1`` (``.1`` to ``.2`` and so on, ``backups`` files kept, the
    oldest deleted) and a new file is started. Several processes may append
    at once: each append and each rotation holds an exclusive ``flock`` on the
    file, and a writer that finds the file rotated under it reopens the new one.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_TRACES_MAX_BYTES,
        backups: int = DEFAULT_TRACES_BACKUPS,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = max(int(backups), 0)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        lines = "".join(s.to_json(indent=None) + "\n" for s in spans).encode()  # one line each
        with self._lock:
            make_private_dirs(self.path.parent)
            self._append(lines)
        return SpanExportResult.SUCCESS

    def _append(self, data: bytes) -> None:
        while True:
            fd = open_private_append(self.path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not _same_file(fd, self.path):  # rotated by another process while this one waited
                    continue
                size = os.fstat(fd).st_size
                if size and size + len(data) > self.max_bytes:
                    self._rotate()
                    continue  # the lock is on the old file: start again on the new one
                os.write(fd, data)
                return
            finally:
                os.close(fd)  # releases the lock

    def _rotate(self) -> None:
        base = str(self.path)
        if self.backups == 0:
            os.unlink(base)
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{base}.{self.backups}")
        for i in range(self.backups - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{base}.{i}", f"{base}.{i + 1}")
        os.replace(base, f"{base}.1")

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (opened.st_dev, opened.st_ino)


class GuardedSpanExporter(SpanExporter):
    """Wraps an exporter so that a failure is reported to ``on_error`` and never raised."""

    def __init__(self, inner: SpanExporter, name: str, on_error: ErrorHook | None = None) -> None:
        self.inner = inner
        self.name = name
        self.on_error = on_error

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:
            self._report(exc, spans)
            return SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._report(None, spans)
        return result

    def _report(self, exc: BaseException | None, spans: Sequence[ReadableSpan]) -> None:
        if self.on_error is not None:
            try:
                pipelines = sorted(
                    {str(p) for s in spans if (p := (s.attributes or {}).get("cicd.pipeline.name")) is not None}
                )
                self.on_error(self.name, exc, pipelines)
            except Exception:  # the hook must not break the export thread either
                log.debug("export error hook failed", exc_info=True)

    def shutdown(self) -> None:
        try:
            self.inner.shutdown()
        except Exception as exc:
            self._report(exc, ())

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        try:
            return bool(self.inner.force_flush(timeout_millis))
        except Exception as exc:
            self._report(exc, ())
            return False


class DeadlineSpanExporter(SpanExporter):
    """Gives each export of ``inner`` ``timeout`` seconds in all, however slowly the collector answers.

    The OTLP exporter's own timeout bounds each socket read, not the request: a
    collector that sends one byte a second keeps an export (and the exit of a
    finished script) waiting for as long as it likes. Here the export runs on
    a daemon thread that the caller stops waiting for at the deadline, raising
    TimeoutError (:class:`GuardedSpanExporter` counts it and warns once). While
    an abandoned export is still stuck, further exports fail at once rather
    than pile up threads.
    """

    def __init__(self, inner: SpanExporter, timeout: float) -> None:
        self.inner = inner
        self.timeout = timeout
        self._lock = threading.Lock()
        self._stuck: threading.Thread | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._within(lambda: self.inner.export(spans), "export spans")

    def shutdown(self) -> None:
        self._within(self.inner.shutdown, "shut down")

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self._within(lambda: self.inner.force_flush(timeout_millis), "flush"))

    def _within(self, call: Callable[[], Any], what: str) -> Any:
        with self._lock:
            if self._stuck is not None and self._stuck.is_alive():
                raise TimeoutError(f"could not {what}: an earlier export is still waiting for the collector")
            outcome: list[Any] = []

            def run() -> None:
                try:
                    outcome.append((True, call()))
                except BaseException as exc:  # handed to the caller below
                    outcome.append((False, exc))

            worker = threading.Thread(target=run, name="pipewarden-span-export", daemon=True)
            worker.start()
            worker.join(self.timeout)
            if not outcome:
                self._stuck = worker
                raise TimeoutError(
                    f"could not {what}: no complete answer from the collector within "
                    f"{self.timeout:g}s (OTEL_EXPORTER_OTLP_TIMEOUT)"
                )
        ok, value = outcome[0]
        if not ok:
            raise value
        return value


def traces_exporter_names(env: Mapping[str, str] | None = None) -> list[str]:
    """The exporters ``OTEL_TRACES_EXPORTER`` asks for, or the default (see module doc).

    Raises ValueError naming the variable, the unknown value and the choices.
    """
    env = os.environ if env is None else env
    raw = env.get("OTEL_TRACES_EXPORTER", "").strip()
    if not raw:
        has_endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if has_endpoint else ["jsonl"]
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in KNOWN_EXPORTERS]
    if unknown:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER: unknown exporter {unknown[0]!r}; "
            f"allowed: {', '.join(KNOWN_EXPORTERS)} (comma-separated)"
        )
    return [n for n in names if n != "none"]


def build_tracer_provider(
    env: Mapping[str, str] | None = None,
    *,
    home: str | os.PathLike[str] | None = None,
    on_error: ErrorHook | None = None,
) -> TracerProvider:
    """A tracer provider with the exporters the environment asks for.

    ``home`` is the state directory for the JSON-lines file; ``on_error`` is
    called (exporter name, exception or None) when an export fails.
    """
    env = os.environ if env is None else env
    # Resource.create also reads os.environ; what the env argument says wins over it.
    attrs: dict[str, str] = {SERVICE_NAME: "pipewarden"}
    attrs.update(_pairs(env.get("OTEL_RESOURCE_ATTRIBUTES", "")))
    if env.get("OTEL_SERVICE_NAME"):
        attrs[SERVICE_NAME] = env["OTEL_SERVICE_NAME"]
    if env is not os.environ and not _names_service(env) and _names_service(os.environ):
        del attrs[SERVICE_NAME]  # the process environment names the service; keep its name
    provider = TracerProvider(resource=Resource.create(attrs))
    for name in traces_exporter_names(env):
        exporter = _make_exporter(name, env, home)
        provider.add_span_processor(BatchSpanProcessor(GuardedSpanExporter(exporter, name, on_error)))
    return provider


def _pairs(raw: str) -> dict[str, str]:
    """``k1=v1,k2=v2`` (the W3C-baggage-like form of OTEL_RESOURCE_ATTRIBUTES and OTLP headers)."""
    out: dict[str, str] = {}
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return out


def _names_service(env: Mapping[str, str]) -> bool:
    """True when the environment gives a service name (parsed as the SDK does: keys are stripped)."""
    if env.get("OTEL_SERVICE_NAME"):
        return True
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip() == SERVICE_NAME and value.strip():
            return True
    return False


def _make_exporter(name: str, env: Mapping[str, str], home: str | os.PathLike[str] | None) -> SpanExporter:
    if name == "jsonl":
        base = Path(home or env.get(PIPEWARDEN_HOME) or default_home(env))
        return JsonLinesSpanExporter(base / "traces.jsonl")
    if name == "console":
        return ConsoleSpanExporter(out=sys.stderr)
    return DeadlineSpanExporter(_otlp_exporter(env), _otlp_timeout(env))


def _otlp_exporter(env: Mapping[str, str]) -> SpanExporter:
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    )
    if protocol != "http/protobuf":
        log.warning(
            "OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported by pipewarden; "
            "using http/protobuf (allowed: http/protobuf)",
            protocol,
        )
    # Imported here: the OTLP exporter pulls in requests and protobuf, which an
    # agent that does not export OTLP should not pay for.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    timeout = _otlp_timeout(env)
    # Passed explicitly: the SDK would read os.environ, not the env this provider was built from.
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None
    if endpoint is None and (base := env.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        endpoint = base.rstrip("/") + "/v1/traces"
    headers = _pairs(env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS") or "")
    compression = _compression(
        env.get("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION") or env.get("OTEL_EXPORTER_OTLP_COMPRESSION") or ""
    )
    _quiet_otlp_logger()
    return OTLPSpanExporter(endpoint=endpoint, timeout=timeout, headers=headers or None, compression=compression)


def _otlp_timeout(env: Mapping[str, str]) -> float:
    """Seconds one OTLP export may take in all (``OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT``, default 3)."""
    raw = env.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or env.get("OTEL_EXPORTER_OTLP_TIMEOUT")
    if not raw:
        return DEFAULT_OTLP_TIMEOUT
    try:
        timeout = float(raw)  # seconds, as the SDK reads it
    except ValueError:
        timeout = -1.0
    if not timeout > 0:
        log.warning(
            "OTEL_EXPORTER_OTLP_TIMEOUT must be a positive number of seconds — got %r; using %s",
            raw,
            DEFAULT_OTLP_TIMEOUT,
        )
        return DEFAULT_OTLP_TIMEOUT
    return timeout


def _compression(raw: str) -> Any:
    from opentelemetry.exporter.otlp.proto.http import Compression

    value = raw.strip().lower()
    if not value:
        return None
    try:
        return Compression(value)
    except ValueError:
        log.warning(
            "OTEL_EXPORTER_OTLP_COMPRESSION must be one of %s — got %r; sending uncompressed",
            ", ".join(c.value for c in Compression),
            raw,
        )
        return Compression.NoCompression


class _FirstOnly(logging.Filter):
    """Let the first record through and drop the rest: pipewarden reports the failure itself."""

    def __init__(self) -> None:
        super().__init__()
        self._seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self._seen:
            return False
        self._seen = True
        return True


def _quiet_otlp_logger() -> None:
    for name in (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry.exporter.otlp.proto.http._common",
    ):
        lg = logging.getLogger(name)
        if not any(isinstance(f, _FirstOnly) for f in lg.filters):
            lg.addFilter(_FirstOnly())
