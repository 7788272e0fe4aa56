"""The Dask executor as users run it: a pipeline file through the CLI, on real scheduler and worker processes.

The scheduler and workers are real ``dask`` programs started by the ``dask_cluster``
fixture from their own directory; ``pipewarden run`` runs as a subprocess from
another one. Workers get pipewarden (``PYTHONPATH``) but never the pipeline file.
"""

from __future__ import annotations

import contextlib
import doctest
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from servers import DaskCluster, require_module, wait_until

from agent.errors import ConfigError, ExecutorError
from agent.executors import measured

REPO = Path(__file__).resolve().parents[2]
BOUND = 120  # seconds: a run that has not ended by then hangs

PIPE = """
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import amounts  # a module beside this file, installed nowhere: it travels with the tasks
from agent.pipeline import Pipeline

pipe = Pipeline("remote_orders")
# Read where the file is loaded (the runner); the tasks carry the values to the workers.
NOTES = Path(os.environ["NOTES"])
SLOW = float(os.environ.get("SLOW", "0"))
RETRIES = int(os.environ.get("RETRIES", "0"))


@dataclass
class Totals:
    rows: int
    amount: float


def note(task: str) -> int:
    \"\"\"Append this process's id to NOTES/task; return how many times the task started.\"\"\"
    with (NOTES / task).open("a") as f:
        f.write(f"{os.getpid()}\\n")
    return len((NOTES / task).read_text().split())


@pipe.task
def extract() -> pd.DataFrame:
    note("extract")
    return pd.DataFrame({"id": range(6), "amount": amounts.AMOUNTS})


@pipe.task(retries=RETRIES, retry_delay=0)
def totals(extract: pd.DataFrame) -> Totals:
    if note("totals") == 1 and SLOW:
        time.sleep(SLOW)
    return Totals(len(extract), float(extract["amount"].sum()))


@pipe.task(timeout=60)
def positives(extract: pd.DataFrame) -> int:
    note("positives")
    return int((extract["amount"] > 0).sum())


@pipe.task
def report(totals: Totals, positives: int) -> str:
    note("report")
    text = f"{totals.rows} rows, {positives} positive, total {totals.amount:g}"
    (NOTES / "report.txt").write_text(text)
    return text
"""

EXPECTED = "6 rows, 5 positive, total 13.5"


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    """The pipeline file, with its sibling module, in a directory of its own."""
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "amounts.py").write_text("AMOUNTS = [5.0, 1.0, -2.0, 3.0, 4.0, 2.5]\n")
    (folder / "orders.py").write_text(PIPE)
    (tmp_path / "notes").mkdir()
    return folder / "orders.py"


def _pipewarden(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, python_path: str = ""
) -> subprocess.Popen[str]:
    """``python -m agent run ...`` from its own working directory, JSON on stdout."""
    cwd = tmp_path / "runner"
    cwd.mkdir(exist_ok=True)
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), python_path) if p),
        "NOTES": str(tmp_path / "notes"),
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run", *args, "--no-progress", "--home", str(tmp_path / "home")],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, dict[str, Any] | None, str]:
    """(exit code, the run record printed with --json, stderr) within BOUND seconds."""
    try:
        out, err = proc.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"pipewarden run hung for {BOUND} s; stderr:\n{err[-3000:]}") from None
    return proc.returncode, json.loads(out) if out.strip().startswith("{") else None, err


def _attempts(record: dict[str, Any], task: str) -> list[tuple[int, str, str]]:
    return [(a["attempt"], a["status"], a["error"] or "") for a in record["attempts"] if a["task"] == task]


def _notes(tmp_path: Path, task: str) -> list[int]:
    path = tmp_path / "notes" / task
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _spans(tmp_path: Path, task: str) -> list[dict[str, Any]]:
    lines = (tmp_path / "home" / "traces.jsonl").read_text().splitlines()
    spans = [json.loads(line) for line in lines if line.strip()]
    return [s for s in spans if s["attributes"].get("cicd.pipeline.task.name") == task]


def _killer(tmp_path: Path, task: str, target: Callable[[int], int], sig: int = signal.SIGKILL) -> threading.Thread:
    """A thread that waits for ``task`` to note its worker process, then sends ``sig`` to ``target(pid)``."""

    def kill() -> None:
        pid = wait_until(lambda: (_notes(tmp_path, task) or [None])[0], timeout=BOUND, what=f"{task} to start")
        time.sleep(0.3)  # inside the task's sleep
        os.kill(target(pid), sig)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def test_a_pipeline_file_runs_on_a_separate_scheduler_and_workers(
    tmp_path: Path, pipeline: Path, dask_cluster: Callable[..., DaskCluster]
) -> None:
    """`pipewarden run FILE --executor dask --address A` runs every task on the workers, which never see the file."""
    cluster = dask_cluster(workers=2)
    proc = _pipewarden(tmp_path, str(pipeline), "--executor", "dask", "--address", cluster.address, "--json")
    code, record, err = _finish(proc)
    assert code == 0, err
    assert record is not None and record["status"] == "success", record
    assert (tmp_path / "notes" / "report.txt").read_text() == EXPECTED
    on_workers = set(_notes(tmp_path, "extract") + _notes(tmp_path, "totals") + _notes(tmp_path, "report"))
    assert on_workers <= cluster.worker_pids()
    # `positives` has a timeout: it ran in a child process that a worker forked.
    [child] = _notes(tmp_path, "positives")
    assert child not in on_workers and child != proc.pid


def test_a_module_the_workers_lack_fails_the_task_with_one_line(
    tmp_path: Path, pipeline: Path, dask_cluster: Callable[..., DaskCluster]
) -> None:
    """A module imported from outside the pipeline's directory goes by reference: workers without it say so."""
    cluster = dask_cluster(workers=1)
    elsewhere = tmp_path / "site"
    elsewhere.mkdir()
    (elsewhere / "onlyhere.py").write_text("def double(x):\n    return 2 * x\n")
    (pipeline.parent / "needs.py").write_text(
        "from agent.pipeline import Pipeline\nimport onlyhere\n\npipe = Pipeline('needs')\n\n\n"
        "@pipe.task\ndef compute() -> int:\n    return onlyhere.double(21)\n"
    )
    proc = _pipewarden(
        tmp_path,
        str(pipeline.parent / "needs.py"),
        "--executor",
        "dask",
        "--address",
        cluster.address,
        "--json",
        python_path=str(elsewhere),
    )
    code, record, err = _finish(proc)
    assert code == 1, err
    assert record is not None
    [(_, status, error)] = _attempts(record, "compute")
    assert status == "failed" and "\n" not in error
    assert error.startswith("ExecutorError: the Dask worker tcp://127.0.0.1:")
    assert "cannot load the task (ModuleNotFoundError: No module named 'onlyhere')" in error


@pytest.mark.parametrize(("retries", "code", "states"), [(0, 1, ["failed"]), (1, 0, ["failed", "success"])])
def test_a_worker_killed_mid_task_fails_the_attempt_and_the_tasks_retries_decide(
    tmp_path: Path,
    pipeline: Path,
    dask_cluster: Callable[..., DaskCluster],
    retries: int,
    code: int,
    states: list[str],
) -> None:
    """SIGKILL of the worker running a task: that attempt fails with one line naming the worker; a retry reruns it."""
    cluster = dask_cluster(workers=2)
    killer = _killer(tmp_path, "totals", lambda pid: pid)
    proc = _pipewarden(
        tmp_path,
        str(pipeline),
        "--executor",
        "dask",
        "--address",
        cluster.address,
        "--json",
        env={"SLOW": "60", "RETRIES": str(retries)},
    )
    got, record, err = _finish(proc)
    killer.join(5)
    assert got == code, err
    assert record is not None
    attempts = _attempts(record, "totals")
    assert [s for _, s, _ in attempts] == states
    error = attempts[0][2]
    assert error.startswith("ExecutorError: the Dask worker tcp://127.0.0.1:") and "died while it ran the task" in error
    assert len(_notes(tmp_path, "totals")) == len(states)  # each attempt ran once: no silent rerun by Dask
    assert record["tasks"]["report"] == ("success" if retries else "upstream_failed")
    failed = [s for s in _spans(tmp_path, "totals") if s["status"]["status_code"] == "ERROR"]
    assert len(failed) == 1 and "died while it ran the task" in failed[0]["status"]["description"]


def test_a_dead_scheduler_fails_the_running_task_in_bounded_time(
    tmp_path: Path, pipeline: Path, dask_cluster: Callable[..., DaskCluster]
) -> None:
    """SIGKILL of the scheduler while a task runs: the run ends, that task failed with one line, downstream not run."""
    cluster = dask_cluster(workers=1)
    assert cluster.scheduler.proc is not None
    scheduler = cluster.scheduler.proc.pid
    killer = _killer(tmp_path, "totals", lambda _pid: scheduler)
    proc = _pipewarden(
        tmp_path, str(pipeline), "--executor", "dask", "--address", cluster.address, "--json", env={"SLOW": "60"}
    )
    code, record, err = _finish(proc)
    killer.join(5)
    assert code == 1, err
    assert record is not None
    [(_, status, error)] = _attempts(record, "totals")
    assert status == "failed" and "\n" not in error
    assert error.startswith(f"ExecutorError: lost the Dask scheduler at {cluster.address}")
    assert record["tasks"]["report"] == "upstream_failed"


def test_a_scheduler_that_stops_answering_fails_the_waiting_task_after_worker_wait(
    tmp_path: Path, pipeline: Path, dask_cluster: Callable[..., DaskCluster]
) -> None:
    """SIGSTOP of the scheduler while a task runs (alive, silent): the task fails after worker_wait, one line."""
    cluster = dask_cluster(workers=1)
    assert cluster.scheduler.proc is not None
    scheduler = cluster.scheduler.proc.pid
    killer = _killer(tmp_path, "totals", lambda _pid: scheduler, sig=signal.SIGSTOP)
    proc = _pipewarden(
        tmp_path,
        str(pipeline),
        "--executor",
        "dask",
        "--address",
        cluster.address,
        "--json",
        env={"SLOW": "60", "PIPEWARDEN_DASK_WORKER_WAIT": "2"},
    )
    try:
        code, record, err = _finish(proc)
    finally:
        killer.join(5)
        os.kill(scheduler, signal.SIGCONT)
    assert code == 1, err
    assert record is not None
    [(_, status, error)] = _attempts(record, "totals")
    assert status == "failed" and "\n" not in error
    assert error.startswith(f"ExecutorError: lost the Dask scheduler at {cluster.address}")
    assert "it has not answered for 2 s" in error


def test_a_peer_that_accepts_and_never_answers_is_a_config_error_in_bounded_time() -> None:
    """An address where something accepts TCP connections and says nothing: a ConfigError after connect_timeout."""
    require_module("distributed")
    from agent.dask_executor import DaskExecutor

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshakes; nobody ever reads or writes
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        caught: list[BaseException] = []

        def connect() -> None:
            try:
                DaskExecutor(address, connect_timeout=1)
            except BaseException as exc:
                caught.append(exc)

        thread = threading.Thread(target=connect, daemon=True)
        thread.start()
        thread.join(30)
    assert not thread.is_alive(), "DaskExecutor() hung on a silent peer"
    [exc] = caught
    assert isinstance(exc, ConfigError)
    assert f"cannot reach the Dask scheduler at '{address}' within 1 s" in str(exc) and "never answered" in str(exc)


def test_a_scheduler_that_cannot_load_pipewarden_is_a_config_error(
    tmp_path: Path, pipeline: Path, dask_cluster: Callable[..., DaskCluster]
) -> None:
    """A scheduler installed without pipewarden: exit 2 at connect with one line saying what to install, no run."""
    cluster = dask_cluster(workers=0, blocked=["agent"])
    code, record, err = _finish(
        _pipewarden(tmp_path, str(pipeline), "--executor", "dask", "--address", cluster.address)
    )
    assert code == 2 and record is None
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert f"the Dask scheduler at {cluster.address} cannot run pipewarden's code" in line
    assert "install pipewarden" in line
    assert _notes(tmp_path, "extract") == []


def test_no_worker_fails_the_attempt_after_worker_wait_and_it_never_runs_later(
    tmp_path: Path, dask_cluster: Callable[..., DaskCluster]
) -> None:
    """With no worker, an attempt fails after worker_wait; a worker joining later does not run it."""
    from agent.dask_executor import DaskExecutor

    cluster = dask_cluster(workers=0)
    marker = tmp_path / "ran"
    ex = DaskExecutor(cluster.address, worker_wait=1.0)
    try:
        attempt = ex.submit(measured, _touch, {"path": str(marker)})
        with pytest.raises(ExecutorError) as info:
            attempt.result(timeout=BOUND)
        assert info.value.reason == "no-workers"
        assert f"no Dask worker joined the scheduler at {cluster.address} for 1 s" in str(info.value)
        cluster.add_workers(1)
        assert ex.submit(divmod, 7, 2).result(timeout=BOUND) == (3, 1)  # after the cancelled one, were it queued
        assert not marker.exists()
    finally:
        ex.shutdown()


def _touch(path: str) -> None:
    Path(path).touch()


def test_inputs_that_do_not_pickle_fail_at_submit() -> None:
    """A task whose function or inputs cannot be pickled fails at once, naming the reason, on an in-process cluster."""
    require_module("distributed")
    from agent.dask_executor import DaskExecutor

    ex = DaskExecutor(processes=False, n_workers=1)
    try:
        with pytest.raises(ExecutorError, match="cannot be pickled for the Dask workers") as info:
            ex.submit(measured, len, {"obj": threading.Lock()})
        assert info.value.reason == "cannot-send"
    finally:
        ex.shutdown()


def test_the_local_cluster_runs_tasks_in_worker_processes_and_leaves_none_behind(
    tmp_path: Path, pipeline: Path
) -> None:
    """`--executor dask` without an address: tasks run in worker processes that are all gone once the run ends."""
    import psutil

    require_module("distributed")
    proc = _pipewarden(tmp_path, str(pipeline), "--executor", "dask", "--json")
    children, out, err = _descendants_until_exit(proc)
    assert proc.returncode == 0, err
    assert json.loads(out)["status"] == "success"
    assert (tmp_path / "notes" / "report.txt").read_text() == EXPECTED
    ran_on = set(_notes(tmp_path, "extract") + _notes(tmp_path, "totals") + _notes(tmp_path, "report"))
    assert ran_on and ran_on <= children  # worker processes the run started, not the runner itself
    wait_until(
        lambda: not [p for p in children if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"] or None,
        timeout=10,
        what=f"the local cluster's processes {sorted(children)} to end with the run",
    )


def test_the_local_cluster_dies_with_a_killed_runner(tmp_path: Path, pipeline: Path) -> None:
    """SIGKILL of `pipewarden run --executor dask` mid-task: no worker process of its local cluster outlives it."""
    import psutil

    require_module("distributed")
    proc = _pipewarden(tmp_path, str(pipeline), "--executor", "dask", env={"SLOW": "60"})
    seen: set[int] = set()

    def started() -> bool | None:
        with contextlib.suppress(psutil.Error):
            seen.update(c.pid for c in psutil.Process(proc.pid).children(recursive=True))
        return True if _notes(tmp_path, "totals") else None

    try:
        wait_until(started, timeout=BOUND, interval=0.05, what="task totals to start on a worker")
    finally:
        proc.kill()
        proc.communicate()
    running = _notes(tmp_path, "totals")[0]
    assert running in seen
    try:
        wait_until(
            lambda: not [p for p in seen if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"] or None,
            timeout=30,
            what=f"processes {sorted(seen)} to die with the runner",
        )
    finally:
        for pid in seen:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _descendants_until_exit(proc: subprocess.Popen[str]) -> tuple[set[int], str, str]:
    """(every process ``proc`` started, its stdout, its stderr), polling its children until it exits."""
    import psutil

    seen: set[int] = set()
    streams: dict[str, str] = {}
    readers = [
        threading.Thread(target=lambda n=name, s=stream: streams.__setitem__(n, s.read()), daemon=True)
        for name, stream in (("out", proc.stdout), ("err", proc.stderr))
    ]
    for r in readers:
        r.start()
    deadline = time.monotonic() + BOUND
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"pipewarden run hung for {BOUND} s")
        with contextlib.suppress(psutil.Error):
            seen.update(c.pid for c in psutil.Process(proc.pid).children(recursive=True))
        time.sleep(0.02)
    for r in readers:
        r.join(10)
    return seen, streams.get("out", ""), streams.get("err", "")


def test_a_bad_worker_wait_is_one_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """PIPEWARDEN_DASK_WORKER_WAIT that is not a positive number is refused, naming the variable and the value."""
    require_module("distributed")
    from agent.dask_executor import DaskExecutor

    monkeypatch.setenv("PIPEWARDEN_DASK_WORKER_WAIT", "soon")
    with pytest.raises(ConfigError, match="PIPEWARDEN_DASK_WORKER_WAIT must be a number of seconds > 0 — got 'soon'"):
        DaskExecutor(processes=False, n_workers=1)


def test_doctests_run() -> None:
    """The class docstring's example (an in-process local cluster) runs."""
    require_module("distributed")
    import agent.dask_executor

    result = doctest.testmod(agent.dask_executor)
    assert result.attempted >= 3 and result.failed == 0


def test_importing_the_runner_and_executors_imports_no_dask() -> None:
    """`import agent`, the runner, the executors and the CLI load neither dask, distributed nor cloudpickle."""
    code = (
        "import sys, agent, agent.executors, agent.runner, agent.cli, agent.dask_executor; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed', 'cloudpickle'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
