"""Run history is kept for a while: a default retention applied once a day, and `pipewarden runs prune`."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.errors import ConfigError
from agent.records import RunStatus
from agent.retention import apply_retention, retention_days
from agent.store import SQLiteRunStore, open_store
from checks.result import CheckResult, Kind, Status

DAY = 86400.0
NOW = 1_800_000_000.0


def _finished_run(store: SQLiteRunStore, run_id: str, ended: float, status: RunStatus = RunStatus.SUCCESS) -> None:
    store.create_run(run_id=run_id, pipeline="orders", trigger="manual", tasks=["t"], now=ended - 10)
    store.start_run(run_id, now=ended - 10)
    tr = store.start_task(run_id, "t", 1, now=ended - 5)
    store.finish_task(tr, RunStatus.SUCCESS, now=ended, checks=[CheckResult("c", Kind.CUSTOM, Status.PASS)])
    store.finish_run(run_id, status, now=ended)


def _counts(store: SQLiteRunStore) -> tuple[int, int, int]:
    return tuple(
        store.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[return-value]
        for t in ("runs", "task_runs", "check_results")
    )


def test_prune_deletes_old_finished_runs_with_their_tasks_and_checks(tmp_path: Path) -> None:
    """Runs that ended before the cut-off go with their task states and check results; the rest stays."""
    store = SQLiteRunStore(tmp_path / "pipewarden.db")
    _finished_run(store, "old", NOW - 100 * DAY)
    _finished_run(store, "old-failed", NOW - 95 * DAY, RunStatus.FAILED)
    _finished_run(store, "recent", NOW - 10 * DAY)
    store.create_run(run_id="old-queued", pipeline="orders", trigger="cron", now=NOW - 200 * DAY)
    store.add_row_count("orders", "t", 5, run_id="old", now=dt.datetime.fromtimestamp(NOW - 100 * DAY, dt.UTC))
    store.add_keys(
        "orders",
        "t",
        np.array([1, 2], dtype=np.uint64),
        run_id="old",
        now=dt.datetime.fromtimestamp(NOW - 100 * DAY, dt.UTC),
    )
    assert sorted(store.prune_runs(NOW - 90 * DAY, dry_run=True) or []) == ["old", "old-failed"]
    assert _counts(store) == (4, 3, 3)
    assert sorted(store.prune_runs(NOW - 90 * DAY) or []) == ["old", "old-failed"]
    assert _counts(store) == (2, 1, 1)
    assert {r.run_id for r in store.list_runs()} == {"recent", "old-queued"}
    assert store.row_count_history("orders", "t", 10) and store.seen_keys("orders", "t", [1]).all()
    store.close()


def test_the_automatic_pass_runs_at_most_once_a_day(tmp_path: Path) -> None:
    """apply_retention prunes past the retention, then does nothing until a day has passed."""
    home = tmp_path / "home"
    store = SQLiteRunStore(home / "pipewarden.db")
    _finished_run(store, "a", NOW - 100 * DAY)
    (home / "artifacts" / "a").mkdir(parents=True)
    assert apply_retention(store, home, now=NOW, env={}) == ["a"]
    assert not (home / "artifacts" / "a").exists()
    _finished_run(store, "b", NOW - 100 * DAY)
    assert apply_retention(store, home, now=NOW + DAY / 2, env={}) is None
    assert apply_retention(store, home, now=NOW + DAY, env={}) == ["b"]
    assert apply_retention(store, home, now=NOW + 3 * DAY, env={"PIPEWARDEN_RETENTION_DAYS": "off"}) is None
    store.close()


def test_opening_the_default_store_applies_the_retention(tmp_path: Path) -> None:
    """open_store drops runs that ended more than 90 days ago (the default) and keeps the others."""
    home = tmp_path / "home"
    with SQLiteRunStore(home / "pipewarden.db") as store:
        _finished_run(store, "ancient", time.time() - 91 * DAY)
        _finished_run(store, "fresh", time.time() - DAY)
    with open_store(home) as store:
        assert [r.run_id for r in store.list_runs()] == ["fresh"]


@pytest.mark.parametrize("raw", ["ninety", "-3"])
def test_a_bad_retention_setting_is_a_config_error(raw: str) -> None:
    """PIPEWARDEN_RETENTION_DAYS that is not a positive number names the variable and what is allowed."""
    with pytest.raises(ConfigError, match="PIPEWARDEN_RETENTION_DAYS must be a positive number of days"):
        retention_days({"PIPEWARDEN_RETENTION_DAYS": raw})


def test_runs_prune_command_dry_run_then_delete(tmp_path: Path) -> None:
    """`runs prune --older-than 30d --dry-run` counts without deleting; without --dry-run it deletes."""
    home = tmp_path / "home"
    with SQLiteRunStore(home / "pipewarden.db") as store:
        _finished_run(store, "month-old", time.time() - 40 * DAY)
        _finished_run(store, "today", time.time() - 60)
    dry = CliRunner().invoke(cli, ["runs", "prune", "--older-than", "30d", "--dry-run", "--home", str(home)])
    assert dry.exit_code == 0 and dry.output.startswith("would delete 1 run(s) that ended before")
    done = CliRunner().invoke(cli, ["runs", "prune", "--older-than", "30d", "--home", str(home)])
    assert done.exit_code == 0 and done.output.startswith("deleted 1 run(s)")
    with SQLiteRunStore(home / "pipewarden.db") as store:
        assert [r.run_id for r in store.list_runs()] == ["today"]
    bad = CliRunner().invoke(cli, ["runs", "prune", "--older-than", "-5m", "--home", str(home)])
    assert bad.exit_code == 2 and bad.output.strip() == (
        "error: --older-than '-5m' is not a positive duration; write a number and a unit, e.g. 30s, 15m, 6h, 1d or 2w"
    )
