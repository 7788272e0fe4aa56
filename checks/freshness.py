"""How old the newest row is."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from checks.base import Check, CheckContext
from checks.errors import CheckInputError
from checks.frame import column_kind, require_column, require_frame
from checks.result import CheckResult, Kind, Status
from checks.stream import Plan, Reader

__all__ = ["Freshness", "freshness", "parse_duration"]


def parse_duration(value: dt.timedelta | float | int | str) -> dt.timedelta:
    """A timedelta, a number of seconds, or a pandas duration string ("2h", "30min", "1 day")."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"a duration is a timedelta, seconds or a string like '2h' — got {value!r}")
    if isinstance(value, int | float):
        return dt.timedelta(seconds=float(value))
    if isinstance(value, str):
        try:
            td = pd.Timedelta(value)
        except ValueError as exc:
            raise ValueError(f"cannot read {value!r} as a duration; write e.g. '2h', '30min', '1 day'") from exc
        if td is pd.NaT:
            raise ValueError(f"cannot read {value!r} as a duration")
        return td.to_pytimedelta()
    raise ValueError(f"a duration is a timedelta, seconds or a string like '2h' — got {type(value).__name__}")


def _utc(t: Any) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def newest_timestamp(s: pd.Series) -> pd.Timestamp | None:
    """The newest non-null timestamp as UTC (naive values are taken as UTC), or None."""
    newest, values, kinds = _newest(s)
    if values and newest is None:
        raise _no_timestamps(s, kinds)
    return newest


def _no_timestamps(s: pd.Series, kinds: list[str]) -> CheckInputError:
    return CheckInputError(
        f"column {s.name!r} ({s.dtype}) holds no timestamps (found {', '.join(kinds)})", column=str(s.name)
    )


def _newest(s: pd.Series) -> tuple[pd.Timestamp | None, int, list[str]]:
    """The newest timestamp (None: none), the non-null values of a text column, and their kinds.

    Text with no timestamp at all is an error only when the whole column has
    none, so a stream decides that after its last batch.
    """
    kind = column_kind(s.dtype)
    if kind == "datetime" and not pd.api.types.is_timedelta64_dtype(s.dtype):
        newest = s.max()
    elif (
        kind == "categorical"
        and not isinstance(s.dtype, pd.CategoricalDtype)
        and not pd.api.types.is_bool_dtype(s.dtype)
    ):
        values = s.dropna()
        if values.empty:
            return None, 0, []
        parsed = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
        if parsed.isna().all():
            return None, len(values), sorted({type(v).__name__ for v in values.head(100)})
        newest = parsed.max()
    else:
        hint = "; convert epoch numbers with pd.to_datetime(..., unit='s')" if kind == "numeric" else ""
        raise CheckInputError(f"column {s.name!r} has dtype {s.dtype}, not timestamps{hint}", column=str(s.name))
    if newest is None or newest is pd.NaT or (isinstance(newest, float) and np.isnan(newest)):
        return None, 0, []
    return _utc(newest), 0, []


class Freshness(Check):
    """The newest timestamp in ``column`` at most ``max_age`` old, measured at ``context.now``.

    Naive timestamps are taken as UTC; tz-aware ones are converted to UTC.

    >>> import datetime as dt, pandas as pd
    >>> from checks.base import CheckContext
    >>> now = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    >>> df = pd.DataFrame({"t": pd.to_datetime(["2024-01-01 23:00"])})
    >>> freshness("t", max_age="2h")(df, CheckContext(now=now))[0].observed
    3600.0
    """

    kind = Kind.FRESHNESS

    def __init__(
        self,
        column: str,
        max_age: dt.timedelta | float | str,
        *,
        name: str | None = None,
        severity: str = "fail",
        on_error: str = "fail",
    ) -> None:
        super().__init__(name=name or f"freshness({column})", severity=severity, on_error=on_error)
        self.column = column
        self.max_age = parse_duration(max_age)
        if self.max_age.total_seconds() < 0:
            raise ValueError(f"freshness max_age must not be negative — got {max_age!r}")

    def evaluate(self, df: Any, context: CheckContext) -> CheckResult:
        s = require_column(require_frame(df), self.column)
        return self._judge(newest_timestamp(s), len(s), s.dtype, context)

    def plan(self, context: CheckContext, prototype: pd.DataFrame) -> Plan:
        return _NewestPlan(self, require_column(prototype, self.column), context)

    def _judge(self, newest: pd.Timestamp | None, rows: int, dtype: Any, context: CheckContext) -> CheckResult:
        limit = self.max_age.total_seconds()
        if newest is None:
            return self.result(
                Status.FAIL,
                threshold=limit,
                column=self.column,
                measure="freshness_lag_seconds",
                message=f"{self.name}: column {self.column!r} has no timestamps ({rows} rows, all null)",
                details={"rows": rows, "newest": None},
            )
        now = pd.Timestamp(context.now)  # UTC already: CheckContext normalises it
        lag = (now - newest).total_seconds()
        status = Status.FAIL if lag > limit else Status.PASS
        note = " (newest timestamp is in the future)" if lag < 0 else ""
        return self.result(
            status,
            observed=lag,
            threshold=limit,
            column=self.column,
            measure="freshness_lag_seconds",
            message=f"{self.name}: newest {newest.isoformat()} is {lag:.0f}s old, limit {limit:.0f}s{note}",
            details={
                "newest": newest.isoformat(),
                "now": now.isoformat(),
                "naive_as_utc": getattr(dtype, "tz", None) is None,
            },
        )


class _NewestPlan(Plan):
    """The newest timestamp of each batch; the newest of them all."""

    def __init__(self, check: Freshness, proto: pd.Series, context: CheckContext) -> None:
        _newest(proto)  # a column of numbers is an error before anything is read
        self.check, self.proto, self.context = check, proto, context
        self.column = check.column
        self.columns = [check.column]

    def partial(self, batch: pd.DataFrame, offset: int, side: int = 0) -> Any:
        newest, values, kinds = _newest(batch[self.column])
        return len(batch), newest, values, kinds

    def merge(self, a: Any, b: Any) -> Any:
        newest = a[1] if b[1] is None else b[1] if a[1] is None else max(a[1], b[1])
        return a[0] + b[0], newest, a[2] + b[2], sorted(set(a[3]) | set(b[3]))

    def finish(self, states: list[Any], summary: Any, reader: Reader) -> list[CheckResult]:
        rows, newest, values, kinds = states[0]
        if values and newest is None:
            raise _no_timestamps(self.proto, kinds)
        return [self.check._judge(newest, rows, self.proto.dtype, self.context)]


def freshness(column: str, max_age: dt.timedelta | float | str, **kwargs: Any) -> Freshness:
    """Age of the newest timestamp (see :class:`Freshness`)."""
    return Freshness(column, max_age, **kwargs)
