"""Sensors: tasks that wait for a condition (a file, a table partition, another pipeline's run) to hold.

>>> import tempfile; from agent import Pipeline
>>> pipe = Pipeline("doc")
>>> ready = pipe.sensor(name="ready", poke=0.1, timeout=5)(file_exists(tempfile.gettempdir()))
>>> pipe.tasks["ready"].sensor
SensorSpec(poke=0.1, timeout=5.0, on_timeout='fail')

A sensor's function is poked until it returns something truthy, which is its
output. A look that finds the condition false is not an attempt: the sensor
has one attempt, recorded ``waiting`` with its pokes counted, and no worker
waits for it: the run's own loop pokes every waiting sensor when it is due (in
the daemon, a run whose only work is waiting sensors also gives back its run
slot). At ``timeout`` seconds it ends ``timed_out`` (a failure), or ``skipped``
with ``on_timeout="skip"``. The conditions here are functions whose
parameters the run fills like any task's (``logical_date``, ``params``).
"""

from __future__ import annotations

import contextlib
import contextvars
import glob
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.errors import DecorationError, SensorTimeoutError

if TYPE_CHECKING:
    from agent.pipeline import Task

__all__ = [
    "ON_TIMEOUT",
    "SensorSpec",
    "SensorWaits",
    "Waiting",
    "describe_wait",
    "file_exists",
    "pipeline_succeeded",
    "poking",
    "sql_rows",
    "table_partition",
]

#: What a sensor does when its condition did not hold in time: fail the run, or skip what depends on it.
ON_TIMEOUT = ("fail", "skip")

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
#: The run store and run values of the sensor being poked (for conditions about other runs).
_POKING: contextvars.ContextVar[tuple[Any, Mapping[str, Any]] | None] = contextvars.ContextVar("poking", default=None)


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """How a sensor waits: a poke every ``poke`` seconds, for at most ``timeout`` seconds, then ``on_timeout``."""

    poke: float = 30.0
    timeout: float = 3600.0
    on_timeout: str = "fail"

    def __post_init__(self) -> None:
        problems = []
        for label, value in (("poke", self.poke), ("timeout", self.timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                problems.append(f"{label} must be a number of seconds > 0 — got {value!r}")
        if self.on_timeout not in ON_TIMEOUT:
            problems.append(f"on_timeout must be one of {', '.join(ON_TIMEOUT)} — got {self.on_timeout!r}")
        if problems:
            raise DecorationError("sensor: " + "; ".join(problems))
        object.__setattr__(self, "poke", float(self.poke))
        object.__setattr__(self, "timeout", float(self.timeout))


@dataclass(slots=True)
class Waiting:
    """One sensor waiting in one run: its attempt row, its span and when it is due."""

    task: Task
    kwargs: dict[str, Any]
    row: int
    attempt: int
    started_at: float
    t0: float
    deadline: float
    due: float
    span: Any
    pokes: int = 0
    errors: int = 0
    last_error: str | None = None

    def timed_out(self, now: float) -> SensorTimeoutError:
        spec = self.task.sensor
        assert spec is not None
        return SensorTimeoutError(
            f"sensor {self.task.name!r} waited {now - self.t0:.1f}s ({self.pokes} pokes, one every {spec.poke:g}s) "
            f"and its condition did not hold within timeout={spec.timeout:g}s",
            task=self.task.name,
            timeout=spec.timeout,
            pokes=self.pokes,
        )


@contextlib.contextmanager
def poking(store: Any, values: Mapping[str, Any]) -> Iterator[None]:
    """While a sensor is poked: the run store and run values conditions about other runs read."""
    token = _POKING.set((store, values))
    try:
        yield
    finally:
        _POKING.reset(token)


def _format(template: str, logical_date: Any, params: Mapping[str, Any] | None) -> str:
    return template.format(**{**(params or {}), "logical_date": logical_date})


def file_exists(pattern: str | os.PathLike[str], *, min_bytes: int = 0) -> Callable[..., list[str]]:
    """A condition: the files matching ``pattern`` (a glob; ``{logical_date:%Y-%m-%d}`` and run
    parameters are filled in) that exist and hold at least ``min_bytes``; falsy while there are none.

    A partition of a table laid out in directories is a file too:
    ``file_exists("warehouse/orders/ds={logical_date:%Y-%m-%d}/_SUCCESS")``.
    """
    template = os.fspath(pattern)

    def file_exists(logical_date: Any = None, params: Mapping[str, Any] | None = None) -> list[str]:
        found = []
        for p in sorted(glob.glob(_format(template, logical_date, params))):
            with contextlib.suppress(OSError):  # gone between the glob and the stat: not there
                if os.path.isfile(p) and os.path.getsize(p) >= min_bytes:
                    found.append(p)
        return found

    return file_exists


def sql_rows(
    connect: Callable[[], Any], query: str, parameters: Sequence[Any] | Mapping[str, Any] = ()
) -> Callable[..., list[tuple[Any, ...]]]:
    """A condition: the rows ``query`` returns on a new DB-API connection from ``connect()``; falsy while none.

    String parameters may hold ``{logical_date:%Y-%m-%d}`` and run parameters, filled in at each poke
    (values are passed as query parameters, never pasted into the SQL). The connection is closed after
    each poke.
    """

    def fill(v: Any, logical_date: Any, params: Mapping[str, Any] | None) -> Any:
        return _format(v, logical_date, params) if isinstance(v, str) else v

    def sql_rows(logical_date: Any = None, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        if isinstance(parameters, Mapping):
            args: Any = {k: fill(v, logical_date, params) for k, v in parameters.items()}
        else:
            args = [fill(v, logical_date, params) for v in parameters]
        conn = connect()
        try:
            cur = conn.cursor()
            cur.execute(query, args)
            return [tuple(r) for r in cur.fetchall()]
        finally:
            conn.close()

    return sql_rows


def table_partition(
    connect: Callable[[], Any], table: str, *, column: str = "ds", value: str = "{logical_date:%Y-%m-%d}"
) -> Callable[..., list[tuple[Any, ...]]]:
    """A condition: ``table`` has a row whose ``column`` equals ``value`` (the run's partition, by default
    its logical date as ``YYYY-MM-DD``). ``table`` and ``column`` must be plain SQL identifiers."""
    for label, ident in (("table", table), ("column", column)):
        if not isinstance(ident, str) or not _IDENTIFIER.match(ident):
            raise DecorationError(
                f"table_partition: {label} must be a plain SQL identifier (letters, digits, _, one dot) — got {ident!r}"
            )
    # A DB-API driver's paramstyle is not known here; qmark is what sqlite3 and duckdb take.
    return sql_rows(connect, f"SELECT 1 FROM {table} WHERE {column} = ? LIMIT 1", [value])


def pipeline_succeeded(pipeline: str, *, same_logical_date: bool = True) -> Callable[..., str | None]:
    """A condition: a run of ``pipeline`` succeeded (for the same logical date, by default); its run id.

    Read from the run store of the run being poked (outside a run: the default store).
    """

    def pipeline_succeeded(logical_date: Any = None) -> str | None:
        found = _POKING.get()
        if found is not None:
            store = found[0]
        else:
            from agent.store import RunStore

            store = RunStore.default()
        for rec in store.list_runs(pipeline=pipeline, status="success", limit=500):
            if not same_logical_date or rec.logical_date == logical_date:
                return str(rec.run_id)
        return None

    return pipeline_succeeded


def describe_wait(seconds: float, pokes: int) -> str:
    """``waited 3.2s (4 pokes)``: what a finished sensor's record says of its wait."""
    return f"waited {seconds:.1f}s ({pokes} poke{'s' if pokes != 1 else ''})"


class SensorWaits:
    """The sensors of one execution of a run that are waiting, poked by the run's own loop.

    ``job`` is the runner's job (:class:`agent.runner._Job`): its store, telemetry,
    run values, lock and outputs. :meth:`start` runs on a worker (the first poke);
    :meth:`poke_due` and :meth:`stop` on the run's loop; neither holds a worker
    while a sensor waits.
    """

    def __init__(self, job: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.job = job
        self.clock = clock
        self._waiting: dict[str, Waiting] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._waiting)

    def next_due(self) -> float | None:
        """The monotonic time the next poke is due, or None when no sensor waits."""
        with self._lock:
            return min((w.due for w in self._waiting.values()), default=None)

    def start(self, name: str, kwargs: dict[str, Any]) -> tuple[Any, str | None] | None:
        """Record the sensor waiting and poke it once: its end ``(status, detail)``, or None (it waits)."""
        from agent.records import RunStatus

        job = self.job
        task = job.pipeline.tasks[name]
        spec = task.sensor
        attempt = job.base_attempts.get(name, 0) + 1
        now = job.r.clock()
        row = job.store.start_task(job.run_id, name, attempt, now=now, status=RunStatus.WAITING)
        span = job.tel.tracer.start_span(
            f"RUN {name}",
            attributes={
                "cicd.pipeline.name": job.name,
                "cicd.pipeline.task.name": name,
                "cicd.pipeline.run.id": job.run_id,
                "pipewarden.sensor.poke_seconds": spec.poke,
                "pipewarden.sensor.timeout_seconds": spec.timeout,
            },
        )
        from agent.events import TaskStarted

        job.tel.bus.emit(TaskStarted(job.run_id, job.name, name, attempt, now, True, waiting=True))
        job.tel.child("pipewarden_sensors_waiting", job.name).inc()
        t0 = self.clock()
        w = Waiting(task, kwargs, row, attempt, now, t0, t0 + spec.timeout, t0, span)
        ended = self._poke(w)
        if ended is None:
            with self._lock:
                self._waiting[name] = w
        return ended

    def poke_due(self) -> list[tuple[str, Any, str | None]]:
        """Poke every sensor that is due; the ones that ended, with ``(name, status, detail)``."""
        now = self.clock()
        with self._lock:
            due = [w for w in self._waiting.values() if w.due <= now]
        out = []
        for w in due:
            ended = self._poke(w)
            if ended is not None:
                with self._lock:
                    self._waiting.pop(w.task.name, None)
                out.append((w.task.name, *ended))
        return out

    def stop(self, status: Any, reason: str, *, record: bool = True) -> list[tuple[str, Any, str | None]]:
        """End every waiting sensor in ``status`` (the run was cancelled, or stopped waiting)."""
        with self._lock:
            waiting, self._waiting = list(self._waiting.values()), {}
        return [(w.task.name, *self._end(w, status, None, reason=reason, record=record)) for w in waiting]

    def _poke(self, w: Waiting) -> tuple[Any, str | None] | None:
        from agent.executors import invoke
        from agent.records import RunStatus

        job, spec = self.job, w.task.sensor
        assert spec is not None
        w.pokes += 1
        try:
            with poking(job.store, job.values):
                value = invoke(w.task.fn, w.kwargs)
        except Exception as exc:
            w.errors += 1
            w.last_error = f"{type(exc).__name__}: {exc}"
            if not w.task.retry.should_retry(exc, w.errors):
                return self._end(w, RunStatus.FAILED, None, error=w.last_error)
            value = None
        now = self.clock()
        if value:
            return self._end(w, RunStatus.SUCCESS, value)
        if now >= w.deadline:
            late = w.timed_out(now)
            if spec.on_timeout == "skip":
                return self._end(w, RunStatus.SKIPPED, None, reason=f"{late} (on_timeout='skip')")
            return self._end(w, RunStatus.TIMED_OUT, None, error=str(late))
        w.due = min(now + spec.poke, w.deadline)
        job.store.poked(w.row, w.pokes)
        return None

    def _end(
        self,
        w: Waiting,
        status: Any,
        value: Any,
        *,
        error: str | None = None,
        reason: str | None = None,
        record: bool = True,
    ) -> tuple[Any, str | None]:
        from agent.artifacts import NONE_REF, save_output
        from agent.events import TaskEnded
        from agent.records import FAILURES, RunStatus, otel_result

        job, name = self.job, w.task.name
        now = job.r.clock()
        waited = describe_wait(self.clock() - w.t0, w.pokes)
        ok = status is RunStatus.SUCCESS
        ref = not_kept = None
        if ok and w.task.persist != "off" and name in job.consumed:
            ref, not_kept = save_output(job.home, job.run_id, name, value, allow_pickle=w.task.persist == "pickle")
        elif ok and value is None:
            ref = NONE_REF
        if w.last_error and not error:
            waited += f"; {w.errors} poke(s) raised, the last: {w.last_error}"
        if record:
            job.store.poked(w.row, w.pokes)
            job.store.finish_task(
                w.row,
                status,
                now=now,
                error=error,
                reason="; ".join(x for x in (reason or waited, not_kept) if x),
                output_ref=ref,
            )
        span = w.span
        span.set_attribute("pipewarden.sensor.pokes", w.pokes)
        span.set_attribute("cicd.pipeline.task.run.result", otel_result(status))
        if status in FAILURES:
            from opentelemetry.trace import StatusCode

            span.set_status(StatusCode.ERROR, error or str(status))
        span.end()
        job.tel.child("pipewarden_sensors_waiting", job.name).dec()
        if ok:
            with job.lock:
                job.outputs[name] = value
        if record:
            job.tel.bus.emit(
                TaskEnded(
                    job.run_id,
                    job.name,
                    name,
                    w.attempt,
                    status,
                    w.started_at,
                    now,
                    max(0.0, now - w.started_at),
                    error=error,
                    reason=reason or waited,
                    durable=True,
                    pokes=w.pokes,
                )
            )
        return status, error or (reason if not ok else None)
