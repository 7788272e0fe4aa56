"""Helpers for the alert tests: a fake clock, run events, check results, a recording metrics sink and receiver."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from agent.events import ChecksEvaluated, RunEnded, TaskEnded
from agent.records import RunStatus
from alerts.delivery import Receiver
from checks.result import CheckResult, Kind, Severity, Status

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t


def run_ended(pipeline: str, status: str, *, run_id: str, at: float, duration: float = 1.0) -> RunEnded:
    return RunEnded(run_id, pipeline, RunStatus(status), at - duration, at, duration)


def task_ended(
    pipeline: str,
    task: str,
    status: str,
    *,
    run_id: str,
    at: float,
    attempt: int = 1,
    retry_in: float | None = None,
    checks: tuple[CheckResult, ...] = (),
) -> TaskEnded:
    return TaskEnded(
        run_id, pipeline, task, attempt, RunStatus(status), at - 1.0, at, 1.0, retry_in=retry_in, checks=checks
    )


def checks_evaluated(
    pipeline: str, dataset: str, *results: CheckResult, run_id: str = "r1", task: str = "load"
) -> ChecksEvaluated:
    return ChecksEvaluated(run_id, pipeline, task, dataset, results[0].check if results else "", results, 0.01)


def result(
    check: str,
    kind: str,
    status: str,
    *,
    observed: float | None = None,
    measure: str | None = None,
    column: str | None = None,
    dataset: str | None = None,
    severity: str = "fail",
) -> CheckResult:
    return CheckResult(
        check,
        Kind(kind),
        Status(status),
        observed=observed,
        measure=measure,
        column=column,
        dataset=dataset,
        severity=Severity(severity),
    )


class RecordedMetrics:
    """An AlertMetrics sink that keeps every call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.transitions: list[tuple[str, str, str, str]] = []
        self.firing_now: dict[tuple[str, str, str], int] = {}
        self.responses: list[tuple[str, float]] = []
        self.incidents: list[tuple[str, float]] = []
        self.notifications: Counter[tuple[str, str]] = Counter()
        self.actions: Counter[tuple[str, str, str]] = Counter()

    def transition(self, alert: str, severity: str, pipeline: str, state: str) -> None:
        with self.lock:
            self.transitions.append((alert, severity, pipeline, str(state)))

    def firing(self, alert: str, severity: str, pipeline: str, count: int) -> None:
        with self.lock:
            self.firing_now[(alert, severity, pipeline)] = count

    def response(self, alert: str, severity: str, pipeline: str, seconds: float) -> None:
        with self.lock:
            self.responses.append((alert, seconds))

    def incident_response(self, alert: str, severity: str, pipeline: str, seconds: float) -> None:
        with self.lock:
            self.incidents.append((alert, seconds))

    def notification(self, receiver: str, outcome: str) -> None:
        with self.lock:
            self.notifications[(receiver, str(outcome))] += 1

    def action(self, alert: str, action: str, outcome: str) -> None:
        with self.lock:
            self.actions[(alert, action, str(outcome))] += 1


class Collect(Receiver):
    """A receiver whose delivery appends the notification to ``items`` (it observes the routing)."""

    kind = "collect"

    def __init__(self, name: str = "collect", **options: Any) -> None:
        super().__init__(name, **options)
        self.items: list[Any] = []

    def deliver(self, item: Any, *, timeout: float) -> str:
        self.items.append(item)
        return "collected"

    def sample(self, *, now: float) -> Any:
        return None

    def alerts(self) -> list[tuple[str, str, str]]:
        """(alertname, status, pipeline) of every alert in every notification delivered, in order."""
        self.flush(5)
        return [
            (a.alert, "firing" if str(a.state) == "firing" else "resolved", a.labels.get("pipeline", ""))
            for note in self.items
            for a in note.alerts
        ]


class RecordingActions:
    """An action handler that records what it was asked and returns a new run id (a stand-in for the host)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail = fail

    def resume(self, run_id: str) -> str:
        self.calls.append(("resume", run_id))
        if self.fail:
            raise RuntimeError("the runner is not available")
        return f"{run_id}-resumed-{len(self.calls)}"

    def trigger(self, pipeline: str, params: Any) -> str:
        self.calls.append(("trigger", (pipeline, dict(params))))
        if self.fail:
            raise RuntimeError("the runner is not available")
        return f"{pipeline}-run-{len(self.calls)}"
