"""A real Pushgateway receives the pushes of short-lived scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import PushgatewayServer

from exporters.metrics import Metrics
from exporters.prometheus import ExportErrors, push

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
JOB = Path(__file__).with_name("short_lived_job.py")
GROUP = {"job": "pipewarden", "pipeline": "orders", "instance": "batch-host"}


def run_job(url: str, status: str, now: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                      os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(JOB), url, "--status", status, "--now", str(now)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def gateway_samples(gateway: PushgatewayServer) -> Samples:
    """Every sample the gateway exposes, keyed by name and label set."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(gateway.metrics_text())
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset({**GROUP, **labels}.items())))


def test_failed_run_keeps_last_success_from_earlier_push(
        pushgateway_server: PushgatewayServer) -> None:
    """A failed script's counters reach the gateway while the earlier success time survives."""
    first = run_job(pushgateway_server.url, "success", 1_700_000_000)
    assert first.returncode == 0, first.stderr
    second = run_job(pushgateway_server.url, "failed", 1_700_003_600)
    assert second.returncode == 0, second.stderr

    samples = gateway_samples(pushgateway_server)
    assert sample(samples, "pipewarden_pipeline_runs_total", status="failed") == 1.0
    assert sample(samples, "pipewarden_task_runs_total", task="load", status="failed") == 1.0
    assert sample(samples, "pipewarden_task_duration_seconds_count",
                  task="load", status="failed") == 1.0
    assert sample(samples, "pipewarden_pipeline_last_failure_timestamp_seconds") == 1_700_003_600
    assert sample(samples, "pipewarden_pipeline_up") == 0.0
    # The failed run left every *_last_success_timestamp_seconds family out of its push.
    assert sample(samples, "pipewarden_pipeline_last_success_timestamp_seconds") == 1_700_000_000
    assert sample(samples, "pipewarden_task_last_success_timestamp_seconds",
                  task="load") == 1_700_000_000
    assert sample(samples, "pipewarden_task_last_success_timestamp_seconds",
                  task="extract") == 1_700_000_000


def test_gateway_records_both_pushes_as_successful(pushgateway_server: PushgatewayServer) -> None:
    """Both pushes land in one group {job, pipeline, instance} that the gateway marks as pushed."""
    assert run_job(pushgateway_server.url, "success", 1_700_000_000).returncode == 0
    assert run_job(pushgateway_server.url, "failed", 1_700_003_600).returncode == 0

    groups = [g for g in pushgateway_server.groups() if g["labels"].get("pipeline") == "orders"]
    assert [g["labels"] for g in groups] == [GROUP]
    assert groups[0]["last_push_successful"] is True
    assert "pipewarden_pipeline_runs_total" in groups[0]


def test_push_sends_only_its_own_pipeline(pushgateway_server: PushgatewayServer) -> None:
    """Samples of other pipelines in the same registry stay out of the pipeline's group."""
    m = Metrics()
    m["pipewarden_pipeline_runs_total"].labels("orders", "success").inc()
    m["pipewarden_pipeline_runs_total"].labels("billing", "success").inc(5)

    assert push(m, pushgateway_server.url, pipeline="orders", instance="batch-host", success=True,
                errors=ExportErrors())

    samples = gateway_samples(pushgateway_server)
    runs = {labels: v for (name, labels), v in samples.items()
            if name == "pipewarden_pipeline_runs_total"}
    assert runs == {frozenset({**GROUP, "status": "success"}.items()): 1.0}


def test_push_rejected_by_gateway_is_counted(pushgateway_server: PushgatewayServer) -> None:
    """A push the gateway answers with an HTTP error returns False and is counted."""
    m = Metrics()
    m["pipewarden_pipeline_runs_total"].labels("orders", "success").inc()
    url = pushgateway_server.url + "/no-such-prefix"  # the gateway answers 404

    assert push(m, url, pipeline="orders", success=True, errors=ExportErrors()) is False
    assert m.sample("pipewarden_export_errors_total", exporter="pushgateway") == 1.0
