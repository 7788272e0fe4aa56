"""A cron job as users write them: ``@monitor`` on plain functions, configured by the environment.

``python kpi_cronjob.py VERSION:MODE [VERSION:MODE ...]`` makes one run per argument, where
MODE is ``ok``, ``fail`` (the job raises after cleaning) or ``dups`` (duplicate ids: the
``unique`` check fails, with the warn policy, and the run still succeeds). With ``--serve``
the process reads more such arguments from stdin, one line at a time, answers ``done`` after
each line, and exits when stdin closes (for a scrape of its ``/metrics``).
"""

from __future__ import annotations

import contextlib
import sys

import pandas as pd

from agent import monitor
from checks import unique


@monitor(checks=[unique("id")])
def clean(df: pd.DataFrame) -> pd.DataFrame:
    return df


def run(spec: str) -> None:
    version, mode = spec.split(":")

    @monitor(pipeline="cronjob", task="job", version=version)
    def job() -> pd.DataFrame:
        df = clean(pd.DataFrame({"id": [1, 2, 2] if mode == "dups" else [1, 2, 3]}))
        if mode == "fail":
            raise RuntimeError("source is down")
        return df

    with contextlib.suppress(RuntimeError):  # a failed run is recorded; the cron job goes on
        job()


def main(argv: list[str]) -> int:
    serve = "--serve" in argv
    for spec in (a for a in argv if a != "--serve"):
        run(spec)
    if serve:
        print("done", flush=True)
        for line in sys.stdin:
            for spec in line.split():
                if ":" in spec:
                    run(spec)
                else:  # an orchestrator run in this process: FILE=dups|ok
                    from agent import run as run_pipeline
                    from agent.loader import load_pipeline
                    from agent.telemetry import get_telemetry

                    target, mode = spec.split("=")
                    run_pipeline(load_pipeline(target), {"dups": mode == "dups"}, telemetry=get_telemetry())
            print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
