"""Annotation templates: placeholders and filters, no eval, unknown names caught when a rule is built."""

from __future__ import annotations

import pytest

from agent.errors import ConfigError
from alerts.conditions import RunFailed
from alerts.rules import Rule
from alerts.templates import Template


@pytest.mark.parametrize(
    ("text", "values", "out"),
    [
        ("{{ pipeline }} failed", {"pipeline": "orders"}, "orders failed"),
        ("{{pipeline}}/{{ dataset }}", {"pipeline": "p", "dataset": "d"}, "p/d"),
        ("{{ value }}", {"value": 3.0}, "3"),
        ("{{ value }}", {"value": 0.123456}, "0.1235"),
        ("{{ value | percent }}", {"value": 0.125}, "12.5%"),
        ("{{ value | duration }}", {"value": 5400.0}, "1h30m"),
        ("{{ value | number }}", {"value": 12345.678}, "1.235e+04"),
        ("run {{ run_id }}.", {"run_id": None}, "run ."),
        ("no placeholders", {}, "no placeholders"),
    ],
)
def test_templates_fill_placeholders_and_filters(text: str, values: dict[str, object], out: str) -> None:
    """Each placeholder is replaced by its value through its filter; a missing value renders empty."""
    assert Template(text).render(values) == out


@pytest.mark.parametrize("text", ["{{ a.b }}", "{{ __import__('os') }}", "{{ value | shout }}", "{{ }}"])
def test_anything_but_a_name_and_a_known_filter_is_refused(text: str) -> None:
    """Attribute access, calls, unknown filters and empty placeholders are errors, not code."""
    with pytest.raises(ValueError, match=r"placeholder|filter"):
        Template(text)


def test_a_template_naming_a_label_the_rule_never_sets_is_a_config_error() -> None:
    """A run_failed rule has no dataset label, so {{ dataset }} is refused with the names it may use."""
    with pytest.raises(ConfigError, match=r"refers to dataset.*may use alertname, pipeline, run_id"):
        Rule("X", RunFailed(), annotations={"summary": "{{ dataset }} broke"})


def test_a_template_may_use_the_rules_own_labels() -> None:
    """Static labels of the rule are template names too."""
    rule = Rule("X", RunFailed(), labels={"team": "data"}, annotations={"summary": "{{ team }}: {{ pipeline }}"})
    assert rule.render(rule.alert_labels({"pipeline": "orders"})) == {"summary": "data: orders"}
