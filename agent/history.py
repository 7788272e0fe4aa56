"""The records of orchestrated runs: what the runner writes and the store gives back.

Plain frozen dataclasses; the run store, the CLI, KPIs and (later) alerting
consume them. Timestamps are Unix seconds (floats), as the store keeps them.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.records import RunStatus

if TYPE_CHECKING:  # checks/__init__ imports pandas; the CLI path does not need it
    from checks.result import CheckResult

__all__ = ["FAILED_RUN_STATES", "RunRecord", "RunState", "TaskAttempt", "record_to_dict"]


class RunState(enum.StrEnum):
    """Where a pipeline run stands."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


#: Run outcomes that count as a failure of the pipeline (a cancelled run is neither a success nor a failure).
FAILED_RUN_STATES: frozenset[RunState] = frozenset({RunState.FAILED, RunState.INTERRUPTED})


@dataclass(frozen=True, slots=True)
class TaskAttempt:
    """One recorded state of one task in one run.

    ``attempt`` counts executions of the task in the run (1 for the first);
    states without an execution (skipped, upstream_failed, cancelled before
    start, interrupted before start) carry ``attempt`` 0. ``output_ref`` says
    where a successful output can be found again: an artifact path, ``"none"``
    for a task that returned None, or None when it was not kept.
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

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


@dataclass(frozen=True)
class RunRecord:
    """One pipeline run with the history of its tasks.

    ``tasks`` are the pipeline's task names in dependency order; ``attempts``
    every recorded state in the order written (``task_state`` picks the latest
    per task). ``outputs`` holds the task return values of a run made in this
    process (empty when read back from the store).
    """

    run_id: str
    pipeline: str
    status: RunState
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
    outputs: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status is RunState.SUCCESS

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    def latest(self) -> dict[str, TaskAttempt]:
        """The latest recorded state of each task that has one."""
        out: dict[str, TaskAttempt] = {}
        for a in self.attempts:
            out[a.task] = a
        return out

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
        return sum(1 for a in self.attempts if a.task == task and a.attempt > 0)

    @property
    def check_results(self) -> list[CheckResult]:
        return [c for a in self.attempts for c in a.checks]


def record_to_dict(record: RunRecord) -> dict[str, Any]:
    """A JSON-ready view of a run (``pipewarden runs show --json``)."""
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
        "tasks": {t: (str(s) if s else None) for t, s in record.task_states.items()},
        "attempts": [
            {"task": a.task, "attempt": a.attempt, "status": str(a.status), "started_at": a.started_at,
             "ended_at": a.ended_at, "duration": a.duration, "rows_in": a.rows_in, "rows_out": a.rows_out,
             "error": a.error, "reason": a.reason, "output_ref": a.output_ref,
             "checks": [c.to_dict() for c in a.checks]}
            for a in record.attempts
        ],
    }
