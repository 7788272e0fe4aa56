"""The orchestrator commands: run, runs list/show/resume, backfill, and their exit codes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agent.cli import cli
from agent.store import SQLiteRunStore

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The in-process CLI builds telemetry from the environment, which installs a log record factory."""
    factory = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(factory)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def invoke(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--home", str(home)], catch_exceptions=False)


def write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


FLAKY = """
    import os
    from agent.pipeline import Pipeline

    pipe = Pipeline("flaky", schedule="0 * * * *")

    @pipe.task
    def extract(logical_date) -> int:
        return logical_date.hour

    @pipe.task
    def transform(extract: int) -> int:
        if os.path.exists({broken!r}):
            raise RuntimeError("transform is broken")
        return extract + 1
"""


def test_run_success_exits_0_and_prints_a_summary(home: Path) -> None:
    """`run` on a good pipeline exits 0 and prints one line per task."""
    res = invoke(home, "run", str(REPO / "examples" / "pipelines" / "one_task.py"), "--no-progress")
    assert res.exit_code == 0, res.output
    assert "one_task run" in res.output and "hello" in res.output and "success" in res.output


def test_run_failure_exits_1_then_resume_exits_0(home: Path, tmp_path: Path) -> None:
    """A failed run exits 1; after the fix `runs resume` completes it and exits 0."""
    broken = tmp_path / "broken"
    broken.write_text("")
    path = write(tmp_path, "flaky.py", FLAKY.format(broken=str(broken)))
    res = invoke(home, "run", str(path), "--json", "--logical-date", "2025-01-01T05:00:00+00:00")
    assert res.exit_code == 1
    record = json.loads(res.output)
    assert record["status"] == "failed" and record["tasks"]["transform"] == "failed"
    run_id = record["run_id"]
    listed = invoke(home, "runs", "list")
    assert listed.exit_code == 0 and run_id in listed.output and "failed" in listed.output
    shown = invoke(home, "runs", "show", run_id)
    assert shown.exit_code == 0 and "RuntimeError: transform is broken" in shown.output
    broken.unlink()
    resumed = invoke(home, "runs", "resume", run_id, "--json")
    assert resumed.exit_code == 0, resumed.output
    after = json.loads(resumed.output)
    assert after["status"] == "success" and after["run_id"] == run_id
    # extract's int was kept (as JSON, by default): only transform runs again
    assert [a["task"] for a in after["attempts"]] == ["extract", "transform", "transform"]
    again = invoke(home, "runs", "resume", run_id)
    assert again.exit_code == 0 and "already succeeded" in again.output


def test_run_with_a_check_that_cannot_run_exits_1_and_says_why(home: Path, tmp_path: Path) -> None:
    """A blocking check on a misspelled column fails transform, skips load and exits 1 naming the column."""
    path = write(
        tmp_path,
        "gate.py",
        """
        import pandas as pd
        from agent.pipeline import Pipeline
        from checks import unique

        pipe = Pipeline("gate")

        @pipe.task
        def extract() -> pd.DataFrame:
            return pd.DataFrame({"id": [1, 2, 2]})

        @pipe.task(checks=[unique("idd")])
        def transform(extract: pd.DataFrame) -> pd.DataFrame:
            return extract

        @pipe.task
        def load(transform: pd.DataFrame) -> int:
            raise AssertionError("load must not run")
    """,
    )
    res = invoke(home, "run", str(path), "--no-progress")
    assert res.exit_code == 1, res.output
    [transform] = [line for line in res.output.splitlines() if line.strip().startswith("transform")]
    assert "failed" in transform and "column 'idd' not found" in transform
    [load] = [line for line in res.output.splitlines() if line.strip().startswith("load")]
    assert "skipped" in load


def test_run_parameters_from_the_command_line(home: Path, tmp_path: Path) -> None:
    """-p KEY=VALUE reaches the task, coerced to the declared default's type."""
    path = write(
        tmp_path,
        "params.py",
        """
        from agent.pipeline import Pipeline
        pipe = Pipeline("params", params={"n": 1})

        @pipe.task
        def double(n: int, path: str) -> int:
            assert isinstance(n, int) and path == "/in/x.csv"
            return n * 2
    """,
    )
    res = invoke(home, "run", str(path), "-p", "n=21", "-p", "path=/in/x.csv", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["params"] == {"n": 21, "path": "/in/x.csv"}


@pytest.mark.parametrize(
    "body, target_suffix, message",
    [
        (None, "", "does not exist"),
        ("x = 1\n", "", "defines no Pipeline"),
        (
            "from agent.pipeline import Pipeline\np = Pipeline('a')\np.task(name='t')(lambda: 1)\n",
            ":b",
            "has no pipeline 'b'",
        ),
        (
            "from agent.pipeline import Pipeline\np = Pipeline('a')\n@p.task\ndef t(u): ...\n@p.task\ndef u(t): ...\n",
            "",
            "cycle",
        ),
        ("from agent.pipeline import Pipeline\np = Pipeline('a')\n@p.task\ndef t(nope): ...\n", "", "neither a task"),
        ("raise ImportError('no module named warehouse')\n", "", "importing the pipeline file failed"),
    ],
)
def test_configuration_errors_exit_2_with_a_message(
    home: Path, tmp_path: Path, body: str | None, target_suffix: str, message: str
) -> None:
    """A missing file, no pipeline, a wrong name, a cycle, an unknown input or an import error exit 2."""
    path = tmp_path / "pipe.py"
    if body is not None:
        path.write_text(body)
    res = invoke(home, "run", f"{path}{target_suffix}")
    assert res.exit_code == 2
    assert "error:" in res.output and message in res.output
    assert "Traceback" not in res.output


def test_bad_param_syntax_is_a_usage_error(home: Path) -> None:
    """-p without '=' is a usage error (exit 2)."""
    res = invoke(home, "run", str(REPO / "examples" / "pipelines" / "one_task.py"), "-p", "oops")
    assert res.exit_code == 2 and "KEY=VALUE" in res.output


def test_unwritable_home_exits_2_naming_the_path(tmp_path: Path) -> None:
    """A home that cannot be created prints one StoreError line and exits 2."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = invoke(blocker / "home", "run", str(REPO / "examples" / "pipelines" / "one_task.py"))
    assert res.exit_code == 2
    assert str(blocker) in res.output and "PIPEWARDEN_HOME" in res.output and "Traceback" not in res.output
    listed = invoke(blocker / "home", "runs", "list")
    assert listed.exit_code == 2 and "cannot be created" in listed.output


def test_show_unknown_run_exits_2(home: Path) -> None:
    """`runs show` of an id that is not in the store exits 2."""
    res = invoke(home, "runs", "show", "nope")
    assert res.exit_code == 2 and "no run 'nope'" in res.output


def test_show_json_carries_check_results(home: Path, tmp_path: Path) -> None:
    """`runs show --json` includes each attempt's check results."""
    path = write(
        tmp_path,
        "gated.py",
        """
        from agent.pipeline import Pipeline
        pipe = Pipeline("gated")

        def non_empty(rows):
            return len(rows) > 0

        @pipe.task(checks=[non_empty])
        def extract() -> list:
            return []

        @pipe.task
        def load(extract: list) -> None: ...
    """,
    )
    res = invoke(home, "run", str(path))
    assert res.exit_code == 1
    run_id = SQLiteRunStore(home / "pipewarden.db").list_runs()[0].run_id
    shown = json.loads(invoke(home, "runs", "show", run_id, "--json").output)
    extract = next(a for a in shown["attempts"] if a["task"] == "extract")
    assert extract["checks"][0]["check"] == "non_empty" and extract["checks"][0]["status"] == "fail"
    assert shown["tasks"]["load"] == "skipped"


def test_backfill_runs_each_logical_date_once(home: Path, tmp_path: Path) -> None:
    """`backfill` runs one run per schedule tick in range; a second backfill finds nothing to do."""
    path = write(tmp_path, "flaky.py", FLAKY.format(broken=str(tmp_path / "absent")))
    res = invoke(home, "backfill", str(path), "--start", "2025-01-01T00:00", "--end", "2025-01-01T02:00")
    assert res.exit_code == 0, res.output
    store = SQLiteRunStore(home / "pipewarden.db")
    runs = store.list_runs()
    assert sorted(r.logical_date.hour for r in runs if r.logical_date) == [0, 1, 2]
    assert {r.trigger for r in runs} == {"backfill"} and all(r.ok for r in runs)
    again = invoke(home, "backfill", str(path), "--start", "2025-01-01T00:00", "--end", "2025-01-01T02:00")
    assert again.exit_code == 0 and "nothing to backfill" in again.output
    daily = invoke(home, "backfill", f"{path}:flaky", "--start", "2025-02-01", "--end", "2025-02-02", "--every", "1d")
    assert daily.exit_code == 0 and len(store.list_runs()) == 5


def test_run_with_the_process_executor(home: Path, tmp_path: Path) -> None:
    """--executor processes runs the task functions in worker processes, not in the CLI's process."""
    pid_file = tmp_path / "pid"
    path = write(
        tmp_path,
        "where.py",
        f"""
        import os
        from agent.pipeline import Pipeline
        pipe = Pipeline("where")

        @pipe.task
        def record_pid() -> None:
            with open({str(pid_file)!r}, "w") as f:
                f.write(str(os.getpid()))
    """,
    )
    res = invoke(home, "run", str(path), "--executor", "processes", "--no-progress")
    assert res.exit_code == 0, res.output
    assert int(pid_file.read_text()) != os.getpid()
    threads = invoke(home, "run", str(path), "--no-progress")  # the check itself tells the two apart
    assert threads.exit_code == 0 and int(pid_file.read_text()) == os.getpid()


def test_resume_of_a_successful_run_needs_no_pipeline_file(home: Path, tmp_path: Path) -> None:
    """`runs resume` of a run that succeeded exits 0 at once, even when its file is gone."""
    path = write(
        tmp_path,
        "gone.py",
        """
        from agent.pipeline import Pipeline
        pipe = Pipeline("gone")
        pipe.task(name="t")(lambda: None)
    """,
    )
    res = invoke(home, "run", str(path), "--json", "--no-progress")
    assert res.exit_code == 0, res.output
    path.unlink()
    again = invoke(home, "runs", "resume", json.loads(res.output)["run_id"], "--no-progress")
    assert again.exit_code == 0 and "already succeeded" in again.output


def test_python_dash_m_agent_run_as_a_process(tmp_path: Path) -> None:
    """`python -m agent run` works as a whole process and exits 0."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "run",
            str(REPO / "examples" / "pipelines" / "one_task.py"),
            "--home",
            str(tmp_path / "h"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "success" in res.stdout
    assert (tmp_path / "h" / "pipewarden.db").exists()


def test_ctrl_c_cancels_and_a_second_one_abandons_a_stuck_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """First SIGINT cancels (the stuck task keeps the run waiting), the second exits 1 with the run recorded
    cancelled; resume then completes it."""
    import signal
    import time

    home, marker, gate = tmp_path / "home", tmp_path / "marker", tmp_path / "gate"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PIPEWARDEN_EXAMPLE_MARKER": str(marker),
        "PIPEWARDEN_EXAMPLE_GATE": str(gate),
    }
    example = str(REPO / "examples" / "pipelines" / "resumable.py")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", example, "--no-progress", "--home", str(home)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (marker.exists() and "wait_for_gate:start" in marker.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    store = SQLiteRunStore(home / "pipewarden.db")
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.5)  # still waiting for the stuck task
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "interrupted" in err and "Traceback" not in err
    rec = store.get_run(store.list_runs()[0].run_id)
    assert str(rec.status) == "cancelled"
    assert str(rec.task_state("wait_for_gate")) == "cancelled" and str(rec.task_state("load")) == "cancelled"
    gate.write_text("open")
    monkeypatch.setenv("PIPEWARDEN_EXAMPLE_MARKER", str(marker))
    monkeypatch.setenv("PIPEWARDEN_EXAMPLE_GATE", str(gate))
    resumed = invoke(home, "runs", "resume", rec.run_id, "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert Counter(marker.read_text().split())["extract"] == 1


NEVER_FIRES = """
    from agent.pipeline import Pipeline

    pipe = Pipeline("feb30", schedule="0 0 30 2 *")
    pipe.task(name="t")(lambda: 1)
"""


BAD_INPUT = [
    (
        "cron-never-fires",
        ["backfill", "{feb30}", "--start", "2025-01-01", "--end", "2025-03-01"],
        {},
        "schedule '0 0 30 2 *' never fires",
    ),
    (
        "status-bogus",
        ["runs", "list", "--status", "bogus"],
        {},
        "--status 'bogus' is not a run state; allowed: queued, running, success, failed, cancelled, interrupted",
    ),
    ("run-a-directory", ["run", "{dir}"], {}, "is a directory; pass a pipeline file: path/to/file.py[:pipeline]"),
    (
        "every-negative",
        ["backfill", "{one_task}", "--start", "2025-01-01", "--end", "2025-01-02", "--every", "-5m"],
        {},
        "--every '-5m' is not a positive duration; write a number and a unit, e.g. 30s, 15m, 6h, 1d or 2w",
    ),
    (
        "log-format-xml",
        ["run", "{one_task}"],
        {"PIPEWARDEN_LOG_FORMAT": "xml"},
        "PIPEWARDEN_LOG_FORMAT must be one of text, json — got 'xml'",
    ),
    (
        "demo-home-is-a-file",
        ["demo", "--rows", "100"],
        {"PIPEWARDEN_HOME": "{file}"},
        "is a file, not a directory; set PIPEWARDEN_HOME (or --home)",
    ),
]


@pytest.mark.parametrize("case, args, env, needle", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_one_line_naming_it_and_exit_2(
    tmp_path: Path, case: str, args: list[str], env: dict[str, str], needle: str
) -> None:
    """Each bad input gets one `error:` line naming the input and what is allowed, and exit 2, not a traceback."""
    names = {
        "feb30": str(write(tmp_path, "feb30.py", NEVER_FIRES)),
        "dir": str(tmp_path),
        "one_task": str(REPO / "examples" / "pipelines" / "one_task.py"),
        "file": str(tmp_path / "a-file"),
    }
    (tmp_path / "a-file").write_text("")
    argv = [a.format(**names) for a in args]
    if case != "demo-home-is-a-file":
        argv += ["--home", str(tmp_path / "home")]
    res = CliRunner(env={k: v.format(**names) for k, v in env.items()}).invoke(cli, argv, catch_exceptions=False)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.output


def test_runs_list_statuses_are_the_run_states() -> None:
    """The states `runs list --status` accepts are exactly those a run (not a task) can be in."""
    from agent.cli import _RUN_STATES
    from agent.records import RunStatus

    assert set(_RUN_STATES) <= {s.value for s in RunStatus}
    assert not {"pending", "timed_out", "skipped", "upstream_failed"} & set(_RUN_STATES)


def test_trigger_wait_says_one_line_when_the_daemon_goes_away() -> None:
    """`pipewarden trigger --wait` whose daemon hangs up mid-wait prints one error line and exits 2."""
    import http.server
    import threading

    class HangsUp(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.dumps({"run_id": "r1"}).encode()
            self.send_response(201)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # the daemon stops while the run is polled: the connection closes unanswered
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), HangsUp)
    port = server.server_address[1]
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    try:
        result = CliRunner().invoke(cli, ["trigger", "p", "--url", f"http://127.0.0.1:{port}", "--wait"])
    finally:
        server.shutdown()
        serving.join(10)
        server.server_close()
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[0] == "r1"
    [line] = [x for x in result.output.splitlines()[1:] if x]
    assert line.startswith(f"error: no pipewarden daemon answers at http://127.0.0.1:{port}")


def test_trigger_reports_the_daemons_refusal_in_one_line() -> None:
    """A daemon answering 404 with an error body: the error is printed in one line, exit 2."""
    import http.server
    import threading

    class Refuses(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.dumps({"error": "there is no pipeline 'nope'"}).encode()
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Refuses)
    port = server.server_address[1]
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    try:
        result = CliRunner().invoke(cli, ["trigger", "nope", "--url", f"http://127.0.0.1:{port}"])
    finally:
        server.shutdown()
        serving.join(10)
        server.server_close()
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == f"error: the daemon at http://127.0.0.1:{port} answered 404: there is no pipeline 'nope'"
    )
