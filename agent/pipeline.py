"""Declaring pipelines in Python: a :class:`Pipeline` and its ``@pipe.task`` functions.

A task's parameter names are its inputs: a parameter named like another task
receives that task's return value; one named like a run parameter (``path``,
``logical_date``, ``run_id``, ``params``, ``trigger``, or a parameter the
pipeline declares) receives it from the run; :mod:`agent.wiring` wires one
to another task's output, or a key of it, and ``**upstream`` collects several.
Anything else needs a default.
"""

from __future__ import annotations

import difflib
import inspect
import sys
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar, overload

from agent.cache import Cache, as_cache
from agent.errors import ConfigError, CycleError, DecorationError, DuplicateTaskError, UnknownDependencyError
from agent.flow import DEFAULT_RULE, TRIGGER_RULES
from agent.gates import ON_ERROR, validate_checks
from agent.graph import Graph, find_cycle
from agent.retry import RetryCondition, RetryPolicy
from agent.schedules import Schedule, parse_schedule
from agent.sensors import SensorSpec
from agent.wiring import Input, annotated_sources, parse_depends_on

__all__ = ["RUN_PARAMETERS", "Pipeline", "Task"]

F = TypeVar("F", bound=Callable[..., Any])

#: Names a task parameter may use to receive something from the run rather than a task.
RUN_PARAMETERS: tuple[str, ...] = ("logical_date", "params", "path", "run_id", "trigger")


@dataclass(frozen=True)
class Task:
    """One registered task: the function and what the runner needs to know about it."""

    name: str
    fn: Callable[..., Any]
    parameters: tuple[str, ...]
    defaults: frozenset[str]
    depends_on: tuple[str, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = None
    checks: tuple[Any, ...] = ()
    #: ``auto`` (default): keep the output in a safe format when a task downstream takes it;
    #: ``pickle``: also pickle what has no safe format; ``off``: never keep it (see :mod:`agent.artifacts`).
    persist: str = "auto"
    pipeline: str = ""
    #: ``fail`` (default): a check that could not run blocks like a failure; ``warn``: it does not.
    on_check_error: str = "fail"
    #: Parameters wired explicitly (``depends_on={...}`` or ``Annotated[T, Input(...)]``) and their sources.
    sources: tuple[tuple[str, Input], ...] = ()
    #: The ``**name`` parameter that collects the outputs of ``depends_on`` tasks, if any.
    collect: str | None = None

    def bindings(self, tasks: Container[str]) -> dict[str, Input]:
        """Parameter -> the output it receives: wired explicitly, else named like a task of ``tasks``."""
        explicit = dict(self.sources)
        return {p: explicit.get(p) or Input(p) for p in self.parameters if p in explicit or p in tasks}

    def collected(self) -> tuple[str, ...]:
        """Tasks whose outputs the ``**collect`` parameter receives: ``depends_on`` less the named parameters."""
        return tuple(d for d in self.depends_on if d not in self.parameters) if self.collect else ()

    #: The parameter whose value (a list) the task is mapped over: it runs once per item (:mod:`agent.mapping`).
    map: str | None = None
    #: Most items of a mapped task running at once (None: as many as the run has workers).
    max_parallel: int | None = None
    #: The task returns the names of the tasks directly downstream of it that run; the others are skipped.
    branch: bool = False
    #: When the task runs, given how the tasks upstream of it ended (:data:`agent.flow.TRIGGER_RULES`).
    trigger_rule: str = DEFAULT_RULE
    #: A sensor: the function is poked until it returns something truthy (:mod:`agent.sensors`).
    sensor: SensorSpec | None = None
    #: Reuse the output of an earlier run while the inputs and the code are unchanged (:mod:`agent.cache`).
    cache: Cache | None = None

    def inputs(self, tasks: Container[str]) -> tuple[str, ...]:
        """Upstream tasks whose output this task receives (``tasks``: the pipeline's task names, a set or dict)."""
        return tuple(dict.fromkeys((*(b.task for b in self.bindings(tasks).values()), *self.collected())))

    def dependencies(self, tasks: Container[str]) -> tuple[str, ...]:
        """Upstream tasks: value inputs first, then explicit ``depends_on``, without repeats."""
        return tuple(dict.fromkeys((*self.inputs(tasks), *self.depends_on)))


class Pipeline:
    """A named set of tasks, their dependencies, and when to run them.

    >>> pipe = Pipeline("orders")
    >>> @pipe.task
    ... def extract() -> list[int]:
    ...     return [1, 2, 3]
    >>> @pipe.task(retries=2)
    ... def total(extract: list[int]) -> int:
    ...     return sum(extract)
    >>> total([1, 2])          # the function itself, directly callable
    3
    >>> pipe.graph().order
    ('extract', 'total')

    ``schedule`` is a cron expression (``"*/15 * * * *"``, evaluated in
    ``timezone``), ``"every 10m"``, or an :mod:`agent.schedules` object (for
    file arrival, :class:`~agent.schedules.FileArrival`). ``params`` declares
    user run parameters with their defaults. ``catchup`` is the most missed
    schedule ticks run after downtime (1: skip to the latest; None: all).
    ``max_active_runs`` bounds concurrent runs of this pipeline.
    """

    def __init__(
        self,
        name: str,
        schedule: Any = None,
        *,
        timezone: str = "UTC",
        params: Mapping[str, Any] | None = None,
        max_workers: int | None = None,
        max_active_runs: int = 1,
        catchup: int | None = 1,
        description: str = "",
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise DecorationError(f"Pipeline name must be a non-empty string — got {name!r}")
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
            raise DecorationError(f"Pipeline {name!r}: max_workers must be an int >= 1 — got {max_workers!r}")
        if not isinstance(max_active_runs, int) or max_active_runs < 1:
            raise DecorationError(f"Pipeline {name!r}: max_active_runs must be an int >= 1 — got {max_active_runs!r}")
        if catchup is not None and (not isinstance(catchup, int) or catchup < 0):
            raise DecorationError(f"Pipeline {name!r}: catchup must be an int >= 0 or None (all) — got {catchup!r}")
        self.name = name
        self.description = description
        self.timezone = timezone
        self.max_workers = max_workers
        self.max_active_runs = max_active_runs
        self.catchup = catchup
        self.params: dict[str, Any] = dict(params or {})
        for p in self.params:
            if p in RUN_PARAMETERS:
                raise DecorationError(
                    f"Pipeline {name!r}: parameter {p!r} is a built-in run parameter "
                    f"({', '.join(RUN_PARAMETERS)}); pick another name"
                )
        self.tasks: dict[str, Task] = {}
        # Every name a registered task's parameters or depends_on mention: only a task named
        # here can close a cycle when it is registered.
        self._referenced: set[str] = set()
        self._graph: Graph | None = None
        self._version: str | None = None
        frame = sys._getframe(1)
        src = frame.f_globals.get("__file__")
        #: The file that declares the pipeline ("path:name" is how the CLI finds it again).
        self.source: str | None = str(Path(src).resolve()) if src else None
        self.schedule: Schedule | None = None
        if schedule is not None:
            self.schedule = parse_schedule(schedule, timezone=timezone, where=f"Pipeline {name!r}")

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r} tasks={list(self.tasks)}>"

    @property
    def target(self) -> str | None:
        """``file.py:name``, for the CLI to load this pipeline again (resume)."""
        return f"{self.source}:{self.name}" if self.source else None

    @property
    def version(self) -> str:
        """Git commit of the declaring file when committed and clean, else a short sha256 of its source."""
        if self._version is None:
            from agent.versions import source_version

            self._version = source_version(self.source, fallback=self._fallback_source)
        return self._version

    @version.setter
    def version(self, value: str) -> None:
        self._version = value

    def _fallback_source(self) -> str:
        parts = []
        for t in self.tasks.values():
            try:
                parts.append(inspect.getsource(t.fn))
            except (OSError, TypeError):
                parts.append(t.name)
        return "\n".join(parts)

    # --- registration -----------------------------------------------------------------

    @overload
    def task(self, fn: F, /) -> F: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        depends_on: Any = (),
        retries: int = 0,
        retry_delay: float = 1.0,
        retry_backoff: float = 2.0,
        retry_max_delay: float | None = None,
        retry_jitter: float = 0.0,
        retry_on: RetryCondition = None,
        timeout: float | None = None,
        checks: Sequence[Any] = (),
        persist: bool | str = "auto",
        on_check_error: str = "fail",
        map: str | None = None,
        max_parallel: int | None = None,
        branch: bool = False,
        trigger_rule: str = DEFAULT_RULE,
        cache: Any = None,
    ) -> Callable[[F], F]: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        depends_on: Any = (),
        retries: int = 0,
        retry_delay: float = 1.0,
        retry_backoff: float = 2.0,
        retry_max_delay: float | None = None,
        retry_jitter: float = 0.0,
        retry_on: RetryCondition = None,
        timeout: float | None = None,
        checks: Sequence[Any] = (),
        persist: bool | str = "auto",
        on_check_error: str = "fail",
        map: str | None = None,
        max_parallel: int | None = None,
        branch: bool = False,
        trigger_rule: str = DEFAULT_RULE,
        cache: Any = None,
    ) -> Any:
        """Register a task; returns the function unchanged (metadata in ``fn.__pipewarden_task__``).

        ``depends_on`` adds ordering-only dependencies (names or task functions), which a
        ``**upstream`` parameter receives as ``{task: output}``; a mapping
        ``{"param": "task" | Input("task", key=...)}`` wires a parameter to another task's
        output, or one key of it (see :mod:`agent.wiring`).
        ``timeout`` seconds runs the task in a child process that is killed at the
        deadline. ``checks`` run on the output; a blocking result (a check of severity
        fail that failed or could not run) skips every task downstream;
        ``on_check_error="warn"`` lets checks that could not run through.
        ``persist``: outputs a task downstream takes by parameter are kept by default
        (``"auto"``; ``True`` means the same) in safe formats, Arrow IPC for frames and
        JSON for plain values, so a resume starts after the last finished task;
        ``"pickle"`` also keeps other values as pickles; ``False`` keeps nothing.

        ``map="items"`` runs the task once per item of the list its parameter ``items``
        receives (that parameter gets one item; at most ``max_parallel`` at once); its
        output is the list of the items' outputs, in order. ``branch=True``: the task
        returns the name (or names) of the tasks directly downstream of it that run,
        the others end ``skipped``. ``trigger_rule`` says when the task runs given how
        the tasks upstream of it ended (``all_success``, ``none_failed``, ``any_success``,
        ``all_done``). ``cache="1d"`` (or ``Cache(...)``, ``True``) reuses the output of
        an earlier run while the task's arguments and code are unchanged.
        """
        retry = RetryPolicy(
            retries=retries,
            delay=retry_delay,
            backoff=retry_backoff,
            max_delay=retry_max_delay,
            jitter=retry_jitter,
            retry_on=retry_on,
        )
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
            raise DecorationError(f"timeout must be a number of seconds > 0 or None — got {timeout!r}")
        checks = validate_checks(checks, "@pipe.task", error=DecorationError)
        keep = _PERSIST.get(persist) if isinstance(persist, bool | str) else None
        if keep is None:
            raise DecorationError(f"persist must be one of 'auto' (or True), 'pickle', False — got {persist!r}")
        if on_check_error not in ON_ERROR:
            raise DecorationError(f"on_check_error must be one of {', '.join(ON_ERROR)} — got {on_check_error!r}")
        deps, sources = parse_depends_on(depends_on)
        flow = _flow_options(map=map, max_parallel=max_parallel, branch=branch, trigger_rule=trigger_rule)
        flow["cache"] = as_cache(cache)
        if flow["cache"] is not None and branch:
            raise DecorationError("a branch task cannot be cached: its choice is what the run is about; drop cache=")

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            if not callable(f):
                raise DecorationError(f"@{self.name}.task decorates a function — got {f!r}")
            task = _make_task(
                self,
                f,
                name,
                deps,
                retry,
                float(timeout) if timeout else None,
                tuple(checks),
                keep,
                on_check_error,
                sources,
            )
            if map is not None and map not in task.parameters:
                raise DecorationError(
                    f"task {task.name!r}: map={map!r} names no parameter of it "
                    f"(parameters: {', '.join(task.parameters) or 'none'}); map names the parameter that "
                    "receives the list, and each run of the task gets one item of it"
                )
            self._add(replace(task, **flow))
            return f

        return register(fn) if fn is not None else register

    def sensor(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        poke: float = 30.0,
        timeout: float = 3600.0,
        on_timeout: str = "fail",
        depends_on: Any = (),
        trigger_rule: str = DEFAULT_RULE,
        retries: int = 0,
        persist: bool | str = "auto",
    ) -> Any:
        """Register a sensor: a task whose function is called every ``poke`` seconds until it returns
        something truthy (its output), for at most ``timeout`` seconds; returns the function unchanged.

        A look that finds the condition false is not a failed attempt: the sensor stays ``waiting``
        (one attempt, its pokes counted) and holds no worker, the run's own loop pokes it. At the
        timeout it ends ``timed_out`` (``on_timeout="skip"``: ``skipped``, so the run can succeed
        without what it waited for). A poke that raises counts against ``retries``; after that many
        more it fails. See :mod:`agent.sensors` for ready-made conditions (files, table partitions,
        another pipeline's success).
        """
        spec = SensorSpec(poke=poke, timeout=timeout, on_timeout=on_timeout)
        retry = RetryPolicy(retries=retries, delay=0.0)
        keep = _PERSIST.get(persist) if isinstance(persist, bool | str) else None
        if keep is None:
            raise DecorationError(f"persist must be one of 'auto' (or True), 'pickle', False — got {persist!r}")
        deps, sources = parse_depends_on(depends_on)
        flow = _flow_options(map=None, max_parallel=None, branch=False, trigger_rule=trigger_rule)

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            if not callable(f):
                raise DecorationError(f"@{self.name}.sensor decorates a function — got {f!r}")
            task = _make_task(self, f, name, deps, retry, None, (), keep, "fail", sources)
            self._add(replace(task, sensor=spec, **flow))
            return f

        return register(fn) if fn is not None else register

    def _add(self, task: Task) -> None:
        if task.name in self.tasks:
            raise DuplicateTaskError(
                f"pipeline {self.name!r} already has a task named {task.name!r}; "
                "give one of them another name with @pipe.task(name=...)",
                task=task.name,
            )
        if task.name in RUN_PARAMETERS or task.name in self.params:
            raise DecorationError(
                f"task name {task.name!r} of pipeline {self.name!r} is a run parameter name; rename the task"
            )
        # Cycles that the tasks known so far close are reported now; forward references wait for graph().
        refs = {*task.parameters, *task.depends_on, *(src.task for _, src in task.sources)}
        if task.name in self._referenced or task.name in refs:
            names = {*self.tasks, task.name}
            if self._closes_cycle(task, names):
                cycle = find_cycle({t.name: t.dependencies(names) for t in (*self.tasks.values(), task)})
                raise CycleError(
                    f"task {task.name!r} closes a cycle in pipeline {self.name!r} "
                    f"(each depends on the next): {' -> '.join(cycle)}",
                    cycle=cycle,
                )
        self.tasks[task.name] = task
        self._referenced |= refs
        self._graph = None
        task.fn.__pipewarden_task__ = task  # type: ignore[attr-defined]

    def _closes_cycle(self, task: Task, names: Container[str]) -> bool:
        """Whether ``task`` reaches itself through the dependencies of the registered tasks.

        The tasks registered so far form no cycle, so a new one passes through ``task``:
        a walk from it finds it, touching only what it depends on.
        """
        stack = list(task.dependencies(names))
        seen: set[str] = set()
        while stack:
            n = stack.pop()
            if n == task.name:
                return True
            if n in seen or n not in self.tasks:
                continue
            seen.add(n)
            stack.extend(self.tasks[n].dependencies(names))
        return False

    # --- the graph ----------------------------------------------------------------------

    def graph(self) -> Graph:
        """The validated task graph (cached until a task is added)."""
        if self._graph is None:
            self._graph = self._build()
        return self._graph

    def _build(self) -> Graph:
        if not self.tasks:
            raise ConfigError(f"pipeline {self.name!r} has no tasks; add one with @pipe.task")
        names = list(self.tasks)  # for messages; membership tests use the dict
        known = set(RUN_PARAMETERS) | set(self.params)
        for t in self.tasks.values():
            wired = dict(t.sources)
            for p, src in wired.items():
                if src.task not in self.tasks:
                    hint = difflib.get_close_matches(src.task, names, n=1)
                    raise UnknownDependencyError(
                        f"parameter {p!r} of task {t.name!r} of pipeline {self.name!r} is wired to {src.task!r}, "
                        f"which is not a task ({', '.join(names)})" + (f"; did you mean {hint[0]!r}?" if hint else ""),
                        task=t.name,
                        dependency=src.task,
                    )
            for p in t.parameters:
                if p in self.tasks or p in known or p in t.defaults or p in wired:
                    continue
                hint = difflib.get_close_matches(p, [*names, *known], n=1)
                fix = f"did you mean {hint[0]!r}? " if hint else ""
                raise UnknownDependencyError(
                    f"task {t.name!r} of pipeline {self.name!r} has parameter {p!r}, which is neither a task "
                    f"({', '.join(names)}) nor a run parameter ({', '.join(sorted(known))}); {fix}"
                    "give it a default, or declare it with Pipeline(params={...})",
                    task=t.name,
                    dependency=p,
                )
        graph = Graph({t.name: t.dependencies(self.tasks) for t in self.tasks.values()}, pipeline=self.name)
        for t in self.tasks.values():
            if t.branch and not graph.children[t.name]:
                raise ConfigError(
                    f"branch task {t.name!r} of pipeline {self.name!r} has no task directly downstream of it to "
                    f"choose; declare each choice with @pipe.task(depends_on=[{t.name!r}]) or a parameter named "
                    f"{t.name!r}"
                )
        return graph


_PERSIST: dict[bool | str, str] = {True: "auto", "auto": "auto", "pickle": "pickle", False: "off", "off": "off"}


def _flow_options(*, map: str | None, max_parallel: int | None, branch: bool, trigger_rule: str) -> dict[str, Any]:
    """The mapping, branching and trigger-rule options of a task, validated (DecorationError naming each)."""
    if map is not None and (not isinstance(map, str) or not map):
        raise DecorationError(f"map names the parameter to map over, a string — got {map!r}")
    if max_parallel is not None:
        if map is None:
            raise DecorationError("max_parallel bounds the items of a mapped task running at once; add map=...")
        if not isinstance(max_parallel, int) or isinstance(max_parallel, bool) or max_parallel < 1:
            raise DecorationError(f"max_parallel must be an int >= 1 or None — got {max_parallel!r}")
    if not isinstance(branch, bool):
        raise DecorationError(f"branch must be True or False — got {branch!r}")
    if branch and map is not None:
        raise DecorationError("a task is either a branch or mapped, not both; map first, then branch on the results")
    if trigger_rule not in TRIGGER_RULES:
        raise DecorationError(
            f"trigger_rule must be one of {', '.join(TRIGGER_RULES)} — got {trigger_rule!r} "
            f"({'; '.join(f'{k}: {v}' for k, v in TRIGGER_RULES.items())})"
        )
    return {"map": map, "max_parallel": max_parallel, "branch": branch, "trigger_rule": trigger_rule}


def _make_task(
    pipe: Pipeline,
    fn: Callable[..., Any],
    name: str | None,
    deps: tuple[str, ...],
    retry: RetryPolicy,
    timeout: float | None,
    checks: tuple[Any, ...],
    persist: str,
    on_check_error: str = "fail",
    wired: dict[str, Input] | None = None,
) -> Task:
    task_name = name or getattr(fn, "__name__", None)
    if not task_name or not isinstance(task_name, str):
        raise DecorationError(f"cannot name task {fn!r}; pass @pipe.task(name=...)")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise DecorationError(f"task {task_name!r}: cannot read the signature of {fn!r} ({exc})") from None
    params, defaults = [], set()
    collect: str | None = None
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            collect = p.name
            continue
        if p.kind is p.VAR_POSITIONAL:
            raise DecorationError(
                f"task {task_name!r}: *{p.name} parameters are not supported; name each "
                "input after the task or run parameter it receives, or collect outputs with **upstream"
            )
        if p.kind is p.POSITIONAL_ONLY:
            raise DecorationError(
                f"task {task_name!r}: parameter {p.name!r} is positional-only; inputs are "
                "passed by name, remove the '/'"
            )
        params.append(p.name)
        if p.default is not p.empty:
            defaults.add(p.name)
    sources = _wire(pipe, fn, sig, task_name, params, collect, deps, dict(wired or {}))
    if task_name in deps or any(src.task == task_name for src in sources.values()):
        raise DecorationError(f"task {task_name!r} of pipeline {pipe.name!r} cannot depend on itself")
    return Task(
        name=task_name,
        fn=fn,
        parameters=tuple(params),
        defaults=frozenset(defaults),
        depends_on=deps,
        retry=retry,
        timeout=timeout,
        checks=checks,
        persist=persist,
        pipeline=pipe.name,
        on_check_error=on_check_error,
        sources=tuple(sources.items()),
        collect=collect,
    )


def _wire(
    pipe: Pipeline,
    fn: Callable[..., Any],
    sig: inspect.Signature,
    task: str,
    params: list[str],
    collect: str | None,
    deps: tuple[str, ...],
    wired: dict[str, Input],
) -> dict[str, Input]:
    """Explicit sources of ``task``'s parameters (depends_on mapping and Input annotations), validated."""
    for param, src in annotated_sources(fn, task, sig).items():
        if param in wired and wired[param] != src:
            raise DecorationError(
                f"task {task!r}: parameter {param!r} is wired to {wired[param].describe()} by depends_on and to "
                f"{src.describe()} by its annotation; keep one"
            )
        wired[param] = src
    for param in wired:
        if param not in params:
            raise DecorationError(
                f"task {task!r} of pipeline {pipe.name!r}: depends_on wires {param!r}, which is not one of its "
                f"parameters ({', '.join(params) or 'none'})"
            )
        if param in RUN_PARAMETERS or param in pipe.params:
            raise DecorationError(
                f"task {task!r} of pipeline {pipe.name!r}: parameter {param!r} is a run parameter; it cannot also "
                "receive a task's output, rename it"
            )
    if collect is not None and not [d for d in deps if d not in params]:
        raise DecorationError(
            f"task {task!r} of pipeline {pipe.name!r}: **{collect} receives the outputs of the tasks in "
            f"depends_on; name them, e.g. @pipe.task(depends_on=['extract_a', 'extract_b'])"
        )
    return wired
