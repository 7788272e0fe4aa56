"""Where spans go: exporter choice from OTEL_*, the JSON-lines file, guarded export, OTLP/HTTP."""

from __future__ import annotations

import doctest
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind
from servers import OtlpReceiver, TricklingServer

import exporters.tracing
from agent.monitor import monitor
from agent.telemetry import Telemetry
from exporters.metrics import Metrics
from exporters.tracing import (
    GuardedSpanExporter,
    JsonLinesSpanExporter,
    build_tracer_provider,
    traces_exporter_names,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OTEL_* or PIPEWARDEN_* variable of the caller's shell leaks in; logging is put back."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "PIPEWARDEN_")):
            monkeypatch.delenv(name)
    factory = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(factory)  # Telemetry.from_env installs the trace context


# --- which exporters --------------------------------------------------------------------------

ENDPOINT = "http://collector:4318"
NAMES: list[tuple[dict[str, str], list[str]]] = [
    ({}, ["jsonl"]),
    ({"OTEL_TRACES_EXPORTER": ""}, ["jsonl"]),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ["otlp"]),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ENDPOINT + "/v1/traces"}, ["otlp"]),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "jsonl"}, ["jsonl"]),
    ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["otlp", "console"]),
    ({"OTEL_TRACES_EXPORTER": " OTLP , jsonl ,"}, ["otlp", "jsonl"]),
    ({"OTEL_TRACES_EXPORTER": "none"}, []),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, []),
]


@pytest.mark.parametrize(("env", "expected"), NAMES, ids=[json.dumps(e) for e, _ in NAMES])
def test_exporter_names_follow_the_environment(env: dict[str, str], expected: list[str]) -> None:
    """OTEL_TRACES_EXPORTER picks the exporters; unset, an OTLP endpoint means otlp, else jsonl."""
    assert traces_exporter_names(env) == expected


@pytest.mark.parametrize("value", ["zipkin", "otlp,jaeger", "otlp_http"])
def test_unknown_exporter_names_the_variable_and_the_choices(value: str) -> None:
    """An unknown exporter is a ValueError naming the variable, the value and every allowed one."""
    with pytest.raises(ValueError) as info:
        traces_exporter_names({"OTEL_TRACES_EXPORTER": value})
    message = str(info.value)
    assert "OTEL_TRACES_EXPORTER" in message
    assert repr(value.split(",")[-1]) in message
    for allowed in ("jsonl", "otlp", "console", "none"):
        assert allowed in message


def test_unknown_exporter_fails_when_building_the_provider(tmp_path: Path) -> None:
    """build_tracer_provider refuses an unknown exporter instead of silently dropping spans."""
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER"):
        build_tracer_provider({"OTEL_TRACES_EXPORTER": "zipkin"}, home=tmp_path)


# --- JSON lines ---------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def nested_spans(provider: TracerProvider) -> tuple[Any, Any]:
    tracer = provider.get_tracer("test")
    with (
        tracer.start_as_current_span("outer") as outer,
        tracer.start_as_current_span("inner", attributes={"rows": 3}) as inner,
    ):
        pass
    return outer, inner


def test_default_writes_one_json_object_per_span_under_home(tmp_path: Path) -> None:
    """With no settings, each span is one JSON line in <home>/traces.jsonl with its ids and parent."""
    provider = build_tracer_provider({}, home=tmp_path)
    outer, _ = nested_spans(provider)
    provider.force_flush()

    lines = read_jsonl(tmp_path / "traces.jsonl")
    assert [line["name"] for line in lines] == ["inner", "outer"]
    by = {line["name"]: line for line in lines}
    trace_id = f"0x{outer.get_span_context().trace_id:032x}"
    assert by["outer"]["context"] == {
        "trace_id": trace_id,
        "span_id": f"0x{outer.get_span_context().span_id:016x}",
        "trace_state": "[]",
    }
    assert by["inner"]["context"]["trace_id"] == trace_id
    assert by["inner"]["parent_id"] == by["outer"]["context"]["span_id"]
    assert by["outer"]["parent_id"] is None
    assert by["inner"]["attributes"] == {"rows": 3}
    assert by["inner"]["resource"]["attributes"]["service.name"] == "pipewarden"
    provider.shutdown()


def test_home_comes_from_pipewarden_home_when_not_given(tmp_path: Path) -> None:
    """Without home=, the file goes under $PIPEWARDEN_HOME of the env passed in."""
    state = tmp_path / "state"
    provider = build_tracer_provider({"PIPEWARDEN_HOME": str(state)})
    nested_spans(provider)
    provider.shutdown()
    assert len(read_jsonl(state / "traces.jsonl")) == 2


def test_jsonl_exporter_appends_and_creates_the_directory(tmp_path: Path) -> None:
    """Successive exports append lines to the file, creating its directory on first need."""
    path = tmp_path / "deep" / "dir" / "traces.jsonl"
    exporter = JsonLinesSpanExporter(path)
    provider = TracerProvider(shutdown_on_exit=False)
    tracer = provider.get_tracer("test")
    spans: list[ReadableSpan] = []
    for name in ("a", "b", "c"):
        with tracer.start_as_current_span(name) as span:
            pass
        spans.append(span)  # type: ignore[arg-type]

    assert exporter.export(spans[:1]) is SpanExportResult.SUCCESS
    assert exporter.export(spans[1:]) is SpanExportResult.SUCCESS
    assert exporter.export([]) is SpanExportResult.SUCCESS
    assert [line["name"] for line in read_jsonl(path)] == ["a", "b", "c"]
    assert all("\n" not in line for line in path.read_text().splitlines())


# --- resource -----------------------------------------------------------------------------------

RESOURCES: list[tuple[dict[str, str], dict[str, str]]] = [
    ({}, {"service.name": "pipewarden"}),
    ({"OTEL_SERVICE_NAME": "orders-etl"}, {"service.name": "orders-etl"}),
    ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=orders-etl"}, {"service.name": "orders-etl"}),
    (
        {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod"},
        {"service.name": "pipewarden", "deployment.environment": "prod"},
    ),
    (
        {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod, service.name = orders-etl"},
        {"service.name": "orders-etl", "deployment.environment": "prod"},
    ),
    ({"OTEL_RESOURCE_ATTRIBUTES": "app.service.name=x"}, {"service.name": "pipewarden", "app.service.name": "x"}),
    ({"OTEL_SERVICE_NAME": "a", "OTEL_RESOURCE_ATTRIBUTES": "service.name=b"}, {"service.name": "a"}),
]


@pytest.mark.parametrize(("env", "expected"), RESOURCES, ids=[json.dumps(e) for e, _ in RESOURCES])
def test_service_name_defaults_to_pipewarden_and_honours_otel_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], expected: dict[str, str]
) -> None:
    """service.name is pipewarden unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES name one."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the SDK's Resource.create reads os.environ itself
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")

    provider = build_tracer_provider(home=tmp_path)
    attributes = dict(provider.resource.attributes)
    assert {k: attributes.get(k) for k in expected} == expected


# --- guarded export -----------------------------------------------------------------------------


class Flaky(SpanExporter):
    """An exporter that fails in the way it is told to."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.exported: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.mode == "raise":
            raise ConnectionError("collector down")
        if self.mode == "failure":
            return SpanExportResult.FAILURE
        self.exported.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if self.mode == "raise":
            raise RuntimeError("shutdown failed")

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        if self.mode == "raise":
            raise RuntimeError("flush failed")
        return True


@pytest.mark.parametrize(
    ("mode", "result", "reported"),
    [
        ("ok", SpanExportResult.SUCCESS, []),
        ("failure", SpanExportResult.FAILURE, [("otlp", None)]),
        ("raise", SpanExportResult.FAILURE, [("otlp", "ConnectionError")]),
    ],
)
def test_guarded_exporter_reports_failures_and_never_raises(
    mode: str, result: SpanExportResult, reported: list[tuple[str, str | None]]
) -> None:
    """A failing export returns FAILURE and is reported to the hook with its exception, if any."""
    calls: list[tuple[str, BaseException | None]] = []
    guarded = GuardedSpanExporter(Flaky(mode), "otlp", lambda name, exc, pipelines: calls.append((name, exc)))
    assert guarded.export([]) is result
    assert [(n, type(e).__name__ if e else None) for n, e in calls] == reported


def test_guarded_exporter_survives_a_raising_hook_shutdown_and_flush() -> None:
    """A hook that raises, and an inner shutdown/force_flush that raise, never escape."""

    def hook(name: str, exc: BaseException | None, pipelines: Any) -> None:
        raise RuntimeError("hook broken")

    guarded = GuardedSpanExporter(Flaky("raise"), "otlp", hook)
    assert guarded.export([]) is SpanExportResult.FAILURE
    assert guarded.force_flush() is False
    guarded.shutdown()
    assert GuardedSpanExporter(Flaky("raise"), "otlp").export([]) is SpanExportResult.FAILURE


def test_guarded_shutdown_and_flush_failures_are_reported() -> None:
    """Failures of shutdown and force_flush reach the hook too."""
    calls: list[str] = []
    guarded = GuardedSpanExporter(Flaky("raise"), "jsonl", lambda name, exc, pipelines: calls.append(f"{name}:{exc}"))
    guarded.force_flush()
    guarded.shutdown()
    assert calls == ["jsonl:flush failed", "jsonl:shutdown failed"]


def test_unwritable_jsonl_file_is_reported_to_telemetry(tmp_path: Path) -> None:
    """A traces.jsonl that cannot be written is counted under exporter jsonl; the call succeeds."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "traces.jsonl").mkdir()  # a directory where the file should be: open() fails
    tel = Telemetry.from_env({"OTEL_TRACES_EXPORTER": "jsonl"}, home=home, metrics=Metrics())
    assert export_errors_after_one_call(tel, "jsonl") == 1


def export_errors_after_one_call(tel: Telemetry, exporter: str) -> float | None:
    """Make one monitored call (which must return its value), flush, and read the export error count."""

    @monitor(pipeline="orders", telemetry=tel)
    def load() -> int:
        return 7

    try:
        assert load() == 7
        tel.tracer_provider.force_flush()
        # the spans it lost were the orders pipeline's: the error travels with that pipeline's samples
        return tel.metrics.sample("pipewarden_export_errors_total", pipeline="orders", exporter=exporter)
    finally:
        tel.shutdown()


# --- OTLP/HTTP to a real receiver ---------------------------------------------------------------


def test_monitor_spans_reach_otlp_and_jsonl_alike(otlp_receiver: OtlpReceiver, tmp_path: Path) -> None:
    """Nested monitored calls arrive at the OTLP receiver with their links, and traces.jsonl agrees."""
    provider = build_tracer_provider(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint, "OTEL_TRACES_EXPORTER": "otlp,jsonl"}, home=tmp_path
    )
    tel = Telemetry(metrics=Metrics(), tracer_provider=provider)

    @monitor(telemetry=tel)
    def extract() -> list[int]:
        return [1, 2, 3]

    @monitor(telemetry=tel)
    def transform(rows: list[int]) -> list[int]:
        return rows[:2]

    @monitor(pipeline="orders", telemetry=tel)
    def run() -> list[int]:
        return transform(extract())

    run()
    assert provider.force_flush()
    received = otlp_receiver.wait_for_spans(3)
    provider.shutdown()

    assert len(received) == 3
    got = {s.name: s for s in received}
    root, ex, tr = got["RUN orders"], got["RUN extract"], got["RUN transform"]
    assert root.parent_span_id == ""
    assert ex.parent_span_id == tr.parent_span_id == root.span_id
    assert ex.trace_id == tr.trace_id == root.trace_id
    assert root.kind == SpanKind.SERVER.value + 1  # OTLP numbers kinds from 1 (INTERNAL)
    assert ex.kind == SpanKind.INTERNAL.value + 1
    run_id = root.attributes["cicd.pipeline.run.id"]
    assert root.attributes == {
        "cicd.pipeline.name": "orders",
        "cicd.pipeline.task.name": "run",
        "cicd.pipeline.run.id": run_id,
        "pipewarden.pipeline.version": root.attributes["pipewarden.pipeline.version"],
        "cicd.pipeline.result": "success",
    }
    assert tr.attributes == {
        "cicd.pipeline.name": "orders",
        "cicd.pipeline.task.name": "transform",
        "cicd.pipeline.run.id": run_id,
        "cicd.pipeline.task.run.result": "success",
    }
    assert root.resource["service.name"] == "pipewarden"
    assert root.scope == "pipewarden"

    lines = read_jsonl(tmp_path / "traces.jsonl")
    from_file = {
        line["name"]: (
            line["context"]["trace_id"].removeprefix("0x"),
            line["context"]["span_id"].removeprefix("0x"),
            (line["parent_id"] or "").removeprefix("0x"),
            line["attributes"],
        )
        for line in lines
    }
    from_otlp = {s.name: (s.trace_id, s.span_id, s.parent_span_id, s.attributes) for s in received}
    assert from_file == from_otlp


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
def test_endpoint_is_read_from_the_env_passed_in(otlp_receiver: OtlpReceiver, tmp_path: Path, variable: str) -> None:
    """Either endpoint variable of the env argument (not os.environ) directs the OTLP export."""
    url = otlp_receiver.endpoint + ("/v1/traces" if "TRACES" in variable else "/")
    provider = build_tracer_provider({variable: url}, home=tmp_path)
    nested_spans(provider)
    assert provider.force_flush()
    assert sorted(s.name for s in otlp_receiver.spans()) == ["inner", "outer"]
    assert not (tmp_path / "traces.jsonl").exists()
    provider.shutdown()


def test_silent_collector_is_abandoned_and_counted(tmp_path: Path) -> None:
    """A collector that accepts but never answers fails the export, which is counted; the call returns."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts the connection; nobody ever answers
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        tel = Telemetry.from_env(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_EXPORTER_OTLP_TIMEOUT": "0.5",
            },  # read from env, not os.environ
            home=tmp_path,
            metrics=Metrics(),
        )
        assert export_errors_after_one_call(tel, "otlp") == 1


def test_refusing_collector_is_counted_under_otlp(otlp_receiver: OtlpReceiver, tmp_path: Path) -> None:
    """A collector answering 400 makes the export fail; Telemetry counts it under exporter otlp."""
    otlp_receiver.status = 400  # not retryable: the exporter gives up at once
    tel = Telemetry.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint}, home=tmp_path, metrics=Metrics())
    assert export_errors_after_one_call(tel, "otlp") == 1
    assert len(otlp_receiver.spans()) == 1  # it got there, and was refused


def test_doctests_run() -> None:
    """The examples in the module's docstrings run as written."""
    result = doctest.testmod(exporters.tracing)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_resource_headers_and_compression_are_read_from_the_env_passed_in(
    otlp_receiver: OtlpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: str
) -> None:
    """Resource attributes, service name, OTLP headers and compression come from the env argument."""
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_SERVICE_NAME": "orders-etl",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=data%20eng",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=s3cret",
        "OTEL_EXPORTER_OTLP_COMPRESSION": compression,
    }
    provider = build_tracer_provider(env, home=tmp_path)
    nested_spans(provider)
    assert provider.force_flush()
    [span, *_] = otlp_receiver.spans()
    assert span.resource["service.name"] == "orders-etl"
    assert (span.resource["deployment.environment"], span.resource["team"]) == ("prod", "data eng")
    [headers, *_] = otlp_receiver.headers
    assert headers.get("x-api-key") == "s3cret"
    assert (headers.get("Content-Encoding") == "gzip") == (compression == "gzip")
    provider.shutdown()


def test_home_variable_and_default_match_agent_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no home given, the spans file lands in the per-user state directory agent.settings names."""
    import agent.settings
    import exporters.tracing

    assert exporters.tracing.PIPEWARDEN_HOME == agent.settings.PIPEWARDEN_HOME
    monkeypatch.delenv("PIPEWARDEN_HOME", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    provider = build_tracer_provider({"XDG_STATE_HOME": str(tmp_path / "state")})
    nested_spans(provider)
    provider.force_flush()
    assert agent.settings.home() == tmp_path / "state" / "pipewarden"
    assert len(read_jsonl(agent.settings.home() / "traces.jsonl")) == 2
    provider.shutdown()


def test_spans_file_rotates_at_its_size_limit(tmp_path: Path) -> None:
    """Past max_bytes the file becomes traces.jsonl.1 (older ones shift), and only `backups` files are kept."""
    path = tmp_path / "traces.jsonl"
    exporter = JsonLinesSpanExporter(path, max_bytes=4000, backups=2)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for i in range(40):
        tracer.start_span(f"span-{i}").end()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["traces.jsonl", "traces.jsonl.1", "traces.jsonl.2"]
    assert all(p.stat().st_size <= 4000 for p in tmp_path.iterdir())
    names = [
        line["name"] for f in ("traces.jsonl.2", "traces.jsonl.1", "traces.jsonl") for line in read_jsonl(tmp_path / f)
    ]
    assert names == [f"span-{i}" for i in range(40 - len(names), 40)]
    provider.shutdown()


def test_a_trickling_collector_holds_the_exit_no_longer_than_the_otlp_timeout(
    trickle: TricklingServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, restore_logging: None
) -> None:
    """An OTLP endpoint answering a byte every 0.5 s (19 s in all) is abandoned at OTEL_EXPORTER_OTLP_TIMEOUT:
    shutdown returns, with one warning and one count."""
    trickle.interval = 0.5
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{trickle.port}", "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}
    tel = Telemetry.from_env(env, home=tmp_path, metrics=Metrics(), history=False)

    @monitor(pipeline="orders", telemetry=tel)
    def load() -> int:
        return 1

    load()
    done = threading.Event()
    with caplog.at_level(logging.WARNING):
        threading.Thread(target=lambda: (tel.shutdown(), done.set()), daemon=True).start()
        assert done.wait(10), "shutdown still waiting for the collector after 10 s"
    assert tel.metrics.sample("pipewarden_export_errors_total", pipeline="orders", exporter="otlp") == 1
    warnings = [r.getMessage() for r in caplog.records if "otlp" in r.getMessage()]
    assert len(warnings) == 1 and "within 1s" in warnings[0]


def test_a_script_exits_within_the_otlp_timeout_of_a_trickling_collector(
    trickle: TricklingServer, tmp_path: Path
) -> None:
    """A monitored script whose collector trickles exits at the OTLP deadline, with one warning line."""
    trickle.interval = 0.5
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
    env.update(
        PYTHONPATH=str(REPO),
        PIPEWARDEN_HOME=str(tmp_path / "home"),
        OTEL_EXPORTER_OTLP_TIMEOUT="1",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{trickle.port}",
    )
    script = "from agent import monitor\n@monitor(pipeline='orders')\ndef load():\n    return 1\nload()\n"
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=12
    )
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if "otlp" in line] == [done.stderr.strip()]
