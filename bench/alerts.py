"""From the end of a failing run to the alert in a real Alertmanager: the agent's path beside Prometheus's.

Prints, for the agent's evaluator in its default configuration (default rules, the SQLite run
store, an Alertmanager receiver, a webhook receiver), fed through the run-event bus as a
queued listener, for each of --runs failing runs (a new pipeline each time):
  accepted     from handing RunEnded to the bus to Alertmanager answering 200 to the POST
  listed       from the same moment to GET /api/v2/alerts listing the alert (polled)
  webhook      from the same moment to a local webhook server receiving the notification
and the medians (budget: accepted under 1 s). Then the usual Prometheus path for the same
fault with the shipped rule file (alerts/pipewarden.rules.yml: PipelineRunFailed is
``pipewarden_pipeline_up == 0``): computed from its ``for`` and typical scrape interval (15 s or
60 s), evaluation interval (60 s) and Alertmanager group_wait (30 s); and measured with a real
Prometheus scraping every --scrape seconds and evaluating as often, from the gauge flipping to
0 to Alertmanager listing the alert.

Needs prometheus-alertmanager (and prometheus for the measured Prometheus path) on PATH.

Usage: python bench/alerts.py [--runs 10] [--prom-runs 5] [--scrape 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUDGET_S = 1.0
RULE_FILE = ROOT / "alerts" / "pipewarden.rules.yml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary(*names: str) -> str:
    for name in names:
        if path := shutil.which(name):
            return path
    sys.exit(f"{' or '.join(names)} is not on PATH; install the Debian package (see .ci/run)")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def wait(probe: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.001) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (got := probe()) is not None:
                return got
        except OSError:
            pass
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


class Server:
    """A program on a loopback port, stopped at exit."""

    def __init__(self, argv: list[str], ready: str, log: Path) -> None:
        self.log = log.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait(lambda: urllib.request.urlopen(ready, timeout=1).close() or True, f"{argv[0]} to be ready", interval=0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def start_alertmanager(work: Path, webhook_url: str) -> tuple[Server, str]:
    port = free_port()
    config = work / "alertmanager.yml"
    config.write_text(
        json.dumps(
            {
                "route": {
                    "receiver": "hook",
                    "group_by": ["alertname"],
                    "group_wait": "30s",
                    "group_interval": "5m",
                    "repeat_interval": "4h",
                },
                "receivers": [{"name": "hook", "webhook_configs": [{"url": webhook_url}]}],
            }
        )
    )
    url = f"http://127.0.0.1:{port}"
    server = Server(
        [
            binary("prometheus-alertmanager", "alertmanager"),
            f"--config.file={config}",
            f"--storage.path={work / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        url + "/-/ready",
        work / "alertmanager.log",
    )
    return server, url


def listed(am: str, pipeline: str) -> bool:
    query = urllib.parse.urlencode({"filter": ['alertname="PipelineRunFailed"', f'pipeline="{pipeline}"']}, doseq=True)
    return bool(get_json(f"{am}/api/v2/alerts?{query}"))


class Arrivals:
    """A webhook server noting when each pipeline's notification arrived (perf_counter)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.cv = threading.Condition()
        arrivals = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                doc = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                now = time.perf_counter()
                with arrivals.cv:
                    for alert in doc.get("alerts", []):
                        arrivals.at.setdefault(alert.get("labels", {}).get("pipeline", ""), now)
                    arrivals.cv.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, pipeline: str, timeout: float = 30.0) -> float:
        with self.cv:
            if not self.cv.wait_for(lambda: pipeline in self.at, timeout):
                raise SystemExit(f"the webhook never heard of {pipeline}")
            return self.at[pipeline]


def agent_path(runs: int, work: Path) -> list[tuple[float, float, float]]:
    """(accepted, listed, webhook) seconds for each failing run, through the bus and the default evaluator."""
    from agent.events import EventBus, RunEnded
    from agent.records import RunStatus
    from agent.store import SQLiteRunStore
    from alerts.config import evaluator_from_config
    from alerts.metrics import NullAlertMetrics

    hook = Arrivals()
    am_server, am = start_alertmanager(work, hook.url)  # Alertmanager's own webhook goes there too (after group_wait)

    class Accepted(NullAlertMetrics):
        """Notes when the Alertmanager receiver's POST was answered 200."""

        def __init__(self) -> None:
            self.at: list[float] = []
            self.cv = threading.Condition()

        def notification(self, receiver: str, outcome: str) -> None:
            if receiver == "am" and outcome == "sent":
                with self.cv:
                    self.at.append(time.perf_counter())
                    self.cv.notify_all()

    accepted = Accepted()
    store = SQLiteRunStore(work / "pipewarden.db")
    evaluator = evaluator_from_config(
        {
            "receivers": [
                {"name": "am", "kind": "alertmanager", "url": am},
                {"name": "hook", "kind": "webhook", "url": hook.url},
            ]
        },
        store=store,
        metrics=accepted,
    )
    bus = EventBus()
    bus.add(evaluator)
    evaluator.start()
    out = []
    try:
        for i in range(runs):
            pipeline = f"orders-{i + 1}"
            now = time.time()
            event = RunEnded(f"r{i}", pipeline, RunStatus.FAILED, now - 1.0, now, 1.0)
            t0 = time.perf_counter()
            bus.emit(event)
            wait(lambda p=pipeline: True if listed(am, p) else None, f"{pipeline} in Alertmanager")
            t_listed = time.perf_counter()
            with accepted.cv:
                accepted.cv.wait_for(lambda i=i: len(accepted.at) > i, 30)
                t_accepted = accepted.at[i]
            t_hook = hook.wait(pipeline)
            out.append((t_accepted - t0, t_listed - t0, t_hook - t0))
    finally:
        bus.close(5)
        evaluator.stop(5)
        store.close()
        am_server.stop()
        hook.server.shutdown()
    return out


class Gauges:
    """Serves pipewarden_pipeline_up for some pipelines, as /metrics."""

    def __init__(self, pipelines: list[str]) -> None:
        self.values = dict.fromkeys(pipelines, 1)
        gauges = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                lines = ["# TYPE pipewarden_pipeline_up gauge"]
                lines += [f'pipewarden_pipeline_up{{pipeline="{p}"}} {v}' for p, v in gauges.values.items()]
                body = ("\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.target = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def prometheus_path(runs: int, scrape: float, work: Path) -> list[float]:
    """Seconds from pipewarden_pipeline_up flipping to 0 to Alertmanager listing PipelineRunFailed."""
    hook = Arrivals()
    (work / "prom-am").mkdir()
    am_server, am = start_alertmanager(work / "prom-am", hook.url)
    pipelines = [f"prom-{i + 1}" for i in range(runs)]
    gauges = Gauges(pipelines)
    port = free_port()
    interval = f"{scrape:g}s"
    config = work / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
                "rule_files": [str(RULE_FILE)],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am.removeprefix("http://")]}]}]},
                "scrape_configs": [{"job_name": "pipewarden", "static_configs": [{"targets": [gauges.target]}]}],
            }
        )
    )
    prom_url = f"http://127.0.0.1:{port}"
    prom = Server(
        [
            binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        prom_url + "/-/ready",
        work / "prometheus.log",
    )
    out = []
    try:
        query = urllib.parse.urlencode({"query": "count(pipewarden_pipeline_up == 1)"})
        wait(
            lambda: True if get_json(f"{prom_url}/api/v1/query?{query}")["data"]["result"] else None,
            "Prometheus to scrape the gauges",
            interval=0.1,
        )
        for pipeline in pipelines:
            t0 = time.perf_counter()
            gauges.values[pipeline] = 0
            wait(lambda p=pipeline: True if listed(am, p) else None, f"{pipeline} in Alertmanager", interval=0.005)
            out.append(time.perf_counter() - t0)
    finally:
        prom.stop()
        am_server.stop()
        gauges.server.shutdown()
        hook.server.shutdown()
    return out


def rule_for(name: str) -> float:
    import yaml

    from alerts.durations import parse_duration

    doc = yaml.safe_load(RULE_FILE.read_text())
    rule = next(r for g in doc["groups"] for r in g["rules"] if r.get("alert") == name)
    return parse_duration(rule.get("for", "0s"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--prom-runs", type=int, default=5, help="0 to skip the measured Prometheus path")
    parser.add_argument("--scrape", type=float, default=1.0, help="scrape and evaluation interval of the measured run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pipewarden-bench-alerts-") as tmp:
        work = Path(tmp)
        rows = agent_path(args.runs, work)
        print("agent: failing RunEnded handed to the bus -> Alertmanager (default evaluator, SQLite store)")
        print(f"{'run':>4} {'accepted (200)':>15} {'listed (API)':>13} {'webhook':>9}")
        for i, (acc, lst, hook) in enumerate(rows, 1):
            print(f"{i:>4} {acc * 1000:>12.1f} ms {lst * 1000:>10.1f} ms {hook * 1000:>6.1f} ms")
        med_acc = statistics.median(r[0] for r in rows)
        med_lst = statistics.median(r[1] for r in rows)
        med_hook = statistics.median(r[2] for r in rows)
        verdict = "within" if med_acc < BUDGET_S else "OVER"
        print(
            f"{'med':>4} {med_acc * 1000:>12.1f} ms {med_lst * 1000:>10.1f} ms {med_hook * 1000:>6.1f} ms   "
            f"({verdict} the {BUDGET_S:g} s budget for accepted)"
        )

        fire_for = rule_for("PipelineRunFailed")
        group_wait = 30.0
        print()
        print(f"Prometheus path, shipped rule PipelineRunFailed (for: {fire_for:g}s), computed:")
        head = f"{'to Alertmanager: mean / worst':>31} {'to a notification (+group_wait 30s)':>37}"
        print(f"{'scrape':>8} {'eval':>6} {head}")
        for scrape in (15.0, 60.0):
            evaluation = 60.0
            mean = scrape / 2 + evaluation / 2 + fire_for
            worst = scrape + evaluation + fire_for
            print(
                f"{scrape:>7g}s {evaluation:>5g}s {mean:>18.1f} s / {worst:>5.1f} s "
                f"{mean + group_wait:>22.1f} s / {worst + group_wait:>5.1f} s"
                f"   (x{mean / med_lst:,.0f} the agent's median)"
            )
        print(
            f"agent, same fault: {med_lst:.3f} s to Alertmanager; to a notification {med_hook:.3f} s direct "
            f"(webhook, Slack), or + Alertmanager's group_wait when it routes the alert onward"
        )

        if args.prom_runs:
            measured = prometheus_path(args.prom_runs, args.scrape, work)
            print()
            print(
                f"Prometheus path measured (scrape_interval={args.scrape:g}s, evaluation_interval={args.scrape:g}s, "
                "real Prometheus and Alertmanager): gauge flips to 0 -> Alertmanager lists the alert"
            )
            for i, s in enumerate(measured, 1):
                print(f"{i:>4} {s:>8.3f} s")
            med = statistics.median(measured)
            print(
                f"{'med':>4} {med:>8.3f} s   (x{med / med_lst:,.0f} the agent's median, even at {args.scrape:g} s "
                "intervals)"
            )


if __name__ == "__main__":
    main()
