"""pipewarden.yml's overrides apply to a copy: loading the file again (a reload) starts from the pipeline file."""

from __future__ import annotations

import textwrap
from pathlib import Path

from agent.config import load_pipelines_from

PIPELINE = """
from agent.pipeline import Pipeline

pipe = Pipeline("orders")


@pipe.task
def extract() -> list:
    return [1, 2]
"""


def write(tmp_path: Path, config: str) -> Path:
    (tmp_path / "orders.py").write_text(PIPELINE)
    path = tmp_path / "pipewarden.yml"
    path.write_text(textwrap.dedent(config))
    return path


def test_a_renamed_pipeline_loads_again(tmp_path: Path) -> None:
    """A pipeline renamed with name: is found again by its file's name on the second load."""
    path = write(
        tmp_path,
        """
        pipelines:
          - target: orders.py:orders
            name: orders_paris
    """,
    )
    first = load_pipelines_from(path)
    second = load_pipelines_from(path)
    assert list(first.pipelines) == list(second.pipelines) == ["orders_paris"]
    assert second.pipelines["orders_paris"].pipeline.name == "orders_paris"


def test_configured_checks_are_not_added_twice(tmp_path: Path) -> None:
    """Checks from the configuration are added once per load, not once more at each reload."""
    path = write(
        tmp_path,
        """
        pipelines:
          - target: orders.py
            checks:
              extract: [{row_count: {min: 1}}]
    """,
    )
    for _ in range(3):
        loaded = load_pipelines_from(path)
        assert [c.name for c in loaded.pipelines["orders"].pipeline.tasks["extract"].checks] == ["row_count"]


def test_two_entries_for_one_pipeline_keep_their_own_settings(tmp_path: Path) -> None:
    """The same pipeline configured twice under two names keeps each entry's schedule and params."""
    path = write(
        tmp_path,
        """
        pipelines:
          - target: orders.py
            name: orders_hourly
            schedule: every 1h
          - target: orders.py
            name: orders_daily
            schedule: "0 6 * * *"
    """,
    )
    loaded = load_pipelines_from(path)
    hourly, daily = (loaded.pipelines[n].pipeline for n in ("orders_hourly", "orders_daily"))
    assert hourly is not daily
    assert (hourly.name, hourly.schedule.kind) == ("orders_hourly", "interval")
    assert (daily.name, daily.schedule.kind) == ("orders_daily", "cron")
