"""Alert rules over pipewarden's own facts, their evaluator, and the receivers that deliver them.

>>> import alerts
>>> evaluator = alerts.evaluator_from_config({"receivers": [{"name": "log", "kind": "log"}]}, tick_interval=None)
>>> sorted(r.name for r in evaluator.rules)[:2]
['DataCheckFailed', 'DataDriftHigh']

Names load on first use (PEP 562): ``import alerts`` imports neither pydantic
nor any HTTP code. The same default rules ship for Prometheus as
``alerts/pipewarden.rules.yml`` (with ``pipewarden.rules.test.yml`` for
``promtool test rules`` and ``alertmanager.yml.example``); rule files may
reference only metrics of ``exporters/catalogue.py``, which a test checks.
See ``docs/alerts.md``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

__all__ = [
    "ActionHandler",
    "AlertEvaluator",
    "AlertHistoryEntry",
    "AlertMatch",
    "AlertMetrics",
    "AlertNotFoundError",
    "AlertStateStore",
    "AlertmanagerReceiver",
    "AlertsConfig",
    "CheckFailed",
    "ConsecutiveFailures",
    "DEFAULT_RULES",
    "DeadlineMissed",
    "DriftAbove",
    "DuplicatesAbove",
    "DurationAbove",
    "ExportsFailing",
    "LogReceiver",
    "MemoryAlertStore",
    "Notification",
    "NullAlertMetrics",
    "NullFractionAbove",
    "RULE_FILE",
    "Receiver",
    "Resume",
    "RowsLostAbove",
    "Rule",
    "RunFailed",
    "RunHistory",
    "SlackReceiver",
    "Stale",
    "SuccessRateBelow",
    "TaskFailed",
    "TestResult",
    "Trigger",
    "WebhookReceiver",
    "build_receivers",
    "build_rules",
    "evaluator_from_config",
    "parse_config",
    "verify_signature",
]

#: The default rules as a Prometheus rule file (package data).
RULE_FILE = Path(__file__).with_name("pipewarden.rules.yml")

_WHERE = {
    "ActionHandler": "alerts.actions",
    "AlertEvaluator": "alerts.evaluator",
    "AlertHistoryEntry": "alerts.store",
    "AlertMatch": "alerts.delivery",
    "AlertMetrics": "alerts.metrics",
    "AlertNotFoundError": "alerts.store",
    "AlertStateStore": "alerts.store",
    "AlertmanagerReceiver": "alerts.alertmanager",
    "AlertsConfig": "alerts.config",
    "CheckFailed": "alerts.conditions",
    "ConsecutiveFailures": "alerts.conditions",
    "DEFAULT_RULES": "alerts.rules",
    "DeadlineMissed": "alerts.timed",
    "DriftAbove": "alerts.conditions",
    "DuplicatesAbove": "alerts.conditions",
    "DurationAbove": "alerts.timed",
    "ExportsFailing": "alerts.timed",
    "LogReceiver": "alerts.receivers",
    "MemoryAlertStore": "alerts.store",
    "Notification": "alerts.routing",
    "NullAlertMetrics": "alerts.metrics",
    "NullFractionAbove": "alerts.conditions",
    "Receiver": "alerts.delivery",
    "Resume": "alerts.rules",
    "RowsLostAbove": "alerts.conditions",
    "Rule": "alerts.rules",
    "RunFailed": "alerts.conditions",
    "RunHistory": "alerts.facts",
    "SlackReceiver": "alerts.receivers",
    "Stale": "alerts.timed",
    "SuccessRateBelow": "alerts.timed",
    "TaskFailed": "alerts.conditions",
    "TestResult": "alerts.delivery",
    "Trigger": "alerts.rules",
    "WebhookReceiver": "alerts.receivers",
    "build_receivers": "alerts.config",
    "build_rules": "alerts.config",
    "evaluator_from_config": "alerts.config",
    "parse_config": "alerts.config",
    "verify_signature": "alerts.signing",
}

if TYPE_CHECKING:
    from alerts.actions import ActionHandler
    from alerts.alertmanager import AlertmanagerReceiver
    from alerts.conditions import (
        CheckFailed,
        ConsecutiveFailures,
        DriftAbove,
        DuplicatesAbove,
        NullFractionAbove,
        RowsLostAbove,
        RunFailed,
        TaskFailed,
    )
    from alerts.config import AlertsConfig, build_receivers, build_rules, evaluator_from_config, parse_config
    from alerts.delivery import AlertMatch, Receiver, TestResult
    from alerts.evaluator import AlertEvaluator
    from alerts.facts import RunHistory
    from alerts.metrics import AlertMetrics, NullAlertMetrics
    from alerts.receivers import LogReceiver, SlackReceiver, WebhookReceiver
    from alerts.routing import Notification
    from alerts.rules import DEFAULT_RULES, Resume, Rule, Trigger
    from alerts.signing import verify_signature
    from alerts.store import AlertHistoryEntry, AlertNotFoundError, AlertStateStore, MemoryAlertStore
    from alerts.timed import DeadlineMissed, DurationAbove, ExportsFailing, Stale, SuccessRateBelow


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'alerts' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
