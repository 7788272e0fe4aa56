"""The daemon's one HTTP server: ``/metrics``, health, a JSON API and a read-only status page.

The standard library's threading HTTP server: a handful of routes, no
dependency to install or keep current, and prometheus_client's exposition for
``/metrics`` (content negotiation included). Listens on 127.0.0.1 by default.

Reads are open; writes (trigger a run, resume a run, acknowledge an alert) need
``Authorization: Bearer <token>`` where the token is the value of the
environment variable ``agent.api_token_env`` names (``PIPEWARDEN_API_TOKEN``).
With no token set, the write endpoints are off (403, saying how to turn them on);
a missing or wrong token is 401. Every request is counted in
``pipewarden_api_requests_total{route,code}``.

=======  ==================================  ========================================
method   path                                what
=======  ==================================  ========================================
GET      /metrics                            Prometheus exposition
GET      /healthz, /readyz                   alive; ready (configuration loaded, store readable)
GET      /api/v1/pipelines                   pipelines, schedules, next run
GET      /api/v1/runs?pipeline=&status=      recent runs (``limit``, default 50)
GET      /api/v1/runs/RUN_ID?logs=1          one run with its task attempts and check results (and logs)
POST     /api/v1/pipelines/NAME/runs         trigger a run; body ``{"params": {...}}``
POST     /api/v1/runs/RUN_ID/resume          resume a run that did not succeed
GET      /api/v1/alerts?state=               alerts (default: pending and firing)
POST     /api/v1/alerts/ID/ack               acknowledge; body ``{"by": "name"}``
GET      /, /runs?pipeline=, /runs/RUN_ID,   the status page (HTML)
         /alerts/ID
=======  ==================================  ========================================
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from agent.errors import ConfigError

if TYPE_CHECKING:
    from agent.daemon import Daemon

__all__ = ["HttpServer", "serve"]

log = logging.getLogger("pipewarden.http")

MAX_BODY = 1 << 20


@dataclass
class HttpServer:
    """A running server: its URL and ``close()``."""

    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        address = self.server.server_address[0]
        host = address.decode() if isinstance(address, bytes) else str(address)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    agent: Daemon


def serve(daemon: Daemon) -> HttpServer:
    """Listen on the configuration's ``agent.listen``; raises ConfigError naming the address when it cannot."""
    from agent.config import listen_address

    host, port = listen_address(daemon.loaded.agent.listen)
    try:
        server = _Server((host, port), _Handler)
    except OSError as exc:
        raise ConfigError(
            f"agent.listen {host}:{port} cannot be used: {exc.strerror or exc}; pick another port "
            "(or 0 for any free port)"
        ) from None
    server.agent = daemon
    thread = threading.Thread(target=server.serve_forever, name="pipewarden-http", daemon=True)
    thread.start()
    return HttpServer(server, thread)


class _Error(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    # --- dispatch --------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        route, handler, args = _route(method, parts)
        code = 500
        try:
            if handler is None:
                raise _Error(405 if route != "unknown" else 404, f"no {method} {url.path}; see /api/v1/pipelines")
            if method == "POST":
                self._authorize()
            code = handler(self, query, *args)
        except _Error as exc:
            code = exc.code
            self._send_json(code, {"error": str(exc)})
        except ConfigError as exc:
            code = 404 if "there is no" in str(exc) else 422
            self._send_json(code, {"error": str(exc)})
        except Exception as exc:
            log.exception("HTTP %s %s failed", method, url.path)
            code = 500
            self._send_json(500, {"error": f"{type(exc).__name__}: {exc}"})
        finally:
            self._count(route, code)

    def _count(self, route: str, code: int) -> None:
        tel = self.server.agent.telemetry
        if tel is not None:
            tel.child("pipewarden_api_requests_total", route, str(code)).inc()

    def _authorize(self) -> None:
        agent = self.server.agent
        name = agent.loaded.agent.api_token_env
        token = agent.env.get(name, "")
        if not token:
            raise _Error(
                403, f"writes are off: set {name} in the daemon's environment and send Authorization: Bearer <token>"
            )
        given = self.headers.get("Authorization", "")
        if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].strip(), token):
            raise _Error(401, "a valid Authorization: Bearer <token> is needed for this request")

    # --- responses ---------------------------------------------------------------------------------

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, code: int, data: Any) -> None:
        self._send(code, json.dumps(data, indent=2, default=str).encode(), "application/json")

    def _send_html(self, code: int, title: str, body: str) -> None:
        self._send(code, _page(title, body).encode(), "text/html; charset=utf-8")

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise _Error(413, f"the request body is larger than {MAX_BODY} bytes")
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise _Error(400, f"the request body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise _Error(400, f"the request body must be a JSON object — got {type(data).__name__}")
        return data

    # --- endpoints ---------------------------------------------------------------------------------

    def metrics(self, query: dict[str, str]) -> int:
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        self._send(200, encoder(self.server.agent.telemetry.metrics.registry), content_type)
        return 200

    def healthz(self, query: dict[str, str]) -> int:
        self._send(200, b"ok\n", "text/plain")
        return 200

    def readyz(self, query: dict[str, str]) -> int:
        agent = self.server.agent
        blocking = ["stopping"] if agent.stopping.is_set() else []
        try:
            agent.store.list_runs(limit=1)
        except Exception as exc:
            blocking.append(f"run store: {exc}")
        note = "" if agent.last_reload_ok else " (the last configuration change was refused; the previous one runs)"
        code = 503 if blocking else 200
        self._send(code, (("; ".join(blocking)) if blocking else "ready" + note).encode() + b"\n", "text/plain")
        return code

    def api_pipelines(self, query: dict[str, str]) -> int:
        self._send_json(200, {"pipelines": self.server.agent.pipelines()})
        return 200

    def api_runs(self, query: dict[str, str]) -> int:
        from agent.records import RunStatus, record_to_dict

        status = query.get("status")
        if status and status not in {s.value for s in RunStatus}:
            raise _Error(400, f"status must be one of {', '.join(s.value for s in RunStatus)} — got {status!r}")
        limit = _int(query.get("limit", "50"), "limit")
        runs = self.server.agent.store.list_runs(pipeline=query.get("pipeline"), status=status, limit=limit)
        self._send_json(200, {"runs": [record_to_dict(r) for r in runs]})
        return 200

    def api_run(self, query: dict[str, str], run_id: str) -> int:
        from agent.records import record_to_dict

        logs = query.get("logs", "0")
        if logs not in ("0", "1"):
            raise _Error(400, f"logs must be 0 or 1 — got {logs!r}")
        rec = self.server.agent.store.get_run(run_id, logs=logs == "1")
        if rec is None:
            raise _Error(404, f"there is no run {run_id!r}")
        self._send_json(200, record_to_dict(rec))
        return 200

    def api_trigger(self, query: dict[str, str], pipeline: str) -> int:
        body = self._body()
        params = body.get("params", {})
        if not isinstance(params, dict):
            raise _Error(400, f"params must be a JSON object of run parameters — got {type(params).__name__}")
        unknown = sorted(set(body) - {"params"})
        if unknown:
            raise _Error(400, f'unknown field(s) {", ".join(unknown)}; the body is {{"params": {{...}}}}')
        run_id = self.server.agent.trigger(pipeline, params)
        self._send_json(201, {"run_id": run_id, "pipeline": pipeline, "url": f"/api/v1/runs/{run_id}"})
        return 201

    def api_resume(self, query: dict[str, str], run_id: str) -> int:
        self._body()
        self.server.agent.resume(run_id)
        self._send_json(202, {"run_id": run_id, "url": f"/api/v1/runs/{run_id}"})
        return 202

    def api_alerts(self, query: dict[str, str]) -> int:
        states = query.get("state", "pending,firing").split(",")
        alerts = self.server.agent.store.list_alerts(states=states, limit=_int(query.get("limit", "100"), "limit"))
        self._send_json(200, {"alerts": [_alert_dict(a) for a in alerts]})
        return 200

    def api_ack(self, query: dict[str, str], alert_id: str) -> int:
        body = self._body()
        by = str(body.get("by") or "api")
        evaluator = self.server.agent.evaluator
        try:
            alert = evaluator.ack(alert_id, by=by)
        except (LookupError, ValueError) as exc:
            raise _Error(404 if isinstance(exc, LookupError) else 409, str(exc)) from None
        self._send_json(200, _alert_dict(alert))
        return 200

    # --- the status page -----------------------------------------------------------------------------

    def page_overview(self, query: dict[str, str]) -> int:
        agent = self.server.agent
        store = agent.store
        now = agent.clock()
        pipelines = agent.pipelines()
        rows = []
        for p in pipelines:
            last = store.list_runs(pipeline=p["name"], limit=1)
            last_cell = (
                f"{_status(last[0].status)} <a href='/runs/{_q(last[0].run_id)}'>"
                f"{_ago(last[0].started_at or last[0].created_at, now)}</a>"
                if last
                else "<span class='meta'>never</span>"
            )
            rows.append(
                f"<tr><td><a href='/runs?pipeline={_q(p['name'])}'>{_e(p['name'])}</a></td>"
                f"<td>{_e(p['schedule'])}</td><td class='when'>{_next(p['next_run'], now)}</td>"
                f"<td class='when'>{last_cell}</td><td class='num'>{p['active']}</td></tr>"
            )
        runs = store.list_runs(limit=20)
        alerts = store.list_alerts(states=["firing"], limit=50)
        firing = "".join(
            f"<tr><td><a href='/alerts/{_q(a.fingerprint)}'>{_e(a.alert)}</a></td><td>{_severity(a.severity)}</td>"
            f"<td>{_e(a.labels.get('pipeline', '-'))}</td><td>{_e(a.annotations.get('summary', ''))}</td>"
            f"<td class='when'>{_ts(a.fired_at)}</td></tr>"
            for a in alerts
        )
        up = now - (agent.started_at or now)
        config = (
            "configuration loaded"
            if agent.last_reload_ok
            else f"<span class='bad'>configuration change REFUSED: {_e(agent.last_reload_error or '')}</span>"
            " (the previous one runs)"
        )
        running = sum(p["active"] for p in pipelines)
        body = (
            f"<p class='meta'>up {_e(_span(up))} · {config} · {len(pipelines)} pipeline(s), {running} running"
            f" · {_ts(now)}</p>"
            "<h2>Pipelines</h2>"
            + _table(["pipeline", "schedule", "next run", "last run", "running"], "".join(rows))
            + f"<h2>Firing alerts</h2>{_table(['alert', 'severity', 'pipeline', 'summary', 'since'], firing)}"
            + f"<h2>Recent runs</h2>{_runs_table(runs)}"
        )
        self._send_html(200, "Status", body)
        return 200

    def page_runs(self, query: dict[str, str]) -> int:
        agent = self.server.agent
        pipeline = query.get("pipeline")
        runs = agent.store.list_runs(pipeline=pipeline, limit=_int(query.get("limit", "100"), "limit"))
        title = f"Runs of {pipeline}" if pipeline else "Runs"
        meta = ""
        for p in agent.pipelines() if pipeline else ():
            if p["name"] == pipeline:
                meta = (
                    f"<p class='meta'>schedule {_e(p['schedule'])} · next run {_next(p['next_run'], agent.clock())}"
                    f" · tasks {_e(' → '.join(p['tasks']))} · {p['active']} running</p>"
                )
        self._send_html(200, title, meta + _runs_table(runs))
        return 200

    def page_run(self, query: dict[str, str], run_id: str) -> int:
        rec = self.server.agent.store.get_run(run_id)
        if rec is None:
            self._send_html(404, "No such run", f"<p>There is no run {_e(run_id)}.</p>")
            return 404
        latest = rec.latest()
        tasks = "".join(
            f"<tr><td>{_e(t)}</td><td>{_status(a.status) if a else _status('not run')}</td>"
            f"<td class='num'>{a.attempt if a and a.attempt else ''}</td>"
            f"<td class='num'>{_dur(a.duration) if a and a.attempt else ''}</td>"
            f"<td class='num'>{'' if not a or a.rows_in is None else f'{a.rows_in:,}'}</td>"
            f"<td class='num'>{'' if not a or a.rows_out is None else f'{a.rows_out:,}'}</td>"
            f"<td class='detail'>{_e((a.error or a.reason or '') if a else '')}</td></tr>"
            for t in (rec.tasks or tuple(latest))
            for a in [latest.get(t)]
        )
        checks = "".join(
            f"<tr><td>{_e(a.label)}</td><td>{_e(c.check)}</td><td>{_e(c.column or '')}</td>"
            f"<td>{_status(c.status)}</td><td class='num'>{_num(c.observed)}</td><td class='num'>{_num(c.threshold)}"
            f"</td><td class='detail'>{_e(c.detail)}</td></tr>"
            for a in rec.attempts
            for c in a.checks
        )
        logical = f" · logical date {_e(rec.logical_date.isoformat())}" if rec.logical_date else ""
        body = (
            f"<p class='meta'>pipeline <a href='/runs?pipeline={_q(rec.pipeline)}'>{_e(rec.pipeline)}</a> · "
            f"{_status(rec.status)} · trigger {_e(rec.trigger)}{logical} · version {_e(rec.version or '-')} · "
            f"started {_ts(rec.started_at)} · took {_dur(rec.duration)}"
            + (
                f" · after run <a href='/runs/{_q(rec.triggered_by)}'>{_e(rec.triggered_by)}</a>"
                if rec.triggered_by
                else ""
            )
            + "</p>"
            + (f"<p class='error'>{_e(rec.error)}</p>" if rec.error else "")
            + "<h2>Tasks</h2>"
            + _table(["task", "status", "attempt", "duration", "rows in", "rows out", "detail"], tasks)
            + "<h2>Checks</h2>"
            + _table(["task", "check", "column", "status", "observed", "threshold", "detail"], checks)
        )
        self._send_html(200, f"Run {rec.run_id}", body)
        return 200

    def page_alert(self, query: dict[str, str], alert_id: str) -> int:
        from alerts.store import find_alert

        try:
            a = find_alert(self.server.agent.store, alert_id)
        except LookupError as exc:
            self._send_html(404, "No such alert", f"<p>{_e(str(exc))}</p>")
            return 404
        labels = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in sorted(a.labels.items()))
        notes = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in sorted(a.annotations.items()))
        run = f" · run <a class='id' href='/runs/{_q(a.run_id)}'>{_e(a.run_id)}</a>" if a.run_id else ""
        body = (
            f"<p class='meta'>{_status(a.state)} · {_severity(a.severity)} · value {_num(a.value)} · "
            f"since {_ts(a.fired_at or a.active_at)}{run}"
            + (
                f" · acknowledged by {_e(a.acknowledged_by or '')} at {_ts(a.acknowledged_at)}"
                if a.acknowledged_at
                else ""
            )
            + "</p>"
            + "<h2>Labels</h2>"
            + _table(["label", "value"], labels)
            + "<h2>Annotations</h2>"
            + _table(["annotation", "value"], notes)
        )
        self._send_html(200, f"Alert {a.alert}", body)
        return 200


Endpoint = Callable[..., int]

_GET: list[tuple[tuple[str, ...], str, Endpoint]] = [
    (("metrics",), "/metrics", _Handler.metrics),
    (("healthz",), "/healthz", _Handler.healthz),
    (("readyz",), "/readyz", _Handler.readyz),
    (("api", "v1", "pipelines"), "/api/v1/pipelines", _Handler.api_pipelines),
    (("api", "v1", "runs"), "/api/v1/runs", _Handler.api_runs),
    (("api", "v1", "runs", "*"), "/api/v1/runs/{id}", _Handler.api_run),
    (("api", "v1", "alerts"), "/api/v1/alerts", _Handler.api_alerts),
    ((), "/", _Handler.page_overview),
    (("runs",), "/runs", _Handler.page_runs),
    (("runs", "*"), "/runs/{id}", _Handler.page_run),
    (("alerts", "*"), "/alerts/{id}", _Handler.page_alert),
]
_POST: list[tuple[tuple[str, ...], str, Endpoint]] = [
    (("api", "v1", "pipelines", "*", "runs"), "/api/v1/pipelines/{name}/runs", _Handler.api_trigger),
    (("api", "v1", "runs", "*", "resume"), "/api/v1/runs/{id}/resume", _Handler.api_resume),
    (("api", "v1", "alerts", "*", "ack"), "/api/v1/alerts/{id}/ack", _Handler.api_ack),
]


def _route(method: str, parts: list[str]) -> tuple[str, Endpoint | None, list[str]]:
    """(the route's bounded label, its endpoint or None, the path's variable parts)."""
    table = {"GET": _GET, "HEAD": _GET, "POST": _POST}.get(method, [])
    for routes, allowed in ((table, True), (_GET + _POST, False)):
        for pattern, label, endpoint in routes:
            if len(pattern) == len(parts) and all(p in ("*", x) for p, x in zip(pattern, parts, strict=True)):
                args = [x for p, x in zip(pattern, parts, strict=True) if p == "*"]
                return label, (endpoint if allowed else None), args
    return "unknown", None, []


def _int(value: str, name: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise _Error(400, f"{name} must be a whole number — got {value!r}") from None
    if not 1 <= n <= 10_000:
        raise _Error(400, f"{name} must be from 1 to 10000 — got {n}")
    return n


def _alert_dict(a: Any) -> dict[str, Any]:
    return {
        "id": a.fingerprint,
        "alert": a.alert,
        "state": str(a.state),
        "severity": a.severity,
        "labels": dict(a.labels),
        "annotations": dict(a.annotations),
        "value": a.value,
        "active_at": a.active_at,
        "fired_at": a.fired_at,
        "resolved_at": a.resolved_at,
        "acknowledged_at": a.acknowledged_at,
        "acknowledged_by": a.acknowledged_by,
        "run_id": a.run_id,
    }


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _ts(at: float | None) -> str:
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s" if seconds < 60 else _span(seconds)


def _span(seconds: float) -> str:
    from alerts.durations import format_duration

    return format_duration(max(0.0, seconds))


def _ago(at: float | None, now: float) -> str:
    return "-" if at is None else f"{_span(now - at)} ago"


def _next(iso: str | None, now: float) -> str:
    """A next-run time as UTC with how far off it is (the page is rendered, so "in 3s" is as of now)."""
    if not iso:
        return "<span class='meta'>-</span>"
    import datetime as dt

    at = dt.datetime.fromisoformat(iso).timestamp()
    return f"{_ts(at)} <span class='meta'>in {_e(_span(at - now))}</span>"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:,.4g}"


def _status(status: Any) -> str:
    text = str(status)
    return f"<span class='st {_e(text.replace(' ', '_'))}'>{_e(text)}</span>"


def _severity(severity: str) -> str:
    return f"<span class='sev {_e(severity)}'>{_e(severity)}</span>"


def _table(headers: list[str], rows: str) -> str:
    if not rows:
        return "<p class='meta'>none</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _runs_table(runs: list[Any]) -> str:
    rows = "".join(
        f"<tr><td><a class='id' href='/runs/{_q(r.run_id)}'>{_e(r.run_id)}</a></td>"
        f"<td><a href='/runs?pipeline={_q(r.pipeline)}'>{_e(r.pipeline)}</a></td>"
        f"<td>{_status(r.status)}</td><td>{_e(r.trigger)}</td>"
        f"<td class='when'>{_ts(r.started_at)}</td><td class='num'>{_dur(r.duration)}</td>"
        f"<td class='detail'>{_e(r.error or '')}</td></tr>"
        for r in runs
    )
    return _table(["run", "pipeline", "status", "trigger", "started", "duration", "error"], rows)


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
header{background:#24292f;padding:.7em 1.5em}
header a{color:#fff;font-weight:600;text-decoration:none;margin-right:1.2em}header a.home{font-size:1.1em}
main{padding:.6em 1.5em 2em}h1{font-size:1.45em;margin:.5em 0 .2em}
h2{font-size:1.1em;margin:1.4em 0 .5em}a{color:#0969da}.meta{color:#57606a}.bad,.error{color:#cf222e}
.error{background:#ffebe9;border:1px solid #ffcecb;border-radius:6px;padding:.5em .8em}
table{border-collapse:separate;border-spacing:0;background:#fff;border:1px solid #d0d7de;border-radius:6px;
overflow:hidden}td,th{padding:.4em .9em;text-align:left;vertical-align:top;border-bottom:1px solid #eaeef2}
tbody tr:last-child td{border-bottom:0}th{background:#f6f8fa;color:#57606a;font-size:.8em;font-weight:600;
text-transform:uppercase;letter-spacing:.04em}td.num{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}td.when{white-space:nowrap}td.detail{max-width:38em;color:#424a53}
a.id{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.92em;white-space:nowrap}
.st,.sev{display:inline-block;padding:0 .6em;border-radius:1em;font-size:.85em;font-weight:600;
white-space:nowrap;background:#eaeef2;color:#424a53}
.st.success,.st.cached,.st.pass,.st.resolved{background:#dafbe1;color:#116329}
.st.failed,.st.fail,.st.error,.st.timed_out,.st.interrupted,.st.firing,.sev.critical{background:#ffebe9;color:#a40e26}
.st.warn,.st.skipped,.st.upstream_failed,.st.cancelled,.st.pending,.sev.warning{background:#fff8c5;color:#7d4e00}
.st.running,.st.waiting,.st.queued,.sev.info{background:#ddf4ff;color:#0550ae}"""


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)} · pipewarden</title>"
        f"<style>{_STYLE}</style></head><body><header><a class='home' href='/'>pipewarden</a>"
        "<a href='/runs'>runs</a><a href='/api/v1/alerts'>alerts (JSON)</a><a href='/metrics'>metrics</a></header>"
        f"<main><h1>{_e(title)}</h1>{body}</main></body></html>"
    )
