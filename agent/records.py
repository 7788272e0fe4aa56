"""States shared by the decorator, the runner, the store and the exporters."""

from __future__ import annotations

import enum

__all__ = ["RunStatus", "otel_result"]


class RunStatus(enum.StrEnum):
    """Where a run or task run is; every final state is recorded, with metrics and spans."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

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
}


def otel_result(status: RunStatus | str) -> str:
    """The CI/CD semantic-convention result for a pipewarden status."""
    return _OTEL_RESULT.get(status, "error")
