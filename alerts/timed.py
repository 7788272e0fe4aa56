"""Conditions the time decides: staleness, SLA deadlines, windows over recent runs, failing exports.

>>> from alerts.facts import Facts, RunFact
>>> facts = Facts(started_at=0.0)
>>> _ = facts.pipeline("orders").add(RunFact("r1", "success", 100.0))
>>> Stale(max_age=3600).poll(100.0 + 7200, facts)
[Observation(labels={'pipeline': 'orders'}, active=True, value=7200.0, run_id=None)]

``poll(now, facts)`` returns the alerts that hold now; the evaluator resolves
the rule's other alerts. The window conditions (duration, success rate) are
also evaluated when a run ends, so a slow or failed run alerts at once.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.errors import ConfigError
from agent.events import RunEnded
from agent.records import RunStatus
from alerts.conditions import Condition, Observation, _names, _pipelines, matches

if TYPE_CHECKING:
    from alerts.facts import Facts, PipelineFacts

__all__ = [
    "DeadlineMissed",
    "DurationAbove",
    "ExportsFailing",
    "STATS",
    "Stale",
    "SuccessRateBelow",
    "check_cron",
    "check_timezone",
    "quantile",
]

#: Statistics a duration rule can compare.
STATS = ("last", "mean", "max", "p50", "p90", "p95", "p99")


def _seconds(value: Any, what: str, *, positive: bool = True) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        raise ConfigError(f"{what} must be a {'positive ' if positive else ''}number of seconds — got {value!r}")
    return float(value)


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a whole number, 1 or more — got {value!r}")
    return value


def _explicit(patterns: Sequence[str]) -> list[str]:
    """The pipeline names in ``patterns`` that are not globs: watched even before their first run."""
    return [p for p in patterns if not any(c in p for c in "*?[")]


def _watched(condition: Condition, facts: Facts) -> list[str]:
    names = set(facts.names()) | set(_explicit(condition.pipelines))
    return sorted(n for n in names if condition.watches(n))


def check_timezone(name: object) -> str:
    """``name`` if it is an IANA time zone; ConfigError (a ValueError) saying what to write otherwise."""
    try:
        ZoneInfo(name)  # type: ignore[arg-type]
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(f"time zone {name!r} is unknown; use an IANA name like 'Europe/Paris' or 'UTC'") from None
    return str(name)


def check_cron(expr: object) -> str:
    """``expr`` if it is a five-field cron expression; ConfigError (a ValueError) saying what to write otherwise."""
    from croniter import croniter

    if not isinstance(expr, str) or len(expr.split()) != 5 or not croniter.is_valid(expr):
        raise ConfigError(
            f"{expr!r} is not a cron expression; write five fields 'minute hour day-of-month "
            "month day-of-week', e.g. '0 6 * * *' for 06:00 daily"
        )
    return expr


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class Stale(Condition):
    """A pipeline's last success is older than ``max_age`` seconds. The value is its age.

    A pipeline that never succeeded counts from its first recorded run; one
    named in ``pipelines`` that never ran, from the evaluator's start.
    """

    max_age: float = 26 * 3600.0
    pipelines: tuple[str, ...] = ("*",)
    kind: ClassVar[str] = "stale"
    timed: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _pipelines(self)
        object.__setattr__(self, "max_age", _seconds(self.max_age, "stale.max_age"))

    def poll(self, now: float, facts: Facts) -> list[Observation]:
        out = []
        for name in _watched(self, facts):
            pf = facts.pipeline(name)
            since = pf.last_success if pf.last_success is not None else (pf.first_seen or facts.started_at)
            age = now - since
            if age > self.max_age:
                out.append(Observation({"pipeline": name}, True, age))
        return out


@dataclass(frozen=True)
class DeadlineMissed(Condition):
    """An SLA deadline passed without a success: ``cron`` gives the deadlines (``"0 6 * * *"``: 06:00
    daily) in ``timezone``; a success within ``within`` seconds before a deadline meets it (default:
    since the previous deadline). It holds from the deadline until a success (late) or until the next
    deadline is met. The value is how late it is, in seconds.

    A deadline before the pipeline's first recorded run (or, for a pipeline
    that never ran, before the evaluator started) is not held against it.
    """

    cron: str = "0 6 * * *"
    timezone: str = "UTC"
    within: float | None = None
    pipelines: tuple[str, ...] = ("*",)
    kind: ClassVar[str] = "deadline"
    timed: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _pipelines(self)
        check_timezone(self.timezone)
        check_cron(self.cron)
        if self.within is not None:
            object.__setattr__(self, "within", _seconds(self.within, "deadline.within"))

    def deadlines(self, now: float) -> tuple[float, float]:
        """The last deadline at or before ``now`` and the start of its window, as Unix times."""
        from croniter import croniter

        tz = ZoneInfo(self.timezone)
        # croniter's get_prev is strictly before its start: start a microsecond later so a deadline
        # exactly at ``now`` counts as passed.
        it = croniter(self.cron, dt.datetime.fromtimestamp(now + 1e-6, tz))
        deadline = it.get_prev(dt.datetime).timestamp()
        if self.within is not None:
            return deadline, deadline - self.within
        return deadline, it.get_prev(dt.datetime).timestamp()

    def poll(self, now: float, facts: Facts) -> list[Observation]:
        deadline, start = self.deadlines(now)
        out = []
        for name in _watched(self, facts):
            pf = facts.pipeline(name)
            known = pf.first_seen if pf.first_seen is not None else facts.started_at
            if known > deadline:
                continue
            if pf.last_success is None or pf.last_success < start:
                out.append(Observation({"pipeline": name}, True, now - deadline))
        return out


class _Window(Condition):
    """Evaluated over the runs of the last ``window`` seconds, when a run ends and on the timer."""

    events: ClassVar[tuple[type, ...]] = (RunEnded,)
    timed: ClassVar[bool] = True

    def measure(self, pf: PipelineFacts, now: float) -> Observation | None:
        raise NotImplementedError

    def observe(self, event: Any, facts: Facts) -> list[Observation]:
        if not self.watches(event.pipeline):
            return []
        obs = self.measure(facts.pipeline(event.pipeline), event.ended_at)
        if obs is None:
            return [Observation({"pipeline": event.pipeline}, False, None, event.run_id)]
        return [Observation(obs.labels, obs.active, obs.value, event.run_id)]

    def poll(self, now: float, facts: Facts) -> list[Observation]:
        out = []
        for name in _watched(self, facts):
            obs = self.measure(facts.pipeline(name, now), now)
            if obs is not None and obs.active:
                out.append(obs)
        return out


@dataclass(frozen=True)
class DurationAbove(_Window):
    """A pipeline's run duration above ``above`` seconds: the ``last`` run's (default) or a statistic
    (``mean``, ``max``, ``p50``, ``p90``, ``p95``, ``p99``) of the runs that ended in the last ``window``
    seconds, once there are ``min_runs`` of them. The value is the statistic."""

    above: float = 3600.0
    stat: str = "last"
    window: float = 3600.0
    min_runs: int = 1
    pipelines: tuple[str, ...] = ("*",)
    kind: ClassVar[str] = "duration"

    def __post_init__(self) -> None:
        _pipelines(self)
        object.__setattr__(self, "above", _seconds(self.above, "duration.above"))
        object.__setattr__(self, "window", _seconds(self.window, "duration.window"))
        _count(self.min_runs, "duration.min_runs")
        if self.stat not in STATS:
            raise ConfigError(f"duration.stat must be one of {', '.join(STATS)} — got {self.stat!r}")

    def history_window(self) -> float:
        return 0.0 if self.stat == "last" else float(self.window)

    def measure(self, pf: PipelineFacts, now: float) -> Observation | None:
        if self.stat == "last":
            runs = [pf.last] if pf.last is not None else []
        else:
            runs = [r for r in pf.runs if r.ended_at >= now - float(self.window)]
        runs = [r for r in runs if r.duration is not None and r.status is not RunStatus.CANCELLED]
        if len(runs) < self.min_runs or not runs:
            return None
        values = [float(r.duration) for r in runs if r.duration is not None]
        if self.stat in ("last", "max"):
            value = max(values)
        elif self.stat == "mean":
            value = sum(values) / len(values)
        else:
            value = quantile(values, int(self.stat[1:]) / 100)
        return Observation({"pipeline": pf.name}, value > self.above, value)


@dataclass(frozen=True)
class SuccessRateBelow(_Window):
    """A pipeline's share of successful runs among those that reached a verdict in the last ``window``
    seconds is below ``below`` (0 to 1), once there are ``min_runs`` of them. The value is the rate."""

    below: float = 0.9
    window: float = 86400.0
    min_runs: int = 5
    pipelines: tuple[str, ...] = ("*",)
    kind: ClassVar[str] = "success_rate"

    def __post_init__(self) -> None:
        _pipelines(self)
        object.__setattr__(self, "window", _seconds(self.window, "success_rate.window"))
        _count(self.min_runs, "success_rate.min_runs")
        if isinstance(self.below, bool) or not isinstance(self.below, int | float) or not 0 < self.below <= 1:
            raise ConfigError(
                f"success_rate.below is a fraction above 0 and at most 1 (0.9 is 90%) — got {self.below!r}"
            )

    def history_window(self) -> float:
        return float(self.window)

    def measure(self, pf: PipelineFacts, now: float) -> Observation | None:
        runs = [r for r in pf.runs if r.verdict and r.ended_at >= now - float(self.window)]
        if len(runs) < self.min_runs:
            return None
        rate = sum(r.status is RunStatus.SUCCESS for r in runs) / len(runs)
        return Observation({"pipeline": pf.name}, rate < self.below, rate)


@dataclass(frozen=True)
class ExportsFailing(Condition):
    """At least ``count`` telemetry exports failed in the last ``window`` seconds, per pipeline and
    exporter (``exporters``: pushgateway, textfile, otlp, ...; globs). The value is the number of failures."""

    exporters: tuple[str, ...] = ("*",)
    count: int = 1
    window: float = 600.0
    pipelines: tuple[str, ...] = ("*",)
    kind: ClassVar[str] = "exports_failing"
    labels: ClassVar[tuple[str, ...]] = ("pipeline", "exporter")
    timed: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _pipelines(self)
        object.__setattr__(self, "exporters", _names(self.exporters, "exports_failing.exporters"))
        object.__setattr__(self, "window", _seconds(self.window, "exports_failing.window"))
        _count(self.count, "exports_failing.count")

    def history_window(self) -> float:
        return float(self.window)

    def poll(self, now: float, facts: Facts) -> list[Observation]:
        counts: dict[tuple[str, str], int] = {}
        for e in facts.recent_export_errors(now):
            if (
                e.at >= now - float(self.window)
                and matches(e.exporter, self.exporters)
                and matches(e.pipeline, self.pipelines)
            ):
                counts[(e.pipeline, e.exporter)] = counts.get((e.pipeline, e.exporter), 0) + 1
        return [
            Observation({"pipeline": p, "exporter": x}, True, float(n))
            for (p, x), n in sorted(counts.items())
            if n >= self.count
        ]
