"""``@monitor``: one decorator (or ``with`` block) that makes an ETL function observable.

>>> import pandas as pd
>>> from checks import row_count
>>> @monitor(pipeline="orders", checks=[row_count(min=1)])
... def transform(raw: pd.DataFrame) -> pd.DataFrame:
...     return raw.dropna()
>>> len(transform(pd.DataFrame({"a": [1, None, 3]})))
2

Each call gets a span (``RUN <pipeline>`` for the outermost call, ``RUN <task>``
for nested ones), task metrics (runs by status, duration, rows in and out, CPU,
peak memory, last success) and, when it is the outermost monitored call, the
pipeline-run metrics too. Checks run on the returned frame; what a blocking
result (a check of severity fail that failed or could not run) means is the
``on_check_failure`` policy: ``warn`` (log and record) or ``raise`` (record,
then raise :class:`~agent.errors.CheckFailedError`). ``on_check_error="warn"``
lets results of status ``error`` through (see :mod:`agent.gates`).
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar, overload

from agent.errors import CheckFailedError, DecorationError
from agent.gates import ON_ERROR, blocking, blocking_reason, validate_checks
from agent.scope import Scope, current_scope, rows_of
from agent.telemetry import Telemetry, get_telemetry
from checks.result import CheckResult, Status

__all__ = ["monitor"]

log = logging.getLogger("pipewarden.monitor")

P = ParamSpec("P")
R = TypeVar("R")
Policy = Literal["warn", "raise"]
OnError = Literal["fail", "warn"]
_POLICIES = ("warn", "raise")


class monitor:
    """Instrument a function (``@monitor(...)``) or a block (``with monitor(...) as run:``).

    >>> with monitor(pipeline="orders", task="load") as run:
    ...     run.rows_out(3)

    Arguments are validated here, at decoration time, so mistakes surface when
    the module is imported rather than in the middle of a run.
    """

    __slots__ = (
        "_needs_store",
        "checks",
        "dataset",
        "on_check_error",
        "on_check_failure",
        "pipeline",
        "store",
        "task",
        "telemetry",
        "version",
    )

    def __init__(
        self,
        pipeline: str | None = None,
        *,
        task: str | None = None,
        checks: Iterable[Callable[..., Any]] = (),
        on_check_failure: Policy = "warn",
        on_check_error: OnError = "fail",
        dataset: str | None = None,
        telemetry: Telemetry | None = None,
        store: Any = None,
        version: str | None = None,
    ) -> None:
        if callable(pipeline) and not isinstance(pipeline, str):
            raise DecorationError(
                'monitor must be called: write @monitor(pipeline="name") (or @monitor()), not @monitor'
            )
        for arg, value in (("pipeline", pipeline), ("task", task), ("dataset", dataset), ("version", version)):
            if value is not None and (not isinstance(value, str) or not value):
                raise DecorationError(f"monitor({arg}=...) must be a non-empty str, got {value!r}")
        checks = validate_checks(checks, "monitor(checks=...)", error=DecorationError)
        if on_check_failure not in _POLICIES:
            raise DecorationError(
                f"monitor(on_check_failure=...) must be one of {', '.join(_POLICIES)}, got {on_check_failure!r}"
            )
        if on_check_error not in ON_ERROR:
            raise DecorationError(
                f"monitor(on_check_error=...) must be one of {', '.join(ON_ERROR)}, got {on_check_error!r}"
            )
        if telemetry is not None and not isinstance(telemetry, Telemetry):
            raise DecorationError(f"monitor(telemetry=...) must be an agent.Telemetry, got {type(telemetry).__name__}")
        self.pipeline = pipeline
        self.task = task
        self.checks: tuple[Callable[..., Any], ...] = checks
        # Fixed once the checks are built: whether a call must open the default run store.
        self._needs_store = any(getattr(c, "needs_store", False) for c in checks)
        self.on_check_failure: Policy = on_check_failure
        self.on_check_error: OnError = on_check_error
        self.dataset = dataset
        self.telemetry = telemetry
        self.store = store
        self.version = version

    # --- decorator ------------------------------------------------------------------------

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        if isinstance(fn, type):
            raise DecorationError(
                f"@monitor decorates functions, not classes: got class {fn.__name__}; decorate its methods instead"
            )
        if not callable(fn):
            raise DecorationError(f"@monitor decorates functions, got {type(fn).__name__} {fn!r}")
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise DecorationError(
                f"@monitor cannot wrap generator {fn.__qualname__}: its work happens after "
                "the call returns; return a DataFrame (or a list) instead"
            )
        task = self.task or getattr(fn, "__name__", None) or type(fn).__name__
        pipeline = self.pipeline
        default_pipeline = _default_pipeline(fn)
        source = getattr(getattr(fn, "__code__", None), "co_filename", None)
        version = _Version(self.version, source)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                scope = self._scope(pipeline, default_pipeline, task, version)
                with scope:
                    inputs = _count_inputs(scope, args, kwargs)
                    result = await fn(*args, **kwargs)
                    self._after(scope, result, inputs)
                return result

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            scope = self._scope(pipeline, default_pipeline, task, version)
            with scope:
                inputs = _count_inputs(scope, args, kwargs) if args or kwargs else []
                result = fn(*args, **kwargs)
                self._after(scope, result, inputs)
            return result

        return wrapper

    # --- context manager ---------------------------------------------------------------------

    def __enter__(self) -> Scope:
        script = sys.argv[0] if sys.argv and sys.argv[0] else None
        return self._scope(self.pipeline, None, self.task, _Version(self.version, script)).__enter__()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        scope = current_scope()
        if scope is None:  # pragma: no cover - only reachable by misuse of __exit__
            raise DecorationError("monitor.__exit__ without a matching __enter__")
        scope.__exit__(exc_type, exc, tb)

    # --- internals ------------------------------------------------------------------------------

    def _scope(self, pipeline: str | None, default_pipeline: str | None, task: str | None, version: _Version) -> Scope:
        """The scope of one call or block; ``default_pipeline`` None: the script's name."""
        outer = current_scope()
        if outer is not None:  # a nested call records where its enclosing call does, unless told otherwise
            pipeline = pipeline or outer.pipeline
            scope = Scope(
                self.telemetry or outer.tel, pipeline, task or pipeline, pipeline_level=False, dataset=self.dataset
            )
        else:
            scope = Scope(
                self.telemetry or get_telemetry(),
                pipeline or default_pipeline or _script_name(),
                task,
                pipeline_level=True,
                dataset=self.dataset,
            )
            scope.trigger = "monitor"
            scope.version = version.get()
        scope.policy = self._apply_policy  # run.run_checks(...) follows on_check_failure too
        return scope

    def _after(self, scope: Scope, result: Any, inputs: Sequence[Any]) -> None:
        n = rows_of(result)
        if n is not None:
            scope.rows_out(n)
        if not self.checks:
            return
        store = self.store
        if store is None and self._needs_store:
            store = _default_store()
        scope.run_checks(self.checks, result, scope.context(inputs=inputs, store=store))  # applies the policy

    def _apply_policy(self, scope: Scope, results: list[CheckResult]) -> None:
        """Log every failed or unrunnable result; under ``raise``, a blocking one raises CheckFailedError."""
        bad = [r for r in results if r.status in (Status.FAIL, Status.ERROR)]
        for r in bad:
            log.warning(
                "%s.%s: check %s %s: %s",
                scope.pipeline,
                scope.task or scope.pipeline,
                r.check,
                r.status,
                r.message or f"observed {r.observed}, threshold {r.threshold}",
            )
        stop = blocking(results, self.on_check_error)
        if stop and self.on_check_failure == "raise":
            reason = blocking_reason(stop)
            scope.set_status("failed", reason=reason)
            raise CheckFailedError(f"{scope.pipeline}.{scope.task or scope.pipeline}: {reason}", results=stop)


class _Version:
    """The version of a monitored function's file, worked out on the first outermost call (git or a hash)."""

    __slots__ = ("source", "value")

    def __init__(self, given: str | None, source: str | None) -> None:
        self.value = given
        self.source = source

    def get(self) -> str:
        value = self.value
        if value is None:
            from agent.versions import source_version

            try:
                value = source_version(self.source) if self.source and Path(self.source).is_file() else ""
            except OSError:
                value = ""
            self.value = value
        return value


def _count_inputs(scope: Scope, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """Count the rows of the table arguments; returns those tables (the inputs a loss check compares)."""
    tables = []
    n = 0
    for a in (*args, *kwargs.values()):
        r = rows_of(a)
        if r is not None:
            tables.append(a)
            n += r
    if n:
        scope.rows_in(n)
    return tables


def _script_name() -> str:
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    stem = Path(argv0).stem
    return stem if stem and stem not in ("-c", "-m", "__main__", "pytest") else "default"


def _default_pipeline(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or ""
    if module == "__main__" or not module:
        return _script_name()
    return module.rsplit(".", 1)[-1]


def _default_store() -> Any:
    """The run store under ``$PIPEWARDEN_HOME``, opened on first need (checks with history)."""
    from agent.store import RunStore

    return RunStore.default()
