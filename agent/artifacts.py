"""Task outputs kept on disk so a resumed run need not compute them again.

``$PIPEWARDEN_HOME/artifacts/<run>/<task>.parquet`` for DataFrames, ``.pkl``
for other picklable values. A file is written under a temporary name and
renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

from exporters.files import make_private_dirs, write_atomic

__all__ = ["NONE_REF", "load_output", "save_output"]

log = logging.getLogger("pipewarden.artifacts")

#: ``output_ref`` of a task that returned None: nothing to keep, nothing to recompute.
NONE_REF = "none"


def save_output(directory: str | os.PathLike[str], run_id: str, task: str, value: Any) -> str | None:
    """Write ``value`` and return its reference, or None when it cannot be kept (logged)."""
    if value is None:
        return NONE_REF
    folder = make_private_dirs(Path(directory) / run_id)
    if _is_dataframe(value):
        path = folder / f"{task}.parquet"
        try:
            write_atomic(path, value.to_parquet)
            return str(path)
        except Exception as exc:  # non-string column names, exotic dtypes: fall back to pickle
            log.debug("parquet failed for %s/%s (%s); pickling instead", run_id, task, exc)
    path = folder / f"{task}.pkl"
    try:
        write_atomic(path, lambda f: pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as exc:
        log.warning("output of task %r in run %s cannot be saved (%s: %s); a resume will run it again",
                    task, run_id, type(exc).__name__, exc)
        return None
    return str(path)


def load_output(ref: str) -> Any:
    """The value behind a reference from :func:`save_output`; raises OSError when it is gone."""
    if ref == NONE_REF:
        return None
    if ref.endswith(".parquet"):
        import pandas as pd

        return pd.read_parquet(ref)
    with open(ref, "rb") as f:
        return pickle.load(f)


def _is_dataframe(value: Any) -> bool:
    return type(value).__module__.startswith("pandas") and hasattr(value, "to_parquet")
