"""A short-lived batch script, as users write them: record one pipeline run, push, exit.

Run as ``python short_lived_job.py URL --status success|failed --now UNIX_TIME``; the
exit code is 0 when the Pushgateway took the push, 1 when it did not. Task ``extract``
always succeeds; task ``load`` fails when the run fails.
"""

from __future__ import annotations

import argparse
import sys

from exporters.metrics import Metrics
from exporters.prometheus import push


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--status", choices=("success", "failed"), required=True)
    parser.add_argument("--now", type=float, required=True)
    parser.add_argument("--pipeline", default="orders")
    parser.add_argument("--instance", default="batch-host")
    args = parser.parse_args(argv)

    m = Metrics()
    ok = args.status == "success"
    pipeline, now = args.pipeline, args.now
    m["pipewarden_task_runs_total"].labels(pipeline, "extract", "success").inc()
    m["pipewarden_task_last_success_timestamp_seconds"].labels(pipeline, "extract").set(now)
    m["pipewarden_task_runs_total"].labels(pipeline, "load", args.status).inc()
    m["pipewarden_task_duration_seconds"].labels(pipeline, "load", args.status).observe(1.5)
    if ok:
        m["pipewarden_task_last_success_timestamp_seconds"].labels(pipeline, "load").set(now)
        m["pipewarden_pipeline_last_success_timestamp_seconds"].labels(pipeline).set(now)
    else:
        m["pipewarden_pipeline_last_failure_timestamp_seconds"].labels(pipeline).set(now)
    m["pipewarden_pipeline_runs_total"].labels(pipeline, args.status).inc()
    m["pipewarden_pipeline_up"].labels(pipeline).set(1 if ok else 0)
    pushed = push(m, args.url, pipeline=pipeline, instance=args.instance, success=ok)
    return 0 if pushed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
