"""A long-lived agent for the dashboards' proof: runs examples/pipelines/payments.py in-process, serves /metrics.

Run as ``python live_agent.py PIPELINE_FILE --pause SECONDS`` with ``PIPEWARDEN_METRICS_PORT``
set. The runs follow the proof's scenario (see ``STEPS``), ``--pause`` apart so Prometheus
scrapes between them; a scheduler in the process starts two of them, skipping due ticks
once. It prints ``done`` when the last run ended, then serves until its stdin closes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from typing import Any

from agent.events import RunEnded
from agent.loader import load_pipeline
from agent.runner import Runner
from agent.scheduler import Scheduler
from agent.store import open_store
from agent.telemetry import get_telemetry

#: (parameters, new version or None); "scheduled" runs come from a scheduler tick.
STEPS: list[tuple[str, dict[str, Any]]] = [
    ("scheduled", {}),
    ("run", {"rows": 420}),
    ("run", {"null_share": 0.5}),  # the not_null gate stops the run
    ("run", {"flaky": True}),  # a retry, then the recovery
    ("change", {"fail_load": True}),  # a new version whose first run fails: a failed change
    ("run", {"shift": 40.0}),  # amounts drift (a warning); the second recovery
    ("late", {}),  # the scheduler comes back late: missed ticks, one run
]


def broken_listener(event: Any) -> None:
    """A run-event listener that fails: the runs go on, pipewarden_listener_errors_total counts it."""
    raise RuntimeError("the proof's listener always fails")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("pipeline_file")
    parser.add_argument("--pause", type=float, default=1.5)
    args = parser.parse_args(argv)

    tel = get_telemetry()
    tel.bus.add(broken_listener, inline=True, name="proof-listener", events=(RunEnded,))
    pipe = load_pipeline(args.pipeline_file)
    # Three hours ago, between two ticks of "every 15m": the scheduled runs' data is fresh enough.
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    t0 = now - dt.timedelta(hours=3, minutes=now.minute % 15) + dt.timedelta(minutes=7)
    with open_store(None) as store:
        runner = Runner(store=store, telemetry=tel)
        scheduler = Scheduler(store, [pipe], telemetry=tel)
        assert scheduler.tick(t0) == []  # first sight, between ticks: nothing is due
        for kind, params in STEPS:
            if kind in ("scheduled", "late"):
                later = dt.timedelta(minutes=15) if kind == "scheduled" else dt.timedelta(hours=3)
                for due in scheduler.tick(t0 + later):
                    runner.run(pipe, run_id=due.run_id)
            else:
                if kind == "change":
                    pipe.version = "proof-v2"
                runner.run(pipe, params=params)
            time.sleep(args.pause)
    print("done", flush=True)
    sys.stdin.read()  # returns when the test closes our stdin
    tel.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
