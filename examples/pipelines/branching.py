"""Branching (Airflow's ``@task.branch`` and short-circuit, Hamilton's ``@config.when``): a run takes
the full reload on Mondays and the incremental load on other days; the report joins whichever ran.

    extract ──> choose ──> full_reload ───────┐
                      └──> incremental_load ──┴──> report  (trigger_rule="none_failed")

The way not taken ends ``skipped``, not failed, and the run succeeds.
"""

from __future__ import annotations

import datetime as dt

from agent.pipeline import Pipeline

pipe = Pipeline("branching")


@pipe.task
def extract(logical_date: dt.datetime) -> list[int]:
    return [logical_date.day, logical_date.month]


@pipe.task(branch=True)
def choose(logical_date: dt.datetime) -> str:
    return "full_reload" if logical_date.weekday() == 0 else "incremental_load"


@pipe.task(depends_on=[choose])
def full_reload(extract: list[int]) -> str:
    return f"reloaded {len(extract)} rows"


@pipe.task(depends_on=[choose])
def incremental_load(extract: list[int]) -> str:
    return f"appended {len(extract)} rows"


@pipe.task(trigger_rule="none_failed")
def report(full_reload: str | None, incremental_load: str | None) -> str:
    return full_reload or incremental_load or "nothing loaded"
