"""Prometheus delivery: exposition, settings, scrape endpoint, push and textfile failures."""

from __future__ import annotations

import doctest
import os
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import agent.settings
import exporters.prometheus
from exporters.catalogue import CATALOGUE, MetricType
from exporters.metrics import CELL_FAMILIES, Metrics
from exporters.prometheus import (
    PipelineView,
    PrometheusSettings,
    serve_metrics,
    textfile_name,
    write_textfile,
)


def populate(m: Metrics, pipeline: str = "orders") -> None:
    """Give every catalogue metric one sample, each label set to its own name."""
    from agent.events import RunEnded, RunOutcome, TaskEnded
    from agent.records import RunStatus
    from exporters.run_metrics import RunMetrics

    listener = RunMetrics(m)
    listener.handle(
        TaskEnded(
            "r1",
            pipeline,
            "task",
            2,
            RunStatus.SUCCESS,
            0.0,
            1.0,
            1.0,
            rows_in=5,
            rows_out=5,
            cpu_seconds=0.5,
            peak_memory_bytes=1024,
            retry=True,
        )
    )
    listener.handle(TaskEnded("r1", pipeline, "task", 1, RunStatus.SUCCESS, 0.0, 1.0, 1.0, item=0))
    for status, at in ((RunStatus.FAILED, 1.0), (RunStatus.SUCCESS, 2.0)):
        listener.handle(
            RunEnded(
                "r1",
                pipeline,
                status,
                0.0,
                at,
                1.0,
                version="v1",
                outcome=RunOutcome(change=True, failed_change=True, recovery_seconds=1.0),
            )
        )
    m.pipelines.cell(pipeline).active = 1
    for spec in CATALOGUE:
        if spec.name in CELL_FAMILIES:
            continue
        labels = {name: pipeline if name == "pipeline" else name for name in spec.labels if name not in spec.info_keys}
        metric = m[spec.name]
        child = metric.labels(**labels) if labels else metric
        if spec.type is MetricType.COUNTER:
            child.inc()
        elif spec.type is MetricType.GAUGE:
            child.set(1)
        elif spec.type is MetricType.HISTOGRAM:
            child.observe(1)
        else:
            child.info({key: "v1" for key in spec.info_keys})


def samples_of(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# --- exposition ---------------------------------------------------------------------------


def test_doctests_run() -> None:
    """The examples in the module's docstrings run as written."""
    result = doctest.testmod(exporters.prometheus)
    assert result.attempted > 0 and result.failed == 0


def test_exposition_parses_with_recorded_values() -> None:
    """The text exposition of a Metrics registry parses back into the values recorded."""
    from agent.events import TaskEnded

    m = Metrics(daemon=True)
    for seconds in (0.3, 2.0):
        m.tasks.cell("orders", "load").record(TaskEnded("r1", "orders", "load", 1, "success", 0.0, seconds, seconds))
    m["pipewarden_dq_null_fraction"].labels("orders", "raw", "amount").set(0.25)

    text = generate_latest(m.registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = samples_of(text)

    assert families["pipewarden_task_runs"].type == "counter"
    assert families["pipewarden_task_duration_seconds"].type == "histogram"
    task = frozenset({"pipeline": "orders", "task": "load"}.items())
    assert samples[("pipewarden_task_runs_total", task | {("status", "success")})] == 2
    assert samples[("pipewarden_task_runs_total", task | {("status", "failed")})] == 0
    assert samples[("pipewarden_task_duration_seconds_count", task)] == 2
    assert samples[("pipewarden_task_duration_seconds_bucket", task | {("le", "1.0")})] == 1
    assert samples[("pipewarden_task_duration_seconds_bucket", task | {("le", "+Inf")})] == 2
    assert not any(name.endswith("_created") and name.startswith("pipewarden_task") for name, _ in samples)
    assert (
        samples[
            (
                "pipewarden_dq_null_fraction",
                frozenset({"pipeline": "orders", "dataset": "raw", "column": "amount"}.items()),
            )
        ]
        == 0.25
    )


def test_every_catalogue_metric_is_exposed() -> None:
    """With every metric populated, the exposition holds every series name the catalogue lists."""
    m = Metrics(daemon=True)
    populate(m)
    names = {name for name, _ in samples_of(generate_latest(m.registry).decode())}
    expected = {series for spec in CATALOGUE for series in spec.series_names}
    assert expected <= names


def test_promtool_finds_no_problem(promtool: str) -> None:
    """`promtool check metrics` reports nothing on an exposition with every metric populated."""
    m = Metrics(daemon=True)
    populate(m)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=generate_latest(m.registry), capture_output=True, timeout=60
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, b"")


# --- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "PIPEWARDEN_METRICS_PORT",
        "PIPEWARDEN_METRICS_ADDR",
        "PIPEWARDEN_PUSHGATEWAY_URL",
        "PIPEWARDEN_PUSH_TIMEOUT",
        "PIPEWARDEN_TEXTFILE_DIR",
    ],
)
def test_env_names_match_agent_settings(name: str) -> None:
    """The exporter's environment variable names equal the documented ones in agent.settings."""
    assert getattr(exporters.prometheus, name) == getattr(agent.settings, name) == name


def test_settings_default_to_nothing_enabled() -> None:
    """With no variables set, no endpoint, gateway or textfile is configured."""
    assert PrometheusSettings.from_env({}) == PrometheusSettings(
        metrics_port=None, metrics_addr="127.0.0.1", pushgateway_url=None, push_timeout=2.0, textfile_dir=None
    )


def test_settings_read_every_variable() -> None:
    """Each variable lands in its field, converted to its type."""
    settings = PrometheusSettings.from_env(
        {
            "PIPEWARDEN_METRICS_PORT": "9464",
            "PIPEWARDEN_METRICS_ADDR": "0.0.0.0",
            "PIPEWARDEN_PUSHGATEWAY_URL": "http://gw:9091",
            "PIPEWARDEN_PUSH_TIMEOUT": "0.5",
            "PIPEWARDEN_TEXTFILE_DIR": "/var/lib/node_exporter",
        }
    )
    assert settings == PrometheusSettings(9464, "0.0.0.0", "http://gw:9091", 0.5, Path("/var/lib/node_exporter"))


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("PIPEWARDEN_METRICS_PORT", "http", "integer port from 0 to 65535"),
        ("PIPEWARDEN_METRICS_PORT", "-1", "integer port from 0 to 65535"),
        ("PIPEWARDEN_METRICS_PORT", "65536", "integer port from 0 to 65535"),
        ("PIPEWARDEN_METRICS_PORT", "9464.5", "integer port from 0 to 65535"),
        ("PIPEWARDEN_PUSH_TIMEOUT", "0", "positive number of seconds"),
        ("PIPEWARDEN_PUSH_TIMEOUT", "soon", "positive number of seconds"),
        ("PIPEWARDEN_PUSH_TIMEOUT", "inf", "positive number of seconds"),
        ("PIPEWARDEN_PUSHGATEWAY_URL", "ftp://gw:9091", "http:// or https:// URL"),
    ],
)
def test_invalid_setting_names_variable_value_and_allowed(variable: str, value: str, allowed: str) -> None:
    """An invalid value raises ValueError naming the variable, the value and what is allowed."""
    with pytest.raises(ValueError) as info:
        PrometheusSettings.from_env({variable: value})
    assert variable in str(info.value)
    assert repr(value) in str(info.value)
    assert allowed in str(info.value)


def test_every_invalid_setting_is_reported_at_once() -> None:
    """Two invalid variables give one error with a line for each."""
    with pytest.raises(ValueError) as info:
        PrometheusSettings.from_env({"PIPEWARDEN_METRICS_PORT": "x", "PIPEWARDEN_PUSH_TIMEOUT": "y"})
    assert str(info.value).splitlines()[0].startswith("PIPEWARDEN_METRICS_PORT")
    assert str(info.value).splitlines()[1].startswith("PIPEWARDEN_PUSH_TIMEOUT")


# --- scrape endpoint ----------------------------------------------------------------------


def test_endpoint_on_port_zero_serves_registry_over_http() -> None:
    """serve_metrics on port 0 binds a free port whose /metrics returns the registry's samples."""
    m = Metrics(daemon=True)
    m["pipewarden_dq_rows"].labels("orders", "raw").set(5)
    with serve_metrics(m, port=0) as endpoint:
        assert endpoint.port > 0
        with urllib.request.urlopen(endpoint.url, timeout=5) as resp:
            text = resp.read().decode()
    key = ("pipewarden_dq_rows", frozenset({"pipeline": "orders", "dataset": "raw"}.items()))
    assert samples_of(text)[key] == 5


def test_endpoint_close_releases_port() -> None:
    """After close() nothing answers on the port and the port can be bound again."""
    endpoint = serve_metrics(CollectorRegistry(), port=0)
    _server, thread = endpoint  # unpacks like prometheus_client's (server, thread)
    endpoint.close()
    assert not thread.is_alive()
    with socket.socket() as s:
        s.bind(("127.0.0.1", endpoint.port))


@pytest.mark.parametrize("port", [-1, 65536, "9464", True])
def test_endpoint_rejects_invalid_port(port: object) -> None:
    """A port outside 0-65535 or not an int raises ValueError naming the value."""
    with pytest.raises(ValueError, match="0 to 65535"):
        serve_metrics(CollectorRegistry(), port=port)  # type: ignore[arg-type]


# --- pipeline views -----------------------------------------------------------------------


def test_view_drops_families_by_suffix_and_other_pipelines() -> None:
    """A view leaves out families by suffix, other pipelines' samples and agent-wide samples."""
    m = Metrics(daemon=True)
    populate(m, "orders")
    populate(m, "billing")
    view = CollectorRegistry()
    view.register(PipelineView(m.registry, "orders", drop_suffixes=("_last_success_timestamp_seconds",)))
    names = {name for name, _ in samples_of(generate_latest(view).decode())}
    pipelines = {dict(labels).get("pipeline") for _, labels in samples_of(generate_latest(view).decode())}

    assert pipelines == {"orders"}
    assert not {n for n in names if n.endswith("_last_success_timestamp_seconds")}
    assert "pipewarden_pipeline_last_failure_timestamp_seconds" in names
    assert "pipewarden_agent_start_time_seconds" not in names


# --- textfile -----------------------------------------------------------------------------


def test_textfile_holds_only_its_pipeline(tmp_path: Path) -> None:
    """The file is pipewarden_<pipeline>.prom and parses to that pipeline's samples only."""
    m = Metrics(daemon=True)
    populate(m, "orders")
    populate(m, "billing")

    path = write_textfile(m, tmp_path, pipeline="orders")

    assert path == tmp_path / "pipewarden_orders.prom"
    samples = samples_of(path.read_text())
    assert {dict(labels)["pipeline"] for _, labels in samples} == {"orders"}
    assert (
        samples[("pipewarden_pipeline_runs_total", frozenset({"pipeline": "orders", "status": "success"}.items()))] == 1
    )


def test_textfile_rewrite_replaces_content_and_leaves_no_temp_file(tmp_path: Path) -> None:
    """A second write replaces the first file's content; only the .prom file remains."""
    m = Metrics(daemon=True)
    gauge = m["pipewarden_dq_rows"].labels("orders", "raw")
    gauge.set(1)
    write_textfile(m, tmp_path, pipeline="orders")
    gauge.set(0)
    path = write_textfile(m, tmp_path, pipeline="orders")

    assert os.listdir(tmp_path) == ["pipewarden_orders.prom"]
    assert (
        samples_of(path.read_text())[("pipewarden_dq_rows", frozenset({("pipeline", "orders"), ("dataset", "raw")}))]
        == 0
    )


def test_textfile_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    """While one thread rewrites the file, every read of it parses to a complete sample set."""
    m = Metrics(daemon=True)
    populate(m)
    path = write_textfile(m, tmp_path, pipeline="orders")
    expected = len(samples_of(path.read_text()))
    done = threading.Event()

    def rewrite() -> None:
        for i in range(100):
            m["pipewarden_dq_rows"].labels("orders", "dataset").set(i)
            write_textfile(m, tmp_path, pipeline="orders")
        done.set()

    writer = threading.Thread(target=rewrite)
    writer.start()
    reads = 0
    while not done.is_set() or reads == 0:
        assert len(samples_of(path.read_text())) == expected
        reads += 1
    writer.join()
    assert os.listdir(tmp_path) == ["pipewarden_orders.prom"]


@pytest.mark.parametrize(
    ("pipeline", "name"),
    [
        ("orders", "pipewarden_orders.prom"),
        ("daily-orders.v2", "pipewarden_daily-orders.v2.prom"),
    ],
)
def test_textfile_name_keeps_safe_names(pipeline: str, name: str) -> None:
    """Names made of letters, digits, '_', '-' and '.' are used as they are."""
    assert textfile_name(pipeline) == name


def test_textfile_names_of_unsafe_pipelines_never_collide() -> None:
    """Two pipelines that sanitise to the same text still get different file names."""
    assert textfile_name("a/b") != textfile_name("a_b")
    assert "/" not in textfile_name("../../etc/passwd")


def test_only_the_daemon_exports_its_families() -> None:
    """A script's metrics have no configuration-reload gauge (it would read 0, "refused"); the daemon's do."""
    script, daemon = (generate_latest(Metrics(daemon=d).registry).decode() for d in (False, True))
    assert "pipewarden_config_last_reload_successful" not in script
    assert "pipewarden_config_last_reload_successful 0.0" in daemon
