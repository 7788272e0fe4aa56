"""Mapped tasks: one task run once per item of a list known only at run time.

>>> from agent import Pipeline
>>> pipe = Pipeline("doc")
>>> @pipe.task
... def files() -> list[str]:
...     return ["a.csv", "b.csv"]
>>> @pipe.task(map="files", max_parallel=4, retries=2)
... def rows(files: str) -> int:
...     return len(files)
>>> pipe.tasks["rows"].map
'files'

Each item is its own attempt, with its own retries, state and history: a row
in the run store with the task's name and the item's index (``rows[1]`` in
``runs show``), a span nested in the task's, and events carrying the index.
The task's own row holds the state of the whole map: ``success`` when every
item succeeded (its output is then the items' outputs, in order), ``failed``
when one failed, with how many did. Items are started in order, at most
``max_parallel`` at once (default: the run's workers). A resume runs again
only the items that did not succeed; those that did are not run twice.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from agent.errors import MapError, TaskInputError
from agent.records import OK, RunStatus, TaskAttempt

__all__ = [
    "ITEMS_REF",
    "MapRun",
    "begin_map",
    "items_of",
    "items_problem",
    "items_ref",
    "load_items",
    "parse_items_ref",
    "run_item",
]

#: Prefix of a mapped task's ``output_ref``: its output is its items' outputs (``items:<count>``).
ITEMS_REF = "items:"


def items_of(value: Any, task: str, parameter: str) -> list[Any]:
    """The items a mapped task runs over: a list, tuple, range or other ordered iterable; MapError otherwise."""
    t = type(value)
    if t is list:
        return value
    if isinstance(value, tuple | range):
        return list(value)
    why = None
    if isinstance(value, str | bytes | bytearray):
        why = "a string (it would be mapped character by character)"
    elif isinstance(value, Mapping):
        why = "a mapping (map over list(d.items()) or list(d) to say which)"
    elif isinstance(value, set | frozenset):
        why = "a set (its order is not stable, and items are known by their position)"
    elif hasattr(value, "columns") or hasattr(value, "num_rows"):
        why = "a table (return a list: of frames, of row-group indices, of partition paths)"
    elif not isinstance(value, Iterable):
        why = f"not iterable ({t.__name__})"
    if why is None:
        return list(value)
    raise MapError(
        f"task {task!r} is mapped over its parameter {parameter!r}, which received {why}; "
        "it must receive a list of items",
        task=task,
        parameter=parameter,
        got=f"{t.__module__}.{t.__qualname__}",
    )


def items_ref(count: int) -> str:
    return f"{ITEMS_REF}{count}"


def parse_items_ref(ref: str | None) -> int | None:
    """The item count of a mapped task's output reference, or None for another reference."""
    if ref is None or not ref.startswith(ITEMS_REF):
        return None
    try:
        return int(ref[len(ITEMS_REF) :])
    except ValueError:
        return None


def items_problem(home: Any, count: int, items: Mapping[int, TaskAttempt], *, allow_pickle: bool = False) -> str | None:
    """Why the output of a mapped task of ``count`` items cannot be loaded back from its items, or None."""
    from agent.artifacts import output_problem

    for i in range(count):
        a = items.get(i)
        if a is None or a.status not in OK:
            return f"its item {i} did not succeed"
        problem = output_problem(home, a.output_ref, allow_pickle=allow_pickle)
        if problem is not None:
            if a.output_ref is None and a.reason:
                problem = f"its output was not kept: {a.reason}"
            return f"the output of its item {i}: {problem}"
    return None


def load_items(home: Any, count: int, items: Mapping[int, TaskAttempt], *, allow_pickle: bool = False) -> list[Any]:
    """A mapped task's output, loaded back from its items' kept outputs."""
    from agent.artifacts import load_output

    out = []
    for i in range(count):
        ref = items[i].output_ref
        if ref is None:
            raise FileNotFoundError(f"the output of item {i} was not kept")
        out.append(load_output(home, ref, allow_pickle=allow_pickle))
    return out


class MapRun:
    """One mapped task in one execution of a run: its items, their states and outputs, the cap on items at once.

    ``job`` is the runner's job; ``reused`` the outputs of items that succeeded in an
    earlier execution of the run (a resume), which do not run again.
    """

    def __init__(
        self,
        job: Any,
        name: str,
        kwargs: dict[str, Any],
        items: list[Any],
        attempt: int,
        reused: Mapping[int, Any],
    ) -> None:
        self.job = job
        self.name = name
        self.task = job.pipeline.tasks[name]
        self.kwargs = kwargs
        self.items = items
        self.attempt = attempt
        self.results: list[Any] = [None] * len(items)
        self.states: dict[int, RunStatus] = {}
        self.errors: dict[int, str] = {}
        self.gated: set[int] = set()
        self.not_kept: dict[int, str] = {}
        for i, value in reused.items():
            self.results[i] = value
            self.states[i] = RunStatus.SUCCESS
        self.reused = len(reused)
        self.pending = collections.deque(i for i in range(len(items)) if i not in reused)
        self.running = 0
        self.limit = self.task.max_parallel or job.max_drivers
        self._lock = threading.Lock()
        tel = job.tel
        self.started_at = job.r.clock()
        self.t0 = time.perf_counter()
        self.row = job.store.start_task(job.run_id, name, attempt, now=self.started_at)
        self.span = tel.tracer.start_span(
            f"RUN {name}",
            attributes={
                "cicd.pipeline.name": job.name,
                "cicd.pipeline.task.name": name,
                "cicd.pipeline.run.id": job.run_id,
                "pipewarden.task.items": len(items),
            },
        )
        from agent.events import TaskStarted

        tel.bus.emit(TaskStarted(job.run_id, job.name, name, attempt, self.started_at, True))

    @property
    def done(self) -> bool:
        return len(self.states) == len(self.items)

    def units(self) -> list[tuple[str, int]]:
        """Items to start now: the next ones in order, up to the cap on items running at once."""
        with self._lock:
            out = []
            while self.pending and self.running < self.limit:
                out.append((self.name, self.pending.popleft()))
                self.running += 1
            return out

    def arguments(self, index: int) -> dict[str, Any]:
        """The keyword arguments of item ``index``: the task's, with the mapped parameter set to the item."""
        kwargs = dict(self.kwargs)
        kwargs[self.task.map] = self.items[index]
        return kwargs

    @contextlib.contextmanager
    def parent(self) -> Iterator[None]:
        """While an item runs: the mapped task's span is the current span (items' spans nest in it)."""
        from opentelemetry import context, trace

        token = context.attach(trace.set_span_in_context(self.span))
        try:
            yield
        finally:
            context.detach(token)

    def item_ended(self, index: int, status: RunStatus, detail: str | None, *, gated: bool = False) -> bool:
        """Record the end of item ``index`` (the runner put its output in :attr:`results`); True when it was the
        last one."""
        with self._lock:
            self.running -= 1
            self.states[index] = status
            if status not in OK and detail:
                self.errors[index] = detail
            if gated:
                self.gated.add(index)
            if status is RunStatus.CANCELLED:  # nothing more starts: count the rest cancelled
                for i in self.pending:
                    self.states[i] = RunStatus.CANCELLED
                self.pending.clear()
            return len(self.states) == len(self.items)

    def finish(self) -> tuple[RunStatus, str | None, bool]:
        """Record the mapped task's own end: ``(status, detail, gated)``; its output is the items' outputs."""
        from agent.events import TaskEnded
        from agent.records import FAILURES, otel_result

        job = self.job
        counts = collections.Counter(str(s) for s in self.states.values())
        n = len(self.items)
        bad = {i: s for i, s in sorted(self.states.items()) if s not in OK}
        if not bad:
            status: RunStatus = RunStatus.SUCCESS
        elif any(s in FAILURES or s is RunStatus.FAILED for s in bad.values()):
            status = RunStatus.FAILED
        else:
            status = next(iter(bad.values()))
        parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (kv[0] != "success", kv[0])))
        summary = f"{n} item{'s' if n != 1 else ''}: {parts or 'none'}"
        if self.reused:
            summary += f" ({self.reused} kept from the earlier execution)"
        error = None
        if bad:
            shown = [f"[{i}] {self.errors[i]}" for i in bad if i in self.errors][:3]
            error = summary + ("; " + "; ".join(shown) if shown else "")
        ok = status is RunStatus.SUCCESS
        ref, reason = None, None
        if ok and self.task.persist != "off" and self.name in job.consumed:
            if self.not_kept:
                i = min(self.not_kept)
                reason = f"item {i}'s output was not kept: {self.not_kept[i]}"
            else:
                ref = items_ref(n)
        now = job.r.clock()
        job.store.finish_task(
            self.row,
            status,
            now=now,
            error=error,
            reason="; ".join(x for x in (summary if ok else None, reason) if x) or None,
            output_ref=ref,
        )
        self.span.set_attribute("cicd.pipeline.task.run.result", otel_result(status))
        for k, v in counts.items():
            self.span.set_attribute(f"pipewarden.task.items.{k}", v)
        if status in FAILURES:
            from opentelemetry.trace import StatusCode

            self.span.set_status(StatusCode.ERROR, error or str(status))
        self.span.end()
        if ok:
            with job.lock:
                job.outputs[self.name] = list(self.results)
        job.tel.bus.emit(
            TaskEnded(
                job.run_id,
                job.name,
                self.name,
                self.attempt,
                status,
                self.started_at,
                now,
                time.perf_counter() - self.t0,
                error=error,
                reason=summary,
                durable=True,
            )
        )
        gated = bool(bad) and set(bad) <= self.gated
        return status, error, gated


# --- what the runner's job calls (``job`` is :class:`agent.runner._Job`) -------------------------------


def begin_map(job: Any, name: str) -> list[Any]:
    """Expand mapped task ``name`` over the list its mapped parameter received; return its first items."""
    task = job.pipeline.tasks[name]
    assert task.map is not None
    attempt = job.base_attempts.get(name, 0) + 1
    try:
        kwargs = job._inputs(task)[0]
        items = items_of(kwargs.get(task.map), name, task.map)
    except (MapError, TaskInputError) as exc:
        # one failed attempt, with the error that says what the parameter received
        return job._complete(name, *job._run_task(name, unwired=exc))
    m = MapRun(job, name, kwargs, items, attempt, _reused(job, task, len(items)))
    with job.lock:
        job.maps[name] = m
    if m.done:  # no items, or every one kept from an earlier execution
        return list(job._complete(name, *m.finish()))
    return list(m.units())


def _reused(job: Any, task: Any, count: int) -> dict[int, Any]:
    """Items of a resumed mapped task that succeeded before, with their outputs: they do not run again."""
    from agent.artifacts import load_output, output_problem

    prior = job.prior_items.get(task.name)
    if not prior or task.map in job.remaining:  # the list was made again: its items may differ
        return {}
    pickles = task.persist == "pickle"
    needed = task.name in job.consumed
    out: dict[int, Any] = {}
    for i, a in prior.items():
        if i >= count or a.status not in OK:
            continue
        if not needed:
            out[i] = None
        elif a.output_ref is not None and output_problem(job.home, a.output_ref, allow_pickle=pickles) is None:
            out[i] = load_output(job.home, a.output_ref, allow_pickle=pickles)
    return out


def run_item(job: Any, name: str, index: int) -> list[Any]:
    """Run item ``index`` of mapped task ``name``; return what its end made ready (more items, or tasks below)."""
    m: MapRun = job.maps[name]
    if job.cancelled.is_set():
        last = m.item_ended(index, RunStatus.CANCELLED, "the run was cancelled before the item started")
    else:
        with m.parent():
            status, detail, gated = job._run_task(name, item=index, kwargs=m.arguments(index))
        if job.abandon.is_set():
            return []
        last = m.item_ended(index, status, detail, gated=gated)
    if last:
        return list(job._complete(name, *m.finish()))
    return m.units()
