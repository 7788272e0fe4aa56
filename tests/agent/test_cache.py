"""Caching across runs: a task whose arguments and code are unchanged is not run again until its output expires."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from agent.cache import Cache, Unkeyable, as_cache, cache_key
from agent.errors import DecorationError
from agent.pipeline import Pipeline
from agent.records import RunStatus
from agent.runner import run
from agent.telemetry import Telemetry


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


def _cached(calls: Counter[str], cache: Any = "1d") -> Pipeline:
    pipe = Pipeline("cached", params={"day": "2025-01-31"})

    @pipe.task
    def extract(day: str) -> pd.DataFrame:
        calls["extract"] += 1
        return pd.DataFrame({"day": [day] * 3, "amount": [1.5, 2.5, 3.0]})

    @pipe.task(cache=cache)
    def enrich(extract: pd.DataFrame) -> pd.DataFrame:
        calls["enrich"] += 1
        return extract.assign(tax=extract["amount"] * 0.2)

    @pipe.task
    def load(enrich: pd.DataFrame) -> float:
        return float(enrich["tax"].sum())

    return pipe


def test_an_unchanged_task_is_cached_and_its_output_reaches_the_tasks_below(
    run_opts: dict[str, Any], tel: Telemetry
) -> None:
    """The second run with the same inputs does not run the cached task: it ends cached and its frame is loaded."""
    calls: Counter[str] = Counter()
    pipe = _cached(calls)
    first = run(pipe, **run_opts)
    second = run(pipe, **run_opts)
    assert first.ok and second.ok
    assert calls == Counter(extract=2, enrich=1)
    assert second.task_state("enrich") is RunStatus.CACHED
    assert second.outputs["load"] == pytest.approx(1.4)
    pd.testing.assert_frame_equal(second.outputs["enrich"], first.outputs["enrich"])
    a = second.latest()["enrich"]
    assert a.attempt == 0 and (a.reason or "").startswith(f"cached: the output of run {first.run_id} (")
    m = tel.metrics
    assert m.sample("pipewarden_task_runs_total", pipeline="cached", task="enrich", status="cached") == 1
    assert m.sample("pipewarden_task_duration_seconds_count", pipeline="cached", task="enrich") == 1  # ran once
    for outcome, n in (("miss", 1), ("hit", 1)):
        assert m.sample("pipewarden_cache_lookups_total", pipeline="cached", task="enrich", outcome=outcome) == n


def test_other_inputs_miss_the_cache(run_opts: dict[str, Any]) -> None:
    """A different upstream output (another day's rows) is another key: the task runs."""
    calls: Counter[str] = Counter()
    pipe = _cached(calls)
    run(pipe, **run_opts)
    run(pipe, params={"day": "2025-02-01"}, **run_opts)
    again = run(pipe, params={"day": "2025-01-31"}, **run_opts)
    assert calls["enrich"] == 2 and again.task_state("enrich") is RunStatus.CACHED


def test_an_output_expires(run_opts: dict[str, Any]) -> None:
    """Past its expiry the cached output is not used: the task runs again and caches anew."""
    calls: Counter[str] = Counter()
    clock = Clock()
    pipe = _cached(calls, cache=Cache(expire="1h"))
    run(pipe, clock=clock, **run_opts)
    clock.now += 3500
    assert run(pipe, clock=clock, **run_opts).task_state("enrich") is RunStatus.CACHED
    clock.now += 200
    assert run(pipe, clock=clock, **run_opts).task_state("enrich") is RunStatus.SUCCESS
    assert calls["enrich"] == 2


def test_changed_code_misses_the_cache(run_opts: dict[str, Any]) -> None:
    """Another version of the task's function (same name, other source) does not reuse the old output."""
    calls: Counter[str] = Counter()
    run(_cached(calls), **run_opts)
    pipe = Pipeline("cached", params={"day": "2025-01-31"})
    pipe.task(name="extract")(lambda day: pd.DataFrame({"day": [day] * 3, "amount": [1.5, 2.5, 3.0]}))

    @pipe.task(cache="1d")
    def enrich(extract: pd.DataFrame) -> pd.DataFrame:
        calls["enrich v2"] += 1
        return extract.assign(tax=extract["amount"] * 0.25)

    rec = run(pipe, **run_opts)
    assert rec.task_state("enrich") is RunStatus.SUCCESS and calls["enrich v2"] == 1


def test_a_failed_run_caches_nothing(run_opts: dict[str, Any]) -> None:
    """Only successful outputs are cached: a task that failed runs again next time."""
    pipe = Pipeline("fails")
    calls: Counter[str] = Counter()

    @pipe.task(cache=True)
    def flaky() -> int:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise RuntimeError("first time")
        return 1

    assert run(pipe, **run_opts).status is RunStatus.FAILED
    assert run(pipe, **run_opts).task_state("flaky") is RunStatus.SUCCESS
    assert run(pipe, **run_opts).task_state("flaky") is RunStatus.CACHED


def test_an_argument_without_fingerprint_runs_uncached(run_opts: dict[str, Any], tel: Telemetry) -> None:
    """A connection as argument has no fingerprint: the task runs every time (never a stale output)."""
    pipe = Pipeline("unkeyed")
    calls: Counter[str] = Counter()
    pipe.task(name="conn", persist="pickle")(lambda: sqlite3.connect(":memory:"))

    @pipe.task(cache="1d")
    def query(conn: sqlite3.Connection) -> int:
        calls["query"] += 1
        return int(conn.execute("SELECT 1").fetchone()[0])

    for _ in range(2):
        assert run(pipe, **run_opts).task_state("query") is RunStatus.SUCCESS
    assert calls["query"] == 2
    lookups = tel.metrics.sample("pipewarden_cache_lookups_total", pipeline="unkeyed", task="query", outcome="unkeyed")
    assert lookups == 2


def test_a_key_function_names_what_identifies_the_inputs(run_opts: dict[str, Any]) -> None:
    """Cache(key=...) replaces fingerprinting: the connection is ignored, the database name is the key."""
    pipe = Pipeline("keyed")
    calls: Counter[str] = Counter()
    pipe.task(name="conn", persist="pickle")(lambda: sqlite3.connect(":memory:"))

    @pipe.task(cache=Cache(expire="1d", key=lambda conn: "memory-db"))
    def query(conn: sqlite3.Connection) -> int:
        calls["query"] += 1
        return 7

    run(pipe, **run_opts)
    rec = run(pipe, **run_opts)
    assert calls["query"] == 1 and rec.task_state("query") is RunStatus.CACHED and rec.outputs["query"] == 7


def test_cached_items_of_a_mapped_task(run_opts: dict[str, Any]) -> None:
    """Each item of a cached mapped task is cached by its own value: new items run, known ones are reused."""
    pipe = Pipeline("cached_items", params={"files": ["a", "b"]})
    calls: Counter[str] = Counter()

    @pipe.task(map="files", cache="1d")
    def parse(files: str) -> str:
        calls[files] += 1
        return files.upper()

    run(pipe, **run_opts)
    rec = run(pipe, params={"files": ["a", "b", "c"]}, **run_opts)
    assert rec.outputs["parse"] == ["A", "B", "C"] and calls == Counter(a=1, b=1, c=1)
    assert [str(a.status) for a in rec.items("parse").values()] == ["cached", "cached", "success"]
    assert rec.task_state("parse") is RunStatus.SUCCESS


def test_a_newer_output_replaces_expired_ones_and_their_files_go(run_opts: dict[str, Any], store: Any) -> None:
    """Expired entries of a task are dropped from the store with their files when a new output is cached."""
    calls: Counter[str] = Counter()
    clock = Clock()
    pipe = _cached(calls, cache="1h")
    run(pipe, clock=clock, **run_opts)
    home = store.path.parent
    first = sorted((home / "cache").rglob("*.arrow"))
    assert len(first) == 1
    clock.now += 7200
    run(pipe, params={"day": "2025-02-01"}, clock=clock, **run_opts)
    now = sorted((home / "cache").rglob("*.arrow"))
    assert len(now) == 1 and now != first and not first[0].exists()
    assert store.conn.execute("SELECT count(*) FROM task_cache").fetchone()[0] == 1


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (pd.DataFrame({"x": [1, 2]}), pd.DataFrame({"x": [1, 3]})),
        (pd.DataFrame({"x": [1, 2]}), pd.DataFrame({"y": [1, 2]})),
        (pd.DataFrame({"x": [1, 2]}), pd.DataFrame({"x": [1, 2]}, index=[5, 6])),
        (pd.DataFrame({"x": [1, 2]}), pd.DataFrame({"x": [1.0, 2.0]})),
        (np.arange(4), np.arange(4).reshape(2, 2)),
        (pa.table({"x": [1]}), pa.table({"x": [2]})),
        ([1, 2], (1, 2)),
        (1, True),
        ({"a": 1}, {"a": 2}),
        (dt.date(2025, 1, 1), dt.date(2025, 1, 2)),
    ],
)
def test_fingerprints_tell_different_values_apart(a: Any, b: Any) -> None:
    """Values that differ in content, names, index, dtype, shape or type have different keys."""
    assert cache_key("p", "t", "code", {"v": a}) != cache_key("p", "t", "code", {"v": b})


@pytest.mark.parametrize(
    "make",
    [
        lambda: pd.DataFrame({"x": [1, 2], "s": ["a", "b"]}),
        lambda: {"b": [1, {2, 3}], "a": None},
        lambda: np.array([[1.5, 2.5]]),
        lambda: pa.table({"x": [1, 2]}),
        lambda: dt.datetime(2025, 1, 31, tzinfo=dt.UTC),
    ],
)
def test_fingerprints_of_equal_values_are_equal(make: Any) -> None:
    """Two equal values built separately have the same key (dict order aside)."""
    assert cache_key("p", "t", "code", {"v": make()}) == cache_key("p", "t", "code", {"v": make()})


def test_a_value_without_fingerprint_is_unkeyable() -> None:
    """An object of an unknown type raises Unkeyable naming the argument and the fix."""
    with pytest.raises(Unkeyable, match=r"argument 'conn': a builtins.object has no fingerprint.*Cache\(key=...\)"):
        cache_key("p", "t", "code", {"conn": object()})


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1d", 86_400.0), (90, 90.0), (dt.timedelta(minutes=2), 120.0), (True, None), (Cache(), None)],
)
def test_cache_arguments(value: Any, seconds: float | None) -> None:
    """cache= takes a duration, seconds, a timedelta, True (no expiry) or a Cache."""
    c = as_cache(value)
    assert c is not None and c.expire_seconds == seconds


@pytest.mark.parametrize("value", ["soon", 0, -5, [1], "0s"])
def test_bad_cache_arguments_are_refused_when_declared(value: Any) -> None:
    """A cache= that is not a positive duration is a DecorationError at decoration."""
    with pytest.raises(DecorationError):
        Pipeline("bad").task(cache=value)(lambda: 1)
