"""The record every check returns.

`CheckResult` is one of the records that cross module boundaries: checks
produce it, the runner and `@monitor` decide what it means, exporters turn it
into metrics and spans, the run store keeps it. It lives in `checks/` so that
`checks` depends on nothing else of pipewarden's.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CheckResult", "Kind", "Severity", "Status"]


class Status(enum.StrEnum):
    """Outcome of one check: ``error`` means the check could not run."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"


class Kind(enum.StrEnum):
    """What a check looks at; a bounded label on every check metric."""

    LOSS = "loss"
    DUPLICATION = "duplication"
    DRIFT = "drift"
    FRESHNESS = "freshness"
    SCHEMA = "schema"
    VOLUME = "volume"
    COMPLETENESS = "completeness"
    CUSTOM = "custom"
    GX = "gx"


class Severity(enum.StrEnum):
    """What a violated (or unrunnable) check becomes: ``warn`` is recorded, ``fail`` blocks downstream."""

    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check on one frame.

    >>> r = CheckResult("row_count", Kind.VOLUME, Status.PASS, observed=10, threshold=1)
    >>> r.ok
    True

    ``observed`` and ``threshold`` are the headline numbers (for a drift check,
    the score and the limit); ``column`` names the column when the result is
    about one; ``measure`` names what ``observed`` is (``null_fraction``,
    ``duplicates``, ``rows_lost``, ``psi``, ``freshness_lag_seconds`` ...) so
    exporters can route it to the right gauge; ``details`` carries what a
    person needs to act (example keys, per-column scores, counts).

    Measures that exporters turn into gauges (see ``exporters/catalogue.py``):
    ``row_count``, ``null_fraction`` (per ``column``), ``duplicates``,
    ``rows_lost``, ``freshness_lag_seconds`` (per ``column``), and the drift
    methods ``psi``, ``ks``, ``wasserstein``, ``js``, ``chi2`` (per ``column``).
    A check over several columns returns one result per column.
    """

    check: str
    kind: Kind
    status: Status
    observed: float | None = None
    threshold: float | None = None
    column: str | None = None
    measure: str | None = None
    message: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    severity: Severity = Severity.FAIL
    dataset: str | None = None

    @property
    def ok(self) -> bool:
        """True unless the check failed or could not run."""
        return self.status in (Status.PASS, Status.WARN)

    @property
    def detail(self) -> str:
        """The message without the check name it starts with, for displays that show the name already."""
        prefix = f"{self.check}: "
        return self.message[len(prefix) :] if self.message.startswith(prefix) else self.message

    @property
    def blocking(self) -> bool:
        """True when this result should stop downstream work: a check of severity fail that failed
        or could not run (status ``error``). Quality gates fail closed: a check that cannot judge
        the data lets nothing through. ``Check(on_error="warn")`` records its errors with severity
        ``warn``, so they do not block.
        """
        return self.severity is Severity.FAIL and self.status in (Status.FAIL, Status.ERROR)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (used by the run store, the CLI and span attributes)."""
        return {
            "check": self.check,
            "kind": str(self.kind),
            "status": str(self.status),
            "observed": self.observed,
            "threshold": self.threshold,
            "column": self.column,
            "measure": self.measure,
            "message": self.message,
            "details": dict(self.details),
            "severity": str(self.severity),
            "dataset": self.dataset,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            check=d["check"],
            kind=Kind(d["kind"]),
            status=Status(d["status"]),
            observed=d.get("observed"),
            threshold=d.get("threshold"),
            column=d.get("column"),
            measure=d.get("measure"),
            message=d.get("message", ""),
            details=d.get("details") or {},
            severity=Severity(d.get("severity", "fail")),
            dataset=d.get("dataset"),
        )
