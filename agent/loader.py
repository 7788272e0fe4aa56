"""Loading a pipeline from a file path (``path/to/file.py[:pipeline]``), and its version.

The file is imported as a module named ``pipewarden_pipelines.<stem>_<hash>``
and registered in ``sys.modules``, so its functions pickle by reference in
forked workers and by value for Dask.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from agent.errors import ConfigError, PipewardenError
from agent.pipeline import Pipeline

__all__ = ["LOADED_PREFIX", "load_pipeline", "load_pipelines", "split_target"]

#: Prefix of the module names pipeline files are imported under (their functions travel by value to Dask workers).
LOADED_PREFIX = "pipewarden_pipelines."


def split_target(target: str) -> tuple[Path, str | None]:
    """``"dir/file.py:orders"`` -> (Path("dir/file.py"), "orders"); the name is optional."""
    path, sep, name = target.rpartition(":")
    if not sep or not path or "/" in name or "\\" in name or name.endswith(".py"):
        return Path(target), None
    return Path(path), name or None


def load_pipelines(path: str | os.PathLike[str]) -> dict[str, Pipeline]:
    """Every :class:`Pipeline` a file defines at module level, by pipeline name."""
    file = Path(path).resolve()
    if file.is_dir():
        raise ConfigError(f"{path} is a directory; pass a pipeline file: path/to/file.py[:pipeline]", path=str(path))
    if not file.is_file():
        raise ConfigError(f"pipeline file {path} does not exist; pass path/to/file.py[:pipeline]", path=str(path))
    digest = hashlib.sha256(str(file).encode()).hexdigest()[:8]
    modname = f"{LOADED_PREFIX}{_identifier(file.stem)}_{digest}"
    module = sys.modules.get(modname)
    mtime = file.stat().st_mtime_ns
    if (
        module is None
        or getattr(module, "__file__", None) != str(file)
        or getattr(module, "__pipewarden_mtime__", mtime) != mtime
    ):  # edited since: import it again
        spec = importlib.util.spec_from_file_location(modname, file)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot import {path}: not a Python file", path=str(path))
        module = importlib.util.module_from_spec(spec)
        _ensure_package()
        sys.modules[modname] = module
        if str(file.parent) not in sys.path:  # sibling modules of the pipeline file import as usual
            sys.path.insert(0, str(file.parent))
        module.__pipewarden_mtime__ = mtime  # type: ignore[attr-defined]
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[modname]
            tb = traceback.extract_tb(exc.__traceback__)
            line = next((f.lineno for f in reversed(tb) if f.filename == str(file)), None)
            where = f"{path}:{line}" if line else str(path)
            if isinstance(exc, PipewardenError):  # a declaration pipewarden refused: its own message says it all
                raise ConfigError(f"{where}: {exc}", path=str(path), line=line) from exc
            raise ConfigError(
                f"{where}: importing the pipeline file failed: {type(exc).__name__}: {exc}", path=str(path), line=line
            ) from exc
    found: dict[str, Pipeline] = {}
    for value in vars(module).values():
        if isinstance(value, Pipeline):
            value.source = str(file)
            found.setdefault(value.name, value)
    return found


def load_pipeline(target: str) -> Pipeline:
    """The pipeline named in ``file.py:name``, or the only pipeline of ``file.py``; validated."""
    path, name = split_target(target)
    pipelines = load_pipelines(path)
    if not pipelines:
        raise ConfigError(
            f"{path} defines no Pipeline at module level; write pipe = Pipeline('name') "
            "and decorate tasks with @pipe.task",
            path=str(path),
        )
    if name is None:
        if len(pipelines) > 1:
            raise ConfigError(
                f"{path} defines several pipelines ({', '.join(sorted(pipelines))}); pick one with {path}:NAME",
                path=str(path),
            )
        pipe = next(iter(pipelines.values()))
    else:
        if name not in pipelines:
            raise ConfigError(
                f"{path} has no pipeline {name!r}; it defines {', '.join(sorted(pipelines))}", path=str(path)
            )
        pipe = pipelines[name]
    pipe.graph()
    return pipe


def _identifier(stem: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in stem)
    return out if out and not out[0].isdigit() else f"p_{out}"


def _ensure_package() -> None:
    # A namespace parent so "pipewarden_pipelines.x" is a well-formed dotted name for pickle.
    parent = LOADED_PREFIX.rstrip(".")
    if parent not in sys.modules:
        import types

        pkg: Any = types.ModuleType(parent)
        pkg.__path__ = []
        sys.modules[parent] = pkg
