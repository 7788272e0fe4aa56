"""How long run history is kept: a default, applied at most once a day, and ``pipewarden runs prune``.

Every run leaves a few kilobytes in the store (its row, one per task state,
one per check result) and the spans file grows with every span. Runs that
ended more than ``PIPEWARDEN_RETENTION_DAYS`` (default 90) days ago are
deleted, with their task states, check results and kept outputs, when a
store is opened through :func:`agent.store.open_store` or
:meth:`agent.store.RunStore.default`, at most once a day (the time of the
last pass is kept in the store). ``0`` or ``off`` turns that off.
The same pass drops the task outputs cached across runs (``cache=``) that
expired, with their files. Queued and running runs, the history checks keep (drift profiles, key
hashes, row counts: the checks' own retention), and the cumulative metric
totals are never pruned. ``traces.jsonl`` rotates by size on its own
(:class:`exporters.tracing.JsonLinesSpanExporter`).

>>> retention_days({"PIPEWARDEN_RETENTION_DAYS": "30"}), retention_days({})
(30.0, 90.0)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.artifacts import remove_cached, remove_outputs
from agent.errors import ConfigError
from agent.settings import PIPEWARDEN_RETENTION_DAYS

__all__ = ["DEFAULT_RETENTION_DAYS", "apply_retention", "prune", "retention_days"]

log = logging.getLogger("pipewarden.retention")

#: Days a finished run is kept when ``PIPEWARDEN_RETENTION_DAYS`` is unset.
DEFAULT_RETENTION_DAYS = 90.0
#: Seconds between two automatic passes.
EVERY = 86400.0
_MARK = "retention_at"


def retention_days(env: Mapping[str, str] | None = None) -> float | None:
    """Days of runs to keep (None: keep everything); ConfigError for a value that is not a number."""
    env = os.environ if env is None else env
    raw = env.get(PIPEWARDEN_RETENTION_DAYS, "").strip().lower()
    if not raw:
        return DEFAULT_RETENTION_DAYS
    if raw in ("0", "off", "none"):
        return None
    try:
        days = float(raw)
    except ValueError:
        days = -1.0
    if not days > 0:
        raise ConfigError(
            f"{PIPEWARDEN_RETENTION_DAYS} must be a positive number of days, or 0/off to keep every run — got {raw!r}"
        )
    return days


def prune(
    store: Any,
    home: str | os.PathLike[str] | None,
    before: float,
    *,
    pipeline: str | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Delete the runs that ended before ``before`` (Unix time) and their kept outputs; returns their ids."""
    ids = store.prune_runs(before, pipeline=pipeline, dry_run=dry_run) or []
    if home is not None and not dry_run:
        for run_id in ids:
            remove_outputs(home, run_id)
    return ids


def apply_retention(
    store: Any, home: str | os.PathLike[str], *, now: float | None = None, env: Mapping[str, str] | None = None
) -> list[str] | None:
    """The automatic pass: prune runs older than the retention, at most once a day; None when not due.

    Raises ConfigError for a bad ``PIPEWARDEN_RETENTION_DAYS``; a store error propagates.
    """
    days = retention_days(env)
    if days is None:
        return None
    now = time.time() if now is None else now
    ids = store.prune_runs(now - days * 86400, mark=_MARK, every=EVERY, now=now)
    if ids is not None:
        for ref in store.prune_cache(now=now):
            remove_cached(Path(home), ref)
    if ids:
        for run_id in ids:
            remove_outputs(Path(home), run_id)
        log.info("retention: deleted %d run(s) that ended more than %g days ago", len(ids), days)
    return ids
