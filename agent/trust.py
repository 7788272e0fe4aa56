"""What pipewarden may load again: nothing that another user could have written.

Resume reads back task outputs from the state directory and imports the
pipeline file whose path the run store recorded. Whoever can write either can
make the next ``pipewarden runs resume`` run code as the user. So before
loading or importing, every directory from the state directory down to the
file, and the file, must be owned by the user (or root) and writable by no one
else; otherwise :class:`~agent.errors.UntrustedPathError` says what to fix.

A group-writable file is accepted only when the group is the user's own
private group (the usual "user private group" of Debian and Ubuntu, umask 002).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from agent.errors import UntrustedPathError

__all__ = ["chain", "require_trusted", "untrusted"]


def untrusted(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be trusted (another owner, writable by others), or None when it can."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None  # nothing there to load
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        return f"{path} belongs to uid {st.st_uid}, not to you (uid {me})"
    if st.st_mode & stat.S_IWOTH and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX and st.st_uid == 0):
        return f"{path} is writable by every user"
    if st.st_mode & stat.S_IWGRP and not _own_private_group(st.st_gid):
        return f"{path} is writable by group {_group_name(st.st_gid)}"
    return None


def require_trusted(paths: Iterable[str | os.PathLike[str]], *, what: str) -> None:
    """Raise UntrustedPathError for the first of ``paths`` another user could have written."""
    for path in paths:
        reason = untrusted(path)
        if reason is not None:
            p = Path(path)
            fix = f"chmod 700 {p}" if p.is_dir() else f"chmod 600 {p}"
            if "belongs to" in reason:
                fix = f"chown {os.geteuid()} {p} && {fix}, or use a state directory of your own (PIPEWARDEN_HOME)"
            raise UntrustedPathError(
                f"refusing to {what}: {reason}, so another user could have put code there; "
                f"if that is not so, fix it with: {fix}",
                path=str(p),
            )


def chain(home: Path, target: Path) -> list[Path]:
    """``home`` and every directory below it down to ``target``, then ``target`` (target must be inside home)."""
    home, target = Path(os.path.abspath(home)), Path(os.path.abspath(target))
    rel = target.relative_to(home)  # ValueError when outside
    out = [home]
    for part in rel.parts:
        out.append(out[-1] / part)
    return out


def _own_private_group(gid: int) -> bool:
    try:
        import grp
        import pwd

        me = pwd.getpwuid(os.geteuid())
        group = grp.getgrgid(gid)
    except (ImportError, KeyError):
        return False
    return gid == me.pw_gid and group.gr_name == me.pw_name and not [m for m in group.gr_mem if m != me.pw_name]


def _group_name(gid: int) -> str:
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return str(gid)
