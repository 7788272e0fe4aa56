"""Schema drift: columns added, removed, or of another dtype."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pandas as pd

from checks.base import Check, CheckContext
from checks.errors import CheckInputError
from checks.frame import require_frame
from checks.profile import Profile
from checks.result import CheckResult, Kind, Status
from checks.stream import Plan, RowsPlan

__all__ = ["DTYPE_FAMILIES", "Schema", "schema"]

#: Family names an expected dtype may use instead of an exact dtype string.
DTYPE_FAMILIES = ("integer", "float", "numeric", "string", "datetime", "bool", "category", "any")


def _family_match(family: str, dtype: Any) -> bool:
    api = pd.api.types
    if family == "any":
        return True
    if family == "integer":
        return api.is_integer_dtype(dtype) and not api.is_bool_dtype(dtype)
    if family == "float":
        return api.is_float_dtype(dtype)
    if family == "numeric":
        return api.is_numeric_dtype(dtype) and not api.is_bool_dtype(dtype)
    if family == "string":
        return api.is_string_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype)
    if family == "datetime":
        return api.is_datetime64_any_dtype(dtype)
    if family == "bool":
        return api.is_bool_dtype(dtype)
    return isinstance(dtype, pd.CategoricalDtype)  # category


def _matches(expected: str, dtype: Any) -> bool:
    if expected in DTYPE_FAMILIES:
        return _family_match(expected, dtype)
    return str(dtype) == expected


def _dtype_name(column: str, dtype: Any) -> str:
    """A family name as is, else pandas' own name of the dtype; ValueError naming what is allowed."""
    text = str(dtype)
    if text in DTYPE_FAMILIES:
        return text
    try:
        return str(pd.api.types.pandas_dtype(text))
    except (TypeError, ValueError):
        raise ValueError(
            f"schema expected[{column!r}] is {text!r}, which is not a pandas dtype; use an exact dtype "
            f"(int64, float64, object, datetime64[ns, UTC], ...) or a family: {', '.join(DTYPE_FAMILIES)}"
        ) from None


class Schema(Check):
    """Columns added, removed, or with a dtype other than expected; one result.

    ``expected`` maps column -> dtype (an exact dtype string such as ``int64``,
    ``datetime64[us, UTC]``, or a family: integer, float, numeric, string,
    datetime, bool, category, any), or is a :class:`Profile`, or None: the
    previous run's schema kept in the store under ``"<dataset>:schema"``
    (the first run passes with "no reference yet"). Removed and changed
    columns are violations; added ones too unless ``allow_extra`` (the default).

    >>> import pandas as pd
    >>> r = schema({"a": "int64", "b": "string"})(pd.DataFrame({"a": [1.5]}))[0]
    >>> r.status, r.details["removed"], r.details["changed"]
    (<Status.FAIL: 'fail'>, ['b'], {'a': {'expected': 'int64', 'found': 'float64'}})
    """

    kind = Kind.SCHEMA
    needs_store: ClassVar[bool] = True  # only for expected=None

    def __init__(
        self,
        expected: Mapping[str, str] | Profile | None = None,
        *,
        allow_extra: bool = True,
        dataset: str | None = None,
        name: str | None = None,
        severity: str = "fail",
        on_error: str = "fail",
    ) -> None:
        super().__init__(name=name or "schema", severity=severity, on_error=on_error)
        if isinstance(expected, Profile):
            expected = expected.schema()
        elif expected is not None and not isinstance(expected, Mapping):
            raise TypeError(
                f"schema expected must be a mapping of column -> dtype, a Profile or None — "
                f"got {type(expected).__name__}"
            )
        self.expected = None if expected is None else {str(k): _dtype_name(str(k), v) for k, v in expected.items()}
        self.allow_extra = allow_extra
        vars(self)["needs_store"] = self.expected is None  # a given schema needs no store
        self.dataset = dataset

    def evaluate(self, df: Any, context: CheckContext) -> CheckResult:
        return self._judge(require_frame(df), context)

    def plan(self, context: CheckContext, prototype: pd.DataFrame) -> Plan:
        # a stream's dtypes are its prototype's: a parquet or Arrow schema, a Dask frame's meta, or
        # those pd.concat gives a list of frames
        return RowsPlan(lambda rows: [self._judge(prototype, context)])

    def _judge(self, frame: pd.DataFrame, context: CheckContext) -> CheckResult:
        expected = self.expected
        if expected is None:
            store, dataset = context.store, self.dataset or context.dataset
            if store is None or not dataset:
                raise CheckInputError(
                    "expected=None compares with the previous run's schema, which needs "
                    "context.store and a dataset name (dataset= or context.dataset)"
                )
            key = f"{dataset}:schema"
            stored = store.load_profile(context.pipeline, key)
            store.save_profile(
                context.pipeline,
                key,
                {
                    "schema": {str(c): str(t) for c, t in frame.dtypes.items()},
                    "created_at": context.now.isoformat(),
                },
            )
            if stored is None:
                return self.result(
                    Status.PASS,
                    observed=0.0,
                    measure="schema_changes",
                    message=f"{self.name}: no reference yet; saved this frame's schema",
                )
            expected = dict(stored["schema"]) if "schema" in stored else Profile.from_dict(stored).schema()
        found = {str(c): t for c, t in frame.dtypes.items()}
        removed = [c for c in expected if c not in found]
        added = [c for c in found if c not in expected]
        changed = {
            c: {"expected": e, "found": str(found[c])}
            for c, e in expected.items()
            if c in found and not _matches(e, found[c])
        }
        problems = len(removed) + len(changed) + (0 if self.allow_extra else len(added))
        parts = [
            f"removed {', '.join(removed)}" if removed else "",
            f"added {', '.join(added)}" if added else "",
            "changed " + ", ".join(f"{c} {v['expected']}->{v['found']}" for c, v in changed.items()) if changed else "",
        ]
        text = "; ".join(p for p in parts if p) or "as expected"
        return self.result(
            Status.FAIL if problems else Status.PASS,
            observed=float(problems),
            threshold=0.0,
            measure="schema_changes",
            message=f"{self.name}: {text}",
            details={
                "added": added,
                "removed": removed,
                "changed": changed,
                "allow_extra": self.allow_extra,
            },
        )


def schema(expected: Mapping[str, str] | Profile | None = None, **kwargs: Any) -> Schema:
    """Schema drift against an expected schema (see :class:`Schema`)."""
    return Schema(expected, **kwargs)
