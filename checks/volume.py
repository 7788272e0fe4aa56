"""Row-count anomalies against the history of earlier runs, weekday by weekday."""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Sequence
from typing import Any, ClassVar

from checks.base import Check, CheckContext
from checks.errors import CheckInputError
from checks.frame import require_frame
from checks.result import CheckResult, Kind, Status
from checks.stream import Plan, RowsPlan

__all__ = ["MAD_TO_SD", "SEASONALITIES", "Volume", "volume"]

MAD_TO_SD = 1.4826  # MAD * 1.4826 estimates the standard deviation for normal data
SEASONALITIES = ("weekly", "none")
#: Earlier runs on the same weekday needed before the weekly rhythm is judged.
MIN_SAME_WEEKDAY = 2
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class Volume(Check):
    """Row count against earlier runs' counts: a robust z-score, weekday by weekday.

    With ``seasonality="weekly"`` (the default) a run is compared with the
    earlier runs on its own weekday: the forecast is their median count, and
    the spread is that of the same forecast made for every earlier run (each
    against the other runs of its weekday), ``1.4826 * median |relative
    error|``. So a quiet Saturday is judged against Saturdays, and a weekday
    holiday against the steadier weekdays. ``z = (rows - forecast) /
    (max(spread, min_spread) * forecast)``; ``|z| > max_z`` (3.5, Iglewicz and
    Hoaglin's cut-off for the modified z-score) is a violation. The last
    ``history`` runs count (28: four weeks of a daily pipeline). Until
    ``min_history`` earlier runs exist, and (when they fall on several
    weekdays) two on the run's weekday, it passes and says so. A run's weekday
    is that of ``context.logical_date``, else ``context.now``, in UTC; the
    count is recorded at that time.

    ``seasonality="none"``, or runs that all fall on one weekday, compare with
    every earlier run alike: ``z = (rows - median) / max(1.4826 * MAD,
    min_spread * median, 1)``. ``min_spread`` keeps a perfectly steady history
    from flagging a change of a single row.

    >>> import pandas as pd
    >>> from checks.base import CheckContext
    >>> from checks.memory_store import MemoryStore
    >>> ctx, v = CheckContext(store=MemoryStore(), dataset="d"), volume(min_history=3, seasonality="none")
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
        history: int = 28,
        max_z: float = 3.5,
        min_spread: float = 0.02,
        seasonality: str = "weekly",
        dataset: str | None = None,
        name: str | None = None,
        severity: str = "fail",
        on_error: str = "fail",
    ) -> None:
        super().__init__(name=name or "volume", severity=severity, on_error=on_error)
        if min_history < 1 or history < min_history:
            raise ValueError(f"volume needs 1 <= min_history <= history — got {min_history}, {history}")
        if max_z <= 0:
            raise ValueError(f"volume max_z must be positive — got {max_z}")
        if seasonality not in SEASONALITIES:
            raise ValueError(f"volume seasonality must be one of {', '.join(SEASONALITIES)} — got {seasonality!r}")
        self.min_history, self.history, self.max_z = int(min_history), int(history), float(max_z)
        self.min_spread = float(min_spread)
        self.seasonality = seasonality
        self.dataset = dataset

    def evaluate(self, df: Any, context: CheckContext) -> CheckResult:
        return self._judge(len(require_frame(df)), context)

    def plan(self, context: CheckContext, prototype: Any) -> Plan:
        self._store(context)
        return RowsPlan(lambda rows: [self._judge(rows, context)])

    def _store(self, context: CheckContext) -> None:
        if context.store is None:
            raise CheckInputError(
                "needs a CheckStore for the row counts of earlier runs; pass "
                "context.store (checks.MemoryStore or the agent's run store)"
            )
        if not (self.dataset or context.dataset):
            raise CheckInputError("needs a dataset name to keep row counts under: pass dataset= or set context.dataset")

    def _judge(self, rows: int, context: CheckContext) -> CheckResult:
        self._store(context)
        assert context.store is not None
        dataset = self.dataset or context.dataset
        when = context.data_time
        store = context.store
        past = list(store.row_count_history(context.pipeline, dataset, self.history))
        store.add_row_count(context.pipeline, dataset, rows, run_id=context.run_id, now=when)
        weekday = when.weekday()
        days = [t.astimezone(dt.UTC).weekday() for t, _ in past]
        counts = [float(n) for _, n in past]
        weekly = self.seasonality == "weekly" and len(set(days)) > 1
        same = sum(1 for d in days if d == weekday)
        short = len(past) < self.min_history or (weekly and same < MIN_SAME_WEEKDAY)
        if short:
            need = f"{self.min_history} runs" + (f" and {MIN_SAME_WEEKDAY} on a {_DAYS[weekday]}" if weekly else "")
            return self.result(
                Status.PASS,
                observed=None,
                threshold=self.max_z,
                measure="volume_zscore",
                message=f"{self.name}: {len(past)} earlier run(s) recorded ({same} on a "
                f"{_DAYS[weekday]}), judging from {need}; {rows} rows now",
                details={"rows": rows, "history": len(past), "same_weekday": same},
            )
        if weekly:
            expected, spread = _same_weekday(days, counts, weekday)
            scale = max(spread, self.min_spread) * expected
        else:
            expected = statistics.median(counts)
            spread = statistics.median(abs(x - expected) for x in counts) * MAD_TO_SD
            scale = max(spread, self.min_spread * abs(expected))
        scale = max(scale, 1.0)
        z = (rows - expected) / scale
        status = Status.FAIL if abs(z) > self.max_z else Status.PASS
        low, high = expected - self.max_z * scale, expected + self.max_z * scale
        rhythm = f" for a {_DAYS[weekday]}" if weekly else ""
        return self.result(
            status,
            observed=z,
            threshold=self.max_z,
            measure="volume_zscore",
            message=f"{self.name}: {rows} rows, z={z:+.2f} against {expected:.0f} expected{rhythm} "
            f"over {len(past)} runs (expected {max(low, 0):.0f}..{high:.0f})",
            details={
                "rows": rows,
                "expected": expected,
                "scale": scale,
                "spread": spread,
                "history": len(past),
                "seasonality": "weekly" if weekly else "none",
                "weekday": _DAYS[weekday],
                "expected_low": low,
                "expected_high": high,
            },
        )


def _same_weekday(days: Sequence[int], counts: Sequence[float], weekday: int) -> tuple[float, float]:
    """The median count of the earlier runs on ``weekday``, and the relative spread of such a forecast.

    The spread is 1.4826 times the median absolute relative error of leave-one-out
    forecasts made the same way for every earlier run (each against the median of
    the other runs on its weekday), pooled over the weekdays: an honest error of a
    forecast from few runs, robust to the odd holiday among them.
    """
    by_day: dict[int, list[float]] = {}
    for d, n in zip(days, counts, strict=True):
        by_day.setdefault(d, []).append(n)
    errors = []
    for values in by_day.values():
        for i, n in enumerate(values):
            others = values[:i] + values[i + 1 :]
            if others:
                forecast = statistics.median(others)
                if forecast > 0:
                    errors.append(n / forecast - 1.0)
    spread = MAD_TO_SD * statistics.median(abs(e) for e in errors) if errors else 0.0
    return statistics.median(by_day[weekday]), spread


def volume(**kwargs: Any) -> Volume:
    """Row-count anomaly against history (see :class:`Volume`)."""
    return Volume(**kwargs)
