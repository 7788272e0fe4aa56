"""What a task attempt logged and printed, kept with the attempt in the run store.

>>> log = TaskLog(limit=40)
>>> with log.active():
...     print("extracted 3 rows")
extracted 3 rows
>>> log.text()
'extracted 3 rows\\n'

While an attempt runs, :meth:`TaskLog.active` makes it the current log of the
thread (a :mod:`contextvars` variable, so tasks running at once in other
threads keep their own):

* logging records: a log-record factory writes each record made in that thread
  to its log (``2025-01-31T06:00:00.123Z WARNING orders: 3 rows dropped``, the
  traceback after it), whatever handlers the program configured, and records
  still go to those handlers as before. Records exist only at the levels the
  program's logging lets through (logging's default is WARNING and up).
* ``print()`` and other writes to ``sys.stdout`` / ``sys.stderr``: while any
  attempt runs, both are wrapped by a tee that writes to the stream it wraps
  (the terminal still gets everything) and to the current thread's log. Writes
  made by logging's own stream handlers are left out (the record is already
  in). Output written to the file descriptors directly (C extensions,
  subprocesses) and output of threads the task starts itself are not
  attributed to the task: they have no current log.

In a process-pool worker or a timeout's child process the same happens there
and the text comes back with the result (:func:`captured`). Each attempt keeps
at most :data:`MAX_CHARS` characters: the first and the last half, with one
line in the middle saying how much was left out.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import datetime as dt
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO

__all__ = ["MAX_CHARS", "NO_PARTS", "Parts", "TaskLog", "attach", "attached", "captured", "hooked"]

#: Characters of logs and output kept per task attempt (its first and last half when it wrote more).
MAX_CHARS = 64 * 1024

#: A log as it travels between processes: (head, characters left out, tail).
Parts = tuple[str, int, str]
NO_PARTS: Parts = ("", 0, "")

_current: contextvars.ContextVar[TaskLog | None] = contextvars.ContextVar("agent.tasklogs.current", default=None)
_ATTR = "_task_log_parts"


class TaskLog:
    """The bounded text of one task attempt: its first ``limit // 2`` and last ``limit // 2`` characters."""

    def __init__(self, limit: int = MAX_CHARS) -> None:
        self.limit = limit
        self._half = limit // 2
        self._head: list[str] = []
        self._head_size = 0
        self._tail: collections.deque[str] = collections.deque()
        self._tail_size = 0
        #: Characters written beyond the bound and not kept.
        self.dropped = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            room = self._half - self._head_size
            if room > 0:
                part = text[:room]
                self._head.append(part)
                self._head_size += len(part)
                text = text[room:]
            if not text:
                return
            self._tail.append(text)
            self._tail_size += len(text)
            excess = self._tail_size - (self.limit - self._half)
            while excess > 0:  # keep the newest characters
                first = self._tail[0]
                if len(first) <= excess:
                    self._tail.popleft()
                    cut = len(first)
                else:
                    self._tail[0] = first[excess:]
                    cut = excess
                self._tail_size -= cut
                self.dropped += cut
                excess -= cut

    def parts(self) -> Parts:
        """(head, characters left out, tail): what :meth:`merge` takes in another process."""
        with self._lock:
            return "".join(self._head), self.dropped, "".join(self._tail)

    def merge(self, parts: Parts) -> None:
        """Add what a log in another process (a worker, a timeout's child) kept, under this log's bound."""
        head, dropped, tail = parts
        self.write(head)
        with self._lock:
            self.dropped += dropped
        self.write(tail)

    def text(self) -> str:
        """The kept text, with a line where characters were left out."""
        with self._lock:
            head, tail = "".join(self._head), "".join(self._tail)
            if not self.dropped:
                return head + tail
            return (
                f"{head}\n[... {self.dropped:,} characters left out: a task attempt keeps {self.limit:,} characters "
                f"of logs, the first and the last {self._half:,} ...]\n{tail}"
            )

    @contextlib.contextmanager
    def active(self) -> Iterator[TaskLog]:
        """Make this the current thread's log while the block runs (records and stdout/stderr go to it)."""
        with hooked():
            token = _current.set(self)
            try:
                yield self
            finally:
                _current.reset(token)


@contextlib.contextmanager
def hooked() -> Iterator[None]:
    """Keep the record factory and the stdout/stderr tee in place while the block runs; the last block out
    takes them away. A run holds them for all its attempts, so an attempt only counts itself in and out."""
    _install()
    try:
        yield
    finally:
        _uninstall()


def captured(fn: Callable[..., Any], kwargs: Mapping[str, Any], call: Callable[..., Any]) -> tuple[Any, Parts]:
    """``call(fn, kwargs)`` with its logs captured: (result, log parts); an exception carries them."""
    log = TaskLog()
    try:
        with log.active():
            value = call(fn, kwargs)
    except BaseException as exc:
        attach(exc, log.parts())
        raise
    return value, log.parts()


def attach(exc: BaseException, parts: Parts) -> None:
    """Carry a failed attempt's log parts on its exception (they survive pickling back from a worker)."""
    if any(parts):
        with contextlib.suppress(Exception):
            setattr(exc, _ATTR, parts)


def attached(exc: BaseException | None) -> Parts:
    """The log parts :func:`attach` put on ``exc`` (empty ones if none)."""
    parts = getattr(exc, _ATTR, None) if exc is not None else None
    if isinstance(parts, tuple) and len(parts) == 3:
        return parts
    return NO_PARTS


# --- where text comes from: a record factory and a tee on stdout/stderr ------------------------------

_lock = threading.Lock()
_users = 0
_LOGGING_FILE = logging.__file__


class _Factory:
    """Wraps the previous log-record factory; writes each record made under a current log to it."""

    def __init__(self, wrapped: Callable[..., logging.LogRecord]) -> None:
        self.wrapped = wrapped

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.wrapped(*args, **kwargs)
        log = _current.get()
        if log is not None:
            log.write(_format(record))
        return record


def _format(record: logging.LogRecord) -> str:
    try:
        message = record.getMessage()
    except Exception:  # bad %-arguments: logging reports it when a handler formats; keep the raw text
        message = str(record.msg)
    when = dt.datetime.fromtimestamp(record.created, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    text = f"{when}Z {record.levelname} {record.name}: {message}\n"
    if record.exc_info and record.exc_info[0] is not None:
        text += logging.Formatter().formatException(record.exc_info) + "\n"
    elif record.stack_info:
        text += record.stack_info + "\n"
    return text


class _Tee:
    """A text stream that also writes to the current thread's task log."""

    def __init__(self, stream: TextIO) -> None:
        self._wrapped = stream

    def write(self, text: str) -> int:
        n = self._wrapped.write(text)
        log = _current.get()
        # A logging StreamHandler writing here: the record itself is already in the log.
        if log is not None and sys._getframe(1).f_code.co_filename != _LOGGING_FILE:
            log.write(text)
        return n

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


def _install() -> None:
    global _users
    with _lock:
        _users += 1
        if _users > 1:
            return
        factory = logging.getLogRecordFactory()
        if not _in_chain(factory):
            logging.setLogRecordFactory(_Factory(factory))
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if stream is not None and not isinstance(stream, _Tee):
                setattr(sys, name, _Tee(stream))


def _uninstall() -> None:
    global _users
    with _lock:
        _users -= 1
        if _users > 0:
            return
        _users = 0
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, _Tee):  # someone who replaced it since keeps theirs
                setattr(sys, name, stream._wrapped)
        factory = logging.getLogRecordFactory()
        if isinstance(factory, _Factory):
            logging.setLogRecordFactory(factory.wrapped)


def _in_chain(factory: Any) -> bool:
    while factory is not None:
        if isinstance(factory, _Factory):
            return True
        factory = getattr(factory, "wrapped", None)
    return False


def _after_fork() -> None:
    # A thread of the parent may have held the lock at the fork: the child starts with a free one.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
