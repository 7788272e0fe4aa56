"""The smallest pipeline: one task, no data libraries (``bench/orchestrator.py`` times it as a process).

python -m agent run examples/pipelines/one_task.py
"""

from __future__ import annotations

from agent.pipeline import Pipeline

pipe = Pipeline("one_task")


@pipe.task
def hello(run_id: str) -> str:
    return f"hello from run {run_id}"
