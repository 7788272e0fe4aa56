"""Checks over a Dask DataFrame on a local cluster of two worker processes give the whole frame's results."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from checks import CheckContext, MemoryStore, Status, loss, profile, run_check, run_checks, unique_across_runs

from .test_stream import INPUT, _output, _suite, assert_same

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

NOW = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    """A LocalCluster of two worker processes, one thread each, for the whole module."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, distributed.Client(cluster) as c:
        yield c


def _context(store: MemoryStore | None = None) -> CheckContext:
    return CheckContext(pipeline="p", dataset="d", now=NOW, inputs=[INPUT], store=store or MemoryStore())


@pytest.mark.slow  # about 5 s: the whole suite, with drift on six columns, on a fresh cluster
def test_the_suite_on_dask_partitions_gives_the_whole_frames_results(client: object) -> None:
    """Partial states computed on the workers and merged on the client equal the whole frame's results."""
    out = _output()
    whole = [r for c in _suite() for r in run_check(c, out, _context())]
    streamed = run_checks(_suite(), dd.from_pandas(out, npartitions=7), _context())
    assert_same(whole, streamed)


def test_a_check_called_on_a_dask_frame_reads_it(client: object) -> None:
    """A single check called on a Dask frame, with a Dask input for loss, gives the whole frame's result."""
    out = _output()
    expected = loss(key="k")(out, CheckContext(inputs=[INPUT]))
    got = loss(key="k")(dd.from_pandas(out, npartitions=3), CheckContext(inputs=[dd.from_pandas(INPUT, npartitions=4)]))
    assert got == expected


def test_keys_across_runs_reach_the_store_from_dask(client: object) -> None:
    """unique_across_runs on a Dask frame records and finds keys as on the whole frame."""
    out = _output()
    stores = [MemoryStore(), MemoryStore()]
    first = out.iloc[:2000].reset_index(drop=True)
    second = out.iloc[1500:].reset_index(drop=True)
    whole = [run_check(unique_across_runs("k"), f, _context(stores[0]))[0] for f in (first, second)]
    streamed = [
        run_checks([unique_across_runs("k")], dd.from_pandas(f, npartitions=3), _context(stores[1]))[0]
        for f in (first, second)
    ]
    assert streamed == whole


def test_a_profile_of_a_dask_frame_is_computed_on_the_workers(client: object) -> None:
    """profile() of a Dask frame counts rows and nulls exactly and merges the partitions' quantiles."""
    out = _output()
    p = profile(dd.from_pandas(out, npartitions=4), ["v", "s"])
    whole = profile(out, ["v", "s"])
    assert p.rows == whole.rows
    assert (p.columns["s"].top, p.columns["s"].nulls) == (whole.columns["s"].top, whole.columns["s"].nulls)
    v, w = p.columns["v"], whole.columns["v"]
    assert (v.count, v.nulls, v.finite, v.min, v.max) == (w.count, w.nulls, w.finite, w.min, w.max)
    assert v.mean == pytest.approx(w.mean, rel=1e-12)


def test_a_moving_drift_baseline_is_kept_from_dask_partitions(client: object) -> None:
    """drift(reference=None) on Dask frames records baselines that judge later runs as whole frames' do."""
    from checks import drift

    out = _output()
    runs = [out.iloc[:1500], out.iloc[1500:], out.iloc[:1500].assign(v=lambda f: f["v"] * 2)]
    verdicts = {}
    for mode in ("whole", "dask"):
        store, check = MemoryStore(), drift(["v", "s"])
        got = []
        for i, frame in enumerate(runs):
            ctx = CheckContext(pipeline="p", dataset="d", run_id=f"r{i}", store=store, now=NOW)
            data = frame.reset_index(drop=True)
            results = check(data, ctx) if mode == "whole" else check(dd.from_pandas(data, npartitions=3), ctx)
            got.append([(r.column, r.status) for r in results])
        verdicts[mode] = got
    assert verdicts["dask"] == verdicts["whole"]
    assert ("v", Status.FAIL) in verdicts["dask"][2]
