"""@monitor with checks that remember earlier runs, backed by the SQLite run store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from opentelemetry.sdk.trace import TracerProvider

from agent.monitor import monitor
from agent.store import RunStore, SQLiteRunStore
from agent.telemetry import Telemetry
from checks import drift, unique_across_runs, volume


def _orders(ids: range, *, shift: float = 1.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"order_id": np.fromiter(ids, dtype=np.int64), "amount": rng.lognormal(3.5, 0.8, size=len(ids)) * shift}
    )


def _count(tel: Telemetry, check: str, kind: str, dataset: str, status: str) -> float:
    return (
        tel.metrics.sample(
            "pipewarden_check_results_total", pipeline="orders", dataset=dataset, check=check, kind=kind, status=status
        )
        or 0.0
    )


@pytest.fixture
def tel() -> Telemetry:
    return Telemetry(tracer_provider=TracerProvider())


def test_keys_loaded_in_an_earlier_run_are_reported_with_their_count(tel: Telemetry, tmp_path: Path) -> None:
    """A second monitored load that repeats 50 keys of the first fails with a duplicate count of exactly 50."""
    store = SQLiteRunStore(tmp_path / "pipewarden.db")
    check = "unique_across_runs(order_id)"

    @monitor(pipeline="orders", checks=[unique_across_runs("order_id")], telemetry=tel, store=store)
    def load(df: pd.DataFrame) -> pd.DataFrame:
        return df

    load(_orders(range(0, 1000)))
    assert (_count(tel, check, "duplication", "load", "pass"), _count(tel, check, "duplication", "load", "fail")) == (
        1,
        0,
    )
    load(_orders(range(950, 2000)))
    assert _count(tel, check, "duplication", "load", "fail") == 1
    assert tel.metrics.sample("pipewarden_dq_duplicates", pipeline="orders", dataset="load", check=check) == 50


def test_drift_against_the_previous_run_flags_a_shifted_batch(tel: Telemetry, tmp_path: Path) -> None:
    """With no reference given, drift compares with the last run's profile and flags a 30% shift of amount."""
    store = SQLiteRunStore(tmp_path / "pipewarden.db")
    check = "drift(amount)"

    @monitor(pipeline="orders", checks=[drift("amount")], telemetry=tel, store=store)
    def transform(df: pd.DataFrame) -> pd.DataFrame:
        return df

    transform(_orders(range(20_000), seed=1))  # first run: no reference yet; its profile becomes the baseline
    transform(_orders(range(20_000), seed=2))  # same distribution
    assert _count(tel, check, "drift", "transform", "pass") == 2
    transform(_orders(range(20_000), shift=1.3, seed=3))
    flagged = _count(tel, check, "drift", "transform", "warn") + _count(tel, check, "drift", "transform", "fail")
    assert flagged == 1
    score = tel.metrics.sample(
        "pipewarden_dq_drift_score", pipeline="orders", dataset="transform", column="amount", method="ks"
    )
    assert score is not None and score > 0.03


def test_default_store_lives_under_pipewarden_home(
    tel: Telemetry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A history check with no store given opens the run store in $PIPEWARDEN_HOME and records there."""
    monkeypatch.setenv("PIPEWARDEN_HOME", str(tmp_path / "home"))

    @monitor(pipeline="orders", checks=[volume(min_history=3)], telemetry=tel)
    def extract() -> pd.DataFrame:
        return _orders(range(100))

    extract()
    extract()
    assert (tmp_path / "home" / "pipewarden.db").is_file()
    history = RunStore.default(tmp_path / "home").row_count_history("orders", "extract", 10)
    assert [n for _, n in history] == [100, 100]
