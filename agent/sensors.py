"""Sensors: tasks that wait for a condition (a file, a table partition, another pipeline's run) to hold.

>>> import tempfile; from agent import Pipeline
>>> pipe = Pipeline("doc")
>>> ready = pipe.sensor(name="ready", poke=0.1, timeout=5)(file_exists(tempfile.gettempdir()))
>>> pipe.tasks["ready"].sensor
SensorSpec(poke=0.1, timeout=5.0, on_timeout='fail')

A sensor's function is poked until it returns something truthy, which is its
output. A look that finds the condition false is not an attempt: the sensor
has one attempt, recorded ``waiting`` with its pokes counted, and no worker
waits for it: the run's own loop pokes every waiting sensor when it is due (in
the daemon, a run whose only work is waiting sensors also gives back its run
slot; :mod:`agent.waiting` is that loop). At ``timeout`` seconds it ends ``timed_out`` (a failure), or ``skipped``
with ``on_timeout="skip"``. The conditions here are functions whose
parameters the run fills like any task's (``logical_date``, ``params``).
"""

from __future__ import annotations

import contextlib
import contextvars
import glob
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.errors import DecorationError

if TYPE_CHECKING:
    pass

__all__ = [
    "ON_TIMEOUT",
    "SensorSpec",
    "file_exists",
    "pipeline_succeeded",
    "poking",
    "sql_rows",
    "table_partition",
]

#: What a sensor does when its condition did not hold in time: fail the run, or skip what depends on it.
ON_TIMEOUT = ("fail", "skip")

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
#: The run store and run values of the sensor being poked (for conditions about other runs).
_POKING: contextvars.ContextVar[tuple[Any, Mapping[str, Any]] | None] = contextvars.ContextVar("poking", default=None)


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """How a sensor waits: a poke every ``poke`` seconds, for at most ``timeout`` seconds, then ``on_timeout``."""

    poke: float = 30.0
    timeout: float = 3600.0
    on_timeout: str = "fail"

    def __post_init__(self) -> None:
        problems = []
        for label, value in (("poke", self.poke), ("timeout", self.timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                problems.append(f"{label} must be a number of seconds > 0 — got {value!r}")
        if self.on_timeout not in ON_TIMEOUT:
            problems.append(f"on_timeout must be one of {', '.join(ON_TIMEOUT)} — got {self.on_timeout!r}")
        if problems:
            raise DecorationError("sensor: " + "; ".join(problems))
        object.__setattr__(self, "poke", float(self.poke))
        object.__setattr__(self, "timeout", float(self.timeout))


@contextlib.contextmanager
def poking(store: Any, values: Mapping[str, Any]) -> Iterator[None]:
    """While a sensor is poked: the run store and run values conditions about other runs read."""
    token = _POKING.set((store, values))
    try:
        yield
    finally:
        _POKING.reset(token)


def _format(template: str, logical_date: Any, params: Mapping[str, Any] | None) -> str:
    return template.format(**{**(params or {}), "logical_date": logical_date})


def file_exists(pattern: str | os.PathLike[str], *, min_bytes: int = 0) -> Callable[..., list[str]]:
    """A condition: the files matching ``pattern`` (a glob; ``{logical_date:%Y-%m-%d}`` and run
    parameters are filled in) that exist and hold at least ``min_bytes``; falsy while there are none.

    A partition of a table laid out in directories is a file too:
    ``file_exists("warehouse/orders/ds={logical_date:%Y-%m-%d}/_SUCCESS")``.
    """
    template = os.fspath(pattern)

    def file_exists(logical_date: Any = None, params: Mapping[str, Any] | None = None) -> list[str]:
        found = []
        for p in sorted(glob.glob(_format(template, logical_date, params))):
            with contextlib.suppress(OSError):  # gone between the glob and the stat: not there
                if os.path.isfile(p) and os.path.getsize(p) >= min_bytes:
                    found.append(p)
        return found

    return file_exists


def sql_rows(
    connect: Callable[[], Any], query: str, parameters: Sequence[Any] | Mapping[str, Any] = ()
) -> Callable[..., list[tuple[Any, ...]]]:
    """A condition: the rows ``query`` returns on a new DB-API connection from ``connect()``; falsy while none.

    String parameters may hold ``{logical_date:%Y-%m-%d}`` and run parameters, filled in at each poke
    (values are passed as query parameters, never pasted into the SQL). The connection is closed after
    each poke.
    """

    def fill(v: Any, logical_date: Any, params: Mapping[str, Any] | None) -> Any:
        return _format(v, logical_date, params) if isinstance(v, str) else v

    def sql_rows(logical_date: Any = None, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        if isinstance(parameters, Mapping):
            args: Any = {k: fill(v, logical_date, params) for k, v in parameters.items()}
        else:
            args = [fill(v, logical_date, params) for v in parameters]
        conn = connect()
        try:
            cur = conn.cursor()
            cur.execute(query, args)
            return [tuple(r) for r in cur.fetchall()]
        finally:
            conn.close()

    return sql_rows


def table_partition(
    connect: Callable[[], Any], table: str, *, column: str = "ds", value: str = "{logical_date:%Y-%m-%d}"
) -> Callable[..., list[tuple[Any, ...]]]:
    """A condition: ``table`` has a row whose ``column`` equals ``value`` (the run's partition, by default
    its logical date as ``YYYY-MM-DD``). ``table`` and ``column`` must be plain SQL identifiers."""
    for label, ident in (("table", table), ("column", column)):
        if not isinstance(ident, str) or not _IDENTIFIER.match(ident):
            raise DecorationError(
                f"table_partition: {label} must be a plain SQL identifier (letters, digits, _, one dot) — got {ident!r}"
            )
    # A DB-API driver's paramstyle is not known here; qmark is what sqlite3 and duckdb take.
    return sql_rows(connect, f"SELECT 1 FROM {table} WHERE {column} = ? LIMIT 1", [value])


def pipeline_succeeded(pipeline: str, *, same_logical_date: bool = True) -> Callable[..., str | None]:
    """A condition: a run of ``pipeline`` succeeded (for the same logical date, by default); its run id.

    Read from the run store of the run being poked (outside a run: the default store).
    """

    def pipeline_succeeded(logical_date: Any = None) -> str | None:
        found = _POKING.get()
        if found is not None:
            store = found[0]
        else:
            from agent.store import RunStore

            store = RunStore.default()
        for rec in store.list_runs(pipeline=pipeline, status="success", limit=500):
            if not same_logical_date or rec.logical_date == logical_date:
                return str(rec.run_id)
        return None

    return pipeline_succeeded
