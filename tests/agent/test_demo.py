"""`pipewarden demo`, the README's first command, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]


def _demo(home: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PIPEWARDEN_", "OTEL_"))}
    return subprocess.run(
        [sys.executable, "-m", "agent", "demo", "--home", str(home), "--rows", "5000", *extra],
        cwd=ROOT,
        env={**clean, "COLUMNS": "120", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_runs_the_example_and_says_where_telemetry_went(tmp_path: Path) -> None:
    """The demo exits 0, prints tasks and checks, and leaves spans and a textfile that parse."""
    proc = _demo(tmp_path)
    assert proc.returncode == 0, proc.stderr
    for task in ("extract", "transform", "load"):
        assert task in proc.stdout
    assert "not_null(amount)" in proc.stdout and "warn" in proc.stdout
    assert str(tmp_path / "traces.jsonl") in proc.stdout

    spans = [json.loads(line) for line in (tmp_path / "traces.jsonl").read_text().splitlines()]
    names = {s["name"] for s in spans}
    assert {"RUN orders_demo", "RUN extract", "RUN transform", "RUN load"} <= names
    assert len({s["context"]["trace_id"] for s in spans}) == 1  # one pipeline run, one trace

    text = (tmp_path / "metrics" / "pipewarden_orders_demo.prom").read_text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("pipewarden_pipeline_runs_total", (("pipeline", "orders_demo"), ("status", "success")))] == 1
    rows_out = samples[("pipewarden_task_rows_out_total", (("pipeline", "orders_demo"), ("task", "extract")))]
    assert rows_out > 5000  # the example source re-sends some rows


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PIPEWARDEN_METRICS_PORT": "abc"}, "PIPEWARDEN_METRICS_PORT"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
    ],
)
def test_demo_with_bad_configuration_exits_2_naming_the_variable(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    """A bad environment variable is a one-line configuration error (exit 2) that names it, not a traceback."""
    proc = _demo(tmp_path, env=env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and named in proc.stderr
    assert "Traceback" not in proc.stderr
