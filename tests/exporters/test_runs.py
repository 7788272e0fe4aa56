"""RunCollector: one set of cells exposed exactly as a prometheus_client Counter + Histogram would be."""

from __future__ import annotations

import doctest
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import exporters.runs
from exporters.catalogue import DURATION_BUCKETS, by_name
from exporters.runs import RunCollector

RUNS = by_name("pipewarden_task_runs_total")
DURATION = by_name("pipewarden_task_duration_seconds")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def exposition(registry: CollectorRegistry) -> tuple[list[tuple[str, str, str]], Samples, set[str]]:
    """(families as name/type/help, sample values without _created, names of _created samples)."""
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    meta = [(f.name, f.type, f.documentation) for f in families]
    values: Samples = {}
    created: set[str] = set()
    for family in families:
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            if s.name.endswith("_created"):
                created.add(f"{s.name}{sorted(s.labels.items())}")  # a time.time(): differs
            else:
                values[key] = s.value
    return meta, values, created


def reference() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry()
    counter = Counter(RUNS.base_name, RUNS.help, RUNS.labels, registry=registry)
    histogram = Histogram(DURATION.name, DURATION.help, DURATION.labels, buckets=DURATION.buckets,
                          registry=registry)
    return registry, counter, histogram


labels = st.tuples(st.sampled_from(["orders", "billing"]), st.sampled_from(["load", "extract"]),
                   st.sampled_from(["success", "failed", "timed_out"]))
# Durations anywhere in the range, and exactly on bucket bounds (the edge between two buckets).
seconds = st.one_of(st.floats(min_value=0.0, max_value=20_000.0, allow_nan=False),
                    st.sampled_from(DURATION_BUCKETS), st.just(0.0))
ops = st.lists(st.tuples(st.sampled_from(["record", "inc", "observe"]), labels, seconds,
                         st.integers(min_value=0, max_value=5)),
               max_size=60)


@settings(max_examples=150, deadline=None)
@given(ops=ops)
def test_exposition_equals_counter_plus_histogram(
        ops: list[tuple[str, tuple[str, str, str], float, int]]) -> None:
    """Any mix of record, inc and observe exposes the same families and values as the reference pair."""
    registry = CollectorRegistry()
    collector = RunCollector(RUNS, DURATION, registry)
    ref_registry, counter, histogram = reference()

    for op, key, value, amount in ops:
        # A cell holds both halves, so any operation makes both series exist; so does the reference.
        c, h = counter.labels(*key), histogram.labels(*key)
        if op == "record":
            collector.cell(*key).record(value)
            c.inc()
            h.observe(value)
        elif op == "inc":
            collector.runs.labels(*key).inc(amount)
            c.inc(amount)
        else:
            collector.duration.labels(**dict(zip(RUNS.labels, key, strict=True))).observe(value)
            h.observe(value)

    assert exposition(registry) == exposition(ref_registry)


def test_exposition_of_an_empty_collector_equals_the_reference() -> None:
    """With no runs recorded, the families are declared with the same help and no samples."""
    registry = CollectorRegistry()
    RunCollector(RUNS, DURATION, registry)
    assert exposition(registry) == exposition(reference()[0])


def test_record_counts_once_and_observes_into_the_bucket_at_the_bound() -> None:
    """record(s) adds one run and puts s in the first bucket whose bound is >= s."""
    registry = CollectorRegistry()
    cell = RunCollector(RUNS, DURATION, registry).cell("orders", "load", "success")
    for s in (0.1, 0.1000001, 5.0):
        cell.record(s)
    labels = {"pipeline": "orders", "task": "load", "status": "success"}

    def bucket(le: str) -> float | None:
        return registry.get_sample_value("pipewarden_task_duration_seconds_bucket",
                                         {**labels, "le": le})

    assert registry.get_sample_value("pipewarden_task_runs_total", labels) == 3
    assert (bucket("0.05"), bucket("0.1"), bucket("0.25"), bucket("5.0"), bucket("+Inf")) == (
        0, 1, 2, 3, 3)
    assert registry.get_sample_value("pipewarden_task_duration_seconds_sum", labels) == (
        0.1 + 0.1000001 + 5.0)


def test_concurrent_records_are_all_counted() -> None:
    """Records from many threads into one cell lose nothing: count, buckets and sum agree."""
    registry = CollectorRegistry()
    cell = RunCollector(RUNS, DURATION, registry).cell("orders", "load", "success")

    def work() -> None:
        for _ in range(2000):
            cell.record(0.5)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    count, total, buckets, _ = cell.snapshot()
    assert (count, sum(buckets), total) == (16_000, 16_000, 8_000.0)


@pytest.mark.parametrize(("call", "message"), [
    (lambda c: c.cell("orders", "load"), "takes labels pipeline, task, status"),
    (lambda c: c.cell("orders", "load", "success").inc(-1), "only go up"),
])
def test_misuse_raises_value_error(call: object, message: str) -> None:
    """Wrong label counts and negative increments raise ValueError saying what is expected."""
    collector = RunCollector(RUNS, DURATION, CollectorRegistry())
    with pytest.raises(ValueError, match=message):
        call(collector)  # type: ignore[operator]


def test_pairs_must_share_labels() -> None:
    """A counter and histogram with different labels cannot be paired."""
    with pytest.raises(ValueError, match="same labels"):
        RunCollector(RUNS, by_name("pipewarden_pipeline_duration_seconds"), CollectorRegistry())


def test_doctests_run() -> None:
    """The examples in the module's docstrings run as written."""
    result = doctest.testmod(exporters.runs)
    assert result.attempted > 0 and result.failed == 0
