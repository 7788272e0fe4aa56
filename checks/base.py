"""What a check is, and what it is given.

A check is any callable ``(df) -> CheckResult | Iterable[CheckResult]``. The
checks in this package subclass :class:`Check`, which also accepts a
:class:`CheckContext` (the call's input frames for loss checks, a history
store for cross-run checks, an injectable clock) and turns an unexpected
exception into a result of status ``error`` instead of raising.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol, runtime_checkable

from checks.errors import CheckInputError
from checks.result import CheckResult, Kind, Severity, Status

__all__ = ["Check", "CheckContext", "CheckStore", "run_check"]


@runtime_checkable
class CheckStore(Protocol):
    """History that cross-run checks need; the agent's run store implements it.

    Keys are passed as 64-bit hashes (``numpy.uint64`` arrays), never raw values.
    Profiles are JSON-ready dicts. Times are timezone-aware UTC (as
    :class:`CheckContext` gives them). How long keys are kept is the check's
    decision, not the store's: ``unique_across_runs`` calls :meth:`prune_keys`.
    """

    def save_profile(self, name: str, profile: dict[str, Any]) -> None: ...

    def load_profile(self, name: str) -> dict[str, Any] | None: ...

    def seen_keys(self, dataset: str, hashes: Any) -> Any:
        """Return a boolean array: which of ``hashes`` were recorded for ``dataset`` before."""
        ...

    def add_keys(self, dataset: str, hashes: Any, *, run_id: str, now: dt.datetime) -> None: ...

    def prune_keys(self, dataset: str, before: dt.datetime) -> int:
        """Forget the keys of ``dataset`` recorded before ``before``; return how many were dropped."""
        ...

    def row_count_history(self, dataset: str, limit: int) -> list[int]:
        """Row counts of earlier runs for ``dataset``, newest first."""
        ...

    def add_row_count(self, dataset: str, rows: int, *, run_id: str, now: dt.datetime) -> None: ...


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What a check may use besides the frame it judges.

    ``inputs`` are the DataFrame arguments of the monitored call (for loss
    across a step); ``store`` is the history for cross-run checks (None when
    no store is configured: such checks then return status ``error`` saying so).
    ``now`` is timezone-aware UTC: a naive time is taken as UTC, an aware one
    converted, once here so that no check or store has to.

    >>> CheckContext(now=dt.datetime(2024, 1, 1, 12)).now.isoformat()
    '2024-01-01T12:00:00+00:00'
    """

    pipeline: str = ""
    task: str = ""
    dataset: str = ""
    run_id: str = ""
    inputs: Sequence[Any] = ()
    store: CheckStore | None = None
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def __post_init__(self) -> None:
        now = self.now
        utc = now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now.astimezone(dt.UTC)
        object.__setattr__(self, "now", utc)  # frozen: set once, before anyone reads it


class Check:
    """Base for pipewarden's checks: subclasses implement :meth:`evaluate`.

    >>> class AlwaysPass(Check):
    ...     kind = Kind.CUSTOM
    ...     def evaluate(self, df, context):
    ...         return self.result(Status.PASS)
    >>> AlwaysPass()(None)[0].status
    <Status.PASS: 'pass'>
    """

    kind: ClassVar[Kind] = Kind.CUSTOM
    #: True when the check needs a CheckStore (the runner then supplies one).
    needs_store: ClassVar[bool] = False

    def __init__(self, *, name: str | None = None, severity: Severity | str = Severity.FAIL) -> None:
        self.name = name or type(self).__name__
        self.severity = Severity(severity)

    def evaluate(self, df: Any, context: CheckContext) -> CheckResult | Iterable[CheckResult]:
        raise NotImplementedError

    def __call__(self, df: Any, context: CheckContext | None = None) -> list[CheckResult]:
        ctx = context if context is not None else CheckContext()
        try:
            out = self.evaluate(df, ctx)
            results = [out] if isinstance(out, CheckResult) else list(out)
        except CheckInputError as exc:  # the frame cannot be checked: say what was found
            results = [self.result(Status.ERROR, message=f"{self.name}: {exc}", column=exc.column)]
        except Exception as exc:  # a check never raises into the pipeline
            results = [self.result(Status.ERROR, message=f"{self.name}: {type(exc).__name__}: {exc}")]
        return _stamp(results, ctx.dataset)

    def result(self, status: Status, **kw: Any) -> CheckResult:
        """A result of this check's name, kind and severity; a violation becomes ``warn`` under severity warn."""
        if status is Status.FAIL and self.severity is Severity.WARN:
            status = Status.WARN
        return CheckResult(self.name, self.kind, status, severity=self.severity, **kw)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} severity={self.severity}>"


def _stamp(results: list[CheckResult], dataset: str) -> list[CheckResult]:
    """Results with ``dataset`` filled in where a check left it empty."""
    if not dataset:
        return results
    return [r if r.dataset else replace(r, dataset=dataset) for r in results]


def run_check(check: Any, df: Any, context: CheckContext) -> list[CheckResult]:
    """Run any check callable and always get a list of results back.

    pipewarden checks get the context; a plain callable gets only the frame.
    An exception from a plain callable becomes one result of status ``error``.
    Every result without a dataset gets ``context.dataset``, as from a :class:`Check`.
    """
    if isinstance(check, Check):
        return check(df, context)
    return _stamp(_plain_results(check, df), context.dataset)


def _plain_results(check: Any, df: Any) -> list[CheckResult]:
    name = getattr(check, "__name__", None) or type(check).__name__

    def error(message: str) -> list[CheckResult]:
        return [CheckResult(name, Kind.CUSTOM, Status.ERROR, message=message)]

    try:
        out = check(df)
    except Exception as exc:
        return error(f"{name}: {type(exc).__name__}: {exc}")
    if isinstance(out, CheckResult):
        return [out]
    if isinstance(out, bool):  # a predicate: True passes
        return [CheckResult(name, Kind.CUSTOM, Status.PASS if out else Status.FAIL)]
    try:
        results = list(out)
    except TypeError:
        return error(f"{name} returned {type(out).__name__}; a check must return a CheckResult, "
                     "a list of them, or a bool")
    if not all(isinstance(r, CheckResult) for r in results):
        return error(f"{name} returned a list with non-CheckResult items")
    return results
