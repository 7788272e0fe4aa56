"""Every panel query and variable of every dashboard returns data from a real Prometheus.

The scenario runs examples/pipelines/payments.py for real: successes, a blocking-check gate
failure, a retry and a recovery, a new version whose first run fails, a drift that fires, a
scheduler that comes back late. It runs twice, the way people deploy pipewarden:

- ``live``: one long-lived process (tests/dashboards/live_agent.py) serving ``/metrics``;
- ``push``: one ``python -m agent run`` process per run, pushing the run store's cumulative
  totals to a real Pushgateway (scraped with ``honor_labels``).

Each path has its own Prometheus (scraping every second), so each proves on its own that
the dashboards work with it. Both also scrape :func:`alert_activity`, which stands in for
the alert evaluator and the daemon until they are wired.

Variables are substituted as Grafana does (``dashboards.variables``): the dashboard's time
range is the scenario's, ``$__interval`` is the scrape interval (1s), ``$__rate_interval``
is ``max($__interval + scrape, 4 * scrape)`` = 4s, ``$__range`` the whole scenario; a
multi-value variable set to All is ``.*``. Range queries (time series) run through
``/api/v1/query_range`` with a 1s step, instant queries (stats, tables, bar gauges)
through ``/api/v1/query`` at the end of the range.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import servers
from servers import PrometheusServer, wait_until

from dashboards import DASHBOARD_FILES, PACKAGE_DIR
from dashboards.variables import builtin_intervals, interpolate, label_values_call, regex_value
from exporters.metrics import Metrics
from exporters.prometheus import MetricsEndpoint, serve_metrics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PIPELINE_FILE = ROOT / "examples" / "pipelines" / "payments.py"
LIVE_AGENT = Path(__file__).with_name("live_agent.py")
SCRAPE = 1.0
#: The runs of the push path, one process each: (parameters, run the changed copy of the file).
PUSH_RUNS: list[tuple[list[str], bool]] = [
    ([], False),
    (["rows=420"], False),
    (["null_share=0.5"], False),  # the not_null gate stops the run
    (["flaky=true"], False),  # a retry, then the recovery
    (["fail_load=true"], True),  # a new version whose first run fails: a failed change
    (["shift=40"], True),  # amounts drift (a warning); the second recovery
    (["rows=405"], True),
]
LIVE_RUNS = 7
#: What a specific selection of each variable is (the tests also run every query with All).
#: Two datasets: a multi-value selection, as Grafana writes it, `(extract|transform)`.
SELECTED = {"pipeline": ["payments"], "task": ["extract"], "dataset": ["extract", "transform"], "job": ["pipewarden"]}
#: Panels only a long-lived agent feeds: the scheduler and run-event listeners live in the daemon,
#: and a `pipewarden run` process neither schedules nor has listeners of its own that fail.
LIVE_ONLY = {("alerts.json", "Scheduled runs"), ("alerts.json", "Listener errors")}


# --- the dashboards' queries ------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    dashboard: str
    panel: str
    unit: str
    ref: str
    expr: str
    instant: bool

    @property
    def id(self) -> str:
        return f"{self.dashboard.removesuffix('.json')}:{self.panel}:{self.ref}"


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((PACKAGE_DIR / name).read_text(encoding="utf-8")))


def targets() -> list[Target]:
    out = []
    for name in DASHBOARD_FILES:
        for panel in load(name)["panels"]:
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
            for t in panel.get("targets", []):
                out.append(Target(name, panel["title"], unit, t["refId"], t["expr"], bool(t.get("instant"))))
    return out


def variables() -> list[tuple[str, str, str]]:
    """(dashboard, variable name, label_values query) of every query variable."""
    return [
        (name, v["name"], v["query"])
        for name in DASHBOARD_FILES
        for v in load(name)["templating"]["list"]
        if v["type"] == "query"
    ]


TARGETS = targets()
VARIABLES = variables()


# --- the scenario -------------------------------------------------------------------------------


@dataclass
class AlertActivity:
    """Catalogue metrics of the alert evaluator and the daemon, served on /metrics from this process."""

    metrics: Metrics
    endpoint: MetricsEndpoint

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.endpoint.port}"

    def happen(self) -> None:
        """An alert fires, is acknowledged and resolves; notifications go out; the daemon reloads and serves."""
        m = self.metrics
        labels = ("payments_failed", "critical", "payments")
        m["pipewarden_alerts_firing"].labels(*labels).set(1)
        for state in ("pending", "firing", "resolved", "firing"):
            m["pipewarden_alert_transitions_total"].labels(*labels, state).inc()
        m["pipewarden_alert_response_seconds"].labels(*labels).observe(95.0)
        m["pipewarden_incident_response_seconds"].labels(*labels).observe(40.0)
        m["pipewarden_notifications_total"].labels("alertmanager", "sent").inc(3)
        m["pipewarden_notifications_total"].labels("slack", "failed").inc()
        m["pipewarden_alert_actions_total"].labels("payments_failed", "resume", "started").inc()
        m["pipewarden_config_last_reload_successful"].set(1)
        m["pipewarden_config_last_reload_success_timestamp_seconds"].set(time.time())
        m["pipewarden_api_requests_total"].labels("/runs", "200").inc(5)
        m["pipewarden_scheduler_lateness_seconds"].observe(0.004)


@pytest.fixture(scope="module")
def alert_activity() -> Iterator[AlertActivity]:
    """Stands in for the alert evaluator and the daemon (config reloads, API, schedule lateness) until they
    are wired: their catalogue metrics, set here and served on /metrics. Replace with the real ones then."""
    metrics = Metrics(daemon=True)
    labels = ("payments_failed", "critical", "payments")
    # Series exist at zero before anything happens, so increase() over the range sees what does.
    for state in ("pending", "firing", "resolved"):
        metrics["pipewarden_alert_transitions_total"].labels(*labels, state)
    metrics["pipewarden_alerts_firing"].labels(*labels).set(0)
    metrics["pipewarden_alert_response_seconds"].labels(*labels)
    metrics["pipewarden_incident_response_seconds"].labels(*labels)
    for receiver, outcome in (("alertmanager", "sent"), ("slack", "failed")):
        metrics["pipewarden_notifications_total"].labels(receiver, outcome)
    metrics["pipewarden_alert_actions_total"].labels("payments_failed", "resume", "started")
    metrics["pipewarden_api_requests_total"].labels("/runs", "200")
    with serve_metrics(metrics, port=0) as endpoint:
        yield AlertActivity(metrics, endpoint)


@dataclass
class Scenario:
    prometheus: dict[str, PrometheusServer]
    start: float
    end: float = 0.0
    logs: dict[str, str] = field(default_factory=dict)


def scrape_config(job_targets: list[str], pushgateway: str | None) -> str:
    jobs: list[dict[str, Any]] = [{"job_name": "pipewarden", "static_configs": [{"targets": job_targets}]}]
    if pushgateway:
        jobs.append({"job_name": "pushgateway", "honor_labels": True, "static_configs": [{"targets": [pushgateway]}]})
    return json.dumps(
        {
            "global": {
                "scrape_interval": f"{SCRAPE:g}s",
                "scrape_timeout": f"{SCRAPE:g}s",
                "evaluation_interval": f"{SCRAPE:g}s",
            },
            "scrape_configs": jobs,
        }
    )


def start_prometheus(workdir: Path, job_targets: list[str], pushgateway: str | None = None) -> PrometheusServer:
    server = servers.start_prometheus(workdir, job_targets)
    server.config_path.write_text(scrape_config(job_targets, pushgateway))
    urllib.request.urlopen(urllib.request.Request(server.url + "/-/reload", method="POST"), timeout=10).close()
    return server


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update(
        PIPEWARDEN_HOME=str(home),
        OTEL_TRACES_EXPORTER="none",
        # A textfile directory that does not exist: every export fails, and is counted.
        PIPEWARDEN_TEXTFILE_DIR=str(home / "no-such-dir"),
        **extra,
    )
    return env


def push_runs(tmp: Path, gateway: str) -> list[int]:
    env = env_for(tmp / "push-home", PIPEWARDEN_PUSHGATEWAY_URL=gateway)
    changed = tmp / "changed" / PIPELINE_FILE.name  # the same pipeline, deployed again with an edit
    changed.parent.mkdir()
    changed.write_text(PIPELINE_FILE.read_text() + "# deployed again\n")
    codes = []
    for params, new_version in PUSH_RUNS:
        argv = [
            sys.executable,
            "-m",
            "agent",
            "run",
            str(changed if new_version else PIPELINE_FILE),
            "--no-progress",
            *(a for p in params for a in ("-p", p)),
        ]
        codes.append(subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=120).returncode)
    return codes


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, alert_activity: AlertActivity) -> Iterator[Scenario]:
    tmp = tmp_path_factory.mktemp("proof")
    gateway = servers.start_pushgateway(tmp / "pushgateway")
    live_port = servers.free_port()
    live: subprocess.Popen[str] | None = None
    started: list[PrometheusServer] = []
    try:
        started.append(start_prometheus(tmp / "prom-live", [f"127.0.0.1:{live_port}", alert_activity.address]))
        started.append(
            start_prometheus(tmp / "prom-push", [alert_activity.address], gateway.url.removeprefix("http://"))
        )
        proms = dict(zip(("live", "push"), started, strict=True))
        for prom in proms.values():  # the stand-in's zeros are scraped before anything happens
            wait_until(
                lambda p=prom: p.query(f'up{{instance="{alert_activity.address}"}} == 1') or None,
                what="the first scrape of the alert stand-in",
            )
        run = Scenario(proms, start=time.time() - 2 * SCRAPE)
        live = subprocess.Popen(
            [sys.executable, str(LIVE_AGENT), str(PIPELINE_FILE), "--pause", "1.5"],
            cwd=ROOT,
            env=env_for(tmp / "live-home", PIPEWARDEN_METRICS_PORT=str(live_port)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        codes = push_runs(tmp, gateway.url)
        alert_activity.happen()
        assert live.stdout is not None
        done = threading.Event()
        threading.Thread(target=lambda: (live.stdout.readline(), done.set()), daemon=True).start()
        assert done.wait(120), "the live agent did not finish its runs"
        assert codes == [0, 0, 1, 0, 1, 0, 0], codes
        for name, runs in (("live", LIVE_RUNS), ("push", len(PUSH_RUNS))):
            proms[name].wait_for_value('sum(pipewarden_pipeline_runs_total{pipeline="payments"})', runs)
        time.sleep(2 * SCRAPE)  # the last values seen by more than one scrape
        run.end = time.time()
        yield run
    finally:
        if live is not None:
            live.communicate(input="", timeout=30)
        for prom in started:
            prom.process.stop()
        gateway.process.stop()


# --- querying like Grafana --------------------------------------------------------------------------


def substitute(expr: str, run: Scenario, selected: bool) -> str:
    values = {name: regex_value(chosen if selected else None) for name, chosen in SELECTED.items()}
    return interpolate(expr, {**values, **builtin_intervals(run.start, run.end, step=SCRAPE, scrape_interval=SCRAPE)})


def query(prom: PrometheusServer, expr: str, run: Scenario, instant: bool) -> list[float]:
    """Every value the query returns over the dashboard's range (instant: at its end)."""
    if instant:
        params = {"query": expr, "time": f"{run.end:.3f}"}
        path = "/api/v1/query?"
    else:
        params = {"query": expr, "start": f"{run.start:.3f}", "end": f"{run.end:.3f}", "step": f"{SCRAPE:g}"}
        path = "/api/v1/query_range?"
    body = prom.process.get_json(path + urllib.parse.urlencode(params))
    assert body["status"] == "success", body
    result = body["data"]["result"]
    assert result, f"no series for {expr}"
    if instant:
        return [float(r["value"][1]) for r in result]
    return [float(v) for r in result for _, v in r["values"]]


def check_values(target: Target, values: list[float]) -> None:
    finite = [v for v in values if math.isfinite(v)]
    assert finite, f"{target.id}: only NaN or infinite values: {values[:10]}"
    if target.unit == "percentunit" and "CPU" not in target.panel:
        assert all(0 <= v <= 1 for v in finite), f"{target.id}: a ratio outside [0, 1]: {finite[:10]}"
    if target.unit in ("s", "bytes", "rowsps", "reqps"):
        assert all(v >= 0 for v in finite), f"{target.id}: a negative {target.unit}: {finite[:10]}"


CASES = [
    pytest.param(source, t, id=f"{source}-{t.id}")
    for t in TARGETS
    for source in ("live", "push")
    if not (source == "push" and (t.dashboard, t.panel) in LIVE_ONLY)
]


@pytest.mark.parametrize(("source", "target"), CASES)
def test_panel_query_returns_data_with_all_selected(scenario: Scenario, source: str, target: Target) -> None:
    """With every variable at All, the panel query returns series with finite, sensible values."""
    values = query(scenario.prometheus[source], substitute(target.expr, scenario, False), scenario, target.instant)
    check_values(target, values)


@pytest.mark.parametrize(("source", "target"), CASES)
def test_panel_query_returns_data_for_one_pipeline(scenario: Scenario, source: str, target: Target) -> None:
    """With one pipeline, task, dataset and job selected, the panel query still returns data (its label
    matchers name labels the series have)."""
    values = query(scenario.prometheus[source], substitute(target.expr, scenario, True), scenario, target.instant)
    check_values(target, values)


@pytest.mark.parametrize("source", ["live", "push"])
@pytest.mark.parametrize(("dashboard", "name", "expr"), VARIABLES, ids=[f"{d}:{n}" for d, n, _ in VARIABLES])
def test_variable_lists_the_scenarios_values(
    scenario: Scenario, source: str, dashboard: str, name: str, expr: str
) -> None:
    """A label_values() variable, asked as Grafana asks (/api/v1/label/<name>/values?match[]=...), lists the
    value the scenario produced."""
    selector, label = label_values_call(substitute(expr, scenario, False))
    params: list[tuple[str, str]] = [("start", f"{scenario.start:.3f}"), ("end", f"{scenario.end:.3f}")]
    if selector:
        params.append(("match[]", selector))
    body = scenario.prometheus[source].process.get_json(
        f"/api/v1/label/{label}/values?" + urllib.parse.urlencode(params)
    )
    assert body["status"] == "success"
    assert set(SELECTED[name]) <= set(body["data"]), body["data"]


def test_pictures_render_from_the_scenario(scenario: Scenario, tmp_path: Path) -> None:
    """The docs' pictures render from the scenario's query results (into PIPEWARDEN_DASHBOARD_PICTURES when set)."""
    from dashboards import pictures

    out = Path(os.environ.get("PIPEWARDEN_DASHBOARD_PICTURES") or tmp_path)
    written = pictures.render_all(
        scenario.prometheus["live"].url, scenario.start, scenario.end, out, scrape_interval=SCRAPE
    )
    assert [p.name for p in written] == [n.replace(".json", ".png") for n in DASHBOARD_FILES]
    assert all(p.stat().st_size > 10_000 for p in written)


def test_all_cases_are_collected() -> None:
    """Every target of every dashboard is tested through both paths, but the few only a daemon feeds."""
    assert len(TARGETS) >= 40
    assert len(CASES) == 2 * len(TARGETS) - sum(1 for t in TARGETS if (t.dashboard, t.panel) in LIVE_ONLY)
    assert {(t.dashboard, t.panel) for t in TARGETS} >= LIVE_ONLY
