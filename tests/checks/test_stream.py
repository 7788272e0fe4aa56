"""Checks over a table in batches give the results they give on the whole frame."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checks import (
    CheckContext,
    CheckResult,
    MemoryStore,
    Status,
    drift,
    freshness,
    loss,
    no_duplicate_rows,
    not_null,
    reconcile,
    row_count,
    run_check,
    run_checks,
    schema,
    unique,
    unique_across_runs,
    volume,
)
from checks.keyset import KeySpill

NOW = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
N = 3000


def _frame(seed: int = 7, n: int = N) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    f = rng.normal(size=n)
    f[rng.random(n) < 0.05] = np.nan
    f[:4] = [0.0, -0.0, np.nan, np.nan]
    t = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 50 * 86400, n), unit="s")
    df = pd.DataFrame(
        {
            "k": rng.integers(0, int(n * 0.8), n),
            "f": np.round(f, 1),
            "s": rng.choice(np.array(["a", "b", "c", None], dtype=object), n),
            "c": pd.Categorical(rng.choice(["x", "y", "z"], n)),
            "t": t.where(rng.random(n) > 0.02),
            "b": rng.random(n) < 0.3,
            "v": rng.lognormal(1.0, 0.5, n),
        }
    )
    dups = rng.choice(n, 40, replace=False)
    df.iloc[dups[:20]] = df.iloc[dups[20:]].to_numpy()  # whole rows repeated
    return df


REFERENCE = _frame(seed=99)
INPUT = _frame()


def _suite() -> list[Any]:
    return [
        row_count(min=1),
        not_null(),
        not_null(["k", "missing"], max_fraction=0.5),
        unique("k"),
        unique("f"),
        unique("s"),
        unique(["s", "k"]),
        unique("t"),
        no_duplicate_rows(),
        no_duplicate_rows(["s", "c"]),
        schema({"k": "integer", "f": "float", "gone": "string"}),
        freshness("t", "72h"),
        loss(key="k"),
        loss(max_loss=0.5),
        reconcile(0, key=["k", "s"], sum_column="v"),
        drift(["v", "f", "t"], reference=REFERENCE, method=["ks", "psi", "js", "wasserstein"]),
        drift(["s", "c", "b"], reference=REFERENCE, method=["chi2", "psi", "js"]),
    ]


def _context() -> CheckContext:
    return CheckContext(pipeline="p", dataset="d", now=NOW, inputs=[INPUT], store=MemoryStore())


def _output() -> pd.DataFrame:
    out = INPUT[INPUT["k"] % 7 != 3].reset_index(drop=True)  # some keys lost
    return out.assign(v=out["v"] * 1.05)


def _chunks(df: pd.DataFrame, cuts: list[int]) -> list[pd.DataFrame]:
    edges = sorted({0, len(df), *(c % (len(df) + 1) for c in cuts)})
    return [df.iloc[a:b] for a, b in itertools.pairwise(edges)]


def assert_same(whole: list[CheckResult], streamed: list[CheckResult]) -> None:
    """Equal results; sums of floats (Wasserstein, reconcile's sums) equal up to their order of addition."""
    assert [(r.check, r.column, r.measure) for r in whole] == [(r.check, r.column, r.measure) for r in streamed]
    for a, b in zip(whole, streamed, strict=True):
        if a.measure in ("wasserstein", "sum_difference"):
            assert b.status is a.status
            assert math.isclose(b.observed or 0, a.observed or 0, rel_tol=1e-9, abs_tol=1e-12)
            for key, value in a.details.items():
                if isinstance(value, float):
                    assert math.isclose(b.details[key], value, rel_tol=1e-9, abs_tol=1e-12), key
                else:
                    assert b.details[key] == value, key
        else:
            assert a == b


@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=N), max_size=12))
def test_random_chunks_give_the_whole_frames_results(cuts: list[int]) -> None:
    """The same frame checked whole and split at random rows gives equal results for every check."""
    out = _output()
    whole = [r for c in _suite() for r in run_check(c, out, _context())]
    streamed = run_checks(_suite(), _chunks(out, cuts), _context())
    assert_same(whole, streamed)


@pytest.mark.parametrize("kind", ["iterator", "arrow table", "arrow reader", "parquet file", "parquet directory"])
def test_every_source_gives_the_whole_frames_results(kind: str, tmp_path: Path) -> None:
    """Iterators, Arrow tables and readers, parquet files and directories all give the whole frame's results."""
    out = _output()
    table = pa.Table.from_pandas(out, preserve_index=False)
    data: Any
    if kind == "iterator":
        data = iter(_chunks(out, [500, 1700]))
    elif kind == "arrow table":
        data = table
    elif kind == "arrow reader":
        data = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=700))
    elif kind == "parquet file":
        pq.write_table(table, tmp_path / "out.parquet", row_group_size=900)
        data = tmp_path / "out.parquet"
    else:
        for i, part in enumerate(_chunks(out, [1000, 2000])):
            part.to_parquet(tmp_path / f"part-{i}.parquet", index=False)
        data = str(tmp_path)
    suite = [c for c in _suite() if c.name not in ("unique(s)", "unique(s,k)")]  # examples: see below
    whole = [r for c in suite for r in run_check(c, out, _context())]
    assert_same(whole, run_checks(suite, data, _context(), batch_rows=800))


def test_hashed_key_examples_need_a_source_read_again() -> None:
    """Examples of text keys are read again from a list of frames; an iterator, read once, gives none."""
    out = _output()
    whole = unique("s")(out)[0]
    again = run_checks([unique("s")], _chunks(out, [100, 900]))[0]
    once = run_checks([unique("s")], iter(_chunks(out, [100, 900])))[0]
    assert again == whole
    assert once.observed == whole.observed and once.details["examples"] == []


def test_key_records_spilled_to_disk_give_the_same_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a tiny spill threshold the key records go to files, the answers stay, and the files are removed."""
    flushes: list[int] = []
    flush = KeySpill._flush

    def counted(self: KeySpill) -> None:
        flushes.append(len(list(tmp_path.iterdir())))
        flush(self)

    monkeypatch.setattr(KeySpill.__init__, "__defaults__", (1000, None))
    monkeypatch.setattr(KeySpill, "_flush", counted)
    out = _output()
    suite = [unique("k"), no_duplicate_rows(), loss(key="k")]
    whole = [r for c in suite for r in run_check(c, out, _context())]
    assert_same(whole, run_checks(suite, _chunks(out, [300, 1200, 2500]), _context(), spill_dir=str(tmp_path)))
    assert len(flushes) > 3 and max(flushes) > 0
    assert list(tmp_path.iterdir()) == []


def test_history_checks_keep_what_the_whole_frame_keeps() -> None:
    """Keys across runs, volume and a moving drift baseline see a streamed run like a whole one."""
    out = _output()
    stores = {"whole": MemoryStore(), "stream": MemoryStore()}
    results: dict[str, list[CheckResult]] = {"whole": [], "stream": []}
    for day in range(3):
        data = out.iloc[day * 500 : day * 500 + 2000]
        for mode, store in stores.items():
            ctx = CheckContext(
                pipeline="p", dataset="d", run_id=f"r{day}", now=NOW + dt.timedelta(days=day), store=store
            )
            suite = [unique_across_runs("k"), volume(min_history=1, seasonality="none"), schema()]
            if mode == "whole":
                results[mode] += [r for c in suite for r in run_check(c, data.reset_index(drop=True), ctx)]
            else:
                results[mode] += run_checks(suite, _chunks(data, [700, 1300]), ctx)
    assert_same(results["whole"], results["stream"])
    assert results["stream"][3].observed and results["stream"][3].details["examples"]


def test_loss_compares_an_input_stream_with_an_output_stream(tmp_path: Path) -> None:
    """loss(key=...) counts the keys of a streamed input missing from a streamed output."""
    INPUT.to_parquet(tmp_path / "in.parquet", index=False)
    out = _output()
    expected = loss(key="k")(out, CheckContext(inputs=[INPUT]))[0]
    by_context = loss(key="k")(_chunks(out, [1000]), CheckContext(inputs=[tmp_path / "in.parquet"]))[0]
    by_argument = loss(key="k", input=tmp_path / "in.parquet")(_chunks(out, [1000]))[0]
    assert by_context == expected == by_argument
    assert expected.observed and expected.observed > 0


def test_run_check_leaves_an_iterator_unread() -> None:
    """run_check, as @monitor calls it, gives an error for an iterator and does not consume it."""
    batches = iter([_output()])
    (r,) = run_check(row_count(), batches, CheckContext())
    assert r.status is Status.ERROR and "read only once" in r.message
    assert len(next(batches)) == len(_output())


def test_a_check_that_does_not_read_streams_says_so() -> None:
    """A plain callable, or a Check without a plan, gets an error result on a stream; the others run."""

    def custom(df: pd.DataFrame) -> bool:
        return True

    results = run_checks([custom, row_count()], [_output()])
    assert results[0].status is Status.ERROR and "pandas DataFrame" in results[0].message
    assert results[1].status is Status.PASS


def test_a_missing_parquet_path_is_an_error_naming_it(tmp_path: Path) -> None:
    """A parquet path that does not exist gives an error result naming the path."""
    (r,) = row_count()(tmp_path / "nope.parquet")
    assert r.status is Status.ERROR and "nope.parquet" in r.message


def test_monitor_checks_a_parquet_output_against_its_parquet_input(tmp_path: Path) -> None:
    """@monitor runs checks on a returned parquet path, and loss reads the step's parquet input."""
    from agent.monitor import monitor
    from agent.telemetry import Telemetry
    from exporters.metrics import Metrics

    INPUT.to_parquet(tmp_path / "in.parquet", index=False)
    source = tmp_path / "in.parquet"
    seen: list[CheckResult] = []

    def keep(df: Any) -> bool:
        return True

    checks = [row_count(min=1), not_null("k"), loss(key="k", input=source)]

    @monitor(pipeline="p", telemetry=Telemetry(metrics=Metrics()), checks=[*checks, keep])
    def step(path: Path) -> Path:
        target = tmp_path / "out.parquet"
        _output().to_parquet(target, index=False)
        return target

    from agent import scope

    original = scope.run_check

    def spy(check: Any, df: Any, context: CheckContext) -> list[CheckResult]:
        out = original(check, df, context)
        seen.extend(out)
        return out

    scope.run_check = spy  # type: ignore[assignment]
    try:
        assert step(source) == tmp_path / "out.parquet"
    finally:
        scope.run_check = original  # type: ignore[assignment]
    expected = [r for c in checks for r in c(_output(), CheckContext(inputs=[INPUT]))]
    assert [(r.check, r.status, r.observed) for r in seen[:3]] == [(r.check, r.status, r.observed) for r in expected]


def test_a_pipeline_task_is_checked_on_its_arrow_output_against_its_arrow_input(tmp_path: Path) -> None:
    """An orchestrated task returning a pyarrow Table is checked, with loss against the upstream Table."""
    from agent.pipeline import Pipeline
    from agent.runner import run
    from agent.store import SQLiteRunStore
    from agent.telemetry import Telemetry
    from exporters.metrics import Metrics

    pipe = Pipeline("arrow")

    @pipe.task
    def extract() -> pa.Table:
        return pa.Table.from_pandas(INPUT, preserve_index=False)

    @pipe.task(checks=[unique("k", severity="warn"), loss(key="k", max_loss=0.5), not_null("f", max_fraction=0.5)])
    def transform(extract: pa.Table) -> pa.Table:
        return pa.Table.from_pandas(_output(), preserve_index=False)

    store = SQLiteRunStore(tmp_path / "runs.db")
    try:
        rec = run(pipe, store=store, telemetry=Telemetry(metrics=Metrics()), sleep=lambda s: None)
    finally:
        store.close()
    got = [(c.check, c.status, c.observed) for c in rec.latest()["transform"].checks]
    ctx = CheckContext(inputs=[INPUT])
    expected = [(r.check, r.status, r.observed) for c in pipe.tasks["transform"].checks for r in c(_output(), ctx)]
    assert rec.ok and got == expected


def test_a_check_that_fails_on_a_batch_fails_alone() -> None:
    """A column that cannot be hashed in one batch gives that check an error; the other checks still answer."""
    good = pd.DataFrame({"k": [1, 2], "o": [[1], [2]]})
    results = run_checks([unique("o"), row_count()], [good, good])
    assert results[0].status is Status.ERROR and "o" in results[0].message
    assert results[1].observed == 4
