"""Checks over a Dask DataFrame: partial states per partition on the workers, merged on the client.

Each partition becomes one task that computes every plan's partial state
and, for keyed plans, the key records split by hash prefix. Partial states
are merged in a tree of tasks, so the client receives one small state per
check. Key records never travel to the client: prefix ``p`` of every
partition is reduced to a summary on a worker, and the client adds the
summaries up. (Checks whose reduction needs the client, such as
``unique_across_runs`` with its store, or a loss check comparing with
another table, receive the records of one prefix at a time.)

A row's position is ``partition << 40 | row`` while the partitions run, and
becomes the row's number in the whole frame once their lengths are known.

Dask is imported only here, and only when a Dask DataFrame is checked.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from checks.keyset import (
    PREFIXES,
    RECORD,
    SIDE_SHIFT,
    DupSummary,
    KeySpill,
    MissingSummary,
    partition,
    positions,
    sides,
)
from checks.result import CheckResult
from checks.source import DaskSource, as_source
from checks.stream import Plan, Reader, _finish, _local_pass, _sub, _wanted

__all__ = ["dask_states", "input_state", "run_dask"]

#: Key partitions on Dask: few and large, so the number of tasks stays small (each holds 1/8 of the records).
PARTS = 8
_SHIFT = 40
_MASK = (1 << _SHIFT) - 1


def _partial(plans: Sequence[Plan], columns: Sequence[list[str] | None], part: pd.DataFrame, index: int) -> tuple:
    """One partition: (rows, small states, then each keyed plan's records, prefix by prefix)."""
    part = part.reset_index(drop=True)
    offset = index << _SHIFT
    states = []
    keys: list[np.ndarray] = []
    for plan, cols in zip(plans, columns, strict=True):
        sub = _sub(part, cols)
        states.append(plan.partial(sub, offset, 0))
        if plan.keyed:
            recs = plan.codes(sub, offset, 0)
            keys += partition(recs if recs is not None else np.empty(0, dtype=RECORD), PARTS)
    return ({index: len(part)}, states, *keys)


def _merge(plans: Sequence[Plan], a: tuple, b: tuple) -> tuple:
    return {**a[0], **b[0]}, [p.merge(x, y) for p, x, y in zip(plans, a[1], b[1], strict=True)]


def _small(out: tuple) -> tuple:
    return out[0], out[1]


def _concat(*parts: np.ndarray) -> np.ndarray:
    parts = tuple(p for p in parts if len(p))
    if not parts:
        return np.empty(0, dtype=RECORD)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _reduce(plan: Plan, *parts: np.ndarray) -> Any:
    return plan.reduce(_concat(*parts))


def _tree(plans: Sequence[Plan], items: list[Any]) -> Any:
    import dask

    while len(items) > 1:
        nxt = [dask.delayed(_merge)(plans, items[i], items[i + 1]) for i in range(0, len(items) - 1, 2)]
        if len(items) % 2:
            nxt.append(items[-1])
        items = nxt
    return items[0]


def _graph(plans: Sequence[Plan], source: DaskSource) -> tuple[Any, list[list[Any]]]:
    """The merged small state (delayed) and, per keyed plan and prefix, the delayed records of each partition."""
    import dask

    frame = source.frame
    columns = [p.columns for p in plans]
    wanted = _wanted(columns, source.prototype())
    if wanted is not None:
        frame = frame[wanted]
    keyed = sum(p.keyed for p in plans)
    outs = [
        dask.delayed(_partial, nout=2 + keyed * PARTS)(plans, columns, part, i)
        for i, part in enumerate(frame.to_delayed())
    ]
    small = _tree(plans, [dask.delayed(_small)(o) for o in outs]) if outs else None
    keys: list[list[Any]] = []
    for k in range(keyed):
        keys.append([[o[2 + k * PARTS + p] for o in outs] for p in range(PARTS)])
    return small, keys


def _offsets(lengths: dict[int, int]) -> np.ndarray:
    n = max(lengths) + 1 if lengths else 0
    sizes = np.array([lengths.get(i, 0) for i in range(n)], dtype=np.int64)
    return np.concatenate([[0], np.cumsum(sizes)])


def _global(pos: int, offsets: np.ndarray) -> int:
    return int(offsets[pos >> _SHIFT] + (pos & _MASK))


def _relocate_records(recs: np.ndarray, offsets: np.ndarray) -> None:
    """Make the records' positions positions in the whole frame, in place, keeping their side."""
    pos = positions(recs)
    recs["pos"] = offsets[pos >> _SHIFT] + (pos & _MASK) + (sides(recs) << SIDE_SHIFT)


def _relocate(summary: Any, offsets: np.ndarray) -> Any:
    """A summary with its positions made positions in the whole frame."""
    if isinstance(summary, DupSummary):
        summary.firsts = [(_global(p, offsets), a, b) for p, a, b in summary.firsts]
        summary.involved_positions = [_global(p, offsets) for p in summary.involved_positions]
    elif isinstance(summary, MissingSummary):
        summary.firsts = [(_global(p, offsets), a, b) for p, a, b in summary.firsts]
    return summary


def dask_states(plans: Sequence[Plan], source: DaskSource) -> list[Any]:
    """The merged state of each plan that is not keyed, computed on the workers."""
    import dask

    small, _ = _graph(plans, source)
    if small is None:
        return [p.partial(_sub(source.prototype(), p.columns), 0, 0) for p in plans]
    (_, states) = dask.compute(small)[0]
    return list(states)


def input_state(plan: Plan, source: DaskSource, side: int) -> tuple[Any, np.ndarray | None]:
    """A further table's state and key records for ``plan``, computed on the workers, records brought here."""
    import dask

    cols = plan.inputs[side - 1][1]
    view = _SidePlan(plan, side, cols)
    small, keys = _graph([view], source)
    if small is None:
        return plan.partial(_sub(source.prototype(), cols), 0, side), None
    if not plan.keyed:
        return dask.compute(small)[0][1][0], None
    (lengths, states), parts = dask.compute(small, [dask.delayed(_concat)(*k) for k in keys[0]])
    offsets = _offsets(lengths)
    recs = _concat(*parts)
    _relocate_records(recs, offsets)
    return states[0], recs


class _SidePlan(Plan):
    """A plan seen from a further table: its ``side`` partials and codes."""

    def __init__(self, plan: Plan, side: int, columns: list[str] | None) -> None:
        self.plan, self.side, self.columns, self.keyed = plan, side, columns, plan.keyed

    def partial(self, batch: pd.DataFrame, offset: int, side: int = 0) -> Any:
        return self.plan.partial(batch, offset, self.side)

    def merge(self, a: Any, b: Any) -> Any:
        return self.plan.merge(a, b)

    def codes(self, batch: pd.DataFrame, offset: int, side: int = 0) -> np.ndarray | None:
        return self.plan.codes(batch, offset, self.side)


def run_dask(plans: list[tuple[Any, Plan]], source: DaskSource) -> dict[int, list[CheckResult]]:
    """Run ``(check, plan)`` pairs over a Dask DataFrame; results by the pair's index."""
    import dask

    only = [p for _, p in plans]
    small, keys = _graph(only, source)
    keyed = [i for i, p in enumerate(only) if p.keyed]
    remote = [i for i in keyed if not (only[i].reduce_here or only[i].inputs)]
    summaries = {i: [dask.delayed(_reduce)(only[i], *keys[keyed.index(i)][p]) for p in range(PARTS)] for i in remote}
    here = {
        i: [dask.delayed(_concat)(*keys[keyed.index(i)][p]) for p in range(PARTS)] for i in keyed if i not in remote
    }
    lengths: dict[int, int] = {}
    computed: dict[int, list[Any]] = {}
    records: dict[int, list[np.ndarray]] = {}
    if small is None:
        states = [p.partial(_sub(source.prototype(), p.columns), 0, 0) for p in only]
    else:
        (lengths, states), computed, records = dask.compute(small, summaries, here)
    offsets = _offsets(lengths)
    out: dict[int, list[CheckResult]] = {}
    reader = Reader(source)
    for i, (check, plan) in enumerate(plans):
        side_states = [states[i]]
        summary = None
        if i in remote:
            summary = functools.reduce(plan.combine, [_relocate(s, offsets) for s in computed[i]])
        elif plan.keyed:
            summary, extra = _reduce_here(plan, records.get(i, []), offsets)
            side_states += extra
        for side, (src, _cols) in enumerate(plan.inputs, start=1):
            if not plan.keyed:
                side_states.append(_side_state(plan, src, side, None))
        out[i] = _finish(check, plan, side_states, summary, reader)
    return out


def _side_state(plan: Plan, src: Any, side: int, spill: KeySpill | None) -> Any:
    src = as_source(src)
    if isinstance(src, DaskSource):
        st, recs = input_state(plan, src, side)
        if spill is not None and recs is not None:
            spill.add(recs)
        return st
    spills = {0: spill} if spill is not None else {}
    return _local_pass(src, [(0, plan)], side, spills)[0]


def _reduce_here(plan: Plan, records: list[np.ndarray], offsets: np.ndarray) -> tuple[Any, list[Any]]:
    """Reduce the records brought here, with a further table's, in this process (one prefix at a time)."""
    spill = KeySpill()
    try:
        for recs in records:
            _relocate_records(recs, offsets)
            spill.add(recs)
        extra = [_side_state(plan, src, side, spill) for side, (src, _c) in enumerate(plan.inputs, start=1)]
        summary = functools.reduce(plan.combine, (plan.reduce(spill.part(p)) for p in range(PREFIXES)))
        return summary, extra
    finally:
        spill.close()
