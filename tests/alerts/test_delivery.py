"""Delivery: each receiver on its own thread, retries with backoff, every outcome counted, never the pipeline's cost."""

from __future__ import annotations

import threading

from alert_support import T0, RecordedMetrics, run_ended
from servers import RecordingReceiver, TricklingServer

from agent.events import EventBus
from alerts.conditions import RunFailed
from alerts.evaluator import AlertEvaluator
from alerts.receivers import WebhookReceiver
from alerts.rules import Rule
from alerts.signing import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from alerts.store import MemoryAlertStore

FAST = {"backoff": 0.01, "backoff_max": 0.02}


def hook(url: str, metrics: RecordedMetrics, **options: object) -> WebhookReceiver:
    receiver = WebhookReceiver("hook", url, **{**FAST, **options})  # type: ignore[arg-type]
    receiver.bind(metrics=metrics)
    return receiver


def test_a_server_error_is_retried_until_it_answers(
    recording_receiver: RecordingReceiver, metrics: RecordedMetrics
) -> None:
    """503, 503, 200: three attempts, counted retried twice then sent; same delivery id, each freshly signed."""
    recording_receiver.statuses = [503, 503]
    receiver = hook(recording_receiver.url(), metrics, secret=b"k", retries=3)
    receiver.notify(receiver.sample(now=T0))
    assert receiver.flush(10)
    requests = recording_receiver.received()
    assert len(requests) == 3
    assert len({r.headers[DELIVERY_HEADER] for r in requests}) == 1
    assert all(
        verify_signature(
            b"k",
            r.body,
            r.headers[TIMESTAMP_HEADER],
            r.headers[SIGNATURE_HEADER],
            now=float(r.headers[TIMESTAMP_HEADER]),
        )
        for r in requests
    )
    assert metrics.notifications == {("hook", "retried"): 2, ("hook", "sent"): 1}
    receiver.stop(1)


def test_a_client_error_is_not_retried(recording_receiver: RecordingReceiver, metrics: RecordedMetrics) -> None:
    """400 says the request is wrong: one attempt, counted failed."""
    recording_receiver.statuses = [400]
    receiver = hook(recording_receiver.url(), metrics, retries=3)
    receiver.notify(receiver.sample(now=T0))
    assert receiver.flush(10)
    assert len(recording_receiver.received()) == 1
    assert metrics.notifications == {("hook", "failed"): 1}
    receiver.stop(1)


def test_a_receiver_that_is_down_is_retried_counted_and_recorded(closed_port: int, metrics: RecordedMetrics) -> None:
    """Connection refused: retried up to the limit, then failed; the alert's history says which receiver failed."""
    store = MemoryAlertStore()
    receiver = WebhookReceiver("down", f"http://127.0.0.1:{closed_port}/hook", retries=2, **FAST)
    ev = AlertEvaluator([Rule("Failed", RunFailed())], receivers=[receiver], store=store, metrics=metrics)
    ev.handle(run_ended("orders", "failed", run_id="r1", at=T0), now=T0)
    assert ev.flush(10)
    assert metrics.notifications == {("down", "retried"): 2, ("down", "failed"): 1}
    [entry] = store.alert_history(kind="notification")
    assert (entry.name, entry.outcome, entry.run_id) == ("down", "failed", "r1")
    assert "ConnectionRefusedError" in entry.detail
    ev.stop(1)


def test_a_trickling_receiver_fails_at_the_deadline(
    trickling_server: TricklingServer, metrics: RecordedMetrics
) -> None:
    """An answer trickled one byte at a time is given up at the receiver's timeout and counted failed."""
    outcomes: list[str] = []
    receiver = hook(trickling_server.url, metrics, timeout=0.3, retries=0)
    receiver.bind(on_result=lambda r, item, outcome, detail: outcomes.append(f"{outcome}: {detail}"))
    receiver.notify(receiver.sample(now=T0))
    assert receiver.flush(10)
    assert outcomes == ["failed: no complete answer within 0.3s"]
    assert trickling_server.sent < len(trickling_server.answer) // 10
    receiver.stop(1)


def test_a_full_queue_drops_and_counts_throttled(
    recording_receiver: RecordingReceiver, metrics: RecordedMetrics
) -> None:
    """While the receiver hangs, one notification is in flight, one waits, the next is dropped as throttled."""
    recording_receiver.gate.clear()
    receiver = hook(recording_receiver.url(), metrics, queue_size=1, timeout=10)
    assert receiver.notify(receiver.sample(now=T0))
    assert recording_receiver.waiting.wait(10)
    assert receiver.notify(receiver.sample(now=T0 + 1))
    assert not receiver.notify(receiver.sample(now=T0 + 2))
    assert metrics.notifications == {("hook", "throttled"): 1}
    recording_receiver.gate.set()
    assert receiver.flush(10)
    assert metrics.notifications[("hook", "sent")] == 2
    receiver.stop(1)


def test_a_hanging_receiver_costs_the_pipeline_nothing(
    recording_receiver: RecordingReceiver, metrics: RecordedMetrics
) -> None:
    """The run's emit returns and the evaluator finishes its work while the receiver still holds the request."""
    recording_receiver.gate.clear()
    receiver = hook(recording_receiver.url(), metrics, timeout=30)
    ev = AlertEvaluator([Rule("Failed", RunFailed())], receivers=[receiver], metrics=metrics)
    bus = EventBus()
    bus.add(ev)
    emitted = threading.Event()

    def pipeline() -> None:
        bus.emit(run_ended("orders", "failed", run_id="r1", at=T0))
        emitted.set()

    threading.Thread(target=pipeline).start()
    assert emitted.wait(10)
    assert bus.flush(10)  # the evaluator is done with the event...
    assert [str(a.state) for a in ev.alerts()] == ["firing"]
    assert recording_receiver.waiting.wait(10)
    assert recording_receiver.received() == []  # ...while the delivery is still held by the receiver
    recording_receiver.gate.set()
    assert ev.flush(10)
    assert [r.json()["status"] for r in recording_receiver.received()] == ["firing"]
    bus.close(1)
    ev.stop(1)


def test_stop_abandons_what_a_hanging_receiver_has_left_and_counts_it(
    recording_receiver: RecordingReceiver, metrics: RecordedMetrics
) -> None:
    """At exit, what could not be delivered within the timeout is counted failed instead of blocking the process."""
    recording_receiver.gate.clear()
    receiver = hook(recording_receiver.url(), metrics, timeout=0.5, retries=0)
    receiver.notify(receiver.sample(now=T0))
    assert recording_receiver.waiting.wait(10)
    receiver.notify(receiver.sample(now=T0 + 1))
    assert receiver.stop(0.1) is False
    recording_receiver.gate.set()
    assert metrics.notifications[("hook", "failed")] >= 1
