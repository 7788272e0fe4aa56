"""The scheduler, stepped with an injected clock: cron with time zones, intervals, missed runs, idempotency."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from agent.errors import ConfigError
from agent.pipeline import Pipeline
from agent.records import RunStatus
from agent.runner import run
from agent.scheduler import Scheduler
from agent.schedules import Cron, FileArrival, Interval, Manual, parse_schedule
from agent.store import SQLiteRunStore

UTC = dt.UTC


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def _pipe(name: str = "p", schedule: Any = "0 * * * *", **kw: Any) -> Pipeline:
    pipe = Pipeline(name, schedule=schedule, **kw)
    pipe.task(name="work")(lambda: None)
    return pipe


def _utc(ts: list[dt.datetime]) -> list[str]:
    return [t.astimezone(UTC).strftime("%m-%d %H:%M") for t in ts]


def test_cron_is_evaluated_in_its_time_zone() -> None:
    """06:00 in Paris is 05:00 UTC in winter and 04:00 UTC in summer."""
    c = Cron("0 6 * * *", timezone="Europe/Paris")
    assert _utc(list(c.ticks(at(2025, 1, 10), at(2025, 1, 11)))) == ["01-10 05:00"]
    assert _utc(list(c.ticks(at(2025, 7, 10), at(2025, 7, 11)))) == ["07-10 04:00"]


def test_cron_spring_forward_runs_a_skipped_time_once() -> None:
    """02:30 does not exist on the spring change day: the job runs once, at 03:00 local."""
    c = Cron("30 2 * * *", timezone="Europe/Paris")
    ticks = list(c.ticks(at(2025, 3, 29, 12), at(2025, 3, 31, 12)))
    assert [t.isoformat() for t in ticks] == ["2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00"]


def test_cron_fall_back_runs_a_fixed_time_once_and_hourly_every_hour() -> None:
    """On the autumn change a 02:30 job runs once; an hourly job runs 25 times that day."""
    daily = Cron("30 2 * * *", timezone="Europe/Paris")
    day = (at(2025, 10, 25, 22), at(2025, 10, 26, 23))  # Oct 26 00:00 CEST .. 24:00 CET
    assert [t.isoformat() for t in daily.ticks(*day)] == ["2025-10-26T02:30:00+02:00"]
    hourly = Cron("0 * * * *", timezone="Europe/Paris")
    ticks = list(hourly.ticks(day[0] - dt.timedelta(seconds=1), day[1] - dt.timedelta(seconds=1)))
    assert len(ticks) == 25
    assert len({t.astimezone(UTC) for t in ticks}) == 25  # both 02:00s, distinct instants


def test_interval_ticks_sit_on_a_fixed_grid() -> None:
    """Interval ticks are anchor + k*every, whatever the moment of asking."""
    i = Interval(dt.timedelta(minutes=10))
    assert _utc(list(i.ticks(at(2025, 1, 1, 0, 3), at(2025, 1, 1, 0, 30)))) == [
        "01-01 00:10",
        "01-01 00:20",
        "01-01 00:30",
    ]


@pytest.mark.parametrize(
    "spec, kind",
    [
        ("*/15 * * * *", "cron"),
        ("@hourly", "cron"),
        ("every 10m", "interval"),
        ("every 2h", "interval"),
        (dt.timedelta(seconds=30), "interval"),
        ("manual", "manual"),
        (FileArrival("/tmp"), "file"),
    ],
)
def test_parse_schedule(spec: Any, kind: str) -> None:
    """Cron strings, 'every N<unit>', timedeltas, 'manual' and schedule objects are accepted."""
    assert parse_schedule(spec).kind == kind


@pytest.mark.parametrize(
    "spec, tz, match",
    [
        ("61 * * * *", "UTC", "not a valid cron expression"),
        ("0 6 * * *", "Mars/Olympus", "time zone 'Mars/Olympus' is unknown"),
        (42, "UTC", "schedule must be"),
    ],
)
def test_bad_schedules_are_config_errors_at_declaration(spec: Any, tz: str, match: str) -> None:
    """A wrong schedule fails when the Pipeline is declared, saying what to write instead."""
    with pytest.raises(ConfigError, match=match):
        Pipeline("p", schedule=spec, timezone=tz)


def test_first_tick_does_not_catch_up_from_the_past(store: SQLiteRunStore) -> None:
    """A pipeline seen for the first time starts from now, then runs each tick once."""
    s = Scheduler(store, [_pipe()])
    assert s.tick(at(2025, 1, 1, 9, 30)) == []
    due = s.tick(at(2025, 1, 1, 10, 0))
    assert [d.logical_date for d in due] == [at(2025, 1, 1, 10)]
    assert due[0].trigger == "cron"
    assert store.get_run(due[0].run_id).status is RunStatus.QUEUED
    assert s.tick(at(2025, 1, 1, 10, 0, 30)) == []


@pytest.mark.parametrize(
    "catchup, expected",
    [
        (1, ["01-01 14:00"]),
        (3, ["01-01 12:00", "01-01 13:00", "01-01 14:00"]),
        (None, ["01-01 10:00", "01-01 11:00", "01-01 12:00", "01-01 13:00", "01-01 14:00"]),
        (0, []),
    ],
)
def test_missed_run_policy(store: SQLiteRunStore, tel: Any, catchup: int | None, expected: list[str]) -> None:
    """After downtime: catchup=1 skips to the latest tick, N runs at most the N latest, None runs all."""
    s = Scheduler(store, [_pipe(catchup=catchup, max_active_runs=10)], telemetry=tel)
    s.tick(at(2025, 1, 1, 9, 30))
    due = s.tick(at(2025, 1, 1, 14, 5))  # five hourly ticks were missed
    assert _utc([d.logical_date for d in due if d.logical_date]) == expected
    missed = tel.metrics.sample("pipewarden_scheduler_missed_runs_total", pipeline="p") or 0
    assert missed == 5 - len(expected)
    assert (tel.metrics.sample("pipewarden_scheduler_triggers_total", pipeline="p", trigger="cron") or 0) == len(
        expected
    )


def test_a_tick_runs_once_across_a_restart(store: SQLiteRunStore, tel: Any) -> None:
    """A new Scheduler on the same store (a restart mid-tick) creates no second run for a tick."""
    first = Scheduler(store, [_pipe()])
    first.tick(at(2025, 1, 1, 9, 30))
    due = first.tick(at(2025, 1, 1, 10, 0))
    assert len(due) == 1
    reopened = SQLiteRunStore(store.path)
    again = Scheduler(reopened, [_pipe()])
    redo = again.tick(at(2025, 1, 1, 10, 0))
    # The run claimed before the "crash" is handed out again (it never started), not created twice.
    assert [d.run_id for d in redo] == [due[0].run_id]
    assert len(reopened.list_runs()) == 1
    run(_pipe(), store=reopened, run_id=due[0].run_id, telemetry=tel)
    third = Scheduler(reopened, [_pipe()])
    assert third.tick(at(2025, 1, 1, 10, 0)) == []
    assert third.tick(at(2025, 1, 1, 10, 59)) == []
    assert len(third.tick(at(2025, 1, 1, 11, 0))) == 1
    reopened.close()


def test_concurrency_limit_holds_ticks_until_a_run_ends(store: SQLiteRunStore, tel: Any) -> None:
    """With max_active_runs=1 a tick waits while a run is active, then the latest one is due."""
    pipe = _pipe(schedule="every 1m", max_active_runs=1)
    s = Scheduler(store, [pipe])
    s.tick(at(2025, 1, 1, 0, 0, 30))
    due = s.tick(at(2025, 1, 1, 0, 1))
    assert len(due) == 1
    assert s.tick(at(2025, 1, 1, 0, 2)) == []  # the first run is still queued
    assert s.tick(at(2025, 1, 1, 0, 3)) == []
    run(pipe, store=store, run_id=due[0].run_id, telemetry=tel)
    later = s.tick(at(2025, 1, 1, 0, 3, 10))
    assert [d.logical_date for d in later] == [at(2025, 1, 1, 0, 3)]  # catchup=1: only the latest waiting tick


def test_manual_trigger_queues_a_run(store: SQLiteRunStore, tel: Any) -> None:
    """trigger() records a queued manual run with its parameters; each call is a new run."""
    pipe = Pipeline("m", schedule=Manual(), params={"n": 0})
    pipe.task(name="work")(lambda n: n)
    s = Scheduler(store, [pipe])
    assert s.tick(at(2025, 1, 1)) == []
    a = s.trigger("m", {"n": 2}, now=at(2025, 1, 1))
    b = s.trigger("m", now=at(2025, 1, 1))
    assert a.run_id != b.run_id and a.trigger == "manual"
    rec = run(pipe, store=store, run_id=a.run_id, telemetry=tel)
    assert rec.ok and rec.outputs["work"] == 2


def test_backfill_queues_one_run_per_logical_date(store: SQLiteRunStore) -> None:
    """backfill covers [start, end] with the schedule's ticks, skips dates already run unless rerun."""
    pipe = _pipe()
    s = Scheduler(store, [pipe])
    due = s.backfill("p", at(2025, 1, 1, 0), at(2025, 1, 1, 3))
    assert [d.logical_date for d in due] == [at(2025, 1, 1, h) for h in range(4)]
    assert all(d.trigger == "backfill" for d in due)
    assert s.backfill("p", at(2025, 1, 1, 0), at(2025, 1, 1, 3)) == []
    assert len(s.backfill("p", at(2025, 1, 1, 0), at(2025, 1, 1, 3), rerun=True)) == 4
    daily = s.backfill("p", at(2025, 2, 1), at(2025, 2, 3), every=dt.timedelta(days=1))
    assert [d.logical_date for d in daily] == [at(2025, 2, d) for d in (1, 2, 3)]
    with pytest.raises(ConfigError, match="before its start"):
        s.backfill("p", at(2025, 1, 2), at(2025, 1, 1))


def test_backfill_needs_a_schedule_or_every(store: SQLiteRunStore) -> None:
    """A pipeline without a timed schedule needs an explicit interval to backfill."""
    pipe = Pipeline("plain")
    pipe.task(name="t")(lambda: None)
    with pytest.raises(ConfigError, match="--every"):
        Scheduler(store, [pipe]).backfill("plain", at(2025, 1, 1), at(2025, 1, 2))


def test_naive_now_is_refused(store: SQLiteRunStore) -> None:
    """tick() needs an aware datetime."""
    with pytest.raises(ConfigError, match="aware"):
        Scheduler(store, [_pipe()]).tick(dt.datetime(2025, 1, 1))


@pytest.mark.parametrize("expr", ["0 0 30 2 *", "0 0 31 4 *"])
def test_a_cron_that_never_fires_is_refused_when_declared(expr: str) -> None:
    """A cron expression no date matches (February 30, April 31) is a ConfigError saying so, not a traceback."""
    with pytest.raises(ConfigError, match="never fires"):
        Pipeline("never", schedule=expr)
