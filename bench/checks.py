"""Benchmark: pipewarden's check suite against hand-written pandas/scipy and Great Expectations.

Usage: python bench/checks.py [--sizes 1000000 5000000] [--no-gx] [--data bench-data] [--repeat 2]

For each size, the frames of bench/orders_data.py (cached as parquet in
bench-data/, generated on first use) are checked in ONE process by:

  baseline    bench/baseline_suite.suite(cur, ref): the direct pandas/scipy code
  pipewarden  row count, nulls of every column, order_id duplicates, full-row
              duplicates, drift of amount/score/quantity (KS + PSI) and
              country/status (chi2 + PSI) against a reference profile stored
              beforehand (outside the timing, as an earlier run would have)
  gx          the same suite in Great Expectations, as far as it can say it:
              row count, nulls, unique order_id, compound uniqueness of all
              columns, KL divergence on the drift columns

Time is the best of --repeat runs after one warm-up run. Peak memory is the
tracemalloc peak of a separate, untimed run (numpy and pandas buffers are
traced), shown against the current frame's own size (memory_usage(deep=True)).
Then the answers are verified: every injected duplicate found (against the
truth computed as orders_data.truth does), amount and country flagged on the
_drift frame, nothing flagged on the clean _cur frame.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
# this file is bench/checks.py: run as a script, its folder comes first on sys.path and would
# shadow the checks package, so put the repository root there instead
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))


def _bench_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


orders_data = _bench_module("orders_data")


def _baseline_suite() -> ModuleType:
    # imported when the baseline runs: it imports scipy, which bench/checks_stream.py must not load
    # before its streamed run measures the process's peak memory
    return _bench_module("baseline_suite")


from checks import (  # noqa: E402  (after the sys.path fix above)
    CheckContext,
    CheckResult,
    MemoryStore,
    Status,
    drift,
    no_duplicate_rows,
    not_null,
    profile,
    row_count,
    run_check,
    unique,
)

NUMERIC = ["amount", "score", "quantity"]
CATEGORICAL = ["country", "status"]
BUDGET = {1_000_000: 1 / 3, 5_000_000: 1 / 4}


# -- data ----------------------------------------------------------------------------------
def load(n: int, data: Path) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The ref/cur/drift frames of size n and their truth, generated and cached on first use."""
    data.mkdir(parents=True, exist_ok=True)
    seeds = {
        "ref": (1000 + n % 997, False),
        "cur": (2000 + n % 997, False),
        "drift": (2000 + n % 997, True),
    }
    frames: dict[str, pd.DataFrame] = {}
    truth_path = data / f"orders_{n}_truth.json"
    truth = json.loads(truth_path.read_text()) if truth_path.exists() else {}
    for name, (seed, drifted) in seeds.items():
        path = data / f"orders_{n}_{name}.parquet"
        if path.exists():
            frames[name] = pd.read_parquet(path)
        else:
            print(f"  generating {path} ...", flush=True)
            df = orders_data.generate(n, seed=seed, drift=drifted)
            df.to_parquet(path, index=False, engine="pyarrow", compression="snappy")
            frames[name] = pd.read_parquet(path)  # time what a pipeline reads, not the generator's arrays
            truth.pop(name, None)
        if name not in truth:
            truth[name] = orders_data.truth(frames[name])
            truth_path.write_text(json.dumps(truth, indent=1))
    return frames, truth


# -- the three suites ----------------------------------------------------------------------
def pipewarden_checks() -> list[Any]:
    return [
        row_count(min=1),
        not_null(max_fraction=1.0),
        unique("order_id"),
        no_duplicate_rows(),
        drift(NUMERIC, reference="orders_ref", method=["ks", "psi"]),
        drift(CATEGORICAL, reference="orders_ref", method=["chi2", "psi"]),
    ]


def run_pipewarden(df: pd.DataFrame, checks: list[Any], ctx: CheckContext) -> list[CheckResult]:
    out: list[CheckResult] = []
    for c in checks:
        out.extend(run_check(c, df, ctx))
    return out


def gx_suite_for(ref: pd.DataFrame, columns: list[str]) -> Any:
    import great_expectations as gx

    exps: list[dict[str, Any]] = [{"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}]
    exps += [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": c, "mostly": 0.0}} for c in columns]
    exps += [
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "order_id"}},
        {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": columns}},
    ]
    for c in NUMERIC:
        r = ref[c].dropna().to_numpy()
        edges = np.unique(np.quantile(r, np.linspace(0, 1, 11)))
        weights = np.histogram(r, edges)[0] / len(r)
        exps.append(
            {
                "type": "expect_column_kl_divergence_to_be_less_than",
                "kwargs": {
                    "column": c,
                    "threshold": 0.1,
                    "tail_weight_holdout": 1e-6,
                    "partition_object": {"bins": edges.tolist(), "weights": weights.tolist()},
                },
            }
        )
    for c in CATEGORICAL:
        vc = ref[c].value_counts(normalize=True)
        exps.append(
            {
                "type": "expect_column_kl_divergence_to_be_less_than",
                "kwargs": {
                    "column": c,
                    "threshold": 0.1,
                    "partition_object": {
                        "values": [str(v) for v in vc.index],
                        "weights": vc.to_numpy().tolist(),
                    },
                },
            }
        )
    return gx.ExpectationSuite(name="orders_bench", expectations=exps)


def run_gx(df: pd.DataFrame, suite: Any) -> Any:
    from checks.gx import gx_batch_definition

    batch = gx_batch_definition().get_batch(batch_parameters={"dataframe": df})
    return batch.validate(suite, result_format="SUMMARY")


# -- measurement ---------------------------------------------------------------------------
def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    fn()  # warm-up
    best, out = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def peak_bytes(fn: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- verification --------------------------------------------------------------------------
def verify(
    results: dict[str, list[CheckResult]],
    truth: dict[str, Any],
    base: dict[str, Any],
    gx_out: Any,
) -> list[str]:
    problems: list[str] = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    for name in ("cur", "drift"):
        t, rs = truth[name], results[name]
        key = next(r for r in rs if r.check == "unique(order_id)")
        rows = next(r for r in rs if r.check == "no_duplicate_rows")
        expect(
            key.observed == t["dup_order_id_extra"],
            f"{name}: order_id duplicates {key.observed} != truth {t['dup_order_id_extra']}",
        )
        expect(
            key.details["rows_involved"] == t["dup_order_id_rows_involved"],
            f"{name}: order_id rows involved {key.details['rows_involved']}",
        )
        expect(
            rows.observed == t["dup_full_rows_extra"],
            f"{name}: full-row duplicates {rows.observed} != truth {t['dup_full_rows_extra']}",
        )
        expect(
            rows.details["rows_involved"] == t["dup_full_rows_involved"],
            f"{name}: full-row rows involved {rows.details['rows_involved']}",
        )
        nulls = {r.column: r.details["nulls"] for r in rs if r.measure == "null_fraction"}
        expect(nulls == t["nulls"], f"{name}: nulls {nulls} != truth {t['nulls']}")
        expect(next(r for r in rs if r.measure == "row_count").observed == t["rows"], f"{name}: rows")
    flagged_cur = [(r.column, r.measure) for r in results["cur"] if r.kind == "drift" and r.status is not Status.PASS]
    expect(not flagged_cur, f"cur: clean columns flagged: {flagged_cur}")
    flagged = {r.column for r in results["drift"] if r.kind == "drift" and r.status in (Status.WARN, Status.FAIL)}
    expect(
        flagged == {"amount", "country"},
        f"drift: flagged {sorted(flagged)}, expected amount, country",
    )
    expect(base["dup_key"] == truth["cur"]["dup_order_id_extra"], "baseline: key duplicates")
    expect(base["dup_rows"] == truth["cur"]["dup_full_rows_extra"], "baseline: full-row duplicates")
    if gx_out is not None:
        by_type = {r.expectation_config.type: r for r in gx_out.results}
        uniq = by_type["expect_column_values_to_be_unique"].result.get("unexpected_count")
        expect(
            uniq == truth["cur"]["dup_order_id_rows_involved"],
            f"gx: unique unexpected_count {uniq}",
        )
    return problems


def drift_summary(rs: list[CheckResult]) -> str:
    parts = [
        f"{r.column}.{r.measure}={r.observed:.4g}({r.status.value})"
        for r in rs
        if r.kind == "drift" and r.column in ("amount", "country")
    ]
    return " ".join(parts)


def bench_size(n: int, args: argparse.Namespace, rows: list[tuple[Any, ...]], failures: list[str]) -> None:
    """Measure and verify the three suites on frames of n rows; append table rows and failures."""
    print(f"size {n:,}: loading", flush=True)
    frames, truth = load(n, args.data)
    ref, cur, drifted = frames["ref"], frames["cur"], frames["drift"]
    frame_bytes = int(cur.memory_usage(deep=True).sum())
    store = MemoryStore()
    profile(ref, NUMERIC + CATEGORICAL).save(store, "orders_ref")  # an earlier run, untimed
    ctx = CheckContext(store=store, dataset="orders", pipeline="bench")
    checks = pipewarden_checks()

    baseline_suite = _baseline_suite()

    def base_fn() -> Any:
        return baseline_suite.suite(cur, ref)

    def pw_fn() -> list[CheckResult]:
        return run_pipewarden(cur, checks, ctx)

    t_base, base = timed(base_fn, args.repeat)
    t_pw, pw_cur = timed(pw_fn, args.repeat)
    m_base = peak_bytes(base_fn)
    m_pw = peak_bytes(pw_fn)
    pw_drift = run_pipewarden(drifted, checks, ctx)
    t_gx = m_gx = None
    gx_out = None
    if not args.no_gx:
        suite = gx_suite_for(ref, list(cur.columns))

        def gx_fn() -> Any:
            return run_gx(cur, suite)

        t_gx, gx_out = timed(gx_fn, max(1, args.repeat - 1))
        m_gx = peak_bytes(gx_fn)
    problems = verify({"cur": pw_cur, "drift": pw_drift}, truth, base, gx_out)
    failures += [f"{n:,}: {p}" for p in problems]
    ratio = t_pw / t_base
    budget = BUDGET.get(n)
    rows.append((n, "baseline", t_base, m_base, frame_bytes))
    rows.append((n, "pipewarden", t_pw, m_pw, frame_bytes))
    if t_gx is not None and m_gx is not None:
        rows.append((n, "gx", t_gx, m_gx, frame_bytes))
    print(f"  pipewarden on _drift: {drift_summary(pw_drift)}", flush=True)
    verdict = f" (budget <= {budget:.3f}: {'OK' if ratio <= budget else 'OVER'})" if budget else ""
    vs_gx = f"; pipewarden/gx = {t_pw / t_gx:.3f}" if t_gx else ""
    mem_ok = "OK" if m_pw < 1.5 * frame_bytes else "OVER"
    print(
        f"  pipewarden/baseline = {ratio:.3f}{verdict}{vs_gx}; "
        f"peak/frame = {m_pw / frame_bytes:.2f} (budget < 1.5: {mem_ok})",
        flush=True,
    )
    if budget and ratio > budget:
        failures.append(f"{n:,}: pipewarden/baseline {ratio:.3f} over the budget {budget:.3f}")
    if m_pw >= 1.5 * frame_bytes:
        failures.append(f"{n:,}: peak memory {m_pw / frame_bytes:.2f}x the frame")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--no-gx", action="store_true", help="skip the Great Expectations suite")
    ap.add_argument("--data", type=Path, default=HERE.parent / "bench-data")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs after one warm-up (best is shown)")
    args = ap.parse_args(argv)

    rows: list[tuple[Any, ...]] = []
    failures: list[str] = []
    for n in args.sizes:
        bench_size(n, args, rows, failures)
        gc.collect()

    print()
    print("peak = tracemalloc peak of one untimed run; time = best of the timed runs after a warm-up")
    print(
        f"{'rows':>10} {'suite':<11} {'seconds':>8} {'rows/s':>12} {'peak MB':>8} {'frame MB':>9} "
        f"{'peak/frame':>10} {'vs baseline':>11}"
    )
    for n, name, t, m, fb in rows:
        base_t = next(r[2] for r in rows if r[0] == n and r[1] == "baseline")
        print(
            f"{n:>10,} {name:<11} {t:>8.3f} {n / t:>12,.0f} {m / 2**20:>8.0f} {fb / 2**20:>9.0f} "
            f"{m / fb:>10.2f} {t / base_t:>11.3f}"
        )
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        return 1
    print("\nall answers verified; budgets met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
