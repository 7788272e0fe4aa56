"""A real Alertmanager receives the agent's alerts, groups them, and resolves them when the data is fixed."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from alert_support import RecordedMetrics, run_ended
from servers import AlertmanagerServer, RecordingReceiver, wait_until

from alerts.alertmanager import AlertmanagerReceiver
from alerts.config import evaluator_from_config
from alerts.evaluator import AlertEvaluator
from alerts.store import MemoryAlertStore

pytestmark = pytest.mark.integration


def active(am: AlertmanagerServer, alertname: str) -> list[dict[str, Any]]:
    return [a for a in am.alerts() if a["labels"].get("alertname") == alertname]


def test_alertmanager_receives_groups_and_resolves_the_agents_alerts(
    alertmanager_server: AlertmanagerServer, amtool: str
) -> None:
    """Two failed pipelines reach Alertmanager, which groups them by alertname; successes resolve both."""
    am = alertmanager_server
    ev = evaluator_from_config(
        {"external_url": "http://127.0.0.1:9470", "receivers": [{"name": "am", "kind": "alertmanager", "url": am.url}]},
        tick_interval=None,
    )
    now = time.time()
    ev.handle(run_ended("orders", "failed", run_id="r1", at=now), now=now)
    ev.handle(run_ended("billing", "failed", run_id="r2", at=now), now=now)
    listed = wait_until(
        lambda: a if len(a := active(am, "PipelineRunFailed")) == 2 else None,
        what="two PipelineRunFailed alerts in Alertmanager",
    )
    assert sorted(a["labels"]["pipeline"] for a in listed) == ["billing", "orders"]
    assert all(
        a["labels"]["severity"] == "warning"
        and a["annotations"]["summary"].startswith("Pipeline ")
        and a["generatorURL"].startswith("http://127.0.0.1:9470/alerts/")
        for a in listed
    )
    grouped = wait_until(
        lambda: next((p for p in am.webhook.payloads if p["status"] == "firing" and len(p["alerts"]) == 2), None),
        what="one notification of both alerts",
    )
    assert grouped["groupLabels"] == {"alertname": "PipelineRunFailed"}

    query = subprocess.run(
        [amtool, "alert", "query", f"--alertmanager.url={am.url}", "-o", "json", "alertname=PipelineRunFailed"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert sorted(a["labels"]["pipeline"] for a in json.loads(query.stdout)) == ["billing", "orders"]

    later = time.time()
    ev.handle(run_ended("orders", "success", run_id="r3", at=later), now=later)
    ev.handle(run_ended("billing", "success", run_id="r4", at=later), now=later)
    wait_until(lambda: True if not active(am, "PipelineRunFailed") else None, what="the alerts resolved")
    resolved = wait_until(
        lambda: next((p for p in am.webhook.payloads if p["status"] == "resolved"), None),
        what="Alertmanager's resolved notification",
    )
    assert sorted(a["labels"]["pipeline"] for a in resolved["alerts"]) == ["billing", "orders"]
    ev.stop(2)


def test_firing_alerts_are_re_sent_so_alertmanager_keeps_them(alertmanager_server: AlertmanagerServer) -> None:
    """A tick after resend_interval posts the firing alert again and Alertmanager moves its endsAt forward."""
    am = alertmanager_server
    metrics = RecordedMetrics()
    receiver = AlertmanagerReceiver("am", am.url, resend_interval=30)
    ev = AlertEvaluator(receivers=[receiver], metrics=metrics, store=MemoryAlertStore())
    now = time.time()
    ev.handle(run_ended("orders", "failed", run_id="r1", at=now), now=now)
    [first] = wait_until(lambda: active(am, "PipelineRunFailed") or None, what="the alert in Alertmanager")
    ev.tick(now + 10)
    assert ev.flush(10) and metrics.notifications[("am", "sent")] == 1  # not due yet
    ev.tick(now + 31)
    assert ev.flush(10) and metrics.notifications[("am", "sent")] == 2
    [again] = active(am, "PipelineRunFailed")
    assert again["endsAt"] > first["endsAt"] and again["startsAt"] == first["startsAt"]
    ev.stop(2)


def test_a_restart_while_firing_sends_no_duplicate_and_resolves_later(
    alertmanager_server: AlertmanagerServer, recording_receiver: RecordingReceiver, tmp_path: Path
) -> None:
    """Stop the agent while an alert fires; a new one on the same store re-sends to Alertmanager (no new
    notification anywhere), keeps it firing, and resolves it when the pipeline succeeds."""
    from agent.store import SQLiteRunStore

    am = alertmanager_server
    config = {
        "receivers": [
            {"name": "am", "kind": "alertmanager", "url": am.url},
            {"name": "hook", "kind": "webhook", "url": recording_receiver.url()},
        ]
    }
    store = SQLiteRunStore(tmp_path / "pipewarden.db")
    first = evaluator_from_config(config, store=store, tick_interval=None)
    now = time.time()
    first.handle(run_ended("orders", "failed", run_id="r1", at=now), now=now)
    assert first.flush(10)
    wait_until(lambda: active(am, "PipelineRunFailed") or None, what="the alert in Alertmanager")
    wait_until(lambda: am.webhook.payloads or None, what="Alertmanager's notification")
    first.stop(2)

    metrics = RecordedMetrics()
    second = evaluator_from_config(config, store=store, metrics=metrics, tick_interval=None)
    second.tick(time.time())
    assert second.flush(10)
    assert [str(a.state) for a in second.alerts()] == ["firing"]
    assert metrics.notifications == {("am", "sent"): 1}  # re-sent to Alertmanager, not to the webhook
    assert [r.json()["status"] for r in recording_receiver.received()] == ["firing"]
    time.sleep(1.5)  # Alertmanager's group_interval is 1 s: a duplicate would have been sent by now
    assert [p["status"] for p in am.webhook.payloads] == ["firing"]

    later = time.time()
    second.handle(run_ended("orders", "success", run_id="r2", at=later), now=later)
    assert second.flush(10)
    wait_until(lambda: True if not active(am, "PipelineRunFailed") else None, what="the alert resolved")
    assert [r.json()["status"] for r in recording_receiver.received()] == ["firing", "resolved"]
    wait_until(
        lambda: True if [p["status"] for p in am.webhook.payloads] == ["firing", "resolved"] else None,
        what="Alertmanager's resolved notification",
    )
    second.stop(2)
    store.close()


def test_a_resolution_that_could_not_be_delivered_is_sent_again(recording_receiver: RecordingReceiver) -> None:
    """Alertmanager answering 503 to a resolution: the next tick after resend_interval posts it again."""
    receiver = AlertmanagerReceiver("am", recording_receiver.url(""), resend_interval=30, retries=0)
    ev = AlertEvaluator(receivers=[receiver], store=MemoryAlertStore())
    now = time.time()
    ev.handle(run_ended("orders", "failed", run_id="r1", at=now), now=now)
    assert ev.flush(10)
    recording_receiver.statuses = [503]
    ev.handle(run_ended("orders", "success", run_id="r2", at=now + 5), now=now + 5)
    assert ev.flush(10)
    ev.tick(now + 20)
    assert ev.flush(10) and len(recording_receiver.received()) == 2  # not due yet
    ev.tick(now + 36)
    assert ev.flush(10)
    posts = [(r.path, r.json()) for r in recording_receiver.received()]
    assert [p for p, _ in posts] == ["/api/v2/alerts"] * 3
    first, failed, again = (doc for _, doc in posts)
    assert failed == again and again[0]["endsAt"] > first[0]["startsAt"]
    assert again[0]["labels"] == {"alertname": "PipelineRunFailed", "severity": "warning", "pipeline": "orders"}
    assert "generatorURL" not in again[0]  # no external_url: no link
    ev.tick(now + 80)
    assert ev.flush(10) and len(recording_receiver.received()) == 3  # delivered: not sent again
    ev.stop(2)
