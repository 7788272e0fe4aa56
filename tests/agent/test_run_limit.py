"""max_active_runs holds for `pipewarden run` across processes: refuse (exit 1) or queue with --wait."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from servers import wait_until

from agent.errors import RunLimitError
from agent.pipeline import Pipeline
from agent.records import RunStatus
from agent.runner import run
from agent.store import SQLiteRunStore

REPO = Path(__file__).resolve().parents[2]

GATED = """
import os, time
from pathlib import Path
from agent.pipeline import Pipeline

pipe = Pipeline("gated")


@pipe.task
def hold() -> int:
    Path(os.environ["STARTED"], str(os.getpid())).touch()
    while not Path(os.environ["GATE"]).exists():
        time.sleep(0.02)
    return 1
"""


def _start(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PIPEWARDEN_HOME": str(tmp_path / "home"),
        "GATE": str(tmp_path / "gate"),
        "STARTED": str(tmp_path / "started"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run", str(tmp_path / "gated.py"), "--no-progress", *extra],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def gated(tmp_path: Path) -> Path:
    (tmp_path / "gated.py").write_text(GATED)
    (tmp_path / "started").mkdir()
    return tmp_path


def test_runs_started_at_once_over_the_limit_are_refused(gated: Path) -> None:
    """Four processes of one pipeline (max_active_runs=1) started at once: one runs, three exit 1 saying why."""
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(_start(gated)) for _ in range(4)]
        stack.callback(lambda: [p.kill() for p in procs])  # first on the way out; each Popen then closes its pipes
        wait_until(
            lambda: sum(p.poll() is not None for p in procs) == 3 or None,
            timeout=60,
            what="three of the four runs to be refused",
        )
        (gated / "gate").write_text("open")
        outcomes = [(p.wait(60), p.stderr.read() if p.stderr else "") for p in procs]
    assert sorted(code for code, _ in outcomes) == [0, 1, 1, 1], outcomes
    for code, err in outcomes:
        if code == 1:
            assert "max_active_runs=1" in err and "--wait" in err and len(err.strip().splitlines()) == 1
    assert len(list((gated / "started").iterdir())) == 1
    with SQLiteRunStore(gated / "home" / "pipewarden.db") as store:
        assert [r.status for r in store.list_runs()] == [RunStatus.SUCCESS]  # a refused run records nothing


def test_wait_queues_a_run_until_the_running_one_ends(gated: Path) -> None:
    """`run --wait` says it waits, starts only when the running run has ended, and both succeed."""
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(_start(gated))
        stack.callback(first.kill)
        wait_until(lambda: any((gated / "started").iterdir()) or None, timeout=60, what="the first run to start")
        second = stack.enter_context(_start(gated, "--wait"))
        stack.callback(second.kill)
        wait_until(lambda: (gated / "home" / "pipewarden.db").exists() or None, timeout=10, what="the store")
        with pytest.raises(subprocess.TimeoutExpired):
            second.wait(2)  # queued, not refused
        assert len(list((gated / "started").iterdir())) == 1
        (gated / "gate").write_text("open")
        assert first.wait(60) == 0 and second.wait(60) == 0
        assert "waiting: pipeline 'gated' has 1 run(s) running" in (second.stderr.read() if second.stderr else "")
    with SQLiteRunStore(gated / "home" / "pipewarden.db") as store:
        runs = store.list_runs()
    assert [r.status for r in runs] == [RunStatus.SUCCESS] * 2
    newer, older = runs
    assert newer.started_at is not None and older.ended_at is not None and newer.started_at >= older.ended_at


def test_the_library_raises_run_limit_error_and_records_nothing(run_opts: dict[str, Any]) -> None:
    """Runner.run of a pipeline at its limit raises RunLimitError naming the running run; no row is left."""
    store = run_opts["store"]
    pipe = Pipeline("limited")
    pipe.task(name="one")(lambda: 1)
    store.create_run(run_id="other", pipeline="limited", trigger="manual", now=1.0)
    store.start_run("other", now=1.0)
    with pytest.raises(RunLimitError, match="other") as info:
        run(pipe, **run_opts)
    assert info.value.running == ["other"] and info.value.limit == 1
    assert [r.run_id for r in store.list_runs()] == ["other"]
