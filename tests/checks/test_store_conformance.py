"""What every CheckStore does, run against each implementation.

A new store joins by adding one entry to STORES: a name and a function that
opens an empty store in a temporary directory. PostgreSQL's store runs in a
schema of its own in the session's throwaway cluster (``pg_url``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from checks import CheckContext, CheckStore, MemoryStore, Status, accept_baseline, drift, unique_across_runs, volume
from checks.errors import BaselineError


def _sqlite(tmp: Path) -> Any:
    from agent.store import SQLiteRunStore

    return SQLiteRunStore(tmp / "pipewarden.db")


def _postgresql(request: pytest.FixtureRequest) -> Any:
    from agent.pg_store import PostgresRunStore

    return PostgresRunStore(request.getfixturevalue("pg_url"))  # a schema of its own in the session's cluster


STORES: dict[str, Callable[[Path], Any]] = {
    "memory": lambda tmp: MemoryStore(),
    "sqlite": _sqlite,
}

T0 = dt.datetime(2024, 2, 1, 6, tzinfo=dt.UTC)


@pytest.fixture(params=[*STORES, "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    s = _postgresql(request) if request.param == "postgresql" else STORES[request.param](tmp_path)
    yield s
    close = getattr(s, "close", None)
    if close is not None:
        close()


def _h(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def _day(n: float) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


def test_is_a_check_store(store: Any) -> None:
    """The store satisfies the runtime CheckStore protocol."""
    assert isinstance(store, CheckStore)


# -- named reference profiles -----------------------------------------------------------------
def test_named_profiles_round_trip_per_pipeline(store: Any) -> None:
    """A named profile is read back as saved, replaced by a later save, and kept apart per pipeline."""
    store.save_profile("etl", "orders_ref", {"rows": 1, "columns": [{"name": "x"}]})
    store.save_profile("etl", "orders_ref", {"rows": 2, "columns": []})
    store.save_profile("other", "orders_ref", {"rows": 3, "columns": []})
    assert store.load_profile("etl", "orders_ref") == {"rows": 2, "columns": []}
    assert store.load_profile("other", "orders_ref") == {"rows": 3, "columns": []}
    assert store.load_profile("", "orders_ref") is None
    assert store.load_profile("etl", "missing") is None


def test_loaded_profile_is_a_copy(store: Any) -> None:
    """Changing a loaded profile does not change the stored one."""
    store.save_profile("etl", "ref", {"rows": 1})
    loaded = store.load_profile("etl", "ref")
    loaded["rows"] = 99
    assert store.load_profile("etl", "ref") == {"rows": 1}


# -- run profiles --------------------------------------------------------------------------------
def test_run_profiles_newest_first_accepted_only_by_default(store: Any) -> None:
    """profiles() lists a check's profiles newest first, with UTC times, and hides unaccepted ones unless asked."""
    for i, ok in enumerate([True, False, True]):
        store.add_profile("etl", "orders", "drift(x)", {"rows": i}, run_id=f"r{i}", now=_day(i), accepted=ok)
    got = store.profiles("etl", "orders", "drift(x)", limit=10)
    assert [(p.run_id, p.profile["rows"]) for p in got] == [("r2", 2), ("r0", 0)]
    assert got[0].created_at == _day(2) and got[0].created_at.tzinfo is not None
    everything = store.profiles("etl", "orders", "drift(x)", limit=10, accepted_only=False)
    assert [p.run_id for p in everything] == ["r2", "r1", "r0"] and everything[1].accepted is False
    assert [p.run_id for p in store.profiles("etl", "orders", "drift(x)", limit=1)] == ["r2"]


def test_run_profiles_are_kept_apart_by_pipeline_dataset_and_check(store: Any) -> None:
    """A profile recorded for one (pipeline, dataset, check) is never listed for another."""
    store.add_profile("a", "transform", "drift(x)", {"rows": 1}, run_id="r1", now=T0, accepted=True)
    assert store.profiles("b", "transform", "drift(x)", limit=5) == []
    assert store.profiles("a", "other", "drift(x)", limit=5) == []
    assert store.profiles("a", "transform", "drift(y)", limit=5) == []
    assert len(store.profiles("a", "transform", "drift(x)", limit=5)) == 1


def test_keep_bounds_run_profiles_but_never_drops_a_pinned_one(store: Any) -> None:
    """add_profile keeps the newest `keep` profiles of a check and every pinned one besides."""
    for i in range(6):
        store.add_profile("p", "d", "c", {"i": i}, run_id=f"r{i}", now=_day(i), accepted=True, pinned=i == 0, keep=3)
    got = store.profiles("p", "d", "c", limit=10, accepted_only=False)
    assert [p.run_id for p in got] == ["r5", "r4", "r3", "r0"]
    assert got[-1].pinned == _day(0) and got[0].pinned is None


# -- acceptance ----------------------------------------------------------------------------------
def test_accepting_a_run_pins_its_profiles_and_records_who(store: Any) -> None:
    """accept_profiles marks every profile of the run accepted and pinned, and records the acceptance."""
    store.add_profile("p", "d", "drift(x)", {"v": 1}, run_id="aug", now=_day(0), accepted=True)
    store.add_profile("p", "d", "drift(x)", {"v": 2}, run_id="sep", now=_day(30), accepted=False)
    store.add_profile("p", "d", "drift(y)", {"v": 3}, run_id="sep", now=_day(30), accepted=False)
    assert store.accept_profiles("p", "d", "sep", now=_day(31), by="ana", note="new tariff") == 2
    (newest,) = store.profiles("p", "d", "drift(x)", limit=1)
    assert (newest.run_id, newest.accepted, newest.pinned) == ("sep", True, _day(31))
    (record,) = store.acceptances("p", "d")
    assert (record.run_id, record.by, record.note, record.profiles, record.accepted_at) == (
        "sep",
        "ana",
        "new tariff",
        2,
        _day(31),
    )
    assert store.acceptances("other", "d") == []


def test_accepting_without_a_run_takes_each_checks_newest(store: Any) -> None:
    """With run_id None each check's newest profile is accepted; the record names the newest run."""
    store.add_profile("p", "d", "a", {"v": 1}, run_id="r1", now=_day(0), accepted=False)
    store.add_profile("p", "d", "b", {"v": 2}, run_id="r2", now=_day(1), accepted=False)
    assert store.accept_profiles("p", "d", None, now=_day(2), by="", note="") == 2
    assert [p.run_id for p in store.profiles("p", "d", "a", limit=5)] == ["r1"]
    assert store.acceptances("p", "d")[0].run_id == "r2"


def test_accepting_nothing_records_nothing(store: Any) -> None:
    """An unknown run or dataset accepts 0 profiles and leaves no acceptance behind."""
    store.add_profile("p", "d", "c", {"v": 1}, run_id="r1", now=T0, accepted=False)
    assert store.accept_profiles("p", "d", "nope", now=T0, by="", note="") == 0
    assert store.accept_profiles("p", "unknown", None, now=T0, by="", note="") == 0
    assert store.acceptances("p", "d") == [] and store.acceptances("p", "unknown") == []


# -- key sightings -------------------------------------------------------------------------------
def test_keys_are_kept_apart_by_pipeline_and_dataset(store: Any) -> None:
    """Keys added for one (pipeline, dataset) are not seen for another pipeline or dataset."""
    store.add_keys("a", "transform", _h(1, 2, 3), run_id="r1", now=T0)
    assert store.seen_keys("a", "transform", _h(3, 4)).tolist() == [True, False]
    assert not store.seen_keys("b", "transform", _h(1, 2, 3)).any()
    assert not store.seen_keys("a", "other", _h(1, 2, 3)).any()
    assert store.seen_keys("a", "transform", _h()).tolist() == []


def test_a_reload_is_a_sighting(store: Any) -> None:
    """A key reloaded within the retention is remembered for a full retention from its last load."""
    month = np.arange(1, 27_005, dtype=np.uint64)  # 27,004 keys, loaded Feb 1, Feb 5 and Mar 4
    retention = dt.timedelta(days=30)
    feb1, feb5, mar4 = _day(0), _day(4), _day(32)
    store.add_keys("p", "d", month, run_id="feb1", now=feb1)
    store.prune_keys("p", "d", feb5 - retention)
    assert store.seen_keys("p", "d", month).all()
    store.add_keys("p", "d", month, run_id="feb5", now=feb5)
    assert store.prune_keys("p", "d", mar4 - retention) == 0  # the Feb 1 sighting goes; Feb 5 still holds them
    assert int(store.seen_keys("p", "d", month).sum()) == 27_004


def test_prune_counts_the_keys_no_longer_remembered(store: Any) -> None:
    """prune_keys forgets sightings before the cut-off and counts only keys with no later sighting."""
    store.add_keys("p", "d", _h(1, 2, 3), run_id="r1", now=_day(0))
    store.add_keys("p", "d", _h(3, 9), run_id="r2", now=_day(31))
    store.add_keys("p", "other", _h(1, 2, 3), run_id="r1", now=_day(0))
    assert store.seen_keys("p", "d", _h(1, 2, 3)).all()  # a cached answer must not survive the prune
    assert store.prune_keys("p", "d", _day(1)) == 2
    assert store.seen_keys("p", "d", _h(1, 2, 3, 9)).tolist() == [False, False, True, True]
    assert store.seen_keys("p", "other", _h(1, 2, 3)).all()
    assert store.prune_keys("p", "d", _day(1)) == 0


def test_keys_stay_until_pruned(store: Any) -> None:
    """Adding keys never forgets older ones: the check's retention is the only one."""
    store.add_keys("p", "d", _h(1, 2), run_id="r1", now=_day(0))
    store.add_keys("p", "d", _h(9), run_id="r2", now=_day(3650))
    assert store.seen_keys("p", "d", _h(1, 2)).all()


def test_unique_across_runs_reports_a_month_reloaded_after_a_reload(store: Any) -> None:
    """Loaded Feb 1, Feb 5 and Mar 4, a month's 27,004 keys are all reported as seen before on Mar 4."""
    frame = pd.DataFrame({"id": np.arange(27_004)})
    check = unique_across_runs("id", retention_days=30)
    observed = []
    for run, day in (("feb1", 0), ("feb5", 4), ("mar4", 32)):
        ctx = CheckContext(store=store, pipeline="etl", dataset="trips", run_id=run, now=_day(day))
        observed.append(check(frame, ctx)[0].observed)
    assert observed == [0.0, 27_004.0, 27_004.0]


# -- row counts ----------------------------------------------------------------------------------
def test_row_counts_newest_first_with_their_times(store: Any) -> None:
    """row_count_history gives (UTC time, rows) newest first, up to limit, per pipeline and dataset."""
    for i, n in enumerate([10, 20, 30]):
        store.add_row_count("p", "d", n, run_id=f"r{i}", now=_day(i))
    store.add_row_count("q", "d", 99, run_id="x", now=_day(5))
    assert store.row_count_history("p", "d", 2) == [(_day(2), 30), (_day(1), 20)]
    assert store.row_count_history("q", "d", 10) == [(_day(5), 99)]
    assert store.row_count_history("p", "other", 10) == []
    assert store.row_count_history("p", "d", 0) == []


def test_volume_history_is_per_pipeline(store: Any) -> None:
    """Row counts of one pipeline's dataset do not count as history for another pipeline's dataset."""
    check = volume(min_history=2, seasonality="none")
    for day in range(3):
        check(pd.DataFrame({"a": range(100)}), CheckContext(store=store, pipeline="a", dataset="load", now=_day(day)))
    (r,) = check(pd.DataFrame({"a": range(5)}), CheckContext(store=store, pipeline="b", dataset="load", now=_day(3)))
    assert r.status is Status.PASS and r.details["history"] == 0


# -- drift baselines through the store -----------------------------------------------------------
def _numbers(shift: float, seed: int, n: int = 5_000) -> pd.DataFrame:
    return pd.DataFrame({"x": np.random.default_rng(seed).normal(shift, 1.0, n)})


def test_two_pipelines_with_one_task_name_keep_their_own_baselines(store: Any) -> None:
    """Pipelines a and b both with a dataset `transform` each compare with their own previous run."""
    check = drift("x")

    def run(pipeline: str, shift: float, seed: int) -> Status:
        ctx = CheckContext(store=store, pipeline=pipeline, dataset="transform", run_id=f"{pipeline}{seed}")
        return check(_numbers(shift, seed), ctx)[0].status

    assert run("a", 0.0, 1) is Status.PASS
    assert run("b", 100.0, 2) is Status.PASS  # its first run: no reference yet, not a's profile
    assert [run("b", 100.0, s) for s in (3, 4, 5)] == [Status.PASS] * 3
    assert run("a", 0.0, 6) is Status.PASS


def test_accept_baseline_moves_the_previous_baseline_on(store: Any) -> None:
    """After a failed run is accepted, the next run compares with it; the acceptance is in history."""
    check = drift("x")

    def run(run_id: str, shift: float, seed: int) -> Status:
        ctx = CheckContext(store=store, pipeline="etl", dataset="m", run_id=run_id, now=_day(seed))
        return check(_numbers(shift, seed), ctx)[0].status

    assert [run("aug", 0.0, 1), run("sep", 0.5, 2), run("oct", 0.52, 3)] == [Status.PASS, Status.FAIL, Status.FAIL]
    accepted = accept_baseline(store, pipeline="etl", dataset="m", run_id="oct", by="ana", now=_day(4))
    assert (accepted.run_id, accepted.by, accepted.profiles) == ("oct", "ana", 1)
    assert run("nov", 0.53, 5) is Status.PASS
    assert store.acceptances("etl", "m")[0].run_id == "oct"


def test_accept_baseline_of_an_unknown_run_is_a_baseline_error(store: Any) -> None:
    """Accepting a run or dataset the store has no profile of raises BaselineError naming it."""
    drift("x")(_numbers(0, 1), CheckContext(store=store, pipeline="etl", dataset="m", run_id="r1"))
    with pytest.raises(BaselineError, match="'r9'"):
        accept_baseline(store, pipeline="etl", dataset="m", run_id="r9")
    with pytest.raises(BaselineError, match="'nope'"):
        accept_baseline(store, pipeline="etl", dataset="nope")
