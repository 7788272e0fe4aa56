"""Metric outputs that outlive the process: cumulative totals from the store, deadlines, failures counted."""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from servers import TricklingServer

import exporters.outputs
from agent.events import RunEnded, RunOutcome, TaskEnded
from agent.monitor import monitor
from agent.records import RunStatus
from agent.store import SQLiteRunStore
from agent.telemetry import Telemetry
from exporters.metrics import Metrics
from exporters.outputs import CumulativeSamples, MetricOutputs, PushgatewayExporter, TextfileExporter

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteRunStore]:
    s = SQLiteRunStore(tmp_path / "home" / "pipewarden.db")
    yield s
    s.close()


def samples(collector: Any) -> Samples:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def one_run(m: Metrics, status: RunStatus, version: str = "v1", rows: int = 10) -> None:
    m.tasks.cell("orders", "load").record(TaskEnded("r", "orders", "load", 1, status, 0.0, 0.5, 0.5, rows_out=rows))
    m.pipelines.cell("orders").ended(
        RunEnded("r", "orders", status, 0.0, 0.5, 0.5, version=version, outcome=RunOutcome(change=True))
    )


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (name, frozenset({"pipeline": "orders", **labels}.items()))


def test_doctests_run() -> None:
    """The examples in the module's docstrings run as written."""
    result = doctest.testmod(exporters.outputs)
    assert result.attempted > 0 and result.failed == 0


def test_processes_add_up_in_the_store(store: SQLiteRunStore) -> None:
    """Two processes (two registries) on one store: counters add up, gauges and info keep the last value."""
    first, second = Metrics(), Metrics()
    one_run(first, RunStatus.SUCCESS, "v1")
    got = samples(CumulativeSamples(first.registry, store).snapshot("orders"))
    assert got[key("pipewarden_pipeline_runs_total", status="success")] == 1
    assert got[key("pipewarden_pipeline_runs_total", status="failed")] == 0

    later = CumulativeSamples(second.registry, store)
    one_run(second, RunStatus.FAILED, "v2", rows=5)
    later.snapshot("orders")
    one_run(second, RunStatus.SUCCESS, "v2", rows=5)
    got = samples(later.snapshot("orders"))
    assert got[key("pipewarden_pipeline_runs_total", status="success")] == 2
    assert got[key("pipewarden_pipeline_runs_total", status="failed")] == 1
    assert got[key("pipewarden_task_rows_out_total", task="load")] == 20
    assert got[key("pipewarden_task_duration_seconds_count", task="load")] == 3
    assert got[key("pipewarden_task_duration_seconds_bucket", task="load", le="1.0")] == 3
    assert got[key("pipewarden_pipeline_up")] == 1
    assert got[key("pipewarden_pipeline_changes_total")] == 3
    info = {labels: v for (name, labels), v in got.items() if name == "pipewarden_pipeline_version_info"}
    assert info == {frozenset({"pipeline": "orders", "version": "v2"}.items()): 1.0}


def test_a_snapshot_with_nothing_new_adds_nothing(store: SQLiteRunStore) -> None:
    """Exporting twice without new runs leaves the totals as they were (nothing is counted twice)."""
    m = Metrics()
    one_run(m, RunStatus.SUCCESS)
    cumulative = CumulativeSamples(m.registry, store)
    once = samples(cumulative.snapshot("orders"))
    assert not cumulative.pending("orders")
    assert samples(cumulative.snapshot("orders")) == once


def test_without_a_store_the_process_counts_are_sent() -> None:
    """With no run store, what leaves is this process's own counts of the pipeline."""
    m = Metrics()
    one_run(m, RunStatus.SUCCESS)
    got = samples(CumulativeSamples(m.registry).snapshot("orders"))
    assert got[key("pipewarden_pipeline_runs_total", status="success")] == 1


class Failing:
    name = "broken"

    def export(self, pipeline: str, collector: Any) -> bool:
        raise ConnectionError("refused")

    def force_flush(self, timeout: float = 5.0) -> bool:
        return True

    def shutdown(self) -> None:
        pass


def test_a_failing_exporter_is_counted_with_the_pipeline_and_the_others_still_export(tmp_path: Path) -> None:
    """One exporter raising is reported with its pipeline; the textfile beside it is still written."""
    m = Metrics()
    one_run(m, RunStatus.SUCCESS)
    failures: list[tuple[str, str]] = []
    outputs = MetricOutputs(
        CumulativeSamples(m.registry),
        [Failing(), TextfileExporter(tmp_path)],
        on_error=lambda p, name, exc: failures.append((p, name)),
    )
    assert outputs.export("orders") is False
    assert failures == [("orders", "broken")]
    assert (tmp_path / "pipewarden_orders.prom").exists()


def test_telemetry_counts_output_failures_and_sends_them_with_the_next_export(tmp_path: Path) -> None:
    """An unwritable textfile directory is counted under the pipeline; the count is in the next good export."""
    target = tmp_path / "metrics"
    tel = Telemetry(metrics=Metrics(), exporters=[TextfileExporter(target)])

    @monitor(pipeline="orders", telemetry=tel)
    def load() -> int:
        return 1

    load()
    tel.flush()  # the run's export failed, and flushing tried again (its error count had changed)
    failed = tel.metrics.sample("pipewarden_export_errors_total", pipeline="orders", exporter="textfile")
    assert failed == 2
    target.mkdir()
    load()
    tel.shutdown()
    text = (target / "pipewarden_orders.prom").read_text()
    assert 'pipewarden_export_errors_total{exporter="textfile",pipeline="orders"} 2.0' in text


def test_a_trickling_gateway_is_abandoned_at_the_deadline(trickle: TricklingServer) -> None:
    """A Pushgateway that answers one byte a second holds a push no longer than its deadline, then raises."""
    m = Metrics()
    one_run(m, RunStatus.SUCCESS)
    exporter = PushgatewayExporter(f"http://127.0.0.1:{trickle.port}", timeout=0.5)
    with pytest.raises(TimeoutError):  # the socket's own timeout, or the deadline, whichever comes first
        exporter.export("orders", CumulativeSamples(m.registry).snapshot("orders"))
    assert trickle.closed_by_client.wait(10)  # the exporter hung up, the answer unfinished
    assert trickle.sent < len(trickle.answer)


def test_a_trickling_gateway_costs_the_monitored_call_nothing(trickle: TricklingServer) -> None:
    """With a trickling gateway configured, monitored calls return while the push is held; it is counted failed."""
    tel = Telemetry(metrics=Metrics(), exporters=[PushgatewayExporter(f"http://127.0.0.1:{trickle.port}", timeout=60)])

    def errors() -> float:
        return tel.metrics.sample("pipewarden_export_errors_total", pipeline="orders", exporter="pushgateway") or 0.0

    @monitor(pipeline="orders", telemetry=tel)
    def load() -> int:
        return 1

    assert [load() for _ in range(5)] == [1] * 5
    # A push made in the call would have held it until the 60 s deadline and failed: none has ended yet.
    assert errors() == 0
    trickle.close()  # the held push now fails, and the rest find nobody listening
    tel.shutdown(timeout=10)
    assert errors() >= 1
