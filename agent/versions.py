"""What version of a pipeline ran: its file's git commit, or a hash of its source.

The version is what change failure rate counts changes of: the first run of a
new version is a change, and a change whose run failed is a failed change.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

__all__ = ["source_version"]


def source_version(path: str | os.PathLike[str] | None, *, fallback: str | Callable[[], str] = "") -> str:
    """The last git commit of ``path`` when it is tracked and unmodified, else a short sha256 of its text.

    Without a file, a sha256 of ``fallback`` (text, or a function giving it: called only then).
    """
    if path is None or not os.path.isfile(path):
        text = fallback() if callable(fallback) else fallback
        return hashlib.sha256(text.encode()).hexdigest()[:12]
    file = Path(path)
    return _git_commit(file) or hashlib.sha256(file.read_bytes()).hexdigest()[:12]


def _git_commit(file: Path) -> str | None:
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", file.name],
            cwd=file.parent,
            capture_output=True,
            text=True,
            timeout=5,
            env=env,
        )
        if status.returncode != 0 or status.stdout.strip():
            return None  # not a repository, or the file is modified / untracked
        log = subprocess.run(
            ["git", "log", "-1", "--format=%h", "--abbrev=12", "--", file.name],
            cwd=file.parent,
            capture_output=True,
            text=True,
            timeout=5,
            env=env,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = log.stdout.strip()
    return commit if log.returncode == 0 and commit else None
