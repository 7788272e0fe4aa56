"""A payments pipeline whose parameters steer what goes wrong: the dashboards' proof runs it.

    pipewarden run examples/pipelines/payments.py
    pipewarden run examples/pipelines/payments.py -p null_share=0.5    # the not_null gate stops the run
    pipewarden run examples/pipelines/payments.py -p shift=40          # amounts drift: a warning
    pipewarden run examples/pipelines/payments.py -p fail_load=true    # load raises: the run fails
    pipewarden run examples/pipelines/payments.py -p flaky=true        # extract fails once, then retries

Every run exercises each kind of check: ``extract``'s output is judged for
nulls (a blocking gate), duplicate ids, freshness and drift of the amounts
against the previous run; ``transform``'s for the rows it lost and for its
volume against earlier runs, and its row count.
"""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pandas as pd

from agent.pipeline import Pipeline
from checks import drift, freshness, loss, not_null, row_count, unique, volume

pipe = Pipeline(
    "payments",
    schedule="every 15m",
    params={
        "rows": 400,
        "seed": 1,
        "null_share": 0.02,
        "dupe_share": 0.03,
        "shift": 0.0,
        "flaky": False,
        "fail_load": False,
    },
)

_attempts = itertools.count()  # per process: with flaky, every other call of extract fails


@pipe.task(
    retries=1,
    retry_delay=0.05,
    retry_on=(ConnectionError,),
    checks=[
        not_null("amount", max_fraction=0.1),  # blocking: a run with more nulls stops here
        unique("payment_id", severity="warn"),  # re-sent payments: counted, not blocking
        freshness("paid_at", max_age=dt.timedelta(hours=6)),
        drift("amount", severity="warn"),  # against the previous run's profile
    ],
)
def extract(
    rows: int, seed: int, null_share: float, dupe_share: float, shift: float, flaky: bool, logical_date: dt.datetime
) -> pd.DataFrame:
    """Payments of the logical date as the source sends them: some without an amount, some twice."""
    if flaky and next(_attempts) % 2 == 0:
        raise ConnectionError("the payments API dropped the connection")
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 25.0, rows).round(2) + shift
    amount[rng.random(rows) < null_share] = np.nan
    ids = np.arange(rows)
    resent = rng.random(rows) < dupe_share
    ids[resent] = rng.integers(0, rows, int(resent.sum()))
    paid_at = pd.Timestamp(logical_date) - pd.to_timedelta(rng.integers(60, 3_600, rows), unit="s")
    return pd.DataFrame({"payment_id": ids, "amount": amount, "paid_at": paid_at})


@pipe.task(
    checks=[
        row_count(min=1),
        loss(max_loss=0.2),  # rows dropped for a missing amount or a re-sent id
        volume(min_history=3, seasonality="none", severity="warn"),  # against earlier runs' row counts
    ]
)
def transform(extract: pd.DataFrame) -> pd.DataFrame:
    """One row per payment, with an amount."""
    return extract.dropna(subset=["amount"]).drop_duplicates("payment_id").reset_index(drop=True)


@pipe.task
def load(transform: pd.DataFrame, fail_load: bool) -> int:
    """Pretend to write the payments; returns how many were written."""
    if fail_load:
        raise OSError("the warehouse refused the connection")
    return len(transform)
