"""Executors behind one interface: threads, processes and Dask give the same results and history."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pandas as pd
import pytest

from agent.errors import ConfigError
from agent.executors import DaskExecutor, Executor, ProcessExecutor, ThreadExecutor, get_executor, run_in_child
from agent.pipeline import Pipeline
from agent.runner import run
from checks.result import CheckResult, Kind, Status

BURN = 0.05  # CPU seconds task `busy` spends wherever it runs


def _positive(df: pd.DataFrame) -> CheckResult:
    bad = int((df["amount"] <= 0).sum())
    return CheckResult("positive", Kind.CUSTOM, Status.FAIL if bad else Status.PASS, observed=bad)


def _pipeline() -> Pipeline:
    pipe = Pipeline("exec")

    @pipe.task
    def extract() -> pd.DataFrame:
        return pd.DataFrame({"id": range(6), "amount": [5.0, 1.0, -2.0, 3.0, 4.0, 0.5]})

    @pipe.task(checks=[_positive])
    def raw_amounts(extract: pd.DataFrame) -> pd.DataFrame:
        return extract

    @pipe.task
    def after_gate(raw_amounts: pd.DataFrame) -> int:
        return len(raw_amounts)

    @pipe.task
    def clean(extract: pd.DataFrame) -> pd.DataFrame:
        return extract[extract["amount"] > 0]

    @pipe.task(timeout=60)
    def total(clean: pd.DataFrame) -> float:
        return float(clean["amount"].sum())

    @pipe.task
    def broken(clean: pd.DataFrame) -> None:
        raise ValueError("no such table")

    @pipe.task
    def busy() -> int:
        t0, spins = time.thread_time(), 0
        while time.thread_time() - t0 < BURN:
            spins += 1
        return 1

    return pipe


def _history(store: Any, run_id: str) -> list[tuple[Any, ...]]:
    rec = store.get_run(run_id)
    return [(a.task, a.attempt, str(a.status), a.rows_in, a.rows_out, a.error, a.reason,
             tuple((c.check, str(c.status), c.observed) for c in a.checks)) for a in rec.attempts]


def _cpu(run_opts: dict[str, Any]) -> float:
    return run_opts["telemetry"].metrics.sample("pipewarden_task_cpu_seconds_total", pipeline="exec",
                                                task="busy") or 0.0


def _compare(executor: Executor, run_opts: dict[str, Any]) -> float:
    """Run with threads, then with ``executor``; return the CPU seconds the second run added for `busy`."""
    local = run(_pipeline(), **run_opts)
    before = _cpu(run_opts)
    remote = run(_pipeline(), executor=executor, **run_opts)
    assert str(remote.status) == str(local.status) == "failed"
    assert remote.task_states == local.task_states
    assert remote.outputs["total"] == local.outputs["total"] == 13.5
    assert remote.outputs["clean"].equals(local.outputs["clean"])
    store = run_opts["store"]
    assert sorted(_history(store, remote.run_id)) == sorted(_history(store, local.run_id))
    return _cpu(run_opts) - before


def test_process_executor_matches_threads(run_opts: dict[str, Any]) -> None:
    """A pool of processes gives the same outputs, states and history as threads, and reports the CPU it spent."""
    ex = ProcessExecutor(max_workers=2)
    try:
        added = _compare(ex, run_opts)
    finally:
        ex.shutdown()
    assert added >= BURN  # spent in the worker process; the runner thread only waited


def test_dask_executor_on_a_local_cluster_matches_threads(run_opts: dict[str, Any]) -> None:
    """On a distributed LocalCluster the pipeline has the same results and history as with threads."""
    ex = DaskExecutor(processes=False, n_workers=1, threads_per_worker=2)
    try:
        assert ex.client.status == "running"
        assert _compare(ex, run_opts) >= BURN
    finally:
        ex.shutdown()


def test_thread_executor_interface() -> None:
    """The default executor implements the interface and runs functions."""
    ex = ThreadExecutor(2)
    assert isinstance(ex, Executor) and ex.local
    assert ex.submit(divmod, 7, 2).result() == (3, 1)
    ex.shutdown()


def test_unknown_executor_name_is_a_config_error() -> None:
    """get_executor names the executors it knows."""
    with pytest.raises(ConfigError, match="threads, processes, dask"):
        get_executor("gpu")


def test_child_that_dies_without_a_result_is_reported() -> None:
    """A task process killed from inside (e.g. out of memory) raises ChildProcessError naming the signal."""
    with pytest.raises(ChildProcessError, match="SIGKILL"):
        run_in_child(lambda: os.kill(os.getpid(), signal.SIGKILL), {}, 30, task="oom")
