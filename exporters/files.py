"""The files pipewarden writes: a per-user state directory, private whatever the umask.

The state directory (``PIPEWARDEN_HOME``) holds the run store, task outputs and
spans: data about the user's pipelines, and files that are loaded again
(resume). It is created ``0700`` and every file in it ``0600``, also under
``umask 000``. Its default is per user, not per working directory, so a cron
job (working directory ``$HOME``) and the same script run from the project
keep one history:

>>> str(default_home({"XDG_STATE_HOME": "/state"}))
'/state/pipewarden'
>>> str(default_home({"HOME": "/home/ana"}))
'/home/ana/.local/state/pipewarden'

``agent.settings`` and ``exporters.tracing`` both read it from here, so the
spans file and the run store always share a directory.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "PIPEWARDEN_HOME",
    "default_home",
    "make_private_dirs",
    "open_private_append",
    "tighten",
    "write_atomic",
]

#: The state directory variable (``agent.settings`` documents it).
PIPEWARDEN_HOME = "PIPEWARDEN_HOME"
#: Mode of every directory pipewarden creates in its state directory.
DIR_MODE = 0o700
#: Mode of every file pipewarden writes in its state directory.
FILE_MODE = 0o600


def default_home(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/pipewarden``, else ``~/.local/state/pipewarden`` (the XDG base-directory default)."""
    env = os.environ if env is None else env
    state = env.get("XDG_STATE_HOME", "").strip()
    if state and os.path.isabs(state):  # the spec says to ignore a relative value
        return Path(state) / "pipewarden"
    user_home = env.get("HOME") or os.path.expanduser("~")
    return Path(user_home) / ".local" / "state" / "pipewarden"


def make_private_dirs(path: str | os.PathLike[str], mode: int = DIR_MODE) -> Path:
    """Create ``path`` and its missing parents with ``mode`` exactly (not masked by the umask).

    Directories that exist are left as they are: pipewarden never changes the
    mode of a directory it did not create. Raises OSError (a file in the way,
    no permission).
    """
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode)
        except FileExistsError:  # another process made it meanwhile
            continue
        os.chmod(d, mode)
    if not path.is_dir():
        raise NotADirectoryError(20, "not a directory", str(path))
    return path


def tighten(path: str | os.PathLike[str], mode: int = FILE_MODE) -> None:
    """Give a file of ours ``mode`` when it is only more *readable* (``0644``, as older versions wrote).

    A file that others can write is left alone: whether it can still be trusted
    is for a person to judge (``agent.trust`` refuses to load from it). Never raises.
    """
    with contextlib.suppress(OSError):
        st = os.stat(path)
        if st.st_uid == os.geteuid() and st.st_mode & 0o777 & ~mode and not st.st_mode & 0o022:
            os.chmod(path, mode)


def open_private_append(path: str | os.PathLike[str], mode: int = FILE_MODE) -> int:
    """A file descriptor appending to ``path``, created with ``mode`` (a looser existing file is tightened)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and st.st_mode & 0o777 != mode and not st.st_mode & 0o022:
            os.fchmod(fd, mode)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_atomic(
    path: str | os.PathLike[str], write: Callable[[IO[bytes]], object] | bytes, mode: int = FILE_MODE
) -> Path:
    """Write a file under a temporary name with ``mode``, then rename it over ``path``.

    ``write`` is the bytes, or a function given the open binary file. A reader
    never sees half a file, and the file is never more open than ``mode``.
    """
    path = Path(path)
    # per process and thread: two threads writing the same file (items of a map with equal values, cached under
    # one key) must not write into, or rename away, each other's temporary file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_native_id()}.tmp")
    f = os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode), "wb")
    try:
        with f:
            os.fchmod(f.fileno(), mode)
            if isinstance(write, bytes | bytearray):
                f.write(write)
            else:
                write(f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
