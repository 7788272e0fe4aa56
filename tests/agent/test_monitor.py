"""``@monitor``: spans, metrics, checks and argument validation of the decorator and its ``with`` form."""

from __future__ import annotations

import asyncio
import doctest
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import agent.monitor
from agent.errors import CheckFailedError, DecorationError, PipewardenError, TaskTimeoutError
from agent.monitor import monitor
from agent.telemetry import Telemetry, current_scope, set_telemetry
from agent.versions import source_version
from checks import Unique, drift, unique
from checks.base import Check, CheckContext
from checks.result import CheckResult, Kind, Severity, Status
from exporters.metrics import Metrics

# --- fixtures and helpers -------------------------------------------------------------------


class Clock:
    """A settable clock for ``Telemetry(clock=...)``."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tel(spans: InMemorySpanExporter, clock: Clock) -> Telemetry:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return Telemetry(metrics=Metrics(), tracer_provider=provider, clock=clock)


def sample(tel: Telemetry, name: str, **labels: str) -> float | None:
    return tel.metrics.sample(name, **labels)


def task_runs(tel: Telemetry, task: str, status: str, pipeline: str = "orders") -> float | None:
    return sample(tel, "pipewarden_task_runs_total", pipeline=pipeline, task=task, status=status)


def pipeline_runs(tel: Telemetry, status: str, pipeline: str = "orders") -> float | None:
    return sample(tel, "pipewarden_pipeline_runs_total", pipeline=pipeline, status=status)


def check_results(tel: Telemetry, check: str, kind: str, status: str) -> float | None:
    return sample(
        tel,
        "pipewarden_check_results_total",
        pipeline="orders",
        dataset="transform",
        check=check,
        kind=kind,
        status=status,
    )


def by_name(spans: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    finished = spans.get_finished_spans()
    named = {s.name: s for s in finished}
    assert len(named) == len(finished), f"span names are not unique: {[s.name for s in finished]}"
    return named


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


class MinRows(Check):
    """Passes when the frame has at least ``n`` rows; reports the row count."""

    kind = Kind.VOLUME

    def __init__(self, n: int, **kw: Any) -> None:
        super().__init__(name=kw.pop("name", "min_rows"), **kw)
        self.n = n

    def evaluate(self, df: Any, context: CheckContext) -> CheckResult:
        status = Status.PASS if len(df) >= self.n else Status.FAIL
        return self.result(status, observed=len(df), threshold=self.n, measure="row_count")


class SeenContext(Check):
    """Passes, and remembers the context it was given."""

    def __init__(self) -> None:
        super().__init__(name="seen_context")
        self.contexts: list[CheckContext] = []

    def evaluate(self, df: Any, context: CheckContext) -> CheckResult:
        self.contexts.append(context)
        return self.result(Status.PASS)


def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"order_id": range(n), "amount": [1.5] * n})


# --- sync and async calls -------------------------------------------------------------------


def test_sync_call_returns_value_and_records_one_successful_run(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """A successful call returns its value and counts one task run and one pipeline run."""

    @monitor(pipeline="orders", telemetry=tel)
    def load(x: int) -> int:
        return x * 2

    assert load(21) == 42

    assert task_runs(tel, "load", "success") == 1
    assert pipeline_runs(tel, "success") == 1
    assert sample(tel, "pipewarden_task_duration_seconds_count", pipeline="orders", task="load") == 1
    assert sample(tel, "pipewarden_pipeline_up", pipeline="orders") == 1
    [span] = spans.get_finished_spans()
    assert (span.name, span.kind, span.status.status_code) == ("RUN orders", SpanKind.SERVER, StatusCode.UNSET)
    assert span.attributes is not None
    assert span.attributes["cicd.pipeline.result"] == "success"


def test_async_call_returns_value_and_records_one_successful_run(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """An async function stays a coroutine function and its awaited call is recorded like a sync one."""

    @monitor(pipeline="orders", telemetry=tel)
    async def load(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    assert inspect.iscoroutinefunction(load)
    assert asyncio.run(load(21)) == 42
    assert task_runs(tel, "load", "success") == 1
    assert pipeline_runs(tel, "success") == 1
    [span] = spans.get_finished_spans()
    assert (span.name, span.kind) == ("RUN orders", SpanKind.SERVER)


def test_concurrent_async_calls_each_get_their_own_trace(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """Interleaved async calls of one function never see each other's scope: one trace each."""

    @monitor(pipeline="orders", telemetry=tel)
    async def inner(i: int) -> int:
        await asyncio.sleep(0)
        return i

    @monitor(pipeline="orders", telemetry=tel)
    async def outer(i: int) -> int:
        await asyncio.sleep(0)
        return await inner(i)

    async def main() -> list[int]:
        return await asyncio.gather(*(outer(i) for i in range(50)))

    assert asyncio.run(main()) == list(range(50))
    finished = spans.get_finished_spans()
    roots = {s.context.span_id: s for s in finished if s.name == "RUN orders"}
    children = [s for s in finished if s.name == "RUN inner"]
    assert len(roots) == len(children) == 50
    assert {parent_id(c) for c in children} == set(roots)
    assert all(roots[parent_id(c)].context.trace_id == c.context.trace_id for c in children)
    assert len({s.context.trace_id for s in roots.values()}) == 50
    assert pipeline_runs(tel, "success") == 50
    assert task_runs(tel, "inner", "success") == 50


# --- the exception path ---------------------------------------------------------------------


class BoomError(Exception):
    pass


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_exception_is_reraised_unchanged_and_recorded_as_failure(
    tel: Telemetry, spans: InMemorySpanExporter, is_async: bool
) -> None:
    """The user's exception object propagates; the span is ERROR with it; runs count as failed."""
    error = BoomError("bad input")

    if is_async:

        @monitor(pipeline="orders", telemetry=tel)
        async def load_async() -> None:
            raise error

        def call() -> None:
            asyncio.run(load_async())

        task = "load_async"
    else:

        @monitor(pipeline="orders", telemetry=tel)
        def load() -> None:
            raise error

        call = load
        task = "load"

    with pytest.raises(BoomError) as info:
        call()

    assert info.value is error
    [span] = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is not None and "bad input" in span.status.description
    [event] = span.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"].endswith("BoomError")
    assert event.attributes["exception.message"] == "bad input"
    assert span.attributes is not None
    assert span.attributes["error.type"] == "BoomError"
    assert span.attributes["cicd.pipeline.result"] == "failure"
    assert task_runs(tel, task, "failed") == 1
    assert task_runs(tel, task, "success") == 0  # exported at 0: success rate divides by it
    assert pipeline_runs(tel, "failed") == 1
    assert pipeline_runs(tel, "success") == 0
    assert sample(tel, "pipewarden_pipeline_up", pipeline="orders") == 0


def test_timeout_error_counts_as_timed_out(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """A TaskTimeoutError escaping the call records status timed_out and result timeout."""

    @monitor(pipeline="orders", telemetry=tel)
    def load() -> None:
        raise TaskTimeoutError("load ran past 5s", task="load", timeout=5.0)

    with pytest.raises(TaskTimeoutError):
        load()

    assert task_runs(tel, "load", "timed_out") == 1
    assert pipeline_runs(tel, "timed_out") == 1
    [span] = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["cicd.pipeline.result"] == "timeout"


def test_exception_caught_by_outer_call_fails_only_the_inner_task(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """An inner failure the outer function handles leaves the pipeline run successful."""

    @monitor(telemetry=tel)
    def fragile() -> None:
        raise BoomError("flaky source")

    @monitor(pipeline="orders", telemetry=tel)
    def run() -> str:
        try:
            fragile()
        except BoomError:
            return "fallback"
        return "primary"

    assert run() == "fallback"
    assert task_runs(tel, "fragile", "failed") == 1
    assert task_runs(tel, "run", "success") == 1
    assert pipeline_runs(tel, "success") == 1
    assert pipeline_runs(tel, "failed") == 0
    named = by_name(spans)
    assert named["RUN fragile"].status.status_code is StatusCode.ERROR
    assert named["RUN orders"].status.status_code is StatusCode.UNSET


def test_exception_through_two_levels_is_the_same_object(tel: Telemetry) -> None:
    """An exception passing through nested monitored calls arrives unchanged, both levels failed."""
    error = BoomError("deep")

    @monitor(telemetry=tel)
    def inner() -> None:
        raise error

    @monitor(pipeline="orders", telemetry=tel)
    def outer() -> None:
        inner()

    with pytest.raises(BoomError) as info:
        outer()
    assert info.value is error
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert task_runs(tel, "inner", "failed") == task_runs(tel, "outer", "failed") == 1
    assert pipeline_runs(tel, "failed") == 1


# --- nesting -----------------------------------------------------------------------------------


def test_nested_calls_form_parent_and_child_spans(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """The outermost call is a SERVER span RUN <pipeline>; nested calls are INTERNAL children."""

    @monitor(telemetry=tel)
    def extract() -> pd.DataFrame:
        return frame(3)

    @monitor(telemetry=tel)
    def transform(df: pd.DataFrame) -> pd.DataFrame:
        return df.head(2)

    @monitor(pipeline="orders", telemetry=tel)
    def run() -> pd.DataFrame:
        return transform(extract())

    run()

    named = by_name(spans)
    root, ex, tr = named["RUN orders"], named["RUN extract"], named["RUN transform"]
    assert root.kind is SpanKind.SERVER and root.parent is None
    assert ex.kind is SpanKind.INTERNAL and tr.kind is SpanKind.INTERNAL
    assert parent_id(ex) == parent_id(tr) == root.context.span_id
    assert ex.context.trace_id == tr.context.trace_id == root.context.trace_id
    run_id = dict(root.attributes or {})["cicd.pipeline.run.id"]
    assert run_id
    assert dict(root.attributes or {}) == {
        "cicd.pipeline.name": "orders",
        "cicd.pipeline.task.name": "run",
        "cicd.pipeline.run.id": run_id,
        "pipewarden.pipeline.version": source_version(__file__),
        "cicd.pipeline.result": "success",
        "pipewarden.rows_out": 2,
    }
    assert dict(tr.attributes or {}) == {
        "cicd.pipeline.name": "orders",
        "cicd.pipeline.task.name": "transform",
        "cicd.pipeline.run.id": run_id,
        "cicd.pipeline.task.run.result": "success",
        "pipewarden.rows_in": 3,
        "pipewarden.rows_out": 2,
    }
    assert dict(ex.attributes or {})["cicd.pipeline.task.run.result"] == "success"


def test_three_levels_chain_their_parents(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """A grandchild's parent is the child, whose parent is the root, all in one trace."""

    @monitor(telemetry=tel)
    def leaf() -> int:
        return 1

    @monitor(telemetry=tel)
    def middle() -> int:
        return leaf()

    @monitor(pipeline="orders", telemetry=tel)
    def top() -> int:
        return middle()

    top()
    named = by_name(spans)
    assert parent_id(named["RUN leaf"]) == named["RUN middle"].context.span_id
    assert parent_id(named["RUN middle"]) == named["RUN orders"].context.span_id
    assert len({s.context.trace_id for s in named.values()}) == 1


def test_nested_calls_count_one_pipeline_run_and_each_task(tel: Telemetry) -> None:
    """Only the outermost call is a pipeline run; every call is a task run."""

    @monitor(telemetry=tel)
    def step(i: int) -> int:
        return i

    @monitor(pipeline="orders", telemetry=tel)
    def run() -> int:
        return sum(step(i) for i in range(3))

    assert run() == 3
    assert pipeline_runs(tel, "success") == 1
    assert task_runs(tel, "step", "success") == 3
    assert task_runs(tel, "run", "success") == 1
    assert sample(tel, "pipewarden_pipeline_runs_total", pipeline="step", status="success") is None


def test_pipeline_name_defaults_to_the_module_name(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """Without pipeline= the outermost call's pipeline is the last part of its module's name."""

    @monitor(telemetry=tel)
    def load() -> None:
        return None

    load()
    expected = load.__module__.rsplit(".", 1)[-1]
    assert expected == "test_monitor"
    assert pipeline_runs(tel, "success", pipeline=expected) == 1
    [span] = spans.get_finished_spans()
    assert span.name == f"RUN {expected}"


def test_nested_call_inherits_the_enclosing_pipeline(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """A nested call without pipeline= is recorded under the enclosing call's pipeline."""

    @monitor(telemetry=tel)
    def load() -> None:
        return None

    @monitor(pipeline="billing", telemetry=tel)
    def run() -> None:
        load()

    run()
    load()  # on its own: the module name again

    assert task_runs(tel, "load", "success", pipeline="billing") == 1
    assert task_runs(tel, "load", "success", pipeline="test_monitor") == 1
    child = by_name(spans)["RUN load"]
    assert child.attributes is not None
    assert child.attributes["cicd.pipeline.name"] == "billing"


def test_explicit_task_name_overrides_the_function_name(tel: Telemetry) -> None:
    """task= names the task in metrics instead of the function's __name__."""

    @monitor(pipeline="orders", task="load_orders", telemetry=tel)
    def f() -> None:
        return None

    f()
    assert task_runs(tel, "load_orders", "success") == 1
    assert task_runs(tel, "f", "success") is None


# --- threads ------------------------------------------------------------------------------------


def test_threads_keep_exact_counts_and_separate_traces(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """8 threads x 200 nested calls: exact counts, one trace per call, nothing left in progress."""
    frames = [frame(i % 7) for i in range(7)]

    @monitor(telemetry=tel)
    def transform(df: pd.DataFrame) -> pd.DataFrame:
        return df

    @monitor(pipeline="orders", telemetry=tel)
    def run(i: int) -> int:
        df = transform(frames[i % 7])
        if i % 10 == 0:
            raise BoomError(i)
        return len(df)

    def call(i: int) -> str:
        try:
            run(i)
        except BoomError:
            return "failed"
        return "success"

    calls = 8 * 200
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(call, range(calls)))

    failed = outcomes.count("failed")
    assert failed == calls // 10
    assert task_runs(tel, "run", "failed") == failed
    assert task_runs(tel, "run", "success") == calls - failed
    assert task_runs(tel, "transform", "success") == calls
    assert pipeline_runs(tel, "failed") == failed
    assert pipeline_runs(tel, "success") == calls - failed
    assert sample(tel, "pipewarden_task_duration_seconds_count", pipeline="orders", task="transform") == calls
    assert sample(tel, "pipewarden_task_rows_in_total", pipeline="orders", task="transform") == sum(
        i % 7 for i in range(calls)
    )

    finished = spans.get_finished_spans()
    roots = {s.context.span_id: s for s in finished if s.name == "RUN orders"}
    children = [s for s in finished if s.name == "RUN transform"]
    assert len(roots) == len(children) == calls
    assert all(r.parent is None for r in roots.values())
    assert len({r.context.trace_id for r in roots.values()}) == calls
    for child in children:
        root = roots[parent_id(child)]  # type: ignore[index]
        assert root.context.trace_id == child.context.trace_id


# --- what the wrapper keeps -----------------------------------------------------------------------


def _sync_target(df: pd.DataFrame, *, limit: int = 10, label: str | None = None) -> pd.DataFrame:
    """Keep the first rows."""
    return df.head(limit)


async def _async_target(df: pd.DataFrame, *, limit: int = 10) -> pd.DataFrame:
    """Keep the first rows, asynchronously."""
    return df.head(limit)


@pytest.mark.parametrize("fn", [_sync_target, _async_target], ids=["sync", "async"])
def test_wrapper_keeps_signature_name_doc_and_wrapped(tel: Telemetry, fn: Callable[..., Any]) -> None:
    """The wrapper has the function's signature, __name__, __qualname__, __doc__ and __wrapped__."""
    wrapped = monitor(pipeline="orders", telemetry=tel)(fn)
    assert inspect.signature(wrapped) == inspect.signature(fn)
    assert wrapped.__name__ == fn.__name__
    assert wrapped.__qualname__ == fn.__qualname__
    assert wrapped.__doc__ == fn.__doc__
    assert wrapped.__module__ == fn.__module__
    assert wrapped.__wrapped__ is fn  # type: ignore[attr-defined]
    assert wrapped is not fn


def test_methods_and_partials_can_be_decorated(tel: Telemetry) -> None:
    """Methods get self through the wrapper; a functools.partial is named after its type."""

    class Loader:
        def __init__(self) -> None:
            self.calls = 0

        @monitor(pipeline="orders", telemetry=tel)
        def load(self, n: int) -> int:
            self.calls += 1
            return n

    loader = Loader()
    assert loader.load(4) == 4 and loader.calls == 1
    part = monitor(pipeline="orders", telemetry=tel)(functools.partial(_sync_target, limit=1))
    assert len(part(frame(3))) == 1
    assert task_runs(tel, "load", "success") == 1
    assert task_runs(tel, "partial", "success") == 1


# --- rows in and out ------------------------------------------------------------------------------


TABLES: list[tuple[str, Callable[[int], Any]]] = [
    ("DataFrame", frame),
    ("Series", lambda n: pd.Series(range(n))),
    ("pyarrow.Table", lambda n: pa.table({"x": list(range(n))})),
    ("pyarrow.RecordBatch", lambda n: pa.RecordBatch.from_pydict({"x": list(range(n))})),
]


@pytest.mark.parametrize(("kind", "make"), TABLES, ids=[k for k, _ in TABLES])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_rows_in_and_out_are_counted(
    tel: Telemetry, spans: InMemorySpanExporter, kind: str, make: Callable[[int], Any], is_async: bool
) -> None:
    """Table arguments (positional and keyword) add to rows in; a returned table to rows out."""
    if is_async:

        @monitor(pipeline="orders", task="step", telemetry=tel)
        async def step_async(a: Any, *, b: Any, factor: int) -> Any:
            return a.slice(0, 2) if hasattr(a, "num_rows") else a.head(2)

        out = asyncio.run(step_async(make(5), b=make(3), factor=7))
    else:

        @monitor(pipeline="orders", task="step", telemetry=tel)
        def step(a: Any, *, b: Any, factor: int) -> Any:
            return a.slice(0, 2) if hasattr(a, "num_rows") else a.head(2)

        out = step(make(5), b=make(3), factor=7)

    assert len(out) == 2
    assert sample(tel, "pipewarden_task_rows_in_total", pipeline="orders", task="step") == 8
    assert sample(tel, "pipewarden_task_rows_out_total", pipeline="orders", task="step") == 2
    [span] = spans.get_finished_spans()
    assert span.attributes is not None
    assert (span.attributes["pipewarden.rows_in"], span.attributes["pipewarden.rows_out"]) == (8, 2)


def test_non_table_values_are_not_counted_as_rows(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """Lists, dicts, strings and numbers are not tables: rows stay at zero."""

    @monitor(pipeline="orders", telemetry=tel)
    def step(items: list[int], mapping: dict[str, int], text: str) -> list[int]:
        return items

    step([1, 2, 3], {"a": 1}, "abc")
    assert sample(tel, "pipewarden_task_rows_in_total", pipeline="orders", task="step") == 0
    assert sample(tel, "pipewarden_task_rows_out_total", pipeline="orders", task="step") == 0
    [span] = spans.get_finished_spans()
    assert "pipewarden.rows_in" not in (span.attributes or {})
    assert "pipewarden.rows_out" not in (span.attributes or {})


def test_rows_accumulate_over_calls(tel: Telemetry) -> None:
    """Row counters add up across calls."""

    @monitor(pipeline="orders", telemetry=tel)
    def step(df: pd.DataFrame) -> pd.DataFrame:
        return df

    for n in (1, 2, 3):
        step(frame(n))
    assert sample(tel, "pipewarden_task_rows_in_total", pipeline="orders", task="step") == 6
    assert sample(tel, "pipewarden_task_rows_out_total", pipeline="orders", task="step") == 6


# --- the with form --------------------------------------------------------------------------------


def test_with_block_with_task_records_a_task_and_a_pipeline_run(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """`with monitor(pipeline=, task=) as run` records the block like a call of that task."""
    with monitor(pipeline="orders", task="load", telemetry=tel) as run:
        assert current_scope() is run
        run.rows_in(5)
        run.rows_out(3)
    assert current_scope() is None

    assert task_runs(tel, "load", "success") == 1
    assert pipeline_runs(tel, "success") == 1
    assert sample(tel, "pipewarden_task_rows_out_total", pipeline="orders", task="load") == 3
    [span] = spans.get_finished_spans()
    assert (span.name, span.kind) == ("RUN orders", SpanKind.SERVER)
    assert span.attributes is not None
    assert span.attributes["cicd.pipeline.task.name"] == "load"


def test_with_block_without_task_is_a_pipeline_run_only(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """A top-level block without task= counts a pipeline run and no task run."""
    with monitor(pipeline="orders", telemetry=tel):
        pass
    assert pipeline_runs(tel, "success") == 1
    assert task_runs(tel, "orders", "success") is None
    [span] = spans.get_finished_spans()
    assert "cicd.pipeline.task.name" not in (span.attributes or {})


def test_with_blocks_and_calls_nest(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """A block inside a block, and a decorated call inside that, are children inheriting the pipeline."""

    @monitor(telemetry=tel)
    def transform() -> int:
        return 1

    with monitor(pipeline="orders", telemetry=tel), monitor(task="extract", telemetry=tel) as ex:
        assert ex.pipeline == "orders"
        transform()

    named = by_name(spans)
    assert parent_id(named["RUN extract"]) == named["RUN orders"].context.span_id
    assert parent_id(named["RUN transform"]) == named["RUN extract"].context.span_id
    assert task_runs(tel, "extract", "success") == 1
    assert task_runs(tel, "transform", "success") == 1
    assert pipeline_runs(tel, "success") == 1


def test_same_monitor_object_is_reentrant(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """One monitor object entered three times nests three spans and unwinds in order."""
    m = monitor(pipeline="orders", task="load", telemetry=tel)
    with m as a:
        with m as b:
            with m as c:
                assert current_scope() is c
            assert current_scope() is b
        assert current_scope() is a
    assert current_scope() is None

    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["RUN load", "RUN load", "RUN orders"]
    inner, middle, outer = finished
    assert parent_id(inner) == middle.context.span_id
    assert parent_id(middle) == outer.context.span_id
    assert task_runs(tel, "load", "success") == 3
    assert pipeline_runs(tel, "success") == 1


def test_same_monitor_object_used_from_many_threads(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """Threads entering one monitor object each get their own root span."""
    m = monitor(pipeline="orders", task="load", telemetry=tel)
    barrier = threading.Barrier(4)

    def work() -> None:
        with m:
            barrier.wait(timeout=10)  # all four blocks are open at once

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    finished = spans.get_finished_spans()
    assert len(finished) == 4
    assert all(s.parent is None for s in finished)
    assert pipeline_runs(tel, "success") == 4


def test_with_block_exception_propagates_and_fails_the_run(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """An exception leaving the block is the same object and marks the run failed."""
    error = BoomError("in block")
    with pytest.raises(BoomError) as info, monitor(pipeline="orders", task="load", telemetry=tel):
        raise error
    assert info.value is error
    assert task_runs(tel, "load", "failed") == 1
    assert pipeline_runs(tel, "failed") == 1
    [span] = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert current_scope() is None


# --- checks -------------------------------------------------------------------------------------


def test_warn_policy_logs_records_and_returns_the_value(
    tel: Telemetry, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing check under warn is logged and counted; the call returns its value as a success."""
    out = frame(2)

    @monitor(pipeline="orders", checks=[MinRows(5)], telemetry=tel)
    def transform() -> pd.DataFrame:
        return out

    with caplog.at_level(logging.WARNING, logger="pipewarden.monitor"):
        assert transform() is out

    [record] = [r for r in caplog.records if r.name == "pipewarden.monitor"]
    assert "min_rows" in record.getMessage() and "fail" in record.getMessage()
    assert check_results(tel, "min_rows", "volume", "fail") == 1
    assert task_runs(tel, "transform", "success") == 1
    named = by_name(spans)
    check_span = named["CHECK min_rows"]
    assert check_span.status.status_code is StatusCode.ERROR
    assert parent_id(check_span) == named["RUN orders"].context.span_id
    assert named["RUN orders"].status.status_code is StatusCode.UNSET


def test_raise_policy_raises_after_recording_the_failure(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """A blocking check under raise gives CheckFailedError with .results, after metrics and span."""
    check = MinRows(5)

    @monitor(pipeline="orders", checks=[check, MinRows(1, name="non_empty")], on_check_failure="raise", telemetry=tel)
    def transform() -> pd.DataFrame:
        return frame(2)

    with pytest.raises(CheckFailedError) as info:
        transform()

    error = info.value
    assert isinstance(error, PipewardenError) and isinstance(error, RuntimeError)
    assert [(r.check, r.status) for r in error.results] == [("min_rows", Status.FAIL)]
    assert "min_rows" in str(error) and "orders.transform" in str(error)
    # Everything below was recorded before the error reached the caller.
    assert task_runs(tel, "transform", "failed") == 1
    assert task_runs(tel, "transform", "success") == 0
    assert pipeline_runs(tel, "failed") == 1
    assert check_results(tel, "non_empty", "volume", "pass") == 1
    named = by_name(spans)
    run = named["RUN orders"]
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes is not None
    assert run.attributes["cicd.pipeline.result"] == "failure"
    assert run.attributes["error.type"] == "CheckFailedError"
    assert {s.name for s in named.values()} == {"RUN orders", "CHECK min_rows", "CHECK non_empty"}


def test_raise_policy_with_passing_checks_returns_the_value(tel: Telemetry) -> None:
    """When every check passes, the raise policy changes nothing."""

    @monitor(pipeline="orders", checks=[MinRows(1)], on_check_failure="raise", telemetry=tel)
    def transform() -> pd.DataFrame:
        return frame(2)

    assert len(transform()) == 2
    assert task_runs(tel, "transform", "success") == 1
    assert sample(tel, "pipewarden_dq_rows", pipeline="orders", dataset="transform") == 2


def _exploding(df: pd.DataFrame) -> bool:
    raise KeyError("no such column")


def test_check_that_raises_becomes_an_error_result(tel: Telemetry, caplog: pytest.LogCaptureFixture) -> None:
    """Under warn, a check callable that raises gives a result of status error, logged; the call returns."""

    @monitor(pipeline="orders", checks=[_exploding], telemetry=tel)
    def transform() -> pd.DataFrame:
        return frame(2)

    with caplog.at_level(logging.WARNING, logger="pipewarden.monitor"):
        assert len(transform()) == 2
    assert check_results(tel, "_exploding", "custom", "error") == 1
    assert task_runs(tel, "transform", "success") == 1
    assert any(
        "_exploding" in r.getMessage() and "KeyError" in r.getMessage()
        for r in caplog.records
        if r.name == "pipewarden.monitor"
    )


@pytest.mark.parametrize("check", [_exploding, Unique("idd")], ids=["callable-raises", "missing-column"])
def test_raise_policy_raises_on_a_check_that_cannot_run(tel: Telemetry, check: Any) -> None:
    """Under raise, a blocking check in status error raises CheckFailedError saying why, like a failure."""

    @monitor(pipeline="orders", checks=[check], on_check_failure="raise", telemetry=tel)
    def transform() -> pd.DataFrame:
        return frame(2)

    with pytest.raises(CheckFailedError, match="could not run") as info:
        transform()
    assert [r.status for r in info.value.results] == [Status.ERROR]
    assert task_runs(tel, "transform", "failed") == 1


@pytest.mark.parametrize(
    "opt_out",
    [
        {"checks": [Unique("idd", on_error="warn")]},
        {"checks": [_exploding], "on_check_error": "warn"},
    ],
    ids=["Check(on_error=warn)", "monitor(on_check_error=warn)"],
)
def test_error_opt_out_lets_the_call_return(tel: Telemetry, opt_out: dict[str, Any]) -> None:
    """An explicit on_error / on_check_error of warn records the error result without raising."""

    @monitor(pipeline="orders", on_check_failure="raise", telemetry=tel, **opt_out)
    def transform() -> pd.DataFrame:
        return frame(2)

    assert len(transform()) == 2
    assert task_runs(tel, "transform", "success") == 1


def test_with_block_run_checks_follows_the_raise_policy(tel: Telemetry) -> None:
    """`with monitor(on_check_failure="raise") as run: run.run_checks(...)` raises on a blocking failure."""
    with pytest.raises(CheckFailedError, match="unique"):  # noqa: SIM117 - the raise is from inside the block
        with monitor(pipeline="orders", on_check_failure="raise", telemetry=tel) as run:
            run.run_checks([unique("order_id")], pd.DataFrame({"order_id": [1, 1]}))
    assert pipeline_runs(tel, "failed") == 1


def test_with_block_run_checks_under_warn_returns_the_results(tel: Telemetry) -> None:
    """Under the default warn policy, run.run_checks returns the failing result and the block goes on."""
    with monitor(pipeline="orders", telemetry=tel) as run:
        [result] = run.run_checks([unique("order_id")], pd.DataFrame({"order_id": [1, 1]}))
    assert result.status is Status.FAIL
    assert pipeline_runs(tel, "success") == 1


def test_run_checks_with_swapped_arguments_is_a_type_error(tel: Telemetry) -> None:
    """run.run_checks(df, checks) raises TypeError instead of judging a check named 'str'."""
    with monitor(pipeline="orders", telemetry=tel) as run, pytest.raises(TypeError, match="list of checks"):
        run.run_checks(frame(2), [unique("order_id")])  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", ["warn", "raise"])
@pytest.mark.parametrize(
    "check",
    [
        MinRows(5, severity="warn"),
        lambda df: CheckResult("raw", Kind.CUSTOM, Status.FAIL, severity=Severity.WARN),
    ],
    ids=["Check(severity=warn)", "raw-result-severity-warn"],
)
def test_severity_warn_never_raises(tel: Telemetry, policy: str, check: Any) -> None:
    """A violated check of severity warn is recorded but never raises, whatever the policy."""

    @monitor(
        pipeline="orders",
        checks=[check],
        on_check_failure=policy,  # type: ignore[arg-type]
        telemetry=tel,
    )
    def transform() -> pd.DataFrame:
        return frame(2)

    assert len(transform()) == 2
    assert task_runs(tel, "transform", "success") == 1


def test_checks_get_inputs_and_names_in_their_context(tel: Telemetry, clock: Clock) -> None:
    """Checks receive the call's table inputs, pipeline, task, dataset and the injected clock."""
    seen = SeenContext()
    a, b = frame(3), frame(4)

    @monitor(pipeline="orders", dataset="orders_clean", checks=[seen], telemetry=tel)
    def merge(left: pd.DataFrame, right: pd.DataFrame, how: str = "inner") -> pd.DataFrame:
        return pd.concat([left, right])

    merge(a, right=b)
    [ctx] = seen.contexts
    assert [len(x) for x in ctx.inputs] == [3, 4]
    assert (ctx.pipeline, ctx.task, ctx.dataset) == ("orders", "merge", "orders_clean")
    assert ctx.now.timestamp() == clock.now


def test_predicate_checks_pass_and_fail(tel: Telemetry) -> None:
    """A check returning a bool is a pass (True) or a fail (False)."""

    def has_rows(df: pd.DataFrame) -> bool:
        return len(df) > 0

    def has_many_rows(df: pd.DataFrame) -> bool:
        return len(df) > 100

    @monitor(pipeline="orders", checks=[has_rows, has_many_rows], telemetry=tel)
    def transform() -> pd.DataFrame:
        return frame(2)

    transform()
    common = {"pipeline": "orders", "dataset": "transform", "kind": "custom"}
    assert sample(tel, "pipewarden_check_results_total", check="has_rows", status="pass", **common) == 1
    assert sample(tel, "pipewarden_check_results_total", check="has_many_rows", status="fail", **common) == 1


def test_checks_run_on_async_results(tel: Telemetry) -> None:
    """Async functions get their checks run on the awaited value, with the same policy."""

    @monitor(pipeline="orders", checks=[MinRows(5)], on_check_failure="raise", telemetry=tel)
    async def transform() -> pd.DataFrame:
        return frame(2)

    with pytest.raises(CheckFailedError):
        asyncio.run(transform())
    assert task_runs(tel, "transform", "failed") == 1


# --- misuse is caught at decoration time ------------------------------------------------------------


def _plain() -> None:
    return None


def _gen() -> Iterator[int]:
    yield 1


async def _agen() -> Any:
    yield 1


class _SomeClass:
    pass


MISUSE: list[tuple[str, Callable[[], Any], str]] = [
    ("no-parentheses", lambda: monitor(_plain), "@monitor("),
    ("class", lambda: monitor()(_SomeClass), "class"),
    ("non-callable", lambda: monitor()(42), "int"),
    ("generator", lambda: monitor()(_gen), "generator"),
    ("async-generator", lambda: monitor()(_agen), "generator"),
    ("pipeline-int", lambda: monitor(pipeline=3), "pipeline"),  # type: ignore[arg-type]
    ("pipeline-empty", lambda: monitor(pipeline=""), "pipeline"),
    ("task-int", lambda: monitor(task=3), "task"),  # type: ignore[arg-type]
    ("dataset-bytes", lambda: monitor(dataset=b"x"), "dataset"),  # type: ignore[arg-type]
    ("checks-str", lambda: monitor(checks="not_null"), "checks"),
    ("checks-none", lambda: monitor(checks=None), "checks"),  # type: ignore[arg-type]
    ("checks-int", lambda: monitor(checks=5), "checks"),  # type: ignore[arg-type]
    ("checks-item", lambda: monitor(checks=[MinRows(1), 1]), "checks[1]"),
    ("checks-factory-uncalled", lambda: monitor(checks=[unique]), "unique(...)"),
    ("checks-drift-uncalled", lambda: monitor(checks=[drift]), "drift(...)"),
    ("checks-class", lambda: monitor(checks=[Unique]), "class Unique"),
    ("on-check-error", lambda: monitor(on_check_error="ignore"), "fail, warn"),  # type: ignore[arg-type]
    ("policy", lambda: monitor(on_check_failure="ignore"), "warn, raise"),  # type: ignore[arg-type]
    ("telemetry", lambda: monitor(telemetry=Metrics()), "Metrics"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("case", "decorate", "needle"), MISUSE, ids=[m[0] for m in MISUSE])
def test_misuse_fails_at_decoration_time(case: str, decorate: Callable[[], Any], needle: str) -> None:
    """Wrong targets or argument types raise DecorationError (a TypeError) naming the problem."""
    with pytest.raises(DecorationError) as info:
        decorate()
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, PipewardenError)
    assert needle in str(info.value)


# --- gauges and histograms over time -------------------------------------------------------------


def test_last_success_is_set_only_by_a_success(tel: Telemetry, clock: Clock) -> None:
    """The last-success gauge is absent until a success and keeps the last success time through failures."""
    fail = {"now": True}

    @monitor(pipeline="orders", telemetry=tel)
    def load() -> None:
        if fail["now"]:
            raise BoomError

    def stamps() -> float | None:
        return sample(tel, "pipewarden_pipeline_last_success_timestamp_seconds", pipeline="orders")

    clock.now = 1000.0
    with pytest.raises(BoomError):
        load()
    assert stamps() is None
    assert sample(tel, "pipewarden_pipeline_last_failure_timestamp_seconds", pipeline="orders") == 1000.0

    clock.now, fail["now"] = 2000.0, False
    load()
    assert stamps() == 2000.0

    clock.now, fail["now"] = 3000.0, True
    with pytest.raises(BoomError):
        load()
    assert stamps() == 2000.0
    assert sample(tel, "pipewarden_pipeline_last_failure_timestamp_seconds", pipeline="orders") == 3000.0


def test_recovery_is_measured_from_the_first_failure_to_the_next_success(tel: Telemetry, clock: Clock) -> None:
    """Two failures then a success observe one recovery from the first failure; later successes none."""
    outcomes = iter([False, False, True, True])

    @monitor(pipeline="orders", telemetry=tel)
    def load() -> None:
        if not next(outcomes):
            raise BoomError

    def recovery() -> tuple[float | None, float | None]:
        return (
            sample(tel, "pipewarden_pipeline_recovery_seconds_count", pipeline="orders"),
            sample(tel, "pipewarden_pipeline_recovery_seconds_sum", pipeline="orders"),
        )

    for now in (100.0, 400.0):
        clock.now = now
        with pytest.raises(BoomError):
            load()
    assert recovery() == (0.0, 0.0)  # nothing recovered yet (exported at zero)
    assert sample(tel, "pipewarden_pipeline_up", pipeline="orders") == 0

    clock.now = 1000.0
    load()
    assert recovery() == (1.0, 900.0)
    assert sample(tel, "pipewarden_pipeline_recovery_seconds_bucket", pipeline="orders", le="900.0") == 1
    assert sample(tel, "pipewarden_pipeline_recovery_seconds_bucket", pipeline="orders", le="300.0") == 0
    assert sample(tel, "pipewarden_pipeline_up", pipeline="orders") == 1

    clock.now = 5000.0
    load()
    assert recovery() == (1.0, 900.0)


def test_versions_count_changes_and_failed_changes(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """Each new version counts a change; a new version whose first run fails, a failed change."""

    @monitor(telemetry=tel)
    def load(ok: bool) -> None:
        if not ok:
            raise BoomError

    def run(version: str, ok: bool) -> None:
        with tel.pipeline_scope("orders", version=version):
            load(ok)

    def changes() -> tuple[float | None, float | None]:
        return (
            sample(tel, "pipewarden_pipeline_changes_total", pipeline="orders"),
            sample(tel, "pipewarden_pipeline_failed_changes_total", pipeline="orders"),
        )

    run("v1", True)
    assert changes() == (1.0, 0.0)
    run("v1", True)
    assert changes() == (1.0, 0.0)
    with pytest.raises(BoomError):
        run("v2", False)
    assert changes() == (2.0, 1.0)
    with pytest.raises(BoomError):
        run("v2", False)  # still v2: not a new change
    assert changes() == (2.0, 1.0)

    info = "pipewarden_pipeline_version_info"
    assert sample(tel, info, pipeline="orders", version="v2") == 1
    assert sample(tel, info, pipeline="orders", version="v1") is None
    assert task_runs(tel, "load", "success") == 2
    assert task_runs(tel, "load", "failed") == 2
    assert pipeline_runs(tel, "success") == 2 and pipeline_runs(tel, "failed") == 2

    # The monitored call inside the pipeline scope is its child, not a second pipeline run.
    root, child = spans.get_finished_spans()[-1], spans.get_finished_spans()[-2]
    assert (root.name, child.name) == ("RUN orders", "RUN load")
    assert parent_id(child) == root.context.span_id
    assert root.attributes is not None
    assert root.attributes["pipewarden.pipeline.version"] == "v2"


# --- the module's own examples ---------------------------------------------------------------------


def test_doctests_run(tel: Telemetry) -> None:
    """The examples in the module's docstrings run as written (against a fresh default)."""
    old = set_telemetry(tel)
    try:
        result = doctest.testmod(agent.monitor)
    finally:
        set_telemetry(old)
    assert result.attempted > 0 and result.failed == 0
    assert task_runs(tel, "transform", "success") == 1
    assert task_runs(tel, "load", "success") == 1


def test_nested_call_without_telemetry_records_where_its_enclosing_call_does(tel: Telemetry) -> None:
    """A nested @monitor with no telemetry= records into the enclosing call's Telemetry, not the default."""

    @monitor(pipeline="orders")
    def inner() -> int:
        return 1

    @monitor(pipeline="orders", telemetry=tel)
    def outer() -> int:
        return inner()

    assert outer() == 1
    assert tel.metrics.sample("pipewarden_task_runs_total", pipeline="orders", task="inner", status="success") == 1


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (KeyboardInterrupt(), "interrupted"),
        (asyncio.CancelledError(), "cancelled"),
    ],
)
def test_interrupting_exceptions_map_to_their_end_state(tel: Telemetry, exc: BaseException, status: str) -> None:
    """KeyboardInterrupt is recorded as interrupted and CancelledError as cancelled, and both propagate."""

    @monitor(pipeline="orders", telemetry=tel)
    def stopped() -> None:
        raise exc

    with pytest.raises(type(exc)):
        stopped()
    assert tel.metrics.sample("pipewarden_task_runs_total", pipeline="orders", task="stopped", status=status) == 1
