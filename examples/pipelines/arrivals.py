"""A pipeline run once per CSV file that lands in a directory (``files:`` in examples/pipewarden.yml).

    pipewarden run examples/pipelines/arrivals.py -p path=orders.csv

The daemon passes the file that arrived as the run parameter ``path``.
"""

from __future__ import annotations

import pandas as pd

from agent.pipeline import Pipeline
from checks import not_null, row_count, unique

pipe = Pipeline("arrivals", max_active_runs=4)


@pipe.task(checks=[row_count(min=1), unique("order_id"), not_null("amount")])
def read(path: str) -> pd.DataFrame:
    return pd.read_csv(path)


@pipe.task
def load(read: pd.DataFrame) -> int:
    """Pretend to write the rows; returns how many were written."""
    return len(read)
