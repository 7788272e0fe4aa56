"""Caching task outputs across runs: what identifies a task's inputs, and for how long an output stands.

A task declared with ``cache=`` is not run when an earlier run of the same
pipeline ran it with the same inputs and the same code, and that output has
not expired: its output is loaded instead and the task ends ``cached``.

>>> as_cache("1d").expire_seconds
86400.0
>>> key = cache_key("orders", "total", "def total(extract): ...", {"extract": [1, 2, 3]})
>>> key == cache_key("orders", "total", "def total(extract): ...", {"extract": [1, 2, 3]})
True
>>> key == cache_key("orders", "total", "def total(extract): ...", {"extract": [1, 2, 4]})
False

The key is a SHA-256 over the pipeline and task names, the task's code (the
source of its function), :attr:`Cache.version`, and a fingerprint of every
argument it receives: upstream outputs and run parameters alike. Fingerprints
are exact: pandas objects through ``pandas.util.hash_pandas_object`` (values
and index) with their column names and dtypes, Arrow tables through their IPC
bytes, numpy arrays through their bytes, dtype and shape, plain values through
their type and ``repr``, containers element by element. A value of another
type has no fingerprint: the task then runs (it is never served a stale
output) and its record says why; ``Cache(key=fn)`` names what identifies the
inputs instead (``fn`` gets the task's arguments as keywords).

What declares a cache lives here; what the runner does with it (look up,
keep, record the hit) is :mod:`agent.caching`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import hashlib
import inspect
import pathlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.errors import ConfigError, DecorationError

__all__ = ["Cache", "Unkeyable", "as_cache", "cache_key", "code_of"]

_VERSION = b"pipewarden-cache-1"


class Unkeyable(Exception):
    """An argument has no fingerprint (the message names it and its type); the task runs uncached."""


@dataclass(frozen=True)
class Cache:
    """How a task's output is reused across runs.

    >>> Cache(expire="12h").expire_seconds
    43200.0

    ``expire``: how long an output stands after the run that made it (``"30m"``,
    ``"1d"``, seconds, a timedelta), or None: until the inputs or the code change.
    ``key``: a function of the task's arguments (as keywords) returning what
    identifies them (a string or any value with a fingerprint), used instead of
    fingerprinting the arguments themselves. ``version``: change it to drop every
    cached output of the task (a change the source does not show, such as a new
    version of a library it calls).
    """

    expire: str | float | dt.timedelta | None = None
    key: Callable[..., Any] | None = None
    version: str = ""

    def __post_init__(self) -> None:
        _ = self.expire_seconds  # validates at decoration time
        if self.key is not None and not callable(self.key):
            raise DecorationError(f"Cache(key=...) takes a function of the task's arguments — got {self.key!r}")
        if not isinstance(self.version, str):
            raise DecorationError(f"Cache(version=...) is a string — got {self.version!r}")

    @property
    def expire_seconds(self) -> float | None:
        """Seconds an output stands, or None (until the inputs or code change)."""
        e = self.expire
        if e is None:
            return None
        if isinstance(e, dt.timedelta):
            seconds = e.total_seconds()
        elif isinstance(e, int | float) and not isinstance(e, bool):
            seconds = float(e)
        elif isinstance(e, str):
            from agent.schedules import parse_interval

            try:
                seconds = parse_interval(e, where="cache expiry").total_seconds()
            except ConfigError as exc:
                raise DecorationError(str(exc)) from None
        else:
            seconds = 0.0
        if seconds <= 0:
            raise DecorationError(
                f"cache expiry must be a positive duration ('30m', '1d', seconds or a timedelta) or None — got {e!r}"
            )
        return seconds


def as_cache(value: Any) -> Cache | None:
    """The :class:`Cache` a ``cache=`` argument means: None or False (off), True (no expiry), a duration, a Cache."""
    if value is None or value is False:
        return None
    if value is True:
        return Cache()
    if isinstance(value, Cache):
        return value
    if isinstance(value, str | int | float | dt.timedelta) and not isinstance(value, bool):
        return Cache(expire=value)
    raise DecorationError(
        f"cache must be a duration ('1d', seconds, a timedelta), True (until the inputs change), "
        f"Cache(...) or None — got {value!r}"
    )


def code_of(fn: Callable[..., Any]) -> str:
    """The text that identifies a task's code: its source, else its bytecode and constants."""
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        if code is None:
            return repr(fn)
        return f"{code.co_code.hex()}|{code.co_consts!r}|{code.co_names!r}"


def cache_key(pipeline: str, task: str, code: str, arguments: Mapping[str, Any], *, version: str = "") -> str:
    """The hex SHA-256 that names one set of inputs of one version of a task; raises :class:`Unkeyable`."""
    h = hashlib.sha256(_VERSION)
    for part in (pipeline, task, version, code):
        _text(h, part)
    for name in sorted(arguments):
        _text(h, name)
        try:
            _feed(h, arguments[name], 0)
        except Unkeyable as exc:
            raise Unkeyable(f"argument {name!r}: {exc}") from None
    return h.hexdigest()


def _text(h: Any, s: str) -> None:
    b = s.encode()
    h.update(len(b).to_bytes(8, "little"))
    h.update(b)


_PLAIN = (type(None), bool, int, float, complex, str, bytes, decimal.Decimal, uuid.UUID, dt.timedelta)
_DATES = (dt.datetime, dt.date, dt.time)


def _feed(h: Any, value: Any, depth: int) -> None:
    if depth > 50:
        raise Unkeyable("it is nested more than 50 levels deep")
    t = type(value)
    _text(h, f"{t.__module__}.{t.__qualname__}")
    if t in _PLAIN or isinstance(value, enum.Enum):
        _text(h, repr(value))
        return
    if isinstance(value, _DATES):
        _text(h, value.isoformat())
        return
    if isinstance(value, pathlib.PurePath):
        _text(h, str(value))
        return
    if t in (list, tuple):
        h.update(len(value).to_bytes(8, "little"))
        for v in value:
            _feed(h, v, depth + 1)
        return
    if t is dict:
        parts = []
        for k, v in value.items():
            sub = hashlib.sha256()
            _feed(sub, k, depth + 1)
            _feed(sub, v, depth + 1)
            parts.append(sub.digest())
        for p in sorted(parts):  # order of insertion does not change a dict's meaning here
            h.update(p)
        return
    if t in (set, frozenset):
        subs = []
        for v in value:
            sub = hashlib.sha256()
            _feed(sub, v, depth + 1)
            subs.append(sub.digest())
        for p in sorted(subs):
            h.update(p)
        return
    module = (t.__module__ or "").partition(".")[0]
    if module == "pandas" and t.__name__ in ("DataFrame", "Series"):
        _pandas(h, value)
        return
    if module == "numpy" and t.__name__ == "ndarray":
        _numpy(h, value, depth)
        return
    if module == "numpy" and hasattr(value, "dtype") and hasattr(value, "item"):  # a numpy scalar
        _text(h, f"{value.dtype}:{value.item()!r}")
        return
    if module in ("pyarrow", "polars") and t.__name__ in ("Table", "RecordBatch", "DataFrame"):
        _arrow(h, value.to_arrow() if module == "polars" else value)
        return
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _text(h, f.name)
            _feed(h, getattr(value, f.name), depth + 1)
        return
    raise Unkeyable(
        f"a {t.__module__}.{t.__qualname__} has no fingerprint; give the task Cache(key=...), a function "
        "of its arguments returning what identifies them"
    )


def _pandas(h: Any, value: Any) -> None:
    import pandas as pd

    frame = value.to_frame() if isinstance(value, pd.Series) else value
    _text(h, repr(list(frame.columns)))
    _text(h, repr([str(d) for d in frame.dtypes]))
    _text(h, repr(list(frame.index.names)))
    try:
        hashed = pd.util.hash_pandas_object(value, index=True)
    except TypeError as exc:  # unhashable cells (lists, dicts)
        raise Unkeyable(f"its cells cannot be hashed by pandas ({exc})") from None
    h.update(hashed.to_numpy().tobytes())


def _numpy(h: Any, value: Any, depth: int) -> None:
    _text(h, f"{value.dtype.str}:{value.shape}")
    if value.dtype.hasobject:  # object arrays hold pointers: fingerprint the elements
        _feed(h, value.tolist(), depth + 1)
    else:
        import numpy as np

        h.update(np.ascontiguousarray(value).tobytes())


def _arrow(h: Any, value: Any) -> None:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, value.schema) as writer:
        writer.write(value)
    h.update(sink.getvalue().to_pybytes())
