"""Checks over tables read in batches: partial states per batch, merged, then finished into results.

>>> import pandas as pd
>>> from checks import not_null, unique
>>> batches = [pd.DataFrame({"id": [1, 2], "x": [1.0, None]}), pd.DataFrame({"id": [2, 3], "x": [3.0, 4.0]})]
>>> [(r.check, r.observed) for r in run_checks([unique("id"), not_null("x")], batches)]
[('unique(id)', 1.0), ('not_null(x)', 0.25)]

A check that reads streams returns a :class:`Plan` from ``check.plan(context,
prototype)``; the plan says which columns it reads and how it works:

* ``partial(batch, offset, side) -> state``: what one batch says (a pure
  function of the batch, so it can run on a Dask worker);
* ``merge(a, b) -> state``: two partial states as one (associative);
* for keyed checks (duplicates, keys across runs, lost keys), ``codes(batch,
  offset, side)`` gives one key record per row; records are partitioned by
  hash prefix (:mod:`checks.keyset`), each partition is ``reduce``-d to a
  summary and the summaries are ``combine``-d;
* ``finish(states, summary, reader) -> results``: the results, the same as
  the check gives on the whole frame ``pd.concat(batches, ignore_index=True)``.

:func:`run_checks` reads a source once for all the checks given (a second
time only for a few example rows of hashed keys, when the source can be read
again). A Dask DataFrame's partial states are computed per partition on the
workers and merged on the client; key partitions are reduced on the workers.
"""

from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from checks.errors import CheckInputError
from checks.keyset import PREFIXES, KeyCoder, KeySpill, partition
from checks.result import CheckResult, Kind, Status
from checks.source import DaskSource, TableSource, as_source

if TYPE_CHECKING:
    from checks.base import CheckContext

__all__ = ["Plan", "Reader", "RowsPlan", "example_values", "run_checks"]


class Reader:
    """Reads a few rows of a source again by position (for examples); None when the source is read once."""

    def __init__(self, source: TableSource) -> None:
        self.source = source

    def rows_at(self, positions: Sequence[int], columns: Sequence[str]) -> pd.DataFrame | None:
        if not self.source.reiterable or not len(positions):
            return None
        wanted = np.unique(np.asarray(positions, dtype=np.int64))
        found: list[pd.DataFrame] = []
        offset = 0
        for batch in self.source.batches(list(columns)):
            n = len(batch)
            inside = wanted[(wanted >= offset) & (wanted < offset + n)]
            if len(inside):
                part = batch.iloc[inside - offset]
                part.index = pd.Index(inside)
                found.append(part)
            offset += n
            if offset > wanted[-1]:
                break
        return pd.concat(found) if found else None


#: Threads that work on batches at once, each holding one batch: one more than the CPUs, so a
#: CPU is not left idle while a thread holds the GIL (on 2 CPUs, 3 threads check 50M rows 15%
#: faster than 2), and at most 8.
WORKERS = min((os.cpu_count() or 1) + 1, 8)

_LOCAL_ONLY = frozenset({"check", "context", "store", "source", "inputs", "_finish"})


class Plan:
    """How one check works on a stream; see the module docstring for the protocol.

    >>> import pandas as pd
    >>> from checks import CheckContext, not_null
    >>> plan = not_null("x").plan(CheckContext(), pd.DataFrame({"x": pd.Series([], dtype=float)}))
    >>> a, b = plan.partial(pd.DataFrame({"x": [1.0, None]}), 0), plan.partial(pd.DataFrame({"x": [None]}), 2)
    >>> plan.finish([plan.merge(a, b)], None, None)[0].observed  # 2 nulls in 3 rows
    0.6666666666666666
    """

    #: Columns read from the checked table (None: every column; []: row counts only). Set by each plan.
    columns: list[str] | None = None
    #: Further tables this check reads (side 1, 2, ...), each with its columns.
    inputs: Sequence[tuple[TableSource, list[str] | None]] = ()
    #: True when the plan codes keys (``codes``, ``reduce``, ``combine``).
    keyed = False
    #: True when ``reduce`` needs this process (a store lookup) rather than a worker.
    reduce_here = False

    def partial(self, batch: pd.DataFrame, offset: int, side: int = 0) -> Any:
        return len(batch)

    def merge(self, a: Any, b: Any) -> Any:
        return a + b

    def __getstate__(self) -> dict[str, Any]:
        # a plan travels to Dask workers for partial, merge, codes and reduce; what only finish needs
        # (the check, which may hold a reference frame, the context and its store, further tables,
        # closures) stays here
        return {k: v for k, v in self.__dict__.items() if k not in _LOCAL_ONLY}

    def codes(self, batch: pd.DataFrame, offset: int, side: int = 0) -> np.ndarray | None:
        return None

    def reduce(self, recs: np.ndarray) -> Any:
        return None

    def combine(self, a: Any, b: Any) -> Any:
        return a.combine(b)

    def finish(self, states: list[Any], summary: Any, reader: Reader) -> list[CheckResult]:
        raise NotImplementedError


def example_values(
    coder: KeyCoder, firsts: Sequence[tuple[int, int, int]], reader: Reader, prototype: pd.DataFrame
) -> list[Any]:
    """The key values of ``firsts`` ((position, a, b), in order): decoded when exact, else read again."""
    from checks.keys import jsonable

    if coder.exact:
        dtype = prototype[coder.columns[0]].dtype
        return [coder.decode(a, b, dtype) for _, a, b in firsts]
    rows = reader.rows_at([pos for pos, _, _ in firsts], coder.columns)
    if rows is None:
        return []
    if len(coder.columns) == 1:
        return [jsonable(v) for v in rows.iloc[:, 0].tolist()]
    return [jsonable(r) for r in rows.to_dict("records")]


class RowsPlan(Plan):
    """A plan that needs only the row count (row_count, volume): ``finish`` gets the rows."""

    def __init__(self, finish: Callable[[int], list[CheckResult]]) -> None:
        self.columns = []
        self._finish = finish

    def finish(self, states: list[Any], summary: Any, reader: Reader) -> list[CheckResult]:
        return self._finish(int(states[0]))


def _error(check: Any, message: str, column: str | None = None) -> list[CheckResult]:
    from checks.base import Check

    if isinstance(check, Check):
        return [check.result(Status.ERROR, message=f"{check.name}: {message}", column=column)]
    name = getattr(check, "__name__", None) or type(check).__name__
    return [CheckResult(name, Kind.CUSTOM, Status.ERROR, message=f"{name}: {message}", column=column)]


def _wanted(columns: Iterable[list[str] | None], prototype: pd.DataFrame) -> list[str] | None:
    """The union of the plans' columns, in the table's order (None: every column)."""
    cols: set[str] = set()
    for c in columns:
        if c is None:
            return None
        cols.update(c)
    return [c for c in map(str, prototype.columns) if c in cols]


def _sub(batch: pd.DataFrame, columns: list[str] | None) -> pd.DataFrame:
    if columns is None or list(batch.columns) == columns:
        return batch
    return batch[columns]


def _local_pass(
    source: TableSource, plans: list[tuple[int, Plan]], side: int, spills: dict[int, KeySpill]
) -> dict[int, Any]:
    """One read of ``source`` feeding every plan; returns each plan's merged state.

    Batches are worked on by :data:`WORKERS` threads (numpy and pyarrow release
    the GIL for the heavy parts) while pyarrow decodes the next ones; states
    are merged, and key records spilled, here, in the order of the batches.
    """
    states: dict[int, Any] = {}
    if not plans:
        return states
    cols_of = {i: (p.columns if side == 0 else p.inputs[side - 1][1]) for i, p in plans}
    prototype = source.prototype()
    wanted = _wanted(cols_of.values(), prototype)

    def work(batch: pd.DataFrame, offset: int) -> list[tuple[int, Any, list[np.ndarray] | None]]:
        out: list[tuple[int, Any, list[np.ndarray] | None]] = []
        for i, plan in plans:
            if isinstance(states.get(i), _Failed):
                continue
            try:
                sub = _sub(batch, cols_of[i])
                recs = plan.codes(sub, offset, side) if plan.keyed else None
                out.append((i, plan.partial(sub, offset, side), None if recs is None else partition(recs)))
            except Exception as exc:  # this check fails alone, as on a whole frame
                out.append((i, _Failed(exc), None))
        return out

    by_index = dict(plans)

    def take(done: list[tuple[int, Any, list[np.ndarray] | None]]) -> None:
        for i, part, parts in done:
            if isinstance(states.get(i), _Failed):
                continue
            if isinstance(part, _Failed) or i not in states:
                states[i] = part
            else:
                states[i] = by_index[i].merge(states[i], part)
            if parts is not None:
                spills[i].add_parts(parts)

    offset = 0
    pending: deque[Future[list[tuple[int, Any, list[np.ndarray] | None]]]] = deque()
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="pipewarden-stream") as pool:
        for batch in source.batches(wanted):
            pending.append(pool.submit(work, batch, offset))
            offset += len(batch)
            while len(pending) >= WORKERS:
                take(pending.popleft().result())
        while pending:
            take(pending.popleft().result())
    for i, plan in plans:
        if i not in states:
            states[i] = plan.partial(_sub(prototype, cols_of[i]), 0, side)
    return states


class _Failed:
    """The state of a plan whose partial raised: the check gets an error result, the others go on."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


def _reduce_spill(plan: Plan, spill: KeySpill) -> Any:
    """Each prefix partition reduced alone (by WORKERS threads, unless the plan needs this one), then combined."""
    if plan.reduce_here:
        parts = [plan.reduce(spill.part(p)) for p in range(PREFIXES)]
    else:
        with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="pipewarden-keys") as pool:
            parts = list(pool.map(lambda p: plan.reduce(spill.part(p)), range(PREFIXES)))
    return functools.reduce(plan.combine, parts)


def collect(plan: Plan, source: TableSource) -> list[Any]:
    """The merged state of one plan that is not keyed, over ``source`` (on the workers for a Dask frame)."""
    if isinstance(source, DaskSource):
        from checks.dask_stream import dask_states

        return [dask_states([plan], source)[0]]
    return [_local_pass(source, [(0, plan)], 0, {})[0]]


def run_plans(
    plans: list[tuple[Any, Plan]], data: Any, *, spill_dir: str | None = None
) -> dict[int, list[CheckResult]]:
    """Run ``(check, plan)`` pairs over ``data`` in one read; results by the pair's index."""
    source = as_source(data)
    if isinstance(source, DaskSource):
        from checks.dask_stream import run_dask

        return run_dask(plans, source)
    spills = {i: KeySpill(directory=spill_dir) for i, (_, p) in enumerate(plans) if p.keyed}
    try:
        states = _local_pass(source, [(i, p) for i, (_, p) in enumerate(plans)], 0, spills)
        side_states: dict[int, list[Any]] = {i: [states[i]] for i in states}
        for i, (_, plan) in enumerate(plans):
            for side, (src, _cols) in enumerate(plan.inputs, start=1):
                if isinstance(src, DaskSource):
                    from checks.dask_stream import input_state

                    st, recs = input_state(plan, src, side)
                    if recs is not None:
                        spills[i].add(recs)
                else:
                    st = _local_pass(src, [(i, plan)], side, spills)[i]
                side_states[i].append(st)
        out: dict[int, list[CheckResult]] = {}
        reader = Reader(source)
        for i, (check, plan) in enumerate(plans):
            failed = next((st for st in side_states[i] if isinstance(st, _Failed)), None)
            if failed is not None:
                out[i] = _failure(check, failed.exc)
                continue
            summary = _reduce_spill(plan, spills[i]) if plan.keyed else None
            out[i] = _finish(check, plan, side_states[i], summary, reader)
        return out
    finally:
        for s in spills.values():
            s.close()


def _failure(check: Any, exc: Exception) -> list[CheckResult]:
    if isinstance(exc, CheckInputError):
        return _error(check, str(exc), exc.column)
    return _error(check, f"{type(exc).__name__}: {exc}")


def _finish(check: Any, plan: Plan, states: list[Any], summary: Any, reader: Reader) -> list[CheckResult]:
    try:
        return list(plan.finish(states, summary, reader))
    except Exception as exc:  # a check never raises into the pipeline
        return _failure(check, exc)


def plan_for(check: Any, context: CheckContext, prototype: pd.DataFrame) -> Plan | list[CheckResult]:
    """The check's plan, or the results that say why it cannot run on a stream."""
    make: Callable[..., Plan] | None = getattr(check, "plan", None)
    if make is None:
        return _error(check, f"{type(check).__name__} does not read tables in batches; give it a pandas DataFrame")
    try:
        return make(context, prototype)
    except CheckInputError as exc:
        return _error(check, str(exc), exc.column)


def run_checks(
    checks: Sequence[Any],
    data: Any,
    context: CheckContext | None = None,
    *,
    batch_rows: int | None = None,
    spill_dir: str | None = None,
) -> list[CheckResult]:
    """Run ``checks`` over ``data`` (a DataFrame or any table :func:`checks.source.as_source` reads) in one read.

    On a DataFrame this is ``[run_check(c, data, context) for c in checks]``.
    On a stream, every check that reads streams shares one read of the source;
    a check that does not (a plain callable, a GX suite) gets an ``error``
    result saying so. ``spill_dir`` is where key records go once they pass
    32 MB per check (default: the system's temporary directory).
    """
    from checks.base import CheckContext, _stamp, run_check

    ctx = context if context is not None else CheckContext()
    if isinstance(data, pd.DataFrame):
        return [r for c in checks for r in run_check(c, data, ctx)]
    try:
        source = as_source(data, batch_rows=batch_rows)
        prototype = source.prototype()
    except CheckInputError as exc:
        return _stamp([r for c in checks for r in _error(c, str(exc))], ctx.dataset)
    planned: list[tuple[Any, Plan]] = []
    slots: list[list[CheckResult] | int] = []
    for c in checks:
        p = plan_for(c, ctx, prototype)
        if isinstance(p, Plan):
            slots.append(len(planned))
            planned.append((c, p))
        else:
            slots.append(p)
    try:
        done = run_plans(planned, source, spill_dir=spill_dir) if planned else {}
    except CheckInputError as exc:
        done = {i: _error(c, str(exc), exc.column) for i, (c, _) in enumerate(planned)}
    except Exception as exc:  # a check never raises into the pipeline
        done = {i: _error(c, f"{type(exc).__name__}: {exc}") for i, (c, _) in enumerate(planned)}
    results = [r for s in slots for r in (done[s] if isinstance(s, int) else s)]
    return _stamp(results, ctx.dataset)
