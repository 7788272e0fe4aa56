"""The facts rules are evaluated over: recent runs per pipeline, last successes, failure streaks, export errors.

Run events keep them current; :class:`RunHistory` (which the run store
satisfies) fills them in the first time a pipeline is seen, so a restarted
evaluator knows a pipeline's last success and its failure streak without
waiting for new runs.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from agent.events import RunEnded
from agent.records import FAILURES, RunRecord, RunStatus

__all__ = ["ExportError", "Facts", "PipelineFacts", "RunFact", "RunHistory"]

log = logging.getLogger("pipewarden.alerts")

# Run keys remembered per pipeline to tell a run reported twice. A run is reported twice only when it
# ends while its pipeline's history is being read, so the newest few keys are enough; 4096 cost
# 0.7 MiB a pipeline once it had run that often (77 MiB for 110 one-minute pipelines, after 3 days).
_REMEMBERED = 64


@runtime_checkable
class RunHistory(Protocol):
    """Finished runs, as ``agent.store.RunStore`` keeps them."""

    def pipeline_history(self, pipeline: str, *, limit: int | None = None) -> list[RunRecord]:
        """Finished runs of ``pipeline``, oldest first (the newest ``limit`` of them)."""
        ...

    def list_runs(self, *, pipeline: str | None = None, status: str | None = None, limit: int = 50) -> list[RunRecord]:
        """Runs, newest first."""
        ...


@dataclass(frozen=True, slots=True)
class RunFact:
    """One finished run as the rules see it."""

    run_id: str
    status: RunStatus
    ended_at: float
    duration: float | None = None

    @property
    def verdict(self) -> bool:
        """True for runs that count in rates and streaks: a success or a failure (not a cancellation)."""
        return self.status is RunStatus.SUCCESS or self.status in FAILURES


@dataclass(slots=True)
class PipelineFacts:
    """What is known about one pipeline: its recent runs (oldest first), last success and failure streak."""

    name: str
    runs: collections.deque[RunFact] = field(default_factory=collections.deque)
    last_success: float | None = None
    first_seen: float | None = None
    streak: int = 0
    last_run_id: str | None = None
    #: The run that ended last, kept whatever the window.
    last: RunFact | None = None
    # Runs recorded lately, kept apart from ``runs`` (which a short window trims): the store and the
    # event may both report one run, in either order.
    _keys: set[tuple[str, float]] = field(default_factory=set)
    _key_order: collections.deque[tuple[str, float]] = field(default_factory=collections.deque)

    def add(self, fact: RunFact) -> bool:
        """Record a finished run; False when it was known already (the store and the event both told)."""
        key = (fact.run_id, fact.ended_at)
        if key in self._keys:
            return False
        self._keys.add(key)
        self._key_order.append(key)
        if len(self._key_order) > _REMEMBERED:
            self._keys.discard(self._key_order.popleft())
        self.runs.append(fact)
        if self.first_seen is None or fact.ended_at < self.first_seen:
            self.first_seen = fact.ended_at
        if fact.status is RunStatus.SUCCESS:
            self.last_success = max(self.last_success or fact.ended_at, fact.ended_at)
            self.streak = 0
        elif fact.status in FAILURES:
            self.streak += 1
        if self.last is None or fact.ended_at >= self.last.ended_at:
            self.last = fact
            self.last_run_id = fact.run_id
        return True

    def trim(self, before: float, max_runs: int) -> None:
        """Forget runs that ended before ``before`` and all but the newest ``max_runs``."""
        runs = self.runs
        while runs and (runs[0].ended_at < before or len(runs) > max_runs):
            runs.popleft()

    def window(self, since: float) -> list[RunFact]:
        """Runs that ended at or after ``since``."""
        return [r for r in self.runs if r.ended_at >= since]


@dataclass(frozen=True, slots=True)
class ExportError:
    """A telemetry export that failed (``exporter`` as in ``pipewarden_export_errors_total``)."""

    exporter: str
    pipeline: str
    at: float


class Facts:
    """Per-pipeline facts, filled from ``history`` on first sight and kept current by run events.

    ``keep`` is how many seconds of runs and export errors the rules need
    (their longest window); ``max_runs`` caps the runs kept per pipeline.
    Not thread-safe: the evaluator calls it under its lock.
    """

    def __init__(
        self, history: RunHistory | None = None, *, keep: float = 0.0, max_runs: int = 5000, started_at: float = 0.0
    ) -> None:
        self.history = history
        self.keep = keep
        self.max_runs = max_runs
        self.started_at = started_at
        self._pipelines: dict[str, PipelineFacts] = {}
        self._names: set[str] = set()
        self.export_errors: collections.deque[ExportError] = collections.deque()
        self._warned = False

    def discover(self, limit: int = 1000) -> None:
        """Learn the pipeline names of the latest ``limit`` runs in the history (timed rules watch them)."""
        if self.history is None:
            return
        try:
            self._names.update(r.pipeline for r in self.history.list_runs(limit=limit))
        except Exception as exc:
            self._history_failed(exc)

    def names(self) -> list[str]:
        """Every pipeline seen in events or found in the history, sorted."""
        return sorted(self._names | self._pipelines.keys())

    def pipeline(self, name: str, now: float | None = None) -> PipelineFacts:
        """The facts of ``name``, read from the history the first time."""
        facts = self._pipelines.get(name)
        if facts is None:
            facts = self._pipelines[name] = self._seed(name)
            self._names.add(name)
        if now is not None:
            facts.trim(now - self.keep, self.max_runs)
        return facts

    def run_ended(self, event: RunEnded) -> PipelineFacts:
        """Record the run ``event`` reports."""
        facts = self.pipeline(event.pipeline)
        duration = event.duration or (event.ended_at - event.started_at if event.started_at else None)
        facts.add(RunFact(event.run_id, RunStatus(event.status), event.ended_at, duration))
        facts.trim(event.ended_at - self.keep, self.max_runs)
        return facts

    def export_failed(self, error: ExportError) -> None:
        self.export_errors.append(error)

    def recent_export_errors(self, now: float) -> list[ExportError]:
        """Export errors of the last ``keep`` seconds (older ones are forgotten)."""
        errors = self.export_errors
        while errors and errors[0].at < now - self.keep:
            errors.popleft()
        return list(errors)

    def _seed(self, name: str) -> PipelineFacts:
        facts = PipelineFacts(name)
        if self.history is None:
            return facts
        try:
            records = self.history.pipeline_history(name, limit=self.max_runs)
            for r in records:
                end = r.ended_at if r.ended_at is not None else r.created_at
                if end is None:
                    continue
                facts.add(RunFact(r.run_id, RunStatus(r.status), end, r.duration))
            if facts.last_success is None and records:
                # The success may be older than the runs read: ask for it alone.
                last = self.history.list_runs(pipeline=name, status=str(RunStatus.SUCCESS), limit=1)
                if last and (last[0].ended_at or last[0].created_at):
                    facts.last_success = last[0].ended_at or last[0].created_at
        except Exception as exc:
            self._history_failed(exc)
        return facts

    def _history_failed(self, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "pipewarden alerts could not read the run history (%s: %s); rules see only the runs of this process",
                type(exc).__name__,
                exc,
            )

    def seen(self) -> Iterable[PipelineFacts]:
        return self._pipelines.values()
