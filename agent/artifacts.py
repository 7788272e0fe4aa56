"""Task outputs kept so that a resumed run starts after the last finished task.

A task's output is kept when a task downstream takes it by parameter (nothing
else will ever need it again), in a format that loads back no code:

- pandas DataFrames and Series, pyarrow Tables and RecordBatches, polars
  DataFrames: an Arrow IPC file (pandas index, dtypes and names come back from
  the pandas metadata); a pandas frame whose column names are not all strings
  is not kept, as they would come back as strings;
- JSON values (None, bools, ints, floats, strings, and lists and string-keyed
  dicts of them, exactly those types): JSON, in the run store itself when
  under 64 KiB, else a ``.json`` file;
- anything else only with ``persist="pickle"`` (a pickle runs code when it is
  loaded: the task must opt in). Otherwise the output is not kept; the task's
  record says why, and a resume that needs it says it will run the task again.

An output reference (``TaskAttempt.output_ref``) is ``"none"`` (the task
returned None), ``"json:<text>"``, or a path relative to the state directory,
``artifacts/<run>/<task>.<ext>``; a cached output's (:func:`save_cached`) names
its file under ``cache/`` and that file's SHA-256 (``...#sha256=<hex>``), checked
before it is loaded. Files are written private (``0600``) under a
temporary name and renamed; before a file is read back, :mod:`agent.trust`
checks that no other user could have written it or its directories.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import shutil
import warnings
from pathlib import Path
from typing import Any

from agent.trust import chain, require_trusted
from exporters.files import make_private_dirs, write_atomic

__all__ = [
    "NONE_REF",
    "load_output",
    "output_problem",
    "remove_cached",
    "remove_outputs",
    "save_cached",
    "save_output",
]

log = logging.getLogger("pipewarden.artifacts")

#: ``output_ref`` of a task that returned None: nothing to keep, nothing to recompute.
NONE_REF = "none"
#: Prefix of an output kept as JSON in the run store itself.
JSON_REF = "json:"
#: JSON outputs up to this size are kept in the run store, larger ones in a file.
INLINE_JSON_BYTES = 64 * 1024
ARTIFACTS = "artifacts"
#: Outputs cached across runs (``cache=`` on a task) live here, one folder per pipeline and task.
CACHE = "cache"

_SAFE_SCALARS = (type(None), bool, int, float, str)
#: Separates a cached file's reference from the SHA-256 of its bytes (``cache/<folder>/<key>.arrow#sha256=<hex>``).
_DIGEST = "#sha256="


def save_output(
    home: str | os.PathLike[str], run_id: str, task: str, value: Any, *, allow_pickle: bool = False
) -> tuple[str | None, str | None]:
    """Keep ``value``: ``(reference, None)``, or ``(None, why it was not kept)``."""
    return _save(home, f"{ARTIFACTS}/{run_id}", task, value, allow_pickle=allow_pickle, what=f"in run {run_id}")


def save_cached(
    home: str | os.PathLike[str], pipeline: str, task: str, key: str, value: Any, *, allow_pickle: bool = False
) -> tuple[str | None, str | None]:
    """Keep ``value`` as the cached output of ``task`` under ``key`` (outside any run's folder: it outlives
    the run); ``(reference, None)`` or ``(None, why it was not kept)``."""
    folder = hashlib.sha256(f"{pipeline}\0{task}".encode()).hexdigest()[:16]  # names need not be path-safe
    ref, why = _save(home, f"{CACHE}/{folder}", key, value, allow_pickle=allow_pickle, what="in the cache")
    if ref is None or ref == NONE_REF or ref.startswith(JSON_REF):
        return ref, why
    # The reference carries the file's digest: a cached file outlives its run and is read by every later one, so
    # one that was truncated, damaged or swapped since is detected before it is served.
    path = _resolve(Path(home), ref)
    assert path is not None
    try:
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        return None, f"it could not be read back ({exc})"
    return f"{ref}{_DIGEST}{digest}", None


def remove_cached(home: str | os.PathLike[str], ref: str, *, keep: str | None = None) -> None:
    """Delete the file of a cached output no cache entry names any more, unless it is the file of ``keep``
    (the entry that replaced it, written to the same name with other bytes); never raises."""
    if ref == NONE_REF or ref.startswith(JSON_REF) or not ref.startswith(f"{CACHE}/"):
        return
    if keep is not None and keep.partition(_DIGEST)[0] == ref.partition(_DIGEST)[0]:
        return
    path = _resolve(Path(home), ref)
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def _save(
    home: str | os.PathLike[str], folder: str, task: str, value: Any, *, allow_pickle: bool, what: str
) -> tuple[str | None, str | None]:
    if value is None:
        return NONE_REF, None
    kind = _frame_kind(value)
    try:
        if kind is not None:
            return _save_frame(Path(home), folder, task, value, kind), None
        if _is_json(value):
            text = json.dumps(value, separators=(",", ":"))
            if len(text) <= INLINE_JSON_BYTES:
                return JSON_REF + text, None
            return _write(Path(home), folder, f"{task}.json", text.encode()), None
    except _NotKept as exc:
        if not allow_pickle:
            return None, str(exc)
    except Exception as exc:  # an exotic dtype pyarrow cannot write, a full disk
        if not allow_pickle:
            log.warning(
                "output of task %r %s cannot be kept (%s: %s); a resume will run it again",
                task,
                what,
                type(exc).__name__,
                exc,
            )
            return None, f"it could not be written ({type(exc).__name__}: {exc})"
    if not allow_pickle:
        return None, (
            f"a {type(value).__module__}.{type(value).__qualname__} is neither a frame nor plain JSON; "
            "persist='pickle' keeps it"
        )
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return _write(Path(home), folder, f"{task}.pkl", data), None
    except Exception as exc:
        log.warning(
            "output of task %r %s cannot be pickled (%s: %s); a resume will run it again",
            task,
            what,
            type(exc).__name__,
            exc,
        )
        return None, f"it cannot be pickled ({type(exc).__name__}: {exc})"


def output_problem(home: str | os.PathLike[str], ref: str | None, *, allow_pickle: bool = False) -> str | None:
    """Why the output behind ``ref`` cannot be loaded back (gone, a pickle not opted into), or None.

    Raises :class:`~agent.errors.UntrustedPathError` when the file or a
    directory above it (up to the state directory) could have been written by another user.
    """
    if ref is None:
        return "it was not kept"
    if ref == NONE_REF or ref.startswith(JSON_REF):
        return None
    path = _resolve(Path(home), ref)
    if path is None:
        return f"its file {ref} is outside the state directory {home}"
    if not path.is_file():
        return f"its file {path} is gone"
    if path.suffix == ".pkl" and not allow_pickle:
        return "it was pickled, and the task does not opt into loading pickles (persist='pickle')"
    require_trusted(chain(Path(home), path), what=f"load the output kept in {path}")
    if _DIGEST in ref:
        try:
            with path.open("rb") as f:
                return _altered(path, ref, hashlib.file_digest(f, "sha256").hexdigest())
        except OSError as exc:
            return f"its file {path} cannot be read ({exc})"
    return None


def _altered(path: Path, ref: str, digest: str) -> str | None:
    """Why the file at ``path``, whose bytes hash to ``digest``, is not what ``ref`` names, or None."""
    want = ref.partition(_DIGEST)[2]
    if want and digest != want:
        return f"its file {path} does not hold what was kept (its SHA-256 differs: damaged, truncated or replaced)"
    return None


def load_output(home: str | os.PathLike[str], ref: str, *, allow_pickle: bool = False) -> Any:
    """The value behind a reference from :func:`save_output`.

    Raises OSError when it cannot be loaded, UntrustedPathError when another user could have written it.
    """
    if ref == NONE_REF:
        return None
    if ref.startswith(JSON_REF):
        return json.loads(ref[len(JSON_REF) :])
    problem = output_problem(home, ref.partition(_DIGEST)[0], allow_pickle=allow_pickle)
    if problem is not None:
        raise FileNotFoundError(f"the output cannot be loaded: {problem}")
    path = _resolve(Path(home), ref)
    assert path is not None
    data = path.read_bytes()  # once: the bytes whose digest is checked are the bytes loaded
    altered = _altered(path, ref, hashlib.sha256(data).hexdigest()) if _DIGEST in ref else None
    if altered is not None:
        raise OSError(f"the output cannot be loaded: {altered}")
    name = path.name
    if name.endswith(".json"):
        return json.loads(data)
    if name.endswith(".pkl"):
        return pickle.loads(data)
    if name.endswith(".parquet"):  # written by earlier versions
        import io

        import pandas as pd

        return pd.read_parquet(io.BytesIO(data))
    return _load_frame(path, data)


def remove_outputs(home: str | os.PathLike[str], run_id: str) -> None:
    """Delete the files kept for ``run_id`` (it succeeded, or retention dropped it); never raises."""
    if not run_id or os.sep in run_id or run_id in (".", ".."):
        return
    shutil.rmtree(Path(home) / ARTIFACTS / run_id, ignore_errors=True)


# --- frames --------------------------------------------------------------------------------


class _NotKept(Exception):
    """The value is of a kept kind but cannot be kept faithfully; the message says why."""


def _frame_kind(value: Any) -> str | None:
    t = type(value)
    module = (t.__module__ or "").partition(".")[0]
    name = t.__name__
    if module == "pandas" and name in ("DataFrame", "Series"):
        return f"pandas-{name.lower()}"
    if module == "pyarrow" and name in ("Table", "RecordBatch"):
        return f"arrow-{name.lower()}"
    if module == "polars" and name == "DataFrame":
        return "polars"
    return None


def _save_frame(home: Path, folder: str, task: str, value: Any, kind: str) -> str:
    import pyarrow as pa

    if kind == "pandas-series":
        value = value.to_frame(name="__series__" if value.name is None else value.name)
    if kind.startswith("pandas"):
        names = [*value.columns, *(n for n in value.index.names if n is not None)]
        if value.columns.nlevels > 1 or not all(isinstance(c, str) for c in names):
            raise _NotKept(
                "its column names are not all strings (they would come back as strings); persist='pickle' keeps it"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                table = pa.Table.from_pandas(value, nthreads=1)  # a thread pool per call costs more than it saves
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise _NotKept(f"pyarrow cannot store it ({exc}); persist='pickle' keeps it") from None
    elif kind == "polars":
        table = value.to_arrow()
    elif kind == "arrow-recordbatch":
        table = pa.Table.from_batches([value])
    else:
        table = value
    suffix = {"pandas-series": ".series.arrow", "polars": ".polars.arrow", "arrow-recordbatch": ".batch.arrow"}

    def write(f: Any) -> None:
        with pa.ipc.new_file(f, table.schema) as writer:
            writer.write_table(table)

    return _write(home, folder, task + suffix.get(kind, ".arrow"), write)


def _load_frame(path: Path, data: bytes) -> Any:
    import pyarrow as pa

    table = pa.ipc.open_file(pa.py_buffer(data)).read_all()
    name = path.name
    if name.endswith(".polars.arrow"):
        import polars as pl

        return pl.from_arrow(table)
    if name.endswith(".batch.arrow"):
        batches = table.combine_chunks().to_batches()
        return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)
    if table.schema.pandas_metadata is None:
        return table
    frame = table.to_pandas()
    if name.endswith(".series.arrow"):
        series = frame.iloc[:, 0]
        return series.rename(None) if series.name == "__series__" else series
    return frame


def _write(home: Path, folder: str, name: str, data: Any) -> str:
    """Write ``data`` to ``folder/name`` under the state directory; its reference (the relative path)."""
    write_atomic(make_private_dirs(home / folder) / name, data)
    return f"{folder}/{name}"


def _resolve(home: Path, ref: str) -> Path | None:
    """The file of a reference, if it lies in the state directory (older stores kept absolute paths)."""
    ref = ref.partition(_DIGEST)[0]
    path = Path(ref) if os.path.isabs(ref) else home / ref
    try:
        Path(os.path.abspath(path)).relative_to(os.path.abspath(home))
    except ValueError:
        return None
    if ".." in Path(ref).parts:
        return None
    return path


def _is_json(value: Any, depth: int = 0) -> bool:
    """True when ``json.loads(json.dumps(value)) == value`` holds, with the same types (no tuples, no
    int keys, no subclasses)."""
    t = type(value)
    if t in _SAFE_SCALARS:
        return True
    if depth > 100:
        return False
    if t is list:
        return all(_is_json(v, depth + 1) for v in value)
    if t is dict:
        return all(type(k) is str and _is_json(v, depth + 1) for k, v in value.items())
    return False
