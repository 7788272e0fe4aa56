"""Caching across runs (Prefect's ``cache_key_fn=task_input_hash, cache_expiration``, Hamilton's
caching, Dagster's memoization): the slow enrichment is not run again while its input and code are
unchanged, for a day.

    extract ──> enrich (cache="1d") ──> load

Each run of ``enrich`` appends a line to ``$PIPEWARDEN_EXAMPLE_MARKER`` (when set), so you can see it did not run.
"""

from __future__ import annotations

import os
import time

import pandas as pd

from agent.pipeline import Pipeline

pipe = Pipeline("cached", params={"rate": 0.2})


@pipe.task
def extract() -> pd.DataFrame:
    return pd.DataFrame({"order_id": [1, 2, 3], "amount": [10.0, 20.0, 30.0]})


@pipe.task(cache="1d")
def enrich(extract: pd.DataFrame, rate: float) -> pd.DataFrame:
    time.sleep(0.2)  # an expensive call to a rates service
    marker = os.environ.get("PIPEWARDEN_EXAMPLE_MARKER")
    if marker:
        with open(marker, "a") as f:
            f.write("enrich\n")
    return extract.assign(tax=extract["amount"] * rate)


@pipe.task
def load(enrich: pd.DataFrame) -> float:
    return float(enrich["tax"].sum())
