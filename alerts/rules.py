"""Alert rules: a name, a condition, ``for`` and ``keep_firing_for``, severity, labels, annotations, actions.

>>> from alerts.conditions import ConsecutiveFailures
>>> rule = Rule("OrdersFailing", ConsecutiveFailures(count=3, pipelines=["orders"]), severity="critical",
...             annotations={"summary": "{{ pipeline }} failed {{ value }} times in a row"})
>>> rule.render({"pipeline": "orders", "value": 3.0})["summary"]
'orders failed 3 times in a row'

:data:`DEFAULT_RULES` is the rule set an agent runs with no configuration;
``alerts/pipewarden.rules.yml`` holds the same rules for Prometheus.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from agent.errors import ConfigError
from alerts.conditions import CheckFailed, Condition, ConsecutiveFailures, DriftAbove, RunFailed
from alerts.templates import Template
from alerts.timed import ExportsFailing, Stale

__all__ = ["Action", "DEFAULT_RULES", "Resume", "Rule", "SEVERITIES", "TEMPLATE_NAMES", "Trigger"]

#: Severities a rule may have (Prometheus's usual three).
SEVERITIES = ("critical", "warning", "info")
#: Names every template may use besides the alert's labels.
TEMPLATE_NAMES = ("alertname", "severity", "value", "run_id", "run_url")
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")


def _limit(action: Any) -> None:
    if isinstance(action.max, bool) or not isinstance(action.max, int) or action.max < 1:
        raise ConfigError(
            f"{action.name}.max is how many times per window the action may run, 1 or more — got {action.max!r}"
        )
    if isinstance(action.per, bool) or not isinstance(action.per, int | float) or action.per <= 0:
        raise ConfigError(f"{action.name}.per is the window in seconds, more than 0 — got {action.per!r}")


@dataclass(frozen=True)
class Resume:
    """Resume the run the alert is about (its failed, timed-out and skipped tasks run again),
    at most ``max`` times per ``per`` seconds for one alert."""

    max: int = 3
    per: float = 3600.0
    name: ClassVar[str] = "resume"

    def __post_init__(self) -> None:
        _limit(self)


@dataclass(frozen=True)
class Trigger:
    """Start a run of ``pipeline`` (a template: ``"{{ pipeline }}"`` is the alert's own) with ``params``,
    at most ``max`` times per ``per`` seconds for one alert."""

    pipeline: str
    params: Mapping[str, str] = field(default_factory=dict)
    max: int = 1
    per: float = 3600.0
    name: ClassVar[str] = "trigger"

    def __post_init__(self) -> None:
        _limit(self)
        if not isinstance(self.pipeline, str) or not self.pipeline.strip():
            raise ConfigError(f"trigger.pipeline must name a pipeline — got {self.pipeline!r}")
        Template(self.pipeline)
        object.__setattr__(self, "params", MappingProxyType({str(k): str(v) for k, v in self.params.items()}))


Action = Resume | Trigger


@dataclass(frozen=True)
class Rule:
    """One alert rule. ``for_`` (``for:`` in YAML) is how long the condition must hold before the alert
    fires (pending until then); ``keep_firing_for`` how long a firing alert stays firing after the
    condition stopped holding. Labels name the alert (with ``alertname``, ``severity`` and the
    condition's labels; together they make its fingerprint); annotations are templates
    (:mod:`alerts.templates`) rendered when it is sent.
    """

    name: str
    condition: Condition
    for_: float = 0.0
    keep_firing_for: float = 0.0
    severity: str = "warning"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    actions: tuple[Action, ...] = ()
    _templates: Mapping[str, Template] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        where = f"rule {self.name!r}"
        if not isinstance(self.name, str) or not _RULE_NAME.match(self.name):
            raise ConfigError(
                f"rule name {self.name!r} must start with a letter or _ and hold only letters, "
                "digits, _ . : - (it becomes the alertname label), e.g. PipelineRunFailed"
            )
        if not isinstance(self.condition, Condition):
            raise ConfigError(
                f"{where}: condition must be a condition (RunFailed(), Stale(...), ...) — got {self.condition!r}"
            )
        for what in ("for_", "keep_firing_for"):
            v = getattr(self, what)
            if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0:
                raise ConfigError(f"{where}: {what.rstrip('_')} must be seconds, 0 or more — got {v!r}")
        if self.severity not in SEVERITIES:
            raise ConfigError(f"{where}: severity must be one of {', '.join(SEVERITIES)} — got {self.severity!r}")
        reserved = {"alertname", "severity", *self.condition.labels}
        for key, value in self.labels.items():
            if not isinstance(key, str) or not _LABEL.match(key) or key.startswith("__"):
                raise ConfigError(
                    f"{where}: label name {key!r} must be letters, digits and _, not starting with a digit or __"
                )
            if key in reserved:
                raise ConfigError(
                    f"{where}: label {key!r} is set by the rule itself; the names "
                    f"{', '.join(sorted(reserved))} are taken"
                )
            if not isinstance(value, str):
                raise ConfigError(f"{where}: label {key!r} must be a string — got {value!r}")
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        object.__setattr__(self, "actions", tuple(self.actions))
        for action in self.actions:
            if not isinstance(action, Resume | Trigger):
                raise ConfigError(f"{where}: an action is Resume(...) or Trigger(...) — got {action!r}")
        allowed = self.template_names()
        templates = {}
        sources = {
            **self.annotations,
            **{f"trigger.pipeline[{i}]": a.pipeline for i, a in enumerate(self.actions) if isinstance(a, Trigger)},
        }
        for key, text in sources.items():
            if not isinstance(text, str):
                raise ConfigError(f"{where}: annotation {key!r} must be a string — got {text!r}")
            try:
                template = Template(text)
            except ValueError as exc:
                raise ConfigError(f"{where}: annotation {key!r}: {exc}") from None
            unknown = template.names() - allowed
            if unknown:
                raise ConfigError(
                    f"{where}: annotation {key!r} refers to {', '.join(sorted(unknown))}, which "
                    f"this rule never sets; it may use {', '.join(sorted(allowed))}"
                )
            if key in self.annotations:
                templates[key] = template
        object.__setattr__(self, "annotations", MappingProxyType(dict(self.annotations)))
        object.__setattr__(self, "_templates", MappingProxyType(templates))

    def template_names(self) -> set[str]:
        """The names this rule's templates may use."""
        return {*TEMPLATE_NAMES, *self.condition.labels, *self.labels}

    def alert_labels(self, condition_labels: Mapping[str, str]) -> dict[str, str]:
        """The full label set of one alert of this rule."""
        return {"alertname": self.name, "severity": self.severity, **self.labels, **condition_labels}

    def render(self, values: Mapping[str, Any]) -> dict[str, str]:
        """The annotations with their placeholders filled; empty ones are left out."""
        out = {}
        for key, template in self._templates.items():
            text = template.render(values)
            if text:
                out[key] = text
        return out


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(
        "PipelineRunFailed",
        RunFailed(),
        severity="warning",
        annotations={
            "summary": "Pipeline {{ pipeline }} failed",
            "description": "Run {{ run_id }} of {{ pipeline }} failed; {{ value }} failed run(s) in a row.",
            "run_url": "{{ run_url }}",
        },
    ),
    Rule(
        "PipelineFailingRepeatedly",
        ConsecutiveFailures(count=3),
        severity="critical",
        annotations={
            "summary": "Pipeline {{ pipeline }} failed {{ value }} times in a row",
            "description": "The last {{ value }} runs of {{ pipeline }} failed; the latest is {{ run_id }}.",
            "run_url": "{{ run_url }}",
        },
    ),
    Rule(
        "DataCheckFailed",
        CheckFailed(statuses=("fail", "error")),
        severity="warning",
        annotations={
            "summary": "Check {{ check }} on {{ pipeline }}/{{ dataset }} did not pass",
            "description": "The {{ kind }} check {{ check }} on dataset {{ dataset }} of {{ pipeline }} failed or "
            "could not run (observed {{ value }}) in run {{ run_id }}.",
            "run_url": "{{ run_url }}",
        },
    ),
    Rule(
        "DataDriftHigh",
        DriftAbove(above=0.25, methods=("psi",)),
        severity="warning",
        annotations={
            "summary": "Column {{ column }} of {{ pipeline }}/{{ dataset }} drifted (PSI {{ value | number }})",
            "description": "The population stability index of {{ column }} against its reference is "
            "{{ value | number }}, above 0.25 (a significant shift).",
            "run_url": "{{ run_url }}",
        },
    ),
    Rule(
        "PipelineStale",
        Stale(max_age=26 * 3600.0),
        severity="warning",
        annotations={
            "summary": "Pipeline {{ pipeline }} has not succeeded for {{ value | duration }}",
            "description": "The last success of {{ pipeline }} is {{ value | duration }} old (limit 26h: a daily "
            "pipeline and two hours of slack).",
        },
    ),
    Rule(
        "TelemetryExportFailing",
        ExportsFailing(count=1, window=600.0),
        severity="warning",
        annotations={
            "summary": "Telemetry export {{ exporter }} is failing",
            "description": "{{ value }} export(s) to {{ exporter }} failed in the last 10 minutes (pipeline "
            "'{{ pipeline }}'); the pipelines ran on, their telemetry did not arrive.",
        },
    ),
)
