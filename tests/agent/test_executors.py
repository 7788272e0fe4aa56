"""Executors behind one interface: threads, processes and Dask give the same results and history."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from servers import require_module, wait_until

from agent.errors import ConfigError
from agent.executors import DaskExecutor, Executor, ProcessExecutor, ThreadExecutor, get_executor, run_in_child
from agent.pipeline import Pipeline
from agent.records import RunStatus
from agent.runner import resume, run
from agent.store import pid_alive
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
    return [
        (
            a.task,
            a.attempt,
            str(a.status),
            a.rows_in,
            a.rows_out,
            a.error,
            a.reason,
            tuple((c.check, str(c.status), c.observed) for c in a.checks),
        )
        for a in rec.attempts
    ]


def _cpu(run_opts: dict[str, Any]) -> float:
    return (
        run_opts["telemetry"].metrics.sample("pipewarden_task_cpu_seconds_total", pipeline="exec", task="busy") or 0.0
    )


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
    """On an in-process LocalCluster the pipeline has the same results and history as with threads.

    (Worker processes and real scheduler processes: tests/agent/test_dask_executor.py.)
    """
    require_module("distributed")
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


REPO = Path(__file__).resolve().parents[2]

SLOW = """
import os, time
from pathlib import Path
from agent.pipeline import Pipeline

pipe = Pipeline("slow", max_workers=2)


def _note(what: str) -> None:
    with Path(os.environ["PIDS"]).open("a") as f:
        f.write(f"{what} {os.getpid()}\\n")


@pipe.task
def work() -> int:
    _note("worker")
    time.sleep(120)
    return 1


@pipe.task(timeout=300)
def timed() -> int:
    _note("grandchild")
    time.sleep(120)
    return 1
"""


def test_workers_and_their_children_die_with_a_killed_runner(tmp_path: Path) -> None:
    """SIGKILL of `pipewarden run --executor processes`: no pool worker or timed-task child outlives it."""
    (tmp_path / "slow.py").write_text(SLOW)
    pids = tmp_path / "pids"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PIDS": str(pids)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "run",
            str(tmp_path / "slow.py"),
            "--executor",
            "processes",
            "--no-progress",
            "--home",
            str(tmp_path / "home"),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: len(pids.read_text().split()) == 4 or None,
            timeout=60,
            what="the worker and the timed task's child to start",
        )
    finally:
        proc.kill()
        proc.wait(30)
    started = [int(pid) for pid in pids.read_text().split()[1::2]]
    try:
        wait_until(
            lambda: not any(pid_alive(pid) for pid in started) or None,
            timeout=10,
            what=f"processes {started} to die with the runner",
        )
    finally:  # a failing run of this test leaves nothing behind
        for pid in started:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def test_resume_waits_for_worker_processes_that_may_still_run_a_task(run_opts: dict[str, Any]) -> None:
    """While a recorded worker of the run is alive, resume refuses (naming it); once it is gone, it proceeds."""
    pipe = Pipeline("leftover")
    pipe.task(name="fails")(lambda: 1 / 0)
    rec = run(pipe, **run_opts)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run_opts["store"].record_workers(rec.run_id, [worker.pid])
        with pytest.raises(ConfigError, match=f"worker processes {worker.pid} .* still alive"):
            resume(pipe, rec.run_id, **run_opts)
    finally:
        worker.kill()
        worker.wait()
    assert resume(pipe, rec.run_id, **run_opts).task_state("fails") is RunStatus.FAILED


def test_an_unreachable_dask_scheduler_is_one_config_error(closed_port: int) -> None:
    """A scheduler address nobody answers is a ConfigError naming it and the fix, after connect_timeout."""
    require_module("distributed")
    with pytest.raises(ConfigError) as info:
        DaskExecutor(f"tcp://127.0.0.1:{closed_port}", connect_timeout=1)
    message = str(info.value)
    assert f"tcp://127.0.0.1:{closed_port}" in message and "--address" in message and "\n" not in message


def test_a_scheduler_file_that_never_appears_is_one_config_error(tmp_path: Path) -> None:
    """--address given a scheduler file that does not appear within connect_timeout: a ConfigError naming it."""
    require_module("distributed")
    path = tmp_path / "scheduler.json"
    with pytest.raises(ConfigError) as info:
        DaskExecutor(str(path), connect_timeout=0.5)
    message = str(info.value)
    assert message.startswith(f"scheduler file {path}: it does not exist after 0.5 s") and "\n" not in message
