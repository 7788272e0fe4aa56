"""Row-count anomalies against the history of earlier runs."""

from __future__ import annotations

import statistics
from typing import Any, ClassVar

from checks.base import Check, CheckContext
from checks.errors import CheckInputError
from checks.frame import require_frame
from checks.result import CheckResult, Kind, Status

__all__ = ["MAD_TO_SD", "Volume", "volume"]

MAD_TO_SD = 1.4826  # MAD * 1.4826 estimates the standard deviation for normal data


class Volume(Check):
    """Row count against earlier runs' counts: a robust z-score from their median and MAD.

    ``z = (rows - median) / max(1.4826 * MAD, min_spread * median, 1)`` over the
    last ``history`` runs; ``|z| > max_z`` (3.5, Iglewicz and Hoaglin's cut-off
    for the modified z-score) is a violation. ``min_spread`` keeps a perfectly
    steady history (MAD 0) from flagging a change of a single row. Before
    ``min_history`` earlier runs exist it passes and says so. Every run's count
    is recorded in the store.

    >>> import pandas as pd
    >>> from checks.base import CheckContext
    >>> from checks.memory_store import MemoryStore
    >>> ctx, v = CheckContext(store=MemoryStore(), dataset="d"), volume(min_history=3)
    >>> for n in (100, 102, 98, 101):
    ...     _ = v(pd.DataFrame({"a": range(n)}), ctx)
    >>> v(pd.DataFrame({"a": range(10)}), ctx)[0].status
    <Status.FAIL: 'fail'>
    """

    kind = Kind.VOLUME
    needs_store: ClassVar[bool] = True

    def __init__(
        self,
        *,
        min_history: int = 5,
        history: int = 30,
        max_z: float = 3.5,
        min_spread: float = 0.02,
        dataset: str | None = None,
        name: str | None = None,
        severity: str = "fail",
    ) -> None:
        super().__init__(name=name or "volume", severity=severity)
        if min_history < 1 or history < min_history:
            raise ValueError(
                f"volume needs 1 <= min_history <= history — got {min_history}, {history}"
            )
        if max_z <= 0:
            raise ValueError(f"volume max_z must be positive — got {max_z}")
        self.min_history, self.history, self.max_z = int(min_history), int(history), float(max_z)
        self.min_spread = float(min_spread)
        self.dataset = dataset

    def evaluate(self, df: Any, context: CheckContext) -> CheckResult:
        rows = len(require_frame(df))
        if context.store is None:
            raise CheckInputError(
                "needs a CheckStore for the row counts of earlier runs; pass "
                "context.store (checks.MemoryStore or the agent's run store)"
            )
        dataset = self.dataset or context.dataset
        if not dataset:
            raise CheckInputError(
                "needs a dataset name to keep row counts under: pass dataset= or set "
                "context.dataset"
            )
        past = list(context.store.row_count_history(dataset, self.history))
        context.store.add_row_count(dataset, rows, run_id=context.run_id, now=context.now)
        if len(past) < self.min_history:
            return self.result(
                Status.PASS,
                observed=None,
                threshold=self.max_z,
                measure="volume_zscore",
                message=f"{self.name}: {len(past)} earlier run(s) recorded, judging from "
                f"{self.min_history}; {rows} rows now",
                details={"rows": rows, "history": len(past)},
            )
        median = statistics.median(past)
        mad = statistics.median(abs(x - median) for x in past)
        scale = max(MAD_TO_SD * mad, self.min_spread * abs(median), 1.0)
        z = (rows - median) / scale
        status = Status.FAIL if abs(z) > self.max_z else Status.PASS
        low, high = median - self.max_z * scale, median + self.max_z * scale
        return self.result(
            status,
            observed=z,
            threshold=self.max_z,
            measure="volume_zscore",
            message=f"{self.name}: {rows} rows, z={z:+.2f} against a median of {median:g} "
            f"over {len(past)} runs (expected {max(low, 0):.0f}..{high:.0f})",
            details={
                "rows": rows,
                "median": median,
                "mad": mad,
                "scale": scale,
                "history": len(past),
                "expected_low": low,
                "expected_high": high,
            },
        )


def volume(**kwargs: Any) -> Volume:
    """Row-count anomaly against history (see :class:`Volume`)."""
    return Volume(**kwargs)
