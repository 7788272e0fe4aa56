"""pipewarden's data-quality checks: small objects that judge a DataFrame and return results.

>>> import pandas as pd
>>> from checks import unique, not_null
>>> df = pd.DataFrame({"order_id": [1, 2, 2], "amount": [9.5, None, 3.0]})
>>> [(r.check, r.status.value) for c in (unique("order_id"), not_null("amount")) for r in c(df)]
[('unique(order_id)', 'fail'), ('not_null(amount)', 'fail')]

Importing this package imports neither scipy nor Great Expectations.
"""

from checks.base import Check, CheckContext, CheckStore, run_check
from checks.completeness import NotNull, completeness, not_null
from checks.config import from_config
from checks.drift import DEFAULT_THRESHOLDS, METHODS, Drift, drift
from checks.duplication import (
    NoDuplicateRows,
    Unique,
    UniqueAcrossRuns,
    no_duplicate_rows,
    unique,
    unique_across_runs,
)
from checks.errors import CheckConfigError, CheckError, CheckInputError
from checks.freshness import Freshness, freshness
from checks.gx import GxSuite, gx_suite
from checks.loss import Loss, Reconcile, RowCount, loss, reconcile, row_count
from checks.memory_store import MemoryStore
from checks.profile import ColumnProfile, Profile, profile
from checks.result import CheckResult, Kind, Severity, Status
from checks.schema import Schema, schema
from checks.volume import Volume, volume

__all__ = [
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
    "Unique",
    "UniqueAcrossRuns",
    "Volume",
    "completeness",
    "drift",
    "freshness",
    "from_config",
    "gx_suite",
    "loss",
    "no_duplicate_rows",
    "not_null",
    "profile",
    "reconcile",
    "row_count",
    "run_check",
    "schema",
    "unique",
    "unique_across_runs",
    "volume",
]
