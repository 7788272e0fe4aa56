"""Every panel query and variable of every dashboard returns data from a real Prometheus.

The scenario runs examples/pipelines/payments.py for real: successes, a blocking-check gate
failure, a retry and a recovery, a new version whose first run fails, a drift that fires, a
scheduler that comes back late. It runs twice, the way people deploy pipewarden:

- ``live``: one long-lived process (tests/dashboards/live_agent.py) serving ``/metrics``;
- ``push``: one ``python -m agent run`` process per run, pushing the run store's cumulative
  totals to a real Pushgateway (scraped with ``honor_labels``).

Each path has its own Prometheus (scraping every second), so each proves on its own that
the dashboards work with it. Both also scrape a real ``python -m agent daemon`` (see
:func:`daemon_activity`): payments fails in it and recovers twice, then fails for good; the
default alert rules and one that resumes the failed load fire, resolve and notify a receiver
that answers and one nobody listens to; each incident is acknowledged through the API; the
configuration is edited, once badly; a pipeline runs every second. Of the daemon's metrics
Prometheus keeps what only a daemon exports (``DAEMON_KEEPS``): the panels its pipelines'
runs would also feed are each path's own.

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
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import servers
from prometheus_client.parser import text_string_to_metric_families
from servers import PrometheusServer, RecordingReceiver, wait_until

from dashboards import DASHBOARD_FILES, PACKAGE_DIR
from dashboards.variables import builtin_intervals, interpolate, label_values_call, regex_value
from exporters.alert_metrics import ALERT_METRICS
from exporters.catalogue import CATALOGUE
from exporters.metrics import DAEMON_FAMILIES

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
#: Panels only the live path's agent feeds: a `pipewarden run` process neither schedules nor has listeners
#: of its own that fail (and Prometheus drops the daemon's scheduler counts: see DAEMON_KEEPS).
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


# --- the daemon: alert evaluator, configuration reloads, API, schedule lateness ----------------------------

TOKEN = "proof-token"
#: How many times payments fails in the daemon, is acknowledged and recovers, before it fails for good.
INCIDENTS = 2
TICK_PIPELINE = """\
from agent import Pipeline

tick = Pipeline("tick")


@tick.task
def work() -> int:
    return 1
"""
#: What Prometheus keeps of the daemon's /metrics: what only a daemon exports (alerts, configuration reloads, API
#: requests, schedule lateness) and its start time. Its pipelines' run metrics are dropped at the scrape, so every
#: panel that runs feed is proven by each path's own agents.
DAEMON_KEEPS = frozenset({*ALERT_METRICS, *DAEMON_FAMILIES, "pipewarden_agent_start_time_seconds"})
DAEMON_DROPS = "|".join(sorted(m.base_name for m in CATALOGUE if m.name not in DAEMON_KEEPS))


def daemon_config(port: int, ops: str, pager: str) -> str:
    """pipewarden.yml: payments on demand, a pipeline every second, the default rules and one that resumes payments'
    failed load, a receiver that answers and one nobody listens to."""
    return textwrap.dedent(f"""\
        agent:
          listen: 127.0.0.1:{port}
          grace_period: 2s
        pipelines:
          - target: {PIPELINE_FILE}
            schedule: manual
          - target: tick.py:tick
            schedule: every 1s
        alerts:
          rules:
            - name: PaymentsLoadFailed
              condition: {{kind: task_failed, pipelines: [payments], tasks: [load]}}
              for: 1s
              severity: critical
              actions: [{{kind: resume, max: {INCIDENTS}, per: 1h}}]
          receivers:
            - {{name: ops, kind: webhook, url: "{ops}"}}
            - {{name: pager, kind: webhook, url: "{pager}", retries: 1, backoff: 50ms, timeout: 1s}}
        """)


class AlertingDaemon:
    """`python -m agent daemon` on a free port with its own home, its API, and the receivers its alerts go to."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True)
        self.port = servers.free_port()
        self.ops = RecordingReceiver()
        self.nobody = socket.socket()  # bound, never listening: connections are refused and no one takes the port
        self.nobody.bind(("127.0.0.1", 0))
        pager = f"http://127.0.0.1:{self.nobody.getsockname()[1]}/hook"
        (workdir / "tick.py").write_text(TICK_PIPELINE)
        self.config = workdir / "pipewarden.yml"
        self.config.write_text(daemon_config(self.port, self.ops.url(), pager))
        self.home = workdir / "home"
        self.log = workdir / "daemon.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
        self.env.update(PYTHONPATH=str(ROOT), OTEL_TRACES_EXPORTER="none", PIPEWARDEN_API_TOKEN=TOKEN)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [sys.executable, "-m", "agent", "daemon", "--config", str(self.config), "--home", str(self.home)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._ready, timeout=60, what=f"the daemon at {self.address}")

    def _ready(self) -> bool | None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the daemon exited {self.process.returncode}: {self.log_tail()}")
        return self.call("GET", "/readyz")[0] == 200 or None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.ops.close()
        self.nobody.close()

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None) -> Any:
        """(HTTP code, the answer: JSON from the API, text otherwise)."""
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://{self.address}{path}", data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                code, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            code, raw = exc.code, exc.read()
        return code, json.loads(raw) if path.startswith("/api/") else raw.decode()

    def sample(self, name: str, **labels: str) -> float | None:
        """One sample of the daemon's /metrics (None when it has none)."""
        for family in text_string_to_metric_families(self.call("GET", "/metrics")[1]):
            for s in family.samples:
                if s.name == name and labels.items() <= s.labels.items():
                    return float(s.value)
        return None

    def trigger(self, **params: Any) -> str:
        """Run payments now through the API; its run id."""
        code, answer = self.call("POST", "/api/v1/pipelines/payments/runs", {"params": params}, token=TOKEN)
        assert code == 201, answer
        return str(answer["run_id"])

    def firing(self, alert: str | None = None) -> list[dict[str, Any]] | None:
        """The firing alerts about payments (of rule ``alert``), or None."""
        alerts = self.call("GET", "/api/v1/alerts?state=firing")[1]["alerts"]
        return [a for a in alerts if a["labels"].get("pipeline") == "payments" and alert in (None, a["alert"])] or None

    def resumed(self, run_id: str) -> bool | None:
        """Whether the run's load ran again (resumed) and failed again."""
        run = self.call("GET", f"/api/v1/runs/{run_id}")[1]
        loads = [a for a in run["attempts"] if a["task"] == "load"]
        return (run["status"] == "failed" and len(loads) >= 2) or None


def daemon_activity(daemon: AlertingDaemon, proms: list[PrometheusServer]) -> None:
    """Payments fails and recovers INCIDENTS times in the daemon (a rule resumes the failed load; each alert is
    acknowledged through the API before it resolves), then fails for good; its configuration is edited, once badly."""

    def seen(expr: str) -> None:
        # Scraped before the next step, so the panels show each step rather than only their sum.
        for prom in proms:
            wait_until(lambda prom=prom: prom.query(expr) or None, what=f"{expr} in Prometheus")

    assert daemon.call("GET", "/api/v1/runs")[0] == 200
    assert daemon.call("GET", "/")[0] == 200
    loaded_at = daemon.sample("pipewarden_config_last_reload_success_timestamp_seconds") or 0.0
    good = daemon.config.read_text().replace("grace_period: 2s", "grace_period: 5s")
    daemon.config.write_text(good)
    wait_until(
        lambda: (daemon.sample("pipewarden_config_last_reload_success_timestamp_seconds") or 0.0) > loaded_at or None,
        what="the edited configuration to be loaded",
    )
    for incident in range(1, INCIDENTS + 1):
        failed = daemon.trigger(fail_load=True)
        [alert] = wait_until(lambda: daemon.firing("PipelineRunFailed"), what="PipelineRunFailed to fire")
        wait_until(lambda run=failed: daemon.resumed(run), what="PaymentsLoadFailed to fire and resume the failed load")
        seen(f'pipewarden_alert_actions_total{{outcome="started"}} == {incident}')
        seen('pipewarden_alerts_firing{alert="PipelineRunFailed"} == 1')
        ack = f"/api/v1/alerts/{alert['id']}/ack"
        assert daemon.call("POST", ack, {"by": "proof"})[0] == 401
        assert daemon.call("POST", ack, {"by": "proof"}, token=TOKEN)[0] == 200
        daemon.trigger()
        wait_until(lambda: daemon.firing() is None or None, what="payments' alerts to resolve")
        seen(f'pipewarden_alert_response_seconds_count{{alert="PipelineRunFailed"}} == {incident}')
    daemon.config.write_text(good.replace("every 1s", "every now and then"))
    wait_until(lambda: daemon.sample("pipewarden_config_last_reload_successful") == 0 or None, what="a refusal")
    seen("pipewarden_config_last_reload_successful == 0")
    daemon.config.write_text(good)
    wait_until(lambda: daemon.sample("pipewarden_config_last_reload_successful") == 1 or None, what="the fix")
    daemon.trigger(fail_load=True)  # the rule's resumes are used up: it fires, and stays firing
    wait_until(lambda: daemon.sample("pipewarden_alert_actions_total", outcome="limited"), what="a limited resume")
    seen('sum(pipewarden_alerts_firing{pipeline="payments"}) == 2')
    seen('pipewarden_alert_actions_total{outcome="limited"} == 1')
    seen("pipewarden_config_last_reload_successful == 1")


# --- the scenario -------------------------------------------------------------------------------


@dataclass
class Scenario:
    prometheus: dict[str, PrometheusServer]
    daemon: AlertingDaemon
    start: float
    end: float = 0.0
    logs: dict[str, str] = field(default_factory=dict)


def scrape_config(job_targets: list[str], daemon: str, pushgateway: str | None) -> str:
    daemon_runs_dropped = {
        "source_labels": ["instance", "__name__"],
        "regex": f"{re.escape(daemon)};({DAEMON_DROPS})(_.*)?",
        "action": "drop",
    }
    jobs: list[dict[str, Any]] = [
        {
            "job_name": "pipewarden",
            "static_configs": [{"targets": job_targets}],
            "metric_relabel_configs": [daemon_runs_dropped],
        }
    ]
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


def start_prometheus(
    workdir: Path, job_targets: list[str], daemon: str, pushgateway: str | None = None
) -> PrometheusServer:
    server = servers.start_prometheus(workdir, job_targets)
    server.config_path.write_text(scrape_config(job_targets, daemon, pushgateway))
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
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    tmp = tmp_path_factory.mktemp("proof")
    gateway = servers.start_pushgateway(tmp / "pushgateway")
    live_port = servers.free_port()
    live: subprocess.Popen[str] | None = None
    daemon = AlertingDaemon(tmp / "daemon")
    started: list[PrometheusServer] = []
    try:
        daemon.start()
        started.append(start_prometheus(tmp / "prom-live", [f"127.0.0.1:{live_port}", daemon.address], daemon.address))
        started.append(
            start_prometheus(tmp / "prom-push", [daemon.address], daemon.address, gateway.url.removeprefix("http://"))
        )
        proms = dict(zip(("live", "push"), started, strict=True))
        for prom in proms.values():  # the daemon is scraped before anything happens
            wait_until(
                lambda p=prom: p.query(f'up{{instance="{daemon.address}"}} == 1') or None,
                what="the first scrape of the daemon",
            )
        run = Scenario(proms, daemon, start=time.time() - 2 * SCRAPE)
        live = subprocess.Popen(
            [sys.executable, str(LIVE_AGENT), str(PIPELINE_FILE), "--pause", "1.5"],
            cwd=ROOT,
            env=env_for(tmp / "live-home", PIPEWARDEN_METRICS_PORT=str(live_port)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with ThreadPoolExecutor(1) as pool:  # the daemon's activity happens while the pipelines run
            activity = pool.submit(daemon_activity, daemon, started)
            codes = push_runs(tmp, gateway.url)
            try:
                activity.result(timeout=180)
            except Exception as exc:
                raise AssertionError(f"{exc}\n--- the daemon's log ---\n{daemon.log_tail()}") from exc
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
        daemon.stop()
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


@pytest.mark.parametrize("source", ["live", "push"])
def test_prometheus_holds_what_the_daemon_did(scenario: Scenario, source: str) -> None:
    """Prometheus holds the daemon's activity as it happened: incidents fired, acknowledged and resolved, resumes
    started then limited, notifications sent and failed, a refused configuration then a good one, a 401."""
    prom = scenario.prometheus[source]

    def value(expr: str) -> float:
        [result] = prom.query(expr, at=scenario.end)
        return float(result["value"][1])

    run_failed = 'alert="PipelineRunFailed",pipeline="payments"'
    assert value(f'pipewarden_alert_transitions_total{{{run_failed},state="firing"}}') == INCIDENTS + 1
    assert value(f'pipewarden_alert_transitions_total{{{run_failed},state="resolved"}}') == INCIDENTS
    assert value(f"pipewarden_alert_response_seconds_count{{{run_failed}}}") == INCIDENTS
    assert value(f"pipewarden_incident_response_seconds_count{{{run_failed}}}") == INCIDENTS
    assert value('pipewarden_alert_transitions_total{alert="PaymentsLoadFailed",state="pending"}') == INCIDENTS + 1
    assert value('pipewarden_alert_actions_total{alert="PaymentsLoadFailed",outcome="started"}') == INCIDENTS
    assert value('pipewarden_alert_actions_total{alert="PaymentsLoadFailed",outcome="limited"}') == 1
    assert value('sum by (alert) (pipewarden_alerts_firing{alert="PaymentsLoadFailed"})') == 1
    assert value('pipewarden_notifications_total{receiver="ops",outcome="sent"}') > 0
    assert value('pipewarden_notifications_total{receiver="pager",outcome="retried"}') > 0
    assert value('pipewarden_notifications_total{receiver="pager",outcome="failed"}') > 0
    assert not prom.query('pipewarden_notifications_total{receiver="ops",outcome!="sent"} > 0', at=scenario.end)
    window = f"[{scenario.end - scenario.start:.0f}s]"
    assert value(f"min_over_time(pipewarden_config_last_reload_successful{window})") == 0
    assert value("pipewarden_config_last_reload_successful") == 1
    assert value('sum(pipewarden_api_requests_total{code="401"})') == INCIDENTS
    statuses = {
        (a["labels"]["alertname"], a["status"]) for r in scenario.daemon.ops.received() for a in r.json()["alerts"]
    }
    assert statuses >= {
        (alert, status) for alert in ("PipelineRunFailed", "PaymentsLoadFailed") for status in ("firing", "resolved")
    }


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
