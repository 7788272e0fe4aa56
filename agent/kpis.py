"""Delivery KPIs computed from run history: success rate, time to recovery, change failure rate.

The runner also keeps the matching metrics current as runs end
(``pipewarden_pipeline_recovery_seconds``, ``_changes_total``,
``_failed_changes_total``, ``_up``, ``_last_success/_failure_timestamp_seconds``);
these functions answer the same questions from the store, e.g. for a report
or after a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.records import FAILURES, RunRecord, RunStatus
from agent.store import RunStore

__all__ = ["Change", "change_failure_rate", "changes", "mean_time_to_recovery", "recovery_times", "success_rate"]


@dataclass(frozen=True, slots=True)
class Change:
    """The first run of a new pipeline version, and whether it failed."""

    version: str
    run_id: str
    failed: bool


def _history(store: RunStore, pipeline: str, last: int | None) -> list[RunRecord]:
    return [r for r in store.pipeline_history(pipeline, limit=last) if r.status is not RunStatus.CANCELLED]


def success_rate(store: RunStore, pipeline: str, *, last: int | None = None) -> float | None:
    """Successful runs / finished runs (cancelled runs excluded); None with no history."""
    runs = _history(store, pipeline, last)
    if not runs:
        return None
    return sum(r.status is RunStatus.SUCCESS for r in runs) / len(runs)


def recovery_times(store: RunStore, pipeline: str, *, last: int | None = None) -> list[float]:
    """Seconds from the end of each first failed run to the end of the next successful run."""
    return _recoveries(_history(store, pipeline, last))


def _recoveries(runs: Sequence[RunRecord]) -> list[float]:
    out = []
    failing_since: float | None = None
    for r in runs:
        end = r.ended_at if r.ended_at is not None else r.created_at
        if end is None:
            continue
        if r.status in FAILURES:
            if failing_since is None:
                failing_since = end
        elif r.status is RunStatus.SUCCESS and failing_since is not None:
            out.append(max(0.0, end - failing_since))
            failing_since = None
    return out


def mean_time_to_recovery(store: RunStore, pipeline: str, *, last: int | None = None) -> float | None:
    """Mean of :func:`recovery_times`; None when the pipeline never recovered from a failure."""
    times = recovery_times(store, pipeline, last=last)
    return sum(times) / len(times) if times else None


def changes(store: RunStore, pipeline: str, *, last: int | None = None) -> list[Change]:
    """Runs whose version differs from the run before (the first run is a change too)."""
    out = []
    previous: str | None = None
    for r in _history(store, pipeline, last):
        if r.version != previous:
            out.append(Change(r.version, r.run_id, r.status in FAILURES))
        previous = r.version
    return out


def change_failure_rate(store: RunStore, pipeline: str, *, last: int | None = None) -> float | None:
    """Failed changes / changes: how often a new version's first run fails; None with no history."""
    cs = changes(store, pipeline, last=last)
    if not cs:
        return None
    return sum(c.failed for c in cs) / len(cs)
