"""The run's own loop for sensors (:mod:`agent.sensors` declares them): record one attempt ``waiting``,
poke it when due, end it when its condition holds or its timeout passes. No worker waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.errors import SensorTimeoutError
from agent.sensors import poking

if TYPE_CHECKING:
    from agent.pipeline import Task

__all__ = ["SensorWaits", "Waiting", "describe_wait"]


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
