"""When pipelines run: cron (with time zones), intervals, file arrival, manual triggers.

:class:`Scheduler` is stepped, never sleeps: ``tick(now)`` returns the runs
due at ``now`` and records each one QUEUED in the run store under an
idempotency key (pipeline + tick), so a restarted process never runs a tick
twice. The daemon (a later issue) calls ``tick`` and hands the runs to the
runner; tests call it with an injected clock.

:class:`~agent.schedules.After`: a run per successful run of another pipeline
(or per run of it in which a task, the dataset, succeeded), found in the store,
so runs that ended while the daemon was down are not missed either.

Missed ticks (the process was down): ``Pipeline(catchup=1)`` runs only the
latest, ``catchup=N`` at most the N latest, ``catchup=None`` all of them.
``Pipeline(max_active_runs=N)`` bounds queued + running runs; a tick over the
limit waits for the next ``tick`` call.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.errors import ConfigError, StoreError
from agent.records import new_run_id
from agent.schedules import TIMED, After, FileArrival, Interval, Schedule

if TYPE_CHECKING:
    from agent.pipeline import Pipeline
    from agent.store import RunStore
    from agent.triggers import FileTrigger

__all__ = ["DueRun", "Scheduler", "backfill_runs", "tick_key"]

log = logging.getLogger("pipewarden.scheduler")

UTC = dt.UTC
#: How far ahead the scheduler looks for a timed pipeline's next tick (a yearly cron still has one).
_HORIZON = dt.timedelta(days=366)


@dataclass(frozen=True)
class DueRun:
    """A run the scheduler recorded QUEUED; start it with ``Runner.run(pipeline, run_id=due.run_id)``."""

    pipeline: str
    run_id: str
    trigger: str
    logical_date: dt.datetime | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    key: str | None = None
    #: The upstream run whose end made this run due (an :class:`~agent.schedules.After` schedule).
    triggered_by: str | None = None


#: How far before the latest upstream run seen each look for new ones reaches: a run's end time is taken
#: before the store has it, so a run written late is still found (its idempotency key keeps it to one run).
AFTER_OVERLAP = 300.0


@dataclass
class _LinkState:
    """Where the scan of one :class:`~agent.schedules.Link` stands (kept in the store as a meta mark)."""

    since: float  # when the link was first seen: nothing before it runs (no catch-up from the epoch)
    anchor: float  # upstream events before ``anchor - AFTER_OVERLAP`` are handled
    handled: dict[str, float] = field(default_factory=dict)  # upstream run id -> when, inside the overlap


def tick_key(pipeline: str, tick: dt.datetime) -> str:
    """The idempotency key of one schedule tick (shared by the scheduler and backfill)."""
    return f"{pipeline}@{tick.astimezone(UTC).isoformat()}"


class Scheduler:
    """Decides which runs are due; stepped with :meth:`tick`, it never sleeps.

    >>> import tempfile; from agent.store import SQLiteRunStore; from agent.pipeline import Pipeline
    >>> pipe = Pipeline("hourly", schedule="0 * * * *")
    >>> _ = pipe.task(lambda: None, name="work")
    >>> s = Scheduler(SQLiteRunStore(tempfile.mkdtemp() + "/p.db"), [pipe])
    >>> s.tick(dt.datetime(2025, 1, 1, 9, 30, tzinfo=UTC))     # first sight: no catch-up from the past
    []
    >>> [d.logical_date.isoformat() for d in s.tick(dt.datetime(2025, 1, 1, 10, 0, tzinfo=UTC))]
    ['2025-01-01T10:00:00+00:00']
    """

    def __init__(self, store: RunStore, pipelines: Iterable[Pipeline] = (), *, telemetry: Any = None) -> None:
        self.store = store
        self.telemetry = telemetry
        self.pipelines: dict[str, Pipeline] = {}
        self._anchor: dict[str, dt.datetime] = {}
        # The first tick after each timed pipeline's anchor: until then a tick costs no cron
        # evaluation and no store query (an idle daemon with 100 crons ticks once a second).
        self._next: dict[str, dt.datetime] = {}
        # Runs a tick recorded QUEUED before the store failed it: the next tick hands them out, or
        # they would stay queued, unstarted, and hold their pipeline's max_active_runs forever.
        self._claimed: list[DueRun] = []
        self._recovered: set[str] = set()
        self._files: dict[str, FileTrigger] = {}
        self._links: dict[str, _LinkState] = {}
        for p in pipelines:
            self.add(p)

    def add(self, pipeline: Pipeline) -> None:
        if pipeline.name in self.pipelines:
            raise ConfigError(f"the scheduler already has a pipeline named {pipeline.name!r}")
        pipeline.graph()
        self.pipelines[pipeline.name] = pipeline
        sched = pipeline.schedule
        if isinstance(sched, FileArrival):
            from agent.triggers import FileTrigger

            self._files[pipeline.name] = FileTrigger(
                sched.directory, sched.pattern, stable_seconds=sched.stable_seconds, recursive=sched.recursive
            )

    def start(self) -> None:
        """Start watching directories of file-arrival schedules (watchdog); ``tick`` also works without it."""
        for trig in self._files.values():
            trig.start()

    def stop(self) -> None:
        for trig in self._files.values():
            trig.stop()

    def on_file_event(self, callback: Any) -> None:
        """Call ``callback()`` (from a watcher thread) whenever a watched file changes."""
        for trig in self._files.values():
            trig.on_event = callback

    def next_due(self, now: dt.datetime, *, horizon: dt.timedelta = dt.timedelta(days=1)) -> dt.datetime | None:
        """The earliest time after ``now`` something is due: a schedule tick, or a file becoming stable."""
        best: dt.datetime | None = None
        until = now + horizon
        for name, pipe in self.pipelines.items():
            sched = pipe.schedule
            if sched is None or sched.kind not in TIMED:
                continue
            nxt = self._next.get(name)
            if nxt is None or nxt <= now:
                anchor = max(self._anchor.get(name, now), now)
                nxt = next(iter(sched.ticks(anchor, until)), None)
            elif nxt > until:
                nxt = None
            if nxt is not None and (best is None or nxt < best):
                best = nxt
        for trig in self._files.values():
            due = trig.next_due()
            if due is not None:
                at = dt.datetime.fromtimestamp(due, UTC)
                if best is None or at < best:
                    best = at
        return best

    def remove(self, name: str) -> None:
        """Stop scheduling ``name`` (its runs in progress go on)."""
        self.pipelines.pop(name, None)
        self._anchor.pop(name, None)
        self._next.pop(name, None)
        for mark in [m for m in self._links if m.startswith(f"after:{name}\x1f")]:
            del self._links[mark]
        trig = self._files.pop(name, None)
        if trig is not None:
            trig.stop()

    # --- stepping ------------------------------------------------------------------------

    def tick(self, now: dt.datetime) -> list[DueRun]:
        """The runs due at ``now`` (aware datetime), each already recorded QUEUED in the store."""
        if now.tzinfo is None:
            raise ConfigError("Scheduler.tick(now) needs an aware datetime (e.g. datetime.now(UTC))")
        due, self._claimed = self._claimed, []
        for name, pipe in self.pipelines.items():
            try:
                self._tick_pipeline(pipe, now, due)
            except StoreError:
                self._claimed = due
                raise
            except Exception:  # one broken pipeline does not stop the others
                log.exception("scheduling pipeline %s failed", name)
        return due

    def _tick_pipeline(self, pipe: Pipeline, now: dt.datetime, out: list[DueRun]) -> None:
        """Append the runs of ``pipe`` due at ``now`` to ``out`` (each one as soon as it is recorded)."""
        name = pipe.name
        if name not in self._recovered:  # runs claimed by a process that died before starting them
            self._recovered.add(name)
            out.extend(
                DueRun(name, r.run_id, r.trigger, r.logical_date, dict(r.params), r.idempotency_key, r.triggered_by)
                for r in self.store.queued_runs(name)
            )
        sched = pipe.schedule
        if sched is None or sched.kind == "manual":
            return
        nxt = self._next.get(name)
        if nxt is not None and now < nxt:  # nothing due yet
            return
        if isinstance(sched, FileArrival):
            self._tick_files(pipe, now, out)
            return
        if isinstance(sched, After):
            self._tick_after(pipe, sched, now, out)
            return
        anchor = self._anchor.get(name)
        if anchor is None:
            last = self.store.last_scheduled(name, TIMED)
            anchor = dt.datetime.fromtimestamp(last, UTC) if last is not None else now - dt.timedelta(microseconds=1)
        # One pass over the schedule: the ticks up to now, and the first one after (remembered).
        ticks: list[dt.datetime] = []
        upcoming: dt.datetime | None = None
        for t in sched.ticks(anchor, now + _HORIZON):
            if t > now:
                upcoming = t
                break
            ticks.append(t)
        if not ticks:
            self._anchor[name] = anchor
            self._remember(name, upcoming)
            return
        keep = ticks if pipe.catchup is None else ticks[len(ticks) - pipe.catchup :] if pipe.catchup else []
        missed = len(ticks) - len(keep)
        if missed:
            log.info("pipeline %s missed %d schedule tick(s); catchup=%s", name, missed, pipe.catchup)
            self._count("pipewarden_scheduler_missed_runs_total", name, n=missed)
        room = self._room(pipe)
        claim, wait = keep[:room], keep[room:]
        for t in claim:
            d = self._claim(pipe, t, trigger=sched.kind, now=now)
            if d is not None:
                out.append(d)
        # Ticks over the concurrency limit stay due; everything before them is handled.
        if wait:
            self._anchor[name] = wait[0] - dt.timedelta(microseconds=1)
            self._remember(name, wait[0])
        else:
            self._anchor[name] = ticks[-1]
            self._remember(name, upcoming)

    def _room(self, pipe: Pipeline) -> int:
        """How many more runs ``pipe`` may queue: asked of the store only when a run is due, not at idle ticks.

        Runs handed out again by :meth:`_tick_pipeline` are queued, so ``active_runs`` already counts them.
        """
        return max(pipe.max_active_runs - self.store.active_runs(pipe.name), 0)

    def _remember(self, name: str, upcoming: dt.datetime | None) -> None:
        if upcoming is None:  # none within the horizon: evaluated again at every tick
            self._next.pop(name, None)
        else:
            self._next[name] = upcoming

    def _tick_files(self, pipe: Pipeline, now: dt.datetime, out: list[DueRun]) -> None:
        stable = self._files[pipe.name].poll(now.timestamp())
        room = self._room(pipe) if stable else 0
        claimed = 0
        for f in stable:
            if claimed >= room:
                break  # over the concurrency limit: the file stays pending for the next tick
            key = f"{pipe.name}@file:{f.path}:{f.mtime_ns}:{f.size}"
            d = self._counted(
                _queue_run(
                    self.store,
                    pipe,
                    trigger="file",
                    key=key,
                    logical_date=now,
                    scheduled_for=None,
                    params={"path": f.path},
                    now=now,
                )
            )
            self._files[pipe.name].mark_done(f)
            if d is not None:
                out.append(d)
                claimed += 1

    def _tick_after(self, pipe: Pipeline, sched: After, now: dt.datetime, out: list[DueRun]) -> None:
        """One run per upstream run that succeeded (or updated the dataset) since the link was first seen.

        The key ``<pipeline>@after:<upstream run>`` is UNIQUE in the store: two ticks, a restart or
        a reload never start a second run for one upstream run, even through two links. Each run is
        appended to ``out`` as soon as it is recorded.
        """
        claimed, room = 0, -1  # room: asked of the store at the first new upstream run
        for link in sched.links:
            mark = f"after:{pipe.name}\x1f{link.pipeline}\x1f{link.dataset or ''}"
            state = self._links.get(mark) or self._load_link(mark, now.timestamp())
            self._links[mark] = state
            since = max(state.since, state.anchor - AFTER_OVERLAP)
            held: float | None = None
            newest = state.anchor
            for run_id, at, logical_date in self.store.upstream_events(link.pipeline, link.dataset, since=since):
                if run_id in state.handled:
                    continue
                if room < 0:
                    room = self._room(pipe)
                if claimed >= room:  # over max_active_runs: this one and later ones wait for the next tick
                    held = at
                    break
                d = self._counted(
                    _queue_run(
                        self.store,
                        pipe,
                        trigger="after",
                        key=f"{pipe.name}@after:{run_id}",
                        logical_date=logical_date or now,
                        scheduled_for=at,
                        now=now,
                        triggered_by=run_id,
                    )
                )
                state.handled[run_id] = at
                newest = max(newest, at)
                if d is not None:
                    log.info("pipeline %s runs after run %s of %s: run %s", pipe.name, run_id, link, d.run_id)
                    out.append(d)
                    claimed += 1
            anchor = held if held is not None else newest
            if anchor != state.anchor:  # runs added at an unchanged anchor are all inside the overlap
                state.anchor = anchor
                self.store.set_meta(mark, json.dumps({"since": state.since, "anchor": anchor}))
                floor = anchor - AFTER_OVERLAP
                state.handled = {r: at for r, at in state.handled.items() if at >= floor}

    def _load_link(self, mark: str, now: float) -> _LinkState:
        saved = self.store.get_meta(mark)
        if saved is not None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                data = json.loads(saved)
                return _LinkState(float(data["since"]), float(data["anchor"]))
        self.store.set_meta(mark, json.dumps({"since": now, "anchor": now}))  # first sight: from now on
        return _LinkState(now, now)

    def _claim(self, pipe: Pipeline, tick: dt.datetime, *, trigger: str, now: dt.datetime) -> DueRun | None:
        key = tick_key(pipe.name, tick)
        return self._counted(
            _queue_run(
                self.store, pipe, trigger=trigger, key=key, logical_date=tick, scheduled_for=tick.timestamp(), now=now
            )
        )

    def _counted(self, d: DueRun | None) -> DueRun | None:
        """``d``, a run just queued (or None: its key was taken), counted by trigger."""
        if d is not None:
            self._count("pipewarden_scheduler_triggers_total", d.pipeline, d.trigger)
        return d

    def _count(self, metric: str, *labels: str, n: int = 1) -> None:
        tel = self.telemetry
        if tel is None:
            return
        try:
            tel.child(metric, *labels).inc(n)
        except Exception:
            log.debug("could not count %s", metric, exc_info=True)

    # --- on demand -------------------------------------------------------------------------

    def trigger(
        self,
        pipeline: str,
        params: Mapping[str, Any] | None = None,
        *,
        now: dt.datetime | None = None,
        trigger: str = "manual",
    ) -> DueRun:
        """A run on demand (``trigger``: manual, or alert for an alert's action), recorded QUEUED now.

        No idempotency key: every call is a new run.
        """
        pipe = self._pipeline(pipeline)
        now = now or dt.datetime.now(UTC)
        run = _queue_run(
            self.store, pipe, trigger=trigger, key=None, logical_date=now, scheduled_for=None, now=now, params=params
        )
        d = self._counted(run)
        assert d is not None
        return d

    def backfill(
        self,
        pipeline: str,
        start: dt.datetime,
        end: dt.datetime,
        *,
        every: dt.timedelta | None = None,
        rerun: bool = False,
        now: dt.datetime | None = None,
    ) -> list[DueRun]:
        """One queued run per schedule tick in ``[start, end]``; ticks that already ran are left out
        unless ``rerun``."""
        pipe = self._pipeline(pipeline)
        return backfill_runs(
            self.store,
            pipe,
            start,
            end,
            every=every,
            rerun=rerun,
            now=now,
            count=lambda: self._count("pipewarden_scheduler_triggers_total", pipe.name, "backfill"),
        )

    def _pipeline(self, name: str) -> Pipeline:
        try:
            return self.pipelines[name]
        except KeyError:
            raise ConfigError(f"the scheduler has no pipeline {name!r} ({', '.join(self.pipelines)})") from None


def backfill_runs(
    store: RunStore,
    pipe: Pipeline,
    start: dt.datetime,
    end: dt.datetime,
    *,
    every: dt.timedelta | None = None,
    rerun: bool = False,
    now: dt.datetime | None = None,
    count: Any = None,
) -> list[DueRun]:
    """Queued runs of ``pipe`` for the logical dates of its schedule (or ``every``) in ``[start, end]``."""
    start, end = _aware(start), _aware(end)
    if end < start:
        raise ConfigError(f"backfill end {end.isoformat()} is before its start {start.isoformat()}")
    sched: Schedule | None = Interval(every, anchor=start) if every else pipe.schedule
    if sched is None or sched.kind not in TIMED:
        raise ConfigError(
            f"pipeline {pipe.name!r} has no cron or interval schedule to take logical dates from; "
            "pass --every (e.g. --every 1d)"
        )
    now = now or dt.datetime.now(UTC)
    out = []
    for t in sched.ticks(start - dt.timedelta(microseconds=1), end):
        key = tick_key(pipe.name, t)
        if rerun and store.has_key(key):
            key = f"{key}#rerun-{new_run_id(now.timestamp())}"
        d = _queue_run(store, pipe, trigger="backfill", key=key, logical_date=t, scheduled_for=t.timestamp(), now=now)
        if d is not None:
            if count is not None:
                count()
            out.append(d)
    return out


def _queue_run(
    store: RunStore,
    pipe: Pipeline,
    *,
    trigger: str,
    key: str | None,
    logical_date: dt.datetime,
    scheduled_for: float | None,
    now: dt.datetime,
    params: Mapping[str, Any] | None = None,
    triggered_by: str | None = None,
) -> DueRun | None:
    """Record a QUEUED run of ``pipe``; None when ``key`` was claimed before (a restart mid-tick, a done date)."""
    run_id = new_run_id(now.timestamp())
    if not store.create_run(
        run_id=run_id,
        pipeline=pipe.name,
        trigger=trigger,
        tasks=pipe.graph().order,
        params=dict(params or {}),
        logical_date=logical_date,
        version=pipe.version,
        target=pipe.target,
        idempotency_key=key,
        scheduled_for=scheduled_for,
        now=now.timestamp(),
        triggered_by=triggered_by,
    ):
        return None
    return DueRun(pipe.name, run_id, trigger, logical_date, dict(params or {}), key, triggered_by)


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)
