"""Rows lost: row counts, loss across a step, and key reconciliation with a source."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from checks.base import Check, CheckContext
from checks.errors import CheckInputError
from checks.frame import as_columns, numeric_values, require_columns, require_frame
from checks.keys import example_keys, shared_key_codes
from checks.keyset import KeyCoder, MissingSummary, missing_summary, records
from checks.result import CheckResult, Kind, Status
from checks.source import FramesSource, TableSource, as_source, is_table_source
from checks.stream import Plan, Reader, RowsPlan, example_values, run_checks

__all__ = ["Loss", "Reconcile", "RowCount", "loss", "reconcile", "row_count"]


class RowCount(Check):
    """The frame's row count within ``[min, max]``.

    >>> import pandas as pd
    >>> row_count(min=1)(pd.DataFrame({"a": []}))[0].status
    <Status.FAIL: 'fail'>
    """

    kind = Kind.VOLUME

    def __init__(
        self,
        *,
        min: int | None = None,
        max: int | None = None,
        name: str | None = None,
        severity: str = "fail",
        on_error: str = "fail",
    ) -> None:
        super().__init__(name=name or "row_count", severity=severity, on_error=on_error)
        if min is not None and max is not None and min > max:
            raise ValueError(f"row_count min {min} is above max {max}")
        self.min, self.max = min, max

    def evaluate(self, df: Any, context: CheckContext) -> CheckResult:
        return self._judge(len(require_frame(df)))

    def plan(self, context: CheckContext, prototype: pd.DataFrame) -> Plan:
        return RowsPlan(lambda rows: [self._judge(rows)])

    def _judge(self, n: int) -> CheckResult:
        low = self.min is not None and n < self.min
        high = self.max is not None and n > self.max
        bound = self.min if low else self.max if high else (self.min if self.min is not None else self.max)
        msg = (
            f"{self.name}: {n} rows, below the minimum {self.min}"
            if low
            else f"{self.name}: {n} rows, above the maximum {self.max}"
            if high
            else f"{self.name}: {n} rows"
        )
        return self.result(
            Status.FAIL if low or high else Status.PASS,
            observed=float(n),
            threshold=None if bound is None else float(bound),
            measure="row_count",
            message=msg,
            details={"rows": n, "min": self.min, "max": self.max},
        )


def _input_frame(context: CheckContext, which: Any) -> Any:
    """The ``which``-th table among the call's inputs (a DataFrame or a table read in batches), or ``which`` itself."""
    if not isinstance(which, int):
        return which
    frames = [f for f in context.inputs if isinstance(f, pd.DataFrame) or is_table_source(f)]
    if not frames:
        raise CheckInputError(
            "needs the call's input frames (context.inputs) and none was given; "
            "it runs under @monitor, or pass CheckContext(inputs=[df_in])"
        )
    if not -len(frames) <= which < len(frames):
        raise CheckInputError(f"input={which} but the call had {len(frames)} table input(s)")
    return frames[which]


class _KeysPlan(Plan):
    """Rows of a source (side 1) whose key is missing from the checked table (side 0), and row counts.

    Without a key only the row counts of both tables are read.
    """

    def __init__(
        self,
        source: TableSource,
        key: list[str] | None,
        prototype: pd.DataFrame,
        what: str,
        extra: Sequence[str] = (),
    ) -> None:
        self.source = source
        self.source_proto = source.prototype()
        self.prototype = prototype
        self.key = key
        self.keyed = bool(key)
        self.columns = [*(key or []), *extra]
        self.inputs = [(source, [*(key or []), *extra])]
        self.coder: KeyCoder | None = None
        if key:
            try:
                require_columns(self.source_proto, key)
            except CheckInputError as exc:
                raise CheckInputError(f"{what}: {exc}", column=exc.column) from exc
            require_columns(prototype, key)
            self.coder = KeyCoder.for_tables(key, self.source_proto, prototype)

    def codes(self, batch: pd.DataFrame, offset: int, side: int = 0) -> np.ndarray | None:
        assert self.coder is not None
        a, b = self.coder.codes(batch)
        return records(a, b, offset, side)

    def reduce(self, recs: np.ndarray) -> MissingSummary:
        return missing_summary(recs)

    def lost(self, summary: MissingSummary | None) -> MissingSummary:
        return summary if summary is not None else MissingSummary()

    def examples(self, summary: MissingSummary) -> list[Any]:
        assert self.coder is not None
        return example_values(self.coder, summary.firsts, Reader(self.source), self.source_proto)


class Loss(Check):
    """Rows lost across the monitored step, counted apart from rows gained.

    ``max_loss`` is a fraction of the input rows, ``max_rows`` an absolute
    count; give either or both (both must hold). ``input`` picks which
    table argument of the call is the input (the first by default), or is the
    input itself: a DataFrame or a table read in batches, such as the parquet
    dataset a step reads (see :mod:`checks.source`).

    With ``key`` (one column or several), a row is lost when its key is absent
    from the output, and every other output row beyond the matched input rows
    is gained, so a fan-out join that multiplies some rows cannot hide others
    that were dropped. Without ``key`` only row counts are known: the loss is
    input minus output rows, and when the output has more rows than the input
    the result says that a loss behind them cannot be seen.

    >>> import pandas as pd
    >>> from checks.base import CheckContext
    >>> ctx = CheckContext(inputs=[pd.DataFrame({"a": range(100)})])
    >>> loss(max_loss=0.01)(pd.DataFrame({"a": range(98)}), ctx)[0].observed
    2.0
    >>> fan_out = pd.DataFrame({"a": [*range(50), *range(50), *range(50)]})  # rows 50..99 dropped
    >>> r = loss(key="a")(fan_out, ctx)[0]
    >>> r.observed, r.details["rows_gained"], r.details["rows_out"]
    (50.0, 100, 150)
    """

    kind = Kind.LOSS

    def __init__(
        self,
        max_loss: float | None = 0.0,
        *,
        max_rows: int | None = None,
        key: str | Sequence[str] | None = None,
        input: Any = 0,
        name: str | None = None,
        severity: str = "fail",
        on_error: str = "fail",
    ) -> None:
        super().__init__(name=name or "loss", severity=severity, on_error=on_error)
        if max_loss is not None and not 0.0 <= float(max_loss) <= 1.0:
            raise ValueError(
                f"loss max_loss is a fraction between 0 and 1 — got {max_loss}; use max_rows= for an absolute count"
            )
        if max_rows is not None and int(max_rows) < 0:
            raise ValueError(f"loss max_rows must be >= 0 — got {max_rows}")
        self.max_loss = None if max_loss is None else float(max_loss)
        self.max_rows = None if max_rows is None else int(max_rows)
        self.key = as_columns(key)
        if isinstance(input, bool) or not (
            isinstance(input, int | pd.DataFrame) or is_table_source(input) or isinstance(input, str)
        ):
            raise TypeError(
                "loss input must be the index of a table input of the call, a DataFrame or a table read in "
                f"batches (a parquet path, a pyarrow Table or dataset, a Dask DataFrame) — got {type(input).__name__}"
            )
        self.input = input

    def plan(self, context: CheckContext, prototype: pd.DataFrame) -> Plan:
        return _LossPlan(self, as_source(_input_frame(context, self.input)), prototype)

    def evaluate(self, df: Any, context: CheckContext) -> Any:
        out = require_frame(df)
        inp = _input_frame(context, self.input)
        if not isinstance(inp, pd.DataFrame):
            return run_checks([self], FramesSource([out]), context)
        rows_out, rows_in = len(out), len(inp)
        if self.key:
            try:
                require_columns(inp, self.key)
            except CheckInputError as exc:
                raise CheckInputError(f"input: {exc}", column=exc.column) from exc
            require_columns(out, self.key)
            src, tgt, width = shared_key_codes(inp, out, self.key)
            present = np.zeros(width, dtype=bool)
            present[tgt] = True
            lost = int(np.count_nonzero(~present[src]))
        else:
            lost = max(rows_in - rows_out, 0)
        return self._judge(rows_in, rows_out, lost)

    def _judge(self, rows_in: int, rows_out: int, lost: int) -> CheckResult:
        gained = rows_out - (rows_in - lost) if self.key else max(rows_out - rows_in, 0)
        fraction = lost / rows_in if rows_in else 0.0
        allowed = math.inf
        if self.max_loss is not None:
            allowed = min(allowed, math.floor(self.max_loss * rows_in + 1e-9))
        if self.max_rows is not None:
            allowed = min(allowed, self.max_rows)
        status = Status.FAIL if lost > allowed else Status.PASS
        message = f"{self.name}: {lost} of {rows_in} rows lost ({fraction:.2%}), {gained} gained"
        if not self.key and gained:
            message += (
                "; the output has more rows than the input, so rows lost behind them cannot be "
                "seen: pass key= to count lost rows apart from gained ones"
            )
        return self.result(
            status,
            observed=float(lost),
            threshold=None if math.isinf(allowed) else float(allowed),
            measure="rows_lost",
            message=message,
            details={
                "rows_in": rows_in,
                "rows_out": rows_out,
                "rows_lost": lost,
                "rows_gained": gained,
                "fraction": fraction,
                "key": self.key,
                "max_loss": self.max_loss,
                "max_rows": self.max_rows,
            },
        )


class Reconcile(Check):
    """Keys of a source missing from the frame, and optionally the sum of a column on both sides.

    ``source`` is a DataFrame, or an integer picking one of the call's input
    frames. One result for the keys (measure ``rows_lost``: source rows whose
    key is absent), one more for ``sum_column`` (relative difference of sums).

    >>> import pandas as pd
    >>> src = pd.DataFrame({"id": [1, 2, 3, 4], "v": [1.0, 2.0, 3.0, 4.0]})
    >>> r = reconcile(src, key="id", sum_column="v")(src[src.id != 3])
    >>> r[0].observed, r[0].details["examples"], r[1].observed
    (1.0, [3], 0.3)
    """

    kind = Kind.LOSS

    def __init__(
        self,
        source: pd.DataFrame | int = 0,
        *,
        key: str | Sequence[str],
        sum_column: str | None = None,
        max_missing: float = 0.0,
        sum_tolerance: float = 1e-9,
        name: str | None = None,
        severity: str = "fail",
        on_error: str = "fail",
    ) -> None:
        keys = as_columns(key)
        if not keys:
            raise ValueError("reconcile needs key=")
        self.key = keys
        super().__init__(name=name or f"reconcile({','.join(keys)})", severity=severity, on_error=on_error)
        if not isinstance(source, pd.DataFrame | int):
            raise TypeError(f"reconcile source must be a DataFrame or an input index — got {type(source).__name__}")
        self.source = source
        self.sum_column = sum_column
        self.max_missing = float(max_missing)  # < 1: fraction of source rows; >= 1: row count
        self.sum_tolerance = float(sum_tolerance)

    def plan(self, context: CheckContext, prototype: pd.DataFrame) -> Plan:
        source = self.source if isinstance(self.source, pd.DataFrame) else _input_frame(context, self.source)
        return _ReconcilePlan(self, as_source(source), prototype)

    def evaluate(self, df: Any, context: CheckContext) -> Any:
        target = require_frame(df)
        source = self.source if isinstance(self.source, pd.DataFrame) else _input_frame(context, self.source)
        if not isinstance(source, pd.DataFrame):
            return run_checks([self], FramesSource([target]), context)
        try:
            require_columns(source, self.key)
        except CheckInputError as exc:
            raise CheckInputError(f"source: {exc}", column=exc.column) from exc
        require_columns(target, self.key)
        src, tgt, width = shared_key_codes(source, target, self.key)
        present = np.zeros(width, dtype=bool)
        present[tgt] = True
        missing_mask = ~present[src]
        positions = np.flatnonzero(missing_mask)
        missing_rows = len(positions)
        missing = np.zeros(width, dtype=bool)
        missing[src[positions]] = True
        missing_keys = int(np.count_nonzero(missing))
        examples = example_keys(source, self.key, positions)
        out = [self._judge(len(source), len(target), missing_rows, missing_keys, examples)]
        if self.sum_column:
            out.append(self._sums(source, target))
        return out

    def _judge(
        self, n_src: int, n_target: int, missing_rows: int, missing_keys: int, examples: list[Any]
    ) -> CheckResult:
        fraction = missing_rows / n_src if n_src else 0.0
        allowed = self.max_missing * n_src if self.max_missing < 1 else self.max_missing
        return self.result(
            Status.FAIL if missing_rows > allowed else Status.PASS,
            observed=float(missing_rows),
            threshold=float(allowed),
            column=self.key[0] if len(self.key) == 1 else None,
            measure="rows_lost",
            message=f"{self.name}: {missing_rows} of {n_src} source rows ({missing_keys} keys) "
            f"missing "
            f"from the output" + (f"; e.g. {examples[:3]}" if examples else ""),
            details={
                "source_rows": n_src,
                "target_rows": n_target,
                "missing_rows": missing_rows,
                "missing_keys": missing_keys,
                "fraction": fraction,
                "examples": examples,
            },
        )

    def _sum_problem(self, source: pd.DataFrame, target: pd.DataFrame) -> CheckResult | None:
        col = self.sum_column
        for side, frame in (("source", source), ("output", target)):
            if col not in frame.columns:
                return self.result(
                    Status.ERROR,
                    column=col,
                    message=f"{self.name}: {side} has no column "
                    f"{col!r}; columns are: {', '.join(map(str, frame.columns))}",
                )
        return None

    def _sums(self, source: pd.DataFrame, target: pd.DataFrame) -> CheckResult:
        col = self.sum_column
        assert col is not None
        problem = self._sum_problem(source, target)
        if problem is not None:
            return problem
        try:
            with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: a NaN sum, as is
                a = float(np.nansum(numeric_values(source[col])))
                b = float(np.nansum(numeric_values(target[col])))
        except CheckInputError as exc:
            return self.result(Status.ERROR, column=col, message=f"{self.name}: {exc}")
        return self._judge_sums(a, b)

    def _judge_sums(self, a: float, b: float) -> CheckResult:
        col = self.sum_column
        diff = abs(a - b)
        rel = diff / abs(a) if a else (0.0 if diff == 0 else math.inf)
        ok = rel <= self.sum_tolerance or not math.isfinite(a)
        return self.result(
            Status.PASS if ok else Status.FAIL,
            observed=rel,
            threshold=self.sum_tolerance,
            column=col,
            measure="sum_difference",
            message=f"{self.name}: sum of {col} {b:.6g} in the output vs {a:.6g} in the source",
            details={"source_sum": a, "target_sum": b, "difference": b - a, "relative": rel},
        )


class _LossPlan(_KeysPlan):
    def __init__(self, check: Loss, source: TableSource, prototype: pd.DataFrame) -> None:
        super().__init__(source, check.key, prototype, "input")
        self.check = check

    def finish(self, states: list[Any], summary: Any, reader: Reader) -> list[CheckResult]:
        rows_out, rows_in = int(states[0]), int(states[1])
        lost = self.lost(summary).rows if self.key else max(rows_in - rows_out, 0)
        return [self.check._judge(rows_in, rows_out, lost)]


class _ReconcilePlan(_KeysPlan):
    """Reconcile on a stream: missing keys as for loss, and the sums of ``sum_column`` on both sides."""

    def __init__(self, check: Reconcile, source: TableSource, prototype: pd.DataFrame) -> None:
        self.sum_problem: CheckResult | None = None
        col = check.sum_column
        extra: list[str] = []
        if col:
            self.sum_problem = check._sum_problem(source.prototype(), prototype)
            extra = [col] if self.sum_problem is None and col not in check.key else []
        super().__init__(source, check.key, prototype, "source", extra)
        self.check = check
        self.sum_col = col if col and self.sum_problem is None else None

    def partial(self, batch: pd.DataFrame, offset: int, side: int = 0) -> Any:
        total = 0.0
        if self.sum_col:
            with np.errstate(invalid="ignore", over="ignore"):
                total = float(np.nansum(numeric_values(batch[self.sum_col])))
        return (len(batch), total)

    def merge(self, a: Any, b: Any) -> Any:
        with np.errstate(invalid="ignore", over="ignore"):
            return (a[0] + b[0], a[1] + b[1])

    def finish(self, states: list[Any], summary: Any, reader: Reader) -> list[CheckResult]:
        (n_target, target_sum), (n_src, source_sum) = states
        lost = self.lost(summary)
        out = [self.check._judge(n_src, n_target, lost.rows, lost.keys, self.examples(lost))]
        if self.check.sum_column:
            out.append(self.sum_problem or self.check._judge_sums(source_sum, target_sum))
        return out


def row_count(*, min: int | None = None, max: int | None = None, **kwargs: Any) -> RowCount:
    """Row count within bounds (see :class:`RowCount`)."""
    return RowCount(min=min, max=max, **kwargs)


def loss(max_loss: float | None = 0.0, **kwargs: Any) -> Loss:
    """Rows lost across the monitored step (see :class:`Loss`)."""
    return Loss(max_loss, **kwargs)


def reconcile(source: pd.DataFrame | int = 0, *, key: str | Sequence[str], **kwargs: Any) -> Reconcile:
    """Source keys missing from the output (see :class:`Reconcile`)."""
    return Reconcile(source, key=key, **kwargs)
