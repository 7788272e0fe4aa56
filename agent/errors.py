"""pipewarden's errors: one base class, each subclass also the matching built-in.

Details live on attributes so callers can act on them without parsing text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "BranchError",
    "CheckFailedError",
    "ConfigError",
    "CycleError",
    "DecorationError",
    "DuplicateTaskError",
    "ExecutorError",
    "ParamError",
    "MapError",
    "PipewardenError",
    "RunClaimedError",
    "RunLimitError",
    "SensorTimeoutError",
    "StoreError",
    "TaskCancelledError",
    "TaskInputError",
    "TaskTimeoutError",
    "UnknownDependencyError",
    "UntrustedPathError",
]


class PipewardenError(Exception):
    """Base of every error pipewarden raises on purpose."""


class ConfigError(PipewardenError, ValueError):
    """A configuration value is wrong. ``problems`` lists every problem found, not only the first."""

    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None, problems: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.problems = list(problems) or [message]


class DecorationError(PipewardenError, TypeError):
    """A decorator was applied wrongly or given arguments of the wrong type."""


class CheckFailedError(PipewardenError, RuntimeError):
    """A blocking check failed on a monitored call's output; ``results`` are the failing ones."""

    def __init__(self, message: str, *, results: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.results = list(results)


class CycleError(PipewardenError, ValueError):
    """The task graph has a cycle; ``cycle`` lists the tasks on it in order."""

    def __init__(self, message: str, *, cycle: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.cycle = list(cycle)


class UnknownDependencyError(PipewardenError, ValueError):
    """A task depends on a task the pipeline does not have."""

    def __init__(self, message: str, *, task: str = "", dependency: str = "") -> None:
        super().__init__(message)
        self.task = task
        self.dependency = dependency


class DuplicateTaskError(PipewardenError, ValueError):
    """Two tasks of one pipeline have the same name."""

    def __init__(self, message: str, *, task: str = "") -> None:
        super().__init__(message)
        self.task = task


class TaskTimeoutError(PipewardenError, TimeoutError):
    """A task ran past its timeout and was stopped."""

    def __init__(self, message: str, *, task: str = "", timeout: float = 0.0) -> None:
        super().__init__(message)
        self.task = task
        self.timeout = timeout


class TaskCancelledError(PipewardenError, RuntimeError):
    """The run was cancelled while ``task`` ran in a child process or a remote worker; it was stopped."""

    def __init__(self, message: str, *, task: str = "") -> None:
        super().__init__(message)
        self.task = task


class ExecutorError(PipewardenError, RuntimeError):
    """A task could not run, or its end was not heard, where its executor sent it.

    ``reason`` says why: ``worker-lost`` (the worker running it died),
    ``scheduler-lost`` (the connection to the scheduler broke), ``no-workers``
    (no worker to run it for too long), ``cannot-load`` (a worker could not
    unpickle the task) or ``cannot-send`` (its function or inputs do not pickle);
    ``address`` names the worker or scheduler concerned. Each is an ordinary
    failed attempt: ``retry_on=ExecutorError`` retries them.
    """

    def __init__(self, message: str, *, reason: str = "", address: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.address = address


class StoreError(PipewardenError, OSError):
    """The run store cannot be opened or written (locked, read-only, corrupt); ``path`` names it."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class UntrustedPathError(PipewardenError, PermissionError):
    """A file pipewarden would load or import (a task output, a pipeline file, the state directory)
    could have been written by another user; ``path`` names it."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class RunLimitError(PipewardenError, RuntimeError):
    """A run was not started: its pipeline already has ``limit`` (``max_active_runs``) runs running,
    ``running`` (their run ids)."""

    def __init__(self, message: str, *, pipeline: str = "", limit: int = 1, running: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.pipeline = pipeline
        self.limit = limit
        self.running = list(running)


class ParamError(ConfigError):
    """A run parameter's value does not convert to its type; ``param``, the ``value`` given, what is ``allowed``."""

    def __init__(self, message: str, *, param: str = "", value: Any = None, allowed: str = "") -> None:
        super().__init__(message)
        self.param = param
        self.value = value
        self.allowed = allowed


class TaskInputError(PipewardenError, LookupError):
    """A task's input could not be taken from its upstream output (``key`` missing from a dict, or no dict)."""

    def __init__(self, message: str, *, task: str = "", source: str = "", key: str | None = None) -> None:
        super().__init__(message)
        self.task = task
        self.source = source
        self.key = key


class RunClaimedError(ConfigError):
    """A run was not started: it is no longer queued (or in the state a resume found it in): another agent
    (another process, on this host or another) claimed it first. ``status`` is the state it was found in,
    ``owner`` the host and pid that holds it, if any. A ConfigError too, as asking to start any run that
    is not waiting to start is."""

    def __init__(self, message: str, *, run_id: str = "", status: str = "", owner: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status
        self.owner = owner


class BranchError(PipewardenError, ValueError):
    """A branch task returned something other than names of tasks directly downstream of it;
    ``task`` is the branch, ``returned`` what it returned, ``allowed`` the names it may return."""

    def __init__(self, message: str, *, task: str = "", returned: Any = None, allowed: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.task = task
        self.returned = returned
        self.allowed = list(allowed)


class MapError(PipewardenError, TypeError):
    """A mapped task's ``parameter`` did not receive a list of items (``got`` names the type it received)."""

    def __init__(self, message: str, *, task: str = "", parameter: str = "", got: str = "") -> None:
        super().__init__(message)
        self.task = task
        self.parameter = parameter
        self.got = got


class SensorTimeoutError(PipewardenError, TimeoutError):
    """A sensor's condition did not hold within its ``timeout`` seconds, after ``pokes`` looks."""

    def __init__(self, message: str, *, task: str = "", timeout: float = 0.0, pokes: int = 0) -> None:
        super().__init__(message)
        self.task = task
        self.timeout = timeout
        self.pokes = pokes
