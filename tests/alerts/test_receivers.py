"""Receivers on a real loopback server: the JSON webhook and Slack payloads, their signatures, the log, test sends."""

from __future__ import annotations

import logging

import pytest
from alert_support import T0, Clock, run_ended
from servers import RecordedRequest, RecordingReceiver

from alerts.conditions import RunFailed
from alerts.evaluator import AlertEvaluator
from alerts.receivers import LogReceiver, SlackReceiver, WebhookReceiver
from alerts.rules import Rule
from alerts.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

RULE = Rule(
    "PipelineRunFailed",
    RunFailed(),
    annotations={"summary": "Pipeline {{ pipeline }} failed <now> & again", "description": "run {{ run_id }}"},
)


def fail_and_recover(receiver: object, clock: Clock) -> AlertEvaluator:
    ev = AlertEvaluator([RULE], receivers=[receiver], external_url="https://pw.example:9470/", clock=clock)  # type: ignore[list-item]
    ev.handle(run_ended("orders", "failed", run_id="20250101T000000-abc", at=T0), now=T0)
    ev.handle(run_ended("orders", "success", run_id="r2", at=T0 + 60), now=T0 + 60)
    assert ev.flush(10)
    return ev


def signed(req: RecordedRequest, secret: bytes, *, body: bytes | None = None) -> bool:
    """Whether ``req``'s signature headers verify ``body`` (default: its own) with ``secret``, at its timestamp."""
    ts, signature = req.headers[TIMESTAMP_HEADER], req.headers[SIGNATURE_HEADER]
    return verify_signature(secret, req.body if body is None else body, ts, signature, now=float(ts))


def test_the_json_webhook_is_signed_and_shaped_like_alertmanagers(
    recording_receiver: RecordingReceiver, clock: Clock
) -> None:
    """Firing then resolved documents with labels, annotations, times, links; each verifies with the secret."""
    receiver = WebhookReceiver("ops", recording_receiver.url(), secret=b"s3cret", headers={"X-Team": "data"})
    ev = fail_and_recover(receiver, clock)
    firing, resolved = recording_receiver.wait_for(2)
    for req in (firing, resolved):
        assert signed(req, b"s3cret")
        assert not signed(req, b"s3cret", body=req.body + b" ")
        assert req.headers["Content-Type"] == "application/json" and req.headers["X-Team"] == "data"
    doc = firing.json()
    assert (doc["version"], doc["receiver"], doc["status"], doc["repeat"]) == ("1", "ops", "firing", False)
    assert doc["groupLabels"] == {"alertname": "PipelineRunFailed", "pipeline": "orders"}
    [alert] = doc["alerts"]
    assert alert["labels"] == {"alertname": "PipelineRunFailed", "severity": "warning", "pipeline": "orders"}
    assert alert["annotations"]["description"] == "run 20250101T000000-abc"
    assert alert["startsAt"] == "2023-11-14T22:13:20.000Z" and alert["endsAt"] is None
    assert alert["runURL"] == "https://pw.example:9470/runs/20250101T000000-abc"
    assert alert["generatorURL"] == f"https://pw.example:9470/alerts/{alert['fingerprint']}"
    done = resolved.json()
    assert (done["status"], done["alerts"][0]["endsAt"]) == ("resolved", "2023-11-14T22:14:20.000Z")
    ev.stop(1)


def test_a_replayed_or_wrongly_keyed_post_does_not_verify() -> None:
    """Old timestamps, another secret, a missing header: refused."""
    from alerts.signing import sign_headers

    h = sign_headers(b"k", b"{}", timestamp=1000)
    ts, sig = h[TIMESTAMP_HEADER], h[SIGNATURE_HEADER]
    assert verify_signature(b"k", b"{}", ts, sig, now=1100)
    assert not verify_signature(b"k", b"{}", ts, sig, now=1000 + 301)
    assert not verify_signature(b"other", b"{}", ts, sig, now=1000)
    assert not verify_signature(b"k", b"{}", None, sig, now=1000)
    assert not verify_signature(b"k", b"{}", "soon", sig, now=1000)


def test_slack_gets_escaped_mrkdwn_text_with_run_links_and_a_valid_signature(
    recording_receiver: RecordingReceiver, clock: Clock
) -> None:
    """The text names the group, each alert's summary (escaped) and links the run; channel and name are passed."""
    receiver = SlackReceiver(
        "chat", recording_receiver.url("/services/T0/B0/xyz"), channel="#data", username="pipewarden", secret=b"k"
    )
    ev = fail_and_recover(receiver, clock)
    firing, resolved = recording_receiver.wait_for(2)
    doc = firing.json()
    assert (doc["channel"], doc["username"]) == ("#data", "pipewarden")
    assert doc["text"].splitlines() == [
        ":red_circle: *[FIRING:1] alertname=PipelineRunFailed pipeline=orders*",
        "• *Pipeline orders failed &lt;now&gt; &amp; again* — run 20250101T000000-abc "
        "<https://pw.example:9470/runs/20250101T000000-abc|run 20250101T000000-abc>",
    ]
    assert resolved.json()["text"].startswith(":large_green_circle: *[RESOLVED:1]")
    assert signed(firing, b"k")
    assert "xyz" not in repr(receiver)  # a Slack URL is a secret: never in logs
    ev.stop(1)


def test_the_log_receiver_writes_one_line_per_alert(caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    """Firing at the configured level, resolved at info, with labels, value and summary."""
    receiver = LogReceiver("log", level="error")
    with caplog.at_level(logging.INFO, logger="pipewarden.alerts"):
        ev = fail_and_recover(receiver, clock)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.getMessage().startswith("alert ")]
    assert lines == [
        (
            "ERROR",
            "alert FIRING PipelineRunFailed {pipeline=orders, severity=warning} value=1: "
            "Pipeline orders failed <now> & again",
        ),
        (
            "INFO",
            "alert RESOLVED PipelineRunFailed {pipeline=orders, severity=warning} value=0: "
            "Pipeline orders failed <now> & again",
        ),
    ]
    ev.stop(1)


def test_test_sends_report_what_each_receiver_answered(recording_receiver: RecordingReceiver, closed_port: int) -> None:
    """A reachable webhook answers 200 OK with a sample alert; a closed port reports the refusal."""
    ok = WebhookReceiver("ok", recording_receiver.url()).test(now=T0)
    down = WebhookReceiver("down", f"http://127.0.0.1:{closed_port}/").test(now=T0)
    assert (ok.ok, ok.answer, ok.kind) == (True, "200 OK", "webhook")
    assert down.ok is False and "ConnectionRefusedError" in down.answer
    [req] = recording_receiver.received()
    assert req.json()["alerts"][0]["labels"]["alertname"] == "PipewardenTest"
