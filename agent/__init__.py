"""pipewarden's runtime: the ``@monitor`` decorator, pipelines, the runner and the daemon.

Names are imported on first use (PEP 562), so ``import agent`` costs almost
nothing and pulls in no exporter, Great Expectations, scipy or Dask.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "CheckFailedError",
    "ConfigError",
    "CycleError",
    "DecorationError",
    "DuplicateTaskError",
    "Input",
    "ParamError",
    "Pipeline",
    "PipewardenError",
    "RunLimitError",
    "RunStatus",
    "RunStore",
    "StoreError",
    "TaskTimeoutError",
    "Telemetry",
    "UnknownDependencyError",
    "UntrustedPathError",
    "get_telemetry",
    "monitor",
    "resume",
    "run",
    "set_telemetry",
]

_WHERE = {
    "monitor": "agent.monitor",
    "Telemetry": "agent.telemetry",
    "get_telemetry": "agent.telemetry",
    "set_telemetry": "agent.telemetry",
    "RunStatus": "agent.records",
    "Pipeline": "agent.pipeline",
    "Input": "agent.wiring",
    "run": "agent.runner",
    "resume": "agent.runner",
    "RunStore": "agent.store",
    **{
        name: "agent.errors"
        for name in (
            "CheckFailedError",
            "ConfigError",
            "CycleError",
            "DecorationError",
            "DuplicateTaskError",
            "ParamError",
            "PipewardenError",
            "RunLimitError",
            "StoreError",
            "TaskTimeoutError",
            "UnknownDependencyError",
            "UntrustedPathError",
        )
    },
}

if TYPE_CHECKING:
    from agent.errors import (
        CheckFailedError,
        ConfigError,
        CycleError,
        DecorationError,
        DuplicateTaskError,
        ParamError,
        PipewardenError,
        RunLimitError,
        StoreError,
        TaskTimeoutError,
        UnknownDependencyError,
        UntrustedPathError,
    )
    from agent.monitor import monitor
    from agent.pipeline import Pipeline
    from agent.records import RunStatus
    from agent.runner import resume, run
    from agent.store import RunStore
    from agent.telemetry import Telemetry, get_telemetry, set_telemetry
    from agent.wiring import Input


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
