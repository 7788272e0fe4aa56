"""`pipewarden baseline accept`: a run's profiles become the drift baseline, recorded in history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result

from agent.cli import cli
from agent.store import DB_NAME, SQLiteRunStore
from checks import CheckContext, Status, drift


def _invoke(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["baseline", "accept", *args, "--home", str(home)], catch_exceptions=False)


def _run(home: Path, pipeline: str, run_id: str, shift: float) -> Status:
    frame = pd.DataFrame({"x": np.random.default_rng(len(run_id) + int(shift * 10)).normal(shift, 1.0, 5000)})
    with SQLiteRunStore(home / DB_NAME) as store:
        ctx = CheckContext(store=store, pipeline=pipeline, dataset="monthly", run_id=run_id)
        return drift("x")(frame, ctx)[0].status


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


def test_accept_a_failed_run_moves_the_baseline_and_is_recorded(home: Path) -> None:
    """After `baseline accept monthly --run sep`, October compares with September and passes."""
    assert [_run(home, "etl", "aug", 0.0), _run(home, "etl", "sep", 0.5)] == [Status.PASS, Status.FAIL]
    out = _invoke(home, "monthly", "--run", "sep", "--note", "new tariff")
    assert out.exit_code == 0, out.output
    assert "accepted run sep as the baseline of etl/monthly" in out.output
    assert _run(home, "etl", "oct", 0.5) is Status.PASS
    with SQLiteRunStore(home / DB_NAME) as store:
        (acc,) = store.acceptances("etl", "monthly")
    assert (acc.run_id, acc.note, acc.profiles) == ("sep", "new tariff", 1)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("nope",), "no drift profile of dataset 'nope'"),
        (("monthly", "--run", "r404"), "in run 'r404'"),
        (("monthly", "--pipeline", "etl", "--run", "r404"), "of run 'r404'"),
        (("monthly",), "pipelines a, etl; pass --pipeline"),
    ],
)
def test_bad_input_exits_2_with_one_line(home: Path, args: tuple[str, ...], needle: str) -> None:
    """An unknown dataset or run, or a dataset of several pipelines, exits 2 with one line saying so."""
    _run(home, "etl", "aug", 0.0)
    _run(home, "a", "a1", 0.0)
    out = _invoke(home, *args)
    assert out.exit_code == 2
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], out.output
