"""Running a pipeline: dependency order, bounded parallelism, retries, timeouts, quality gates.

Every state change is written to the run store (and committed) before the
runner acts on it, so a killed process loses no finished work and the next
start knows which runs were interrupted. Each task attempt goes through
:meth:`Telemetry.task_scope`, so its metrics and spans are those of ``@monitor``.

A worker thread that finishes a task runs the next ready task itself; only
extra ready tasks are handed to other threads. A chain of tasks therefore
costs no thread hand-off at all.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import datetime as dt
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent import kpis
from agent.artifacts import NONE_REF, load_output, output_problem, remove_outputs, save_output
from agent.caching import cache_keep, cache_lookup
from agent.errors import (
    BranchError,
    ConfigError,
    RunClaimedError,
    RunLimitError,
    StoreError,
    TaskCancelledError,
    TaskInputError,
)
from agent.executors import (
    Executor,
    Measured,
    ThreadExecutor,
    invoke,
    measured,
    run_in_child,
    timed,
)
from agent.flow import branch_choice, branch_skips, verdict
from agent.gates import blocking, blocking_reason
from agent.mapping import MapRun, begin_map, items_problem, load_items, parse_items_ref, run_item
from agent.params import resolve_params
from agent.pipeline import Pipeline, Task
from agent.records import OK, RunRecord, RunStatus, TaskAttempt, new_run_id
from agent.scope import rows_of
from agent.store import RunStore
from agent.tasklogs import TaskLog, attached, hooked
from agent.trust import require_trusted
from agent.waiting import SensorWaits
from agent.wiring import Input, take

__all__ = ["ResumePlan", "Runner", "recover_interrupted", "resume", "run", "run_values"]

log = logging.getLogger("pipewarden.runner")

_RUN_OPTIONS = frozenset({"logical_date", "trigger", "run_id", "cancel", "wait"})
#: Seconds between two looks at the store while a run waits for a slot (max_active_runs).
_SLOT_POLL = 0.5


def run(pipeline: Pipeline, params: Mapping[str, Any] | None = None, **options: Any) -> RunRecord:
    """Run every task of ``pipeline`` once, in dependency order; returns the run record.

    Task failures do not raise: read ``record.status``. Options are those of
    :class:`Runner` (``executor``, ``store``, ``telemetry``, ``max_workers``,
    ``sleep``, ``clock``, ``home``) and of :meth:`Runner.run` (``logical_date``,
    ``trigger``, ``run_id``, ``cancel``).
    """
    runner_opts, run_opts = _split_options(options)
    return Runner(**runner_opts).run(pipeline, params=params, **run_opts)


def resume(pipeline: Pipeline, run_id: str, **options: Any) -> RunRecord:
    """Run again the tasks of run ``run_id`` that did not succeed (see :meth:`Runner.resume`)."""
    runner_opts, run_opts = _split_options(options)
    return Runner(**runner_opts).resume(pipeline, run_id, **run_opts)


def _split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    run_opts = {k: v for k, v in options.items() if k in _RUN_OPTIONS}
    return {k: v for k, v in options.items() if k not in _RUN_OPTIONS}, run_opts


def run_values(
    pipeline: Pipeline, params: Mapping[str, Any] | None, *, run_id: str, trigger: str, logical_date: Any, now: float
) -> tuple[dict[str, Any], dict[str, Any], dt.datetime]:
    """(values tasks may ask for by name, params to store, logical date); ConfigError on unknown params and
    ParamError (a ConfigError) on values that do not convert to their type (:mod:`agent.params`)."""
    given = dict(params or {})
    if "logical_date" in given:
        logical_date = logical_date or given.pop("logical_date")
        given.pop("logical_date", None)
    merged, stored = resolve_params(pipeline, given)
    ld = _as_datetime(logical_date, now)
    values = {
        **merged,
        "params": merged,
        "path": merged.get("path"),
        "run_id": run_id,
        "trigger": trigger,
        "logical_date": ld,
    }
    return values, stored, ld


def _as_datetime(value: Any, now: float) -> dt.datetime:
    if value is None:
        return dt.datetime.fromtimestamp(now, dt.UTC)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, str):
        try:
            return _as_datetime(dt.datetime.fromisoformat(value), now)
        except ValueError:
            raise ConfigError(
                f"logical date {value!r} is not an ISO date or datetime (2025-01-31 or 2025-01-31T06:00:00+00:00)"
            ) from None
    raise ConfigError(f"logical date must be a datetime, a date or an ISO string — got {value!r}")


def recover_interrupted(store: RunStore, telemetry: Any = None, *, now: float | None = None) -> list[str]:
    """Mark runs whose process died as interrupted (with their unfinished tasks) and report them.

    ``telemetry`` is a Telemetry, or a function returning one, called only when
    there is something to report (so ``runs list`` stays cheap).
    """
    now = time.time() if now is None else now
    ids = store.recover_interrupted(now=now)
    if ids and callable(telemetry):
        telemetry = telemetry()
    for run_id in ids:
        rec = store.get_run(run_id)
        if rec is None:
            continue
        latest = rec.latest()
        never = [t for t in rec.tasks if t not in latest]
        store.record_task_states(
            run_id, [(t, RunStatus.INTERRUPTED, "the run's process died before it started") for t in never], now=now
        )
        if telemetry is None:
            continue
        stopped = [t for t, a in latest.items() if a.status is RunStatus.INTERRUPTED] + never
        try:
            for t in stopped:
                telemetry.task_state(
                    rec.pipeline, t, RunStatus.INTERRUPTED, reason="the run's process died", run_id=run_id, durable=True
                )
            health = kpis.health_of(r for r in store.recent_runs(rec.pipeline) if r.run_id != run_id)
            telemetry.run_state(
                rec.pipeline,
                run_id,
                RunStatus.INTERRUPTED,
                started_at=rec.started_at or now,
                ended_at=now,
                outcome=kpis.fold(health, RunStatus.INTERRUPTED, rec.version, now),
                version=rec.version,
                trigger=rec.trigger,
                reason="the run's process died",
                durable=True,
            )
        except Exception:
            log.exception("could not report interrupted run %s", run_id)
    return ids


class Runner:
    """Runs pipelines; every dependency can be passed in (tests pass fresh ones).

    >>> from agent.pipeline import Pipeline
    >>> pipe = Pipeline("doc")
    >>> @pipe.task
    ... def one() -> int:
    ...     return 1
    >>> import tempfile; from agent.store import SQLiteRunStore
    >>> store = SQLiteRunStore(tempfile.mkdtemp() + "/p.db")
    >>> Runner(store=store).run(pipe).status                 # doctest: +SKIP
    <RunStatus.SUCCESS: 'success'>

    ``executor``: a :mod:`agent.executors` executor (threads by default).
    ``store``: a :class:`~agent.store.RunStore` (default: SQLite in ``home``).
    ``telemetry``: a :class:`~agent.telemetry.Telemetry` (default: the process one).
    ``sleep(seconds)`` waits between retries, ``clock()`` gives Unix time,
    ``rng`` draws jitter; ``kill_grace`` is the SIGTERM-to-SIGKILL wait for
    timed-out tasks; ``lease_seconds`` how long another host waits before
    calling a silent run interrupted. ``slot``: a run slot of the daemon, an
    object with ``release()`` and ``acquire() -> bool``: a run whose only work
    is waiting sensors gives it back, and takes one again before it goes on.
    """

    def __init__(
        self,
        *,
        executor: Executor | None = None,
        store: RunStore | None = None,
        telemetry: Any = None,
        max_workers: int | None = None,
        sleep: Callable[[float], Any] | None = None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        home: str | os.PathLike[str] | None = None,
        kill_grace: float = 5.0,
        lease_seconds: float = 60.0,
        slot: Any = None,
    ) -> None:
        self.slot = slot
        self.executor = executor
        self.store = store
        self.telemetry = telemetry
        self.max_workers = max_workers
        self._sleep = sleep
        self.clock = clock or time.time
        self.rng = rng or random.Random()
        self.home = home
        self.kill_grace = kill_grace
        self.lease_seconds = lease_seconds

    # --- public ---------------------------------------------------------------------------

    def run(
        self,
        pipeline: Pipeline,
        params: Mapping[str, Any] | None = None,
        *,
        logical_date: Any = None,
        trigger: str = "manual",
        run_id: str | None = None,
        cancel: threading.Event | None = None,
        wait: float = 0.0,
        abandon: threading.Event | None = None,
    ) -> RunRecord:
        """Run every task of ``pipeline`` once; returns the run record (task failures do not raise).

        ``run_id`` of a run already recorded QUEUED (by the scheduler) starts that run.
        ``Pipeline(max_active_runs=N)`` holds across processes: when N runs of the
        pipeline are running, this one waits up to ``wait`` seconds for a slot
        (``math.inf``: as long as it takes), then raises RunLimitError, recording nothing.
        Raises ConfigError for an invalid graph or unknown parameter, StoreError when
        the store cannot be written. ``cancel`` starts no further task; ``abandon``
        stops waiting for the tasks still running and records them, and the run,
        interrupted (a daemon that shuts down after its grace period).
        """
        graph = pipeline.graph()
        store, owned = self._open_store()
        try:
            now = self.clock()
            run_id = run_id or new_run_id(now)
            existing = store.get_run(run_id)
            if existing is not None:
                if existing.pipeline != pipeline.name:
                    raise ConfigError(f"run {run_id} is a run of pipeline {existing.pipeline!r}, not {pipeline.name!r}")
                if existing.status is not RunStatus.QUEUED:  # another agent took it (or it ran before)
                    raise RunClaimedError(
                        f"run {run_id} is already {existing.status}; resume it with `pipewarden runs resume {run_id}`",
                        run_id=run_id,
                        status=str(existing.status),
                    )
                params = {**existing.params, **(params or {})}
                logical_date = logical_date or existing.logical_date
                trigger = existing.trigger
            values, stored, ld = run_values(
                pipeline, params, run_id=run_id, trigger=trigger, logical_date=logical_date, now=now
            )
            tel = self._telemetry()
            recover_interrupted(store, tel, now=now)
            if existing is None:
                store.create_run(
                    run_id=run_id,
                    pipeline=pipeline.name,
                    trigger=trigger,
                    tasks=graph.order,
                    params=stored,
                    logical_date=ld,
                    version=pipeline.version,
                    target=pipeline.target,
                    now=now,
                )
            job = _Job(
                self,
                pipeline,
                store,
                tel,
                run_id,
                values,
                to_run=list(graph.order),
                preloaded={},
                attempts={},
                trigger=trigger,
                resumed=False,
                cancel=cancel,
                abandon=abandon,
            )
            job.wait, job.created = wait, existing is None
            return job.execute()
        finally:
            if owned:
                store.close()

    def resume(
        self,
        pipeline: Pipeline,
        run_id: str,
        *,
        cancel: threading.Event | None = None,
        wait: float = 0.0,
        abandon: threading.Event | None = None,
    ) -> RunRecord:
        """Run again the tasks of ``run_id`` that did not succeed.

        A task that succeeded is not run again: its output was kept (see
        :mod:`agent.artifacts`), it returned None, or nothing re-run needs it.
        One whose output a re-run task needs but which could not be kept runs
        again; :meth:`plan_resume` says which, and why, before anything runs.
        """
        store, owned = self._open_store()
        try:
            plan = self._plan(pipeline, run_id, store)
            if not plan.to_run and plan.record.status is RunStatus.SUCCESS:
                return plan.record
            for task, why in plan.again.items():
                log.info("resume of run %s runs task %s again: %s", run_id, task, why)
            rec = plan.record
            attempts: dict[str, int] = {}
            for a in rec.attempts:
                if a.item is None:
                    attempts[a.task] = max(attempts.get(a.task, 0), a.attempt)
            values, _, _ = run_values(
                pipeline,
                rec.params,
                run_id=run_id,
                trigger=rec.trigger,
                logical_date=rec.logical_date,
                now=self.clock(),
            )
            job = _Job(
                self,
                pipeline,
                store,
                self._telemetry(),
                run_id,
                values,
                to_run=list(plan.to_run),
                preloaded=dict(plan.preloaded),
                attempts=attempts,
                trigger=rec.trigger,
                resumed=True,
                cancel=cancel,
                abandon=abandon,
            )
            job.wait, job.expect = wait, rec.status
            job.prior_items = dict(plan.items)
            return job.execute()
        finally:
            if owned:
                store.close()

    def plan_resume(self, pipeline: Pipeline, run_id: str) -> ResumePlan:
        """What :meth:`resume` would run, and why each task that already finished would run again.

        Raises ConfigError (no such run, another pipeline's run, still running)
        and UntrustedPathError (a state directory or output another user could have written).
        """
        store, owned = self._open_store()
        try:
            return self._plan(pipeline, run_id, store)
        finally:
            if owned:
                store.close()

    def _plan(self, pipeline: Pipeline, run_id: str, store: RunStore) -> ResumePlan:
        graph = pipeline.graph()
        recover_interrupted(store, self._telemetry(), now=self.clock())
        rec = store.get_run(run_id)
        if rec is None:
            raise ConfigError(f"there is no run {run_id!r} in the run store; `pipewarden runs list` shows them")
        if rec.pipeline != pipeline.name:
            raise ConfigError(f"run {run_id} is a run of pipeline {rec.pipeline!r}, not {pipeline.name!r}")
        if rec.status is RunStatus.RUNNING:
            raise ConfigError(
                f"run {run_id} is still running (pid {rec.owner_pid} on {rec.owner_host}); "
                "wait for it, or stop that process first"
            )
        if rec.status is RunStatus.SUCCESS:
            return ResumePlan(rec, (), {}, {})
        alive = store.live_workers(run_id)
        if alive:
            pids = " ".join(map(str, alive))
            raise ConfigError(
                f"run {run_id}: worker processes {pids} of its last execution are still alive and may "
                f"still be running its tasks; wait for them to end, or stop them (kill {pids}), "
                "then resume"
            )
        home = self._home(store)
        if store.files:  # outputs are read back from it and its directory
            require_trusted(list(store.files), what=f"resume run {run_id} from {store.location}")
        latest = rec.latest()
        kept = {t: a for t, a in latest.items() if t in graph and a.status in OK}
        to_run = {t for t in graph.order if t not in kept}
        items = {t: rec.items(t) for t, task in pipeline.tasks.items() if task.map is not None}
        again: dict[str, str] = {}
        # A re-run task needs its inputs (and a branch's choice is replayed for the tasks below it):
        # recompute those whose output cannot be loaded. Dependants come before their inputs in
        # reverse order, so one pass also covers inputs added here.
        for t in reversed(graph.order):
            if t not in to_run:
                continue
            task = pipeline.tasks[t]
            needed = (*task.inputs(pipeline.tasks), *(d for d in graph.deps[t] if pipeline.tasks[d].branch))
            for inp in dict.fromkeys(needed):
                if inp not in kept or inp in to_run:
                    continue
                attempt = kept[inp]
                pickles = pipeline.tasks[inp].persist == "pickle"
                count = parse_items_ref(attempt.output_ref)
                if count is not None:
                    problem = items_problem(home, count, items.get(inp, {}), allow_pickle=pickles)
                else:
                    problem = output_problem(home, attempt.output_ref, allow_pickle=pickles)
                if problem is not None:
                    if attempt.output_ref is None and attempt.reason:
                        problem = f"its output was not kept: {attempt.reason}"
                    to_run.add(inp)
                    again[inp] = f"{t} needs its output, and {problem}"
        preloaded = {t: a.output_ref for t, a in kept.items() if t not in to_run and a.output_ref is not None}
        order = tuple(t for t in graph.order if t in to_run)
        return ResumePlan(rec, order, {t: again[t] for t in order if t in again}, preloaded, items)

    # --- helpers --------------------------------------------------------------------------

    def _open_store(self) -> tuple[RunStore, bool]:
        if self.store is not None:
            return self.store, False
        from agent.store import open_store

        return open_store(self.home), True

    def _telemetry(self) -> Any:
        if self.telemetry is not None:
            return self.telemetry
        from agent.telemetry import get_telemetry

        return get_telemetry()

    def _home(self, store: RunStore) -> Path:
        """The state directory: task outputs are kept under it."""
        if store.files:
            return store.files[0]
        from agent.settings import home

        return home(self.home)


@dataclass(frozen=True)
class ResumePlan:
    """What a resume of ``record`` runs: ``to_run`` in order; ``again``: tasks that finished before but run
    again, each with why (its output, which a re-run task needs, could not be kept or loaded);
    ``preloaded``: the output references of the finished tasks that are not run again; ``items``:
    the latest state of every item of the mapped tasks."""

    record: RunRecord
    to_run: tuple[str, ...]
    again: Mapping[str, str]
    preloaded: Mapping[str, str]
    #: The latest state of each item of each mapped task, by index (outputs kept, items not run again).
    items: Mapping[str, Mapping[int, TaskAttempt]] = field(default_factory=dict)


class _Job:
    """One execution of a run (first run or resume): the state shared by the worker threads."""

    def __init__(
        self,
        runner: Runner,
        pipeline: Pipeline,
        store: RunStore,
        tel: Any,
        run_id: str,
        values: dict[str, Any],
        *,
        to_run: list[str],
        preloaded: dict[str, str | None],
        attempts: dict[str, int],
        trigger: str,
        resumed: bool,
        cancel: threading.Event | None,
        abandon: threading.Event | None = None,
    ) -> None:
        self.r = runner
        self.pipeline = pipeline
        self.name = pipeline.name
        self.graph = pipeline.graph()
        self.store = store
        self.tel = tel
        self.run_id = run_id
        self.values = values
        self.to_run = to_run
        self.preloaded = preloaded
        self.base_attempts = attempts
        self.trigger = trigger
        self.resumed = resumed
        self.user_cancel = cancel
        self.abandon = abandon or threading.Event()
        self.wait = 0.0  # seconds to wait for a slot under max_active_runs
        self.expect = RunStatus.QUEUED  # the state the run is claimed from (a resume: the one it ended in)
        self.created = False  # this job recorded the run (discarded if refused)
        self.cancelled = threading.Event()
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.outputs: dict[str, Any] = {}
        self.states: dict[str, RunStatus] = {}
        self.errors: dict[str, str] = {}
        run_set = set(to_run)
        self.remaining = {t: sum(1 for d in self.graph.deps[t] if d in run_set) for t in to_run}
        #: Tasks a blocking check stopped (the task, and those skipped below it), with the reason:
        #: trigger rules never count them as merely skipped.
        self.blocked: dict[str, str] = {}
        self.choices: dict[str, frozenset[str]] = {}  # what each branch task chose
        self.maps: dict[str, MapRun] = {}
        self.sensors = SensorWaits(self)
        #: The latest state of each item of each mapped task in an earlier execution (a resume).
        self.prior_items: dict[str, Mapping[int, TaskAttempt]] = {}
        self.index = {t: i for i, t in enumerate(self.graph.order)}
        self.held: list[Any] = []  # ready work waiting for the run slot to be given back
        self.slot_held = True
        self.sleep = runner._sleep or (lambda s: self.cancelled.wait(s))
        self.home = runner._home(store)
        # Outputs worth keeping: those a task downstream takes by parameter (a resume may need them).
        self.consumed = {i for t in pipeline.tasks.values() for i in t.inputs(pipeline.tasks)}
        #: Per task: parameter -> the output it receives, and the arguments that may be tables
        #: (worked out once per run, not at every attempt or item).
        self.wires = {n: _wires(t, pipeline.tasks) for n, t in pipeline.tasks.items()}
        self.ctx: contextvars.Context | None = None
        self.drivers: Executor | None = None
        self.ready: collections.deque[Any] = collections.deque()  # task names, and (task, item) pairs
        self.active_drivers = 0
        self.max_drivers = 1

    # --- the run ---------------------------------------------------------------------------

    def execute(self) -> RunRecord:
        r, store, tel = self.r, self.store, self.tel
        version = self.pipeline.version
        # Where the pipeline stands before this run, from the store: the KPIs of its end fold onto it.
        health = kpis.health_of(store.recent_runs(self.name))
        self._claim()
        executor = r.executor
        owns_executor = executor is None
        workers = (
            r.max_workers
            or self.pipeline.max_workers
            or (executor.max_workers if executor else None)
            or min(32, (os.cpu_count() or 1) + 4)
        )
        self.max_drivers = workers
        if executor is None:
            executor = ThreadExecutor(workers)
        self.executor = executor
        self.drivers = executor if executor.local else ThreadExecutor(workers)
        worker_pids = getattr(executor, "worker_pids", None)
        if worker_pids is not None:  # a resume must not start a task one of them may still be running
            store.record_workers(self.run_id, worker_pids())
        interrupted: BaseException | None = None
        ps = tel.pipeline_scope(
            self.name,
            run_id=self.run_id,
            version=version,
            trigger=self.trigger,
            tasks=self.graph.order,
            kept=tuple(self.preloaded),
            params=self.values.get("params"),
            resumed=self.resumed,
            durable=True,
        )
        ps.__enter__()
        failure: BaseException | None = None
        try:
            self.ctx = contextvars.copy_context()
            try:
                with hooked():  # installed once for the run, not at each attempt
                    self._start()
                    self._wait()
                if not self.done.is_set():  # abandoned: record what still runs as interrupted
                    self.cancelled.set()
                    self._abandon(RunStatus.INTERRUPTED)
            except BaseException as exc:  # KeyboardInterrupt in the caller's thread: cancel, then re-raise
                interrupted = exc
                again = self.cancelled.is_set() or (self.user_cancel is not None and self.user_cancel.is_set())
                self.cancelled.set()
                if not again:  # first interrupt: let running tasks finish; a second one abandons them
                    with contextlib.suppress(BaseException):
                        self._wait()
                if not self.done.is_set():
                    self._abandon()
            status, error = self._outcome()
            end = r.clock()
            store.finish_run(self.run_id, status, now=end, error=error)
            if status is RunStatus.SUCCESS:  # nothing will resume it: its kept outputs go
                remove_outputs(self.home, self.run_id)
            ps.set_status(str(status), error or "")
            ps.ended_at = end
            ps.outcome = kpis.fold(health, status, version, end)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            _, run_event = ps.end(failure)
            if run_event is not None:
                tel.bus.emit(run_event)
            settled = interrupted is None and not self.abandon.is_set()
            if self.drivers is not executor:
                self.drivers.shutdown(wait=settled)
            if owns_executor:
                executor.shutdown(wait=settled)
        record = store.get_run(self.run_id)
        assert record is not None
        record = replace(record, outputs=dict(self.outputs))
        if interrupted is not None:
            raise interrupted
        return record

    def _claim(self) -> None:
        """Mark the run RUNNING within the pipeline's max_active_runs, waiting up to ``self.wait`` for a slot."""
        r, store = self.r, self.store
        deadline = time.monotonic() + self.wait
        while True:
            now = r.clock()
            try:
                store.start_run(
                    self.run_id,
                    now=now,
                    lease_until=now + r.lease_seconds,
                    tasks=self.graph.order,
                    max_active=self.pipeline.max_active_runs,
                    from_status=self.expect,
                )
                return
            except RunLimitError:
                waited_out = time.monotonic() >= deadline
                if waited_out or self.cancelled.is_set() or (self.user_cancel and self.user_cancel.is_set()):
                    if self.created:  # a refused run leaves no record behind
                        store.discard_run(self.run_id)
                    raise
            self.cancelled.wait(min(_SLOT_POLL, max(0.0, deadline - time.monotonic())))
            recover_interrupted(store, self.tel)  # a dead holder of the slot frees it

    def _start(self) -> None:
        if not self.to_run:
            self.done.set()
            return
        ready: list[Any] = []
        unrun: list[tuple[str, RunStatus, str]] = []
        # A resume replays the choices of the branch tasks it keeps: what they skipped stays skipped.
        kept = [
            b
            for b, task in self.pipeline.tasks.items()
            if task.branch and b not in self.remaining and any(c in self.remaining for c in self.graph.children[b])
        ]
        chosen = {b: branch_choice(b, self._output(b), self.graph.children[b]) for b in kept}
        with self.lock:
            for b, choice in chosen.items():
                self.choices[b] = choice
                self._settle(None, ready, unrun, skips=self._branch_skips(b))
        self._record_states(unrun)
        with self.lock:
            first = [t for t in self.to_run if self.remaining[t] == 0 and t not in self.states]
        if len(self.states) == len(self.to_run):
            self.done.set()
        self._schedule(first)

    def _wait(self) -> None:
        next_lease = time.monotonic() + self.r.lease_seconds / 3
        while not self.done.wait(self._tick()):
            if self.abandon.is_set():
                return
            if self.user_cancel is not None and self.user_cancel.is_set():
                self.cancelled.set()
            self._watch()
            if time.monotonic() >= next_lease:
                next_lease = time.monotonic() + self.r.lease_seconds / 3
                try:
                    owned = self.store.renew_lease(self.run_id, self.r.clock() + self.r.lease_seconds)
                except Exception:
                    log.warning("could not renew the lease of run %s", self.run_id, exc_info=True)
                    continue
                if owned is False and not self.cancelled.is_set():
                    # Another agent found the lease expired and recorded the run interrupted: it may resume
                    # it. Start nothing more here (fail closed: no task runs twice at once).
                    log.error(
                        "run %s is no longer this process's: its lease ran out and another agent recorded it "
                        "interrupted; starting no further task",
                        self.run_id,
                    )
                    self.cancelled.set()

    def _tick(self) -> float:
        """How long the run's loop sleeps: until the next sensor poke is due, at most 0.1 s."""
        due = self.sensors.next_due()
        return 0.1 if due is None else max(0.0, min(0.1, due - time.monotonic()))

    def _watch(self) -> None:
        """The run's loop: poke the sensors that are due, give back or take again the daemon's run slot."""
        if len(self.sensors):
            if self.cancelled.is_set():
                ended = self.sensors.stop(RunStatus.CANCELLED, "the run was cancelled while the sensor waited")
            else:
                ended = self.sensors.poke_due()
            for name, status, detail in ended:
                self._release(self._complete(name, status, detail))
        slot = self.r.slot
        if slot is None:
            return
        with self.lock:
            idle = bool(len(self.sensors)) and self.active_drivers == 0 and not self.ready and not self.held
            held, self.held = self.held, []
        if idle and self.slot_held:  # only waiting: the slot can run another pipeline meanwhile
            slot.release()
            self.slot_held = False
        if held:
            self._release(held)

    def _release(self, ready: list[Any]) -> None:
        """Start work made ready on the run's loop, once the run holds its slot again."""
        if not ready:
            return
        if not self.slot_held and not self.cancelled.is_set():
            assert self.r.slot is not None
            if not self.r.slot.acquire():
                with self.lock:
                    self.held.extend(ready)
                return
            self.slot_held = True
        self._schedule(ready)

    def _abandon(self, status: RunStatus = RunStatus.CANCELLED) -> None:
        """Record tasks still running or never reached as ``status`` (the caller stops waiting for them)."""
        now = self.r.clock()
        self.sensors.stop(status, "the run was interrupted while the sensor waited", record=False)
        with self.lock:
            left = [t for t in self.to_run if t not in self.states]
            for t in left:
                self.states[t] = status
        running = set(
            self.store.cancel_running_tasks(
                self.run_id, now=now, status=status, reason="the run was interrupted while the task ran"
            )
        )
        self.store.record_task_states(
            self.run_id, [(t, status, "the run was interrupted") for t in left if t not in running], now=now
        )
        for t in left:
            self.tel.task_state(
                self.name, t, status, reason="the run was interrupted", run_id=self.run_id, durable=True
            )

    def _outcome(self) -> tuple[RunStatus, str | None]:
        if self.abandon.is_set() and any(s is RunStatus.INTERRUPTED for s in self.states.values()):
            return RunStatus.INTERRUPTED, "stopped before the run finished (the daemon shut down); resume it"
        if self.cancelled.is_set() and any(s is RunStatus.CANCELLED for s in self.states.values()):
            return RunStatus.CANCELLED, "the run was cancelled"
        # Cached tasks delivered their output, and a branch not taken is no failure.
        bad = {
            t: s
            for t, s in self.states.items()
            if s not in OK and not (s is RunStatus.SKIPPED and t not in self.blocked)
        }
        if not bad and len(self.states) == len(self.to_run):
            return RunStatus.SUCCESS, None
        first = [t for t in self.to_run if t in bad and bad[t] in (RunStatus.FAILED, RunStatus.TIMED_OUT)]
        parts = [f"{t} {bad[t]}: {self.errors.get(t, '')}".rstrip(": ") for t in first[:3]]
        more = len(bad) - len(parts)
        if more:
            parts.append(f"{more} more not successful")
        return RunStatus.FAILED, "; ".join(parts) or "not every task succeeded"

    # --- scheduling --------------------------------------------------------------------------

    def _schedule(self, tasks: list[str], *, from_driver: bool = False) -> None:
        """Queue ready tasks; start driver threads up to max_workers (a busy driver takes them in turn).

        A driver that calls this takes the next task itself, so it starts one thread fewer.
        """
        if not tasks:
            return
        with self.lock:
            self.ready.extend(tasks)
            start = min(len(self.ready) - from_driver, self.max_drivers - self.active_drivers)
            self.active_drivers += max(start, 0)
        assert self.drivers is not None and self.ctx is not None
        for _ in range(start):
            self.drivers.submit(self.ctx.copy().run, self._drive)

    def _drive(self) -> None:
        # One driver runs ready work until none is left; no thread hand-off between a task and the next.
        while True:
            with self.lock:
                if not self.ready:
                    self.active_drivers -= 1
                    return
                unit = self.ready.popleft()
            item = type(unit) is tuple
            task = unit[0] if item else unit
            try:
                if self.user_cancel is not None and self.user_cancel.is_set():
                    self.cancelled.set()  # the caller's cancel counts at once, not at the next poll
                ready = run_item(self, *unit) if item else self._begin(task)
            except BaseException as exc:
                # A store that fails says what and where in one line; a traceback adds nothing to it.
                log.error(
                    "pipewarden failed while running task %s of %s: %s",
                    task,
                    self.name,
                    exc,
                    exc_info=not isinstance(exc, StoreError),
                )
                try:
                    if not item:
                        ready = self._complete(task, RunStatus.FAILED, f"pipewarden internal error: {exc}")
                    elif self.maps[task].item_ended(unit[1], RunStatus.FAILED, f"pipewarden internal error: {exc}"):
                        ready = self._complete(task, *self.maps[task].finish())
                    else:
                        ready = self.maps[task].units()
                except BaseException as again:  # the store itself is failing: stop the run rather than hang
                    log.error(
                        "pipewarden cannot record the end of task %s; stopping run %s: %s",
                        task,
                        self.run_id,
                        again,
                        exc_info=not isinstance(again, StoreError),
                    )
                    self._give_up(f"pipewarden could not record task {task}: {exc}")
                    return
            self._schedule(ready, from_driver=True)

    def _begin(self, task: str) -> list[Any]:
        """Run a ready task (a mapped one: start its items; a sensor: poke it once); return what it made ready."""
        gated = False
        detail: str | None
        spec = self.pipeline.tasks[task]
        if self.cancelled.is_set():
            status, detail = RunStatus.CANCELLED, "the run was cancelled before the task started"
            self._record_unrun(task, status, detail)
        elif spec.map is not None:
            return begin_map(self, task)
        elif spec.sensor is not None:
            ended = self.sensors.start(task, self._inputs(spec)[0])
            if ended is None:  # waiting: the run's loop pokes it from now on
                return []
            status, detail = ended
        else:
            status, detail, gated = self._run_task(task)
        return self._complete(task, status, detail, gated=gated)

    def _give_up(self, reason: str) -> None:
        with self.lock:
            for t in self.to_run:
                if t not in self.states:
                    self.states[t] = RunStatus.FAILED
                    self.errors[t] = reason
            self.active_drivers -= 1
            self.ready.clear()
        self.done.set()

    def _complete(self, task: str, status: RunStatus, detail: str | None, gated: bool = False) -> list[Any]:
        """Record the end of ``task``; return the tasks it made ready."""
        ready: list[Any] = []
        unrun: list[tuple[str, RunStatus, str]] = []
        with self.lock:
            self.states[task] = status
            if detail:
                self.errors[task] = detail
            if gated:
                self.blocked[task] = f"{task}: {detail}"
            skips = self._branch_skips(task) if status in OK and task in self.choices else []
            self._settle(task, ready, unrun, skips=skips)
            # Derived from the states, not counted: a task completed twice (the store failed
            # the first time) must still end the run.
            finished = len(self.states) == len(self.to_run)
        self._record_states(unrun)
        if finished:
            self.done.set()
        return ready

    def _state_of(self, task: str) -> RunStatus | None:
        # A task outside this execution was kept from an earlier one: it succeeded.
        return self.states.get(task) if task in self.remaining else RunStatus.SUCCESS

    def _branch_skips(self, branch: str) -> list[tuple[str, str]]:
        """The tasks directly below ``branch`` that its choice skips, with the reason."""
        chosen = self.choices[branch]
        below: set[str] = set().union(*(self.graph.downstream(c) for c in chosen))
        reason = f"branch {branch} chose {', '.join(sorted(chosen)) or 'none of the tasks below it'}"
        return [(c, reason) for c in branch_skips(self.graph.children[branch], chosen, below)]

    def _settle(
        self, ended: str | None, ready: list[Any], unrun: list[tuple[str, RunStatus, str]], *, skips: Any = ()
    ) -> None:
        """Apply the end of ``ended`` (and the ``skips`` of a branch) to the tasks below; the lock is held.

        Each task below is decided by its trigger rule: ready (appended to ``ready``), waiting, or
        ended without running (appended to ``unrun``, and its own tasks below decided in turn).
        """
        tasks = self.pipeline.tasks
        work = [] if ended is None else [ended]
        for c, reason in skips:
            if c in self.remaining and c not in self.states:
                self.states[c] = RunStatus.SKIPPED
                self.errors[c] = reason
                unrun.append((c, RunStatus.SKIPPED, reason))
                work.append(c)
        while work:
            t = work.pop()
            st = self._state_of(t)
            ok = st in OK and t not in self.blocked
            for c in self.graph.children[t]:
                if c not in self.remaining or c in self.states:
                    continue
                self.remaining[c] -= 1
                rule = tasks[c].trigger_rule
                if ok and (rule == "all_success" or self.remaining[c]):
                    if self.remaining[c] == 0:
                        ready.append(c)
                    continue
                deps = {t: st} if rule == "all_success" else {d: self._state_of(d) for d in self.graph.deps[c]}
                v = verdict(rule, deps, self.blocked, self.errors)
                if v is None:
                    continue
                if v.run:
                    ready.append(c)
                    continue
                assert v.state is not None
                self.states[c] = v.state
                self.errors[c] = v.reason
                if v.blocked:
                    self.blocked[c] = v.reason
                unrun.append((c, v.state, v.reason))
                work.append(c)

    def _record_states(self, unrun: list[tuple[str, RunStatus, str]]) -> None:
        """Record tasks that ended without running, in dependency order (it keeps the records readable)."""
        if not unrun:
            return
        unrun.sort(key=lambda u: self.index[u[0]])
        self.store.record_task_states(self.run_id, unrun, now=self.r.clock())
        for d, state, reason in unrun:
            self.tel.task_state(self.name, d, state, reason=reason, run_id=self.run_id, durable=True)

    def _record_unrun(self, task: str, status: RunStatus, reason: str) -> None:
        self.store.record_task_state(self.run_id, task, status, now=self.r.clock(), reason=reason)
        self.tel.task_state(self.name, task, status, reason=reason, run_id=self.run_id, durable=True)

    # --- one task ------------------------------------------------------------------------------

    def _inputs(self, task: Task) -> tuple[dict[str, Any], list[Any], list[int]]:
        """(keyword arguments, the table-like inputs, their row counts)."""
        kwargs: dict[str, Any] = {}
        bindings = self.wires[task.name][0]
        for p in task.parameters:
            source = bindings.get(p)
            if source is not None:
                kwargs[p] = take(self._output(source.task), source, task=task.name, param=p)
            elif p in self.values:
                kwargs[p] = self.values[p]
        for t in task.collected():  # **upstream
            kwargs[t] = self._output(t)
        return kwargs, *self._tables(task, kwargs)

    def _tables(self, task: Task, kwargs: Mapping[str, Any]) -> tuple[list[Any], list[int]]:
        """The table-like values among the upstream outputs (and the item) a task receives, and their rows."""
        frames: list[Any] = []
        rows: list[int] = []
        for p in self.wires[task.name][1]:
            value = kwargs.get(p)
            n = rows_of(value)
            if n is not None:
                frames.append(value)
                rows.append(n)
        return frames, rows

    def _output(self, task: str) -> Any:
        try:
            return self.outputs[task]
        except KeyError:
            pass
        if task in self.remaining:  # ended in this execution without an output (a trigger rule let it through)
            return None
        ref = self.preloaded.get(task)
        if ref is None:
            raise RuntimeError(f"output of task {task!r} is not available")
        pickles = self.pipeline.tasks[task].persist == "pickle"
        count = parse_items_ref(ref)
        if count is not None:
            value = load_items(self.home, count, self.prior_items.get(task, {}), allow_pickle=pickles)
        else:
            value = load_output(self.home, ref, allow_pickle=pickles)
        with self.lock:
            self.outputs.setdefault(task, value)
        return self.outputs[task]

    def _run_task(
        self,
        name: str,
        *,
        item: int | None = None,
        kwargs: dict[str, Any] | None = None,
        unwired: Exception | None = None,
    ) -> tuple[RunStatus, str | None, bool]:
        """Run one task (or one ``item`` of a mapped task, with its ``kwargs``) with its retries;
        (final state, error or reason, whether a check blocked it).

        ``unwired``: why the task's arguments could not be made; its one attempt fails with it.
        Each attempt is written to the store before anyone hears of it (the events are durable).
        """
        task = self.pipeline.tasks[name]
        store, tel, clock = self.store, self.tel, self.r.clock
        # An input that cannot be taken fails the task, without retries.
        if kwargs is None:
            try:
                kwargs, frames, input_rows = ({}, [], []) if unwired is not None else self._inputs(task)
            except TaskInputError as exc:
                kwargs, frames, input_rows, unwired = {}, [], [], exc
            attempt = self.base_attempts.get(name, 0)
        else:
            frames, input_rows = self._tables(task, kwargs)
            prior = self.prior_items.get(name, {}).get(item) if item is not None else None
            attempt = prior.attempt if prior is not None else 0
        key = cached = None
        if task.cache is not None and unwired is None:
            key, cached = cache_lookup(self, task, kwargs, item)
            if cached is not None:
                return cached
        rows_in = sum(input_rows) if frames else None
        tries = 0
        while True:
            attempt += 1
            tries += 1
            tr_id = store.start_task(self.run_id, name, attempt, now=clock(), item=item)
            ts = tel.task_scope(
                self.name, name, run_id=self.run_id, attempt=attempt, retry=tries > 1, durable=True, item=item
            )
            results: list[Any] = []
            reason: str | None = None  # why a blocking check failed
            ref: str | None = None
            not_kept: str | None = None  # why an output a resume may need could not be kept
            value: Any = None
            choice: frozenset[str] | None = None  # what a branch task chose
            rows_out: int | None = None
            failure: BaseException | None = None
            logs = TaskLog()  # what the attempt logs and prints, wherever it runs (agent.tasklogs)
            ts.__enter__()
            try:
                if unwired is not None:
                    raise unwired
                if rows_in:
                    ts.rows_in(rows_in)
                with logs.active():
                    out = self._call(task, kwargs)
                if isinstance(out, Measured):
                    logs.merge(out.logs)
                    value = out.value
                    if out.cpu:
                        ts.add_cpu(out.cpu)
                    if out.peak:
                        ts.set_peak_memory(out.peak)
                else:
                    value = out
                rows_out = rows_of(value)
                if rows_out:
                    ts.rows_out(rows_out)
                choice = branch_choice(name, value, self.graph.children[name]) if task.branch else None
                if task.checks:
                    ctx = ts.context(
                        inputs=frames,
                        store=store,
                        now=dt.datetime.fromtimestamp(clock(), dt.UTC),
                        logical_date=self.values.get("logical_date"),
                    )
                    results = ts.run_checks(task.checks, value, ctx)
                    stop = blocking(results, task.on_check_error)
                    reason = blocking_reason(stop) if stop else None
                if reason is not None:
                    ts.set_status("failed", reason)
                elif value is None:
                    ref = NONE_REF
                elif task.persist != "off" and (name in self.consumed or task.branch):  # a resume replays a branch
                    label = name if item is None else f"{name}[{item}]"
                    ref, not_kept = save_output(
                        self.home, self.run_id, label, value, allow_pickle=task.persist == "pickle"
                    )
                if key is not None and reason is None:
                    not_kept = "; ".join(x for x in (not_kept, cache_keep(self, task, key, value)) if x) or None
            except TaskCancelledError as exc:
                failure = exc
                logs.merge(attached(exc))
                ts.set_status(RunStatus.CANCELLED, str(exc))
            except BaseException as exc:
                failure = exc
                logs.merge(attached(exc))
                # a branch that names a task it cannot choose is a bug in the pipeline: running it again redoes
                # its work for the same answer
                if (
                    exc is not unwired
                    and not isinstance(exc, BranchError)
                    and task.retry.should_retry(exc, tries)
                    and not self.cancelled.is_set()
                ):
                    ts.retry_in = task.retry.delay_for(tries, self.r.rng)
            end = clock()
            ts.ended_at = end
            event, _ = ts.end(failure)
            if self.abandon.is_set():  # recorded interrupted when the run stopped waiting for it
                return RunStatus.INTERRUPTED, "the run stopped waiting for the task", False
            status = ts.status or RunStatus.FAILED
            error = reason if reason is not None else ts.error
            ok = status is RunStatus.SUCCESS
            store.finish_task(
                tr_id,
                status,
                now=end,
                rows_in=rows_in,
                rows_out=rows_out,
                error=error,
                reason=not_kept if ok else None,
                output_ref=ref if ok else None,
                checks=results,
                logs=logs.text(),
            )
            if event is not None:
                tel.bus.emit(event)
            if status is RunStatus.SUCCESS:
                self._delivered(name, item, value, not_kept, choice)
                return RunStatus.SUCCESS, None, False
            if ts.retry_in is not None:
                self.sleep(ts.retry_in)
                if not self.cancelled.is_set():
                    continue
            return status, error, reason is not None

    def _delivered(self, name: str, item: int | None, value: Any, not_kept: str | None, choice: Any = None) -> None:
        """Keep a task's (or an item's) output for the tasks below, and a branch's choice."""
        with self.lock:
            if item is None:
                self.outputs[name] = value
                if choice is not None:
                    self.choices[name] = choice
                return
            m = self.maps[name]
        m.results[item] = value
        if not_kept:
            m.not_kept[item] = not_kept

    def _call(self, task: Task, kwargs: dict[str, Any]) -> Any:
        ex = self.executor
        if task.timeout is not None:
            if ex.local:
                return run_in_child(
                    task.fn, kwargs, task.timeout, grace=self.r.kill_grace, cancel=self.cancelled, task=task.name
                )
            return self._wait_remote(ex.submit(timed, task.fn, kwargs, task.timeout, self.r.kill_grace), task)
        if ex.local:
            return invoke(task.fn, kwargs)
        return self._wait_remote(ex.submit(measured, task.fn, kwargs), task)

    def _wait_remote(self, future: Any, task: Task) -> Any:
        finished = threading.Event()
        future.add_done_callback(lambda _f: finished.set())
        while not finished.wait(0.25):
            if self.cancelled.is_set():
                future.cancel()
                raise TaskCancelledError(
                    f"task {task.name!r} was abandoned because the run was cancelled", task=task.name
                )
        return future.result()


def _wires(task: Task, tasks: Mapping[str, Task]) -> tuple[dict[str, Input], tuple[str, ...]]:
    """(parameter -> the output it receives, the arguments that may be tables: upstream outputs and the item)."""
    bindings = task.bindings(tasks)
    names = [*bindings, *task.collected()]
    if task.map is not None and task.map not in names:
        names.append(task.map)
    return bindings, tuple(names)
