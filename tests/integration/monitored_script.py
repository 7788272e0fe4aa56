"""A batch script as users write it: three ``@monitor``-ed functions, configured by the environment.

Run as ``python monitored_script.py --runs N [--fail-every K] [--summary PATH] [--wait]``.
Each run extracts a frame, transforms it (a failing run raises in ``transform``) and
returns the rows. Nothing names a pipeline, so every call is recorded under the script's
name, ``monitored_script``. The process-default telemetry comes from the ``OTEL_*`` and
``PIPEWARDEN_*`` variables, exactly as for a user's script.

When the runs are done, spans are flushed and a JSON summary (runs, failures, results,
export errors as this process counted them) is written to ``--summary`` (or stdout).
With ``--wait`` the process then stays up, serving ``/metrics`` if configured, until its
stdin closes. Exit code 0 when every run succeeded, 1 when some failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import pandas as pd

from agent.monitor import monitor
from agent.telemetry import get_telemetry

ROWS = 4
log = logging.getLogger("monitored_script")


def non_empty(df: pd.DataFrame) -> bool:
    return len(df) > 0


@monitor()
def extract(i: int) -> pd.DataFrame:
    return pd.DataFrame({"order_id": range(i * ROWS, (i + 1) * ROWS), "amount": [9.5] * ROWS})


@monitor(checks=[non_empty])
def transform(df: pd.DataFrame, *, fail: bool) -> pd.DataFrame:
    log.info("transforming %d rows", len(df))
    if fail:
        raise ValueError("amount column is corrupt")
    return df[df["amount"] > 0]


@monitor()
def run(i: int, *, fail: bool) -> int:
    return len(transform(extract(i), fail=fail))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--fail-every", type=int, default=0, help="run i fails when (i + 1) %% K == 0; 0: no run fails")
    parser.add_argument("--summary", type=Path)
    parser.add_argument("--wait", action="store_true", help="stay up until stdin closes")
    args = parser.parse_args(argv)

    results: list[int | None] = []
    for i in range(args.runs):
        fail = args.fail_every > 0 and (i + 1) % args.fail_every == 0
        try:
            results.append(run(i, fail=fail))
        except ValueError:
            results.append(None)

    tel = get_telemetry()
    tel.tracer_provider.force_flush()
    errors = {
        s.labels["exporter"]: s.value
        for family in tel.metrics.registry.collect()
        if family.name == "pipewarden_export_errors"
        for s in family.samples
        if s.name.endswith("_total")
    }
    summary = json.dumps(
        {"runs": args.runs, "failed": results.count(None), "results": results, "export_errors": errors}
    )
    if args.summary:
        tmp = args.summary.with_suffix(".tmp")
        tmp.write_text(summary)
        os.replace(tmp, args.summary)  # the test polls for the file: never let it see half of it
    else:
        print(summary, flush=True)

    if args.wait:
        sys.stdin.read()  # returns when the test closes our stdin
    tel.shutdown()
    return 1 if None in results else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
