"""Shared fixtures: real Prometheus, Pushgateway and Alertmanager processes; an OTLP receiver.

Each server fixture is function-scoped: the programs start in well under a second on
loopback, so every test gets its own empty server and no test sees another's data.
A missing binary skips the test on a laptop and fails it when ``CI`` is set.
When a test fails, the tail of every running server's log is added to its report.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

sys.path.insert(0, str(Path(__file__).parent))  # `import servers`, whatever the import mode

import pg_cluster
import servers
from pg_cluster import PostgresCluster
from servers import (
    AlertmanagerServer,
    DaskCluster,
    OtlpReceiver,
    PrometheusServer,
    PushgatewayServer,
    RecordingReceiver,
    TricklingServer,
    WebhookReceiver,
)

PrometheusFactory = Callable[..., PrometheusServer]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for server in servers.live_servers():
            report.sections.append((f"{server.name} log ({server.log_path})", server.log_tail()))
    return report


@pytest.fixture(autouse=True)
def _default_home_in_a_temporary_directory(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test (or process it starts) writes to the real per-user state directory."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def prometheus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusFactory]:
    """Factory: ``prometheus_server(["127.0.0.1:PORT"], rule_files=(), alertmanagers=())``.

    Returns a running :class:`servers.PrometheusServer` scraping the targets every second;
    every server it started is stopped after the test.
    """
    started: list[PrometheusServer] = []

    def start(targets: Sequence[str], **config: Any) -> PrometheusServer:
        workdir = tmp_path_factory.mktemp("prometheus")
        server = servers.start_prometheus(workdir, targets, **config)
        started.append(server)
        return server

    yield start
    for server in started:
        server.process.stop()


@pytest.fixture
def pushgateway_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PushgatewayServer]:
    """A running Pushgateway (``.url``, ``.groups()``, ``.metrics_text()``); stopped after."""
    server = servers.start_pushgateway(tmp_path_factory.mktemp("pushgateway"))
    yield server
    server.process.stop()


@pytest.fixture
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., DaskCluster]]:
    """Factory: ``dask_cluster(workers=1, allowed_failures=0, ...)``: a real ``dask scheduler`` and ``dask worker``.

    Returns a :class:`servers.DaskCluster` (``.address``, ``.add_workers()``, ``.worker_pids()``) whose
    programs run from their own directory; every cluster it started is stopped after the test.
    """
    started: list[DaskCluster] = []

    def start(workers: int = 1, *, nthreads: int = 1, **options: Any) -> DaskCluster:
        cluster = servers.start_dask_scheduler(tmp_path_factory.mktemp("dask"), **options)
        started.append(cluster)
        if workers:
            cluster.add_workers(workers, nthreads=nthreads)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """An HTTP receiver collecting Alertmanager webhook posts (``.url``, ``.alerts()``)."""
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def alertmanager_server(
    tmp_path_factory: pytest.TempPathFactory, webhook_receiver: WebhookReceiver
) -> Iterator[AlertmanagerServer]:
    """A running Alertmanager sending every alert to ``.webhook``; stopped after the test."""
    server = servers.start_alertmanager(tmp_path_factory.mktemp("alertmanager"), webhook_receiver)
    yield server
    server.process.stop()


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP trace receiver on 127.0.0.1 (``.endpoint``, ``.spans()``)."""
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def trickle() -> Iterator[TricklingServer]:
    """A loopback server that reads a request and answers one byte a second (``.port``)."""
    server = TricklingServer(interval=1.0)
    yield server
    server.close()


@pytest.fixture
def promtool() -> str:
    """The path of ``promtool`` (skips, or fails under CI, when it is absent)."""
    return servers.require_binary("promtool")


@pytest.fixture
def amtool() -> str:
    """The path of ``amtool`` (skips, or fails under CI, when it is absent)."""
    return servers.require_binary("amtool")


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """Finished spans of a test's own tracer provider."""
    return InMemorySpanExporter()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the log-record factory and the root logger back as they were (Telemetry.from_env changes them)."""
    factory = logging.getLogRecordFactory()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    logging.setLogRecordFactory(factory)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (a backend that is down)."""
    return servers.free_port()


@pytest.fixture
def recording_receiver() -> Iterator[RecordingReceiver]:
    """An HTTP receiver keeping each POST's headers and raw body; scripted status codes; a gate to hang it."""
    receiver = RecordingReceiver()
    yield receiver
    receiver.gate.set()
    receiver.close()


@pytest.fixture
def trickling_server() -> Iterator[TricklingServer]:
    """A server that answers one byte every 50 ms (a slow-loris answer), counting what it sent."""
    server = TricklingServer()
    yield server
    server.close()


# --- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the session (initdb in a temporary directory, a free port)."""
    cluster = pg_cluster.start_cluster(servers.require_postgres())
    yield cluster
    cluster.remove()


_schemas = itertools.count(1)


@pytest.fixture
def pg_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A store URL of an empty schema of its own in the session's cluster (dropped after the test)."""
    schema = f"test_{next(_schemas)}"
    postgres_cluster.execute(f"CREATE SCHEMA {schema}")
    yield postgres_cluster.url(options=f"-csearch_path%3D{schema}")
    postgres_cluster.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    """A cluster of the test's own, for tests that stop, kill or freeze the server."""
    cluster = pg_cluster.start_cluster(servers.require_postgres())
    yield cluster
    cluster.remove()
