"""A run or task attempt in progress: its span, its measurements, and the events it emits.

A :class:`Scope` is what ``@monitor`` and the runner have in common. Inside the
block the span is current (the user's own spans nest under it); on exit the
span ends and the scope emits its facts (:class:`~agent.events.TaskEnded`,
:class:`~agent.events.RunEnded`) to the telemetry's listeners. A runner that
must record a fact durably before anyone hears it calls :meth:`Scope.end`
itself, writes, then emits.

>>> from agent.telemetry import Telemetry
>>> tel = Telemetry()
>>> with tel.pipeline_scope("orders") as run:
...     with tel.task_scope("orders", "extract") as task:
...         task.rows_out(10)
>>> tel.metrics.sample("pipewarden_task_rows_out_total", pipeline="orders", task="extract")
10.0

Telemetry never breaks the host program: a failure inside pipewarden's own
bookkeeping is logged and swallowed, and the user's exception passes through
untouched.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import logging
import resource
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from agent.errors import TaskTimeoutError
from agent.events import ChecksEvaluated, RunEnded, RunOutcome, RunStarted, TaskEnded, TaskStarted
from agent.gates import is_data
from agent.records import _OTEL_RESULT, FAILURES, RunStatus
from checks.base import CheckContext, run_check
from checks.result import CheckResult, Status

if TYPE_CHECKING:
    from agent.telemetry import Telemetry

__all__ = ["Scope", "current_scope", "rows_of"]

log = logging.getLogger("pipewarden.telemetry")

#: Calls shorter than this skip the peak-memory reading (but for a task's first call in the process):
#: the high-water mark cannot move materially in a millisecond, and the syscall is a measurable share.
_PEAK_SAMPLE_AFTER = 0.001

#: Options a scope takes besides its pipeline, task and level (see the class attributes).
_OPTIONS = frozenset(
    {"run_id", "attempt", "version", "trigger", "tasks", "kept", "params", "resumed", "durable", "attributes", "item"}
)

_current: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("pipewarden_scope", default=None)


def current_scope() -> Scope | None:
    """The innermost pipewarden scope active in this context (thread or task), if any."""
    return _current.get()


class Scope:
    """One pipeline run or task attempt in progress; create it through :class:`~agent.telemetry.Telemetry`.

    Inside the block: :meth:`rows_in`, :meth:`rows_out`, :meth:`run_checks`,
    :meth:`set_status`. On exit the span ends and the events are emitted; an
    exception escaping the block marks the run failed (timed out for
    :class:`~agent.errors.TaskTimeoutError`), is recorded on the span and
    propagates unchanged. A scope with a task and ``pipeline_level`` (an
    outermost ``@monitor`` call) is both a pipeline run and its one task.
    """

    # Defaults live on the class: a scope is created per call, and most of these
    # are only ever written by a runner, on the rare path.
    status: RunStatus | None = None
    reason = ""
    error: str | None = None
    duration = 0.0
    started_at = 0.0
    #: Unix time the scope ended; a runner that recorded it in the store sets it, else the clock at the end.
    ended_at: float | None = None
    retry: bool | None = None
    retry_in: float | None = None
    parent: Scope | None = None
    #: Set by a runner that knows more than this process: what the run means for the KPIs.
    outcome: RunOutcome | None = None
    check_results: tuple[CheckResult, ...] = ()
    _rows_in = 0
    _rows_out = 0
    _extra_cpu = 0.0
    _peak: int | None = None

    # Rarely given: set on the instance only when they differ from these class defaults.
    run_id: str | None = None
    attempt = 1
    version = ""
    trigger = "manual"
    tasks: Sequence[str] = ()
    kept: Sequence[str] = ()
    params: Mapping[str, Any] | None = None
    resumed = False
    durable = False
    attributes: Mapping[str, Any] | None = None
    #: The index of the item of a mapped task this scope runs (None: the task itself).
    item: int | None = None
    #: What a ``@monitor`` scope does with check results (log, raise under ``on_check_failure="raise"``);
    #: None for the runner, which decides about blocking results itself.
    policy: Callable[[Scope, list[CheckResult]], None] | None = None

    def __init__(
        self,
        tel: Telemetry,
        pipeline: str,
        task: str | None,
        *,
        pipeline_level: bool,
        dataset: str | None = None,
        **options: Any,
    ) -> None:
        self.tel = tel
        self.pipeline = pipeline
        self.task = task
        self.pipeline_level = pipeline_level
        self.dataset = dataset or task or pipeline
        if options:
            for name, value in options.items():
                if name not in _OPTIONS:
                    raise TypeError(f"Scope() got an unexpected option {name!r}")
                setattr(self, name, value)

    # --- inside the block --------------------------------------------------------------

    def rows_in(self, n: int) -> None:
        self._rows_in += n

    def rows_out(self, n: int) -> None:
        self._rows_out += n

    def add_cpu(self, seconds: float) -> None:
        """CPU spent elsewhere on this task's behalf (a worker process)."""
        self._extra_cpu += seconds

    def set_peak_memory(self, nbytes: int) -> None:
        """Peak memory measured elsewhere (a worker process); replaces this process's figure."""
        self._peak = nbytes

    def set_status(self, status: str, reason: str = "") -> None:
        self.status = RunStatus(status)
        self.reason = reason

    def set_attribute(self, key: str, value: Any) -> None:
        self.span.set_attribute(key, value)

    def context(
        self,
        *,
        inputs: Sequence[Any] = (),
        store: Any = None,
        now: dt.datetime | None = None,
        logical_date: dt.datetime | None = None,
    ) -> CheckContext:
        """A check context for this scope's pipeline, task and run (``logical_date``: the time the data is for)."""
        return CheckContext(
            pipeline=self.pipeline,
            task=self.task or "",
            dataset=self.dataset,
            run_id=self.run_id or "",
            inputs=tuple(inputs),
            store=store,
            now=now or dt.datetime.fromtimestamp(self.tel.clock(), dt.UTC),
            logical_date=logical_date,
        )

    def run_checks(self, checks: Iterable[Any], output: Any, context: CheckContext | None = None) -> list[CheckResult]:
        """Run checks on ``output``: a span and a :class:`~agent.events.ChecksEvaluated` per check.

        Raises TypeError when ``checks`` is not a list of checks (the arguments swapped:
        ``run_checks(df, [unique("id")])``). In a ``@monitor`` scope the monitor's
        ``on_check_failure`` policy applies to the results (``raise``: CheckFailedError).
        """
        if isinstance(checks, str | bytes | Mapping) or is_data(checks) or not isinstance(checks, Iterable):
            raise TypeError(
                f"run_checks(checks, output): checks must be a list of checks — got "
                f'{type(checks).__name__}; write run.run_checks([unique("id")], df)'
            )
        ctx = context if context is not None else self.context()
        tel = self.tel
        out: list[CheckResult] = []
        for check in checks:
            name = getattr(check, "name", None) or getattr(check, "__name__", None) or type(check).__name__
            t0 = time.perf_counter()
            with tel.tracer.start_as_current_span(f"CHECK {name}", end_on_exit=True) as span:
                results = run_check(check, output, ctx)
                elapsed = time.perf_counter() - t0
                try:
                    _annotate_check_span(span, name, results)
                except Exception:
                    log.exception("pipewarden could not annotate the span of check %s", name)
            tel.bus.emit(
                ChecksEvaluated(
                    self.run_id or "",
                    self.pipeline,
                    self.task or self.pipeline,
                    self.dataset,
                    name,
                    tuple(results),
                    elapsed,
                )
            )
            out.extend(results)
        self.check_results = (*self.check_results, *out)
        if self.policy is not None:
            self.policy(self, out)
        return out

    # --- enter / exit --------------------------------------------------------------------

    def __enter__(self) -> Scope:
        tel = self.tel
        parent = self.parent = _current.get()
        run_id = self.run_id
        if run_id is None:
            run_id = self.run_id = parent.run_id if parent is not None and parent.run_id else tel.next_run_id()
        task = self.task
        pipeline_level = self.pipeline_level
        name, static = tel.span_template(self.pipeline, task, pipeline_level)
        attrs = {**static, "cicd.pipeline.run.id": run_id}
        if pipeline_level:
            if self.version:
                attrs["pipewarden.pipeline.version"] = self.version
            if self.trigger != "monitor":
                attrs["pipewarden.trigger"] = self.trigger
        elif self.attempt != 1:
            attrs["pipewarden.task.attempt"] = self.attempt
        if self.item is not None:
            attrs["pipewarden.task.item"] = self.item
        if self.attributes:
            attrs.update(self.attributes)
        span = self.span = tel.tracer.start_span(
            name, kind=SpanKind.SERVER if pipeline_level else SpanKind.INTERNAL, attributes=attrs
        )
        self._token = otel_context.attach(trace.set_span_in_context(span))
        self._var_token = _current.set(self)
        now = self.started_at = tel.clock()
        bus = tel.bus
        if pipeline_level and bus.wants(RunStarted):
            bus.emit(
                RunStarted(
                    run_id,
                    self.pipeline,
                    now,
                    self.trigger,
                    self.version,
                    tuple(self.tasks) or ((task,) if task else ()),
                    tuple(self.kept),
                    self.params or {},
                    self.resumed,
                    self.durable,
                )
            )
        if task is not None and bus.wants(TaskStarted):
            bus.emit(TaskStarted(run_id, self.pipeline, task, self.attempt, now, self.durable, self.item))
        self._c0 = time.thread_time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        task_event, run_event = self.end(exc)
        bus = self.tel.bus
        if task_event is not None:
            bus.emit(task_event)
        if run_event is not None:
            bus.emit(run_event)

    def end(self, exc: BaseException | None = None) -> tuple[TaskEnded | None, RunEnded | None]:
        """End the span and leave the block; return the events to emit (the caller emits them)."""
        duration = self.duration = time.perf_counter() - self._t0
        cpu = time.thread_time() - self._c0 + self._extra_cpu
        try:
            return self._finish(exc, duration, cpu)
        except Exception:
            log.exception("pipewarden could not record the end of %s", getattr(self.span, "name", self.task))
            return None, None
        finally:
            _current.reset(self._var_token)
            otel_context.detach(self._token)

    def _finish(
        self, exc: BaseException | None, duration: float, cpu: float
    ) -> tuple[TaskEnded | None, RunEnded | None]:
        span, task, status = self.span, self.task, self.status
        if exc is not None:
            if status is None or status is RunStatus.SUCCESS:
                status = self.status = _status_of(exc)
            span.record_exception(exc)
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
            if self.error is None:
                self.error = f"{type(exc).__name__}: {exc}"
        elif status is None:
            status = self.status = RunStatus.SUCCESS
        elif status in FAILURES:  # skipped, upstream failed, cancelled: not an error of this span
            span.set_status(StatusCode.ERROR, self.reason or str(status))
        if self.reason:
            span.set_attribute("pipewarden.reason", self.reason)
        # One attribute per call: set_attributes() costs more than one set_attribute().
        span.set_attribute(
            "cicd.pipeline.result" if self.pipeline_level else "cicd.pipeline.task.run.result",
            _OTEL_RESULT.get(status, "error"),
        )
        rows_in, rows_out = self._rows_in, self._rows_out
        if rows_in:
            span.set_attribute("pipewarden.rows_in", rows_in)
        if rows_out:
            span.set_attribute("pipewarden.rows_out", rows_out)
        span.end()
        now = self.ended_at
        if now is None:
            now = self.tel.clock()
        run_id = cast(str, self.run_id)
        task_event = run_event = None
        if task is not None:
            peak = self._peak
            if peak is None and (duration >= _PEAK_SAMPLE_AFTER or self.tel.first_peak(self.pipeline, task)):
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
            retry = self.retry
            task_event = TaskEnded(
                run_id,
                self.pipeline,
                task,
                self.attempt,
                status,
                self.started_at,
                now,
                duration,
                rows_in or None,
                rows_out or None,
                cpu,
                peak,
                self.error,
                self.reason or None,
                retry if retry is not None else self.attempt > 1,
                self.retry_in,
                self.check_results,
                self.durable,
                self.item,
            )
        if self.pipeline_level:
            outcome = self.outcome
            if outcome is None:
                outcome = self.tel.kpis.outcome(self.pipeline, status, self.version, now)
            run_event = RunEnded(
                run_id,
                self.pipeline,
                status,
                self.started_at,
                now,
                duration,
                self.trigger,
                self.version,
                self.error or self.reason or None,
                outcome,
                self.durable,
            )
        return task_event, run_event


def _status_of(exc: BaseException) -> RunStatus:
    """The end state an exception escaping a scope means."""
    if isinstance(exc, TaskTimeoutError):
        return RunStatus.TIMED_OUT
    if isinstance(exc, KeyboardInterrupt):
        return RunStatus.INTERRUPTED
    if isinstance(exc, asyncio.CancelledError):
        return RunStatus.CANCELLED
    return RunStatus.FAILED


# type -> how to count its rows (None: not a table); filled on first sight of each type, so the
# hot path is one dict lookup and pandas/pyarrow are never imported by pipewarden itself.
_ROW_COUNTERS: dict[type, Callable[[Any], int] | None] = {}


def rows_of(x: Any) -> int | None:
    """Rows of a pandas DataFrame/Series, a pyarrow Table/RecordBatch or a polars frame; None otherwise."""
    t = type(x)
    try:
        counter = _ROW_COUNTERS[t]
    except KeyError:
        counter = _ROW_COUNTERS[t] = _row_counter_for(t)
    return None if counter is None else counter(x)


def _row_counter_for(t: type) -> Callable[[Any], int] | None:
    module = t.__module__ or ""
    if module.startswith("pandas") and t.__name__ in ("DataFrame", "Series"):
        return len
    if module.startswith("pyarrow") and t.__name__ in ("Table", "RecordBatch"):
        return cast(Callable[[Any], int], lambda x: x.num_rows)
    if module.startswith("polars") and t.__name__ in ("DataFrame", "Series"):
        return len
    return None


def _annotate_check_span(span: Any, name: str, results: list[CheckResult]) -> None:
    span.set_attribute("pipewarden.check.name", name)
    if not results:
        return
    worst = max(results, key=lambda r: _STATUS_RANK[r.status])
    span.set_attribute("pipewarden.check.kind", str(worst.kind))
    span.set_attribute("pipewarden.check.status", str(worst.status))
    span.set_attribute("pipewarden.check.results", len(results))
    if worst.observed is not None:
        span.set_attribute("pipewarden.check.observed", float(worst.observed))
    if worst.threshold is not None:
        span.set_attribute("pipewarden.check.threshold", float(worst.threshold))
    if worst.column:
        span.set_attribute("pipewarden.check.column", worst.column)
    if worst.message:
        span.set_attribute("pipewarden.check.message", worst.message)
    if worst.status in (Status.FAIL, Status.ERROR):
        span.set_status(StatusCode.ERROR, worst.message or f"{name}: {worst.status}")


_STATUS_RANK = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2, Status.ERROR: 3}
