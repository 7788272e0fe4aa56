"""Run events: the facts of a run as they happen, and the listeners that hear them.

``@monitor`` and the runner emit the same events, so a decorated script, a
``pipewarden run`` and a daemon run look the same to every listener: the run
store, the Prometheus metrics, the progress display, the alert evaluator.

>>> bus = EventBus()
>>> seen = []
>>> bus.add(seen.append, inline=True)
>>> bus.emit(RunStarted("r1", "orders", 0.0))
>>> [type(e).__name__ for e in seen]
['RunStarted']

A listener is a callable taking one event (or an object with ``handle``).
``inline`` listeners are called in the emitting thread, in order, and must be
cheap (the metrics, the progress display). Every other listener has its own
thread and bounded queue, so a slow or hanging listener never stalls a run:
when its queue is full, events for it are dropped and counted. A listener that
raises is logged once and counted; the run goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agent.records import RunStatus

if TYPE_CHECKING:
    from checks.result import CheckResult

__all__ = [
    "ChecksEvaluated",
    "EventBus",
    "Listener",
    "RunEnded",
    "RunEvent",
    "RunOutcome",
    "RunStarted",
    "TaskEnded",
    "TaskStarted",
]

log = logging.getLogger("pipewarden.events")

# Events are slotted, not frozen: a frozen dataclass sets each field through
# object.__setattr__, which costs microseconds on the hot path of @monitor.
# Treat them as immutable.


@dataclass(slots=True)
class RunStarted:
    """A pipeline run began. ``tasks`` are its tasks in dependency order (one for a ``@monitor`` call);
    ``kept`` the tasks a resumed run does not run again. ``durable``: the emitter already wrote this
    fact to the run store (the orchestrator does, before acting on it)."""

    run_id: str
    pipeline: str
    started_at: float
    trigger: str = "manual"
    version: str = ""
    tasks: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    resumed: bool = False
    durable: bool = False


@dataclass(slots=True)
class TaskStarted:
    """An attempt of a task began (``attempt`` counts from 1 within the run). ``item``: the index of
    one item of a mapped task (None for a task); ``waiting``: a sensor began to wait for its condition."""

    run_id: str
    pipeline: str
    task: str
    attempt: int
    started_at: float
    durable: bool = False
    item: int | None = None
    waiting: bool = False


@dataclass(slots=True)
class TaskEnded:
    """An attempt of a task ended, or a task ended without running (``attempt`` 0: skipped,
    upstream failed, cancelled or interrupted before it started).

    ``duration`` is measured with a monotonic clock; ``started_at``/``ended_at``
    are Unix times. ``cpu_seconds`` and ``peak_memory_bytes`` are those of the
    thread or process that ran it. ``retry`` says this attempt retried a failure;
    ``retry_in`` that another attempt follows after that many seconds. ``checks``
    are the check results on the task's output. ``item`` is the index of one item
    of a mapped task (None for a task, and for a mapped task's own end); ``pokes``
    how often a sensor looked at its condition (its ``duration`` is the wait).
    """

    run_id: str
    pipeline: str
    task: str
    attempt: int
    status: RunStatus
    started_at: float
    ended_at: float
    duration: float = 0.0
    rows_in: int | None = None
    rows_out: int | None = None
    cpu_seconds: float = 0.0
    peak_memory_bytes: int | None = None
    error: str | None = None
    reason: str | None = None
    retry: bool = False
    retry_in: float | None = None
    checks: tuple[CheckResult, ...] = ()
    durable: bool = False
    item: int | None = None
    pokes: int | None = None


@dataclass(slots=True)
class ChecksEvaluated:
    """One check ran on a task's output: its results and how long it took."""

    run_id: str
    pipeline: str
    task: str
    dataset: str
    check: str
    results: tuple[CheckResult, ...]
    seconds: float


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What one finished run means for the delivery KPIs (see :mod:`agent.kpis`).

    ``change``: the run is the first verdict of a new pipeline version;
    ``failed_change``: and it failed; ``recovery_seconds``: the run succeeded
    after failures, this long after the first of them ended. ``counted``: the
    run reached a verdict (a cancelled run did not, and changes nothing).
    """

    counted: bool = True
    change: bool = False
    failed_change: bool = False
    recovery_seconds: float | None = None


@dataclass(slots=True)
class RunEnded:
    """A pipeline run ended in ``status``; ``outcome`` is what it means for the KPIs."""

    run_id: str
    pipeline: str
    status: RunStatus
    started_at: float
    ended_at: float
    duration: float = 0.0
    trigger: str = "manual"
    version: str = ""
    error: str | None = None
    outcome: RunOutcome = field(default_factory=RunOutcome)
    durable: bool = False


RunEvent = RunStarted | TaskStarted | TaskEnded | ChecksEvaluated | RunEnded
EVENT_TYPES: tuple[type, ...] = (RunStarted, TaskStarted, TaskEnded, ChecksEvaluated, RunEnded)


@runtime_checkable
class Listener(Protocol):
    """Anything with ``handle(event)``; ``events`` (optional) limits which event types it hears."""

    def handle(self, event: Any) -> None: ...


ErrorHook = Callable[[str, str, BaseException | None, str], None]
"""``on_error(listener_name, what, exc, pipeline)``: ``what`` is ``raised``, ``dropped`` or ``stalled``;
``pipeline`` is the pipeline of the event concerned (empty when none is)."""

#: Most events a queued listener with ``handle_batch`` is given at once.
BATCH = 1000


class _Queued:
    """A listener's own thread and bounded queue: the emitter only enqueues."""

    def __init__(
        self,
        name: str,
        handle: Callable[[Any], None],
        bus: EventBus,
        maxsize: int,
        handle_batch: Callable[[list[Any]], None] | None = None,
    ) -> None:
        self.name = name
        self.handle = handle
        self.handle_batch = handle_batch
        self.bus = bus
        self.maxsize = maxsize
        self.q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.idle = threading.Event()
        self.idle.set()
        self.pending = 0
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name=f"pipewarden-listener-{name}", daemon=True)
        self.thread.start()

    def __call__(self, event: Any) -> None:
        with self._lock:
            if self.pending >= self.maxsize:
                full = True
            else:
                full = False
                self.pending += 1
                self.idle.clear()
        if full:
            self.bus._failed(self.name, "dropped", None, event)
            return
        self.q.put(event)

    def _loop(self) -> None:
        while True:
            batch = [self.q.get()]
            if self.handle_batch is not None:  # a writer takes what has queued up in one go
                while len(batch) < BATCH and batch[-1] is not _STOP:
                    try:
                        batch.append(self.q.get_nowait())
                    except queue.Empty:
                        break
            stop = batch[-1] is _STOP
            events = batch[:-1] if stop else batch
            try:
                if events:
                    self._deliver(events)
            finally:
                with self._lock:
                    self.pending -= len(events)
                    if self.pending == 0:
                        self.idle.set()
            if stop:
                return

    def _deliver(self, events: list[Any]) -> None:
        if self.handle_batch is not None:
            try:
                self.handle_batch(events)
            except Exception as exc:
                self.bus._failed(self.name, "raised", exc, events[0])
            return
        for event in events:
            try:
                self.handle(event)
            except Exception as exc:
                self.bus._failed(self.name, "raised", exc, event)

    def stop(self) -> None:
        self.q.put(_STOP)


_STOP = object()


class EventBus:
    """Delivers run events to listeners; never raises into the emitter.

    ``on_error(listener, what, exc)`` hears every listener failure (the
    telemetry counts them in ``pipewarden_listener_errors_total``); each
    listener's first failure of a kind is also logged as a warning.
    """

    def __init__(self, on_error: ErrorHook | None = None) -> None:
        self.on_error = on_error
        self._lock = threading.Lock()
        self._listeners: list[
            tuple[
                Any, str, Callable[[Any], None], frozenset[type], _Queued | None, Mapping[type, Callable[[Any], None]]
            ]
        ] = []
        self._routes: dict[type, tuple[tuple[str, Callable[[Any], None]], ...]] = {t: () for t in EVENT_TYPES}
        self._warned: set[tuple[str, str]] = set()

    def add(
        self,
        listener: Listener | Callable[[Any], None],
        *,
        inline: bool = False,
        name: str | None = None,
        events: Iterable[type] | None = None,
        queue_size: int = 10_000,
    ) -> None:
        """Subscribe ``listener`` (an object with ``handle`` or a callable) to ``events`` (default: all)."""
        handle = getattr(listener, "handle", None) or listener
        if not callable(handle):
            raise TypeError(f"a listener is a callable or has handle(event); got {listener!r}")
        wanted = events if events is not None else getattr(listener, "events", None)
        kinds = frozenset(wanted) if wanted is not None else frozenset(EVENT_TYPES)
        label = name or getattr(listener, "name", None) or type(listener).__name__
        worker = None if inline else _Queued(label, handle, self, queue_size, getattr(listener, "handle_batch", None))
        # An inline listener may name one handler per event type (``handlers``): one call less per event.
        direct = getattr(listener, "handlers", None) if inline else None
        with self._lock:
            self._listeners.append((listener, label, handle, kinds, worker, direct or {}))
            self._reroute()

    def remove(self, listener: Any) -> None:
        """Unsubscribe ``listener``; its queued events are still delivered."""
        with self._lock:
            gone = [entry for entry in self._listeners if entry[0] == listener]
            self._listeners = [entry for entry in self._listeners if entry[0] != listener]
            self._reroute()
        for entry in gone:
            if entry[4] is not None:
                entry[4].stop()

    def _reroute(self) -> None:
        routes: dict[type, list[tuple[str, Callable[[Any], None]]]] = {t: [] for t in EVENT_TYPES}
        for _, label, handle, kinds, worker, direct in self._listeners:
            for t in kinds:
                routes.setdefault(t, []).append((label, worker if worker is not None else direct.get(t, handle)))
        self._routes = {t: tuple(hs) for t, hs in routes.items()}

    def wants(self, kind: type) -> bool:
        """Whether any listener hears events of ``kind`` (emitters skip building events nobody hears)."""
        return bool(self._routes.get(kind))

    def emit(self, event: Any) -> None:
        """Hand ``event`` to every listener of its type; never raises."""
        for label, handle in self._routes.get(type(event), ()):
            try:
                handle(event)
            except Exception as exc:
                self._failed(label, "raised", exc, event)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` seconds in all for queued listeners to finish what they were given.

        Returns False (and reports each listener still busy as ``stalled``) when the deadline passed.
        """
        deadline = time.monotonic() + timeout
        ok = True
        for _, label, _, _, worker, _ in list(self._listeners):
            if worker is None:
                continue
            if not worker.idle.wait(max(0.0, deadline - time.monotonic())):
                ok = False
                self._failed(label, "stalled", None)
        return ok

    def close(self, timeout: float = 5.0) -> bool:
        """:meth:`flush`, then stop the listener threads (a stalled one is abandoned: it is a daemon thread)."""
        ok = self.flush(timeout)
        with self._lock:
            workers = [entry[4] for entry in self._listeners if entry[4] is not None]
        for w in workers:
            w.stop()
        return ok

    def _failed(self, label: str, what: str, exc: BaseException | None, event: Any = None) -> None:
        try:
            if self.on_error is not None:
                self.on_error(label, what, exc, getattr(event, "pipeline", ""))
            if (label, what) not in self._warned:
                self._warned.add((label, what))
                detail = {
                    "raised": f"raised {type(exc).__name__}: {exc}",
                    "dropped": "fell behind; events for it are dropped",
                    "stalled": "did not finish in time; what it had left is abandoned",
                }[what]
                log.warning(
                    "pipewarden listener %s %s (the run goes on; further failures are only counted "
                    "in pipewarden_listener_errors_total)",
                    label,
                    detail,
                )
        except Exception:  # reporting must not fail the emitter either
            pass
