"""Reading a frame's columns the way every check needs to.

Looking a column up with an error that lists what the frame has, classifying
a dtype (numeric, datetime, categorical), counting nulls with one vectorised
pass, and turning a column into a float array without copying when it already
is one. Everything here raises :class:`~checks.errors.CheckInputError`, which
the :class:`~checks.base.Check` base turns into a result of status ``error``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from checks.errors import CheckInputError

__all__ = [
    "ColumnKind",
    "as_columns",
    "column_kind",
    "null_count",
    "numeric_values",
    "require_frame",
    "require_column",
    "text_timestamps",
]

ColumnKind = Literal["numeric", "datetime", "categorical", "other"]

_MAX_LISTED = 20


def as_columns(columns: str | Sequence[str] | None) -> list[str] | None:
    """A column argument as a list: one name, several names, or None (meaning all)."""
    if columns is None:
        return None
    if isinstance(columns, str):
        return [columns]
    return [str(c) for c in columns]


def require_frame(df: Any) -> pd.DataFrame:
    """``df`` itself when it is a DataFrame; otherwise a CheckInputError naming what it is."""
    if isinstance(df, pd.DataFrame):
        return df
    raise CheckInputError(f"expected a pandas DataFrame, got {type(df).__name__}")


def _listing(df: pd.DataFrame) -> str:
    names = [str(c) for c in df.columns]
    if not names:
        return "the frame has no columns"
    shown = ", ".join(names[:_MAX_LISTED])
    more = f" (and {len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else ""
    return f"columns are: {shown}{more}"


def require_column(df: pd.DataFrame, column: str) -> pd.Series:
    """The column as a Series, or a CheckInputError listing the frame's columns."""
    if column not in df.columns:
        raise CheckInputError(f"column {column!r} not found; {_listing(df)}", column=column)
    s = df[column]
    if isinstance(s, pd.DataFrame):  # duplicated column labels
        raise CheckInputError(
            f"column {column!r} appears {s.shape[1]} times in the frame; rename the duplicates",
            column=column,
        )
    return s


def require_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    """A CheckInputError naming every one of ``columns`` the frame lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        word = "column" if len(missing) == 1 else "columns"
        raise CheckInputError(f"{word} {names} not found; {_listing(df)}", column=missing[0])


def column_kind(dtype: Any) -> ColumnKind:
    """How drift and profiles treat a dtype: numeric, datetime, categorical or other.

    Booleans are categorical (two categories); numbers (also nullable and
    Arrow-backed) are numeric; timestamps and durations are datetime; strings,
    objects and pandas categoricals are categorical.
    """
    if isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_bool_dtype(dtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return "datetime"
    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow as pa

        t = dtype.pyarrow_dtype
        if pa.types.is_timestamp(t) or pa.types.is_duration(t) or pa.types.is_date(t):
            return "datetime"
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
            return "categorical"
        return "other"
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        return "categorical"
    return "other"


def null_count(s: pd.Series) -> int:
    """Nulls in a column in one pass; a plain integer numpy column has none by construction."""
    dtype = s.dtype
    if isinstance(dtype, np.dtype):
        if dtype.kind in "iub":
            return 0
        if dtype.kind == "f":
            return int(np.count_nonzero(np.isnan(s.to_numpy())))
        if dtype.kind in "mM":
            return int(np.count_nonzero(np.isnat(s.to_numpy())))
    if isinstance(dtype, pd.CategoricalDtype):
        return int(np.count_nonzero(s.cat.codes.to_numpy() < 0))
    return int(s.isna().sum())


def numeric_values(s: pd.Series) -> np.ndarray:
    """A numeric or datetime column as float64 with NaN for nulls; no copy if already float64.

    Datetimes become nanoseconds since the epoch (UTC for tz-aware columns);
    durations become nanoseconds.
    """
    dtype = s.dtype
    if isinstance(dtype, np.dtype) and dtype == np.float64:
        return s.to_numpy()
    kind = column_kind(dtype)
    if kind == "datetime":
        if isinstance(dtype, pd.ArrowDtype):
            s = s.astype(dtype.numpy_dtype) if hasattr(dtype, "numpy_dtype") else s
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        arr = s.to_numpy()
        if arr.dtype.kind in "mM":
            ns = arr.astype(arr.dtype.str[:3] + "[ns]", copy=False)
            out = ns.view(np.int64).astype(np.float64)
            out[np.isnat(ns)] = np.nan
            return out
        return pd.to_numeric(pd.Series(arr), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if kind != "numeric":
        raise CheckInputError(f"column {s.name!r} has dtype {dtype}, not a number or timestamp", column=str(s.name))
    return s.to_numpy(dtype=np.float64, na_value=np.nan)


_ISO = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?")
_SNIFF = 200


def text_timestamps(s: pd.Series) -> np.ndarray | None:
    """A text column whose every value is an ISO 8601 date or time, as nanoseconds (UTC); else None.

    Naive times are taken as UTC, as ``freshness`` takes them; nulls become NaN.
    The first values are sniffed before anything is parsed, and only distinct
    values are parsed, so a text column that is not timestamps costs almost
    nothing.
    """
    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return None
    if column_kind(dtype) != "categorical":
        return None
    head = s.head(4 * _SNIFF).dropna().head(_SNIFF)
    if head.empty or not all(isinstance(v, str) and _ISO.fullmatch(v.strip()) for v in head):
        return None
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    if not all(isinstance(v, str) for v in uniques):
        return None
    parsed = pd.to_datetime(pd.Index(uniques, dtype=object), utc=True, errors="coerce", format="ISO8601")
    if parsed.isna().any():
        return None
    ns = parsed.as_unit("ns").asi8.astype(np.float64)
    out = np.append(ns, np.nan)[codes]  # code -1 (null) picks the NaN at the end
    return out
