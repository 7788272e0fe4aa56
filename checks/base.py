"""What a check is, and what it is given.

A check is any callable ``(df) -> CheckResult | Iterable[CheckResult]``. The
checks in this package subclass :class:`Check`, which also accepts a
:class:`CheckContext` (the call's input frames for loss checks, a history
store for cross-run checks, an injectable clock) and turns an unexpected
exception into a result of status ``error`` instead of raising.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from checks.errors import CheckInputError
from checks.result import CheckResult, Kind, Severity, Status

if TYPE_CHECKING:
    import pandas as pd

    from checks.stream import Plan

__all__ = ["Acceptance", "Check", "CheckContext", "CheckStore", "StoredProfile", "run_check"]


@dataclass(frozen=True, slots=True)
class StoredProfile:
    """One run's profile of a dataset, as a :class:`CheckStore` keeps it for a check's baseline.

    ``accepted`` profiles are baselines: a run's profile is accepted when its
    check did not fail, or later by :func:`checks.accept_baseline`. ``pinned``
    is the time of an explicit acceptance (None when accepted automatically);
    the ``fixed`` baseline follows the latest pin.
    """

    run_id: str
    check: str
    created_at: dt.datetime
    accepted: bool
    pinned: dt.datetime | None
    profile: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Acceptance:
    """A record that someone accepted a run's profiles as the new baseline of a dataset."""

    pipeline: str
    dataset: str
    run_id: str
    accepted_at: dt.datetime
    by: str
    note: str
    profiles: int


@runtime_checkable
class CheckStore(Protocol):
    """History that cross-run checks need; the agent's run store implements it.

    Every history call is keyed by ``pipeline`` and ``dataset``: two pipelines
    that both have a dataset ``transform`` never share a baseline, keys or row
    counts. ``pipeline`` is ``context.pipeline`` (empty for checks called with
    no pipeline). Keys are passed as 64-bit hashes (``numpy.uint64`` arrays),
    never raw values. Profiles are JSON-ready dicts. Times are timezone-aware
    UTC (as :class:`CheckContext` gives them), and come back so.

    Keys: :meth:`add_keys` records a *sighting* of each key at ``now``;
    :meth:`seen_keys` tells which keys have a sighting on record;
    :meth:`prune_keys` forgets sightings before ``before``. A reload is a
    sighting, so a key is forgotten only when its *last* sighting is older
    than the cut-off. How long keys are kept is the check's decision
    (``unique_across_runs(retention_days=)``), not the store's.

    ``tests/checks/test_store_conformance.py`` holds the behaviour every
    implementation must show.
    """

    # -- named reference profiles (profile(df).save(store, name, pipeline=...)) -------------
    def save_profile(self, pipeline: str, name: str, profile: dict[str, Any]) -> None: ...

    def load_profile(self, pipeline: str, name: str) -> dict[str, Any] | None: ...

    # -- run profiles: the baselines of drift -------------------------------------------------
    def add_profile(
        self,
        pipeline: str,
        dataset: str,
        check: str,
        profile: dict[str, Any],
        *,
        run_id: str,
        now: dt.datetime,
        accepted: bool,
        pinned: bool = False,
        keep: int = 100,
    ) -> None:
        """Record a run's profile; keep the newest ``keep`` of this check's profiles plus every pinned one."""
        ...

    def profiles(
        self, pipeline: str, dataset: str, check: str, *, limit: int, accepted_only: bool = True
    ) -> list[StoredProfile]:
        """This check's recorded profiles of ``dataset``, newest first."""
        ...

    def accept_profiles(
        self, pipeline: str, dataset: str, run_id: str | None, *, now: dt.datetime, by: str, note: str
    ) -> int:
        """Accept and pin the profiles of run ``run_id`` (None: each check's newest), record who did it.

        Returns how many profiles were accepted; 0 (and nothing recorded) when
        there is no such profile.
        """
        ...

    def acceptances(self, pipeline: str, dataset: str, *, limit: int = 50) -> list[Acceptance]:
        """Acceptances of ``dataset``'s baselines, newest first."""
        ...

    # -- key hashes ---------------------------------------------------------------------------
    def seen_keys(self, pipeline: str, dataset: str, hashes: Any) -> Any:
        """Return a boolean array: which of ``hashes`` have a sighting on record."""
        ...

    def add_keys(self, pipeline: str, dataset: str, hashes: Any, *, run_id: str, now: dt.datetime) -> None:
        """Record a sighting at ``now`` of each of ``hashes`` (keys seen before included)."""
        ...

    def prune_keys(self, pipeline: str, dataset: str, before: dt.datetime) -> int:
        """Forget sightings before ``before``; return how many distinct keys are no longer remembered."""
        ...

    # -- row counts ---------------------------------------------------------------------------
    def row_count_history(self, pipeline: str, dataset: str, limit: int) -> list[tuple[dt.datetime, int]]:
        """``(time, rows)`` of earlier runs, newest first."""
        ...

    def add_row_count(self, pipeline: str, dataset: str, rows: int, *, run_id: str, now: dt.datetime) -> None: ...


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What a check may use besides the frame it judges.

    ``inputs`` are the DataFrame arguments of the monitored call (for loss
    across a step); ``store`` is the history for cross-run checks (None when
    no store is configured: such checks then return status ``error`` saying so).
    ``now`` is timezone-aware UTC: a naive time is taken as UTC, an aware one
    converted, once here so that no check or store has to. ``logical_date`` is
    the time the data is for (a scheduled or backfilled run's date), when the
    caller knows it; ``volume`` files its row count under it. ``pipeline`` and
    ``dataset`` key every piece of history a check keeps.

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
    logical_date: dt.datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "now", _utc(self.now))  # frozen: set once, before anyone reads it
        if self.logical_date is not None:
            object.__setattr__(self, "logical_date", _utc(self.logical_date))

    @property
    def data_time(self) -> dt.datetime:
        """The time the data is for: ``logical_date`` when the run has one, else ``now``."""
        return self.logical_date if self.logical_date is not None else self.now


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


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

    def __init__(
        self,
        *,
        name: str | None = None,
        severity: Severity | str = Severity.FAIL,
        on_error: Severity | str = Severity.FAIL,
    ) -> None:
        self.name = name or type(self).__name__
        self.severity = Severity(severity)
        #: ``warn``: a result of status ``error`` (the check could not run) is recorded with
        #: severity warn and does not block; ``fail`` (the default): it blocks like a failure.
        self.on_error = Severity(on_error)

    def evaluate(self, df: Any, context: CheckContext) -> CheckResult | Iterable[CheckResult]:
        raise NotImplementedError

    def plan(self, context: CheckContext, prototype: pd.DataFrame) -> Plan:
        """How this check reads a table in batches (see :mod:`checks.stream`); ``prototype`` has zero rows.

        Raises :class:`~checks.errors.CheckInputError` when the table cannot be
        checked (a missing column), as :meth:`evaluate` would on the whole frame.
        """
        raise CheckInputError(f"{type(self).__name__} does not read tables in batches; give it a pandas DataFrame")

    def __call__(self, df: Any, context: CheckContext | None = None) -> list[CheckResult]:
        """Results on ``df``: a pandas DataFrame, or a table read in batches when the check reads streams.

        A table in batches is an iterable of DataFrames, a pyarrow Table or
        RecordBatchReader, a parquet path or pyarrow dataset, or a Dask
        DataFrame (see :mod:`checks.source`).
        """
        ctx = context if context is not None else CheckContext()
        if type(self).plan is not Check.plan and _is_stream(df):
            from checks.stream import run_checks

            return run_checks([self], df, ctx)
        try:
            out = self.evaluate(df, ctx)
            results = [out] if isinstance(out, CheckResult) else list(out)
        except CheckInputError as exc:  # the frame cannot be checked: say what was found
            results = [self.result(Status.ERROR, message=f"{self.name}: {exc}", column=exc.column)]
        except Exception as exc:  # a check never raises into the pipeline
            results = [self.result(Status.ERROR, message=f"{self.name}: {type(exc).__name__}: {exc}")]
        if self.on_error is Severity.WARN:
            results = [replace(r, severity=Severity.WARN) if r.status is Status.ERROR else r for r in results]
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


def _is_stream(df: Any) -> bool:
    """True for a table read in batches (not a pandas DataFrame); decided without importing pandas."""
    if df is None or isinstance(df, bytes | dict):
        return False
    if isinstance(df, str | os.PathLike):
        return True
    module = type(df).__module__ or ""
    if module.startswith("pandas"):
        return False
    if module.startswith(("pyarrow", "dask")):
        return True
    if isinstance(df, Iterator):
        return True
    from checks.source import is_table_source

    return is_table_source(df)


def _one_shot(df: Any) -> bool:
    return isinstance(df, Iterator) or type(df).__name__ == "RecordBatchReader"


def run_check(check: Any, df: Any, context: CheckContext) -> list[CheckResult]:
    """Run any check callable and always get a list of results back.

    pipewarden checks get the context; a plain callable gets only the frame.
    An exception from a plain callable becomes one result of status ``error``.
    Every result without a dataset gets ``context.dataset``, as from a :class:`Check`.

    This is what ``@monitor`` and the runner call on a task's output. An
    iterator (a generator of frames, a RecordBatchReader) gets an ``error``
    result and is left unread: reading it here would leave nothing for the
    code the output is returned to. Return a list of frames, a pyarrow Table,
    a parquet path or dataset, or a Dask DataFrame instead; to check an
    iterator yourself, call ``checks.run_checks([...], iterator)``.
    """
    if isinstance(check, Check):
        if _one_shot(df):
            return _stamp(
                [
                    check.result(
                        Status.ERROR,
                        message=f"{check.name}: the output is an iterator ({type(df).__name__}), which can be "
                        "read only once; checking it would leave nothing for the code it is returned to. Return "
                        "a list of frames, a pyarrow Table, a parquet path or dataset, or a Dask DataFrame",
                    )
                ],
                context.dataset,
            )
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
        return error(
            f"{name} returned {type(out).__name__}; a check must return a CheckResult, a list of them, or a bool"
        )
    if not all(isinstance(r, CheckResult) for r in results):
        return error(f"{name} returned a list with non-CheckResult items")
    return results
