"""Cached outputs under attack: a damaged, swapped, untrusted or orphaned cache file is never served."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from agent.artifacts import INLINE_JSON_BYTES
from agent.pipeline import Pipeline
from agent.records import RunStatus
from agent.runner import run


def _frames(calls: Counter[str], name: str = "cached") -> Pipeline:
    pipe = Pipeline(name)

    @pipe.task(cache="1d")
    def enrich() -> pd.DataFrame:
        calls[name] += 1
        return pd.DataFrame({"amount": [1.5, 2.5, 3.0], "who": [name] * 3})

    return pipe


def _big_json(calls: Counter[str]) -> Pipeline:
    pipe = Pipeline("bigjson")

    @pipe.task(cache=True)
    def listing() -> list[int]:
        calls["listing"] += 1
        return list(range(INLINE_JSON_BYTES // 2))  # too large for the store: a .json file

    return pipe


def _only_file(home: Path, pattern: str) -> Path:
    files = [p for p in (home / "cache").rglob(pattern) if not p.name.startswith(".")]
    assert len(files) == 1, files
    return files[0]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "emptied"])
def test_a_damaged_cached_frame_is_a_miss(
    damage: str, run_opts: dict[str, Any], store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A cached Arrow file that was truncated, overwritten or emptied is not loaded: the task runs again."""
    calls: Counter[str] = Counter()
    pipe = _frames(calls)
    first = run(pipe, **run_opts)
    path = _only_file(store.path.parent, "*.arrow")
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\0" * len(data), "emptied": b""}[damage])
    with caplog.at_level(logging.WARNING):
        second = run(pipe, **run_opts)
    assert second.ok and second.task_state("enrich") is RunStatus.SUCCESS and calls["cached"] == 2
    pd.testing.assert_frame_equal(second.outputs["enrich"], first.outputs["enrich"])
    assert any("enrich" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
    assert run(pipe, **run_opts).task_state("enrich") is RunStatus.CACHED  # the rewritten file serves again


def test_a_cached_file_holding_other_valid_data_is_not_served(run_opts: dict[str, Any], store: Any) -> None:
    """A cached JSON file replaced by other well-formed JSON is detected (its digest differs): the task runs."""
    calls: Counter[str] = Counter()
    pipe = _big_json(calls)
    run(pipe, **run_opts)
    path = _only_file(store.path.parent, "*.json")
    path.write_text(json.dumps(list(range(3))))
    second = run(pipe, **run_opts)
    assert second.task_state("listing") is RunStatus.SUCCESS and calls["listing"] == 2
    assert second.outputs["listing"] == list(range(INLINE_JSON_BYTES // 2))


def test_a_deleted_cached_file_is_a_miss(run_opts: dict[str, Any], store: Any) -> None:
    """A store row naming a file that is gone (a kill after the row, a hand clean-up) is a miss, then cached anew."""
    calls: Counter[str] = Counter()
    pipe = _frames(calls)
    run(pipe, **run_opts)
    _only_file(store.path.parent, "*.arrow").unlink()
    assert run(pipe, **run_opts).task_state("enrich") is RunStatus.SUCCESS
    assert run(pipe, **run_opts).task_state("enrich") is RunStatus.CACHED and calls["cached"] == 2


@pytest.mark.parametrize("where", ["file", "folder"])
def test_a_cached_file_others_can_write_is_never_loaded(
    where: str, run_opts: dict[str, Any], store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A cached file (or its folder) writable by every user is not loaded: one warning line, the task runs."""
    calls: Counter[str] = Counter()
    pipe = _frames(calls)
    run(pipe, **run_opts)
    path = _only_file(store.path.parent, "*.arrow")
    target = path if where == "file" else path.parent
    target.chmod(0o666 if where == "file" else 0o777)
    with caplog.at_level(logging.WARNING):
        second = run(pipe, **run_opts)
    assert second.ok and second.task_state("enrich") is RunStatus.SUCCESS and calls["cached"] == 2
    lines = [r.getMessage() for r in caplog.records if "writable by every user" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]


def test_two_pipelines_with_the_same_task_name_keep_their_own_outputs(run_opts: dict[str, Any], store: Any) -> None:
    """Pipelines sharing a home and a cached task's name never get each other's output."""
    calls: Counter[str] = Counter()
    a, b = _frames(calls, "alpha"), _frames(calls, "beta")
    run(a, **run_opts)
    got = run(b, **run_opts)
    assert got.task_state("enrich") is RunStatus.SUCCESS and set(got.outputs["enrich"]["who"]) == {"beta"}
    again_a, again_b = run(a, **run_opts), run(b, **run_opts)
    assert again_a.task_state("enrich") is again_b.task_state("enrich") is RunStatus.CACHED
    assert set(again_a.outputs["enrich"]["who"]) == {"alpha"} and set(again_b.outputs["enrich"]["who"]) == {"beta"}
    assert calls == Counter(alpha=1, beta=1)
    rows = store.conn.execute("SELECT pipeline, task, output_ref FROM task_cache ORDER BY pipeline").fetchall()
    assert [r[0] for r in rows] == ["alpha", "beta"] and rows[0][2] != rows[1][2]


def test_a_cached_file_with_no_store_row_is_a_miss_and_is_replaced(run_opts: dict[str, Any], store: Any) -> None:
    """A file written before a kill could record its row is a miss next run, and that run's write replaces it."""
    calls: Counter[str] = Counter()
    pipe = _frames(calls)
    run(pipe, **run_opts)
    before = _only_file(store.path.parent, "*.arrow")
    store.conn.execute("DELETE FROM task_cache")
    store.conn.commit()
    assert run(pipe, **run_opts).task_state("enrich") is RunStatus.SUCCESS
    assert _only_file(store.path.parent, "*.arrow") == before  # same inputs, same name: no orphan left behind
    assert run(pipe, **run_opts).task_state("enrich") is RunStatus.CACHED and calls["cached"] == 2


def test_two_threads_writing_one_file_each_write_a_whole_file(tmp_path: Path) -> None:
    """write_atomic from two threads of one process to one path (equal items of a cached map): both succeed
    and the file is one whole copy, not a mix or a rename of the other's half-written file."""
    import threading

    from exporters.files import write_atomic

    both = threading.Barrier(2, timeout=10)  # each has opened its temporary file before either writes
    errors: list[BaseException] = []

    def write(f: Any) -> None:
        both.wait()
        f.write(b"x" * 1_000_000)

    def worker() -> None:
        try:
            write_atomic(tmp_path / "same.arrow", write)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and (tmp_path / "same.arrow").read_bytes() == b"x" * 1_000_000
    assert [p.name for p in tmp_path.iterdir()] == ["same.arrow"]


def test_an_expired_output_recached_with_other_bytes_keeps_its_new_file(run_opts: dict[str, Any], store: Any) -> None:
    """Past expiry, a task whose output differs from last time (same key, same file name) caches the new file and
    does not delete it as the old entry's: the run after that is served from the cache."""
    calls: Counter[str] = Counter()
    now = [1_750_000_000.0]
    pipe = Pipeline("stamped")

    @pipe.task(cache="1h")
    def stamp() -> pd.DataFrame:
        calls["stamp"] += 1
        return pd.DataFrame({"made": [calls["stamp"]]})  # other bytes every time it runs

    def clock() -> float:
        return now[0]

    run(pipe, clock=clock, **run_opts)
    now[0] += 7200
    assert run(pipe, clock=clock, **run_opts).task_state("stamp") is RunStatus.SUCCESS
    third = run(pipe, clock=clock, **run_opts)
    assert third.task_state("stamp") is RunStatus.CACHED and calls["stamp"] == 2
    assert list(third.outputs["stamp"]["made"]) == [2]
