"""When a pipeline runs, as declared: cron (with time zones), intervals, file arrival, manual.

Declaring a pipeline needs these and nothing else; :mod:`agent.scheduler`
turns them into due runs.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.errors import ConfigError

__all__ = [
    "TIMED",
    "After",
    "Cron",
    "FileArrival",
    "Interval",
    "Link",
    "Manual",
    "Schedule",
    "parse_interval",
    "parse_schedule",
]

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
#: Schedule kinds that yield ticks (and so logical dates).
TIMED = ("cron", "interval")


class Schedule:
    """Base of the schedule kinds; timed schedules yield ticks."""

    kind = "manual"

    def ticks(self, after: dt.datetime, until: dt.datetime) -> Iterator[dt.datetime]:
        """Ticks in ``(after, until]``, oldest first, as aware datetimes."""
        return iter(())


def _zone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{where}: time zone {name!r} is unknown; use an IANA name like 'Europe/Paris' or 'UTC'"
        ) from None


@dataclass(frozen=True)
class Cron(Schedule):
    """A cron expression evaluated in a time zone.

    >>> c = Cron("0 6 * * *", timezone="Europe/Paris")
    >>> [t.isoformat() for t in c.ticks(dt.datetime(2025, 3, 1, tzinfo=UTC), dt.datetime(2025, 3, 3, tzinfo=UTC))]
    ['2025-03-01T06:00:00+01:00', '2025-03-02T06:00:00+01:00']

    Across daylight-saving changes: a time that does not exist (spring) runs
    at the first valid minute after it; a fixed time that happens twice
    (autumn) runs once, while an hourly or minutely expression runs every real hour.
    """

    expr: str
    timezone: str = "UTC"
    kind = "cron"

    def __post_init__(self) -> None:
        from croniter import croniter

        _zone(self.timezone, f"cron {self.expr!r}")
        if not isinstance(self.expr, str) or not croniter.is_valid(self.expr):
            raise ConfigError(
                f"schedule {self.expr!r} is not a valid cron expression; write five fields "
                "'minute hour day-of-month month day-of-week', e.g. '*/15 * * * *', or "
                "'every 10m' for an interval"
            )
        try:
            croniter(self.expr, _EPOCH).get_next(dt.datetime)
        except (ValueError, KeyError) as exc:  # CroniterBadDateError is a ValueError: no date matches
            raise ConfigError(
                f"schedule {self.expr!r} never fires (no date matches it: {exc}); check the "
                "day of month against the month, e.g. '0 0 30 2 *' asks for February 30"
            ) from None

    def ticks(self, after: dt.datetime, until: dt.datetime) -> Iterator[dt.datetime]:
        from croniter import croniter

        tz = ZoneInfo(self.timezone)
        fields = self.expr.split()
        # A fixed-time job (not hourly or finer) runs once in the repeated hour of an autumn change.
        if self.expr.startswith("@"):
            fixed_hour = self.expr not in ("@hourly", "@reboot")
        else:
            fixed_hour = len(fields) >= 5 and not fields[1].startswith("*")
        it = croniter(self.expr, after.astimezone(tz))
        prev_wall: dt.datetime | None = None
        while True:
            t = it.get_next(dt.datetime)
            if t > until:
                return
            wall = t.replace(tzinfo=None)
            if fixed_hour and wall == prev_wall:
                continue  # the repeated hour of an autumn change: a fixed-time job runs once
            prev_wall = wall
            if t > after:
                yield t


@dataclass(frozen=True)
class Interval(Schedule):
    """Every ``every``, on a grid anchored at ``anchor`` (the Unix epoch by default), so ticks survive restarts.

    >>> i = Interval(dt.timedelta(minutes=30))
    >>> [t.strftime("%H:%M") for t in i.ticks(dt.datetime(2025, 1, 1, 0, 10, tzinfo=UTC),
    ...                                         dt.datetime(2025, 1, 1, 1, 0, tzinfo=UTC))]
    ['00:30', '01:00']
    """

    every: dt.timedelta
    anchor: dt.datetime = _EPOCH
    kind = "interval"

    def __post_init__(self) -> None:
        if not isinstance(self.every, dt.timedelta) or self.every.total_seconds() <= 0:
            raise ConfigError(f"interval must be a positive timedelta — got {self.every!r}")

    def ticks(self, after: dt.datetime, until: dt.datetime) -> Iterator[dt.datetime]:
        step = self.every
        k = (after - self.anchor) // step + 1
        t = self.anchor + k * step
        while t <= until:
            yield t
            t += step


@dataclass(frozen=True)
class FileArrival(Schedule):
    """A run per file matching ``pattern`` in ``directory``, once it stopped changing for ``stable_seconds``.

    The file's path reaches the run as the run parameter ``path``.
    """

    directory: str
    pattern: str = "*"
    stable_seconds: float = 5.0
    recursive: bool = False
    kind = "file"


@dataclass(frozen=True)
class Manual(Schedule):
    """Runs only when triggered (CLI, API)."""

    kind = "manual"


@dataclass(frozen=True)
class Link:
    """One upstream of an :class:`After` schedule: each successful run of ``pipeline``, or, with
    ``dataset`` (a task of it, whose output is that dataset), each run of it in which that task succeeded."""

    pipeline: str
    dataset: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.pipeline, str) or not self.pipeline.strip():
            raise ConfigError(f"after: a pipeline name is needed — got {self.pipeline!r}")
        if self.dataset is not None and (not isinstance(self.dataset, str) or not self.dataset.strip()):
            raise ConfigError(f"after: dataset is the name of a task of {self.pipeline!r} — got {self.dataset!r}")

    def __str__(self) -> str:
        return self.pipeline if self.dataset is None else f"{self.pipeline} (dataset {self.dataset})"


@dataclass(frozen=True, init=False)
class After(Schedule):
    """Runs after other pipelines: one run per successful run of any of them (or per update of a dataset).

    >>> After("extract")
    After(links=(Link(pipeline='extract', dataset=None),))
    >>> After("extract", Link("ingest", dataset="orders")).links[1]
    Link(pipeline='ingest', dataset='orders')

    The daemon starts the run; it records which upstream run triggered it, and
    never starts two for the same upstream run (:mod:`agent.scheduler`).
    """

    links: tuple[Link, ...]
    kind = "after"

    def __init__(self, *links: str | Link) -> None:
        made = tuple(link if isinstance(link, Link) else Link(link) for link in links)
        if not made:
            raise ConfigError("After(...) needs at least one pipeline to run after")
        object.__setattr__(self, "links", tuple(dict.fromkeys(made)))


_EVERY = re.compile(r"^\s*every\s+(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)\w*\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?|w|weeks?)\s*$", re.IGNORECASE
)


def parse_interval(text: str, *, where: str = "interval") -> dt.timedelta:
    """A positive duration such as ``30s``, ``15m``, ``6h``, ``1d`` or ``2w``; ConfigError naming ``where`` otherwise.

    >>> parse_interval("90m")
    datetime.timedelta(seconds=5400)
    """
    m = _DURATION.match(text) if isinstance(text, str) else None
    seconds = float(m.group(1)) * _UNITS[m.group(2)[0].lower()] if m else 0.0
    if seconds <= 0:
        raise ConfigError(
            f"{where} {text!r} is not a positive duration; write a number and a unit, e.g. 30s, 15m, 6h, 1d or 2w"
        )
    return dt.timedelta(seconds=seconds)


def parse_schedule(spec: Any, *, timezone: str = "UTC", where: str = "schedule") -> Schedule:
    """A schedule from a cron string, ``"every 10m"``, a timedelta, ``"manual"`` or a Schedule."""
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, dt.timedelta):
        return Interval(spec)
    if isinstance(spec, str):
        if spec.strip().lower() == "manual":
            return Manual()
        words = spec.split()
        if len(words) >= 2 and words[0].lower() == "after":  # "after extract [other ...]"
            return After(*(w.strip(",") for w in words[1:] if w.strip(",")))
        m = _EVERY.match(spec)
        if m:
            return Interval(dt.timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()]))
        try:
            return Cron(spec.strip(), timezone=timezone)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    raise ConfigError(
        f"{where}: schedule must be a cron string, 'every 10m', 'after <pipeline>', a timedelta or a schedule "
        f"object (Cron, Interval, FileArrival, After, Manual) — got {spec!r}"
    )
