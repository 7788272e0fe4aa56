"""The PostgreSQL run store against a real server: bad URLs and credentials, a dead, frozen or killed server,
a port held by something else, agents that start together, a lost lease, and the CLI and daemon using it.

What every run store does is in test_store_conformance.py; this file is about what only a server does.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ConfigError, StoreError
from agent.pipeline import Pipeline
from agent.records import RunStatus
from agent.runner import Runner
from agent.store import SCHEMA_VERSION, open_store

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "pw-test-secret"


def _pg(url: str, **options: Any) -> Any:
    from agent.pg_store import PostgresRunStore

    return PostgresRunStore(url, **options)


def _bounded(fn: Any, *, limit: float = 90.0) -> BaseException | None:
    """Call ``fn`` on a thread; the exception it raised (None if none). Fails the test if it is still running
    after ``limit`` seconds: a store call must never hang (the bound is generous, not a timing)."""
    out: list[BaseException | None] = []

    def call() -> None:
        try:
            fn()
            out.append(None)
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(limit)
    assert out, f"still waiting after {limit:g}s: the store call hangs"
    return out[0]


def _one_line_without_password(exc: BaseException | None) -> str:
    assert isinstance(exc, StoreError), repr(exc)
    text = str(exc)
    assert "\n" not in text and PASSWORD not in text and (exc.path or "") in text
    return text


# --- opening -------------------------------------------------------------------------------------


def test_a_wrong_password_is_one_line_naming_the_server_without_the_password(postgres_cluster: Any) -> None:
    """Wrong credentials raise StoreError: one line, the URL without its password, what to fix."""
    url = postgres_cluster.url(password="not-" + PASSWORD)
    exc = _bounded(lambda: _pg(url))
    text = _one_line_without_password(exc)
    assert (
        "wrong user name or password" in text and f"postgresql://pipewarden@127.0.0.1:{postgres_cluster.port}/" in text
    )


def test_a_missing_database_says_to_create_it(postgres_cluster: Any) -> None:
    """A database that does not exist is named, with the fix."""
    text = _one_line_without_password(_bounded(lambda: _pg(postgres_cluster.url("nowhere"))))
    assert '"nowhere" does not exist' in text and "createdb" in text


def test_nothing_listening_is_a_clear_store_error(closed_port: int) -> None:
    """A port nothing listens on: StoreError saying the connection was refused."""
    url = f"postgresql://pipewarden:{PASSWORD}@127.0.0.1:{closed_port}/db"
    text = _one_line_without_password(_bounded(lambda: _pg(url)))
    assert "cannot connect" in text and "refused" in text


def test_a_server_that_never_answers_is_given_up_on_after_the_connect_timeout() -> None:
    """A port that accepts connections and never answers (a hung server) fails at connect_timeout, not never."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
        url = f"postgresql://pipewarden:{PASSWORD}@127.0.0.1:{silent.getsockname()[1]}/db"
        text = _one_line_without_password(_bounded(lambda: _pg(url, connect_timeout=2)))
    assert "no answer within 2s while connecting" in text


def test_a_port_held_by_another_kind_of_server_is_a_clear_store_error() -> None:
    """A URL whose port is taken by something that is not PostgreSQL (an HTTP server) fails in one line."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # a handler left waiting never blocks shutdown
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"postgresql://pipewarden:{PASSWORD}@127.0.0.1:{server.server_address[1]}/db"
        text = _one_line_without_password(_bounded(lambda: _pg(url, connect_timeout=2)))
        assert "cannot connect" in text or "no answer" in text
    finally:
        server.shutdown()
        server.server_close()


def test_a_cluster_whose_first_port_is_taken_starts_on_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test cluster retries on a new port when the one it picked was taken meanwhile."""
    import pg_cluster
    import servers

    bindir = servers.require_postgres()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    held = taken.getsockname()[1]
    ports = iter([held])
    free = pg_cluster._free_port
    monkeypatch.setattr(pg_cluster, "_free_port", lambda: next(ports, None) or free())
    try:
        cluster = pg_cluster.start_cluster(bindir)
    finally:
        taken.close()
    try:
        assert cluster.port != held and cluster.execute("SELECT 1") == [(1,)]
    finally:
        cluster.remove()


def test_a_url_that_is_not_a_postgresql_url_is_refused() -> None:
    """A malformed URL and a scheme of another database are named, with what is allowed."""
    with pytest.raises(StoreError, match=r"not a PostgreSQL URL .*write postgresql://"):
        _pg("postgresql://u@h/db?nonsense=1")
    with pytest.raises(ConfigError, match=r"PIPEWARDEN_STORE must be a postgresql://.*got 'mysql://...'"):
        open_store(env={"PIPEWARDEN_STORE": "mysql://root:pw@db/x"})


def test_tables_of_another_application_are_refused_untouched(postgres_cluster: Any, pg_url: str) -> None:
    """A schema holding a `runs` table pipewarden did not make raises StoreError and keeps the table as it was."""
    schema = pg_url.rsplit("%3D", 1)[1]
    postgres_cluster.execute(f"CREATE TABLE {schema}.runs (id int)")
    postgres_cluster.execute(f"INSERT INTO {schema}.runs VALUES (7)")
    with pytest.raises(StoreError, match=r"already has tables runs that pipewarden did not create.*untouched"):
        _pg(pg_url)
    assert postgres_cluster.execute(f"SELECT * FROM {schema}.runs") == [(7,)]
    assert postgres_cluster.execute(f"SELECT to_regclass('{schema}.schema_version')") == [(None,)]


def test_a_store_from_a_newer_pipewarden_is_refused(pg_url: str, postgres_cluster: Any) -> None:
    """A schema version newer than the code raises StoreError saying to upgrade."""
    _pg(pg_url).close()
    schema = pg_url.rsplit("%3D", 1)[1]
    postgres_cluster.execute(f"INSERT INTO {schema}.schema_version VALUES ({SCHEMA_VERSION + 1}, 0)")
    with pytest.raises(StoreError, match=r"newer than this pipewarden supports.*upgrade"):
        _pg(pg_url)


def test_agents_opening_an_empty_database_together_migrate_it_once(pg_url: str) -> None:
    """Eight agents opening a new database at the same moment all succeed; each schema version is applied once."""
    barrier = threading.Barrier(8)
    opened: list[Any] = []
    errors: list[BaseException] = []

    def agent(i: int) -> None:
        barrier.wait()
        try:
            opened.append(_pg(pg_url, host=f"h{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(opened) == 8
    with opened[0]._db() as db:
        assert db.execute("SELECT version FROM schema_version ORDER BY version").fetchall() == [
            (v,) for v in range(1, SCHEMA_VERSION + 1)
        ]
    for s in opened:
        s.close()


def test_the_shared_store_follows_the_url_one_per_url(pg_url: str, tmp_path: Path) -> None:
    """RunStore.default opens the store PIPEWARDEN_STORE names, once per URL; sqlite:/// names a file."""
    from agent.pg_store import PostgresRunStore
    from agent.sqlite_store import SQLiteRunStore
    from agent.store import RunStore

    shared = RunStore.default(env={"PIPEWARDEN_STORE": pg_url})
    assert isinstance(shared, PostgresRunStore) and RunStore.default(url=pg_url) is shared
    lite = RunStore.default(env={"PIPEWARDEN_STORE": f"sqlite://{tmp_path}/elsewhere.db"})
    assert isinstance(lite, SQLiteRunStore) and lite.path == tmp_path / "elsewhere.db"
    assert isinstance(RunStore.default(tmp_path / "home", env={}), SQLiteRunStore)


def test_importing_the_agent_and_using_sqlite_never_imports_psycopg(tmp_path: Path) -> None:
    """`import agent`, the runner and a SQLite store leave psycopg unimported."""
    code = (
        "import sys, agent, agent.runner, agent.store, agent.daemon, agent.cli\n"
        f"s = agent.store.open_store({str(tmp_path)!r}); s.list_runs(); s.close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg_pool', 'agent.pg_store')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_without_psycopg_a_postgresql_url_says_which_extra_to_install() -> None:
    """With psycopg missing, a PostgreSQL URL raises StoreError naming the `postgresql` extra."""
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from agent.store import open_store\n"
        "try:\n    open_store(url='postgresql://u:secret@127.0.0.1:1/db')\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert out.stdout.startswith("StoreError") and "pip install 'pipewarden[postgresql]'" in out.stdout
    assert "secret" not in out.stdout


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
    return {**env, "PYTHONPATH": str(REPO), **extra}


# --- a server that dies or freezes while a run goes on ---------------------------------------------------


def test_a_server_killed_mid_run_fails_the_run_with_a_clear_store_error(own_postgres: Any, tmp_path: Path) -> None:
    """pg_ctl stop -m immediate while a task runs: the run raises StoreError (one line) within bounds, no hang;
    once the server is back, the run is found interrupted, with the task that finished before recorded."""
    url = own_postgres.url()
    store = _pg(url, connect_timeout=2, statement_timeout=5)
    pipe = Pipeline("fragile")
    pipe.task(name="first")(lambda: 1)
    pipe.task(name="kill", depends_on=["first"])(lambda: own_postgres.stop("immediate"))
    pipe.task(name="after", depends_on=["kill"])(lambda: None)
    runner = Runner(store=store, home=tmp_path / "home")
    exc = _bounded(lambda: runner.run(pipe, run_id="r-killed"))
    text = _one_line_without_password(exc)
    assert "run store postgresql://pipewarden@127.0.0.1" in text
    store.close()
    own_postgres.start()
    with _pg(url, host="elsewhere") as again:  # another agent, once the run's lease (60 s) has run out
        assert again.recover_interrupted(now=time.time() + 120) == ["r-killed"]
        rec = again.get_run("r-killed")
        assert rec is not None and rec.status is RunStatus.INTERRUPTED
        assert rec.task_state("first") is RunStatus.SUCCESS and rec.task_state("after") is not RunStatus.SUCCESS


def _processes_of(cluster: Any) -> list[int]:
    """The postmaster and every process it started (the backends)."""
    root = cluster.postmaster_pid()
    assert root is not None
    found = [root]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == root:
                found.append(int(entry))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="the server's processes are found in /proc")
def test_a_frozen_server_never_holds_a_call_hostage(own_postgres: Any) -> None:
    """With every server process stopped (SIGSTOP), a store call fails with StoreError instead of waiting forever."""
    store = _pg(own_postgres.url(), connect_timeout=2, statement_timeout=1)
    store.create_run(run_id="r", pipeline="p", trigger="manual", now=0.0)
    frozen = _processes_of(own_postgres)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        text = _one_line_without_password(_bounded(store.list_runs))
        assert "no answer from the server" in text or "no answer within" in text
        text = _one_line_without_password(_bounded(lambda: store.get_run("r")))  # a new connection: bounded too
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    rec = None
    deadline = time.monotonic() + 30
    while rec is None and time.monotonic() < deadline:  # thawed: the pool connects again
        try:
            rec = store.get_run("r")
        except StoreError:
            time.sleep(0.2)
    assert rec is not None and rec.status is RunStatus.QUEUED
    store.close()


# --- two agents, one lost lease ---------------------------------------------------------------------


def test_a_run_whose_host_stops_renewing_is_recovered_elsewhere_and_its_owner_stands_down(pg_url: str) -> None:
    """Agent alpha loses the store mid-run; agent beta records the run interrupted once the lease runs out;
    when alpha can reach the store again it learns the run is no longer its own and starts no further task."""
    from agent.pg_store import PostgresRunStore

    class Partitioned(PostgresRunStore):
        """alpha's view of the store: renewals fail while ``cut`` is set (the network is down)."""

        cut = threading.Event()

        def renew_lease(self, run_id: str, lease_until: float) -> bool:
            if self.cut.is_set():
                raise StoreError("connection timed out", path=self.location)
            return super().renew_lease(run_id, lease_until)

    alpha = Partitioned(pg_url, host="alpha")
    beta = _pg(pg_url, host="beta")
    recovered, healed, ran = threading.Event(), threading.Event(), []
    pipe = Pipeline("leased")

    @pipe.task
    def long() -> int:
        Partitioned.cut.set()
        assert recovered.wait(30), "beta never recovered the run"
        Partitioned.cut.clear()
        healed.wait(30)
        return 1

    @pipe.task
    def next_step(long: int) -> None:
        ran.append(long)

    runner = Runner(store=alpha, lease_seconds=1.0, home=None)
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(runner.run(pipe, run_id="r-lease")))
    worker.start()
    deadline = time.monotonic() + 30
    while not recovered.is_set() and time.monotonic() < deadline:
        if beta.recover_interrupted(now=time.time()) == ["r-lease"]:
            recovered.set()
        time.sleep(0.1)
    assert recovered.is_set()
    rec = beta.get_run("r-lease")
    assert rec is not None and rec.status is RunStatus.INTERRUPTED and "alpha" in (rec.error or "")
    time.sleep(1.0)  # alpha renews (every lease/3 s) and finds the run gone from it
    healed.set()
    worker.join(30)
    assert result and ran == [] and result[0].task_state("next_step") is RunStatus.CANCELLED
    alpha.close()
    beta.close()


# --- the CLI and the daemon ------------------------------------------------------------------------


def test_cli_with_a_wrong_password_prints_one_line_and_exits_2(postgres_cluster: Any, tmp_path: Path) -> None:
    """`pipewarden runs list` with PIPEWARDEN_STORE's password wrong: exit 2, one error line, no password."""
    url = postgres_cluster.url(password="wrong-" + PASSWORD)
    out = subprocess.run(
        [sys.executable, "-m", "agent", "runs", "list", "--home", str(tmp_path / "home")],
        capture_output=True,
        text=True,
        env=_env(PIPEWARDEN_STORE=url),
        timeout=120,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: run store postgresql://pipewarden@127.0.0.1")
    assert "wrong user name or password" in lines[0] and PASSWORD not in out.stderr


def test_cli_run_on_postgresql_records_the_run_there(pg_url: str, tmp_path: Path) -> None:
    """`pipewarden run` with PIPEWARDEN_STORE writes the run to PostgreSQL; `runs list` reads it from there."""
    env = _env(PIPEWARDEN_STORE=pg_url)
    target = REPO / "examples" / "pipelines" / "one_task.py"
    home = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-m", "agent", "run", str(target), "--no-progress", "--home", home],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "agent", "runs", "list", "-q", "--home", home],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    with _pg(pg_url) as store:
        [rec] = store.list_runs()
    assert listed.stdout.split() == [rec.run_id] and rec.status is RunStatus.SUCCESS
    assert not (tmp_path / "home" / "pipewarden.db").exists()


def test_cli_run_whose_server_is_killed_exits_with_one_store_error_line(own_postgres: Any, tmp_path: Path) -> None:
    """The server killed (SIGQUIT, as pg_ctl stop -m immediate) during `pipewarden run`: exit 2, one error line."""
    pipeline = tmp_path / "doomed.py"
    pipeline.write_text(
        textwrap.dedent(f"""
        import os, signal, time
        from agent import Pipeline

        pipe = Pipeline("doomed")

        @pipe.task
        def kill() -> int:
            os.kill({own_postgres.postmaster_pid()}, signal.SIGQUIT)
            time.sleep(1)
            return 1

        @pipe.task
        def after(kill: int) -> int:
            return kill
        """)
    )
    out = subprocess.run(
        [sys.executable, "-m", "agent", "run", str(pipeline), "--no-progress", "--home", str(tmp_path / "home")],
        capture_output=True,
        text=True,
        env=_env(PIPEWARDEN_STORE=own_postgres.url()),
        timeout=180,
    )
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2, out.stderr
    assert len(errors) == 1 and errors[0].startswith("error: run store postgresql://pipewarden@127.0.0.1")
    assert PASSWORD not in out.stderr


def test_a_bad_store_in_the_configuration_is_named_with_its_line(tmp_path: Path) -> None:
    """agent.store of another scheme is a ConfigError naming the file, the line and what is allowed."""
    from agent.config import load_config

    path = tmp_path / "pipewarden.yml"
    path.write_text("agent:\n  listen: 127.0.0.1:0\n  store: mysql://db/x\npipelines: []\n")
    with pytest.raises(ConfigError, match=r"pipewarden.yml:3: agent.store: .*postgresql://.*got 'mysql://...'"):
        load_config(path)


DAEMON_PIPES = """
from agent import Pipeline

minutely = Pipeline("minutely", schedule="every 1m")

@minutely.task
def work() -> int:
    return 1
"""


@pytest.fixture
def two_daemons(tmp_path: Path, pg_url: str) -> Iterator[tuple[Any, Any, list[float]]]:
    from agent.daemon import Daemon

    (tmp_path / "pipes.py").write_text(DAEMON_PIPES)
    config = tmp_path / "pipewarden.yml"
    # The store from the configuration (over an unused $PIPEWARDEN_STORE), as in production.
    config.write_text(f"agent: {{store: '{pg_url}'}}\npipelines:\n  - target: pipes.py:minutely\n")
    now = [dt.datetime(2026, 3, 2, 9, 59, 30, tzinfo=dt.UTC).timestamp()]
    made = [
        Daemon(
            config,
            env={"PIPEWARDEN_STORE": "postgresql://nobody@127.0.0.1:1/unused"},
            home=tmp_path / name,
            clock=lambda: now[0],
            serve=False,
            watch_config=False,
        )
        for name in ("alpha", "beta")
    ]
    for d in made:
        d.start()
    yield made[0], made[1], now
    for d in made:
        d.stop(grace=5)


@pytest.mark.usefixtures("restore_logging")
def test_two_daemons_on_one_store_run_each_tick_once(two_daemons: tuple[Any, Any, list[float]]) -> None:
    """Two daemons sharing a PostgreSQL store, ticking together through ten minutes: a run per tick, never two."""
    alpha, beta, now = two_daemons
    barrier = threading.Barrier(2)

    def loop(d: Any) -> None:
        for _ in range(20):
            barrier.wait()
            d.tick(now[0])
            for active in d._running():
                active.thread.join(20)
            if barrier.wait() == 0:
                now[0] += 30

    threads = [threading.Thread(target=loop, args=(d,)) for d in (alpha, beta)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    runs = alpha.store.list_runs(pipeline="minutely", limit=100)
    assert len(runs) >= 9 and all(r.status is RunStatus.SUCCESS for r in runs)
    assert len({r.logical_date for r in runs}) == len(runs)
