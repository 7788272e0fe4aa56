"""A real Prometheus scrapes the /metrics endpoint this process serves."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from servers import PrometheusServer

from agent.events import TaskEnded
from agent.records import RunStatus
from exporters.metrics import Metrics
from exporters.prometheus import MetricsEndpoint, serve_metrics

pytestmark = pytest.mark.integration


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def endpoint(metrics: Metrics) -> Iterator[MetricsEndpoint]:
    with serve_metrics(metrics, port=0) as served:
        yield served


def test_prometheus_reads_counter_and_histogram_count(
    metrics: Metrics,
    endpoint: MetricsEndpoint,
    prometheus_server: Callable[..., PrometheusServer],
) -> None:
    """Prometheus's query API returns the counter value and histogram _count the agent recorded."""
    cell = metrics.tasks.cell("orders", "load")
    for seconds in (0.2, 1.5, 42.0):
        cell.record(TaskEnded("r1", "orders", "load", 1, RunStatus.SUCCESS, 0.0, seconds, seconds))

    prometheus = prometheus_server([f"127.0.0.1:{endpoint.port}"])

    task = '{pipeline="orders", task="load"}'
    assert (
        prometheus.wait_for_value('pipewarden_task_runs_total{pipeline="orders", task="load", status="success"}', 3)
        == 3
    )
    assert (
        prometheus.wait_for_value('pipewarden_task_runs_total{pipeline="orders", task="load", status="failed"}', 0) == 0
    )
    assert prometheus.wait_for_value(f"pipewarden_task_duration_seconds_count{task}", 3) == 3
    assert prometheus.wait_for_value('pipewarden_task_duration_seconds_bucket{pipeline="orders", le="10.0"}', 2) == 2
    [target] = prometheus.targets()
    assert target["health"] == "up"


def test_prometheus_sees_later_increments(
    metrics: Metrics,
    endpoint: MetricsEndpoint,
    prometheus_server: Callable[..., PrometheusServer],
) -> None:
    """A counter incremented after the first scrape shows its new value in the next scrapes."""
    runs = metrics["pipewarden_check_results_total"].labels("orders", "raw", "unique", "duplication", "fail")
    runs.inc()
    prometheus = prometheus_server([f"127.0.0.1:{endpoint.port}"])
    query = 'pipewarden_check_results_total{pipeline="orders", status="fail"}'
    prometheus.wait_for_value(query, 1)

    runs.inc(4)

    assert prometheus.wait_for_value(query, 5) == 5
