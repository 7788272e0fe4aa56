"""Mapped tasks: one run per item of a list known at run time, each item with its own attempts and state."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pandas as pd
import pytest

from agent.errors import MapError
from agent.mapping import items_of
from agent.pipeline import Pipeline
from agent.records import RunStatus
from agent.runner import resume, run
from agent.telemetry import Telemetry


def _mapped(fail: set[int], calls: Counter[int], *, retries: int = 0, flaky: frozenset[int] = frozenset()) -> Pipeline:
    pipe = Pipeline("mapped")

    @pipe.task
    def ids() -> list[int]:
        return [10, 11, 12, 13, 14]

    @pipe.task(map="ids", retries=retries, retry_delay=0.0)
    def fetch(ids: int) -> int:
        calls[ids] += 1
        if ids in fail or (ids in flaky and calls[ids] == 1):
            raise ValueError(f"item {ids} is broken")
        return ids * 2

    @pipe.task
    def total(fetch: list[int]) -> int:
        return sum(fetch)

    return pipe


def test_each_item_runs_once_and_the_results_come_back_in_order(run_opts: dict[str, Any]) -> None:
    """A task mapped over a list runs once per item; the task below receives the outputs in item order."""
    calls: Counter[int] = Counter()
    rec = run(_mapped(set(), calls), **run_opts)
    assert rec.ok and rec.outputs["fetch"] == [20, 22, 24, 26, 28] and rec.outputs["total"] == 120
    assert calls == Counter({10: 1, 11: 1, 12: 1, 13: 1, 14: 1})
    items = rec.items("fetch")
    assert list(items) == [0, 1, 2, 3, 4] and all(a.status is RunStatus.SUCCESS for a in items.values())
    assert [a.label for a in items.values()][:2] == ["fetch[0]", "fetch[1]"]
    assert rec.latest()["fetch"].reason == "5 items: success 5"
    assert rec.executions("fetch") == 1  # the items are not executions of the task itself


def test_items_retry_independently(run_opts: dict[str, Any], sleeps: Any) -> None:
    """A flaky item is retried on its own: two attempt rows for it, one for each other item."""
    calls: Counter[int] = Counter()
    rec = run(_mapped(set(), calls, retries=2, flaky=frozenset({12})), **run_opts)
    assert rec.ok
    assert calls[12] == 2 and calls[10] == calls[14] == 1
    rows = [(a.item, a.attempt, str(a.status)) for a in rec.attempts if a.task == "fetch" and a.item == 2]
    assert rows == [(2, 1, "failed"), (2, 2, "success")]
    assert sleeps.delays == [0.0]


def test_a_failed_item_fails_the_task_and_says_how_many_did(run_opts: dict[str, Any], tel: Telemetry) -> None:
    """Partial success is visible: the mapped task fails naming the item, the others stay successful."""
    calls: Counter[int] = Counter()
    rec = run(_mapped({11, 13}, calls), **run_opts)
    assert rec.status is RunStatus.FAILED
    assert rec.task_state("fetch") is RunStatus.FAILED and rec.task_state("total") is RunStatus.UPSTREAM_FAILED
    error = rec.latest()["fetch"].error or ""
    assert error.startswith("5 items: success 3, failed 2")
    assert "[1] ValueError: item 11 is broken" in error and "[3] ValueError: item 13 is broken" in error
    assert {i: str(a.status) for i, a in rec.items("fetch").items()} == {
        0: "success",
        1: "failed",
        2: "success",
        3: "failed",
        4: "success",
    }
    m = tel.metrics
    assert m.sample("pipewarden_task_items_total", pipeline="mapped", task="fetch", status="success") == 3
    assert m.sample("pipewarden_task_items_total", pipeline="mapped", task="fetch", status="failed") == 2
    assert m.sample("pipewarden_task_runs_total", pipeline="mapped", task="fetch", status="failed") == 1
    assert m.sample("pipewarden_task_duration_seconds_count", pipeline="mapped", task="fetch") == 1


def test_resume_runs_only_the_items_that_failed(run_opts: dict[str, Any]) -> None:
    """After a fix, a resume runs the two failed items again and never the three that succeeded."""
    calls: Counter[int] = Counter()
    broken = {11, 13}
    pipe = _mapped(broken, calls)
    first = run(pipe, **run_opts)
    broken.clear()
    again = resume(pipe, first.run_id, **run_opts)
    assert again.ok and again.outputs["total"] == 120
    assert calls == Counter({10: 1, 11: 2, 12: 1, 13: 2, 14: 1})
    assert again.latest()["fetch"].reason == "5 items: success 5 (3 kept from the earlier execution)"
    assert [a.attempt for a in again.attempts if a.task == "fetch" and a.item == 1] == [1, 2]


def test_at_most_max_parallel_items_run_at_once(run_opts: dict[str, Any]) -> None:
    """max_parallel caps the items running at once, even with more workers free."""
    pipe = Pipeline("capped", max_workers=8)
    lock = threading.Lock()
    now = {"running": 0, "most": 0}

    @pipe.task
    def parts() -> list[int]:
        return list(range(12))

    @pipe.task(map="parts", max_parallel=3)
    def work(parts: int) -> int:
        with lock:
            now["running"] += 1
            now["most"] = max(now["most"], now["running"])
        time.sleep(0.02)
        with lock:
            now["running"] -= 1
        return parts

    rec = run(pipe, **run_opts)
    assert rec.ok and rec.outputs["work"] == list(range(12))
    assert now["most"] == 3


def test_mapping_over_frames_counts_rows_per_item(run_opts: dict[str, Any], tel: Telemetry) -> None:
    """Items may be DataFrames (a partition each): rows in and out are counted per item and summed per task."""
    pipe = Pipeline("partitions")

    @pipe.task
    def split() -> list[pd.DataFrame]:
        return [pd.DataFrame({"x": range(n)}) for n in (3, 4, 5)]

    @pipe.task(map="split")
    def double(split: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([split, split])

    @pipe.task
    def combine(double: list[pd.DataFrame]) -> int:
        return sum(len(f) for f in double)

    rec = run(pipe, **run_opts)
    assert rec.ok and rec.outputs["combine"] == 24
    assert [a.rows_in for a in rec.items("double").values()] == [3, 4, 5]
    assert tel.metrics.sample("pipewarden_task_rows_out_total", pipeline="partitions", task="double") == 24


def test_mapping_over_a_run_parameter(run_opts: dict[str, Any]) -> None:
    """A task may be mapped over a list run parameter; its items come from the run."""
    pipe = Pipeline("by_param", params={"regions": ["eu", "us"]})

    @pipe.task(map="regions")
    def report(regions: str, logical_date: Any) -> str:
        return f"{regions}@{logical_date:%Y-%m-%d}"

    rec = run(pipe, params={"regions": ["eu", "us", "ap"]}, logical_date="2025-01-31", **run_opts)
    assert rec.outputs["report"] == ["eu@2025-01-31", "us@2025-01-31", "ap@2025-01-31"]


def test_an_empty_list_succeeds_with_no_items(run_opts: dict[str, Any]) -> None:
    """Nothing to map over: the task succeeds at once, its output an empty list."""
    pipe = Pipeline("empty")
    pipe.task(name="nothing")(lambda: [])
    pipe.task(name="each", map="nothing")(lambda nothing: nothing)
    rec = run(pipe, **run_opts)
    assert rec.ok and rec.outputs["each"] == [] and rec.latest()["each"].reason == "0 items: none"


def test_mapping_over_what_is_not_a_list_fails_with_map_error(run_opts: dict[str, Any]) -> None:
    """A mapped parameter that receives a dict is one failed attempt (not retried) whose error says what it received."""
    pipe = Pipeline("not_a_list")
    pipe.task(name="config")(lambda: {"a": 1})
    pipe.task(name="each", map="config", retries=2)(lambda config: config)
    rec = run(pipe, **run_opts)
    assert rec.task_state("each") is RunStatus.FAILED
    assert [(a.attempt, a.item) for a in rec.attempts if a.task == "each"] == [(1, None)]
    error = rec.latest()["each"].error or ""
    assert error.startswith("MapError: task 'each' is mapped over its parameter 'config', which received a mapping")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("abc", "a string"),
        ({1, 2}, "a set"),
        (pd.DataFrame({"a": [1]}), "a table"),
        (3, "not iterable"),
    ],
)
def test_items_of_refuses_values_without_a_stable_order_of_items(value: Any, why: str) -> None:
    """items_of names why a value cannot be mapped over (strings, sets, tables, scalars)."""
    with pytest.raises(MapError, match=why) as info:
        items_of(value, "t", "p")
    assert info.value.parameter == "p"


def test_items_of_takes_tuples_ranges_and_generators() -> None:
    """Ordered iterables become a list of items."""
    assert items_of((1, 2), "t", "p") == [1, 2]
    assert items_of(range(3), "t", "p") == [0, 1, 2]
    assert items_of((i for i in "ab"), "t", "p") == ["a", "b"]


def test_item_spans_nest_in_the_mapped_tasks_span(run_opts: dict[str, Any], spans: Any) -> None:
    """Each item attempt is a span (with its index) whose parent is the mapped task's span."""
    calls: Counter[int] = Counter()
    run(_mapped(set(), calls), **run_opts)
    fetch = [s for s in spans.get_finished_spans() if s.name == "RUN fetch"]
    parent = next(s for s in fetch if "pipewarden.task.items" in (s.attributes or {}))
    items = [s for s in fetch if "pipewarden.task.item" in (s.attributes or {})]
    assert sorted(int((s.attributes or {})["pipewarden.task.item"]) for s in items) == [0, 1, 2, 3, 4]
    assert all(s.parent is not None and s.parent.span_id == parent.context.span_id for s in items)


def test_cancelling_a_run_mid_map_starts_no_more_items(run_opts: dict[str, Any]) -> None:
    """A cancel while items run lets the running ones finish and starts no other: the task ends cancelled."""
    pipe = Pipeline("cancelled_map", max_workers=2)
    cancel = threading.Event()
    started: list[int] = []

    @pipe.task
    def parts() -> list[int]:
        return list(range(20))

    @pipe.task(map="parts", max_parallel=2)
    def work(parts: int) -> int:
        started.append(parts)
        if len(started) == 3:
            cancel.set()
        time.sleep(0.02)
        return parts

    rec = run(pipe, cancel=cancel, **run_opts)
    assert rec.status is RunStatus.CANCELLED and rec.task_state("work") is RunStatus.CANCELLED
    assert 3 <= len(started) <= 5
    assert (rec.latest()["work"].error or "").startswith("20 items: ")
    assert len(rec.items("work")) == len(started)  # items never started have no row
