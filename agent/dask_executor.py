"""The Dask distributed executor: a running scheduler at ``address``, or a local cluster started here.

What travels: each task goes to Dask as one payload that pipewarden pickles
itself with cloudpickle, the task function and its inputs together, and that
:func:`_run_payload` unpickles on the worker. Functions of pipeline files
loaded by pipewarden (their modules are named ``pipewarden_pipelines.*``) and
of the modules beside those files are pickled *by value*, so no worker needs
the pipeline file; the scheduler and the workers need pipewarden and the
packages the tasks import. (distributed pickles a task graph with plain
pickle whenever it can, which takes every function by reference: a
``register_pickle_by_value`` only counts when cloudpickle does the pickling.)

When the cluster fails, the task's attempt fails with one line, an
:class:`~agent.errors.ExecutorError`, in bounded time; never a hang:

* its worker dies: a local cluster's scheduler gives up on the first death
  (``allowed_failures=0``), so every attempt runs once and the task's own
  retries decide what follows; a running scheduler that reruns tasks on other
  workers (``allowed-failures`` above 0) is named in a warning at connect;
* the scheduler goes away: distributed cancels the futures at once;
* the scheduler stops answering, or the cluster has no worker: an attempt
  that waited ``worker_wait`` seconds (``$PIPEWARDEN_DASK_WORKER_WAIT``,
  default 60) so is cancelled there (it does not run later) and fails here;
* a worker cannot unpickle the task (a package it imports is missing there),
  or the task cannot be pickled here.

A scheduler that cannot be reached, or cannot load pipewarden's code, is a
:class:`~agent.errors.ConfigError` when the executor is made.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError
from typing import Any

from agent.errors import ConfigError, ExecutorError
from agent.loader import LOADED_PREFIX
from agent.settings import PIPEWARDEN_DASK_WORKER_WAIT

__all__ = ["DEFAULT_WORKER_WAIT", "DaskExecutor"]

log = logging.getLogger("pipewarden.executors")

#: Seconds an attempt waits while the cluster has no worker, unless ``worker_wait`` or the variable says otherwise.
DEFAULT_WORKER_WAIT = 60.0
_POLL = 0.5  # seconds between the watchdog's looks at the waiting attempts and the cluster
_PROBE = 5.0  # seconds the watchdog waits for the scheduler to say how many worker threads it has
# pipewarden's own packages (the workers have them), even in a checkout beside a pipeline file.
_BY_REFERENCE = frozenset({"__main__", "agent", "alerts", "checks", "dashboards", "exporters"})
_INSTALL = "install pipewarden, and the packages the tasks import, where the scheduler and the workers run"


class DaskExecutor:
    """A Dask distributed cluster: ``address`` of a running scheduler, or a local cluster started here.

    >>> ex = DaskExecutor(processes=False, n_workers=1)
    >>> ex.submit(divmod, 7, 2).result()
    (3, 1)
    >>> ex.shutdown()

    ``dask.distributed`` is imported when the executor is created, never
    before. Without ``address`` (nor ``client``) it starts a ``LocalCluster``
    of worker processes (``processes=False``: threads of this process) that
    :meth:`shutdown` stops. Connecting checks that the scheduler can load
    pipewarden's code, a :class:`~agent.errors.ConfigError` otherwise.
    """

    name = "dask"
    local = False

    def __init__(
        self,
        address: str | None = None,
        *,
        client: Any = None,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        processes: bool | None = None,
        max_workers: int | None = None,
        connect_timeout: float = 10.0,
        worker_wait: float | None = None,
        **cluster_options: Any,
    ) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise ConfigError("the Dask executor needs dask.distributed: pip install 'pipewarden[dask]'") from exc
        self.max_workers = max_workers
        self.connect_timeout = connect_timeout
        self.worker_wait = _worker_wait(worker_wait)
        self._cluster: Any = None
        self._owns_client = client is None
        self._lock = threading.Lock()
        self._waiting: set[_Attempt] = set()
        self._closed = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._by_value: set[str] = set()
        self._siblings_seen: tuple[frozenset[str], int] = (frozenset(), -1)
        if client is not None:
            self.client = client
        elif address:
            if address.endswith(".json"):
                address = _address_in(address, connect_timeout)
            self.client = _connect(address, connect_timeout)
        else:
            # The scheduler is ours: a worker that dies fails the attempt instead of a silent rerun elsewhere.
            scheduler_kwargs = {"allowed_failures": 0, **cluster_options.pop("scheduler_kwargs", {})}
            if "dashboard_address" not in cluster_options:  # no dashboard; its HTTP server on any free loopback port
                scheduler_kwargs = {"dashboard": False, "dashboard_address": "127.0.0.1:0", **scheduler_kwargs}
            options: dict[str, Any] = {"dashboard_address": None, "scheduler_kwargs": scheduler_kwargs}
            options.update(cluster_options)
            for key, value in (("n_workers", n_workers), ("threads_per_worker", threads_per_worker)):
                if value is not None:
                    options[key] = value
            if processes is not None:
                options["processes"] = processes
            self._cluster = LocalCluster(**options)
            self.client = Client(self._cluster, set_as_default=False)
        self.address = str(getattr(self.client.scheduler, "address", None) or address or "")
        self.allowed_failures = self._check_scheduler()

    # --- the interface -------------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> _Attempt:
        """Send ``fn(*args)`` to the cluster; the attempt's ``result()`` is its value, or one clear error."""
        if self._closed.is_set():
            raise ExecutorError("the Dask executor was shut down", reason="scheduler-lost", address=self.address)
        payload = self._payload(fn, args)
        key = f"pipewarden-{_label(fn, args)}-{uuid.uuid4().hex}"
        try:
            future = self.client.submit(_run_payload, payload, key=key, pure=False)
        except Exception as exc:
            if self.client.status in ("closing", "closed"):
                raise self._lost(_one_line(exc)) from None
            raise
        attempt = _Attempt(self, future)
        with self._lock:
            self._waiting.add(attempt)
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch, name="pipewarden-dask-watchdog", daemon=True)
                self._watchdog.start()
        future.add_done_callback(attempt.settle)
        return attempt

    def worker_pids(self) -> list[int]:
        """The local cluster's worker processes (none for a running scheduler's workers, which may be elsewhere)."""
        if self._cluster is None:
            return []
        try:
            pids = self.client.run(os.getpid)
        except Exception:
            log.debug("cannot list the local Dask workers", exc_info=True)
            return []
        return sorted({int(pid) for pid in pids.values()} - {os.getpid()})

    def shutdown(self, wait: bool = True) -> None:
        self._closed.set()
        with self._lock:
            left = list(self._waiting)
        for attempt in left:
            attempt.fail(
                ExecutorError(
                    "the Dask executor was shut down before the task ended",
                    reason="scheduler-lost",
                    address=self.address,
                )
            )
        if self._owns_client:
            with contextlib.suppress(Exception):
                self.client.close(timeout=self.connect_timeout)
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close(timeout=self.connect_timeout)
            self._cluster = None

    # --- what travels ------------------------------------------------------------------------------

    def _payload(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> bytes:
        import cloudpickle

        self._ship_by_value((fn, *args))
        try:
            return bytes(cloudpickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL))
        except Exception as exc:
            raise ExecutorError(
                f"the task's function or inputs cannot be pickled for the Dask workers ({type(exc).__name__}: "
                f"{_one_line(exc)}); a task run elsewhere must take picklable inputs",
                reason="cannot-send",
                address=self.address,
            ) from None

    def _ship_by_value(self, objs: Iterable[Any]) -> None:
        """Register pipeline-file modules, and the modules beside those files, to be pickled by value."""
        import cloudpickle

        dirs: set[str] = set()
        with self._lock:
            for obj in objs:
                name = getattr(obj, "__module__", None)
                module = sys.modules.get(name) if isinstance(name, str) and name.startswith(LOADED_PREFIX) else None
                if module is None:
                    continue
                if name not in self._by_value:
                    cloudpickle.register_pickle_by_value(module)
                    self._by_value.add(str(name))
                if file := getattr(module, "__file__", None):
                    dirs.add(os.path.dirname(os.path.abspath(file)))
            if not dirs:
                return
            seen = (frozenset(dirs) | self._siblings_seen[0], len(sys.modules))
            if seen == self._siblings_seen:
                return
            self._siblings_seen = seen
            for name in _modules_in(seen[0]) - self._by_value:
                with contextlib.suppress(ValueError):  # left sys.modules meanwhile
                    cloudpickle.register_pickle_by_value(sys.modules[name])
                    self._by_value.add(name)

    # --- watching the cluster ----------------------------------------------------------------------

    def _check_scheduler(self) -> int:
        """The scheduler's ``allowed_failures``; a ConfigError when it cannot load pipewarden's code."""
        try:
            failures = int(self.client.run_on_scheduler(_allowed_failures, callback_timeout=self.connect_timeout))
        except Exception as exc:
            self.shutdown()
            if isinstance(exc, TimeoutError):
                raise ConfigError(
                    f"the Dask scheduler at {self.address} did not answer within {self.connect_timeout:g} s"
                ) from None
            raise ConfigError(
                f"the Dask scheduler at {self.address} cannot run pipewarden's code "
                f"({type(exc).__name__}: {_one_line(exc)}); {_INSTALL}"
            ) from None
        if failures > 0:
            log.warning(
                "the Dask scheduler at %s reruns a task whose worker died on another worker, up to %d times, "
                "unseen by pipewarden: one attempt may run more than once. Start it with "
                "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0 to have a lost worker fail the attempt "
                "(the task's retries then decide).",
                self.address,
                failures,
            )
        return failures

    def _watch(self) -> None:
        """Fail attempts that waited ``worker_wait`` s for a worker or for the scheduler to answer; settle the rest.

        distributed cancels the futures of a scheduler that went away, but not of one that stopped answering
        (stopped, deadlocked, cut off); the watchdog asks it about its workers at every look.
        """
        empty_since: float | None = None  # since when the cluster has had no worker thread
        heard = time.monotonic()  # when the scheduler last answered (or when attempts began to wait)
        while not self._closed.wait(_POLL):
            with self._lock:
                waiting = list(self._waiting)
            closed = self.client.status in ("closing", "closed")
            for attempt in waiting:  # a done-callback lost with a closing client must not leave a waiter behind
                if attempt.future.done():
                    attempt.settle()
                elif closed:
                    attempt.fail(self._lost("the client closed"))
            if not waiting or closed:
                empty_since, heard = None, time.monotonic()
                continue
            try:
                threads = sum(self.client.nthreads(callback_timeout=_PROBE).values())
            except Exception as exc:
                self._expire(waiting, heard, f"it has not answered for {self.worker_wait:g} s ({type(exc).__name__})")
                continue
            heard = now = time.monotonic()
            if threads:
                empty_since = None
                continue
            empty_since = now if empty_since is None else empty_since
            self._expire(waiting, empty_since, None)

    def _expire(self, waiting: list[_Attempt], since: float, silent: str | None) -> None:
        """Fail the attempts that waited ``worker_wait`` s since ``since``: for the scheduler if ``silent``
        says how it went quiet, else for a worker."""
        now = time.monotonic()
        for attempt in waiting:
            if now - max(since, attempt.submitted) < self.worker_wait:
                continue
            if silent is not None:
                attempt.fail(self._lost(silent))
            else:
                attempt.fail(
                    ExecutorError(
                        f"no Dask worker joined the scheduler at {self.address} for {self.worker_wait:g} s "
                        f"while the task waited; start workers (`dask worker {self.address}`) or raise "
                        f"{PIPEWARDEN_DASK_WORKER_WAIT}",
                        reason="no-workers",
                        address=self.address,
                    )
                )

    def _forget(self, attempt: _Attempt) -> None:
        with self._lock:
            self._waiting.discard(attempt)

    def _outcome(self, future: Any) -> Any:
        """The Dask future's value; distributed's failures of the cluster (not the task's) as ExecutorError."""
        from distributed.comm.core import CommClosedError
        from distributed.scheduler import KilledWorker

        try:
            return future.result()
        except KilledWorker as exc:
            worker = str(getattr(exc.last_worker, "address", exc.last_worker))
            runs = int(exc.allowed_failures) + 1
            more = f" (it was the {runs}th worker to die running it)" if runs > 1 else ""
            raise ExecutorError(
                f"the Dask worker {worker} died while it ran the task{more}: killed, out of memory, or "
                "it could not load the task; its log says which",
                reason="worker-lost",
                address=worker,
            ) from None
        except (CancelledError, CommClosedError) as exc:
            raise self._lost(getattr(exc, "reason", "") or type(exc).__name__) from None

    def _lost(self, why: str) -> ExecutorError:
        return ExecutorError(
            f"lost the Dask scheduler at {self.address} before the task's end was heard ({why}); "
            "whether it ran there is unknown",
            reason="scheduler-lost",
            address=self.address,
        )


class _Attempt:
    """One task on Dask as the runner waits for it: ``add_done_callback``, ``cancel``, ``result``."""

    def __init__(self, executor: DaskExecutor, future: Any) -> None:
        self.executor = executor
        self.future = future
        self.submitted = time.monotonic()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._verdict: BaseException | None = None
        self._callbacks: list[Callable[[_Attempt], Any]] = []

    def done(self) -> bool:
        return self._done.is_set()

    def add_done_callback(self, fn: Callable[[_Attempt], Any]) -> None:
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(fn)
                return
        fn(self)

    def result(self, timeout: float | None = None) -> Any:
        if not self._done.wait(timeout):
            raise TimeoutError(f"the Dask task {self.future.key} has not ended within {timeout:g} s")
        if self._verdict is not None:
            raise self._verdict
        return self.executor._outcome(self.future)

    def cancel(self) -> bool:
        """Stop waiting, and release the task on the cluster (Dask cannot stop one that already runs)."""
        return self.fail(CancelledError(f"the Dask task {self.future.key} was cancelled"))

    def fail(self, verdict: BaseException) -> bool:
        """End the attempt with ``verdict`` and cancel it on the cluster, so that it does not run later."""
        if not self._end(verdict):
            return False
        # In a thread: a scheduler that does not answer must not hold up the caller.
        threading.Thread(target=_cancel, args=(self.future,), name="pipewarden-dask-cancel", daemon=True).start()
        return True

    def settle(self, _future: Any = None) -> None:
        """The Dask future is done (or the client closed): ``result()`` reads it."""
        self._end(None)

    def _end(self, verdict: BaseException | None) -> bool:
        with self._lock:
            if self._done.is_set():
                return False
            self._verdict = verdict
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        self.executor._forget(self)
        for fn in callbacks:
            try:
                fn(self)
            except Exception:
                log.exception("a done-callback of Dask task %s failed", self.future.key)
        return True


def _cancel(future: Any) -> None:
    with contextlib.suppress(Exception):
        future.cancel()


def _connect(address: str, timeout: float) -> Any:
    """A client of the scheduler at ``address``; a ConfigError when none answers within ``timeout`` seconds.

    distributed bounds the TCP connect but not each step after it (a peer that accepts and says nothing
    holds ``Client()`` forever), so the client is made in a thread that is waited for ``timeout`` seconds.
    """
    from distributed import Client

    made: list[Any] = []
    failed: list[BaseException] = []

    def connect() -> None:
        try:
            made.append(Client(address, timeout=timeout, set_as_default=False))
        except BaseException as exc:  # handed to the caller below
            failed.append(exc)

    thread = threading.Thread(target=connect, name="pipewarden-dask-connect", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    if made:
        return made[0]
    exc = failed[0] if failed else TimeoutError("it accepted the connection but never answered")
    raise ConfigError(
        f"cannot reach the Dask scheduler at {address!r} within {timeout:g} s ({type(exc).__name__}: "
        f"{_one_line(exc)}); start one (`dask scheduler`), check --address (tcp://host:8786), or leave "
        "--address out for a local cluster"
    ) from None


def _run_payload(payload: bytes) -> Any:
    """On a worker: unpickle the task pipewarden sent and run it."""
    try:
        fn, args = pickle.loads(payload)
    except Exception as exc:
        where = _worker_address()
        raise ExecutorError(
            f"the Dask worker {where} cannot load the task ({type(exc).__name__}: {_one_line(exc)}); "
            "install the packages the task imports where the workers run (pipeline files, and modules "
            "beside them, travel with the task)",
            reason="cannot-load",
            address=where,
        ) from None
    return fn(*args)


def _allowed_failures(dask_scheduler: Any) -> int:
    """On the scheduler: how many times it reruns a task whose worker died (run_on_scheduler passes it)."""
    return int(dask_scheduler.allowed_failures)


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:
        return "(unknown)"


def _modules_in(dirs: frozenset[str]) -> set[str]:
    """Top-level modules and packages imported from ``dirs``, beside pipeline files (the loader puts them on the path).

    They travel by value even when a copy is installed elsewhere: the workers run the code the runner loaded.
    """
    found = set()
    for name, module in list(sys.modules.items()):
        if "." in name or module is None or name in _BY_REFERENCE:
            continue
        paths = list(getattr(module, "__path__", None) or ())
        file = getattr(module, "__file__", None)
        places = [os.path.dirname(os.path.abspath(p)) for p in paths]
        if file and not paths:
            places.append(os.path.dirname(os.path.abspath(file)))
        if any(p in dirs for p in places):
            found.add(name)
    return found


def _label(fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
    """The task function's name for the Dask key (the dashboard groups tasks by it)."""
    target = args[0] if args and callable(args[0]) else fn
    name = str(getattr(target, "__name__", "task"))
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "task"


def _address_in(path: str, timeout: float) -> str:
    """The scheduler's address from the file ``dask scheduler --scheduler-file PATH`` writes (it may come late)."""
    import json

    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, encoding="utf-8") as f:
                address = json.load(f).get("address")
            if isinstance(address, str) and address:
                return address
            problem = "it has no scheduler address"
        except FileNotFoundError:
            problem = "it does not exist"
        except (OSError, ValueError, AttributeError) as exc:  # unreadable, not JSON yet (still written), not a dict
            problem = f"it is not a Dask scheduler file ({type(exc).__name__}: {_one_line(exc)})"
        if time.monotonic() >= deadline:
            raise ConfigError(
                f"scheduler file {path}: {problem} after {timeout:g} s; --address takes tcp://host:8786 or the "
                "file `dask scheduler --scheduler-file FILE` writes",
                path=path,
            )
        time.sleep(0.1)


def _worker_wait(value: float | None) -> float:
    if value is None:
        raw = os.environ.get(PIPEWARDEN_DASK_WORKER_WAIT, "").strip()
        if not raw:
            return DEFAULT_WORKER_WAIT
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{PIPEWARDEN_DASK_WORKER_WAIT} must be a number of seconds > 0 — got {raw!r}") from None
        where = PIPEWARDEN_DASK_WORKER_WAIT
    else:
        where = "worker_wait"
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f"{where} must be a number of seconds > 0 — got {value!r}")
    return float(value)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
