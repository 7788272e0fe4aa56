"""Log records that carry the active trace: ids on every record, JSON lines, one-call setup.

A log line written inside a monitored run can be found from its trace and back:
:func:`install_trace_context` puts ``trace_id`` and ``span_id`` (lowercase hex, ``""``
outside a span) on every :class:`logging.LogRecord`, and :class:`JsonFormatter` writes
them out with the rest. :func:`configure_logging` is what the CLI calls; the format
comes from ``PIPEWARDEN_LOG_FORMAT`` (``text`` or ``json``) unless given.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from opentelemetry import trace

__all__ = [
    "PIPEWARDEN_LOG_FORMAT",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "install_trace_context",
    "trace_context",
    "uninstall_trace_context",
]

# The same name as agent.settings (a test keeps them equal): exporters import nothing of agent.
#: ``text`` (default) or ``json``: JSON log lines carry trace_id and span_id.
PIPEWARDEN_LOG_FORMAT = "PIPEWARDEN_LOG_FORMAT"
FORMATS = ("text", "json")

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "trace_id",
    "span_id",
}
_HANDLER_MARK = "_pipewarden_handler"


def trace_context() -> tuple[str, str]:
    """``(trace_id, span_id)`` of the current span as lowercase hex, ``("", "")`` outside one.

    >>> trace_context()
    ('', '')
    """
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


class _TraceContextFactory:
    """Wraps the previous record factory and stamps trace ids on each record it makes."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self.wrapped(*args, **kwargs)
        record.trace_id, record.span_id = trace_context()
        return record


def install_trace_context() -> None:
    """Make every new LogRecord carry ``trace_id`` and ``span_id``; calling it again does nothing.

    >>> install_trace_context()
    >>> record = logging.getLogger("example").makeRecord("example", logging.INFO, "f", 1,
    ...                                                  "hello", None, None)
    >>> (record.trace_id, record.span_id)
    ('', '')
    >>> uninstall_trace_context()

    Because the ids are set when the record is made, they are right even when a handler
    formats the record later on another thread (``QueueHandler``). ``trace_id`` and
    ``span_id`` can no longer be passed in ``extra=``: logging refuses to overwrite them.
    """
    current = logging.getLogRecordFactory()
    if not isinstance(current, _TraceContextFactory):
        logging.setLogRecordFactory(_TraceContextFactory(current))


def uninstall_trace_context() -> None:
    """Put back the record factory :func:`install_trace_context` wrapped (if it is still on top)."""
    current = logging.getLogRecordFactory()
    if isinstance(current, _TraceContextFactory):
        logging.setLogRecordFactory(current.wrapped)


def _ids(record: logging.LogRecord) -> tuple[str, str]:
    # Records made before install_trace_context (or by a foreign factory) get the ids now.
    trace_id = getattr(record, "trace_id", None)
    span_id = getattr(record, "span_id", None)
    if trace_id is None or span_id is None:
        return trace_context()
    return str(trace_id), str(span_id)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace and span ids, extras.

    >>> record = logging.makeLogRecord({"name": "pipewarden.runner", "levelname": "INFO",
    ...     "msg": "run %s done", "args": ("r1",), "created": 0.0, "rows": 3})
    >>> print(JsonFormatter().format(record))
    {"time": "1970-01-01T00:00:00.000Z", "level": "INFO", "logger": "pipewarden.runner", \
"message": "run r1 done", "trace_id": "", "span_id": "", "rows": 3}

    ``exception`` holds the formatted traceback when the record has one. Extra values
    that JSON cannot hold are written as their ``str()``.
    """

    def format(self, record: logging.LogRecord) -> str:
        trace_id, span_id = _ids(record)
        created = datetime.fromtimestamp(record.created, tz=UTC)
        line: dict[str, Any] = {
            "time": created.strftime("%Y-%m-%dT%H:%M:%S.") + f"{created.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": trace_id,
            "span_id": span_id,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in line:
                line[key] = value
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``, then ``trace_id=… span_id=…`` when inside a span.

    >>> record = logging.makeLogRecord({"name": "pipewarden", "levelname": "WARNING",
    ...                                 "msg": "slow", "created": 0.0, "msecs": 0.0})
    >>> TextFormatter().format(record)
    '1970-01-01T00:00:00.000Z WARNING pipewarden: slow'

    Times are UTC, as in :class:`JsonFormatter`.
    """

    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        trace_id, span_id = _ids(record)
        if not trace_id:
            return text
        first, newline, rest = text.partition("\n")  # keep the ids on the message line
        return f"{first} trace_id={trace_id} span_id={span_id}{newline}{rest}"


def configure_logging(
    fmt: str | None = None,
    level: int | str = logging.INFO,
    *,
    stream: IO[str] | None = None,
    env: Mapping[str, str] = os.environ,
) -> logging.Handler:
    """Send log records to ``stream`` (stderr) as ``text`` or ``json`` lines; return the handler.

    ``fmt`` defaults to ``$PIPEWARDEN_LOG_FORMAT``, else ``text``. Installs the trace
    context, sets the root logger's level, and replaces the handler an earlier call
    added (other handlers stay), so calling it twice never doubles every line.
    """
    source = "fmt"
    if fmt is None:
        fmt = env.get(PIPEWARDEN_LOG_FORMAT, "").strip().lower() or "text"
        source = PIPEWARDEN_LOG_FORMAT
    if fmt not in FORMATS:
        raise ValueError(f"{source} must be one of {', '.join(FORMATS)} — got {fmt!r}")
    if isinstance(level, str):
        resolved = logging.getLevelName(level.upper())
        if not isinstance(resolved, int):
            raise ValueError(
                f"log level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL or an int — got {level!r}"
            )
        level = resolved

    install_trace_context()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
