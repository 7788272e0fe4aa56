"""Every KPI query of the README returns the right number, through all three outputs.

Cron-style processes of a monitored script (7 runs, 2 raising, a duplicate-id check failure,
a failed-then-fixed version) and of an orchestrated pipeline (5 runs, 2 stopped by a
blocking check) run against one home. Prometheus scrapes a real Pushgateway (``honor_labels``)
or a long-lived process's ``/metrics``; the node_exporter textfile is parsed.

Each pipeline runs once before the measured window (as in production, Prometheus has seen
the pipeline before); every query's range is then set to exactly the window between two
scrapes, and evaluated at the second, so ``increase()`` has nothing to extrapolate and each
KPI has one exact expected value, worked out below from the scenario and the end times the
run store recorded.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import PrometheusServer, PushgatewayServer, free_port, wait_until

from agent.records import RunRecord, RunStatus
from agent.store import SQLiteRunStore

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CRONJOB = Path(__file__).with_name("kpi_cronjob.py")
PIPELINE_FILE = Path(__file__).with_name("kpi_pipeline.py")

#: The measured window: 7 cron runs (2 raise, 1 has duplicate ids) and 5 orchestrated runs (2 gated).
CRON_RUNS = ["v1:ok", "v1:fail", "v1:dups", "v2:fail", "v2:ok", "v3:ok", "v3:ok"]
GATED_RUNS = ["ok", "dups", "ok", "dups", "ok"]


def readme_kpis() -> dict[str, str]:
    """The README's KPI table: name -> PromQL."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("<!-- kpi-table") :]
    rows = re.findall(r"^\| ([^|`]+?) \| `(.+)` \|$", table, re.MULTILINE)
    return {name.strip(): query.replace("\\|", "|") for name, query in rows}


def in_window(query: str, ms: int) -> str:
    return re.sub(r"\[\d+[smhdw]\]", f"[{ms}ms]", query)


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
    env.update(PYTHONPATH=str(ROOT), PIPEWARDEN_HOME=str(home), OTEL_TRACES_EXPORTER="none", **extra)
    return env


def cron(env: dict[str, str], *specs: str) -> None:
    done = subprocess.run(
        [sys.executable, str(CRONJOB), *specs], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def gated(env: dict[str, str], mode: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent", "run", str(PIPELINE_FILE), "-p", f"dups={mode == 'dups'}", "--no-progress"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == (1 if mode == "dups" else 0), done.stdout + done.stderr


# --- what each KPI must be ------------------------------------------------------------------------

Key = tuple[str, ...]


def expected(runs: dict[str, list[RunRecord]], t1: float, window: float) -> dict[str, dict[Key, float]]:
    """Each KPI's exact value per series, from the scenario and the window's runs as the store recorded them."""
    cron_runs, gated_runs = runs["cronjob"], runs["gated"]

    def recovery(recs: list[RunRecord], pairs: list[tuple[int, int]]) -> float:
        return sum(recs[ok].ended_at - recs[bad].ended_at for bad, ok in pairs) / len(pairs)  # type: ignore[operator]

    def last_success(recs: list[RunRecord]) -> float:
        return max(r.ended_at for r in recs if r.status is RunStatus.SUCCESS)  # type: ignore[type-var]

    rows = 3  # every frame in the scenario has three rows
    return {
        # rates over the attempts that ran: the two loads skipped behind the gate are neither
        "task success rate": {
            ("cronjob", "job"): 5 / 7,
            ("cronjob", "clean"): 1.0,
            ("gated", "extract"): 1.0,
            ("gated", "transform"): 3 / 5,
            ("gated", "load"): 1.0,
        },
        "task error rate": {
            ("cronjob", "job"): 2 / 7,
            ("cronjob", "clean"): 0.0,
            ("gated", "extract"): 0.0,
            ("gated", "transform"): 2 / 5,
            ("gated", "load"): 0.0,
        },
        "pipeline success rate": {("cronjob",): 5 / 7, ("gated",): 3 / 5},
        "retries": {
            k: 0.0
            for k in (
                ("cronjob", "job"),
                ("cronjob", "clean"),
                ("gated", "extract"),
                ("gated", "transform"),
                ("gated", "load"),
            )
        },
        "throughput (rows/s)": {
            ("cronjob", "job"): 5 * rows / window,
            ("cronjob", "clean"): 7 * rows / window,
            ("gated", "extract"): 5 * rows / window,
            ("gated", "transform"): 5 * rows / window,
            ("gated", "load"): 0.0,
        },
        "last success age": {("cronjob",): t1 - last_success(cron_runs), ("gated",): t1 - last_success(gated_runs)},
        # runs 2 and 4 of each scenario failed; runs 3 and 5 recovered
        "mean time to recovery": {
            ("cronjob",): recovery(cron_runs, [(1, 2), (3, 4)]),
            ("gated",): recovery(gated_runs, [(1, 2), (3, 4)]),
        },
        # cronjob: v2 (failed) and v3 (succeeded) are the window's changes; gated: no change (0/0)
        "change failure rate": {("cronjob",): 0.5, ("gated",): math.nan},
        "check failures": {("cronjob", "clean", "duplication"): 1.0, ("gated", "transform", "duplication"): 2.0},
    }


#: The labels each KPI's result is keyed by, in order.
KEYS = {
    "task success rate": ("pipeline", "task"),
    "task error rate": ("pipeline", "task"),
    "pipeline success rate": ("pipeline",),
    "retries": ("pipeline", "task"),
    "throughput (rows/s)": ("pipeline", "task"),
    "last success age": ("pipeline",),
    "mean time to recovery": ("pipeline",),
    "change failure rate": ("pipeline",),
    "check failures": ("pipeline", "dataset", "kind"),
}


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def check_prometheus(prometheus: PrometheusServer, runs: dict[str, list[RunRecord]], t0: float, t1: float) -> None:
    window_ms = round((t1 - t0) * 1000)
    want = expected(runs, t1, window_ms / 1000)
    kpis = readme_kpis()
    assert set(KEYS) | {"task latency p95", "CPU (cores)", "peak memory", "uptime"} == set(kpis)
    for name, query in kpis.items():
        result = prometheus.query(in_window(query, window_ms), at=t1)
        got = {
            tuple(r["metric"].get(k, "") for k in KEYS.get(name, ("pipeline", "task"))): float(r["value"][1])
            for r in result
            if r["metric"].get("pipeline") in ("cronjob", "gated")
        }
        if name in want:
            assert set(got) == set(want[name]), (name, got)
            wrong = {k: (v, want[name][k]) for k, v in got.items() if not same(v, want[name][k])}
            assert not wrong, f"{name}: got, expected: {wrong}"
        elif name == "uptime":  # the share of scrapes that saw the pipeline up: depends on when they fell
            assert set(got) == {("cronjob", ""), ("gated", "")} and all(0 <= v <= 1 for v in got.values()), got
        else:  # latency, CPU and memory vary from run to run: present for every task, and plausible
            assert len(got) == 5 and all(v >= 0 and not math.isnan(v) for v in got.values()), (name, got)
            if name == "peak memory":
                assert all(v > 10 * 2**20 for v in got.values()), got  # a Python process with pandas


def history(home: Path, since: float) -> dict[str, list[RunRecord]]:
    with SQLiteRunStore(home / "pipewarden.db") as store:
        return {p: [r for r in store.pipeline_history(p) if (r.ended_at or 0) > since] for p in ("cronjob", "gated")}


def last_scrape(prometheus: PrometheusServer, selector: str, value: float) -> float:
    """Wait until ``selector`` reads ``value``, then return the time of that sample (a scrape time)."""
    prometheus.wait_for_value(selector, value, timeout=30)
    [sample] = prometheus.query(f"timestamp({selector})")
    return float(sample["value"][1])


def test_readme_kpis_through_the_pushgateway_and_the_textfile(
    tmp_path: Path, pushgateway_server: PushgatewayServer, prometheus_server: Callable[..., PrometheusServer]
) -> None:
    """Cron processes pushing their totals give the exact KPIs in Prometheus, and in the parsed textfile."""
    home, textfiles = tmp_path / "home", tmp_path / "textfile"
    textfiles.mkdir()
    env = env_for(home, PIPEWARDEN_PUSHGATEWAY_URL=pushgateway_server.url, PIPEWARDEN_TEXTFILE_DIR=str(textfiles))
    prometheus = prometheus_server([pushgateway_server.url.split("//")[1]], honor_labels=True)

    cron(env, "v1:ok")  # the pipelines ran before: Prometheus has seen them
    gated(env, "ok")
    last_scrape(prometheus, 'pipewarden_pipeline_runs_total{pipeline="cronjob",status="success"}', 1)
    t0 = last_scrape(prometheus, 'pipewarden_pipeline_runs_total{pipeline="gated",status="success"}', 1)
    before = {p: parse_textfile(textfiles / f"pipewarden_{p}.prom") for p in ("cronjob", "gated")}
    since = max(r.ended_at or 0 for rs in history(home, 0).values() for r in rs)

    for spec in CRON_RUNS:
        cron(env, spec)
    for mode in GATED_RUNS:
        gated(env, mode)
    last_scrape(prometheus, 'pipewarden_pipeline_runs_total{pipeline="cronjob",status="success"}', 6)
    t1 = last_scrape(prometheus, 'pipewarden_pipeline_runs_total{pipeline="gated",status="success"}', 4)

    runs = history(home, since)
    assert [len(runs["cronjob"]), len(runs["gated"])] == [7, 5]
    check_prometheus(prometheus, runs, t0, t1)

    after = {p: parse_textfile(textfiles / f"pipewarden_{p}.prom") for p in ("cronjob", "gated")}
    check_textfile(before, after, runs)


def test_readme_kpis_through_a_long_lived_processs_metrics(
    tmp_path: Path, prometheus_server: Callable[..., PrometheusServer]
) -> None:
    """The same runs in one process that serves /metrics give the same exact KPIs."""
    home, port = tmp_path / "home", free_port()
    env = env_for(home, PIPEWARDEN_METRICS_PORT=str(port))
    proc = subprocess.Popen(
        [sys.executable, str(CRONJOB), "--serve", "v1:ok"],
        env=env,
        cwd=ROOT,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def send(line: str) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "done"

    try:
        assert proc.stdout.readline().strip() == "done"
        send(f"{PIPELINE_FILE}=ok")
        prometheus = prometheus_server([f"127.0.0.1:{port}"])
        last_scrape(prometheus, 'pipewarden_pipeline_runs_total{pipeline="cronjob",status="success"}', 1)
        t0 = last_scrape(prometheus, 'pipewarden_pipeline_runs_total{pipeline="gated",status="success"}', 1)
        since = max(r.ended_at or 0 for rs in history(home, 0).values() for r in rs)
        send(" ".join(CRON_RUNS))
        send(" ".join(f"{PIPELINE_FILE}={mode}" for mode in GATED_RUNS))
        last_scrape(prometheus, 'pipewarden_pipeline_runs_total{pipeline="cronjob",status="success"}', 6)
        t1 = last_scrape(prometheus, 'pipewarden_pipeline_runs_total{pipeline="gated",status="success"}', 4)
        wait_until(lambda: history(home, since)["cronjob"][6:] or None, what="the cron runs in the store")
        check_prometheus(prometheus, history(home, since), t0, t1)
    finally:
        proc.stdin.close()
        proc.wait(60)


# --- the textfile, parsed ---------------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_textfile(path: Path) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for f in text_string_to_metric_families(path.read_text())
        for s in f.samples
    }


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """The increase of every series of ``name`` matching ``labels`` (summed)."""

    def total(samples: Samples) -> float:
        return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)

    return total(after) - total(before)


def check_textfile(before: dict[str, Samples], after: dict[str, Samples], runs: dict[str, list[RunRecord]]) -> None:
    """The README's counter KPIs, computed from two parsed textfiles, have the same exact values."""
    want = expected(runs, 0.0, 1.0)
    for (pipeline, task), rate in want["task success rate"].items():
        b, a = before[pipeline], after[pipeline]
        runs_of = delta(b, a, "pipewarden_task_duration_seconds_count", task=task)
        assert delta(b, a, "pipewarden_task_runs_total", task=task, status="success") / runs_of == pytest.approx(rate)
    for (pipeline,), rate in want["pipeline success rate"].items():
        b, a = before[pipeline], after[pipeline]
        verdicts = sum(
            delta(b, a, "pipewarden_pipeline_runs_total", status=s) for s in ("success", "failed", "interrupted")
        )
        assert delta(b, a, "pipewarden_pipeline_runs_total", status="success") / verdicts == pytest.approx(rate)
    for (pipeline,), mttr in want["mean time to recovery"].items():
        b, a = before[pipeline], after[pipeline]
        assert (
            delta(b, a, "pipewarden_pipeline_recovery_seconds_sum")
            / delta(b, a, "pipewarden_pipeline_recovery_seconds_count")
        ) == pytest.approx(mttr)
    b, a = before["cronjob"], after["cronjob"]
    assert (
        delta(b, a, "pipewarden_pipeline_failed_changes_total") / delta(b, a, "pipewarden_pipeline_changes_total")
        == want["change failure rate"][("cronjob",)]
    )
    for (pipeline, dataset, kind), n in want["check failures"].items():
        assert (
            delta(
                before[pipeline],
                after[pipeline],
                "pipewarden_check_results_total",
                dataset=dataset,
                kind=kind,
                status="fail",
            )
            == n
        )
    for (pipeline, task), rows in want["throughput (rows/s)"].items():  # window 1 s: rows per window
        assert delta(before[pipeline], after[pipeline], "pipewarden_task_rows_out_total", task=task) == rows
