"""Per-call overhead of ``@monitor`` and the cost of ``import agent``.

Prints, measured in this one process (the machine is noisy, so only ratios
within a run mean anything):
  bare call                   a plain function call
  floor                       one SDK span (batch processor) + one histogram observation, by hand
  @monitor, no checks         the decorator on the same function, same provider
  ratio monitor/floor         budget: at most 1.5
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
    """Best-of-repeats mean seconds per call (best: least disturbed by the machine)."""
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

    tel = Telemetry(tracer_provider=provider)
    monitored = monitor(pipeline="bench", telemetry=tel)(work)

    def nested_outer() -> int:
        return monitored()

    outer = monitor(pipeline="bench", task="outer", telemetry=tel)(nested_outer)
    cases = {"bare": (work, calls), "floor": (floor, calls), "monitor": (monitored, calls),
             "monitor_nested_pair": (outer, calls // 2)}
    for f, _ in cases.values():  # warm-up: caches, label children
        _per_call(f, 2000, 1)
    # Interleaved rounds, best of each: every case sees the same spells of machine noise.
    res = {k: float("inf") for k in cases}
    for _ in range(repeats):
        for k, (f, n) in cases.items():
            res[k] = min(res[k], _per_call(f, n, 1))
    provider.shutdown()
    return res


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
        out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE.format(module=module)], cwd=ROOT,
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout))
    return {"seconds": statistics.median(r["seconds"] for r in runs), "heavy": runs[0]["heavy"],
            "otlp": runs[0]["otlp"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()

    r = overhead(a.calls, a.repeats)
    us = {k: v * 1e6 for k, v in r.items()}
    print(f"per-call cost (best of {a.repeats} interleaved rounds of {a.calls} calls)")
    print(f"  bare call                      {us['bare']:8.2f} us")
    print(f"  floor: 1 span + 1 observation  {us['floor']:8.2f} us")
    print(f"  @monitor, no checks            {us['monitor']:8.2f} us")
    print(f"  @monitor nested pair (2 calls) {us['monitor_nested_pair']:8.2f} us")
    print(f"  overhead above bare call       {us['monitor'] - us['bare']:8.2f} us")
    ratio = r["monitor"] / r["floor"]
    print(f"  ratio @monitor / floor         {ratio:8.2f}   (budget <= 1.50: {'ok' if ratio <= 1.5 else 'OVER'})")

    print("import cost (median of 5 fresh processes)")
    for module in ("pandas", "agent", "agent.monitor"):
        c = import_cost(module)
        print(f"  import {module:<14} {c['seconds'] * 1e3:8.1f} ms   heavy modules loaded: "
              f"{', '.join(c['heavy']) or '-'}; OTLP exporter loaded: {c['otlp']}")


if __name__ == "__main__":
    main()
