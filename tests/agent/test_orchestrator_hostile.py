"""Mapped tasks, branches and sensors under attack: huge maps, bad branch choices, sensors that never settle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from agent.cli import cli
from agent.pipeline import Pipeline
from agent.records import RunStatus
from agent.runner import run
from agent.sensors import file_exists
from agent.store import SQLiteRunStore


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
    return {**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def _huge(n: int, ran_on: set[int]) -> Pipeline:
    pipe = Pipeline("huge")

    @pipe.task
    def numbers() -> list[int]:
        return list(range(n))

    @pipe.task(map="numbers", max_parallel=2)
    def double(numbers: int) -> int:
        ran_on.add(threading.get_ident())
        if numbers % 3 == 1:
            raise ValueError(f"bad item {numbers}")
        return numbers * 2

    return pipe


def test_a_huge_map_holds_no_thread_per_item_and_runs_show_stays_short(
    run_opts: dict[str, Any], store: SQLiteRunStore
) -> None:
    """20,000 items with max_parallel=2 run on the run's pool of threads, as 20 do, not on a thread per item;
    `runs show` lists the first items, the first failures and counts the rest (thousands do not flood it)."""
    pool = min(32, (os.cpu_count() or 1) + 4)  # the run's default workers (agent.runner)
    small: set[int] = set()
    large: set[int] = set()
    run(_huge(20, small), **run_opts)
    rec = run(_huge(20_000, large), **run_opts)
    assert rec.status is RunStatus.FAILED and 1 <= len(small) <= pool and 1 <= len(large) <= pool
    assert (rec.latest()["double"].error or "").startswith("20000 items: success 13333, failed 6667; [1] ValueError")
    shown = CliRunner().invoke(cli, ["runs", "show", rec.run_id, "--home", str(store.path.parent)])
    lines = shown.output.splitlines()
    assert shown.exit_code == 0 and len(lines) < 200, len(lines)
    assert "  ... and 6617 more items of double that did not succeed (runs show --all-items lists them)" in lines
    assert "  ... and 6617 more failed attempts of items (--all-items lists them)" in lines
    every = CliRunner().invoke(cli, ["runs", "show", rec.run_id, "--all-items", "--home", str(store.path.parent)])
    assert "double[19999]" in every.output and "bad item 19999" in every.output


def test_a_branch_naming_a_stranger_is_not_retried(run_opts: dict[str, Any]) -> None:
    """A branch that returns a task not directly below it is a pipeline bug: it fails once, its retries unused."""
    calls: Counter[str] = Counter()
    pipe = Pipeline("bad_branch")

    @pipe.task(branch=True, retries=3)
    def pick() -> str:
        calls["pick"] += 1
        return "report"  # below the child, not directly below the branch

    pipe.task(name="child", depends_on=["pick"])(lambda: 1)
    pipe.task(name="report", depends_on=["child"])(lambda: 2)
    rec = run(pipe, **run_opts)
    assert rec.status is RunStatus.FAILED and calls["pick"] == 1
    assert [a.attempt for a in rec.attempts if a.task == "pick"] == [1]
    error = rec.latest()["pick"].error or ""
    assert error.startswith("BranchError: branch task 'pick' returned 'report'") and "\n" not in error
    assert rec.task_state("child") is rec.task_state("report") is RunStatus.UPSTREAM_FAILED


def test_a_sensor_whose_poke_is_longer_than_its_timeout_ends_at_its_timeout(run_opts: dict[str, Any]) -> None:
    """poke=30s with timeout=0.3s: the sensor looks at its start and at its timeout, then ends timed out."""
    pipe = Pipeline("slow_poke")
    pipe.sensor(name="never", poke=30, timeout=0.3)(file_exists("/nonexistent/pipewarden/*.csv"))
    t0 = time.monotonic()
    rec = run(pipe, **run_opts)
    assert time.monotonic() - t0 < 20  # bounded by the timeout, not the poke
    a = rec.latest()["never"]
    assert rec.status is RunStatus.FAILED and a.status is RunStatus.TIMED_OUT and a.pokes == 2
    assert "did not hold within timeout=0.3s" in (a.error or "")


def test_a_sensor_that_raises_every_poke_fails_at_once_without_retries(run_opts: dict[str, Any]) -> None:
    """A sensor whose condition raises (and has no retries) fails at its first poke with the error, not at its
    timeout."""
    pipe = Pipeline("raising_sensor")
    pokes: Counter[str] = Counter()

    def broken() -> bool:
        pokes["n"] += 1
        raise PermissionError("no access to the landing bucket")

    pipe.sensor(name="landing", poke=0.01, timeout=3600)(broken)
    pipe.task(name="load", depends_on=["landing"])(lambda: 1)
    rec = run(pipe, **run_opts)
    assert rec.status is RunStatus.FAILED and pokes["n"] == 1
    assert rec.latest()["landing"].error == "PermissionError: no access to the landing bucket"
    assert rec.task_state("load") is RunStatus.UPSTREAM_FAILED


def test_an_item_function_processes_cannot_pickle_fails_clearly(tmp_path: Path) -> None:
    """With --executor processes, a mapped lambda travels (cloudpickle), but one that holds a lock fails each
    item with one line saying it cannot be pickled; the run ends (exit 1), no hang."""
    path = tmp_path / "lambdas.py"
    path.write_text(
        textwrap.dedent(
            """
            import threading

            from agent import Pipeline

            LOCK = threading.Lock()
            pipe = Pipeline("lambdas")
            pipe.task(name="numbers")(lambda: [1, 2, 3])
            pipe.task(name="double", map="numbers", max_parallel=2)(lambda numbers: LOCK.locked() or numbers * 2)
            """
        )
    )
    home = tmp_path / "home"
    res = subprocess.run(
        [sys.executable, "-m", "agent", "run", str(path), "--executor", "processes", "--no-progress", "--home", home],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1, res.stdout + res.stderr
    with SQLiteRunStore(home / "pipewarden.db") as store:
        (rec,) = store.list_runs()
        rec = store.get_run(rec.run_id)
    assert rec is not None and rec.status is RunStatus.FAILED
    assert rec.task_state("numbers") is RunStatus.SUCCESS and rec.task_state("double") is RunStatus.FAILED
    failed = rec.latest()["double"]
    assert (failed.error or "").startswith(
        "3 items: failed 3; [0] ExecutorError: the task's function or inputs cannot be pickled for a worker "
        "process (TypeError: cannot pickle '_thread.lock' object)"
    )


SENSING = """
from pathlib import Path

from agent import Pipeline
from agent.sensors import file_exists

pipe = Pipeline("sensing", params={"marker": "", "ready": ""})


@pipe.task
def extract(marker: str) -> int:
    with open(marker, "a") as f:
        f.write("extract\\n")
    return 3


pipe.sensor(name="arrived", poke=0.05, timeout=300)(file_exists("{ready}"))


@pipe.task(depends_on=["arrived"])
def load(extract: int, marker: str) -> int:
    with open(marker, "a") as f:
        f.write("load\\n")
    return extract
"""


def test_sigkill_while_a_sensor_waits_then_resume_waits_again_and_completes(tmp_path: Path) -> None:
    """`pipewarden run` killed with SIGKILL while its sensor waits: the run is then recorded interrupted, and
    `runs resume` waits again, completes, and does not run the task that had finished."""
    path, marker, ready, home = tmp_path / "sensing.py", tmp_path / "marker", tmp_path / "ready.csv", tmp_path / "home"
    path.write_text(SENSING)
    env = _env()
    args = ["run", str(path), "--no-progress", "-p", f"marker={marker}", "-p", f"ready={ready}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", *args, "--home", str(home)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, pokes = time.monotonic() + 60, 0
        while time.monotonic() < deadline and pokes < 3 and proc.poll() is None:  # waiting, looked a few times
            time.sleep(0.05)
            if (home / "pipewarden.db").exists():
                with SQLiteRunStore(home / "pipewarden.db") as store:
                    runs = store.list_runs(pipeline="sensing")
                    rec = store.get_run(runs[0].run_id) if runs else None
                a = rec.latest().get("arrived") if rec is not None else None
                pokes = (a.pokes or 0) if a is not None and a.status is RunStatus.WAITING else 0
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert pokes >= 3 and proc.returncode == -signal.SIGKILL
    run_id = rec.run_id  # type: ignore[union-attr]
    shown = subprocess.run(
        [sys.executable, "-m", "agent", "runs", "show", run_id, "--home", str(home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"run {run_id}  pipeline sensing  status interrupted" in shown.stdout, shown.stdout + shown.stderr
    ready.write_text("id\n1\n")
    resumed = subprocess.run(
        [sys.executable, "-m", "agent", "runs", "resume", run_id, "--json", "--no-progress", "--home", str(home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    after = json.loads(resumed.stdout)
    assert after["status"] == "success" and after["tasks"]["arrived"] == after["tasks"]["load"] == "success"
    assert marker.read_text().split() == ["extract", "load"]  # extract had finished: not run twice
    with SQLiteRunStore(home / "pipewarden.db") as store:
        final = store.get_run(run_id)
    assert final is not None
    sensed = [a.status for a in final.attempts if a.task == "arrived"]
    assert sensed == [RunStatus.INTERRUPTED, RunStatus.SUCCESS]
