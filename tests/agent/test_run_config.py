"""pipewarden.yml outside the daemon: `pipewarden run NAME --config` and scripts with $PIPEWARDEN_CONFIG."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from servers import RecordingReceiver

REPO = Path(__file__).resolve().parents[2]

PIPES = textwrap.dedent("""
    import pandas as pd
    from agent import Pipeline

    orders = Pipeline("orders")

    @orders.task
    def extract() -> pd.DataFrame:
        return pd.DataFrame({"id": [1, 2, 2]})

    @orders.task
    def load(extract: pd.DataFrame) -> None:
        return None
""")

SCRIPT = textwrap.dedent("""
    from agent import monitor

    @monitor(pipeline="cronjob")
    def job():
        raise RuntimeError("source is down")

    job()
""")


def config(tmp_path: Path, hook: str) -> Path:
    path = tmp_path / "pipewarden.yml"
    path.write_text(
        textwrap.dedent(f"""
        pipelines:
          - target: pipes.py:orders
            checks:
              extract:
                - unique: {{key: id}}
        alerts:
          receivers:
            - {{name: hook, kind: webhook, url: "{hook}"}}
    """)
    )
    (tmp_path / "pipes.py").write_text(PIPES)
    return path


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
    return {
        **base,
        "PYTHONPATH": str(REPO),
        "PIPEWARDEN_HOME": str(tmp_path / "home"),
        "OTEL_TRACES_EXPORTER": "none",
        **extra,
    }


def test_run_takes_a_configured_pipeline_with_its_checks_and_alert_rules(
    tmp_path: Path, recording_receiver: RecordingReceiver
) -> None:
    """`pipewarden run orders --config`: the file's check stops the run (exit 1) and its receiver hears of it."""
    cfg = config(tmp_path, recording_receiver.url())
    done = subprocess.run(
        [sys.executable, "-m", "agent", "run", "orders", "--config", str(cfg), "--no-progress"],
        env=env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "blocking check failed: unique(id)" in done.stdout
    posts = recording_receiver.wait_for(2)  # grouped by alert name: the failed check, then the failed run
    alerts = {(a["labels"]["alertname"], a["labels"]["pipeline"]) for p in posts for a in p.json()["alerts"]}
    assert alerts == {("DataCheckFailed", "orders"), ("PipelineRunFailed", "orders")}


def test_a_script_with_pipewarden_config_evaluates_the_alert_rules(
    tmp_path: Path, recording_receiver: RecordingReceiver
) -> None:
    """A monitored script run with $PIPEWARDEN_CONFIG notifies the configured receiver of its failed run."""
    cfg = config(tmp_path, recording_receiver.url())
    (tmp_path / "cronjob.py").write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(tmp_path / "cronjob.py")],
        env=env(tmp_path, PIPEWARDEN_CONFIG=str(cfg)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "source is down" in done.stderr
    [sent] = recording_receiver.wait_for(1)
    [alert] = sent.json()["alerts"]
    assert (alert["labels"]["alertname"], alert["labels"]["pipeline"]) == ("PipelineRunFailed", "cronjob")
