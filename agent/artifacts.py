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

__all__ = ["NONE_REF", "load_output", "save_output"]

log = logging.getLogger("pipewarden.artifacts")

#: ``output_ref`` of a task that returned None: nothing to keep, nothing to recompute.
NONE_REF = "none"


def save_output(directory: str | os.PathLike[str], run_id: str, task: str, value: Any) -> str | None:
    """Write ``value`` and return its reference, or None when it cannot be kept (logged)."""
    if value is None:
        return NONE_REF
    folder = Path(directory) / run_id
    folder.mkdir(parents=True, exist_ok=True)
    if _is_dataframe(value):
        path = folder / f"{task}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        try:
            value.to_parquet(tmp)
            os.replace(tmp, path)
            return str(path)
        except Exception as exc:  # non-string column names, exotic dtypes: fall back to pickle
            log.debug("parquet failed for %s/%s (%s); pickling instead", run_id, task, exc)
            tmp.unlink(missing_ok=True)
    path = folder / f"{task}.pkl"
    tmp = path.with_suffix(".pkl.tmp")
    try:
        with open(tmp, "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
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
