"""Fixtures for the orchestrator tests: a fresh run store, telemetry with in-memory spans, a recording sleep."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent.store import SQLiteRunStore
from agent.telemetry import Telemetry
from exporters.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteRunStore]:
    """A fresh SQLite run store in the test's directory."""
    s = SQLiteRunStore(tmp_path / "home" / "pipewarden.db")
    yield s
    s.close()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tel(spans: InMemorySpanExporter) -> Iterator[Telemetry]:
    """Telemetry on a fresh registry, spans kept in memory."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    t = Telemetry(metrics=Metrics(), tracer_provider=provider)
    yield t
    provider.shutdown()


class Sleeps:
    """An injected sleep that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def run_opts(store: SQLiteRunStore, tel: Telemetry, sleeps: Sleeps) -> dict[str, Any]:
    """Options for Pipeline.run: the fresh store and telemetry, and the recording sleep."""
    return {"store": store, "telemetry": tel, "sleep": sleeps}
