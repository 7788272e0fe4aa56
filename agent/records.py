"""The records that cross module boundaries: one status enum, runs, task attempts, alert events.

Plain dataclasses. The decorator, the runner, the run store, the exporters, the
CLI and the alert evaluator all speak in these; this module imports nothing of
pipewarden's beyond :mod:`checks.result`. Timestamps are Unix seconds (floats),
as the store keeps them.

>>> RunStatus("failed").failure, RunStatus.CANCELLED.failure
(True, False)
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # checks/__init__ imports pandas lazily, checks.result does not; keep the CLI path light
    from checks.result import CheckResult

__all__ = [
    "ACTIVE",
    "FAILURES",
    "OK",
    "AlertEvent",
    "AlertHistoryEntry",
    "AlertState",
    "HistoryKind",
    "RunRecord",
    "RunStatus",
    "TaskAttempt",
    "new_run_id",
    "otel_result",
    "record_to_dict",
]


class RunStatus(enum.StrEnum):
    """Where a pipeline run or a task attempt stands; the one status enum of runs and tasks.

    A run is ``queued`` (the scheduler claimed it), ``running``, then ends
    ``success``, ``failed``, ``cancelled`` or ``interrupted`` (its process
    died). A task is ``pending``, ``running`` (a sensor: ``waiting`` for its
    condition), then ends ``success``, ``failed``, ``timed_out``, ``skipped``
    (a blocking check upstream stopped it, a branch did not choose it, or its
    trigger rule said so), ``upstream_failed``, ``cancelled``, ``interrupted``
    or ``cached`` (its output was reused from an earlier run: inputs and code
    unchanged, nothing executed).
    """

    QUEUED = "queued"
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    WAITING = "waiting"
    CACHED = "cached"

    @property
    def finished(self) -> bool:
        """True for end states (everything but queued, pending, running and waiting)."""
        return self not in ACTIVE

    @property
    def failure(self) -> bool:
        """True for the end states that count as a failure in every KPI (failed, timed_out, interrupted).

        Cancelled, skipped and upstream_failed are not failures of their own:
        a person stopped the run, or something upstream failed (or a branch
        chose another way); cached is not an execution at all.
        """
        return self in FAILURES

    @property
    def ok(self) -> bool:
        """True for the end states that delivered the task's output: success, and cached (reused)."""
        return self in OK


#: States that have not ended yet.
ACTIVE: frozenset[RunStatus] = frozenset({RunStatus.QUEUED, RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING})
#: End states in which a task's output exists: it ran and succeeded, or an earlier run's output was reused.
OK: frozenset[RunStatus] = frozenset({RunStatus.SUCCESS, RunStatus.CACHED})
#: End states that count as a failure (error rate, time to recovery, change failure rate, uptime).
FAILURES: frozenset[RunStatus] = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.INTERRUPTED})

# cicd.pipeline.result / cicd.pipeline.task.run.result values of the OpenTelemetry
# CI/CD semantic conventions. Keyed by the plain strings: a StrEnum member hashes
# and compares equal to its value, so one lookup serves both.
_OTEL_RESULT = {
    "success": "success",
    "failed": "failure",
    "timed_out": "timeout",
    "skipped": "skip",
    "upstream_failed": "skip",
    "cancelled": "cancellation",
    "interrupted": "error",
    "cached": "success",
}


def otel_result(status: RunStatus | str) -> str:
    """The CI/CD semantic-convention result for a pipewarden status."""
    return _OTEL_RESULT.get(status, "error")


# The ids this process issued in the latest second it was asked for. Six random hex digits are
# 16.7 million values: 100 runs due in the same second (a daemon with 100 one-minute crons) collide
# once in about 3,400 such seconds, two or three days of minutes; within a process they never do.
_issued: tuple[str, set[str]] = ("", set())
_issued_lock = threading.Lock()


def new_run_id(now: float | None = None) -> str:
    """A sortable, unique run id: ``20250101T120000-1a2b3c`` (never the same twice in one process and second)."""
    global _issued
    t = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC)
    stamp = f"{t:%Y%m%dT%H%M%S}"
    with _issued_lock:
        second, seen = _issued
        if second != stamp:
            seen = set()
            _issued = (stamp, seen)
        while True:
            run_id = f"{stamp}-{secrets.token_hex(3)}"
            if run_id not in seen:
                seen.add(run_id)
                return run_id


@dataclass(frozen=True, slots=True)
class TaskAttempt:
    """One recorded state of one task in one run.

    ``attempt`` counts executions of the task in the run (1 for the first);
    states without an execution (skipped, upstream_failed, cancelled before
    start, interrupted before start, cached) carry ``attempt`` 0. ``output_ref`` says
    where a successful output can be found again: an artifact path, ``"none"``
    for a task that returned None, or None when it was not kept. ``item`` is
    the index of one item of a mapped task (None for the task itself: its row
    holds the state of the whole map); ``pokes`` how often a sensor looked at
    its condition.
    """

    run_id: str
    task: str
    attempt: int
    status: RunStatus
    started_at: float | None = None
    ended_at: float | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    error: str | None = None
    reason: str | None = None
    output_ref: str | None = None
    checks: tuple[CheckResult, ...] = ()
    id: int = 0
    #: What the attempt logged and printed (``get_run(run_id, logs=True)``; None otherwise or when it wrote nothing).
    logs: str | None = None
    item: int | None = None
    pokes: int | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    @property
    def label(self) -> str:
        """``task`` for a task, ``task[3]`` for item 3 of a mapped task."""
        return self.task if self.item is None else f"{self.task}[{self.item}]"


@dataclass(frozen=True)
class RunRecord:
    """One pipeline run with the history of its tasks.

    ``tasks`` are the pipeline's task names in dependency order; ``attempts``
    every recorded state in the order written (``task_state`` picks the latest
    per task). ``outputs`` holds the task return values of a run made in this
    process (empty when read back from the store). ``trigger`` is how the run
    started: ``cron``, ``interval``, ``file``, ``manual``, ``backfill``, ``after``
    (another pipeline's run, ``triggered_by``, ended), or ``monitor`` for a ``@monitor`` call.
    """

    run_id: str
    pipeline: str
    status: RunStatus
    trigger: str = "manual"
    version: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    logical_date: dt.datetime | None = None
    created_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    target: str | None = None
    tasks: tuple[str, ...] = ()
    attempts: tuple[TaskAttempt, ...] = ()
    error: str | None = None
    owner_pid: int | None = None
    owner_host: str | None = None
    idempotency_key: str | None = None
    #: The run of another pipeline whose end started this one (``trigger == "after"``).
    triggered_by: str | None = None
    outputs: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.SUCCESS

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    def latest(self) -> dict[str, TaskAttempt]:
        """The latest recorded state of each task that has one (a mapped task's own row, not its items')."""
        out: dict[str, TaskAttempt] = {}
        for a in self.attempts:
            if a.item is None:
                out[a.task] = a
        return out

    def items(self, task: str) -> dict[int, TaskAttempt]:
        """The latest recorded state of each item of mapped task ``task``, by index."""
        out: dict[int, TaskAttempt] = {}
        for a in self.attempts:
            if a.item is not None and a.task == task:
                out[a.item] = a
        return dict(sorted(out.items()))

    def task_state(self, task: str) -> RunStatus | None:
        """The task's latest state, or None when nothing was recorded for it."""
        a = self.latest().get(task)
        return a.status if a else None

    @property
    def task_states(self) -> dict[str, RunStatus | None]:
        latest = self.latest()
        return {t: (latest[t].status if t in latest else None) for t in self.tasks or latest}

    def executions(self, task: str) -> int:
        """How many times the task was started in this run (across resumes)."""
        return self.execution_counts().get(task, 0)

    def execution_counts(self) -> dict[str, int]:
        """How many times each task was started in this run (one pass over the attempts)."""
        counts: dict[str, int] = {}
        for a in self.attempts:
            if a.attempt > 0 and a.item is None:
                counts[a.task] = counts.get(a.task, 0) + 1
        return counts

    @property
    def check_results(self) -> list[CheckResult]:
        return [c for a in self.attempts for c in a.checks]


def record_to_dict(record: RunRecord) -> dict[str, Any]:
    """A JSON-ready view of a run (``pipewarden runs show --json``, the daemon's API)."""
    return {
        "run_id": record.run_id,
        "pipeline": record.pipeline,
        "status": str(record.status),
        "trigger": record.trigger,
        "version": record.version,
        "params": dict(record.params),
        "logical_date": record.logical_date.isoformat() if record.logical_date else None,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "duration": record.duration,
        "target": record.target,
        "error": record.error,
        "triggered_by": record.triggered_by,
        "tasks": {t: (str(s) if s else None) for t, s in record.task_states.items()},
        "attempts": [
            {
                "task": a.task,
                "item": a.item,
                "attempt": a.attempt,
                "status": str(a.status),
                "started_at": a.started_at,
                "ended_at": a.ended_at,
                "duration": a.duration,
                "rows_in": a.rows_in,
                "rows_out": a.rows_out,
                "error": a.error,
                "reason": a.reason,
                "output_ref": a.output_ref,
                "pokes": a.pokes,
                "checks": [c.to_dict() for c in a.checks],
                **({"logs": a.logs} if a.logs is not None else {}),
            }
            for a in record.attempts
        ],
    }


class AlertState(enum.StrEnum):
    """Where one alert (a rule and one set of labels) stands: inactive -> pending -> firing -> resolved."""

    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """The state of one alert, as the evaluator keeps it in the store and receivers are told.

    ``fingerprint`` identifies the alert: a hash of the rule name and its
    labels. ``active_at`` is when the condition first held (pending began),
    ``fired_at`` when it started firing, ``resolved_at`` when it stopped;
    ``acknowledged_at``/``acknowledged_by`` record a person taking it on.
    ``value`` is the observed value the condition compared; ``run_id`` the run
    that last changed it, when a run did.
    """

    fingerprint: str
    alert: str
    state: AlertState
    severity: str = "warning"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    value: float | None = None
    active_at: float | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    last_sent_at: float | None = None
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    run_id: str | None = None
    updated_at: float | None = None

    @property
    def pipeline(self) -> str | None:
        return self.labels.get("pipeline")


class HistoryKind(enum.StrEnum):
    """What a history entry records: a state entered, a notification's outcome, an automated response, an ack."""

    TRANSITION = "transition"
    NOTIFICATION = "notification"
    ACTION = "action"
    ACK = "ack"


@dataclass(frozen=True, slots=True)
class AlertHistoryEntry:
    """One thing that happened to one alert.

    ``name`` is the state entered (transition), the receiver (notification),
    the action (``resume``, ``trigger``) or the person (ack); ``outcome`` what
    came of it (``sent``, ``failed``, ``started``, ``limited``, ...); ``detail``
    the answer, the new run id or the error; ``run_id`` the run involved.
    """

    fingerprint: str
    alert: str
    kind: str
    at: float
    name: str = ""
    outcome: str = ""
    detail: str = ""
    run_id: str | None = None
    id: int = 0
