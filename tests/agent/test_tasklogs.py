"""Task logs in history: what each attempt logged and printed, per thread, per process, bounded, and shown."""

from __future__ import annotations

import doctest
import logging
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import agent.tasklogs
from agent.executors import ProcessExecutor
from agent.pipeline import Pipeline
from agent.records import RunStatus
from agent.runner import run
from agent.tasklogs import MAX_CHARS, TaskLog

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("restore_logging")  # runs add a log-record factory while tasks run


@pytest.mark.parametrize("chunk", [1, 1000, 200_000])
def test_a_log_keeps_its_first_and_last_half_and_says_what_it_left_out(chunk: int) -> None:
    """Past the bound, the first and the last half are kept, with one line saying how many characters went."""
    log = TaskLog(limit=1000)
    text = "".join(f"{i:06d}\n" for i in range(200_000 // 7))
    for i in range(0, len(text), chunk):
        log.write(text[i : i + chunk])
    kept = log.text()
    assert kept.startswith(text[:500] + "\n[... ") and kept.endswith("...]\n" + text[-500:])
    assert log.dropped == len(text) - 1000
    assert f"[... {len(text) - 1000:,} characters left out: a task attempt keeps 1,000 characters" in kept
    assert len(kept) < 1000 + 120


def test_a_log_under_the_bound_is_kept_whole() -> None:
    """Text under the bound comes back exactly, with no marker."""
    log = TaskLog(limit=100)
    log.write("a" * 60)
    log.write("b" * 40)
    assert log.text() == "a" * 60 + "b" * 40 and log.dropped == 0


def test_concurrent_tasks_in_threads_keep_their_own_logs(run_opts: dict[str, Any]) -> None:
    """Tasks running at once in threads, printing and logging in lock-step, each keep only their own lines."""
    pipe = Pipeline("threads", max_workers=4)
    barrier = threading.Barrier(4, timeout=20)
    log = logging.getLogger("tests.tasklogs")

    def make(name: str) -> Any:
        def work() -> None:
            for i in range(5):
                barrier.wait()  # every task writes its line i at the same moment
                print(f"{name} printed {i}")
                log.warning("%s logged %d", name, i)
                print(f"{name} to stderr {i}", file=sys.stderr)

        return work

    names = [f"t{i}" for i in range(4)]
    for name in names:
        pipe.task(name=name)(make(name))
    rec = run(pipe, **run_opts)
    assert rec.ok
    stored = run_opts["store"].get_run(rec.run_id, logs=True)
    for name in names:
        text = stored.latest()[name].logs or ""
        lines = text.splitlines()
        assert [ln for ln in lines if "printed" in ln] == [f"{name} printed {i}" for i in range(5)]
        assert [ln.split(": ", 1)[1] for ln in lines if "logged" in ln] == [f"{name} logged {i}" for i in range(5)]
        assert all(" WARNING tests.tasklogs: " in ln for ln in lines if "logged" in ln)
        assert len([ln for ln in lines if "to stderr" in ln]) == 5
        assert not any(other in text for other in names if other != name)
    assert not isinstance(sys.stdout, agent.tasklogs._Tee)  # put back when no attempt runs
    assert run_opts["store"].get_run(rec.run_id).latest()["t0"].logs is None  # loaded only when asked


def test_each_attempt_keeps_its_own_logs_and_a_quiet_one_keeps_none(run_opts: dict[str, Any]) -> None:
    """A retried task's attempts each keep what they wrote, the exception's traceback logged included."""
    pipe = Pipeline("retries")
    tries: list[int] = []

    @pipe.task(retries=1, retry_delay=0)
    def flaky() -> int:
        tries.append(1)
        print(f"attempt {len(tries)}")
        if len(tries) == 1:
            try:
                raise ValueError("source hiccup")
            except ValueError:
                logging.getLogger("tests.tasklogs").exception("could not read")
                raise
        return 1

    pipe.task(name="quiet")(lambda: None)
    rec = run(pipe, **run_opts)
    assert rec.ok
    attempts = [a for a in run_opts["store"].get_run(rec.run_id, logs=True).attempts if a.task == "flaky"]
    assert [a.status for a in attempts] == [RunStatus.FAILED, RunStatus.SUCCESS]
    assert attempts[0].logs is not None and attempts[0].logs.startswith("attempt 1\n")
    assert "ERROR tests.tasklogs: could not read\nTraceback" in attempts[0].logs
    assert "ValueError: source hiccup" in attempts[0].logs
    assert attempts[1].logs == "attempt 2\n"
    assert run_opts["store"].get_run(rec.run_id, logs=True).latest()["quiet"].logs is None


def test_a_process_pool_sends_the_logs_back(run_opts: dict[str, Any]) -> None:
    """With the process executor, what a task printed and logged in its worker is kept with its attempt."""
    pipe = Pipeline("processes")
    pipe.task(name="work")(_printer)
    ex = ProcessExecutor(max_workers=1)
    try:
        rec = run(pipe, executor=ex, **run_opts)
    finally:
        ex.shutdown()
    assert rec.ok
    logs = run_opts["store"].get_run(rec.run_id, logs=True).latest()["work"].logs or ""
    assert logs.startswith("hello from pid ") and "WARNING tests.tasklogs: logged in " in logs
    worker = int(logs.split()[3])
    assert worker != os.getpid() and f"logged in {worker}" in logs


def _printer() -> None:
    print(f"hello from pid {os.getpid()}")
    logging.getLogger("tests.tasklogs").warning("logged in %d", os.getpid())


def test_a_timed_out_task_keeps_what_it_wrote_before_it_was_stopped(run_opts: dict[str, Any]) -> None:
    """A task stopped at its timeout still has the lines it printed before the SIGTERM."""
    pipe = Pipeline("timeouts")

    @pipe.task(timeout=0.5)
    def hang() -> None:
        import time

        print("about to hang", flush=True)
        time.sleep(30)

    rec = run(pipe, kill_grace=5.0, **run_opts)
    attempt = run_opts["store"].get_run(rec.run_id, logs=True).latest()["hang"]
    assert attempt.status is RunStatus.TIMED_OUT and attempt.logs == "about to hang\n"


def test_doctests_run() -> None:
    """The example in agent.tasklogs runs as written."""
    assert doctest.testmod(agent.tasklogs).failed == 0


PIPES = textwrap.dedent("""
    import logging
    import sys
    from agent import Pipeline

    log = logging.getLogger("pipes")
    pipe = Pipeline("chatty")

    @pipe.task
    def extract() -> int:
        print("extract: 3 rows")
        log.warning("extract: one row had no id")
        return 3

    @pipe.task
    def load(extract: int) -> None:
        print("load: begin " + "x" * 20, file=sys.stderr)
        for i in range(20_000):
            print(f"load line {i:05d}")
        print("load: end")
""")


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
    env.update(PYTHONPATH=str(REPO), OTEL_TRACES_EXPORTER="none")
    return subprocess.run(
        [sys.executable, "-m", "agent", *args, "--home", str(tmp_path / "home")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_runs_show_task_logs_shows_them_truncated_at_the_bound(tmp_path: Path, executor: str) -> None:
    """`runs show RUN --task T --logs` prints the task's logs (head and tail past the bound); the terminal got all."""
    (tmp_path / "pipes.py").write_text(PIPES)
    done = _cli(tmp_path, "run", "pipes.py", "--executor", executor, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "extract: 3 rows" in done.stdout and "load line 19999" in done.stdout  # still reaches the terminal
    assert "extract: one row had no id" in done.stderr and "load: begin" in done.stderr
    run_id = _cli(tmp_path, "runs", "list", "-q").stdout.split()[0]

    shown = _cli(tmp_path, "runs", "show", run_id, "--task", "extract", "--logs")
    assert shown.returncode == 0, shown.stderr
    assert "task extract:\n  #1 success" in shown.stdout
    assert "--- logs of extract #1 (success), up to 65,536 characters kept ---\nextract: 3 rows\n" in shown.stdout
    assert " WARNING pipes: extract: one row had no id" in shown.stdout
    assert "load line" not in shown.stdout

    shown = _cli(tmp_path, "runs", "show", run_id, "--task", "load", "--logs")
    logs = shown.stdout.split("characters kept ---\n", 1)[1]
    assert logs.startswith("load: begin " + "x" * 20 + "\nload line 00000\n")
    assert logs.rstrip().endswith("load line 19999\nload: end")
    total = len("load: begin " + "x" * 20 + "\n") + 20_000 * len("load line 00000\n") + len("load: end\n")
    assert f"[... {total - MAX_CHARS:,} characters left out: a task attempt keeps 65,536 characters" in logs
    assert MAX_CHARS < len(logs) < MAX_CHARS + 200

    missing = _cli(tmp_path, "runs", "show", run_id, "--task", "lod", "--logs")
    assert missing.returncode == 2
    assert missing.stderr == f"error: run {run_id} has no task 'lod' (tasks: extract, load)\n"
