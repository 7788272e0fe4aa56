"""Log records carry the active trace; JSON lines; logging setup."""

from __future__ import annotations

import doctest
import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

import agent.settings
import exporters.logs
from exporters.logs import (
    JsonFormatter,
    TextFormatter,
    configure_logging,
    install_trace_context,
    uninstall_trace_context,
)


@pytest.fixture(autouse=True)
def _restore_logging(restore_logging: None) -> None:
    """Every test here changes logging; the shared fixture puts it back."""


@pytest.fixture
def tracer(spans: InMemorySpanExporter) -> Tracer:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return provider.get_tracer("test")


class Capture(logging.Handler):
    """Keeps the records it receives, formatted with ``formatter``."""

    def __init__(self, formatter: logging.Formatter | None = None) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        if formatter:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("pipewarden.test.logs")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    log.handlers.clear()
    log.propagate = True


def test_doctests_run() -> None:
    """The examples in the module's docstrings run as written."""
    result = doctest.testmod(exporters.logs)
    assert result.attempted > 0 and result.failed == 0


def test_log_format_variable_matches_agent_settings() -> None:
    """The variable name equals the documented one in agent.settings."""
    assert exporters.logs.PIPEWARDEN_LOG_FORMAT == agent.settings.PIPEWARDEN_LOG_FORMAT


def test_record_inside_span_carries_its_ids(
    tracer: Tracer, spans: InMemorySpanExporter, logger: logging.Logger
) -> None:
    """A record logged inside a real SDK span carries that span's trace and span ids in hex."""
    install_trace_context()
    capture = Capture()
    logger.addHandler(capture)

    with tracer.start_as_current_span("load"):
        logger.info("loaded %d rows", 3)

    [span] = spans.get_finished_spans()
    [record] = capture.records
    assert record.trace_id == f"{span.context.trace_id:032x}"  # type: ignore[attr-defined]
    assert record.span_id == f"{span.context.span_id:016x}"  # type: ignore[attr-defined]


def test_nested_span_ids_follow_the_current_span(
    tracer: Tracer, spans: InMemorySpanExporter, logger: logging.Logger
) -> None:
    """Records in a child span carry the child's span id and the shared trace id."""
    install_trace_context()
    capture = Capture()
    logger.addHandler(capture)

    with tracer.start_as_current_span("run"):
        with tracer.start_as_current_span("task"):
            logger.info("in task")
        logger.info("in run")

    task, run = spans.get_finished_spans()
    in_task, in_run = capture.records
    assert (in_task.span_id, in_run.span_id) == (  # type: ignore[attr-defined]
        f"{task.context.span_id:016x}",
        f"{run.context.span_id:016x}",
    )
    assert in_task.trace_id == in_run.trace_id == f"{run.context.trace_id:032x}"  # type: ignore[attr-defined]


def test_record_outside_span_has_empty_ids(logger: logging.Logger) -> None:
    """Without an active span both ids are empty strings."""
    install_trace_context()
    capture = Capture()
    logger.addHandler(capture)
    logger.warning("no span")
    [record] = capture.records
    assert (record.trace_id, record.span_id) == ("", "")  # type: ignore[attr-defined]


def test_install_is_idempotent() -> None:
    """Installing twice wraps the record factory once; uninstall restores the original."""
    original = logging.getLogRecordFactory()
    install_trace_context()
    installed = logging.getLogRecordFactory()
    install_trace_context()
    assert logging.getLogRecordFactory() is installed is not original
    uninstall_trace_context()
    assert logging.getLogRecordFactory() is original


def test_json_line_has_every_field(tracer: Tracer, spans: InMemorySpanExporter, logger: logging.Logger) -> None:
    """A JSON line holds time in UTC, level, logger, message, the span's ids and extra fields."""
    install_trace_context()
    capture = Capture(JsonFormatter())
    logger.addHandler(capture)

    with tracer.start_as_current_span("load"):
        logger.info("loaded %d rows\ninto %s", 3, "warehouse", extra={"rows": 3, "dataset": "raw"})

    [span] = spans.get_finished_spans()
    [line] = capture.lines
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["time"].endswith("Z") and entry["time"][10] == "T"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "pipewarden.test.logs"
    assert entry["message"] == "loaded 3 rows\ninto warehouse"
    assert entry["trace_id"] == f"{span.context.trace_id:032x}"
    assert entry["span_id"] == f"{span.context.span_id:016x}"
    assert (entry["rows"], entry["dataset"]) == (3, "raw")
    assert "exception" not in entry


def test_json_line_holds_the_exception(logger: logging.Logger) -> None:
    """logger.exception puts the traceback text in the exception field."""
    capture = Capture(JsonFormatter())
    logger.addHandler(capture)
    try:
        raise KeyError("order_id")
    except KeyError:
        logger.exception("lookup failed")

    entry = json.loads(capture.lines[0])
    assert entry["message"] == "lookup failed"
    assert "Traceback" in entry["exception"] and "KeyError: 'order_id'" in entry["exception"]


def test_json_line_writes_unserialisable_extras_as_text(logger: logging.Logger) -> None:
    """Extra values JSON cannot hold are written as their str()."""
    capture = Capture(JsonFormatter())
    logger.addHandler(capture)
    logger.info("done", extra={"columns": {"amount"}, "kind": object})
    entry = json.loads(capture.lines[0])
    assert entry["columns"] == "{'amount'}"
    assert entry["kind"] == "<class 'object'>"


def test_json_formatter_finds_ids_without_the_factory(
    tracer: Tracer, spans: InMemorySpanExporter, logger: logging.Logger
) -> None:
    """Without install_trace_context the formatter reads the current span itself."""
    uninstall_trace_context()
    capture = Capture(JsonFormatter())
    logger.addHandler(capture)
    with tracer.start_as_current_span("load"):
        logger.info("x")
    [span] = spans.get_finished_spans()
    assert json.loads(capture.lines[0])["span_id"] == f"{span.context.span_id:016x}"


def test_text_line_appends_ids_inside_span(tracer: Tracer, spans: InMemorySpanExporter, logger: logging.Logger) -> None:
    """Text lines end with trace_id=… span_id=… inside a span and have neither outside."""
    install_trace_context()
    capture = Capture(TextFormatter())
    logger.addHandler(capture)
    logger.info("before")
    with tracer.start_as_current_span("load"):
        logger.info("during")

    [span] = spans.get_finished_spans()
    before, during = capture.lines
    assert before.endswith("INFO pipewarden.test.logs: before")
    assert during.endswith(f"during trace_id={span.context.trace_id:032x} span_id={span.context.span_id:016x}")


@pytest.mark.parametrize(
    ("fmt", "env", "is_json"),
    [
        ("json", {}, True),
        ("text", {"PIPEWARDEN_LOG_FORMAT": "json"}, False),
        (None, {"PIPEWARDEN_LOG_FORMAT": "json"}, True),
        (None, {"PIPEWARDEN_LOG_FORMAT": "JSON"}, True),
        (None, {}, False),
    ],
)
def test_configure_logging_picks_format(fmt: str | None, env: dict[str, str], is_json: bool) -> None:
    """The fmt argument wins over PIPEWARDEN_LOG_FORMAT, which wins over the text default."""
    stream = io.StringIO()
    configure_logging(fmt, stream=stream, env=env)
    logging.getLogger("pipewarden.runner").info("run done")
    line = stream.getvalue().strip()
    if is_json:
        assert json.loads(line)["message"] == "run done"
    else:
        assert line.endswith("INFO pipewarden.runner: run done")


def test_configure_logging_twice_keeps_one_handler() -> None:
    """A second call replaces the first call's handler, so each record is written once."""
    first, second = io.StringIO(), io.StringIO()
    configure_logging("text", stream=first, env={})
    configure_logging("json", "DEBUG", stream=second, env={})
    logging.getLogger("pipewarden.runner").debug("once")
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1
    assert logging.getLogger().level == logging.DEBUG


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"fmt": "yaml", "env": {}}, "fmt must be one of text, json — got 'yaml'"),
        ({"env": {"PIPEWARDEN_LOG_FORMAT": "xml"}}, "PIPEWARDEN_LOG_FORMAT must be one of text, json"),
        ({"level": "LOUD", "env": {}}, "got 'LOUD'"),
    ],
)
def test_configure_logging_rejects_unknown_values(kwargs: dict[str, object], named: str) -> None:
    """An unknown format or level raises ValueError naming the setting and the value."""
    with pytest.raises(ValueError, match=named):
        configure_logging(stream=io.StringIO(), **kwargs)  # type: ignore[arg-type]
