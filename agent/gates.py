"""Quality gates: which check results stop downstream work, and check lists validated up front.

A gate fails closed. A blocking result is a check of severity ``fail`` that
failed *or could not run* (status ``error``: a missing column, an output that
is not a DataFrame, a check that raised). A check that cannot judge the data
lets nothing through. The opt-outs are explicit:

- ``Check(on_error="warn")`` (every check of :mod:`checks` takes it): that
  check's errors are recorded with severity ``warn`` and do not block;
- ``on_check_error="warn"`` on ``@pipe.task`` or ``@monitor``: no error result
  of that task blocks, whatever check produced it (plain callables included).

>>> from checks.result import CheckResult, Kind, Status
>>> err = CheckResult("unique(idd)", Kind.DUPLICATION, Status.ERROR, message="column 'idd' not found")
>>> [r.check for r in blocking([err])], blocking([err], on_error="warn")
(['unique(idd)'], [])
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from checks.result import CheckResult, Status

__all__ = ["ON_ERROR", "blocking", "blocking_reason", "is_data", "validate_checks"]

#: Values of ``on_check_error``: whether a check that could not run blocks (``fail``) or not (``warn``).
ON_ERROR = ("fail", "warn")


def blocking(results: Iterable[CheckResult], on_error: str = "fail") -> list[CheckResult]:
    """The results that stop downstream work; under ``on_error="warn"`` errors do not."""
    if on_error == "warn":
        return [r for r in results if r.blocking and r.status is not Status.ERROR]
    return [r for r in results if r.blocking]


def blocking_reason(results: Sequence[CheckResult]) -> str:
    """One line saying which blocking checks failed or could not run, and why."""
    failed: list[str] = []
    errors: list[str] = []
    for r in results:
        where = f" on {r.column}" if r.column and r.column not in r.check else ""
        detail = r.detail or f"observed {r.observed}, threshold {r.threshold}"
        (errors if r.status is Status.ERROR else failed).append(f"{r.check}{where}: {detail}")
    parts = []
    if failed:
        parts.append("blocking check failed: " + "; ".join(failed))
    if errors:
        parts.append(
            "blocking check could not run: "
            + "; ".join(errors)
            + " (a check that cannot run blocks; on_check_error='warn' lets it through)"
        )
    return "; ".join(parts)


def validate_checks(checks: Any, where: str, *, error: type[Exception] = TypeError) -> tuple[Any, ...]:
    """``checks`` as a tuple, or ``error`` naming the first item that is not a built check.

    Refused: a string, a mapping or a table instead of a list; an item that is
    not callable; a class (``Unique`` instead of ``Unique("id")``); a function
    that builds a check rather than being one (``unique`` instead of ``unique("id")``).
    """
    if isinstance(checks, str | bytes | Mapping) or not isinstance(checks, Iterable) or is_data(checks):
        raise error(
            f'{where}: checks must be a list of checks such as [unique("order_id")] — got {type(checks).__name__}'
        )
    items = tuple(checks)
    for i, check in enumerate(items):
        if isinstance(check, type):
            raise error(
                f"{where}: checks[{i}] is the class {check.__name__}, not a check; build one, "
                f"e.g. {check.__name__}(...) with its arguments"
            )
        if not callable(check):
            raise error(
                f"{where}: checks[{i}] is {check!r}, which is not callable; a check is a callable "
                "DataFrame -> CheckResult | list of them | bool, e.g. row_count(min=1)"
            )
        if _builds_a_check(check):
            name = getattr(check, "__name__", "the factory")
            raise error(
                f"{where}: checks[{i}] is {name}, which builds a check but is not one; call it: "
                f"checks=[{name}(...)] with its arguments"
            )
    return items


def is_data(x: Any) -> bool:
    """True for a frame, table or array: what a check judges, passed where the list of checks goes."""
    return type(x).__module__.partition(".")[0] in ("pandas", "pyarrow", "polars", "numpy", "dask")


def _builds_a_check(fn: Any) -> bool:
    """True for a function whose return annotation is a Check class (``unique``, ``drift``, ...)."""
    if not inspect.isfunction(fn):
        return False
    try:
        returned = inspect.get_annotations(fn, eval_str=True).get("return")
    except Exception:  # an annotation that cannot be evaluated says nothing either way
        return False
    from checks.base import Check

    return isinstance(returned, type) and issubclass(returned, Check)
