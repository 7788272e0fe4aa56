"""Where task functions execute: threads, processes, or a Dask cluster, behind one interface.

An executor has ``submit(fn, *args) -> future`` (anything with ``result()``)
and ``shutdown(wait=True)``. The runner keeps its bookkeeping (store, spans,
checks) in its own threads and hands only the task function to the executor;
with :class:`ThreadExecutor` it calls the function in its own worker thread,
with no hand-off at all. :class:`DaskExecutor` lives in :mod:`agent.dask_executor`.

A task with a timeout runs in a forked child process (:func:`run_in_child`),
wherever the executor runs it: a stuck thread cannot be stopped, a process can.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import pickle
import resource
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agent.dask_executor import DaskExecutor
from agent.errors import ConfigError, ExecutorError, TaskCancelledError, TaskTimeoutError
from agent.tasklogs import NO_PARTS, Parts, TaskLog, attach, captured

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

__all__ = [
    "DaskExecutor",
    "Executor",
    "Measured",
    "ProcessExecutor",
    "ThreadExecutor",
    "get_executor",
    "invoke",
    "measured",
    "run_in_child",
]

log = logging.getLogger("pipewarden.executors")


@runtime_checkable
class Executor(Protocol):
    """Runs functions somewhere; ``local`` executors let the runner call them in its own threads."""

    name: str
    local: bool
    max_workers: int | None

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any: ...

    def shutdown(self, wait: bool = True) -> None: ...


@dataclass(frozen=True, slots=True)
class Measured:
    """A task's return value with the CPU seconds and peak memory of the process that ran it, and what it
    logged and printed there (:mod:`agent.tasklogs`)."""

    value: Any
    cpu: float
    peak: int | None
    logs: Parts = NO_PARTS


def invoke(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    """Call a task function with its inputs by name; coroutine functions run to completion."""
    out = fn(**kwargs)
    if inspect.iscoroutine(out):
        return asyncio.run(out)
    return out


def measured(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> Measured:
    """:func:`invoke` in a worker of another process or cluster, reporting its CPU and peak memory."""
    c0 = time.thread_time()
    value, logs = captured(fn, kwargs, invoke)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return Measured(value, time.thread_time() - c0, peak, logs)


def timed(fn: Callable[..., Any], kwargs: Mapping[str, Any], timeout: float, grace: float) -> Measured:
    """:func:`run_in_child` with the arguments the runner submits (picklable for remote executors)."""
    return run_in_child(fn, kwargs, timeout, grace=grace)


class ThreadExecutor:
    """Threads of this process (the default).

    >>> ex = ThreadExecutor(max_workers=2)
    >>> ex.submit(sum, [1, 2]).result()
    3
    >>> ex.shutdown()
    """

    name = "threads"
    local = True

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="pipewarden")
        return self._pool

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        return self.pool.submit(fn, *args)

    def shutdown(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=not wait)
            self._pool = None


class ProcessExecutor:
    """A pool of worker processes of this machine (``fork`` where available).

    Functions travel by value with cloudpickle when it is installed (it comes
    with the ``dask`` extra), so closures and functions defined inside other
    functions work; otherwise they must be importable module-level functions.

    Workers die with the process that started them, even when it is killed
    with SIGKILL: on Linux each worker asks the kernel for SIGKILL when its
    parent goes (``PR_SET_PDEATHSIG``), and everywhere a watchdog thread in
    each worker exits when its parent process is gone. The kernel sends that
    signal when the *thread* that forked the worker ends, so the workers are
    forked by one thread that lives as long as the pool. :meth:`worker_pids`
    starts the pool and says which processes may run tasks (the runner records
    them, and a resume waits until they are gone).
    """

    name = "processes"
    local = False

    def __init__(self, max_workers: int | None = None, *, mp_context: str | None = None) -> None:
        import multiprocessing

        self.max_workers = max_workers
        self._method = mp_context or ("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        self._ctx = multiprocessing.get_context(self._method)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        pool = self._started()
        try:
            import cloudpickle
        except ImportError:
            return pool.submit(fn, *args)
        try:
            payload = cloudpickle.dumps((fn, args))
        except Exception as exc:  # a lock, a connection: the same one-line error as the Dask executor's
            raise ExecutorError(
                f"the task's function or inputs cannot be pickled for a worker process ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())}); a task run in a process must take picklable inputs, or use "
                "--executor threads",
                reason="cannot-send",
            ) from None
        return pool.submit(_unpickle_call, payload)

    def worker_pids(self) -> list[int]:
        """Start the pool if needed; the process ids of its workers."""
        pool = self._started()
        processes = getattr(pool, "_processes", None) or {}
        return sorted(int(pid) for pid in processes)

    def _started(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = self._start()
            return self._pool

    def _start(self) -> ProcessPoolExecutor:
        from concurrent.futures import ProcessPoolExecutor

        made: list[ProcessPoolExecutor] = []
        failed: list[BaseException] = []
        ready = threading.Event()
        stop = self._stop = threading.Event()
        forked_here = self._method == "fork"  # fork launches every worker at the first submit, in that thread

        def parent() -> None:
            try:
                pool = ProcessPoolExecutor(
                    self.max_workers,
                    mp_context=self._ctx,
                    initializer=_worker_start,
                    initargs=(os.getpid(), forked_here),
                )
                pool.submit(os.getpid).result()
                made.append(pool)
            except BaseException as exc:  # handed to the caller below
                failed.append(exc)
            finally:
                ready.set()
            stop.wait()  # the workers' parent thread: it ends only after the pool is shut down

        threading.Thread(target=parent, name="pipewarden-workers", daemon=True).start()
        ready.wait()
        if failed:
            raise failed[0]
        return made[0]

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=not wait)
        self._stop.set()


def _worker_start(parent: int, deathsig: bool) -> None:
    """Initializer of a pool worker: die with the process that started the pool."""
    if deathsig:
        _die_with_parent()
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="pipewarden-watchdog", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)  # a task's child process dies with this one (its own PR_SET_PDEATHSIG)


def _die_with_parent() -> None:
    """Ask Linux for SIGKILL when the thread that forked this process ends (PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
        except Exception:
            pass


def _unpickle_call(payload: bytes) -> Any:
    fn, args = pickle.loads(payload)
    return fn(*args)


def get_executor(name: str, *, max_workers: int | None = None, address: str | None = None) -> Executor:
    """An executor by name: ``threads``, ``processes`` or ``dask`` (``address`` of a scheduler, or local)."""
    if name == "threads":
        return ThreadExecutor(max_workers)
    if name == "processes":
        return ProcessExecutor(max_workers)
    if name == "dask":
        return DaskExecutor(address, max_workers=max_workers)
    raise ConfigError(f"executor must be one of threads, processes, dask — got {name!r}")


# --- a child process per task with a timeout -----------------------------------------------


def run_in_child(
    fn: Callable[..., Any],
    kwargs: Mapping[str, Any],
    timeout: float,
    *,
    grace: float = 5.0,
    cancel: Any = None,
    task: str = "",
) -> Measured:
    """Run ``fn(**kwargs)`` in a forked child; at ``timeout`` seconds SIGTERM it, SIGKILL after ``grace``.

    Returns the value (pickled back through a pipe) with the child's CPU time
    and peak memory; re-raises the child's exception (its traceback added as a
    note); raises :class:`~agent.errors.TaskTimeoutError` at the deadline and
    :class:`~agent.errors.TaskCancelledError` when ``cancel`` (an Event) is set meanwhile.
    """
    if not hasattr(os, "fork"):
        return _run_in_spawned(fn, kwargs, timeout, grace=grace, task=task)
    r, w = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: run, report, and leave without running the parent's atexit hooks
        code = 0
        try:
            os.close(r)
            _child_setup(parent)
            payload = _child_payload(fn, kwargs)
            with os.fdopen(w, "wb") as f:
                f.write(payload)
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(w)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # also done in the child; whichever runs first wins the race
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                exc: BaseException = TaskTimeoutError(
                    f"task {task!r} ran past its timeout of {timeout:g} s and was stopped", task=task, timeout=timeout
                )
                attach(exc, _stopped_logs(b"".join(chunks) + _stop(pid, grace, r)))
                raise exc
            if cancel is not None and cancel.is_set():
                exc = TaskCancelledError(f"task {task!r} was stopped because the run was cancelled", task=task)
                attach(exc, _stopped_logs(b"".join(chunks) + _stop(pid, grace, r)))
                raise exc
            ready, _, _ = select.select([r], [], [], min(remaining, 0.25) if cancel is not None else remaining)
            if not ready:
                continue
            data = os.read(r, 1 << 20)
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        raise ChildProcessError(
            f"the child process of task {task!r} died without a result "
            f"({_describe_status(status)}); out of memory, or killed from outside?"
        )
    return _decode(b"".join(chunks))


class _Stopped(BaseException):
    """Raised in a task's child process by the SIGTERM of its timeout: it sends back what it logged, then exits."""


def _raise_stopped(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
    raise _Stopped("stopped by SIGTERM")


def _child_setup(parent: int) -> None:
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, _raise_stopped)
    # The parent stops the child on Ctrl-C; the terminal's SIGINT is not for the child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before PR_SET_PDEATHSIG took effect
        os._exit(1)


def _child_payload(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> bytes:
    log = TaskLog()
    try:
        with log.active():
            result: tuple[Any, ...] = ("ok", invoke(fn, kwargs))
    except BaseException as exc:
        result = ("err", exc, traceback.format_exc())
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu, peak = ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024
    try:
        return pickle.dumps((result, cpu, peak, log.parts()), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        what = "output" if result[0] == "ok" else f"exception {type(result[1]).__name__}: {result[1]}"
        err = RuntimeError(
            f"the task's {what} cannot be pickled ({type(exc).__name__}: {exc}); a task with a "
            "timeout runs in a child process and must return a picklable value"
        )
        return pickle.dumps((("err", err, result[2] if len(result) > 2 else ""), cpu, peak, log.parts()))


def _decode(data: bytes) -> Measured:
    result, cpu, peak, logs = pickle.loads(data)
    if result[0] == "ok":
        return Measured(result[1], cpu, peak, logs)
    exc: BaseException = result[1]
    if result[2]:
        with contextlib.suppress(Exception):
            exc.add_note("Traceback in the task's child process:\n" + result[2].rstrip())
    attach(exc, logs)
    raise exc


def _stopped_logs(data: bytes) -> Parts:
    """What a child stopped by SIGTERM logged, as it sent it back before it exited (nothing if it did not)."""
    try:
        parts = pickle.loads(data)[3] if data else NO_PARTS
    except Exception:  # killed mid-write, or nothing of ours
        return NO_PARTS
    return parts if isinstance(parts, tuple) and len(parts) == 3 else NO_PARTS


def _stop(pid: int, grace: float, pipe: int) -> bytes:
    """SIGTERM the child's group; read what it sends back for up to ``grace`` seconds; then SIGKILL the rest."""
    _signal(pid, signal.SIGTERM)
    end = time.monotonic() + grace
    chunks: list[bytes] = []
    reaped = False
    while (remaining := end - time.monotonic()) > 0:
        ready, _, _ = select.select([pipe], [], [], min(remaining, 0.05))
        if ready:
            data = os.read(pipe, 1 << 20)
            if data:
                chunks.append(data)
                continue
        done, _ = os.waitpid(pid, os.WNOHANG)  # the pipe is at its end, or quiet: has the child gone?
        if done:
            reaped = True
            break
        if ready:  # at the end of the pipe, which stays readable: do not spin while the child exits
            time.sleep(0.01)
    _signal(pid, signal.SIGKILL)  # what is left of it, and the rest of its process group
    if not reaped:
        os.waitpid(pid, 0)
    return b"".join(chunks)


def _signal(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def _spawned_main(conn: Any, fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    conn.send_bytes(_child_payload(fn, kwargs))
    conn.close()


def _run_in_spawned(
    fn: Callable[..., Any], kwargs: Mapping[str, Any], timeout: float, *, grace: float, task: str
) -> Measured:
    # Platforms without fork: the function must be importable by the spawned interpreter.
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_spawned_main, args=(child, fn, kwargs), daemon=True)
    proc.start()
    child.close()
    if not parent.poll(timeout):
        proc.terminate()
        proc.join(grace)
        if proc.is_alive():
            proc.kill()
        proc.join()
        raise TaskTimeoutError(
            f"task {task!r} ran past its timeout of {timeout:g} s and was stopped", task=task, timeout=timeout
        )
    try:
        data = parent.recv_bytes()
    except EOFError:
        proc.join()
        raise ChildProcessError(
            f"the child process of task {task!r} died without a result (exit code {proc.exitcode})"
        ) from None
    proc.join()
    return _decode(data)
