"""``@monitor`` runs leave history: the run store records them, and ``pipewarden runs`` shows them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from agent.monitor import monitor
from agent.records import RunStatus
from agent.store import SQLiteRunStore
from agent.telemetry import Telemetry
from checks import unique
from exporters.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]


def test_monitored_runs_are_recorded_with_tasks_and_checks(store: SQLiteRunStore) -> None:
    """Each outermost call is a run (trigger monitor) with its nested calls as tasks and their check results."""
    tel = Telemetry(metrics=Metrics(), store=store)

    @monitor(checks=[unique("id")], telemetry=tel)
    def clean(df: pd.DataFrame) -> pd.DataFrame:
        return df

    @monitor(pipeline="cronjob", telemetry=tel)
    def job(ids: list[int]) -> int:
        return len(clean(pd.DataFrame({"id": ids})))

    assert job([1, 2, 3]) == 3
    job([1, 1])
    assert tel.flush(timeout=10)

    runs = store.list_runs(pipeline="cronjob")
    assert [(r.status, r.trigger) for r in runs] == [(RunStatus.SUCCESS, "monitor")] * 2
    newest = store.get_run(runs[0].run_id)
    assert newest is not None and newest.tasks == ("job", "clean")
    latest = newest.latest()
    assert latest["clean"].rows_in == 2 and latest["clean"].rows_out == 2
    [check] = latest["clean"].checks
    assert (check.check, str(check.status), check.observed) == ("unique(id)", "fail", 1.0)
    assert newest.duration is not None and newest.duration >= 0


def test_a_failed_call_is_a_failed_run_with_its_error(store: SQLiteRunStore) -> None:
    """An exception escaping the outermost call records the run failed, with the error."""
    tel = Telemetry(metrics=Metrics(), store=store)

    @monitor(pipeline="cronjob", telemetry=tel)
    def job() -> None:
        raise ValueError("source is down")

    with pytest.raises(ValueError):
        job()
    tel.flush(timeout=10)
    [rec] = store.list_runs(pipeline="cronjob")
    assert rec.status is RunStatus.FAILED and rec.error == "ValueError: source is down"
    full = store.get_run(rec.run_id)
    assert full is not None and full.latest()["job"].error == "ValueError: source is down"


SCRIPT = textwrap.dedent("""
    import sys, time
    import pandas as pd
    from agent import monitor
    from checks import unique

    @monitor(pipeline="cronjob", checks=[unique("id")])
    def job(ids):
        if sys.argv[1] == "sleep":
            print("started", flush=True)
            time.sleep(60)
        return pd.DataFrame({"id": ids})

    job([1, 2, 2])
""")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
    return {**env, "PIPEWARDEN_HOME": str(home), "PYTHONPATH": str(REPO)}


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        env=_env(home),
        cwd=home.parent,
        timeout=60,
    )


def test_runs_list_and_show_a_monitored_script(tmp_path: Path) -> None:
    """A script's @monitor run appears in `pipewarden runs list`, and `runs show` lists its check results."""
    script = tmp_path / "cronjob.py"
    script.write_text(SCRIPT)
    home = tmp_path / ".pw"
    done = subprocess.run(
        [sys.executable, str(script), "quick"], env=_env(home), cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    listed = _cli(home, "runs", "list")
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if "cronjob" in line]
    run_id, pipeline, status, trigger = row.split()[:4]
    assert (pipeline, status, trigger) == ("cronjob", "success", "monitor")
    shown = _cli(home, "runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert "job: unique(id)[id] fail observed=1" in shown.stdout


def test_a_killed_monitored_run_is_found_interrupted(tmp_path: Path) -> None:
    """SIGKILL during a monitored call leaves a run that the next look at the store marks interrupted."""
    script = tmp_path / "cronjob.py"
    script.write_text(SCRIPT)
    home = tmp_path / ".pw"
    proc = subprocess.Popen(
        [sys.executable, str(script), "sleep"], env=_env(home), cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"

        def recorded() -> Any:
            with SQLiteRunStore(home / "pipewarden.db") as store:
                return store.list_runs(pipeline="cronjob") or None

        from servers import wait_until

        [running] = wait_until(recorded, timeout=20, what="the run to be recorded")
        assert running.status is RunStatus.RUNNING
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    listed = _cli(home, "runs", "list")
    assert "interrupted" in listed.stdout.split("\n")[1], listed.stdout
