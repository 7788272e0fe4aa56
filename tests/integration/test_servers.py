"""The test servers themselves: real programs start and answer; receivers decode what they get."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import servers
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import StatusCode
from servers import AlertmanagerServer, OtlpReceiver, PrometheusServer

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", False),
        ("0", False),
        ("false", False),
        ("FALSE", False),
        ("true", True),
        ("1", True),
        ("yes", True),
    ],
)
def test_in_ci_reads_the_ci_variable(value: str, expected: bool) -> None:
    """CI counts as set unless it is empty, 0 or false."""
    assert servers.in_ci({"CI": value}) is expected


def test_missing_binary_skips_on_a_laptop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CI a missing program skips the test, naming what was looked for."""
    monkeypatch.setitem(servers.BINARIES, "absent", ("pipewarden-absent-program",))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="pipewarden-absent-program"):
        servers.require_binary("absent")


def test_missing_binary_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under CI a missing program fails the test instead of skipping it."""
    monkeypatch.setitem(servers.BINARIES, "absent", ("pipewarden-absent-program",))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must not skip"):
        servers.require_binary("absent")


def test_generated_prometheus_config_passes_promtool(promtool: str, tmp_path: Path) -> None:
    """The prometheus.yml the fixture writes, with alerting, is valid for promtool."""
    config = tmp_path / "prometheus.yml"
    config.write_text(servers.prometheus_config(["127.0.0.1:9464"], alertmanagers=["127.0.0.1:9093"]))
    result = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_alertmanager_config_passes_amtool(amtool: str, tmp_path: Path) -> None:
    """The alertmanager.yml the fixture writes is valid for amtool."""
    config = tmp_path / "alertmanager.yml"
    config.write_text(servers.alertmanager_config("http://127.0.0.1:9/webhook"))
    result = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_itself_after_reload(prometheus_server: Callable[..., PrometheusServer]) -> None:
    """A reloaded config takes effect: Prometheus then reports its own target as up."""
    prometheus = prometheus_server([])
    target = prometheus.url.removeprefix("http://")
    prometheus.reload([target])
    assert prometheus.wait_for_value(f'up{{instance="{target}"}}', 1) == 1


def test_alertmanager_forwards_alert_to_webhook(alertmanager_server: AlertmanagerServer) -> None:
    """An alert posted to Alertmanager reaches the webhook receiver with its labels."""
    alertmanager_server.post_alerts(
        [
            {
                "labels": {"alertname": "PipelineFailing", "pipeline": "orders", "severity": "page"},
                "annotations": {"summary": "orders failed"},
            }
        ]
    )
    alerts = servers.wait_until(lambda: alertmanager_server.webhook.alerts() or None, what="a webhook notification")
    assert alerts[0]["labels"]["alertname"] == "PipelineFailing"
    assert alerts[0]["status"] == "firing"
    assert [a["labels"]["pipeline"] for a in alertmanager_server.alerts()] == ["orders"]


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip, Compression.Deflate])
def test_otlp_receiver_decodes_exported_spans(otlp_receiver: OtlpReceiver, compression: Compression) -> None:
    """Spans sent by the real OTLP/HTTP exporter arrive decoded, with resource and parent."""
    exporter = OTLPSpanExporter(endpoint=otlp_receiver.endpoint + "/v1/traces", compression=compression, timeout=5)
    provider = TracerProvider(resource=Resource.create({"service.name": "pipewarden-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("pipewarden.test")
    with (
        tracer.start_as_current_span("run", attributes={"rows": 3, "tags": ["a", "b"]}) as run,
        tracer.start_as_current_span("task") as task,
    ):
        task.set_status(StatusCode.ERROR, "boom")
    provider.shutdown()

    child, root = otlp_receiver.spans()
    assert (root.name, child.name) == ("run", "task")
    assert child.parent_span_id == root.span_id == f"{run.get_span_context().span_id:016x}"
    assert child.trace_id == root.trace_id == f"{run.get_span_context().trace_id:032x}"
    assert root.attributes == {"rows": 3, "tags": ["a", "b"]}
    assert root.resource["service.name"] == "pipewarden-test"
    assert root.scope == "pipewarden.test"
    assert (child.status_code, child.status_message) == (StatusCode.ERROR.value, "boom")


def test_otlp_receiver_can_refuse(otlp_receiver: OtlpReceiver) -> None:
    """With status set to 503 the receiver answers 503, so exporter failure paths can be tested."""
    otlp_receiver.status = 503
    request = urllib.request.Request(
        otlp_receiver.endpoint + "/v1/traces",
        data=b"",
        method="POST",
        headers={"Content-Type": "application/x-protobuf"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 503
    assert len(otlp_receiver.requests) == 1
