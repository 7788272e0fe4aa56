"""Null fractions per column."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from checks.base import Check, CheckContext
from checks.errors import CheckInputError
from checks.frame import as_columns, null_count, require_column, require_frame
from checks.result import CheckResult, Kind, Status
from checks.stream import Plan, Reader

__all__ = ["NotNull", "completeness", "not_null"]


class NotNull(Check):
    """The share of nulls in each column at most ``max_fraction``; one result per column.

    NaN, None, NaT and pandas.NA are nulls; infinities are not. ``columns=None``
    means every column.

    >>> import pandas as pd
    >>> [r.observed for r in not_null(["a", "b"])(pd.DataFrame({"a": [1, None], "b": [1, 2]}))]
    [0.5, 0.0]
    """

    kind = Kind.COMPLETENESS

    def __init__(
        self,
        columns: str | Sequence[str] | None = None,
        *,
        max_fraction: float = 0.0,
        name: str | None = None,
        severity: str = "fail",
        on_error: str = "fail",
    ) -> None:
        self.columns = as_columns(columns)
        label = ",".join(self.columns) if self.columns else "*"
        super().__init__(name=name or f"not_null({label})", severity=severity, on_error=on_error)
        if not 0.0 <= float(max_fraction) <= 1.0:
            raise ValueError(f"not_null max_fraction is between 0 and 1 — got {max_fraction}")
        self.max_fraction = float(max_fraction)

    def evaluate(self, df: Any, context: CheckContext) -> Iterator[CheckResult]:
        frame = require_frame(df)
        n = len(frame)
        for col in self.columns or [str(c) for c in frame.columns]:
            try:
                s = require_column(frame, col)
            except CheckInputError as exc:
                yield self._missing(col, exc)
                continue
            yield self._judge(col, null_count(s), n)

    def plan(self, context: CheckContext, prototype: pd.DataFrame) -> Plan:
        return _NullsPlan(self, prototype)

    def _missing(self, col: str, exc: CheckInputError) -> CheckResult:
        return self.result(Status.ERROR, column=col, measure="null_fraction", message=f"{self.name}: {exc}")

    def _judge(self, col: str, nulls: int, n: int) -> CheckResult:
        frac = nulls / n if n else 0.0
        status = Status.FAIL if frac > self.max_fraction else Status.PASS
        return self.result(
            status,
            observed=frac,
            threshold=self.max_fraction,
            column=col,
            measure="null_fraction",
            message=f"{self.name}: {col} has {nulls} nulls in {n} rows ({frac:.2%})",
            details={"nulls": nulls, "rows": n},
        )


class _NullsPlan(Plan):
    """Null counts per column, added over the batches."""

    def __init__(self, check: NotNull, prototype: pd.DataFrame) -> None:
        self.check = check
        self.order = check.columns or [str(c) for c in prototype.columns]
        self.problems: dict[str, CheckInputError] = {}
        for col in self.order:
            try:
                require_column(prototype, col)
            except CheckInputError as exc:
                self.problems[col] = exc
        self.present = [c for c in self.order if c not in self.problems]
        self.columns = self.present

    def partial(self, batch: pd.DataFrame, offset: int, side: int = 0) -> Any:
        return len(batch), np.array([null_count(batch[c]) for c in self.present], dtype=np.int64)

    def merge(self, a: Any, b: Any) -> Any:
        return a[0] + b[0], a[1] + b[1]

    def finish(self, states: list[Any], summary: Any, reader: Reader) -> list[CheckResult]:
        n, nulls = states[0]
        found = dict(zip(self.present, nulls.tolist(), strict=True))
        return [
            self.check._missing(c, self.problems[c]) if c in self.problems else self.check._judge(c, found[c], n)
            for c in self.order
        ]


def not_null(columns: str | Sequence[str] | None = None, **kwargs: Any) -> NotNull:
    """Null fraction per column (see :class:`NotNull`)."""
    return NotNull(columns, **kwargs)


completeness = not_null
