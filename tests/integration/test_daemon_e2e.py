"""`pipewarden daemon` as a real process: schedules, files, the API, signals, restarts, reloads, refusals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import PrometheusServer, free_port, wait_until

from agent.records import RunStatus
from agent.store import SQLiteRunStore

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

PIPES = textwrap.dedent("""
    import time
    from agent import Pipeline

    tick = Pipeline("tick")

    @tick.task
    def work() -> int:
        return 1

    files = Pipeline("files")

    @files.task
    def load(path: str) -> str:
        return path

    slow = Pipeline("slow", params={"seconds": 30.0})

    @slow.task
    def wait(seconds: float) -> None:
        time.sleep(seconds)

    @slow.task
    def after(wait: None) -> None:
        return None

    report = Pipeline("report")

    @report.task
    def build() -> int:
        print("built the report")
        return 2
""")


class DaemonProcess:
    """A `pipewarden daemon` subprocess on a free port."""

    def __init__(self, tmp_path: Path, config: str, env: dict[str, str] | None = None, port: int | None = None):
        self.tmp_path = tmp_path
        self.port = port or free_port()
        self.config = tmp_path / "pipewarden.yml"
        self.config.write_text(config.replace("PORT", str(self.port)))
        self.home = tmp_path / "home"
        self.log = tmp_path / "daemon.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
        self.env = {**base, "PYTHONPATH": str(ROOT), "OTEL_TRACES_EXPORTER": "none", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> DaemonProcess:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent", "daemon", "--config", str(self.config), "--home", str(self.home)],
                cwd=self.tmp_path,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait:
            wait_until(self._ready, timeout=30, what=f"the daemon at {self.url}")
        return self

    def _ready(self) -> bool | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the daemon exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=2) as resp:
                return True if resp.status == 200 else None
        except OSError:
            return None

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if path.startswith("/api/") else body.decode()

    def post(self, path: str, body: bytes | None = b"{}", token: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        request = urllib.request.Request(self.url + path, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def runs(self, pipeline: str) -> list[Any]:
        with SQLiteRunStore(self.home / "pipewarden.db") as store:
            return list(reversed(store.list_runs(pipeline=pipeline, limit=1000)))


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    (tmp_path / "pipes.py").write_text(PIPES)
    started: list[DaemonProcess] = []

    def make(config: str, **kw: Any) -> DaemonProcess:
        d = DaemonProcess(tmp_path, config, **kw)
        started.append(d)
        return d

    yield make
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)


BASIC = """
agent: {listen: "127.0.0.1:PORT", grace_period: 2s}
pipelines:
  - {target: "pipes.py:tick", schedule: every 1s}
  - target: pipes.py:files
    files: {directory: inbox, pattern: "*.csv", stable_seconds: 0.5}
  - {target: "pipes.py:slow", schedule: manual}
"""


def test_schedules_and_files_run_and_prometheus_scrapes_the_daemon(
    daemons: Callable[..., DaemonProcess], prometheus_server: Callable[..., PrometheusServer]
) -> None:
    """Interval runs happen each second, a dropped file runs once, runs list shows them, Prometheus scrapes it."""
    d = daemons(BASIC).start()
    (d.tmp_path / "inbox").mkdir(exist_ok=True)
    (d.tmp_path / "inbox" / "orders.csv").write_text("id\n1\n")
    wait_until(lambda: len(d.runs("files")) or None, timeout=20, what="the file's run")
    wait_until(lambda: len(d.runs("tick")) >= 3 or None, timeout=20, what="three interval runs")
    prometheus = prometheus_server([f"127.0.0.1:{d.port}"])
    wait_until(
        lambda: prometheus.query('pipewarden_pipeline_runs_total{pipeline="tick",status="success"} > 0') or None,
        timeout=30,
        what="Prometheus to scrape the daemon",
    )
    assert d.stop() == 0
    ticks = d.runs("tick")
    assert {r.trigger for r in ticks} == {"interval"} and all(r.status is RunStatus.SUCCESS for r in ticks)
    dates = [r.logical_date for r in ticks]
    assert len(dates) == len(set(dates))  # each tick ran once
    [file_run] = d.runs("files")
    assert file_run.params["path"].endswith("orders.csv") and file_run.status is RunStatus.SUCCESS
    listed = subprocess.run(
        [sys.executable, "-m", "agent", "runs", "list", "--home", str(d.home)],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "files" in listed.stdout and "interval" in listed.stdout


def test_the_api_refuses_writes_without_the_token(daemons: Callable[..., DaemonProcess]) -> None:
    """No token: 401 (counted); a wrong one: 401; the right one: 201 and a run; bad JSON 400; unknown pipeline 404."""
    d = daemons(BASIC, env={"PIPEWARDEN_API_TOKEN": "s3cret"}).start()
    assert d.post("/api/v1/pipelines/slow/runs")[0] == 401
    assert d.post("/api/v1/pipelines/slow/runs", token="wrong")[0] == 401
    code, answer = d.post("/api/v1/pipelines/slow/runs", b'{"params": {"seconds": 0}}', token="s3cret")
    assert code == 201
    wait_until(
        lambda: d.get(f"/api/v1/runs/{answer['run_id']}")["status"] == "success" or None,
        timeout=20,
        what="the triggered run",
    )
    code, answer = d.post("/api/v1/pipelines/slow/runs", b"{not json", token="s3cret")
    assert code == 400 and "not JSON" in answer["error"]
    code, answer = d.post("/api/v1/pipelines/nope/runs", token="s3cret")
    assert code == 404 and "no pipeline 'nope'" in answer["error"]
    code, answer = d.post("/api/v1/pipelines/slow/runs", b'{"params": {"secs": 1}}', token="s3cret")
    assert code == 422 and "no run parameter 'secs'" in answer["error"]
    metrics = d.get("/metrics")
    assert 'pipewarden_api_requests_total{code="401",route="/api/v1/pipelines/{name}/runs"} 2.0' in metrics
    run = d.get("/api/v1/runs?pipeline=slow")["runs"][0]
    assert run["trigger"] == "manual" and run["params"] == {"seconds": 0}
    assert d.stop() == 0


def test_writes_are_off_without_a_token_configured(daemons: Callable[..., DaemonProcess]) -> None:
    """With no token in the environment, a write is 403 and says how to turn writes on."""
    d = daemons(BASIC).start()
    code, answer = d.post("/api/v1/pipelines/slow/runs", token="anything")
    assert code == 403 and "set PIPEWARDEN_API_TOKEN" in answer["error"]
    assert d.stop() == 0


def _slow_running(daemons: Callable[..., DaemonProcess]) -> DaemonProcess:
    """A daemon (API token ``t``) whose ``slow`` pipeline, triggered through the API, is running."""
    d = daemons(BASIC, env={"PIPEWARDEN_API_TOKEN": "t"}).start()
    assert d.post("/api/v1/pipelines/slow/runs", token="t")[0] == 201
    wait_until(
        lambda: [r for r in d.runs("slow") if r.status is RunStatus.RUNNING] or None,
        timeout=20,
        what="the slow run to start",
    )
    return d


def test_sigterm_during_a_long_task_records_it_interrupted_and_exits_zero(
    daemons: Callable[..., DaemonProcess],
) -> None:
    """SIGTERM while a 30 s task runs: after the 2 s grace period it is recorded interrupted; the exit code is 0."""
    d = _slow_running(daemons)
    assert d.stop(timeout=25) == 0  # the task alone would take 30 s
    [run] = d.runs("slow")
    assert run.status is RunStatus.INTERRUPTED
    assert "did not finish within the 2s grace period" in d.log.read_text()


def test_sigkill_then_restart_interrupts_the_run_and_runs_no_tick_twice(
    daemons: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    """A killed daemon's run is found interrupted (and resumable) at restart; no interval tick ran twice."""
    d = _slow_running(daemons)
    wait_until(lambda: len(d.runs("tick")) >= 2 or None, timeout=20, what="interval runs")
    d.stop(signal.SIGKILL)
    d.start()
    [slow] = d.runs("slow")
    assert slow.status is RunStatus.INTERRUPTED
    code, _ = d.post(f"/api/v1/runs/{slow.run_id}/resume", token="t")
    assert code == 202
    wait_until(lambda: len(d.runs("tick")) >= 4 or None, timeout=20, what="interval runs after the restart")
    assert d.stop() == 0
    dates = [r.logical_date for r in d.runs("tick")]
    assert len(dates) == len(set(dates))


def test_a_bad_edit_keeps_the_running_configuration(daemons: Callable[..., DaemonProcess]) -> None:
    """An invalid edit is refused (metric 0, readyz says so) and the old schedules keep running; a fix is taken."""
    d = daemons(BASIC).start()
    good = d.config.read_text()
    d.config.write_text(good.replace("every 1s", "every now and then"))

    def refused() -> bool | None:
        return "pipewarden_config_last_reload_successful 0.0" in d.get("/metrics") or None

    wait_until(refused, timeout=20, what="the edit to be refused")
    before = len(d.runs("tick"))
    wait_until(lambda: len(d.runs("tick")) > before + 1 or None, timeout=20, what="the old schedule to keep running")
    assert "refused" in d.get("/readyz")
    d.config.write_text(good.replace("every 1s", "every 2s"))
    wait_until(
        lambda: "pipewarden_config_last_reload_successful 1.0" in d.get("/metrics") or None,
        timeout=20,
        what="the fixed file to be taken",
    )
    assert d.stop() == 0
    assert "configuration not reloaded" in d.log.read_text()


def test_a_taken_port_and_a_second_daemon_are_one_line_and_exit_2(daemons: Callable[..., DaemonProcess]) -> None:
    """A port in use, or a home that already has a daemon, stop the start with one clear line and exit 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = daemons(BASIC, port=taken.getsockname()[1]).start(wait=False)
        assert busy.proc is not None and busy.proc.wait(60) == 2
    assert "cannot be used" in busy.log.read_text() and "Traceback" not in busy.log.read_text()
    first = daemons(BASIC).start()
    second = DaemonProcess(first.tmp_path, BASIC)
    second.log = first.tmp_path / "second.log"
    second.start(wait=False)
    assert second.proc is not None and second.proc.wait(60) == 2
    assert "another pipewarden daemon" in second.log.read_text()
    assert first.stop() == 0


AFTER = """
agent: {listen: "127.0.0.1:PORT", grace_period: 2s}
pipelines:
  - {target: "pipes.py:tick", schedule: manual}
  - {target: "pipes.py:report", after: tick}
"""


def test_a_pipeline_after_another_runs_once_per_upstream_run_across_a_restart(
    daemons: Callable[..., DaemonProcess],
) -> None:
    """tick's success starts report once, linked in the API and `runs list`; a restart starts no second one;
    the API gives the task's logs with ?logs=1."""
    d = daemons(AFTER, env={"PIPEWARDEN_API_TOKEN": "t"}).start()
    code, answer = d.post("/api/v1/pipelines/tick/runs", token="t")
    assert code == 201
    upstream = answer["run_id"]
    wait_until(
        lambda: [r for r in d.runs("report") if r.status is RunStatus.SUCCESS] or None,
        timeout=20,
        what="report to run after tick",
    )
    [report] = d.get("/api/v1/runs?pipeline=report")["runs"]
    assert (report["trigger"], report["triggered_by"]) == ("after", upstream)
    [attempt] = d.get(f"/api/v1/runs/{report['run_id']}?logs=1")["attempts"]
    assert attempt["logs"] == "built the report\n"  # the task logs, read only when asked
    assert "logs" not in d.get(f"/api/v1/runs/{report['run_id']}")["attempts"][0]
    assert d.get("/api/v1/pipelines")["pipelines"][0]["schedule"] == "after tick"
    assert d.stop() == 0
    d.start()
    code, answer = d.post("/api/v1/pipelines/tick/runs", token="t")  # a second upstream run after the restart
    wait_until(lambda: len(d.runs("report")) == 2 or None, timeout=20, what="report after the second tick run")
    assert d.stop() == 0
    assert sorted(r.triggered_by for r in d.runs("report")) == sorted([upstream, answer["run_id"]])
    listed = subprocess.run(
        [sys.executable, "-m", "agent", "runs", "list", "--pipeline", "report", "--home", str(d.home)],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"after {upstream}" in listed.stdout
