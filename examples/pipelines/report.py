"""Typed run parameters, wired inputs and task logs in one small pipeline.

    pipewarden run examples/pipelines/report.py -p repos=acme/api,acme/web -p day=2025-01-31
    pipewarden runs show "$(pipewarden runs list --quiet --limit 1)" --task fetch --logs

``repos`` arrives as a list and ``day`` as a date (from the annotations);
``opened`` takes one key of ``fetch``'s dict, ``closed`` takes the whole dict
under another name, and ``summary`` collects both outputs with ``**upstream``.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated

from agent import Input, Pipeline

log = logging.getLogger("examples.report")

pipe = Pipeline("report", params={"repos": ["acme/api"], "day": dt.date(2025, 1, 31)})


@pipe.task
def fetch(repos: list[str], day: dt.date) -> dict[str, list[int]]:
    """Issue counts per repository for the day (made up: the length of the name)."""
    print(f"fetching {len(repos)} repositories for {day:%A %Y-%m-%d}")
    return {"opened": [len(r) for r in repos], "closed": [1 for _ in repos]}


@pipe.task(depends_on={"issues": Input("fetch", key="opened")})
def opened(issues: list[int]) -> int:
    """One key of fetch's output."""
    return sum(issues)


@pipe.task
def closed(counts: Annotated[dict[str, list[int]], Input("fetch")]) -> int:
    """fetch's whole output, received under another name."""
    return sum(counts["closed"])


@pipe.task(depends_on=["opened", "closed"])
def summary(**upstream: int) -> dict[str, int]:
    """Both counts, collected."""
    log.warning("issues on the day: %s", upstream)
    return dict(upstream)
