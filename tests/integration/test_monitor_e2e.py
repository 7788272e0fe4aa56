"""``@monitor`` end to end: promtool, a real Prometheus and Pushgateway, backends that are down, logs."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from servers import PrometheusServer, PushgatewayServer, free_port, wait_until

from agent.errors import CheckFailedError, TaskTimeoutError
from agent.monitor import monitor
from agent.telemetry import Telemetry
from checks.result import CheckResult, Kind, Status
from exporters.logs import JsonFormatter, install_trace_context
from exporters.metrics import Metrics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("monitored_script.py")
PIPELINE = "monitored_script"  # the script names no pipeline: its file name is used
ROWS = 4  # rows per extract in the script


@pytest.fixture
def tel(spans: InMemorySpanExporter) -> Telemetry:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return Telemetry(metrics=Metrics(), tracer_provider=provider)


def script_env(home: Path, **extra: str) -> dict[str, str]:
    """The caller's environment minus any OTEL_/PIPEWARDEN_ settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env["PIPEWARDEN_HOME"] = str(home)
    env.update(extra)
    return env


def run_script(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples_of(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# --- (a) promtool lints what monitored calls produce ---------------------------------------------


def test_promtool_finds_no_problem_after_monitored_calls(tel: Telemetry, promtool: str) -> None:
    """`promtool check metrics` is silent on a registry filled by successes, failures and checks."""

    def measured(measure: str, column: str | None = None, status: Status = Status.PASS) -> Any:
        def check(df: pd.DataFrame) -> CheckResult:
            return CheckResult(
                f"{measure}_check", Kind.CUSTOM, status, observed=0.5, threshold=0.1, column=column, measure=measure
            )

        check.__name__ = f"{measure}_check"
        return check

    checks = [
        measured("row_count"),
        measured("null_fraction", "amount", Status.FAIL),
        measured("psi", "amount"),
        measured("freshness_lag_seconds", "ts"),
        measured("duplicates"),
        measured("rows_lost"),
    ]

    @monitor(checks=checks, telemetry=tel)
    def transform(df: pd.DataFrame) -> pd.DataFrame:
        return df

    @monitor(checks=[measured("row_count", status=Status.FAIL)], on_check_failure="raise", telemetry=tel)
    def validate(df: pd.DataFrame) -> pd.DataFrame:
        return df

    @monitor(telemetry=tel)
    def slow() -> None:
        raise TaskTimeoutError("slow", task="slow", timeout=1.0)

    @monitor(pipeline="orders", telemetry=tel)
    def run(mode: str) -> None:
        df = transform(pd.DataFrame({"amount": [1.0, None]}))
        if mode == "check":
            validate(df)
        elif mode == "timeout":
            slow()
        elif mode == "error":
            raise RuntimeError("boom")

    for mode in ("ok", "check", "timeout", "error", "ok"):
        try:
            with tel.pipeline_scope("orders", version=f"v{mode}"):
                run(mode)
        except (CheckFailedError, TaskTimeoutError, RuntimeError):
            pass
    tel.task_state("orders", "load", "upstream_failed", run_id="r1")
    tel.export_error("pushgateway", None, pipeline="orders")

    exposition = generate_latest(tel.metrics.registry)
    names = {name for name, _ in samples_of(exposition.decode())}
    assert {
        "pipewarden_task_runs_total",
        "pipewarden_pipeline_recovery_seconds_count",
        "pipewarden_dq_drift_score",
        "pipewarden_pipeline_version_info",
        "pipewarden_check_results_total",
    } <= names
    result = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, b"")


# --- (b) a real Prometheus scrapes a monitored process -------------------------------------------


def test_prometheus_scrapes_a_monitored_process(
    tmp_path: Path, prometheus_server: Callable[..., PrometheusServer]
) -> None:
    """Prometheus reads the counts and histogram counts of a script's monitored calls from its /metrics."""
    runs, fail_every = 20, 4
    failed = runs // fail_every
    port = free_port()
    summary = tmp_path / "summary.json"
    env = script_env(tmp_path, PIPEWARDEN_METRICS_PORT=str(port), OTEL_TRACES_EXPORTER="none")
    with open(tmp_path / "stdout", "wb") as out, open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(SCRIPT),
                "--runs",
                str(runs),
                "--fail-every",
                str(fail_every),
                "--summary",
                str(summary),
                "--wait",
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
        )
    try:

        def ready() -> dict[str, Any] | None:
            if proc.poll() is not None:
                raise AssertionError(f"script exited {proc.returncode}: {(tmp_path / 'stderr').read_text()}")
            return json.loads(summary.read_text()) if summary.exists() else None

        assert wait_until(ready, timeout=60, what="the script's runs")["failed"] == failed

        prometheus = prometheus_server([f"127.0.0.1:{port}"])

        def labels(**kw: str) -> str:
            return "{" + ", ".join(f'{k}="{v}"' for k, v in {"pipeline": PIPELINE, **kw}.items()) + "}"

        tr_ok, tr_failed = labels(task="transform", status="success"), labels(task="transform", status="failed")
        assert prometheus.wait_for_value(f"pipewarden_task_runs_total{tr_ok}", runs - failed)
        assert prometheus.wait_for_value(f"pipewarden_task_runs_total{tr_failed}", failed)
        assert prometheus.wait_for_value(f"pipewarden_task_duration_seconds_count{labels(task='transform')}", runs)
        assert prometheus.wait_for_value(f"pipewarden_pipeline_runs_total{labels(status='failed')}", failed)
        assert prometheus.wait_for_value(f"pipewarden_pipeline_duration_seconds_count{labels()}", runs)
        assert prometheus.wait_for_value(f"pipewarden_task_rows_out_total{labels(task='extract')}", runs * ROWS)
        assert prometheus.wait_for_value(
            f"pipewarden_check_results_total{labels(check='non_empty', status='pass')}", runs - failed
        )
        [target] = prometheus.targets()
        assert target["health"] == "up"
    finally:
        if proc.stdin:
            proc.stdin.close()  # the script's signal to exit
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 1  # some runs failed


# --- (c) a real Pushgateway keeps what short-lived runs pushed -------------------------------------


def test_pushgateway_keeps_failed_run_and_earlier_success_time(
    tmp_path: Path, pushgateway_server: PushgatewayServer
) -> None:
    """A failing run's push lands in the gateway while the earlier run's last-success time survives."""
    env = script_env(tmp_path, PIPEWARDEN_PUSHGATEWAY_URL=pushgateway_server.url, OTEL_TRACES_EXPORTER="none")
    group = {"job": "pipewarden", "pipeline": PIPELINE, "instance": socket.gethostname()}

    def gateway(name: str, **labels: str) -> float | None:
        return samples_of(pushgateway_server.metrics_text()).get((name, frozenset({**group, **labels}.items())))

    first = run_script(env, "--runs", "1")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["export_errors"] == {}
    last_success = gateway("pipewarden_pipeline_last_success_timestamp_seconds")
    assert last_success is not None and last_success > 1_600_000_000
    assert gateway("pipewarden_pipeline_runs_total", status="success") == 1

    second = run_script(env, "--runs", "1", "--fail-every", "1")
    assert second.returncode == 1, second.stderr  # the run failed; the push did not
    assert json.loads(second.stdout)["export_errors"] == {}

    # The push carries the pipeline's totals from the run store: both runs, every status.
    assert gateway("pipewarden_pipeline_runs_total", status="failed") == 1
    assert gateway("pipewarden_pipeline_runs_total", status="success") == 1
    assert gateway("pipewarden_task_runs_total", task="transform", status="failed") == 1
    assert gateway("pipewarden_pipeline_up") == 0
    failure = gateway("pipewarden_pipeline_last_failure_timestamp_seconds")
    assert failure is not None and failure >= last_success
    assert gateway("pipewarden_pipeline_last_success_timestamp_seconds") == last_success
    [pushed] = [g for g in pushgateway_server.groups() if g["labels"].get("pipeline") == PIPELINE]
    assert pushed["labels"] == group
    assert pushed["last_push_successful"] is True


# --- (d) backends down: the pipeline goes on --------------------------------------------------------


@pytest.mark.usefixtures("restore_logging")
def test_backends_down_in_process(tmp_path: Path, closed_port: int, caplog: pytest.LogCaptureFixture) -> None:
    """With the gateway and collector unreachable, calls return; failures are counted per exporter."""
    url = f"http://127.0.0.1:{closed_port}"
    tel = Telemetry.from_env(
        {"PIPEWARDEN_PUSHGATEWAY_URL": url, "OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_EXPORTER_OTLP_TIMEOUT": "1"},
        home=tmp_path,
        metrics=Metrics(),
    )

    @monitor(telemetry=tel)
    def transform(df: pd.DataFrame) -> pd.DataFrame:
        return df.head(1)

    @monitor(pipeline="orders", telemetry=tel)
    def run() -> int:
        return len(transform(pd.DataFrame({"a": [1, 2]})))

    with caplog.at_level(logging.WARNING):
        assert [run(), run()] == [1, 1]
        tel.flush()  # the pushes happen off the run's path; wait for them
        assert tel.metrics.sample("pipewarden_export_errors_total", pipeline="orders", exporter="pushgateway") >= 2
    otlp_errors = tel.metrics.sample("pipewarden_export_errors_total", pipeline="orders", exporter="otlp")
    assert otlp_errors is not None and otlp_errors >= 1
    assert tel.metrics.sample("pipewarden_pipeline_runs_total", pipeline="orders", status="success") == 2
    tel.shutdown()
    assert not (tmp_path / "traces.jsonl").exists()  # otlp replaced the jsonl default


def test_backends_down_script_exits_zero(tmp_path: Path, closed_port: int) -> None:
    """A script whose gateway and collector are down still returns its results and exits 0."""
    url = f"http://127.0.0.1:{closed_port}"
    result = run_script(
        script_env(tmp_path, PIPEWARDEN_PUSHGATEWAY_URL=url, OTEL_EXPORTER_OTLP_ENDPOINT=url), "--runs", "2"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["results"] == [ROWS, ROWS]
    assert summary["export_errors"]["pushgateway"] == 2
    assert summary["export_errors"]["otlp"] >= 1
    assert "Traceback" not in result.stderr


# --- (e) logs carry the span they were written in ----------------------------------------------------


@pytest.mark.usefixtures("restore_logging")
def test_json_log_lines_carry_the_monitored_span(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """A record logged inside a monitored call has that call's trace and span ids; outside, none."""
    install_trace_context()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("pipewarden.test.e2e")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:

        @monitor(telemetry=tel)
        def transform() -> None:
            logger.info("transforming", extra={"rows": 3})

        @monitor(pipeline="orders", telemetry=tel)
        def run() -> None:
            logger.info("starting")
            transform()

        run()
        logger.info("done")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    starting, transforming, done = (json.loads(line) for line in stream.getvalue().splitlines())
    by = {s.name: s for s in spans.get_finished_spans()}
    for line, span in ((starting, by["RUN orders"]), (transforming, by["RUN transform"])):
        assert line["trace_id"] == f"{span.context.trace_id:032x}"
        assert line["span_id"] == f"{span.context.span_id:016x}"
    assert transforming["rows"] == 3
    assert (done["trace_id"], done["span_id"]) == ("", "")


def test_script_json_logs_match_its_jsonl_spans(tmp_path: Path) -> None:
    """With PIPEWARDEN_LOG_FORMAT=json a script's log lines name spans found in its traces.jsonl."""
    result = run_script(script_env(tmp_path, PIPEWARDEN_LOG_FORMAT="json", OTEL_TRACES_EXPORTER="jsonl"), "--runs", "2")
    assert result.returncode == 0, result.stderr

    logs = [
        json.loads(line) for line in result.stderr.splitlines() if line.startswith("{") and '"monitored_script"' in line
    ]
    assert [line["message"] for line in logs] == [f"transforming {ROWS} rows"] * 2
    spans = [json.loads(line) for line in (tmp_path / "traces.jsonl").read_text().splitlines()]
    transform_spans = {
        (s["context"]["trace_id"][2:], s["context"]["span_id"][2:]) for s in spans if s["name"] == "RUN transform"
    }
    assert {(line["trace_id"], line["span_id"]) for line in logs} == transform_spans
    assert len(transform_spans) == 2
