"""The history of runs nobody recorded before: ``@monitor`` runs, written to the run store.

The orchestrator writes every state to the store itself before it acts on it
(its events are ``durable``). A ``@monitor`` call has no resume, so its history
leaves the call's path: :class:`HistoryRecorder` is a queued run-event listener
that writes whatever has queued up in one transaction, and the telemetry
flushes it at exit. A run whose process is killed stays ``running`` with its
owner's pid, and the next look at the store marks it ``interrupted``.
"""

from __future__ import annotations

from typing import Any

from agent.events import RunEnded, RunStarted, TaskEnded

__all__ = ["HistoryRecorder"]


class HistoryRecorder:
    """Writes non-durable RunStarted, TaskEnded and RunEnded events to a run store."""

    name = "history"
    events = (RunStarted, TaskEnded, RunEnded)

    def __init__(self, store: Any) -> None:
        self.store = store

    def handle(self, event: Any) -> None:
        self.handle_batch([event])

    def handle_batch(self, events: list[Any]) -> None:
        todo = [e for e in events if not e.durable]
        if todo:
            self.store.append_events(todo)
