"""The standalone agent: one object that schedules, watches, runs, serves and survives.

>>> import pathlib, tempfile                                         # doctest: +SKIP
>>> daemon = Daemon("pipewarden.yml", home=tempfile.mkdtemp())       # doctest: +SKIP
>>> daemon.start(); daemon.tick(daemon.clock()); daemon.stop()       # doctest: +SKIP

:meth:`Daemon.tick` does one round of work at a given time: it reloads the
configuration if asked to, starts the runs that are due (schedule ticks, files
that arrived, triggers from the API, alert actions), evaluates the timed alert
rules and returns how long it may sleep before something is due again.
:meth:`Daemon.run_forever` calls it, sleeping on an event that file arrivals,
API triggers, finished runs and signals set: no busy loop, no fixed polling.
Signal handlers only set flags. Each run executes on its own thread, so a slow
or hanging pipeline never delays another pipeline's tick.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import logging
import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import ConfigError, PipewardenError

__all__ = ["Daemon", "DaemonLockedError"]

log = logging.getLogger("pipewarden.daemon")

#: Longest sleep between ticks when nothing is due (alert deadlines, re-sends, retention).
MAX_SLEEP = 1.0
#: Seconds between two looks for runs whose owner died (on this host) or stopped renewing its lease (on another).
RECOVER_EVERY = 15.0


class DaemonLockedError(PipewardenError, RuntimeError):
    """Another daemon already runs on this home; ``pid`` is its process id (when it could be read)."""

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


@dataclass
class _Active:
    """A run this daemon is executing."""

    run_id: str
    pipeline: str
    thread: threading.Thread
    cancel: threading.Event = field(default_factory=threading.Event)
    abandon: threading.Event = field(default_factory=threading.Event)
    #: Holds one of the ``agent.max_runs`` run slots; a run whose only work is waiting sensors gives it back.
    holds: bool = True


class _Slot:
    """The run slot of one daemon run, as the runner sees it (``Runner(slot=...)``)."""

    def __init__(self, daemon: Daemon, active: _Active) -> None:
        self.daemon = daemon
        self.active = active

    def release(self) -> None:
        with self.daemon._state:
            self.active.holds = False
        self.daemon.wake.set()  # a run waiting for a slot may start now

    def acquire(self) -> bool:
        d = self.daemon
        with d._state:
            if not self.active.holds and d._busy() < d.loaded.agent.max_runs:
                self.active.holds = True
            return self.active.holds


class Daemon:
    """The agent as one long-lived process: ``start()``, ``tick(now)``, ``stop()``.

    ``config``: path to pipewarden.yml. ``env``: the environment the
    configuration and the telemetry read (default ``os.environ``). ``home``
    overrides the configuration's ``agent.home``. ``clock`` gives Unix time;
    ``serve=False`` starts no HTTP server (tests that step ``tick``).
    """

    def __init__(
        self,
        config: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        home: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.time,
        serve: bool = True,
        watch_config: bool = True,
    ) -> None:
        self.config_path = Path(config)
        self.env = dict(os.environ if env is None else env)
        self.home_arg = home
        self.clock = clock
        self.serve = serve
        self.watch_config = watch_config
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.loaded: Any = None
        self.store: Any = None
        self.telemetry: Any = None
        self.scheduler: Any = None
        self.evaluator: Any = None
        self.http: Any = None
        self.started_at: float | None = None
        self.last_reload_ok = True
        self.last_reload_error: str | None = None
        self._lock_file: Any = None
        self._active: dict[str, _Active] = {}
        self._pending: deque[Any] = deque()  # due runs waiting for a free run slot
        self._told_waiting: set[str] = set()
        self._triggers: deque[tuple[str, dict[str, Any], str, threading.Event, list[str]]] = deque()
        self._state = threading.Lock()
        self._watcher: Any = None
        self._config_mtime: float | None = None
        self._next_recovery = 0.0
        #: Runs whose tasks were still running when the daemon stopped waiting (their threads live on).
        self.abandoned = 0

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def home(self) -> Path:
        """``--home`` > the configuration's ``agent.home`` (relative to the file) > ``$PIPEWARDEN_HOME`` > default."""
        from agent.settings import home

        if self.home_arg is not None:
            return home(self.home_arg)
        configured = self.loaded.agent.home if self.loaded is not None else None
        if configured:
            path = Path(os.path.expanduser(configured))
            return path if path.is_absolute() else self.config_path.parent / path
        return home(None)

    def start(self) -> None:
        """Load the configuration (whole, or refuse), take the home's lock, recover, start serving."""
        from agent.config import load_pipelines_from
        from agent.runner import recover_interrupted
        from agent.scheduler import Scheduler
        from agent.store import RunStore
        from agent.telemetry import Telemetry

        self.loaded = load_pipelines_from(self.config_path, env=self.env)
        self._config_mtime = _mtime(self.config_path)
        home = self.home
        home.mkdir(parents=True, exist_ok=True)
        self._take_lock(home)
        try:
            env = {**self.env, **self.loaded.agent.env}
            # Like agent.home: the configuration's agent.store, else $PIPEWARDEN_STORE, else SQLite in the home.
            self.store = RunStore.default(home, url=self.loaded.agent.store, env=env)
            from exporters.metrics import Metrics

            self.telemetry = Telemetry.from_env(
                env, home=home, store=self.store, history=False, metrics=Metrics(daemon=True)
            )
            recover_interrupted(self.store, self.telemetry, now=self.clock())
            self._next_recovery = self.clock() + RECOVER_EVERY
            self.scheduler = Scheduler(
                self.store, [p.pipeline for p in self.loaded.pipelines.values()], telemetry=self.telemetry
            )
            self.scheduler.on_file_event(self.wake.set)
            self.scheduler.start()
            self._start_alerts()
            self._reloaded(ok=True)
            if self.serve:
                from agent.http import serve

                self.http = serve(self)
            if self.watch_config:
                self._watch_config()
            self.started_at = self.clock()
            log.info(
                "pipewarden daemon started: %d pipeline(s), home %s%s",
                len(self.loaded.pipelines),
                home,
                f", serving {self.http.url}" if self.http is not None else "",
            )
        except BaseException:
            self._release_lock()
            raise

    def run_forever(self) -> int:
        """Tick until SIGTERM or SIGINT; SIGHUP reloads the configuration. Returns the exit code (0)."""
        previous = self._install_signals()
        try:
            while not self.stopping.is_set():
                try:
                    delay = self.tick(self.clock())
                except PipewardenError:
                    log.exception("pipewarden daemon tick failed; trying again in %.0fs", MAX_SLEEP)
                    delay = MAX_SLEEP
                self.wake.wait(delay)
                self.wake.clear()
        finally:
            self._restore_signals(previous)
            self.stop()
        return 0

    def stop(self, grace: float | None = None) -> None:
        """Start nothing new; let running tasks finish for up to ``grace`` seconds, then cancel them."""
        self.stopping.set()
        grace = self.loaded.agent.grace_period if grace is None and self.loaded is not None else (grace or 0.0)
        if self.scheduler is not None:
            self.scheduler.stop()
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        deadline = time.monotonic() + grace
        for active in self._running():
            active.thread.join(max(0.0, deadline - time.monotonic()))
        left = self._running()
        for active in left:  # past the grace period: the runner records what did not finish as interrupted
            log.warning(
                "run %s of %s did not finish within the %gs grace period; recording it interrupted "
                "(resume it with pipewarden runs resume %s)",
                active.run_id,
                active.pipeline,
                grace,
                active.run_id,
            )
            active.cancel.set()
            active.abandon.set()
        for active in left:
            active.thread.join(10.0)
        self.abandoned = len(left)
        if self.evaluator is not None:
            self.evaluator.stop(5.0)
            self.evaluator = None
        if self.http is not None:
            self.http.close()
            self.http = None
        if self.telemetry is not None:
            self.telemetry.shutdown(timeout=5.0)
            self.telemetry = None
        self._release_lock()

    # --- one round of work ------------------------------------------------------------------------------

    def tick(self, now: float) -> float:
        """Do what is due at ``now`` (Unix seconds); return how long the loop may sleep."""
        if self.reload_requested.is_set() or self._config_changed():
            self.reload_requested.clear()
            self.reload()
        when = dt.datetime.fromtimestamp(now, dt.UTC)
        if not self.stopping.is_set():
            for due in self.scheduler.tick(when):
                if due.trigger in ("cron", "interval") and due.logical_date is not None:
                    late = max(0.0, now - due.logical_date.timestamp())
                    self.telemetry.child("pipewarden_scheduler_lateness_seconds").observe(late)
                self._pending.append(due)
            self._take_triggers(when)
            self._recover(now)
            self._start_pending()
        if self.evaluator is not None:
            try:
                self.evaluator.tick(now)
            except Exception:
                log.exception("alert evaluation failed")
        self._set_active_gauges()
        nxt = self.scheduler.next_due(when)
        delay = MAX_SLEEP if nxt is None else max(0.0, min(MAX_SLEEP, nxt.timestamp() - now))
        return delay

    def _recover(self, now: float) -> None:
        """Now and then, record interrupted the runs whose owner is gone: with a shared store, those of
        agents on other hosts too (their lease ran out), so their alerts fire and they can be resumed."""
        if now < self._next_recovery:
            return
        self._next_recovery = now + RECOVER_EVERY
        from agent.runner import recover_interrupted

        try:
            recover_interrupted(self.store, self.telemetry, now=now)
        except PipewardenError:
            log.exception("looking for interrupted runs failed; trying again in %.0fs", RECOVER_EVERY)

    def _start_pending(self) -> None:
        limit = self.loaded.agent.max_runs
        held: list[Any] = []
        while self._pending and self._holding() < limit:
            due = self._pending.popleft()
            pipe = self.scheduler.pipelines.get(due.pipeline)
            if pipe is None:  # removed by a reload: its queued run stays queued for when it comes back
                continue
            if sum(a.pipeline == pipe.name for a in self._running()) >= pipe.max_active_runs:
                held.append(due)  # its pipeline is at max_active_runs here: it starts when one of them ends
                continue
            self._launch(pipe, due)
        self._pending.extendleft(reversed(held))

    def _launch(self, pipe: Any, due: Any) -> None:
        from agent.errors import RunClaimedError, RunLimitError
        from agent.runner import Runner

        run_id = due.run_id
        active = _Active(run_id, pipe.name, threading.Thread())

        def work() -> None:
            waits = False
            try:
                executor = None
                spec = self.loaded.agent
                if spec.executor != "threads":
                    from agent.executors import get_executor

                    executor = get_executor(spec.executor, address=spec.dask_address)
                try:
                    Runner(
                        store=self.store,
                        telemetry=self.telemetry,
                        executor=executor,
                        clock=self.clock,
                        slot=_Slot(self, active),
                    ).run(pipe, run_id=run_id, cancel=active.cancel, abandon=active.abandon)
                finally:
                    if executor is not None:
                        executor.shutdown()
            except RunLimitError as exc:  # another process runs the pipeline's max_active_runs: stays queued
                waits = True
                if run_id not in self._told_waiting:  # said once per run, not at every retry
                    self._told_waiting.add(run_id)
                    log.info("run %s of pipeline %s waits for a slot: %s", run_id, pipe.name, exc)
                self._pending.append(due)  # tried again at the next tick (within MAX_SLEEP)
            except RunClaimedError as exc:  # an agent sharing the store started it first: it is theirs
                log.info("run %s of pipeline %s runs elsewhere: %s", run_id, pipe.name, exc)
            except Exception:
                log.exception("run %s of pipeline %s failed to run", run_id, pipe.name)
            finally:
                with self._state:
                    self._active.pop(run_id, None)
                if not waits:
                    self._told_waiting.discard(run_id)
                    self.wake.set()  # a slot is free, and max_active_runs may let a waiting tick through

        active.thread = threading.Thread(target=work, name=f"pipewarden-run-{pipe.name}", daemon=True)
        with self._state:
            self._active[run_id] = active
        active.thread.start()

    def _running(self) -> list[_Active]:
        with self._state:
            return list(self._active.values())

    def _busy(self) -> int:
        """Runs holding a run slot (the caller holds ``_state``)."""
        return sum(a.holds for a in self._active.values())

    def _holding(self) -> int:
        with self._state:
            return self._busy()

    def _set_active_gauges(self) -> None:
        counts: dict[str, int] = {name: 0 for name in self.scheduler.pipelines}
        for a in self._running():
            counts[a.pipeline] = counts.get(a.pipeline, 0) + 1
        for name, n in counts.items():
            cell = self.telemetry.metrics.pipelines.cell(name)
            with cell.lock:
                cell.active = n

    # --- triggers from the API and from alert actions -----------------------------------------------------

    def trigger(
        self, pipeline: str, params: Mapping[str, Any] | None = None, *, trigger: str = "manual", timeout: float = 10.0
    ) -> str:
        """Queue a run of ``pipeline`` now; returns its run id once the store has it (ConfigError if unknown)."""
        if self.scheduler is None or pipeline not in self.scheduler.pipelines:
            known = ", ".join(sorted(self.scheduler.pipelines)) if self.scheduler is not None else "none"
            raise ConfigError(f"there is no pipeline {pipeline!r} in this daemon (pipelines: {known})")
        from agent.runner import run_values

        pipe = self.scheduler.pipelines[pipeline]
        # Validates and converts (agent.params): the queued run keeps the values as their types' JSON.
        _, stored, _ = run_values(pipe, params, run_id="check", trigger=trigger, logical_date=None, now=self.clock())
        given = {k: stored.get(k, v) for k, v in (params or {}).items()}
        done, out = threading.Event(), list[str]()
        self._triggers.append((pipeline, given, trigger, done, out))
        self.wake.set()
        if not done.wait(timeout) or not out:
            raise ConfigError(f"the daemon did not take the trigger of {pipeline!r} within {timeout:g}s")
        if out[0].startswith("error:"):
            raise ConfigError(out[0][len("error: ") :])
        return out[0]

    def _take_triggers(self, when: dt.datetime) -> None:
        while self._triggers:
            pipeline, params, trigger, done, out = self._triggers.popleft()
            try:
                due = self.scheduler.trigger(pipeline, params, now=when, trigger=trigger)
                self._pending.append(due)
                out.append(due.run_id)
            except Exception as exc:
                out.append(f"error: {exc}")
            finally:
                done.set()

    def resume(self, run_id: str) -> str:
        """Resume a run that did not succeed (on a run thread); returns its run id."""
        rec = self.store.get_run(run_id)
        if rec is None:
            raise ConfigError(f"there is no run {run_id!r} in the run store")
        pipe = self.scheduler.pipelines.get(rec.pipeline)
        if pipe is None:
            raise ConfigError(f"run {run_id} is a run of {rec.pipeline!r}, which this daemon does not have")
        if rec.status in ("queued", "running"):
            raise ConfigError(f"run {run_id} is {rec.status}; only a finished run can be resumed")
        if rec.status == "success":
            raise ConfigError(f"run {run_id} already succeeded; nothing to resume")
        from agent.runner import Runner

        active = _Active(run_id, pipe.name, threading.Thread())

        def work() -> None:
            try:
                Runner(store=self.store, telemetry=self.telemetry, clock=self.clock).resume(
                    pipe, run_id, cancel=active.cancel, abandon=active.abandon
                )
            except Exception:
                log.exception("resuming run %s failed", run_id)
            finally:
                with self._state:
                    self._active.pop(run_id, None)
                self.wake.set()

        active.thread = threading.Thread(target=work, name=f"pipewarden-resume-{run_id}", daemon=True)
        with self._state:
            if run_id in self._active:
                raise ConfigError(f"run {run_id} is already being resumed")
            self._active[run_id] = active
        active.thread.start()
        return run_id

    # --- alerts -----------------------------------------------------------------------------------------

    def _start_alerts(self) -> None:
        from alerts.config import evaluator_from_config
        from exporters.alert_metrics import PrometheusAlertMetrics

        self.evaluator = evaluator_from_config(
            self.loaded.config.alerts,
            store=self.store,
            metrics=PrometheusAlertMetrics(self.telemetry.metrics),
            actions=_Actions(self),
            env=self.env,
            clock=self.clock,
            tick_interval=None,
        )
        self.telemetry.bus.add(self.evaluator)
        self.telemetry.on_export_error.append(
            lambda exporter, pipeline: (
                self.evaluator.export_failed(exporter, pipeline=pipeline or None)
                if self.evaluator is not None
                else None
            )
        )
        self.evaluator.start()

    # --- reloading --------------------------------------------------------------------------------------

    def reload(self) -> bool:
        """Load the configuration again; a bad file keeps the running one (every error logged once)."""
        from agent.config import load_pipelines_from

        try:
            new = load_pipelines_from(self.config_path, env=self.env)
        except ConfigError as exc:
            self._config_mtime = _mtime(self.config_path)
            if str(exc) != self.last_reload_error:
                for problem in exc.problems:
                    log.error("configuration not reloaded: %s", problem)
            self._reloaded(ok=False, error=str(exc))
            return False
        self._config_mtime = _mtime(self.config_path)
        old = self.loaded.pipelines
        changed = [n for n in new.pipelines if n in old and _fingerprint(new.pipelines[n]) != _fingerprint(old[n])]
        removed = [n for n in old if n not in new.pipelines]
        added = [n for n in new.pipelines if n not in old]
        for name in (*removed, *changed):
            self.scheduler.remove(name)
        for name in (*changed, *added):
            self.scheduler.add(new.pipelines[name].pipeline)
        self.scheduler.on_file_event(self.wake.set)
        self.scheduler.start()
        alerts_changed = new.config.alerts != self.loaded.config.alerts
        self.loaded = new
        if alerts_changed:
            old_evaluator, self.evaluator = self.evaluator, None
            if old_evaluator is not None:
                self.telemetry.bus.remove(old_evaluator)
                old_evaluator.stop(5.0)
            self._start_alerts()
        log.info(
            "configuration reloaded: %d added, %d changed, %d removed, %d unchanged",
            len(added),
            len(changed),
            len(removed),
            len(new.pipelines) - len(added) - len(changed),
        )
        self._reloaded(ok=True)
        return True

    def _reloaded(self, *, ok: bool, error: str | None = None) -> None:
        self.last_reload_ok = ok
        self.last_reload_error = error
        m = self.telemetry.metrics
        m["pipewarden_config_last_reload_successful"].set(1 if ok else 0)
        if ok:
            m["pipewarden_config_last_reload_success_timestamp_seconds"].set(self.clock())

    def _config_changed(self) -> bool:
        return self._watcher is not None and _mtime(self.config_path) != self._config_mtime

    def _watch_config(self) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        daemon, target = self, self.config_path.resolve()

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                paths = {os.fsdecode(p) for p in (event.src_path, getattr(event, "dest_path", None)) if p}
                if str(target) in paths:
                    daemon.wake.set()

        observer = Observer()
        observer.schedule(Handler(), str(target.parent), recursive=False)
        observer.daemon = True
        observer.start()
        self._watcher = observer

    # --- one daemon per home ----------------------------------------------------------------------------

    def _take_lock(self, home: Path) -> None:
        path = home / "daemon.lock"
        f = open(path, "a+")  # noqa: SIM115 - held open for the daemon's lifetime
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            f.seek(0)
            text = f.read().strip()
            f.close()
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            pid = int(text) if text.isdigit() else None
            raise DaemonLockedError(
                f"another pipewarden daemon{f' (pid {pid})' if pid else ''} is running on {home}; stop it, or give "
                "this one another home (agent.home in the configuration, or --home)",
                pid=pid,
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock_file = f

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # --- signals ----------------------------------------------------------------------------------------

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def stop(signum: int, frame: Any) -> None:
            self.stopping.set()
            self.wake.set()

        def reload(signum: int, frame: Any) -> None:
            self.reload_requested.set()
            self.wake.set()

        previous: dict[int, Any] = {}
        for sig, handler in ((signal.SIGTERM, stop), (signal.SIGINT, stop), (signal.SIGHUP, reload)):
            previous[sig] = signal.signal(sig, handler)
        return previous

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    # --- what the HTTP side reads -------------------------------------------------------------------

    def pipelines(self) -> list[dict[str, Any]]:
        """The configured pipelines with their schedule and next due time."""
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        active = Counter(a.pipeline for a in self._running())
        out = []
        for name, pipe in sorted(self.scheduler.pipelines.items()):
            sched = pipe.schedule
            nxt = next(iter(sched.ticks(now, now + dt.timedelta(days=366))), None) if sched is not None else None
            out.append(
                {
                    "name": name,
                    "schedule": _describe(sched),
                    "next_run": nxt.isoformat() if nxt else None,
                    "tasks": list(pipe.graph().order),
                    "active": active[name],
                    "max_active_runs": pipe.max_active_runs,
                }
            )
        return out


class _Actions:
    """What alert rules may do: resume a run or trigger a pipeline, through the daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def resume(self, run_id: str) -> str:
        return self.daemon.resume(run_id)

    def trigger(self, pipeline: str, params: Mapping[str, Any]) -> str:
        # Called on the evaluator's thread; the daemon's loop takes it at its next tick.
        return self.daemon.trigger(pipeline, params, trigger="alert")


def _describe(schedule: Any) -> str:
    if schedule is None:
        return "manual"
    kind = schedule.kind
    if kind == "cron":
        return f"cron {schedule.expr} ({schedule.timezone})"
    if kind == "interval":  # "every 90s" reads better as "every 1m30s" than as timedelta's "0:01:30"
        from alerts.durations import format_duration

        seconds = schedule.every.total_seconds()
        return f"every {format_duration(seconds) if seconds.is_integer() else f'{seconds:g}s'}"
    if kind == "file":
        return f"files {schedule.pattern} in {schedule.directory}"
    if kind == "after":
        return "after " + ", ".join(map(str, schedule.links))
    return str(kind)


def _fingerprint(p: Any) -> tuple[Any, ...]:
    """What makes a configured pipeline the same after a reload: its entry and its file's version."""
    return (p.spec.model_dump_json(), p.pipeline.version)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


if TYPE_CHECKING:  # mypy proves the run store is what the alert evaluator needs: an alert state store, a run history
    from agent.sql_store import SQLRunStore
    from alerts.facts import RunHistory
    from alerts.store import AlertStateStore

    def _alert_protocols(store: SQLRunStore) -> tuple[AlertStateStore, RunHistory]:
        return store, store
