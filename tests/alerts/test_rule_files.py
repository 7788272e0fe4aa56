"""The shipped Prometheus rules: promtool checks and tests them, a real Prometheus loads them, the agent's rules."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from servers import PrometheusServer, wait_until

import alerts
from alerts.rules import DEFAULT_RULES

pytestmark = pytest.mark.integration

ALERTS = Path(alerts.__file__).parent
RULES = ALERTS / "pipewarden.rules.yml"
RULE_TESTS = ALERTS / "pipewarden.rules.test.yml"
ROUTING = ALERTS / "alertmanager.yml.example"


def prometheus_rules() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"]}


def test_promtool_checks_the_rule_file(promtool: str) -> None:
    """promtool check rules accepts the file and finds every rule."""
    out = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(prometheus_rules())} rules found" in out.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    """promtool test rules runs the shipped unit tests and they pass."""
    out = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_of_the_rule_file_has_a_unit_test() -> None:
    """Each alert is named in at least one alert_rule_test with an expected firing alert."""
    doc = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    tested = {case["alertname"] for t in doc["tests"] for case in t.get("alert_rule_test", []) if case["exp_alerts"]}
    assert tested == set(prometheus_rules())


def test_the_routing_example_is_a_valid_alertmanager_config(amtool: str) -> None:
    """amtool check-config accepts alertmanager.yml.example."""
    out = subprocess.run([amtool, "check-config", str(ROUTING)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_prometheus_file_holds_the_agents_default_rules() -> None:
    """Every default rule of the agent is in the rule file under the same name and severity."""
    rules = prometheus_rules()
    for rule in DEFAULT_RULES:
        assert rule.name in rules, f"{rule.name} is missing from {RULES.name}"
        assert rules[rule.name]["labels"]["severity"] == rule.severity


def test_a_real_prometheus_loads_the_rules(
    prometheus_server: Callable[..., PrometheusServer], closed_port: int
) -> None:
    """Prometheus started with the rule file lists every rule, evaluated without error."""
    prom = prometheus_server([f"127.0.0.1:{closed_port}"], rule_files=[RULES])

    def loaded() -> list[dict[str, Any]] | None:
        groups = prom.process.get_json("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None

    rules = wait_until(loaded, what="the rules evaluated once")
    assert {r["name"] for r in rules} == set(prometheus_rules())
    assert {r["health"] for r in rules} == {"ok"}
