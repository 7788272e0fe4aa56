"""Dynamic task mapping (Airflow's ``.expand``, Prefect's ``.map``, Hamilton's ``Parallelizable``):
count the rows of every CSV file found in a directory when the run starts.

    list_files ──> count_rows[0..n] ──> summarize

``count_rows`` runs once per file, at most two at once; a file that cannot be read
yet (``*.partial`` beside it) fails that item, which is retried on its own.
Run it with ``pipewarden run examples/pipelines/mapped_files.py -p inbox=DIR``.
"""

from __future__ import annotations

from pathlib import Path

from agent.pipeline import Pipeline

pipe = Pipeline("mapped_files", params={"inbox": "inbox"})


@pipe.task
def list_files(inbox: str) -> list[str]:
    return sorted(str(p) for p in Path(inbox).glob("*.csv"))


@pipe.task(map="list_files", max_parallel=2, retries=2, retry_delay=0.2)
def count_rows(list_files: str) -> int:
    partial = Path(list_files + ".partial")
    if partial.exists():  # still being written: this item fails, the others go on
        partial.unlink()
        raise OSError(f"{list_files} is still being written")
    return sum(1 for _ in open(list_files)) - 1  # minus the header


@pipe.task
def summarize(list_files: list[str], count_rows: list[int]) -> dict[str, int]:
    return {Path(f).name: n for f, n in zip(list_files, count_rows, strict=True)}
