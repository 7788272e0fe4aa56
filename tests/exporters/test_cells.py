"""Task and pipeline cells: exposed as the catalogue declares, 15 series per task, histograms as prometheus_client's."""

from __future__ import annotations

import doctest
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import exporters.cells
from agent.events import TaskEnded
from agent.pipeline import Pipeline
from agent.records import RunStatus
from agent.runner import run
from agent.store import SQLiteRunStore
from agent.telemetry import Telemetry
from exporters.catalogue import TASK_BUCKETS, by_name
from exporters.metrics import Metrics


def series(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
    text = generate_latest(registry).decode()
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def test_doctests_run() -> None:
    """The examples in the module's docstrings run as written."""
    result = doctest.testmod(exporters.cells)
    assert result.attempted > 0 and result.failed == 0


def test_a_task_exports_fifteen_series(tmp_path: Path) -> None:
    """A 1,000-task pipeline run by the runner exposes 15 series per task, none of them _created."""
    pipe = Pipeline("wide")
    for i in range(1000):
        pipe.task(name=f"t{i}")(lambda: None)
    tel = Telemetry(metrics=Metrics())
    with SQLiteRunStore(tmp_path / "pipewarden.db") as store:
        assert run(pipe, store=store, telemetry=tel).ok
    task_series = [s for s in series(tel.metrics.registry) if s[0].startswith("pipewarden_task_")]
    per_task: dict[str, int] = {}
    for _, labels, _ in task_series:
        per_task[labels["task"]] = per_task.get(labels["task"], 0) + 1
    assert set(per_task.values()) == {15} and len(per_task) == 1000
    assert not [name for name, _, _ in task_series if name.endswith("_created")]


def test_another_status_adds_one_series() -> None:
    """A status other than success and failed adds its series the first time it happens."""
    m = Metrics()
    cell = m.tasks.cell("p", "t")
    cell.record(TaskEnded("r", "p", "t", 0, RunStatus.SKIPPED, 0.0, 0.0))
    statuses = {labels["status"]: v for name, labels, v in series(m.registry) if name == "pipewarden_task_runs_total"}
    assert statuses == {"success": 0.0, "failed": 0.0, "skipped": 1.0}
    # a task that never ran observes no duration
    assert m.sample("pipewarden_task_duration_seconds_count", pipeline="p", task="t") == 0


@settings(max_examples=100, deadline=None)
@given(
    durations=st.lists(
        st.one_of(st.floats(min_value=0, max_value=5000, allow_nan=False), st.sampled_from(TASK_BUCKETS)), max_size=40
    )
)
def test_duration_histogram_exposes_as_prometheus_clients(durations: list[float]) -> None:
    """Any durations give the same buckets, sum and count as a prometheus_client Histogram with the same bounds."""
    m = Metrics()
    spec = by_name("pipewarden_task_duration_seconds")
    ref = CollectorRegistry()
    hist = Histogram(spec.name, spec.help, ["pipeline", "task"], buckets=spec.buckets, registry=ref)
    cell, child = m.tasks.cell("p", "t"), hist.labels("p", "t")
    for d in durations:
        cell.record(TaskEnded("r", "p", "t", 1, RunStatus.SUCCESS, 0.0, d, d))
        child.observe(d)

    def histogram(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        return {
            (name, labels.get("le", "")): v
            for name, labels, v in series(registry)
            if name.startswith(spec.name) and not name.endswith("_created")
        }

    assert histogram(m.registry) == histogram(ref)
