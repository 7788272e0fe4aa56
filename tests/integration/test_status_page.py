"""The daemon's status page, rendered by a real headless Chromium against a real ``pipewarden daemon`` process.

The daemon runs four pipelines (one that succeeds every second, one whose blocking
check fails, one whose task raises, one on a nightly cron that never comes due)
with the default alert rules and the log receiver. Each test loads one page with
``chromium --headless --dump-dom`` and reads the DOM Chromium built, so what is
asserted is what a browser shows, not the bytes the server sent.

``PIPEWARDEN_SCREENSHOTS=docs/img python3 -m pytest tests/integration/test_status_page.py``
also copies the screenshots into ``docs/img`` (the pictures in docs/daemon.md).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import urllib.parse
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from servers import http_get, require_binary, wait_until

REPO = Path(__file__).resolve().parents[2]

PIPELINES = """
import pandas as pd

from agent.pipeline import Pipeline
from checks import not_null, row_count, unique

orders = Pipeline("orders")


@orders.task
def extract() -> pd.DataFrame:
    return pd.DataFrame({"order_id": range(1200), "amount": [10.0, 20.0, 30.0, 5.0] * 300})


@orders.task(checks=[unique("order_id"), not_null("amount"), row_count(min=1)])
def transform(extract: pd.DataFrame) -> pd.DataFrame:
    return extract[extract.amount > 6]


@orders.task
def load(transform: pd.DataFrame) -> int:
    return len(transform)


billing = Pipeline("billing")


@billing.task
def invoices() -> pd.DataFrame:
    return pd.DataFrame({"invoice_id": [1, 1, 2], "total": [1.0, 2.0, None]})


@billing.task(checks=[unique("invoice_id"), not_null("total", max_fraction=0.5)])
def dedupe(invoices: pd.DataFrame) -> pd.DataFrame:
    return invoices


@billing.task
def publish(dedupe: pd.DataFrame) -> int:
    return len(dedupe)


exports = Pipeline("exports")


@exports.task
def fetch() -> pd.DataFrame:
    return pd.DataFrame({"x": [1, 2]})


@exports.task
def upload(fetch: pd.DataFrame) -> None:
    raise ConnectionError("sftp.example: connection refused")


nightly = Pipeline("nightly")


@nightly.task
def compact() -> None:
    pass
"""

CONFIG = """
agent:
  listen: 127.0.0.1:0
  grace_period: 5s
pipelines:
  - target: pipes.py:orders
    schedule: every 1s
  - target: pipes.py:billing
    schedule: every 2s
  - target: pipes.py:exports
    schedule: every 2s
  - target: pipes.py:nightly
    schedule: "0 2 * * *"
    timezone: Europe/Paris
alerts:
  receivers:
    - {name: log, kind: log}
"""

WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
DURATION = r"\d+\.\d+ (ms|s)"


# --- reading what Chromium rendered --------------------------------------------------------------


@dataclass
class Page:
    """A rendered page: its heading, the line under it, and each table (by the heading above it) as rows of cells."""

    h1: str = ""
    meta: str = ""
    tables: dict[str, list[list[str]]] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)

    def rows(self, heading: str) -> list[dict[str, str]]:
        """The rows of the table under ``heading`` as {column header: cell text}."""
        head, *body = self.tables[heading]
        return [dict(zip(head, row, strict=True)) for row in body]


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = Page()
        self.heading = ""
        self.stack: list[str] = []
        self.text: list[str] | None = None
        self.table: list[list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "a" and attributes.get("href"):
            self.page.links.append(str(attributes["href"]))
        if tag in ("h1", "h2", "td", "th") or (tag == "p" and "meta" in (attributes.get("class") or "")):
            self.stack.append(tag)
            self.text = []
        elif tag == "table":
            self.table = []
        elif tag == "tr" and self.table is not None:
            self.table.append([])

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.table is not None:
            self.page.tables[self.heading] = self.table
            self.table = None
            return
        if not self.stack or self.stack[-1] != tag or self.text is None:
            return
        self.stack.pop()
        text = " ".join("".join(self.text).split())
        self.text = None
        if tag == "h1":
            self.page.h1 = text
        elif tag == "h2":
            self.heading = text
        elif tag == "p" and not self.page.meta:
            self.page.meta = text
        elif tag in ("td", "th") and self.table:
            self.table[-1].append(text)

    def handle_data(self, data: str) -> None:
        if self.text is not None:
            self.text.append(data)


def parse(dom: str) -> Page:
    reader = _Reader()
    reader.feed(dom)
    return reader.page


# --- driving Chromium ---------------------------------------------------------------------------

# The flags these machines need: no sandbox as root, no GPU, and no background traffic to Google's
# hosts (the network is closed; without these Chromium retries them at every start).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--window-size=1200,900",
)


@dataclass
class Browser:
    path: str
    workdir: Path
    calls: int = 0

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.calls += 1
        profile = self.workdir / f"profile-{self.calls}"  # a fresh profile each time: nothing carried over
        res = subprocess.run(
            [self.path, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=90,
            stdin=subprocess.DEVNULL,
        )
        assert res.returncode == 0, f"chromium {' '.join(args)} exited {res.returncode}:\n{res.stderr[-3000:]}"
        return res

    def load(self, url: str) -> Page:
        """The page as Chromium parsed it (``--dump-dom``)."""
        res = self.run("--dump-dom", url)
        assert "</html>" in res.stdout, f"chromium printed no DOM for {url}:\n{res.stderr[-3000:]}"
        return parse(res.stdout)

    def screenshot(self, url: str, path: Path) -> Path:
        self.run(f"--screenshot={path}", url)
        return path


# --- the daemon ------------------------------------------------------------------------------------


@dataclass
class RunningDaemon:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def api(self, path: str) -> Any:
        return json.loads(http_get(self.url + path))


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Browser:
    """Headless Chromium (the Debian package); skips locally, fails under CI when it is missing."""
    return Browser(require_binary("chromium"), tmp_path_factory.mktemp("chromium"))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[RunningDaemon]:
    """``pipewarden daemon`` as a subprocess, after some runs of every timed pipeline and a firing alert."""
    workdir = tmp_path_factory.mktemp("daemon")
    (workdir / "pipes.py").write_text(PIPELINES.lstrip())
    (workdir / "pipewarden.yml").write_text(CONFIG.lstrip())
    log = workdir / "daemon.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PIPEWARDEN_HOME", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent",
                "daemon",
                "--config",
                str(workdir / "pipewarden.yml"),
                "--home",
                str(workdir / "home"),
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def served() -> str | None:
        assert proc.poll() is None, f"the daemon exited with {proc.returncode}:\n{log.read_text()}"
        m = re.search(r"serving (http://127\.0\.0\.1:\d+)", log.read_text())
        return m.group(1) if m else None

    try:
        running = RunningDaemon(proc, wait_until(served, timeout=60, what="the daemon's URL in its log"), log)

        def enough() -> bool | None:
            done = {
                p: {r["status"] for r in running.api(f"/api/v1/runs?pipeline={p}")["runs"]}
                for p in ("orders", "billing", "exports")
            }
            successes = running.api("/api/v1/runs?pipeline=orders&status=success")["runs"]
            firing = {
                (a["alert"], a["labels"].get("pipeline")) for a in running.api("/api/v1/alerts?state=firing")["alerts"]
            }
            return (
                len(successes) >= 2
                and "failed" in done["billing"]
                and "failed" in done["exports"]
                and ("PipelineRunFailed", "exports") in firing
            ) or None

        wait_until(enough, timeout=60, what="runs of every timed pipeline and a firing alert")
        yield running
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def finished_run(daemon: RunningDaemon, pipeline: str, status: str) -> dict[str, Any]:
    """The newest run of ``pipeline`` that ended with ``status``, as the JSON API gives it."""
    runs = daemon.api(f"/api/v1/runs?pipeline={pipeline}&status={status}&limit=1")["runs"]
    assert runs, f"no {status} run of {pipeline}"
    return dict(daemon.api(f"/api/v1/runs/{runs[0]['run_id']}"))


def next_nightly(at: float) -> str:
    """When ``0 2 * * *`` in Europe/Paris next comes after ``at``, as the page writes times."""
    local = dt.datetime.fromtimestamp(at, ZoneInfo("Europe/Paris"))
    tick = local.replace(hour=2, minute=0, second=0, microsecond=0)
    if tick <= local:
        tick = (local + dt.timedelta(days=1)).replace(hour=2, minute=0, second=0, microsecond=0)
    return tick.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- the pages -----------------------------------------------------------------------------------


def test_overview_shows_pipelines_schedules_next_runs_alerts_and_recent_runs(
    browser: Browser, daemon: RunningDaemon
) -> None:
    """The overview lists every pipeline with its schedule, next run and last run, the firing alerts, recent runs."""
    before = dt.datetime.now(dt.UTC).timestamp()
    page = browser.load(daemon.url + "/")
    after = dt.datetime.now(dt.UTC).timestamp()

    assert page.h1 == "Status"
    assert re.search(r"configuration loaded · 4 pipeline\(s\)", page.meta), page.meta
    pipelines = {row["pipeline"]: row for row in page.rows("Pipelines")}
    assert {name: row["schedule"] for name, row in pipelines.items()} == {
        "billing": "every 2s",
        "exports": "every 2s",
        "nightly": "cron 0 2 * * * (Europe/Paris)",
        "orders": "every 1s",
    }
    for row in pipelines.values():
        assert re.fullmatch(rf"{WHEN} in \S+", row["next run"]), row
    assert pipelines["nightly"]["next run"].split(" in ")[0] in {next_nightly(before), next_nightly(after)}
    assert pipelines["nightly"]["last run"] == "never"
    assert pipelines["orders"]["last run"].startswith(("success", "running")), pipelines["orders"]
    assert pipelines["billing"]["last run"].startswith(("failed", "running")), pipelines["billing"]
    assert pipelines["exports"]["last run"].startswith(("failed", "running")), pipelines["exports"]

    firing = page.rows("Firing alerts")
    assert {
        "alert": "PipelineRunFailed",
        "severity": "warning",
        "pipeline": "exports",
        "summary": "Pipeline exports failed",
    }.items() <= next(a for a in firing if a["alert"] == "PipelineRunFailed" and a["pipeline"] == "exports").items()
    assert any(a["alert"] == "DataCheckFailed" and a["pipeline"] == "billing" for a in firing), firing

    runs = page.rows("Recent runs")
    assert 1 <= len(runs) <= 20
    by_pipeline: dict[str, set[str]] = {}
    for run in runs:
        by_pipeline.setdefault(run["pipeline"], set()).add(run["status"])
        assert run["status"] in ("success", "failed", "running", "queued"), run
        if run["status"] in ("success", "failed"):
            assert re.fullmatch(WHEN, run["started"]) and re.fullmatch(DURATION, run["duration"]), run
    assert by_pipeline["orders"] <= {"success", "running", "queued"} and "success" in by_pipeline["orders"]
    assert "nightly" not in by_pipeline
    failed = [r for r in runs if r["pipeline"] == "exports" and r["status"] == "failed"]
    assert failed and all("ConnectionError: sftp.example: connection refused" in r["error"] for r in failed)
    assert all(f"/runs/{r['run']}" in page.links for r in runs)


def test_runs_page_lists_only_that_pipelines_runs_with_their_statuses(browser: Browser, daemon: RunningDaemon) -> None:
    """/runs?pipeline=billing shows billing's schedule and tasks and only billing's runs, failed by its check."""
    page = browser.load(daemon.url + "/runs?pipeline=" + urllib.parse.quote("billing"))

    assert page.h1 == "Runs of billing"
    assert "schedule every 2s" in page.meta and "tasks invoices → dedupe → publish" in page.meta, page.meta
    runs = page.rows("")
    assert runs and {r["pipeline"] for r in runs} == {"billing"}
    assert {r["status"] for r in runs} <= {"failed", "running", "queued"}
    failed = [r for r in runs if r["status"] == "failed"]
    assert failed and all(
        r["error"].startswith("dedupe failed: blocking check failed: unique(invoice_id)") for r in failed
    )
    api = {r["run_id"]: r["status"] for r in daemon.api("/api/v1/runs?pipeline=billing&limit=100")["runs"]}
    assert all(api[r["run"]] == r["status"] for r in failed)


def test_run_page_shows_tasks_with_durations_rows_and_check_results(browser: Browser, daemon: RunningDaemon) -> None:
    """A run of orders shows each task's status, duration and rows, and every check result of transform."""
    run = finished_run(daemon, "orders", "success")
    page = browser.load(f"{daemon.url}/runs/{run['run_id']}")

    assert page.h1 == f"Run {run['run_id']}"
    assert page.meta.startswith("pipeline orders · success · trigger interval"), page.meta
    tasks = {t["task"]: t for t in page.rows("Tasks")}
    assert list(tasks) == ["extract", "transform", "load"]
    assert [(t["status"], t["attempt"]) for t in tasks.values()] == [("success", "1")] * 3
    assert all(re.fullmatch(DURATION, t["duration"]) for t in tasks.values()), tasks
    assert (
        tasks["extract"]["rows out"],
        tasks["transform"]["rows in"],
        tasks["transform"]["rows out"],
        tasks["load"]["rows in"],
    ) == ("1,200", "1,200", "900", "900")
    checks = {(c["task"], c["check"]): c for c in page.rows("Checks")}
    assert {k: (c["column"], c["status"], c["observed"]) for k, c in checks.items()} == {
        ("transform", "unique(order_id)"): ("order_id", "pass", "0"),
        ("transform", "not_null(amount)"): ("amount", "pass", "0"),
        ("transform", "row_count"): ("", "pass", "900"),
    }


def test_run_page_shows_the_blocking_check_that_failed_and_what_it_stopped(
    browser: Browser, daemon: RunningDaemon
) -> None:
    """A failed run of billing shows its error, the failing check with its observed value, and the skipped task."""
    run = finished_run(daemon, "billing", "failed")
    page = browser.load(f"{daemon.url}/runs/{run['run_id']}")

    assert page.meta.startswith("pipeline billing · failed · trigger interval"), page.meta
    tasks = {t["task"]: t for t in page.rows("Tasks")}
    assert {name: t["status"] for name, t in tasks.items()} == {
        "invoices": "success",
        "dedupe": "failed",
        "publish": "skipped",
    }
    assert (tasks["invoices"]["rows out"], tasks["dedupe"]["rows in"]) == ("3", "3")
    assert tasks["dedupe"]["detail"].startswith("blocking check failed: unique(invoice_id)")
    assert tasks["publish"]["duration"] == "" and tasks["publish"]["attempt"] == ""
    checks = {c["check"]: c for c in page.rows("Checks")}
    assert (checks["unique(invoice_id)"]["status"], checks["unique(invoice_id)"]["observed"]) == ("fail", "1")
    assert (checks["not_null(total)"]["status"], checks["not_null(total)"]["threshold"]) == ("pass", "0.5")
    assert "1 duplicate occurrence(s)" in checks["unique(invoice_id)"]["detail"]


def test_alert_page_shows_a_firing_alert_with_its_labels_and_run(browser: Browser, daemon: RunningDaemon) -> None:
    """/alerts/ID shows the firing PipelineRunFailed of exports, its labels, summary and a failed run of exports."""
    alert = next(
        a
        for a in daemon.api("/api/v1/alerts?state=firing")["alerts"]
        if a["alert"] == "PipelineRunFailed" and a["labels"].get("pipeline") == "exports"
    )
    page = browser.load(f"{daemon.url}/alerts/{alert['id']}")

    assert page.h1 == "Alert PipelineRunFailed"
    assert page.meta.startswith("firing · warning"), page.meta
    assert {r["label"]: r["value"] for r in page.rows("Labels")} == {
        "alertname": "PipelineRunFailed",
        "pipeline": "exports",
        "severity": "warning",
    }
    assert {r["annotation"]: r["value"] for r in page.rows("Annotations")}["summary"] == "Pipeline exports failed"
    [run_link] = [link for link in page.links if link.startswith("/runs/")]
    run = daemon.api("/api/v1" + run_link)
    assert (run["pipeline"], run["status"]) == ("exports", "failed")


def test_unknown_run_and_alert_pages_say_so(browser: Browser, daemon: RunningDaemon) -> None:
    """A run or alert id that does not exist renders a page naming it, not a server error."""
    assert browser.load(f"{daemon.url}/runs/20000101T000000-000000").h1 == "No such run"
    assert browser.load(f"{daemon.url}/alerts/ffffffffffffffff").h1 == "No such alert"


# --- screenshots ---------------------------------------------------------------------------------


def png_size_and_colours(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the decoded scanlines) of an 8-bit PNG: a blank page has few."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, size = 8, b"", (0, 0)
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            size = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    return size[0], size[1], len(set(zlib.decompress(idat)))


def test_screenshots_of_the_overview_and_a_run_are_full_pages(
    browser: Browser, daemon: RunningDaemon, tmp_path: Path
) -> None:
    """Chromium's screenshots of the overview and of a failed run are 1200x900 PNGs with something drawn on them."""
    run = finished_run(daemon, "billing", "failed")
    shots = {
        "status-overview.png": browser.screenshot(daemon.url + "/", tmp_path / "status-overview.png"),
        "status-run.png": browser.screenshot(f"{daemon.url}/runs/{run['run_id']}", tmp_path / "status-run.png"),
    }
    for path in shots.values():
        width, height, colours = png_size_and_colours(path)
        assert (width, height) == (1200, 900)
        assert colours > 64, f"{path} looks blank ({colours} distinct values)"
    target = os.environ.get("PIPEWARDEN_SCREENSHOTS")
    if target:
        out = Path(target) if Path(target).is_absolute() else REPO / target
        out.mkdir(parents=True, exist_ok=True)
        for name, path in shots.items():
            shutil.copyfile(path, out / name)


def test_the_page_has_no_script(daemon: RunningDaemon) -> None:
    """The status page is server-rendered: the HTML the daemon sends has no script for the browser to run."""
    for path in ("/", "/runs?pipeline=orders", f"/runs/{finished_run(daemon, 'orders', 'success')['run_id']}"):
        body = http_get(daemon.url + path).decode()
        assert "<table" in body and "<script" not in body.lower(), path
