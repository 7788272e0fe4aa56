"""Per-call overhead of ``@monitor`` and the cost of ``import agent``.

Prints, measured in this one process (the machine is noisy, so only ratios
within a run mean anything):
  bare call                   a plain function call
  floor                       one SDK span (batch processor) + one histogram observation, by hand
  same span                   the span @monitor makes, by hand, + one observation
  @monitor, no checks         the decorator on the same function, same provider, default settings
  ratios, every round         budget: monitor/floor at most 1.5 in every round
and, in fresh subprocesses, ``import agent`` next to ``import pandas``, plus
the heavy modules ``import agent`` and ``from agent import monitor`` pulled in.

Usage: python bench/instrument.py [--calls 20000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class _Discard:
    """A span exporter that drops spans: measures pipewarden, not disk or network."""

    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


def _per_call(fn, calls: int, repeats: int) -> float:
    """Mean seconds per call over ``calls`` calls (the best of ``repeats`` such means)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def overhead(calls: int, repeats: int) -> dict[str, float]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from prometheus_client import CollectorRegistry, Histogram

    from agent import Telemetry, monitor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Discard(), max_queue_size=1 << 16))  # type: ignore[arg-type]
    tracer = provider.get_tracer("bench")
    hist = Histogram("bench_seconds", "x", ["pipeline", "task"], registry=CollectorRegistry())

    def work() -> int:
        return 1

    child = hist.labels("bench", "work")

    def floor() -> int:
        t0 = time.perf_counter()
        with tracer.start_as_current_span("RUN work"):
            r = work()
        child.observe(time.perf_counter() - t0)
        return r

    from opentelemetry import context, trace
    from opentelemetry.trace import SpanKind

    # The same span @monitor makes, written by hand: the CI/CD attributes it carries, current while
    # the function runs, its result set at the end, plus the one observation.
    same_attrs = {"cicd.pipeline.name": "bench", "cicd.pipeline.task.name": "work"}

    def same_span() -> int:
        t0 = time.perf_counter()
        span = tracer.start_span(
            "RUN bench",
            kind=SpanKind.SERVER,
            attributes={**same_attrs, "cicd.pipeline.run.id": "20260101T000000-000000.1"},
        )
        token = context.attach(trace.set_span_in_context(span))
        try:
            r = work()
        finally:
            context.detach(token)
        span.set_attribute("cicd.pipeline.result", "success")
        span.end()
        child.observe(time.perf_counter() - t0)
        return r

    tel = Telemetry(tracer_provider=provider)
    monitored = monitor(pipeline="bench", telemetry=tel)(work)

    def nested_outer() -> int:
        return monitored()

    outer = monitor(pipeline="bench", task="outer", telemetry=tel)(nested_outer)
    cases = {
        "bare": (work, calls),
        "floor": (floor, calls),
        "same_span": (same_span, calls),
        "monitor": (monitored, calls),
        "monitor_nested_pair": (outer, calls // 2),
    }
    # Interleaved rounds: every case sees the same spells of machine noise. The first round is
    # the first calls this process makes (caches, label children and templates still cold).
    rounds: list[dict[str, float]] = []
    for _ in range(repeats):
        rounds.append({k: _per_call(f, n, 1) for k, (f, n) in cases.items()})
    provider.shutdown()
    return rounds


_IMPORT_PROBE = """
import sys, time, json
t = time.perf_counter()
import {module}
elapsed = time.perf_counter() - t
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {{'great_expectations', 'scipy', 'dask', 'distributed',
        'requests', 'pandas', 'pyarrow'}})
otlp = any(m.startswith('opentelemetry.exporter.otlp') for m in sys.modules)
print(json.dumps({{'seconds': elapsed, 'heavy': heavy, 'otlp': otlp}}))
"""


def import_cost(module: str, repeats: int = 5) -> dict[str, object]:
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", _IMPORT_PROBE.format(module=module)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout))
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "heavy": runs[0]["heavy"],
        "otlp": runs[0]["otlp"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()

    rounds = overhead(a.calls, a.repeats)
    print(f"per-call cost, {a.repeats} interleaved rounds of {a.calls} calls each, every round printed (us)")
    print(
        f"  {'round':>5} {'bare':>6} {'floor':>7} {'same span':>10} {'@monitor':>9} {'nested pair':>12}"
        f" {'monitor/floor':>14} {'monitor/same span':>18}"
    )
    ratios, same = [], []
    for n, r in enumerate(rounds, 1):
        us = {k: v * 1e6 for k, v in r.items()}
        ratios.append(r["monitor"] / r["floor"])
        same.append(r["monitor"] / r["same_span"])
        print(
            f"  {n:>5} {us['bare']:6.2f} {us['floor']:7.2f} {us['same_span']:10.2f} {us['monitor']:9.2f}"
            f" {us['monitor_nested_pair']:12.2f} {ratios[-1]:14.2f} {same[-1]:18.2f}"
        )
    print("  floor: one span (start_as_current_span, no attributes) + one histogram observation, by hand")
    print("  same span: the span @monitor makes (CI/CD attributes, current while the call runs, result) by hand,")
    print("             + one histogram observation")
    print(f"  monitor/floor      median {statistics.median(ratios):.2f}  worst {max(ratios):.2f}  (budget 1.50)")
    print(f"  monitor/same span  median {statistics.median(same):.2f}  worst {max(same):.2f}")

    print("import cost (median of 5 fresh processes)")
    for module in ("pandas", "agent", "agent.monitor"):
        c = import_cost(module)
        print(
            f"  import {module:<14} {c['seconds'] * 1e3:8.1f} ms   heavy modules loaded: "
            f"{', '.join(c['heavy']) or '-'}; OTLP exporter loaded: {c['otlp']}"
        )


if __name__ == "__main__":
    main()
