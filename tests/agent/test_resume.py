"""Resume: re-run what did not succeed, keep what was persisted, survive a killed process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
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
    assert Path(again.latest()["extract"].output_ref or "").name == "extract.arrow"


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
    (run_opts["store"].path.parent / (first.latest()["extract"].output_ref or "")).unlink()
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
    return subprocess.run(
        [sys.executable, "-m", "agent", *args, "--home", str(home)],
        env=env,
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _wait_for(predicate: Any, what: str, proc: subprocess.Popen[str], limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(
                f"runner exited early ({proc.returncode}) while waiting for {what}: "
                f"{proc.stderr.read() if proc.stderr else ''}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_sigkilled_runner_is_interrupted_then_resumed_without_rerunning_finished_tasks(tmp_path: Path) -> None:
    """A runner killed with SIGKILL mid-run: the next start marks the run interrupted, resume completes it,
    no finished task runs twice and nothing recorded is lost."""
    home, marker, gate = tmp_path / "home", tmp_path / "marker.txt", tmp_path / "gate"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PIPEWARDEN_HOME": str(home),
        "PIPEWARDEN_EXAMPLE_MARKER": str(marker),
        "PIPEWARDEN_EXAMPLE_GATE": str(gate),
    }
    example = str(REPO / "examples" / "pipelines" / "resumable.py")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", example, "--no-progress", "--home", str(home)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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
        "extract": "success",
        "side": "success",
        "wait_for_gate": "interrupted",
        "load": "interrupted",
    }
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


CHAIN = """
import os, time
from pathlib import Path
from agent.pipeline import Pipeline

pipe = Pipeline("chain")
marker, gate = Path(os.environ["CHAIN_MARKER"]), Path(os.environ["CHAIN_GATE"])


def step(i: int, before: int) -> int:
    with marker.open("a") as f:
        f.write(f"t{i}:start\\n")
    while i == 8 and not gate.exists():
        time.sleep(0.02)
    with marker.open("a") as f:
        f.write(f"t{i}\\n")
    return before + i
""" + "".join(
    f"""

@pipe.task
def t{i}({f"t{i - 1}: int" if i > 1 else ""}) -> int:
    return step({i}, {f"t{i - 1}" if i > 1 else 0})
"""
    for i in range(1, 21)
)


def test_killed_chain_resumes_after_the_last_finished_task(tmp_path: Path) -> None:
    """A 20-task chain passing values by parameter (no persist option), SIGKILLed at task 8: resume runs
    t8..t20 only, each earlier task exactly once in all, and the values flow on."""
    home, marker, gate = tmp_path / "home", tmp_path / "marker", tmp_path / "gate"
    (tmp_path / "chain.py").write_text(CHAIN)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PIPEWARDEN_HOME": str(home),
        "CHAIN_MARKER": str(marker),
        "CHAIN_GATE": str(gate),
    }
    with subprocess.Popen(
        [sys.executable, "-m", "agent", "run", str(tmp_path / "chain.py"), "--no-progress"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            _wait_for(lambda: marker.exists() and "t8:start" in marker.read_text(), "t8 to start", proc)
        finally:
            proc.send_signal(signal.SIGKILL)
    with SQLiteRunStore(home / "pipewarden.db") as store:
        run_id = store.list_runs()[0].run_id
    gate.write_text("open")
    resumed = _cli(home, "runs", "resume", run_id, "--no-progress", "--json", env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "runs again" not in resumed.stderr
    lines = Counter(marker.read_text().split())
    assert all(lines[f"t{i}"] == 1 for i in range(1, 21)), lines
    assert lines["t8:start"] == 2 and all(lines[f"t{i}:start"] == 1 for i in range(1, 21) if i != 8)
    record = json.loads(resumed.stdout)
    assert record["status"] == "success"
    assert [a["task"] for a in record["attempts"] if a["status"] == "success"] == [f"t{i}" for i in range(1, 21)]
    assert record["attempts"][-1]["task"] == "t20"


UNKEPT = """
    import os
    from pathlib import Path
    from agent.pipeline import Pipeline

    pipe = Pipeline("unkept")

    @pipe.task
    def extract() -> set[int]:
        return {1, 2, 3}

    @pipe.task
    def load(extract: set[int]) -> int:
        if Path(os.environ["BROKEN"]).exists():
            raise RuntimeError("load is broken")
        return len(extract)
"""


def test_resume_says_which_tasks_run_again_before_running_them(tmp_path: Path) -> None:
    """An output that could not be kept (a set) makes resume print which task runs again, and why, first."""
    home, broken = tmp_path / "home", tmp_path / "broken"
    broken.write_text("")
    (tmp_path / "unkept.py").write_text(textwrap.dedent(UNKEPT))
    env = {**os.environ, "PYTHONPATH": str(REPO), "BROKEN": str(broken)}
    first = _cli(home, "run", str(tmp_path / "unkept.py"), "--json", "--no-progress", env=env)
    assert first.returncode == 1, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    broken.unlink()
    resumed = _cli(home, "runs", "resume", run_id, "--no-progress", env=env)
    assert resumed.returncode == 0, resumed.stderr
    [line] = [x for x in resumed.stderr.splitlines() if "runs again" in x]
    assert line.startswith("resume: extract finished before but runs again") and "persist='pickle'" in line
