"""A throwaway PostgreSQL cluster: ``initdb`` in a temporary directory, ``pg_ctl`` on a free loopback port.

The binaries are the Debian ``postgresql`` package's (``/usr/lib/postgresql/<version>/bin``;
``.ci/run`` installs it). PostgreSQL refuses to run as root, so when the tests run as
root the cluster belongs to the package's ``postgres`` user (or ``pipewarden-test``,
which ``.ci/run`` creates where there is none), in a directory of its own under the
system temporary directory. The superuser is ``pipewarden`` with a password
(``scram-sha-256`` on TCP), so a wrong password is refused as on a real server.
Used by the tests (``tests/conftest.py``) and by ``bench/orchestrator.py``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PostgresCluster", "find_bindir", "start_cluster"]

USER = "pipewarden"
PASSWORD = "pw-test-secret"
#: Non-root owners a cluster may run as, in order of preference (when the tests run as root).
OWNERS = ("postgres", "pipewarden-test")
#: Settings for a test cluster: no test waits for a disk flush. Commits still reach the kernel before the
#: client hears of them (synchronous_commit stays on), so they survive the server's crash, not the machine's.
FAST = {"fsync": "off", "full_page_writes": "off"}


def find_bindir() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``: Debian's newest, else the ones on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version, reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _version(initdb: str) -> tuple[int, ...]:
    name = Path(initdb).parent.parent.name
    return tuple(int(p) for p in name.split(".") if p.isdigit())


def _owner() -> pwd.struct_passwd | None:
    """The user the cluster runs as: None (this user) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in OWNERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError(
        f"PostgreSQL will not run as root and none of the users {', '.join(OWNERS)} exists; "
        "install the postgresql package (it creates `postgres`) or `useradd --system pipewarden-test`"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresCluster:
    """One cluster: ``url(db)``, ``create_database``, ``stop``/``start``/``kill``, its log."""

    bindir: Path
    workdir: Path
    port: int
    settings: dict[str, str] = field(default_factory=dict)
    owner: pwd.struct_passwd | None = None

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "postgres.log"

    def url(self, dbname: str = "postgres", *, password: str = PASSWORD, **query: str) -> str:
        tail = "&".join(f"{k}={v}" for k, v in query.items())
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{dbname}" + (f"?{tail}" if tail else "")

    def _run(self, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self.owner is not None:
            kwargs = {"user": self.owner.pw_uid, "group": self.owner.pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bindir / argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            **kwargs,
        )

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (``pg_ctl start -w``); raise RuntimeError with its log when it does not come up."""
        options = [f"-p {self.port}", "-c listen_addresses=127.0.0.1", "-c unix_socket_directories=''"]
        options += [f"-c {k}={v}" for k, v in self.settings.items()]
        done = self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            str(int(timeout)),
            "-D",
            str(self.datadir),
            "-l",
            str(self.log_path),
            "-o",
            " ".join(options),
            timeout=timeout + 10,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"pg_ctl start failed ({done.returncode}): {done.stdout}{done.stderr}\n{self.log_tail()}"
            )

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE`` (``immediate``: as a crash would); nothing if it is not running."""
        self._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.datadir))

    def running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.datadir)).returncode == 0

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def execute(self, sql: str, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement as the superuser (autocommit); its rows, if any."""
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=10) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str) -> str:
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def remove(self) -> None:
        """Stop the server (immediately) and delete its directory."""
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_cluster(bindir: Path, *, settings: dict[str, str] | None = None, attempts: int = 3) -> PostgresCluster:
    """``initdb`` a new cluster in a new temporary directory and start it on a free port."""
    owner = _owner()
    parent = tempfile.gettempdir()
    if owner is not None and not os.stat(parent).st_mode & 0o001:  # the owner could not reach a private TMPDIR
        parent = "/tmp"
    workdir = Path(tempfile.mkdtemp(prefix="pipewarden-pg-", dir=parent))
    if owner is not None:
        os.chown(workdir, owner.pw_uid, owner.pw_gid)
    cluster = PostgresCluster(bindir, workdir, 0, dict(FAST if settings is None else settings), owner)
    pwfile = workdir / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if owner is not None:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    t0 = time.monotonic()
    done = cluster._run(
        "initdb",
        "-D",
        str(cluster.datadir),
        "-U",
        USER,
        f"--pwfile={pwfile}",
        "--auth=scram-sha-256",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
        timeout=120,
    )
    pwfile.unlink()
    if done.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        raise RuntimeError(f"initdb failed ({done.returncode}) after {time.monotonic() - t0:.1f}s: {done.stderr}")
    for attempt in range(1, attempts + 1):
        cluster.port = _free_port()
        try:
            cluster.start()
            return cluster
        except RuntimeError as exc:  # the port was taken meanwhile: another one
            if attempt == attempts or "already in use" not in str(exc):
                shutil.rmtree(workdir, ignore_errors=True)
                raise
    raise AssertionError("unreachable")
