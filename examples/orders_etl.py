"""A small orders ETL instrumented with pipewarden: extract -> transform -> load.

Run it directly (``python examples/orders_etl.py``) or through
``pipewarden demo``, which also prints a summary. Plain pandas functions;
one decorator each is all the instrumentation there is.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from agent import monitor
from checks import freshness, loss, no_duplicate_rows, not_null, row_count, unique

PIPELINE = "orders_demo"
COUNTRIES = np.array(["US", "GB", "DE", "FR", "IT", "ES", "NL", "SE", "PL", "JP"])


@monitor(
    pipeline=PIPELINE,
    checks=[
        row_count(min=1),
        not_null("amount", max_fraction=0.005, severity="warn"),  # 1% arrive without an amount: a warning
        freshness("created_at", max_age=dt.timedelta(days=2)),
    ],
)
def extract(rows: int = 50_000, seed: int = 7) -> pd.DataFrame:
    """Orders as they arrive from the source: some null amounts, some rows delivered twice."""
    rng = np.random.default_rng(seed)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    df = pd.DataFrame(
        {
            "order_id": np.arange(rows, dtype=np.int64) + 1_000_000,
            "customer_id": rng.integers(1, max(rows // 10, 2), size=rows),
            "amount": rng.lognormal(3.5, 0.8, size=rows).round(2),
            "country": rng.choice(COUNTRIES, size=rows),
            "created_at": now - pd.to_timedelta(rng.integers(0, 86_400, size=rows), unit="s"),
        }
    )
    df.loc[rng.random(rows) < 0.01, "amount"] = np.nan
    resent = df.sample(frac=0.005, random_state=seed)  # a source that re-sends 0.5% of rows
    return pd.concat([df, resent], ignore_index=True)


@monitor(
    pipeline=PIPELINE,
    checks=[
        unique("order_id"),
        no_duplicate_rows(),
        not_null(["order_id", "amount", "country"]),
        loss(max_loss=0.03),
    ],
)
def transform(raw: pd.DataFrame) -> pd.DataFrame:
    """Drop re-sent rows and orders without an amount; add the amount in cents."""
    out = raw.drop_duplicates("order_id").dropna(subset=["amount"])
    return out.assign(amount_cents=(out["amount"] * 100).round().astype("int64"))


@monitor(pipeline=PIPELINE)
def load(clean: pd.DataFrame, target: Path) -> pd.DataFrame:
    """Write the clean orders to parquet; returns what was written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    clean.to_parquet(target, index=False)
    return clean


def run(rows: int = 50_000, target: Path = Path("orders_clean.parquet")) -> pd.DataFrame:
    """The whole pipeline as one monitored run: one trace, one pipeline-run count."""
    with monitor(pipeline=PIPELINE):
        return load(transform(extract(rows)), target)


if __name__ == "__main__":
    out = run(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)
    print(f"loaded {len(out):,} orders")
