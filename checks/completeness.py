"""Null fractions per column."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from checks.base import Check, CheckContext
from checks.errors import CheckInputError
from checks.frame import as_columns, null_count, require_column, require_frame
from checks.result import CheckResult, Kind, Status

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
                yield self.result(
                    Status.ERROR, column=col, measure="null_fraction", message=f"{self.name}: {exc}"
                )
                continue
            nulls = null_count(s)
            frac = nulls / n if n else 0.0
            status = Status.FAIL if frac > self.max_fraction else Status.PASS
            yield self.result(
                status,
                observed=frac,
                threshold=self.max_fraction,
                column=col,
                measure="null_fraction",
                message=f"{self.name}: {col} has {nulls} nulls in {n} rows ({frac:.2%})",
                details={"nulls": nulls, "rows": n},
            )


def not_null(columns: str | Sequence[str] | None = None, **kwargs: Any) -> NotNull:
    """Null fraction per column (see :class:`NotNull`)."""
    return NotNull(columns, **kwargs)


completeness = not_null
