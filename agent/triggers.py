"""File arrival: which files in a directory are new and finished being written.

A file is offered once its size and modification time have not changed for
``stable_seconds`` (a file still being copied is not picked up half-way).
:meth:`FileTrigger.poll` takes the current time, so tests step the stability
window with an injected clock. With :meth:`FileTrigger.start`, watchdog
reports changes as they happen and a poll only stats those files; without it,
every poll scans the directory.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import ConfigError

__all__ = ["FileTrigger", "StableFile"]

log = logging.getLogger("pipewarden.triggers")


@dataclass(frozen=True, slots=True)
class StableFile:
    """A file that stopped changing: its path, size and modification time (its version)."""

    path: str
    size: int
    mtime_ns: int


class FileTrigger:
    """Files matching ``pattern`` under ``directory`` that are new and stable.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.csv").write_text("x")
    >>> t = FileTrigger(d, "*.csv", stable_seconds=5)
    >>> t.poll(now=100.0)          # first seen: the window starts
    []
    >>> [pathlib.Path(f.path).name for f in t.poll(now=105.0)]
    ['a.csv']
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        pattern: str = "*",
        *,
        stable_seconds: float = 5.0,
        recursive: bool = False,
    ) -> None:
        if stable_seconds < 0:
            raise ConfigError(f"stable_seconds must be >= 0 — got {stable_seconds!r}")
        self.directory = Path(directory).absolute()
        self.pattern = pattern
        self.stable_seconds = stable_seconds
        self.recursive = recursive or "**" in pattern or "/" in pattern
        self._patterns = {pattern, pattern.replace("**/", "")} if recursive or "**" in pattern else {pattern}
        if recursive and "/" not in pattern:
            self._patterns.add(f"*/{pattern}")
        # path -> (size, mtime_ns, time first seen with that signature)
        self._watch: dict[str, tuple[int, int, float]] = {}
        self._done: dict[str, tuple[int, int]] = {}
        self._events: set[str] = set()
        self._events_lock = threading.Lock()
        self._observer: Any = None
        self._scanned = False
        #: Called (from the watcher thread) when a matching file changes: the daemon wakes up.
        self.on_event: Any = None

    # --- watchdog -------------------------------------------------------------------------

    def start(self) -> None:
        """Watch the directory with watchdog (an OS-level watcher thread)."""
        if self._observer is not None:
            return
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        trigger = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if event.is_directory:
                    return
                for p in (getattr(event, "dest_path", None), event.src_path):
                    if p:
                        trigger._event(os.fsdecode(p))

        self.directory.mkdir(parents=True, exist_ok=True)
        observer = Observer()
        observer.schedule(Handler(), str(self.directory), recursive=self.recursive)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def _event(self, path: str) -> None:
        if self._matches(path):
            with self._events_lock:
                self._events.add(path)
            if self.on_event is not None:
                self.on_event()

    def next_due(self) -> float | None:
        """When a file seen changing will have been stable long enough (None: nothing is waiting)."""
        if not self._watch:
            return None
        return min(first for _, _, first in self._watch.values()) + self.stable_seconds

    def pending_events(self) -> int:
        """Files reported by watchdog since the last poll (for tests waiting on the watcher)."""
        with self._events_lock:
            return len(self._events)

    # --- polling ------------------------------------------------------------------------------

    def poll(self, now: float) -> list[StableFile]:
        """Files that are new (or changed since offered) and stable at ``now`` (Unix seconds), oldest first.

        Offer each one once: call :meth:`mark_done` when a run was recorded for it.
        """
        if self._observer is None or not self._scanned:
            candidates = set(self._scan())  # the first poll also finds files that arrived while down
            self._scanned = True
            for gone in [p for p in self._done if p not in candidates]:
                del self._done[gone]  # keeps memory flat in a long-running daemon
        else:
            with self._events_lock:
                candidates, self._events = self._events, set()
        candidates |= set(self._watch)
        stable: list[tuple[int, StableFile]] = []
        for path in candidates:
            try:
                st = os.stat(path)
            except OSError:  # gone (moved away once processed): forget it, or _done grows with every file
                self._watch.pop(path, None)
                self._done.pop(path, None)
                continue
            sig = (st.st_size, st.st_mtime_ns)
            if self._done.get(path) == sig:
                self._watch.pop(path, None)
                continue
            seen = self._watch.get(path)
            if seen is None or (seen[0], seen[1]) != sig:
                self._watch[path] = (*sig, now)
                if self.stable_seconds > 0:
                    continue
                seen = self._watch[path]
            if now - seen[2] >= self.stable_seconds:
                stable.append((st.st_mtime_ns, StableFile(path, st.st_size, st.st_mtime_ns)))
        stable.sort(key=lambda x: (x[0], x[1].path))
        return [f for _, f in stable]

    def mark_done(self, f: StableFile) -> None:
        """Do not offer this version of the file again."""
        self._done[f.path] = (f.size, f.mtime_ns)
        self._watch.pop(f.path, None)

    def _scan(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        it = self.directory.rglob("*") if self.recursive else self.directory.iterdir()
        out = []
        for p in it:
            s = str(p)
            if self._matches(s) and p.is_file():
                out.append(s)
        return out

    def _matches(self, path: str) -> bool:
        try:
            rel = Path(path).relative_to(self.directory)
        except ValueError:
            return False
        if not self.recursive and len(rel.parts) != 1:
            return False
        text = rel.as_posix()
        # "**/" also matches no directory at all, as in glob.
        return any(fnmatch.fnmatch(text, p) for p in self._patterns)
