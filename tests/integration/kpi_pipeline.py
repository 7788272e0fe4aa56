"""An orchestrated pipeline with a quality gate: duplicate ids stop ``load`` (``-p dups=true``)."""

from __future__ import annotations

import pandas as pd

from agent import Pipeline
from checks import unique

pipe = Pipeline("gated", params={"dups": False})


@pipe.task
def extract(dups: bool) -> pd.DataFrame:
    return pd.DataFrame({"id": [1, 2, 2] if dups else [1, 2, 3]})


@pipe.task(checks=[unique("id")])
def transform(extract: pd.DataFrame) -> pd.DataFrame:
    return extract


@pipe.task
def load(transform: pd.DataFrame) -> None:
    return None
