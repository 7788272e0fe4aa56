"""A pipeline for the crash-and-resume test: one task waits for a gate file.

Each task appends its name to ``$PIPEWARDEN_EXAMPLE_MARKER`` when it finishes,
so a test can count executions; ``wait_for_gate`` appends ``wait_for_gate:start``
when it starts and blocks until ``$PIPEWARDEN_EXAMPLE_GATE`` exists.

    extract ──> wait_for_gate ──> load
    side ─────────────────────────^
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from agent.pipeline import Pipeline

pipe = Pipeline("resumable", max_workers=2)


def _mark(text: str) -> None:
    marker = os.environ.get("PIPEWARDEN_EXAMPLE_MARKER")
    if marker:
        with open(marker, "a") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())


@pipe.task(persist=True)
def extract() -> pd.DataFrame:
    df = pd.DataFrame({"order_id": [1, 2, 3], "amount": [10.0, 20.0, 30.0]})
    _mark("extract")
    return df


@pipe.task
def side() -> None:
    _mark("side")


@pipe.task(persist=True)
def wait_for_gate(extract: pd.DataFrame) -> pd.DataFrame:
    _mark("wait_for_gate:start")
    gate = Path(os.environ.get("PIPEWARDEN_EXAMPLE_GATE", "/nonexistent-gate"))
    while not gate.exists():
        time.sleep(0.02)
    _mark("wait_for_gate")
    return extract


@pipe.task(depends_on=[side])
def load(wait_for_gate: pd.DataFrame) -> int:
    _mark("load")
    return len(wait_for_gate)
