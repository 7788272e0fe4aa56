"""The default run store: one SQLite file in WAL mode, private to the user.

The queries are :mod:`agent.sql_store`'s and :mod:`agent.sql_history`'s; this
module opens the file (refusing another application's), migrates it
(:data:`agent.store.MIGRATIONS`), serialises the process's threads on its one
connection and turns ``sqlite3`` errors into :class:`~agent.errors.StoreError`
messages that say what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from agent.errors import StoreError
from agent.sql_store import SQLRunStore
from agent.store import APPLICATION_ID, SCHEMA_VERSION, statements
from exporters.files import FILE_MODE, make_private_dirs, tighten

__all__ = ["SQLiteRunStore"]


class _Session:
    """The store's one connection, as a :class:`agent.sql_base.Session`."""

    __slots__ = ("_conn", "execute", "executemany")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.execute = conn.execute
        self.executemany = conn.executemany

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")  # the write lock now: no deadlock upgrading a read later
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def lock(self, key: str) -> None:
        """Nothing to do: a transaction holds the file's only write lock."""


class _Guard:
    """``with store._db() as db``: one thread at a time on the connection; sqlite3 errors become StoreError."""

    __slots__ = ("store",)

    def __init__(self, store: SQLiteRunStore) -> None:
        self.store = store

    def __enter__(self) -> _Session:
        store = self.store
        store._lock.acquire()
        if store._session is None:
            store._lock.release()
            raise StoreError(f"run store {store.path} is closed", path=str(store.path))
        return store._session

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        store = self.store
        try:
            if isinstance(exc, sqlite3.Error):
                conn = store._conn
                if conn is not None and conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.rollback()
                raise _store_error(exc, store.path) from exc
        finally:
            store._lock.release()


class SQLiteRunStore(SQLRunStore):
    """The default run store: one SQLite file in WAL mode.

    >>> import tempfile
    >>> with SQLiteRunStore(tempfile.mkdtemp() + "/pipewarden.db") as store:
    ...     store.create_run(run_id="r1", pipeline="orders", trigger="manual", now=0.0)
    True

    ``timeout`` is how long a write waits for another process's lock before
    :class:`~agent.errors.StoreError`. Key history is kept until
    :meth:`prune_keys` (the duplicate check's retention) drops it. ``host``:
    see :class:`agent.sql_base.SQLBase`.
    """

    dialect = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 5.0,
        synchronous: str = "NORMAL",
        host: str | None = None,
    ) -> None:
        super().__init__(host=host)
        self.path = Path(path)
        self.location = str(self.path)
        sync = synchronous.upper()
        if sync not in ("NORMAL", "FULL", "EXTRA"):
            raise StoreError(f"synchronous must be NORMAL, FULL or EXTRA — got {synchronous!r}", path=str(path))
        self.synchronous = sync
        self._lock = threading.RLock()
        self._guard = _Guard(self)
        self._conn: sqlite3.Connection | None = None
        self._session: _Session | None = None
        try:
            make_private_dirs(self.path.parent)
            existed = _create_private(self.path)
        except OSError as exc:
            raise StoreError(
                f"run store {self.path} cannot be created: {exc.strerror or exc} at "
                f"{exc.filename or self.path.parent}; set PIPEWARDEN_HOME (or --home) to a writable directory",
                path=str(self.path),
            ) from exc
        try:
            conn = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False, cached_statements=256
            )
        except sqlite3.Error as exc:
            raise _store_error(exc, self.path) from exc
        self._conn = conn
        try:
            _identify(conn, self.path)  # before anything writes: another application's file stays untouched
            if existed:
                for f in (
                    self.path,
                    self.path.with_name(self.path.name + "-wal"),
                    self.path.with_name(self.path.name + "-shm"),
                ):
                    tighten(f)  # a store written 0644 by an older version
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={sync}")
            self._migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            self._conn = None
            raise _store_error(exc, self.path) from exc
        except StoreError:
            conn.close()
            self._conn = None
            raise
        self._session = _Session(conn)

    def __repr__(self) -> str:
        return f"<SQLiteRunStore {str(self.path)!r}>"

    def _db(self) -> _Guard:
        return self._guard

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"run store {self.path} is closed", path=str(self.path))
        return self._conn

    @property
    def closed(self) -> bool:
        return self._conn is None

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.path.parent, self.path)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        # The header first: another process opening the new file between the two statements must see a
        # pipewarden store, not a lone schema_version table it would refuse as another application's.
        if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
        current = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"run store {self.path} has schema version {current}, newer than this pipewarden "
                f"supports ({SCHEMA_VERSION}); upgrade pipewarden or set PIPEWARDEN_HOME to "
                "another directory",
                path=str(self.path),
            )
        if current == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for stmt in statements(version, "sqlite"):
                    conn.execute(stmt)
                conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self._session = None


def _create_private(path: Path) -> bool:
    """Create an empty store file ``0600`` (SQLite gives its -wal and -shm files the same mode);
    True when it existed already."""
    if path.exists():
        return True
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # exactly 0600, whatever the umask
    finally:
        os.close(fd)
    return False


def _identify(conn: sqlite3.Connection, path: Path) -> None:
    """Raise StoreError, having written nothing, unless the file is empty or a pipewarden run store.

    A store says so in its header (``PRAGMA application_id``); stores made before
    that are known by their tables.
    """
    # The tables first: each statement reads its own snapshot, and a store being created gets its header
    # before its first table, so a table seen here comes with the header it was created under.
    tables = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"))
    if not tables or conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID:
        return
    if {"schema_version", "runs", "task_runs"} <= set(tables):
        return
    shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
    raise StoreError(
        f"{path} is not a pipewarden run store (it holds tables {shown}); pipewarden left it "
        "untouched. Set PIPEWARDEN_HOME (or --home) to another directory, or move that file away",
        path=str(path),
    )


def _store_error(exc: BaseException, path: Path) -> StoreError:
    text = str(exc)
    low = text.lower()
    where = f"run store {path}"
    if "locked" in low or "busy" in low:
        msg = (
            f"{where} is locked by another process ({text}); wait for the other pipewarden to finish, "
            "or set PIPEWARDEN_HOME (or --home) to another directory"
        )
    elif "readonly" in low or "read-only" in low:
        msg = (
            f"{where} is read-only ({text}); make {path} and its directory writable, "
            "or set PIPEWARDEN_HOME (or --home) to a writable directory"
        )
    elif "unable to open" in low or "permission" in low or getattr(exc, "errno", None) in (errno.EACCES, errno.EROFS):
        msg = (
            f"{where} cannot be opened for writing ({text}); make {path.parent} writable, "
            "or set PIPEWARDEN_HOME (or --home) to a writable directory"
        )
    elif "not a database" in low or "malformed" in low:
        msg = (
            f"{where} is not a readable pipewarden database ({text}); move the file aside, "
            "or set PIPEWARDEN_HOME (or --home) to another directory"
        )
    elif "disk" in low or "full" in low:
        msg = f"{where} could not be written ({text}); free disk space or set PIPEWARDEN_HOME elsewhere"
    else:
        msg = f"{where}: {type(exc).__name__}: {text}"
    return StoreError(msg, path=str(path))
