"""Fixtures shared by the checks tests: the bench data generator and the baseline suite."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `import checks` from a plain `pytest` run too
    sys.path.insert(0, str(ROOT))


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def orders_data() -> ModuleType:
    """bench/orders_data.py, the generator of the benchmark's frames."""
    return _load("orders_data")


@pytest.fixture(scope="session")
def baseline_suite() -> ModuleType:
    """bench/baseline_suite.py, the hand-written reference implementation."""
    return _load("baseline_suite")
