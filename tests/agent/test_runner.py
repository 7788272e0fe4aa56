"""The runner: order, parallelism, parameters, failures, quality gates, retries, timeouts, cancellation."""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import signal
import threading
import time
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from agent.errors import ConfigError, DecorationError
from agent.pipeline import Pipeline
from agent.records import RunStatus
from agent.runner import run
from checks import unique
from checks.base import Check, CheckContext
from checks.result import CheckResult, Kind, Severity, Status


def _status(rec: Any) -> dict[str, str]:
    return {t: str(s) for t, s in rec.task_states.items()}


def test_tasks_run_in_dependency_order_with_upstream_outputs(run_opts: dict[str, Any]) -> None:
    """Each task receives its upstream's return value by parameter name; the record has every state."""
    pipe = Pipeline("orders")
    seen: list[str] = []

    @pipe.task
    def extract() -> pd.DataFrame:
        seen.append("extract")
        return pd.DataFrame({"order_id": [1, 2, 2]})

    @pipe.task
    def transform(extract: pd.DataFrame) -> pd.DataFrame:
        seen.append("transform")
        return extract.drop_duplicates()

    @pipe.task
    def load(transform: pd.DataFrame) -> int:
        seen.append("load")
        return len(transform)

    rec = run(pipe, **run_opts)
    assert rec.status is RunStatus.SUCCESS and rec.ok
    assert seen == ["extract", "transform", "load"]
    assert rec.outputs["load"] == 2
    assert _status(rec) == {"extract": "success", "transform": "success", "load": "success"}
    stored = run_opts["store"].get_run(rec.run_id)
    latest = stored.latest()
    assert (latest["transform"].rows_in, latest["transform"].rows_out) == (3, 2)
    assert stored.version and stored.tasks == ("extract", "transform", "load")


def test_independent_tasks_run_in_parallel_within_max_workers(run_opts: dict[str, Any]) -> None:
    """Siblings run at the same time, never more than max_workers at once."""
    pipe = Pipeline("fan")
    barrier = threading.Barrier(2, timeout=10)
    lock = threading.Lock()
    active, peak = [0], [0]

    def work(i: int) -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        if i < 2:
            barrier.wait()  # only passes if two tasks run at once
        time.sleep(0.01)
        with lock:
            active[0] -= 1

    for i in range(6):
        pipe.task(name=f"t{i}")(lambda i=i: work(i))
    rec = run(pipe, max_workers=2, **run_opts)
    assert rec.ok
    assert peak[0] == 2


def test_run_parameters_reach_tasks_that_ask_for_them(run_opts: dict[str, Any]) -> None:
    """path, logical_date, run_id, params and declared parameters arrive by name; CLI strings are coerced."""
    pipe = Pipeline("params", params={"limit": 5, "dry": False})
    got: dict[str, Any] = {}

    @pipe.task
    def extract(
        path: str,
        logical_date: dt.datetime,
        run_id: str,
        limit: int,
        dry: bool,
        params: dict[str, Any],
        other: str = "default",
    ) -> None:
        got.update(
            path=path, logical_date=logical_date, run_id=run_id, limit=limit, dry=dry, params=params, other=other
        )

    rec = run(pipe, {"path": "/data/in.csv", "limit": "7", "dry": "true"}, logical_date="2025-01-31", **run_opts)
    assert rec.ok
    assert got["path"] == "/data/in.csv"
    assert got["logical_date"] == dt.datetime(2025, 1, 31, tzinfo=dt.UTC)
    assert got["run_id"] == rec.run_id
    assert (got["limit"], got["dry"], got["other"]) == (7, True, "default")
    assert got["params"]["limit"] == 7
    assert run_opts["store"].get_run(rec.run_id).params == {"limit": 7, "dry": True, "path": "/data/in.csv"}


def test_unknown_run_parameter_is_a_config_error(run_opts: dict[str, Any]) -> None:
    """A run parameter the pipeline does not declare is refused before anything runs."""
    pipe = Pipeline("p")
    pipe.task(name="t")(lambda: None)
    with pytest.raises(ConfigError, match="no run parameter 'regoin'"):
        run(pipe, {"regoin": "eu"}, **run_opts)
    assert run_opts["store"].list_runs() == []


def test_failure_marks_downstream_upstream_failed_and_sibling_completes(run_opts: dict[str, Any]) -> None:
    """A failing task stops its downstream (upstream_failed); an independent branch still succeeds."""
    pipe = Pipeline("branches")

    @pipe.task
    def root() -> int:
        return 1

    @pipe.task
    def bad(root: int) -> int:
        raise ValueError("bad data in row 7")

    @pipe.task
    def after_bad(bad: int) -> int:
        return bad

    @pipe.task
    def last(after_bad: int) -> int:
        return after_bad

    @pipe.task
    def sibling(root: int) -> int:
        return root + 1

    rec = run(pipe, **run_opts)
    assert rec.status is RunStatus.FAILED
    assert _status(rec) == {
        "root": "success",
        "bad": "failed",
        "after_bad": "upstream_failed",
        "last": "upstream_failed",
        "sibling": "success",
    }
    latest = rec.latest()
    assert latest["bad"].error == "ValueError: bad data in row 7"
    assert latest["last"].reason == "upstream task bad failed"
    assert "bad failed: ValueError: bad data in row 7" in (rec.error or "")
    m = run_opts["telemetry"].metrics
    assert m.sample("pipewarden_task_runs_total", pipeline="branches", task="after_bad", status="upstream_failed") == 1
    assert m.sample("pipewarden_pipeline_runs_total", pipeline="branches", status="failed") == 1


class _Unique(Check):
    kind = Kind.DUPLICATION

    def __init__(self, column: str, **kw: Any) -> None:
        super().__init__(name=f"unique({column})", **kw)
        self.column = column
        self.contexts: list[CheckContext] = []

    def evaluate(self, df: pd.DataFrame, context: CheckContext) -> CheckResult:
        self.contexts.append(context)
        dups = int(df[self.column].duplicated().sum())
        return self.result(
            Status.FAIL if dups else Status.PASS,
            observed=dups,
            threshold=0,
            column=self.column,
            measure="duplicates",
            message=f"{dups} duplicate {self.column}",
        )


def test_blocking_check_stops_only_its_downstream(run_opts: dict[str, Any]) -> None:
    """A failed blocking check marks its task failed and skips its downstream; a sibling branch completes."""
    pipe = Pipeline("gated")
    check = _Unique("order_id")

    @pipe.task
    def extract() -> pd.DataFrame:
        return pd.DataFrame({"order_id": [1, 2, 2]})

    @pipe.task(checks=[check])
    def transform(extract: pd.DataFrame) -> pd.DataFrame:
        return extract

    @pipe.task
    def load(transform: pd.DataFrame) -> int:
        raise AssertionError("must not run")

    @pipe.task
    def report(load: int) -> None:
        raise AssertionError("must not run")

    @pipe.task
    def archive(extract: pd.DataFrame) -> int:
        return len(extract)

    rec = run(pipe, **run_opts)
    assert rec.status is RunStatus.FAILED
    assert _status(rec) == {
        "extract": "success",
        "transform": "failed",
        "load": "skipped",
        "report": "skipped",
        "archive": "success",
    }
    latest = rec.latest()
    assert "unique(order_id)" in (latest["load"].reason or "") and "1 duplicate" in (latest["load"].reason or "")
    assert [c.status for c in latest["transform"].checks] == [Status.FAIL]
    stored = run_opts["store"].get_run(rec.run_id)
    assert stored.check_results[0].to_dict()["observed"] == 1
    ctx = check.contexts[0]
    assert (ctx.pipeline, ctx.task, ctx.dataset, ctx.run_id) == ("gated", "transform", "transform", rec.run_id)
    assert ctx.store is run_opts["store"] and len(ctx.inputs) == 1
    m = run_opts["telemetry"].metrics
    assert m.sample("pipewarden_task_runs_total", pipeline="gated", task="load", status="skipped") == 1
    assert (
        m.sample(
            "pipewarden_check_results_total",
            pipeline="gated",
            dataset="transform",
            check="unique(order_id)",
            kind="duplication",
            status="fail",
        )
        == 1
    )


def test_warning_check_does_not_block(run_opts: dict[str, Any]) -> None:
    """A check of severity warn is recorded but downstream runs and the run succeeds."""
    pipe = Pipeline("warned")

    @pipe.task(checks=[_Unique("order_id", severity=Severity.WARN)])
    def extract() -> pd.DataFrame:
        return pd.DataFrame({"order_id": [1, 1]})

    @pipe.task
    def load(extract: pd.DataFrame) -> int:
        return len(extract)

    rec = run(pipe, **run_opts)
    assert rec.ok and rec.outputs["load"] == 2
    assert [c.status for c in rec.latest()["extract"].checks] == [Status.WARN]


def test_plain_predicate_check_blocks_when_false(run_opts: dict[str, Any]) -> None:
    """A plain function returning False is a failing blocking check."""
    pipe = Pipeline("pred")

    def has_rows(df: pd.DataFrame) -> bool:
        return len(df) > 0

    pipe.task(name="extract", checks=[has_rows])(lambda: pd.DataFrame({"a": []}))

    @pipe.task
    def load(extract: pd.DataFrame) -> None: ...

    rec = run(pipe, **run_opts)
    assert _status(rec) == {"extract": "failed", "load": "skipped"}


def _gated(output: Any, checks: list[Any], **task: Any) -> tuple[Pipeline, list[str]]:
    """extract -> transform(checks) -> load, where load records that it ran."""
    pipe = Pipeline("fail_closed")
    ran: list[str] = []

    @pipe.task
    def extract() -> Any:
        return output

    @pipe.task(checks=checks, **task)
    def transform(extract: Any) -> Any:
        return extract

    @pipe.task
    def load(transform: Any) -> None:
        ran.append("load")

    return pipe, ran


@pytest.mark.parametrize(
    "output",
    [
        pd.DataFrame({"id": [1, 2]}),
        [1, 2],
        {"id": [1, 2]},
        None,
    ],
    ids=["misspelled-column", "list", "dict", "none"],
)
def test_a_blocking_check_that_cannot_run_stops_downstream(run_opts: dict[str, Any], output: Any) -> None:
    """A check in status error (a misspelled column, an output it cannot read) fails the task and skips load."""
    column = "idd" if isinstance(output, pd.DataFrame) else "id"
    pipe, ran = _gated(output, [unique(column)])
    rec = run(pipe, **run_opts)
    assert rec.status is RunStatus.FAILED
    assert _status(rec) == {"extract": "success", "transform": "failed", "load": "skipped"}
    assert ran == []
    reason = rec.latest()["load"].reason or ""
    assert f"unique({column})" in reason and "could not run" in reason


def test_an_arrow_table_output_is_checked_like_a_frame(run_opts: dict[str, Any]) -> None:
    """A task that returns a pyarrow Table gets its checks: a duplicated key fails it and skips load."""
    pipe, ran = _gated(pa.table({"id": [1, 1, 2]}), [unique("id")])
    rec = run(pipe, **run_opts)
    assert _status(rec) == {"extract": "success", "transform": "failed", "load": "skipped"}
    [result] = rec.latest()["transform"].checks
    assert result.status is Status.FAIL and ran == []


@pytest.mark.parametrize(
    "opt_out",
    [
        {"checks": [unique("idd", on_error="warn")]},
        {"checks": [lambda df: df["idd"].is_unique], "on_check_error": "warn"},
    ],
    ids=["Check(on_error=warn)", "task(on_check_error=warn)"],
)
def test_an_explicit_on_error_warn_lets_an_error_through(run_opts: dict[str, Any], opt_out: dict[str, Any]) -> None:
    """on_error="warn" on the check, or on_check_error="warn" on the task, records the error and runs load."""
    checks = opt_out.pop("checks")
    pipe, ran = _gated(pd.DataFrame({"id": [1, 2]}), checks, **opt_out)
    rec = run(pipe, **run_opts)
    assert rec.ok and ran == ["load"]
    assert [c.status for c in rec.latest()["transform"].checks] == [Status.ERROR]


@pytest.mark.parametrize(
    "checks, needle",
    [
        ([unique], "unique(...)"),
        ([_Unique], "class _Unique"),
        ("unique", "list of checks"),
    ],
    ids=["factory-uncalled", "class", "string"],
)
def test_checks_that_are_not_built_checks_fail_at_decoration(checks: Any, needle: str) -> None:
    """checks=[unique] (not called), a class or a string is a one-line DecorationError saying what to write."""
    pipe = Pipeline("deco")
    with pytest.raises(DecorationError, match=re.escape(needle)) as info:
        pipe.task(checks=checks)(lambda: None)
    assert "\n" not in str(info.value)


def _flaky(failures: int, exc: type[BaseException] = OSError) -> Any:
    calls = [0]

    def task() -> str:
        calls[0] += 1
        if calls[0] <= failures:
            raise exc(f"attempt {calls[0]} failed")
        return "ok"

    task.calls = calls  # type: ignore[attr-defined]
    return task


@pytest.mark.parametrize(
    "retry, expected",
    [
        ({"retry_delay": 1.0, "retry_backoff": 2.0}, [1.0, 2.0, 4.0]),
        ({"retry_delay": 1.0, "retry_backoff": 2.0, "retry_max_delay": 3.0}, [1.0, 2.0, 3.0]),
        ({"retry_delay": 0.5, "retry_backoff": 1.0}, [0.5, 0.5, 0.5]),
    ],
)
def test_retries_follow_backoff_and_cap(
    run_opts: dict[str, Any], retry: dict[str, float], expected: list[float]
) -> None:
    """Delays between attempts grow by the backoff factor and stop at the cap."""
    pipe = Pipeline("retry")
    fn = _flaky(3)
    pipe.task(name="flaky", retries=3, **retry)(fn)
    rec = run(pipe, **run_opts)
    assert rec.ok and fn.calls[0] == 4
    assert run_opts["sleep"].delays == pytest.approx(expected)
    attempts = [(a.attempt, str(a.status)) for a in rec.attempts]
    assert attempts == [(1, "failed"), (2, "failed"), (3, "failed"), (4, "success")]
    m = run_opts["telemetry"].metrics
    assert m.sample("pipewarden_task_retries_total", pipeline="retry", task="flaky") == 3
    assert m.sample("pipewarden_task_runs_total", pipeline="retry", task="flaky", status="failed") == 3


def test_retry_jitter_stays_within_bounds(run_opts: dict[str, Any]) -> None:
    """With jitter j each delay lies in [d(1-j), min(cap, d(1+j))]."""
    pipe = Pipeline("jitter")
    pipe.task(name="flaky", retries=5, retry_delay=1.0, retry_backoff=2.0, retry_max_delay=10.0, retry_jitter=0.5)(
        _flaky(5)
    )
    rec = run(pipe, rng=random.Random(42), **run_opts)
    assert rec.ok
    delays = run_opts["sleep"].delays
    assert len(delays) == 5
    for n, d in enumerate(delays, start=1):
        base = 2.0 ** (n - 1)
        assert base * 0.5 <= d <= min(10.0, base * 1.5)
    assert len(set(delays)) == 5  # jitter actually varies


def test_retries_run_out_and_the_task_fails(run_opts: dict[str, Any]) -> None:
    """After the last retry the task is failed with the last error."""
    pipe = Pipeline("exhaust")
    pipe.task(name="flaky", retries=2, retry_delay=0.1)(_flaky(10))
    rec = run(pipe, **run_opts)
    assert _status(rec) == {"flaky": "failed"}
    assert rec.latest()["flaky"].error == "OSError: attempt 3 failed"
    assert len(run_opts["sleep"].delays) == 2


@pytest.mark.parametrize(
    "retry_on, retried",
    [
        ((OSError,), False),
        (ValueError, True),
        (lambda exc: "transient" in str(exc), True),
        (lambda exc: "permanent" in str(exc), False),
    ],
)
def test_retry_condition_on_the_exception(run_opts: dict[str, Any], retry_on: Any, retried: bool) -> None:
    """retry_on (exception types or a predicate) decides whether an attempt is retried."""
    pipe = Pipeline("cond")

    def fn() -> None:
        raise ValueError("transient glitch")

    pipe.task(name="t", retries=2, retry_delay=1.0, retry_on=retry_on)(fn)
    rec = run(pipe, **run_opts)
    assert rec.executions("t") == (3 if retried else 1)


def test_hanging_task_is_stopped_by_its_timeout(run_opts: dict[str, Any]) -> None:
    """A task that never returns is killed at its timeout; timed_out is recorded and the run ends."""
    pipe = Pipeline("hang")

    @pipe.task(timeout=0.5)
    def stuck() -> None:
        threading.Event().wait()  # forever

    @pipe.task
    def after(stuck: None) -> None: ...

    rec = run(pipe, kill_grace=1.0, **run_opts)
    assert rec.status is RunStatus.FAILED
    assert _status(rec) == {"stuck": "timed_out", "after": "upstream_failed"}
    assert "timeout of 0.5 s" in (rec.latest()["stuck"].error or "")
    m = run_opts["telemetry"].metrics
    assert m.sample("pipewarden_task_runs_total", pipeline="hang", task="stuck", status="timed_out") == 1


def test_task_ignoring_sigterm_is_killed_after_the_grace(run_opts: dict[str, Any], tmp_path: Any) -> None:
    """A task that ignores SIGTERM is SIGKILLed after the grace period, and its process is gone."""
    pipe = Pipeline("stubborn")
    pidfile = tmp_path / "pid"

    @pipe.task(timeout=0.3)
    def stubborn() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pidfile.write_text(str(os.getpid()))
        while True:
            time.sleep(0.05)

    rec = run(pipe, kill_grace=0.2, **run_opts)
    assert _status(rec) == {"stubborn": "timed_out"}
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_task_with_timeout_returns_its_value_and_errors(run_opts: dict[str, Any]) -> None:
    """A task in a child process returns its value, or its exception with the child's traceback."""
    pipe = Pipeline("child")

    @pipe.task(timeout=30)
    def compute() -> pd.DataFrame:
        return pd.DataFrame({"x": range(5)})

    @pipe.task(timeout=30)
    def fails(compute: pd.DataFrame) -> None:
        raise KeyError("missing column")

    rec = run(pipe, **run_opts)
    assert rec.outputs["compute"]["x"].tolist() == [0, 1, 2, 3, 4]
    assert rec.latest()["fails"].error == "KeyError: 'missing column'"
    assert rec.latest()["compute"].rows_out == 5


def test_cancel_stops_tasks_not_yet_started(run_opts: dict[str, Any]) -> None:
    """Setting the cancel event lets the running task finish and records the rest cancelled."""
    pipe = Pipeline("cancel")
    cancel = threading.Event()

    @pipe.task
    def first() -> int:
        cancel.set()
        time.sleep(0.3)  # the runner's wait loop sees the flag meanwhile
        return 1

    @pipe.task
    def second(first: int) -> int:
        return first

    @pipe.task
    def third(second: int) -> int:
        return second

    rec = run(pipe, cancel=cancel, **run_opts)
    assert rec.status is RunStatus.CANCELLED
    assert _status(rec) == {"first": "success", "second": "cancelled", "third": "cancelled"}
    m = run_opts["telemetry"].metrics
    assert m.sample("pipewarden_task_runs_total", pipeline="cancel", task="third", status="cancelled") == 1
    assert m.sample("pipewarden_pipeline_runs_total", pipeline="cancel", status="cancelled") == 1


def test_every_end_state_has_a_metric_and_a_span(run_opts: dict[str, Any], spans: Any) -> None:
    """success, failed, timed_out, skipped, upstream_failed and cancelled each count and leave a task span."""
    pipe = Pipeline("states")
    cancel = threading.Event()

    @pipe.task
    def ok() -> pd.DataFrame:
        return pd.DataFrame({"k": [1, 1]})

    @pipe.task(checks=[_Unique("k")])
    def gate(ok: pd.DataFrame) -> pd.DataFrame:
        return ok

    pipe.task(name="gated", depends_on=["gate"])(lambda: None)
    pipe.task(name="boom", depends_on=["ok"])(lambda: 1 / 0)
    pipe.task(name="below_boom", depends_on=["boom"])(lambda: None)
    pipe.task(name="slow", timeout=0.3, depends_on=["ok"])(lambda: time.sleep(60))
    rec = run(pipe, kill_grace=0.5, **run_opts)
    assert _status(rec) == {
        "ok": "success",
        "gate": "failed",
        "gated": "skipped",
        "boom": "failed",
        "below_boom": "upstream_failed",
        "slow": "timed_out",
    }
    canc = Pipeline("states")
    canc.task(name="ok")(lambda: cancel.set() or time.sleep(0.3))
    canc.task(name="later", depends_on=["ok"])(lambda: None)
    assert _status(run(canc, cancel=cancel, **run_opts))["later"] == "cancelled"
    m = run_opts["telemetry"].metrics
    for task, status in [
        ("ok", "success"),
        ("gate", "failed"),
        ("gated", "skipped"),
        ("boom", "failed"),
        ("below_boom", "upstream_failed"),
        ("slow", "timed_out"),
        ("later", "cancelled"),
    ]:
        assert m.sample("pipewarden_task_runs_total", pipeline="states", task=task, status=status) >= 1, task
    task_spans = {
        s.attributes.get("cicd.pipeline.task.name"): s
        for s in spans.get_finished_spans()
        if s.attributes.get("cicd.pipeline.task.name")
    }
    assert {"ok", "gate", "gated", "boom", "below_boom", "slow", "later"} <= set(task_spans)
    roots = [s for s in spans.get_finished_spans() if s.name == "RUN states"]
    assert len(roots) == 2
    assert task_spans["gated"].parent.span_id == roots[0].context.span_id
    assert task_spans["slow"].attributes["cicd.pipeline.task.run.result"] == "timeout"


def test_pipeline_kpi_metrics_follow_the_store(run_opts: dict[str, Any], tmp_path: Any) -> None:
    """Recovery time, changes, failed changes, up and last success/failure follow run outcomes."""
    state = {"fail": True}
    pipe = Pipeline("kpi")

    @pipe.task
    def work() -> None:
        if state["fail"]:
            raise RuntimeError("down")

    clock = [1000.0]
    pipe.version = "v1"
    assert run(pipe, clock=lambda: clock[0], **run_opts).status is RunStatus.FAILED
    clock[0] = 1600.0
    state["fail"] = False
    assert run(pipe, clock=lambda: clock[0], **run_opts).ok
    pipe.version = "v2"
    clock[0] = 2000.0
    assert run(pipe, clock=lambda: clock[0], **run_opts).ok
    m = run_opts["telemetry"].metrics
    assert m.sample("pipewarden_pipeline_changes_total", pipeline="kpi") == 2
    assert m.sample("pipewarden_pipeline_failed_changes_total", pipeline="kpi") == 1
    assert m.sample("pipewarden_pipeline_up", pipeline="kpi") == 1
    assert m.sample("pipewarden_pipeline_recovery_seconds_count", pipeline="kpi") == 1
    assert m.sample("pipewarden_pipeline_last_failure_timestamp_seconds", pipeline="kpi") is not None


def test_recovery_counts_from_failures_recorded_by_an_earlier_process(store: Any, tmp_path: Any) -> None:
    """Time to recovery starts at a failure in the store even when this process did not see it."""
    from agent.telemetry import Telemetry
    from exporters.metrics import Metrics

    pipe = Pipeline("restarted")
    state = {"fail": True}

    @pipe.task
    def work() -> None:
        if state["fail"]:
            raise RuntimeError("down")

    run(pipe, store=store, telemetry=Telemetry(metrics=Metrics()))
    state["fail"] = False
    fresh = Telemetry(metrics=Metrics())  # a new process: nothing in memory
    assert run(pipe, store=store, telemetry=fresh).ok
    assert fresh.metrics.sample("pipewarden_pipeline_recovery_seconds_count", pipeline="restarted") == 1
    assert fresh.metrics.sample("pipewarden_pipeline_changes_total", pipeline="restarted") == 0


def test_async_tasks_run_to_completion(run_opts: dict[str, Any]) -> None:
    """A coroutine function task is awaited."""
    import asyncio

    pipe = Pipeline("aio")

    @pipe.task
    async def fetch() -> int:
        await asyncio.sleep(0)
        return 5

    assert run(pipe, **run_opts).outputs["fetch"] == 5


def test_the_library_prints_nothing(run_opts: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """Running a pipeline writes nothing to stdout or stderr."""
    pipe = Pipeline("quiet")
    pipe.task(name="a")(lambda: 1)
    pipe.task(name="b", depends_on=["a"])(lambda: 1 / 0)
    run(pipe, **run_opts)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_a_queued_run_is_started_by_its_id(run_opts: dict[str, Any]) -> None:
    """A run recorded QUEUED (by the scheduler) keeps its id, trigger and parameters when started."""
    pipe = Pipeline("queued", params={"n": 1})
    got = []
    pipe.task(name="t")(lambda n: got.append(n))
    store = run_opts["store"]
    store.create_run(run_id="r-1", pipeline="queued", trigger="cron", params={"n": 3}, now=0.0)
    rec = run(pipe, run_id="r-1", **run_opts)
    assert rec.ok and rec.run_id == "r-1" and rec.trigger == "cron" and got == [3]
    with pytest.raises(ConfigError, match="already success"):
        run(pipe, run_id="r-1", **run_opts)


def test_interrupted_runs_get_metrics_and_spans_when_found(run_opts: dict[str, Any], spans: Any) -> None:
    """A run left RUNNING by a dead process is reported interrupted (tasks and pipeline) at the next start."""
    import subprocess
    import sys

    store, tel = run_opts["store"], run_opts["telemetry"]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.create_run(run_id="old", pipeline="crashed", trigger="cron", tasks=["a", "b"], now=1.0)
    store.start_run("old", now=1.0)
    store.start_task("old", "a", 1, now=1.0)
    store.conn.execute("UPDATE runs SET owner_pid=? WHERE run_id='old'", (dead.pid,))
    other = Pipeline("other")
    other.task(name="x")(lambda: None)
    assert run(other, **run_opts).ok  # any start finds the dead run
    rec = store.get_run("old")
    assert rec.status is RunStatus.INTERRUPTED
    assert _status(rec) == {"a": "interrupted", "b": "interrupted"}
    m = tel.metrics
    for task in ("a", "b"):
        assert m.sample("pipewarden_task_runs_total", pipeline="crashed", task=task, status="interrupted") == 1
    assert m.sample("pipewarden_pipeline_runs_total", pipeline="crashed", status="interrupted") == 1
    names = {s.name for s in spans.get_finished_spans()}
    assert {"RUN crashed", "RUN a", "RUN b"} <= names


def test_a_store_failing_mid_run_ends_the_run_with_store_error(run_opts: dict[str, Any]) -> None:
    """When the store stops accepting writes in the middle of a run, the run stops and StoreError is raised."""
    from agent.errors import StoreError

    store = run_opts["store"]
    pipe = Pipeline("brittle")
    pipe.task(name="a")(lambda: store.close())  # the store goes away while a task runs
    pipe.task(name="b", depends_on=["a"])(lambda: None)
    with pytest.raises(StoreError, match="closed"):
        run(pipe, **run_opts)


def test_a_store_failing_once_while_recording_stopped_tasks_does_not_hang_the_run(
    tmp_path: Any, tel: Any, sleeps: Any
) -> None:
    """When recording the tasks a failure stops raises StoreError once, the run still ends, failed."""
    from agent.errors import StoreError
    from agent.store import SQLiteRunStore

    class FailsOnce(SQLiteRunStore):
        failures = 0

        def record_task_states(self, run_id: str, states: Any, *, now: float) -> None:
            if not self.failures:
                self.failures += 1
                raise StoreError("disk I/O error", path=str(self.path))
            super().record_task_states(run_id, states, now=now)

    store = FailsOnce(tmp_path / "pw.db")
    pipe = Pipeline("store_hiccup")
    pipe.task(name="boom")(lambda: 1 / 0)
    pipe.task(name="after", depends_on=["boom"])(lambda: None)
    done: dict[str, Any] = {}
    # In a thread so that a run which never ends fails this test instead of hanging the suite.
    t = threading.Thread(
        target=lambda: done.setdefault("rec", run(pipe, store=store, telemetry=tel, sleep=sleeps)), daemon=True
    )
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "run(pipe) never returned"
    assert store.failures == 1
    assert done["rec"].status is RunStatus.FAILED and done["rec"].task_state("boom") is not None
    store.close()


def test_rows_in_is_the_sum_of_table_inputs_counted_once(
    run_opts: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """rows_in adds the rows of each DataFrame input, each counted once; other inputs do not count."""
    import agent.runner

    counted: list[int] = []
    real = agent.runner.rows_of

    def counting(x: Any) -> int | None:
        n = real(x)
        if n is not None:
            counted.append(n)
        return n

    monkeypatch.setattr(agent.runner, "rows_of", counting)
    pipe = Pipeline("rows")
    pipe.task(name="left")(lambda: pd.DataFrame({"a": range(3)}))
    pipe.task(name="right")(lambda: pd.DataFrame({"a": range(4)}))
    pipe.task(name="n")(lambda: 7)

    @pipe.task
    def joined(left: pd.DataFrame, right: pd.DataFrame, n: int) -> pd.DataFrame:
        return pd.concat([left, right]).head(n - 2)

    rec = run(pipe, **run_opts)
    latest = rec.latest()["joined"]
    assert (latest.rows_in, latest.rows_out) == (7, 5)
    # outputs: left 3, right 4, joined 5; inputs of joined: 3 and 4 — one count each
    assert sorted(counted) == [3, 3, 4, 4, 5]
