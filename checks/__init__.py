"""pipewarden's data-quality checks: small objects that judge a DataFrame and return results.

>>> import pandas as pd
>>> from checks import unique, not_null
>>> df = pd.DataFrame({"order_id": [1, 2, 2], "amount": [9.5, None, 3.0]})
>>> [(r.check, r.status.value) for c in (unique("order_id"), not_null("amount")) for r in c(df)]
[('unique(order_id)', 'fail'), ('not_null(amount)', 'fail')]

Importing this package imports neither scipy nor Great Expectations, nor dask.
Checks also read tables larger than memory, in batches: a parquet dataset, a
pyarrow Table or reader, an iterable of frames, a Dask DataFrame
(:func:`run_checks` reads such a table once for several checks).

Names are imported on first use (PEP 562), so ``checks.result`` and
``checks.base`` (all the agent's hot path needs) do not pull in pandas.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__all__ = [
    "Acceptance",
    "BaselineError",
    "Check",
    "CheckConfigError",
    "CheckContext",
    "CheckError",
    "CheckInputError",
    "CheckResult",
    "CheckStore",
    "ColumnProfile",
    "DEFAULT_THRESHOLDS",
    "Drift",
    "Freshness",
    "GxSuite",
    "Kind",
    "Loss",
    "METHODS",
    "MemoryStore",
    "NoDuplicateRows",
    "NotNull",
    "Profile",
    "Reconcile",
    "RowCount",
    "Schema",
    "Severity",
    "Status",
    "StoredProfile",
    "TableSource",
    "Unique",
    "UniqueAcrossRuns",
    "Volume",
    "accept_baseline",
    "as_source",
    "completeness",
    "drift",
    "freshness",
    "from_config",
    "gx_suite",
    "load_checks",
    "loss",
    "no_duplicate_rows",
    "not_null",
    "profile",
    "reconcile",
    "row_count",
    "run_check",
    "run_checks",
    "schema",
    "unique",
    "unique_across_runs",
    "volume",
]

_WHERE = {
    "accept_baseline": "checks.baseline",
    "Acceptance": "checks.base",
    "StoredProfile": "checks.base",
    "BaselineError": "checks.errors",
    "Check": "checks.base",
    "CheckContext": "checks.base",
    "CheckStore": "checks.base",
    "run_check": "checks.base",
    "NotNull": "checks.completeness",
    "completeness": "checks.completeness",
    "not_null": "checks.completeness",
    "from_config": "checks.config",
    "load_checks": "checks.config",
    "DEFAULT_THRESHOLDS": "checks.drift",
    "METHODS": "checks.drift",
    "Drift": "checks.drift",
    "drift": "checks.drift",
    "NoDuplicateRows": "checks.duplication",
    "Unique": "checks.duplication",
    "UniqueAcrossRuns": "checks.duplication",
    "no_duplicate_rows": "checks.duplication",
    "unique": "checks.duplication",
    "unique_across_runs": "checks.duplication",
    "CheckConfigError": "checks.errors",
    "CheckError": "checks.errors",
    "CheckInputError": "checks.errors",
    "Freshness": "checks.freshness",
    "freshness": "checks.freshness",
    "GxSuite": "checks.gx",
    "gx_suite": "checks.gx",
    "Loss": "checks.loss",
    "Reconcile": "checks.loss",
    "RowCount": "checks.loss",
    "loss": "checks.loss",
    "reconcile": "checks.loss",
    "row_count": "checks.loss",
    "MemoryStore": "checks.memory_store",
    "ColumnProfile": "checks.profile",
    "Profile": "checks.profile",
    "profile": "checks.profile",
    "CheckResult": "checks.result",
    "Kind": "checks.result",
    "Severity": "checks.result",
    "Status": "checks.result",
    "TableSource": "checks.source",
    "as_source": "checks.source",
    "run_checks": "checks.stream",
    "Schema": "checks.schema",
    "schema": "checks.schema",
    "Volume": "checks.volume",
    "volume": "checks.volume",
}

if TYPE_CHECKING:
    from checks.base import Acceptance, Check, CheckContext, CheckStore, StoredProfile, run_check
    from checks.baseline import accept_baseline
    from checks.completeness import NotNull, completeness, not_null
    from checks.config import from_config, load_checks
    from checks.drift import DEFAULT_THRESHOLDS, METHODS, Drift, drift
    from checks.duplication import (
        NoDuplicateRows,
        Unique,
        UniqueAcrossRuns,
        no_duplicate_rows,
        unique,
        unique_across_runs,
    )
    from checks.errors import BaselineError, CheckConfigError, CheckError, CheckInputError
    from checks.freshness import Freshness, freshness
    from checks.gx import GxSuite, gx_suite
    from checks.loss import Loss, Reconcile, RowCount, loss, reconcile, row_count
    from checks.memory_store import MemoryStore
    from checks.profile import ColumnProfile, Profile, profile
    from checks.result import CheckResult, Kind, Severity, Status
    from checks.schema import Schema, schema
    from checks.source import TableSource, as_source
    from checks.stream import run_checks
    from checks.volume import Volume, volume


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'checks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    """Keeps ``checks.drift`` the function when the submodule ``checks/drift.py`` is imported.

    Importing a submodule binds it on its package (``setattr(checks, "drift", <module>)``).
    Several checks are named like the module that defines them, and the public
    name is the function; the submodule stays reachable in ``sys.modules``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _WHERE and _WHERE[name] == value.__name__:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
