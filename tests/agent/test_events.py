"""Run events and the listener bus: every listener hears its events; none can break or stall a run."""

from __future__ import annotations

import doctest
import logging
import threading
from typing import Any

import pytest

import agent.events
from agent.events import EventBus, RunEnded, RunStarted, TaskEnded
from agent.monitor import monitor
from agent.records import RunStatus
from agent.telemetry import Telemetry
from exporters.metrics import Metrics


def started(run_id: str = "r1", pipeline: str = "orders") -> RunStarted:
    return RunStarted(run_id, pipeline, 0.0)


def test_doctests_run() -> None:
    """The examples in the module's docstrings run as written."""
    result = doctest.testmod(agent.events)
    assert result.attempted > 0 and result.failed == 0


def test_inline_listeners_hear_their_event_types_in_order() -> None:
    """An inline listener hears only the types it names, in the order emitted, in the emitting thread."""
    bus = EventBus()
    heard: list[tuple[str, str]] = []

    class Ends:
        events = (TaskEnded, RunEnded)

        def handle(self, e: Any) -> None:
            heard.append((type(e).__name__, threading.current_thread().name))

    bus.add(Ends(), inline=True)
    bus.emit(started())
    bus.emit(TaskEnded("r1", "orders", "load", 1, RunStatus.SUCCESS, 0.0, 1.0))
    bus.emit(RunEnded("r1", "orders", RunStatus.SUCCESS, 0.0, 1.0))
    me = threading.current_thread().name
    assert heard == [("TaskEnded", me), ("RunEnded", me)]
    assert bus.wants(TaskEnded) and not bus.wants(RunStarted)


def test_a_raising_listener_is_counted_warned_once_and_others_still_hear(caplog: pytest.LogCaptureFixture) -> None:
    """A listener that raises costs one warning and a count per failure; the next listener still hears."""
    failures: list[tuple[str, str, str]] = []
    bus = EventBus(on_error=lambda name, what, exc, pipeline: failures.append((name, what, pipeline)))
    heard: list[Any] = []

    def broken(e: Any) -> None:
        raise RuntimeError("listener bug")

    bus.add(broken, inline=True, name="broken")
    bus.add(heard.append, inline=True)
    with caplog.at_level(logging.WARNING, logger="pipewarden.events"):
        for _ in range(3):
            bus.emit(started())
    assert len(heard) == 3
    assert failures == [("broken", "raised", "orders")] * 3
    assert len([r for r in caplog.records if "broken raised RuntimeError" in r.getMessage()]) == 1


def test_a_hanging_queued_listener_never_stalls_the_emitter() -> None:
    """A queued listener that blocks forever: emits return at once, flush gives up at its deadline and says so."""
    release = threading.Event()
    failures: list[str] = []
    bus = EventBus(on_error=lambda name, what, exc, pipeline: failures.append(what))
    bus.add(lambda e: release.wait(), name="hung", queue_size=5)
    for _ in range(50):  # were an emit to wait for the listener, this loop would never end (release is set below)
        bus.emit(started())
    assert bus.flush(timeout=0.2) is False
    release.set()
    # 1 event is being handled, 5 wait in the queue; the rest were dropped and counted, then one stall.
    assert failures.count("dropped") >= 50 - 1 - 5
    assert failures[-1] == "stalled"


def test_a_queued_listener_with_handle_batch_gets_what_queued_up_at_once() -> None:
    """A writer listener receives queued events in batches, in order, and flush waits for them."""
    gate = threading.Event()
    batches: list[list[str]] = []

    class Writer:
        def handle(self, e: Any) -> None:
            raise AssertionError("handle_batch is preferred")

        def handle_batch(self, events: list[Any]) -> None:
            gate.wait()
            batches.append([e.run_id for e in events])

    bus = EventBus()
    bus.add(Writer())
    for i in range(20):
        bus.emit(started(f"r{i}"))
    gate.set()
    assert bus.flush(timeout=5)
    assert [r for b in batches for r in b] == [f"r{i}" for i in range(20)]
    assert len(batches) < 20  # the first batch waits at the gate while the rest queue up


def test_removed_listener_hears_nothing_more() -> None:
    """After remove(), a listener is no longer called."""
    bus = EventBus()
    heard: list[Any] = []
    bus.add(heard.append, inline=True)
    bus.emit(started())
    bus.remove(heard.append)
    bus.emit(started())
    assert len(heard) == 1


def test_a_raising_listener_costs_a_monitored_call_nothing(tmp_path: Any) -> None:
    """A listener that raises on every event leaves the monitored call's value, metrics and count intact."""
    tel = Telemetry(metrics=Metrics())

    def broken(e: Any) -> None:
        raise ValueError("nope")

    tel.bus.add(broken, inline=True, name="broken")

    @monitor(pipeline="orders", telemetry=tel)
    def load() -> int:
        return 7

    assert [load(), load()] == [7, 7]
    assert tel.metrics.sample("pipewarden_pipeline_runs_total", pipeline="orders", status="success") == 2
    assert (
        tel.metrics.sample("pipewarden_listener_errors_total", pipeline="orders", listener="broken", reason="raised")
        == 8
    )  # RunStarted, TaskStarted, TaskEnded, RunEnded of each


def test_a_hanging_listener_costs_a_monitored_call_nothing() -> None:
    """A queued listener that never returns does not hold up monitored calls; shutdown gives up on it."""
    tel = Telemetry(metrics=Metrics())
    release = threading.Event()
    tel.bus.add(lambda e: release.wait(), name="hung")

    @monitor(pipeline="orders", telemetry=tel)
    def load() -> int:
        return 7

    try:
        assert [load() for _ in range(3)] == [7, 7, 7]
        assert tel.flush(timeout=0.2) is False
        assert (
            tel.metrics.sample("pipewarden_listener_errors_total", pipeline="", listener="hung", reason="stalled") == 1
        )
    finally:
        release.set()
