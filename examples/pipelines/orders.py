"""An orders pipeline declared with the orchestrator: extract -> transform -> load, with quality gates.

    pipewarden run examples/pipelines/orders.py
    pipewarden run examples/pipelines/orders.py -p rows=500 -p path=/tmp/orders.csv
    pipewarden backfill examples/pipelines/orders.py --start 2025-01-01 --end 2025-01-01T01:00

Parameter names are the wiring: ``transform(extract)`` receives what
``extract`` returned; ``rows`` and ``logical_date`` come from the run.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from agent.pipeline import Pipeline
from checks import not_null, row_count, unique

pipe = Pipeline("orders", schedule="*/15 * * * *", params={"rows": 1_000, "seed": 7})


@pipe.task(retries=3, retry_delay=2.0, retry_on=(OSError,), persist=True)
def extract(rows: int, seed: int, logical_date: dt.datetime) -> pd.DataFrame:
    """Orders of the logical date; some are delivered twice."""
    rng = np.random.default_rng(seed)
    ids = np.arange(rows)
    ids[rng.random(rows) < 0.02] = 0  # duplicates, removed by transform
    return pd.DataFrame(
        {"order_id": ids, "amount": rng.gamma(2.0, 30.0, rows).round(2), "created_at": pd.Timestamp(logical_date)}
    )


@pipe.task(checks=[unique("order_id"), not_null("amount"), row_count(min=1)], persist=True)
def transform(extract: pd.DataFrame) -> pd.DataFrame:
    return extract.drop_duplicates("order_id").reset_index(drop=True)


@pipe.task(timeout=300)
def load(transform: pd.DataFrame) -> int:
    """Pretend to write the rows; returns how many were written."""
    return len(transform)
