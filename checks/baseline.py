"""Accepting a new normal: a run's profiles become the drift baseline of a dataset.

>>> import datetime as dt, pandas as pd
>>> from checks import CheckContext, MemoryStore, drift
>>> store, check = MemoryStore(), drift("x")
>>> def run(run_id, values):
...     ctx = CheckContext(store=store, pipeline="etl", dataset="orders", run_id=run_id)
...     return check(pd.DataFrame({"x": values}), ctx)[0].status.value
>>> run("r1", [float(i % 100) for i in range(1000)]), run("r2", [float(i % 100) + 50 for i in range(1000)])
('pass', 'fail')
>>> accept_baseline(store, pipeline="etl", dataset="orders", run_id="r2", by="ana").run_id
'r2'
>>> run("r3", [float(i % 100) + 50 for i in range(1000)])
'pass'
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from checks.base import Acceptance
from checks.errors import BaselineError

__all__ = ["accept_baseline"]


def accept_baseline(
    store: Any,
    *,
    dataset: str,
    pipeline: str = "",
    run_id: str | None = None,
    by: str = "",
    note: str = "",
    now: dt.datetime | None = None,
) -> Acceptance:
    """Accept the profiles of run ``run_id`` (default: each drift check's latest) as ``dataset``'s baseline.

    Each accepted profile is also pinned, so a ``drift(baseline="fixed")``
    check moves to it. The acceptance (who, when, which run, why) is recorded
    in the store's history (``store.acceptances(pipeline, dataset)``). Raises
    :class:`~checks.errors.BaselineError` when the store has no such profile.
    """
    when = now or dt.datetime.now(dt.UTC)
    when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
    n = store.accept_profiles(pipeline, dataset, run_id, now=when, by=by, note=note)
    if not n:
        what = f"of run {run_id!r} " if run_id is not None else ""
        raise BaselineError(
            f"no drift profile {what}of dataset {dataset!r} in pipeline {pipeline!r} to accept; a profile is "
            "recorded by each run of a drift check with reference=None (check the pipeline, dataset and run id)",
            pipeline=pipeline,
            dataset=dataset,
            run_id=run_id,
        )
    return store.acceptances(pipeline, dataset, limit=1)[0]
