"""A real Pushgateway receives what short-lived processes push: the pipeline's totals from the run store."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import PushgatewayServer

from agent.events import RunEnded, TaskEnded
from agent.records import RunStatus
from exporters.metrics import Metrics
from exporters.outputs import PushgatewayExporter
from exporters.prometheus import PipelineView

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("monitored_script.py")
PIPELINE = "monitored_script"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def script_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env["PIPEWARDEN_HOME"] = str(home)
    env.update(extra)
    return env


def run_script(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def gateway_samples(gateway: PushgatewayServer) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(gateway.metrics_text())
        for s in family.samples
    }


def test_each_cron_run_pushes_the_pipelines_totals(tmp_path: Path, pushgateway_server: PushgatewayServer) -> None:
    """Three processes (success, failure, success) leave the gateway with the totals of all three runs."""
    env = script_env(tmp_path / "home", PIPEWARDEN_PUSHGATEWAY_URL=pushgateway_server.url, OTEL_TRACES_EXPORTER="none")
    group = {"job": "pipewarden", "pipeline": PIPELINE, "instance": socket.gethostname()}

    def gateway(name: str, **labels: str) -> float | None:
        return gateway_samples(pushgateway_server).get((name, frozenset({**group, **labels}.items())))

    assert run_script(env, "--runs", "1").returncode == 0
    assert gateway("pipewarden_pipeline_runs_total", status="failed") == 0  # exported at zero
    assert run_script(env, "--runs", "1", "--fail-every", "1").returncode == 1
    assert run_script(env, "--runs", "1").returncode == 0

    assert gateway("pipewarden_pipeline_runs_total", status="success") == 2
    assert gateway("pipewarden_pipeline_runs_total", status="failed") == 1
    assert gateway("pipewarden_task_runs_total", task="transform", status="success") == 2
    assert gateway("pipewarden_task_runs_total", task="transform", status="failed") == 1
    assert gateway("pipewarden_task_duration_seconds_count", task="transform") == 3
    assert gateway("pipewarden_task_rows_out_total", task="extract") == 3 * 4
    assert (
        gateway("pipewarden_check_results_total", dataset="transform", check="non_empty", kind="custom", status="pass")
        == 2
    )
    assert (
        gateway("pipewarden_check_results_total", dataset="transform", check="non_empty", kind="custom", status="fail")
        == 0
    )
    assert gateway("pipewarden_pipeline_up") == 1
    assert gateway("pipewarden_pipeline_recovery_seconds_count") == 1
    [pushed] = [g for g in pushgateway_server.groups() if g["labels"].get("pipeline") == PIPELINE]
    assert pushed["labels"] == group and pushed["last_push_successful"] is True


def test_export_errors_travel_with_the_pipelines_samples(
    tmp_path: Path, closed_port: int, pushgateway_server: PushgatewayServer
) -> None:
    """A dead OTLP collector's failures reach the gateway in the pipeline's group, from the run that had them."""
    env = script_env(
        tmp_path / "home",
        PIPEWARDEN_PUSHGATEWAY_URL=pushgateway_server.url,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{closed_port}",
        OTEL_EXPORTER_OTLP_TIMEOUT="1",
    )
    done = run_script(env, "--runs", "2")
    assert done.returncode == 0, done.stderr
    samples = gateway_samples(pushgateway_server)
    errors = [
        v
        for (name, labels), v in samples.items()
        if name == "pipewarden_export_errors_total"
        and dict(labels).get("exporter") == "otlp"
        and dict(labels).get("pipeline") == PIPELINE
    ]
    assert errors and errors[0] >= 1


def test_push_sends_only_its_own_pipeline(pushgateway_server: PushgatewayServer) -> None:
    """Samples of other pipelines in the same registry stay out of the pipeline's group."""
    m = Metrics()
    for pipeline, n in (("orders", 1), ("billing", 5)):
        for _ in range(n):
            m.pipelines.cell(pipeline).ended(RunEnded("r", pipeline, RunStatus.SUCCESS, 0.0, 1.0, 1.0))
    exporter = PushgatewayExporter(pushgateway_server.url, instance="batch-host")
    assert exporter.export("orders", PipelineView(m.registry, "orders"))

    runs = {
        dict(labels)["status"]: v
        for (name, labels), v in gateway_samples(pushgateway_server).items()
        if name == "pipewarden_pipeline_runs_total"
    }
    assert runs == {"success": 1.0, "failed": 0.0, "cancelled": 0.0, "interrupted": 0.0}


def test_push_rejected_by_gateway_raises_for_the_caller_to_count(pushgateway_server: PushgatewayServer) -> None:
    """A push the gateway answers with an HTTP error raises (MetricOutputs counts it; tests/exporters)."""
    m = Metrics()
    m.tasks.cell("orders", "load").record(TaskEnded("r", "orders", "load", 1, RunStatus.SUCCESS, 0.0, 1.0, 1.0))
    exporter = PushgatewayExporter(pushgateway_server.url + "/no-such-prefix")
    with pytest.raises(OSError, match="404"):
        exporter.export("orders", PipelineView(m.registry, "orders"))
    assert json.dumps(pushgateway_server.groups()).count('"orders"') == 0
