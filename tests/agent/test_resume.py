"""Resume: re-run what did not succeed, keep what was persisted, survive a killed process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from agent.errors import ConfigError
from agent.pipeline import Pipeline
from agent.records import RunStatus
from agent.runner import resume, run
from agent.store import SQLiteRunStore

REPO = Path(__file__).resolve().parents[2]


def _pipeline(state: dict[str, Any], counts: Counter[str], *, persist: bool) -> Pipeline:
    pipe = Pipeline("resume")

    @pipe.task(persist=persist)
    def extract() -> pd.DataFrame:
        counts["extract"] += 1
        return pd.DataFrame({"id": [1, 2, 3]})

    @pipe.task
    def audit() -> None:
        counts["audit"] += 1

    @pipe.task
    def transform(extract: pd.DataFrame) -> pd.DataFrame:
        counts["transform"] += 1
        if state["broken"]:
            raise RuntimeError("bug in transform")
        return extract

    @pipe.task(depends_on=["audit"])
    def load(transform: pd.DataFrame) -> int:
        counts["load"] += 1
        return len(transform)

    return pipe


def test_resume_reruns_failed_and_downstream_but_not_persisted_tasks(run_opts: dict[str, Any]) -> None:
    """After a fix, resume runs transform and load again; extract (persisted) and audit (None) are kept."""
    state, counts = {"broken": True}, Counter[str]()
    pipe = _pipeline(state, counts, persist=True)
    first = run(pipe, **run_opts)
    assert first.status is RunStatus.FAILED
    assert first.task_state("load") is RunStatus.UPSTREAM_FAILED
    state["broken"] = False
    again = resume(pipe, first.run_id, **run_opts)
    assert again.ok and again.run_id == first.run_id
    assert counts == Counter(extract=1, audit=1, transform=2, load=1)
    assert again.outputs["load"] == 3
    assert again.executions("transform") == 2
    assert [str(a.status) for a in again.attempts if a.task == "transform"] == ["failed", "success"]
    assert Path(again.latest()["extract"].output_ref or "").name == "extract.parquet"


def test_resume_reruns_an_unpersisted_upstream_whose_output_is_needed(run_opts: dict[str, Any]) -> None:
    """A succeeded task whose output was not kept runs again when a re-run task needs it."""
    state, counts = {"broken": True}, Counter[str]()
    pipe = _pipeline(state, counts, persist=False)
    first = run(pipe, **run_opts)
    state["broken"] = False
    assert resume(pipe, first.run_id, **run_opts).ok
    assert counts == Counter(extract=2, audit=1, transform=2, load=1)


def test_resume_recomputes_a_deleted_artifact(run_opts: dict[str, Any]) -> None:
    """When a persisted file is gone, its task runs again instead of failing the resume."""
    state, counts = {"broken": True}, Counter[str]()
    pipe = _pipeline(state, counts, persist=True)
    first = run(pipe, **run_opts)
    Path(first.latest()["extract"].output_ref or "").unlink()
    state["broken"] = False
    assert resume(pipe, first.run_id, **run_opts).ok
    assert counts["extract"] == 2


def test_resume_of_a_successful_run_does_nothing(run_opts: dict[str, Any]) -> None:
    """Resuming a run that succeeded returns it without running anything."""
    state, counts = {"broken": False}, Counter[str]()
    pipe = _pipeline(state, counts, persist=False)
    rec = run(pipe, **run_opts)
    assert resume(pipe, rec.run_id, **run_opts).status is RunStatus.SUCCESS
    assert counts["extract"] == 1


def test_resume_refuses_unknown_runs_and_other_pipelines(run_opts: dict[str, Any]) -> None:
    """An unknown run id or a run of another pipeline is a ConfigError."""
    state, counts = {"broken": True}, Counter[str]()
    pipe = _pipeline(state, counts, persist=False)
    rec = run(pipe, **run_opts)
    with pytest.raises(ConfigError, match="no run 'nope'"):
        resume(pipe, "nope", **run_opts)
    other = Pipeline("other")
    other.task(name="x")(lambda: None)
    with pytest.raises(ConfigError, match="run of pipeline 'resume'"):
        resume(other, rec.run_id, **run_opts)


def _cli(home: Path, *args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args, "--home", str(home)], env=env, cwd=home.parent,
                          capture_output=True, text=True, timeout=timeout)


def _wait_for(predicate: Any, what: str, proc: subprocess.Popen[str], limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"runner exited early ({proc.returncode}) while waiting for {what}: "
                                 f"{proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_sigkilled_runner_is_interrupted_then_resumed_without_rerunning_finished_tasks(tmp_path: Path) -> None:
    """A runner killed with SIGKILL mid-run: the next start marks the run interrupted, resume completes it,
    no finished task runs twice and nothing recorded is lost."""
    home, marker, gate = tmp_path / "home", tmp_path / "marker.txt", tmp_path / "gate"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PIPEWARDEN_HOME": str(home),
           "PIPEWARDEN_EXAMPLE_MARKER": str(marker), "PIPEWARDEN_EXAMPLE_GATE": str(gate)}
    example = str(REPO / "examples" / "pipelines" / "resumable.py")
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run", example, "--no-progress", "--home", str(home)],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (home / "pipewarden.db").exists(), "the store", proc)
        store = SQLiteRunStore(home / "pipewarden.db")

        def finished_before_kill() -> bool:
            runs = store.list_runs()
            if not runs:
                return False
            rec = store.get_run(runs[0].run_id)
            done = {t for t, a in rec.latest().items() if a.status is RunStatus.SUCCESS}
            started = marker.exists() and "wait_for_gate:start" in marker.read_text()
            return done == {"extract", "side"} and started

        _wait_for(finished_before_kill, "extract and side to finish and wait_for_gate to start", proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    run_id = store.list_runs()[0].run_id
    before = store.get_run(run_id)
    assert before.status is RunStatus.RUNNING  # nobody has looked yet
    listed = _cli(home, "runs", "list", env=env)  # the next start finds the dead run
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout and "interrupted" in listed.stdout
    interrupted = store.get_run(run_id)
    assert interrupted.status is RunStatus.INTERRUPTED
    assert {t: str(s) for t, s in interrupted.task_states.items()} == {
        "extract": "success", "side": "success", "wait_for_gate": "interrupted", "load": "interrupted"}
    gate.write_text("open")
    resumed = _cli(home, "runs", "resume", run_id, "--no-progress", env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final = store.get_run(run_id)
    assert final.status is RunStatus.SUCCESS
    assert all(s is RunStatus.SUCCESS for s in final.task_states.values())
    lines = Counter(marker.read_text().split())
    assert lines == Counter({"extract": 1, "side": 1, "wait_for_gate:start": 2, "wait_for_gate": 1, "load": 1})
    # Nothing recorded before the kill was lost: every earlier row is still there, only RUNNING became INTERRUPTED.
    after = {a.id: a for a in final.attempts}
    for a in before.attempts:
        kept = after[a.id]
        assert (kept.task, kept.attempt, kept.started_at) == (a.task, a.attempt, a.started_at)
        expected = RunStatus.INTERRUPTED if a.status is RunStatus.RUNNING else a.status
        assert kept.status is expected
    assert final.executions("extract") == 1 and final.executions("wait_for_gate") == 2
    store.close()
