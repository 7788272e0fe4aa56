"""Fixtures for the alert tests: a fake clock, a recording metrics sink, a collecting receiver, evaluators."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `import alert_support`, whatever the import mode

from alert_support import Clock, Collect, RecordedMetrics

from alerts.evaluator import AlertEvaluator
from alerts.store import MemoryAlertStore

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics() -> RecordedMetrics:
    return RecordedMetrics()


@pytest.fixture
def collect() -> Iterator[Collect]:
    receiver = Collect()
    yield receiver
    receiver.stop(1)


@pytest.fixture
def make_evaluator(clock: Clock, metrics: RecordedMetrics, collect: Collect) -> Iterator[Callable[..., AlertEvaluator]]:
    """Factory: an evaluator on the fake clock, a memory store, the recording sink and the collecting receiver."""
    made: list[AlertEvaluator] = []

    def make(rules: Any = None, **options: Any) -> AlertEvaluator:
        options.setdefault("store", MemoryAlertStore())
        options.setdefault("receivers", [collect])
        options.setdefault("metrics", metrics)
        options.setdefault("clock", clock)
        ev = AlertEvaluator(rules, **options) if rules is not None else AlertEvaluator(**options)
        made.append(ev)
        return ev

    yield make
    for ev in made:
        ev.stop(1)
