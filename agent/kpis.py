"""The delivery KPIs, defined once: success rate, time to recovery, change failure rate, uptime.

Everything here folds finished run records in the order they ended with one
function, :func:`fold`. The metrics (through the ``outcome`` of each
:class:`~agent.events.RunEnded`), the CLI (``pipewarden kpis``) and the
daemon all read these answers; nothing else computes them.

The rules:

- A run reaches a **verdict** when it ends ``success`` or a failure
  (``failed``, ``interrupted``). A ``cancelled`` run reaches none: someone
  stopped it. It changes no KPI except the count of runs by status. A run
  whose tasks were ``cached`` (reused from an earlier run) or ``skipped`` by a
  branch (or a sensor's ``on_timeout="skip"``) ends ``success``: a branch not
  taken is no failure, and a cached output is the task's output. Per task,
  cached and skipped are not executions: the task success rate (over attempts
  that ran) counts them neither way.
- **Success rate**: successful verdicts / verdicts.
- **Time to recovery**: from the end of the first failed run after a success
  (or after the first run) to the end of the next successful run.
- **Change**: a verdict whose pipeline version differs from the previous
  verdict's (the first verdict of a pipeline is a change). A **failed change**
  is a change whose run failed. **Change failure rate** = failed changes /
  changes. Cancelling the first run of a new version and running it again
  makes the second run the change.
- **Up**: the last verdict was a success; **uptime** over a window is the
  share of time up (``avg_over_time(pipewarden_pipeline_up[1d])``).

>>> from agent.records import FAILURES, RunRecord, RunStatus
>>> runs = [RunRecord("1", "p", RunStatus.SUCCESS, version="v1", ended_at=10.0),
...         RunRecord("2", "p", RunStatus.CANCELLED, version="v2", ended_at=20.0),
...         RunRecord("3", "p", RunStatus.FAILED, version="v2", ended_at=30.0),
...         RunRecord("4", "p", RunStatus.SUCCESS, version="v2", ended_at=45.0)]
>>> r = report(runs)
>>> (r.success_rate, r.recovery_times, r.change_failure_rate)
(0.6666666666666666, [15.0], 0.5)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.events import RunOutcome
from agent.records import FAILURES, RunRecord, RunStatus

__all__ = ["Health", "KpiReport", "KpiTracker", "fold", "health_of", "report"]


@dataclass(slots=True)
class Health:
    """What the KPIs remember of a pipeline between runs."""

    version: str | None = None  # version of the last verdict (None: no verdict yet)
    failing_since: float | None = None  # end of the first failure after the last success
    last_success_at: float | None = None
    last_failure_at: float | None = None
    up: bool | None = None


_NOT_COUNTED = RunOutcome(counted=False)
_STEADY_SUCCESS = RunOutcome()
_STEADY_FAILURE = RunOutcome()


def fold(health: Health, status: RunStatus | str, version: str, ended_at: float) -> RunOutcome:
    """Apply one finished run to ``health`` (in place) and say what it meant for the KPIs."""
    failed = status in FAILURES
    if not failed and status != "success":
        return _NOT_COUNTED
    change = health.version is None or version != health.version
    health.version = version
    recovery = None
    if failed:
        if health.failing_since is None:
            health.failing_since = ended_at
        health.last_failure_at = ended_at
    else:
        if health.failing_since is not None:
            recovery = max(0.0, ended_at - health.failing_since)
        health.failing_since = None
        health.last_success_at = ended_at
    health.up = not failed
    if not change and recovery is None:  # the common case, one shared record (this runs on every call)
        return _STEADY_FAILURE if failed else _STEADY_SUCCESS
    return RunOutcome(counted=True, change=change, failed_change=change and failed, recovery_seconds=recovery)


def _end(r: RunRecord) -> float:
    return r.ended_at if r.ended_at is not None else (r.created_at or 0.0)


def health_of(runs: Iterable[RunRecord]) -> Health:
    """The health after ``runs`` (finished runs, oldest first)."""
    h = Health()
    for r in runs:
        fold(h, r.status, r.version, _end(r))
    return h


@dataclass(frozen=True)
class KpiReport:
    """The KPIs of one pipeline over a history of runs."""

    runs: int = 0
    verdicts: int = 0
    successes: int = 0
    recovery_times: list[float] = field(default_factory=list)
    changes: int = 0
    failed_changes: int = 0
    health: Health = field(default_factory=Health)

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.verdicts if self.verdicts else None

    @property
    def mean_time_to_recovery(self) -> float | None:
        return sum(self.recovery_times) / len(self.recovery_times) if self.recovery_times else None

    @property
    def change_failure_rate(self) -> float | None:
        return self.failed_changes / self.changes if self.changes else None


def report(runs: Sequence[RunRecord]) -> KpiReport:
    """The KPIs of ``runs`` (finished runs of one pipeline, oldest first)."""
    h = Health()
    verdicts = successes = changes = failed = 0
    recoveries: list[float] = []
    for r in runs:
        o = fold(h, r.status, r.version, _end(r))
        if not o.counted:
            continue
        verdicts += 1
        successes += r.status is RunStatus.SUCCESS
        changes += o.change
        failed += o.failed_change
        if o.recovery_seconds is not None:
            recoveries.append(o.recovery_seconds)
    return KpiReport(
        runs=len(runs),
        verdicts=verdicts,
        successes=successes,
        recovery_times=recoveries,
        changes=changes,
        failed_changes=failed,
        health=h,
    )


class _Recent(Protocol):
    def recent_runs(self, pipeline: str) -> list[RunRecord]: ...


class KpiTracker:
    """The health of each pipeline in this process, seeded once from the run store (if any).

    ``@monitor`` runs fold here as they end; a process that runs a pipeline
    once (a cron job) starts from what the store says of earlier runs.
    """

    def __init__(self, store: Any = None, *, on_error: Callable[[BaseException], None] | None = None) -> None:
        self.store = store
        self.on_error = on_error
        self._health: dict[str, Health] = {}
        self._lock = threading.Lock()

    def seed(self, pipeline: str) -> Health:
        """The pipeline's health, read from the store the first time it is asked for.

        A store that cannot be read is reported to ``on_error``; the pipeline then
        starts from what this process sees.
        """
        h = self._health.get(pipeline)
        if h is None:
            with self._lock:
                h = self._health.get(pipeline)
                if h is None:
                    h = Health()
                    if self.store is not None:
                        try:
                            h = health_of(self.store.recent_runs(pipeline))
                        except Exception as exc:
                            if self.on_error is not None:
                                self.on_error(exc)
                    self._health[pipeline] = h
        return h

    def outcome(self, pipeline: str, status: RunStatus | str, version: str, ended_at: float) -> RunOutcome:
        h = self._health.get(pipeline) or self.seed(pipeline)
        with self._lock:
            return fold(h, status, version, ended_at)
