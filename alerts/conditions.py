"""Conditions over pipewarden's own facts, evaluated when a run event arrives.

>>> from agent.events import RunEnded
>>> from alerts.facts import Facts
>>> facts = Facts()
>>> event = RunEnded("r1", "orders", "failed", 0.0, 5.0)
>>> _ = facts.run_ended(event)
>>> RunFailed().observe(event, facts)
[Observation(labels={'pipeline': 'orders'}, active=True, value=1.0, run_id='r1')]

A condition is a small frozen object: ``observe(event, facts)`` returns what
one event says about each alert it concerns (active or not), ``poll(now,
facts)`` what the time says (for the conditions in :mod:`alerts.timed`).
``labels`` names the labels it gives its alerts, so annotation templates can
be checked when a rule is built. No condition evaluates code from a file.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from agent.errors import ConfigError
from agent.events import ChecksEvaluated, RunEnded, TaskEnded
from agent.records import FAILURES, RunStatus

if TYPE_CHECKING:
    from alerts.facts import Facts

__all__ = [
    "CHECK_KINDS",
    "CheckFailed",
    "Condition",
    "ConsecutiveFailures",
    "DRIFT_METHODS",
    "DriftAbove",
    "DuplicatesAbove",
    "NullFractionAbove",
    "Observation",
    "RowsLostAbove",
    "RunFailed",
    "TaskFailed",
]

#: Check kinds, as ``checks.result.Kind`` names them (a bounded label).
CHECK_KINDS = ("loss", "duplication", "drift", "freshness", "schema", "volume", "completeness", "custom", "gx")
#: Drift methods, as the drift check names its measures.
DRIFT_METHODS = ("psi", "ks", "wasserstein", "js", "chi2")


@dataclass(frozen=True, slots=True)
class Observation:
    """What a condition found about one alert: its labels, whether it holds, the value compared, the run."""

    labels: Mapping[str, str]
    active: bool
    value: float | None = None
    run_id: str | None = None


def _names(value: Iterable[str] | str, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    out = tuple(value)
    for v in out:
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{what} must be a list of non-empty names or glob patterns — got {v!r}")
    return out


def _choices(value: Iterable[str] | str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    out = _names(value, what)
    for v in out:
        if v not in allowed:
            raise ConfigError(f"{what} must be among {', '.join(allowed)} — got {v!r}")
    return out


def matches(name: str, patterns: Sequence[str]) -> bool:
    """True when ``name`` matches one of the glob ``patterns`` (an empty list matches everything)."""
    return not patterns or any(p == name or fnmatch.fnmatchcase(name, p) for p in patterns)


class Condition:
    """Base of every condition: what it reads, the labels it sets, how much history it needs."""

    kind: ClassVar[str] = ""
    #: Labels of the alerts it raises.
    labels: ClassVar[tuple[str, ...]] = ("pipeline",)
    #: Event types ``observe`` reads (empty: none).
    events: ClassVar[tuple[type, ...]] = ()
    #: True when ``poll`` must run on the timer. ``poll`` returns every alert of the rule that holds
    #: now; an alert of the rule it leaves out does not hold.
    timed: ClassVar[bool] = False
    pipelines: tuple[str, ...]

    def observe(self, event: Any, facts: Facts) -> list[Observation]:
        return []

    def poll(self, now: float, facts: Facts) -> list[Observation]:
        return []

    def history_window(self) -> float:
        """Seconds of past runs (or export errors) the condition looks at."""
        return 0.0

    def watches(self, pipeline: str) -> bool:
        return matches(pipeline, self.pipelines)


def _pipelines(self: Any) -> None:
    object.__setattr__(self, "pipelines", _names(self.pipelines, f"{self.kind}.pipelines"))


@dataclass(frozen=True)
class RunFailed(Condition):
    """A pipeline run ended failed, timed out or interrupted; it holds until the pipeline's next success.

    The value is the number of failed runs in a row.
    """

    pipelines: tuple[str, ...] = ("*",)
    kind: ClassVar[str] = "run_failed"
    events: ClassVar[tuple[type, ...]] = (RunEnded,)

    def __post_init__(self) -> None:
        _pipelines(self)

    def observe(self, event: Any, facts: Facts) -> list[Observation]:
        if not self.watches(event.pipeline):
            return []
        status = RunStatus(event.status)
        if status in FAILURES:
            streak = facts.pipeline(event.pipeline).streak
            return [Observation({"pipeline": event.pipeline}, True, float(max(streak, 1)), event.run_id)]
        if status is RunStatus.SUCCESS:
            return [Observation({"pipeline": event.pipeline}, False, 0.0, event.run_id)]
        return []


@dataclass(frozen=True)
class ConsecutiveFailures(Condition):
    """``count`` or more runs of a pipeline failed in a row (cancelled runs neither count nor break the row)."""

    count: int = 3
    pipelines: tuple[str, ...] = ("*",)
    kind: ClassVar[str] = "consecutive_failures"
    events: ClassVar[tuple[type, ...]] = (RunEnded,)

    def __post_init__(self) -> None:
        _pipelines(self)
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ConfigError(
                f"consecutive_failures.count must be a whole number of runs, 1 or more — got {self.count!r}"
            )

    def observe(self, event: Any, facts: Facts) -> list[Observation]:
        status = RunStatus(event.status)
        if not self.watches(event.pipeline) or not (status in FAILURES or status is RunStatus.SUCCESS):
            return []
        streak = facts.pipeline(event.pipeline).streak
        return [Observation({"pipeline": event.pipeline}, streak >= self.count, float(streak), event.run_id)]


@dataclass(frozen=True)
class TaskFailed(Condition):
    """A task's last attempt failed or timed out (an attempt that will be retried does not count);
    it holds until the task next succeeds. The value is the attempt number."""

    pipelines: tuple[str, ...] = ("*",)
    tasks: tuple[str, ...] = ("*",)
    kind: ClassVar[str] = "task_failed"
    labels: ClassVar[tuple[str, ...]] = ("pipeline", "task")
    events: ClassVar[tuple[type, ...]] = (TaskEnded,)

    def __post_init__(self) -> None:
        _pipelines(self)
        object.__setattr__(self, "tasks", _names(self.tasks, "task_failed.tasks"))

    def observe(self, event: Any, facts: Facts) -> list[Observation]:
        if not self.watches(event.pipeline) or not matches(event.task, self.tasks):
            return []
        if event.item is not None:  # one item of a mapped task: the task's own end says whether it failed
            return []
        status = RunStatus(event.status)
        labels = {"pipeline": event.pipeline, "task": event.task}
        if status in FAILURES and event.retry_in is None:
            return [Observation(labels, True, float(event.attempt), event.run_id)]
        if status is RunStatus.SUCCESS:
            return [Observation(labels, False, float(event.attempt), event.run_id)]
        return []


def _results(event: Any) -> list[tuple[str, Any]]:
    """(dataset, result) pairs of a TaskEnded or ChecksEvaluated event."""
    if isinstance(event, ChecksEvaluated):
        return [(r.dataset or event.dataset, r) for r in event.results]
    if isinstance(event, TaskEnded):
        return [(r.dataset or event.task, r) for r in event.checks]
    return []


@dataclass(frozen=True)
class CheckFailed(Condition):
    """A data-quality check ended in one of ``statuses`` (default fail or error); it holds until the same
    check on the same dataset passes (or warns) again.

    Filters: ``kinds`` (loss, duplication, drift, ...), ``datasets`` and
    ``checks`` (glob patterns), ``severities`` (the check's own: warn, fail);
    empty means any. The value is the failing result's observed value.
    """

    statuses: tuple[str, ...] = ("fail", "error")
    kinds: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ("*",)
    checks: tuple[str, ...] = ("*",)
    severities: tuple[str, ...] = ()
    pipelines: tuple[str, ...] = ("*",)
    kind: ClassVar[str] = "check_failed"
    labels: ClassVar[tuple[str, ...]] = ("pipeline", "dataset", "check", "kind")
    events: ClassVar[tuple[type, ...]] = (TaskEnded, ChecksEvaluated)

    def __post_init__(self) -> None:
        _pipelines(self)
        set_ = object.__setattr__
        set_(self, "statuses", _choices(self.statuses, ("fail", "error", "warn"), "check_failed.statuses"))
        if not self.statuses:
            raise ConfigError("check_failed.statuses must name at least one of fail, error, warn")
        set_(self, "kinds", _choices(self.kinds, CHECK_KINDS, "check_failed.kinds"))
        set_(self, "datasets", _names(self.datasets, "check_failed.datasets"))
        set_(self, "checks", _names(self.checks, "check_failed.checks"))
        set_(self, "severities", _choices(self.severities, ("warn", "fail"), "check_failed.severities"))

    def observe(self, event: Any, facts: Facts) -> list[Observation]:
        if not self.watches(event.pipeline):
            return []
        verdicts: dict[tuple[str, str, str], Observation] = {}
        for dataset, r in _results(event):
            kind, status = str(r.kind), str(r.status)
            if (
                (self.kinds and kind not in self.kinds)
                or not matches(dataset, self.datasets)
                or not matches(r.check, self.checks)
                or (self.severities and str(r.severity) not in self.severities)
            ):
                continue
            key = (dataset, r.check, kind)
            labels = {"pipeline": event.pipeline, "dataset": dataset, "check": r.check, "kind": kind}
            value = float(r.observed) if isinstance(r.observed, int | float) else None
            seen = verdicts.get(key)
            if status in self.statuses:
                if seen is None or not seen.active:  # one failing column makes the check fail
                    verdicts[key] = Observation(labels, True, value, event.run_id)
            elif status in ("pass", "warn") and seen is None:
                verdicts[key] = Observation(labels, False, value, event.run_id)
            # A status neither watched nor passing (an error, when only failures are watched) says nothing.
        return list(verdicts.values())


@dataclass(frozen=True)
class _MeasureAbove(Condition):
    """A check's observed measure above ``above`` (measures are named on CheckResult.measure)."""

    above: float = 0.0
    datasets: tuple[str, ...] = ("*",)
    pipelines: tuple[str, ...] = ("*",)
    events: ClassVar[tuple[type, ...]] = (TaskEnded, ChecksEvaluated)

    def __post_init__(self) -> None:
        _pipelines(self)
        object.__setattr__(self, "datasets", _names(self.datasets, f"{self.kind}.datasets"))
        if isinstance(self.above, bool) or not isinstance(self.above, int | float) or self.above != self.above:
            raise ConfigError(f"{self.kind}.above must be a number — got {self.above!r}")

    def measures(self) -> Sequence[str]:
        raise NotImplementedError

    def key(self, event: Any, dataset: str, r: Any) -> dict[str, str] | None:
        raise NotImplementedError

    def observe(self, event: Any, facts: Facts) -> list[Observation]:
        if not self.watches(event.pipeline):
            return []
        measures = self.measures()
        verdicts: dict[tuple[tuple[str, str], ...], Observation] = {}
        for dataset, r in _results(event):
            if r.measure not in measures or not isinstance(r.observed, int | float) or str(r.status) == "error":
                continue
            if not matches(dataset, self.datasets):
                continue
            labels = self.key(event, dataset, r)
            if labels is None:
                continue
            value = float(r.observed)
            k = tuple(sorted(labels.items()))
            seen = verdicts.get(k)
            if seen is None or (seen.value is not None and value > seen.value):
                verdicts[k] = Observation(labels, value > self.above, value, event.run_id)
        return list(verdicts.values())


@dataclass(frozen=True)
class DriftAbove(_MeasureAbove):
    """A column's drift score above ``above`` for one of ``methods`` (default psi: scores of different
    methods are on different scales, so name the ones the threshold is for)."""

    methods: tuple[str, ...] = ("psi",)
    columns: tuple[str, ...] = ("*",)
    kind: ClassVar[str] = "drift"
    labels: ClassVar[tuple[str, ...]] = ("pipeline", "dataset", "column", "method")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "methods", _choices(self.methods, DRIFT_METHODS, "drift.methods"))
        object.__setattr__(self, "columns", _names(self.columns, "drift.columns"))
        if not self.methods:
            raise ConfigError(f"drift.methods must name at least one of {', '.join(DRIFT_METHODS)}")

    def measures(self) -> Sequence[str]:
        return self.methods

    def key(self, event: Any, dataset: str, r: Any) -> dict[str, str] | None:
        if r.column is None or not matches(r.column, self.columns):
            return None
        return {"pipeline": event.pipeline, "dataset": dataset, "column": r.column, "method": r.measure}


@dataclass(frozen=True)
class NullFractionAbove(_MeasureAbove):
    """A column's fraction of nulls above ``above`` (0 to 1)."""

    columns: tuple[str, ...] = ("*",)
    kind: ClassVar[str] = "null_fraction"
    labels: ClassVar[tuple[str, ...]] = ("pipeline", "dataset", "column")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "columns", _names(self.columns, "null_fraction.columns"))
        if not 0 <= self.above < 1:
            raise ConfigError(f"null_fraction.above is a fraction from 0 to 1 (0.05 is 5%) — got {self.above!r}")

    def measures(self) -> Sequence[str]:
        return ("null_fraction",)

    def key(self, event: Any, dataset: str, r: Any) -> dict[str, str] | None:
        if r.column is None or not matches(r.column, self.columns):
            return None
        return {"pipeline": event.pipeline, "dataset": dataset, "column": r.column}


@dataclass(frozen=True)
class RowsLostAbove(_MeasureAbove):
    """More than ``above`` rows (or keys) lost across a step or against a source."""

    kind: ClassVar[str] = "rows_lost"
    labels: ClassVar[tuple[str, ...]] = ("pipeline", "dataset", "check")

    def measures(self) -> Sequence[str]:
        return ("rows_lost",)

    def key(self, event: Any, dataset: str, r: Any) -> dict[str, str] | None:
        return {"pipeline": event.pipeline, "dataset": dataset, "check": r.check}


@dataclass(frozen=True)
class DuplicatesAbove(_MeasureAbove):
    """More than ``above`` duplicate rows (extra occurrences of a key or of a whole row)."""

    kind: ClassVar[str] = "duplicates"
    labels: ClassVar[tuple[str, ...]] = ("pipeline", "dataset", "check")

    def measures(self) -> Sequence[str]:
        return ("duplicates",)

    def key(self, event: Any, dataset: str, r: Any) -> dict[str, str] | None:
        return {"pipeline": event.pipeline, "dataset": dataset, "check": r.check}
