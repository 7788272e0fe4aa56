"""The alerts: section of pipewarden.yml: every problem reported with its key path, secrets never in the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.errors import ConfigError
from alerts.alertmanager import AlertmanagerReceiver
from alerts.conditions import CheckFailed
from alerts.config import AlertsConfig, build_receivers, build_rules, evaluator_from_config, parse_config
from alerts.receivers import LogReceiver, SlackReceiver, WebhookReceiver
from alerts.rules import DEFAULT_RULES, Trigger
from alerts.store import MemoryAlertStore
from alerts.timed import DeadlineMissed

FULL = yaml.safe_load("""
external_url: http://pipewarden.internal:9470
group_by: [alertname, pipeline, dataset]
group_wait: 10s
repeat_interval: 2h
disable: [DataDriftHigh]
rules:
  - name: PipelineStale          # replaces the default of the same name
    condition: {kind: stale, max_age: 2h, pipelines: [orders]}
  - name: OrdersLate
    condition: {kind: deadline, cron: "0 6 * * *", timezone: Europe/Paris, within: 6h, pipelines: [orders]}
    for: 5m
    keep_firing_for: 10m
    severity: critical
    labels: {team: data}
    annotations:
      summary: "{{ pipeline }} not done by 06:00 ({{ value | duration }} late), team {{ team }}"
    actions:
      - {kind: trigger, pipeline: "{{ pipeline }}", params: {mode: catch-up}, max: 1, per: 6h}
receivers:
  - {name: am, kind: alertmanager, url: "http://127.0.0.1:9093", resend_interval: 1m}
  - {name: hooks, kind: webhook, url: "https://hooks.example/pw", secret_env: PW_HOOK_SECRET,
     match: {severities: [critical]}}
  - {name: chat, kind: slack, url_env: PW_SLACK_URL, channel: "#data"}
  - {name: log, kind: log, level: error}
""")
ENV = {"PW_HOOK_SECRET": "s3cret", "PW_SLACK_URL": "https://hooks.slack.example/services/T/B/x"}


def test_a_full_section_builds_rules_and_receivers() -> None:
    """Durations, rule overrides, disable, actions, templates and every receiver kind come out as written."""
    cfg = parse_config(FULL)
    rules = {r.name: r for r in build_rules(cfg)}
    assert set(rules) == {r.name for r in DEFAULT_RULES} - {"DataDriftHigh"} | {"OrdersLate"}
    assert rules["PipelineStale"].condition.max_age == 7200  # type: ignore[attr-defined]
    late = rules["OrdersLate"]
    assert isinstance(late.condition, DeadlineMissed) and late.condition.within == 21600
    assert (late.for_, late.keep_firing_for, late.severity, dict(late.labels)) == (
        300,
        600,
        "critical",
        {"team": "data"},
    )
    assert late.actions == (Trigger("{{ pipeline }}", {"mode": "catch-up"}, max=1, per=21600),)
    receivers = build_receivers(cfg, env=ENV)
    assert [type(r) for r in receivers] == [AlertmanagerReceiver, WebhookReceiver, SlackReceiver, LogReceiver]
    am, hook, chat, _ = receivers
    assert isinstance(am, AlertmanagerReceiver) and am.resend_interval == 60
    assert isinstance(hook, WebhookReceiver) and hook.secret == b"s3cret" and hook.match.severities == ("critical",)
    assert isinstance(chat, SlackReceiver) and chat.url == ENV["PW_SLACK_URL"]


def test_no_configuration_means_the_default_rules_and_the_log() -> None:
    """An empty section runs every default rule and logs the alerts."""
    cfg = parse_config(None)
    assert [r.name for r in build_rules(cfg)] == [r.name for r in DEFAULT_RULES]
    assert [type(r) for r in build_receivers(cfg)] == [LogReceiver]
    assert build_rules(parse_config({"defaults": False})) == []


def test_evaluator_from_config_wires_everything() -> None:
    """One call makes the evaluator with the section's rules, receivers, grouping, links and the store given."""
    store = MemoryAlertStore()
    ev = evaluator_from_config(FULL, store=store, env=ENV, tick_interval=None)
    assert ev.store is store and ev.external_url == "http://pipewarden.internal:9470"
    assert ev.router.group_by == ("alertname", "pipeline", "dataset") and ev.router.group_wait == 10
    assert ev.repeat_interval == 7200 and [r.name for r in ev.receivers] == ["am", "hooks", "chat", "log"]
    assert any(isinstance(r.condition, CheckFailed) for r in ev.rules)


def test_the_run_store_serves_as_history_too(tmp_path: Path) -> None:
    """Given the SQLite run store, the evaluator reads its runs for the timed rules."""
    from agent.store import SQLiteRunStore

    with SQLiteRunStore(tmp_path / "pipewarden.db") as store:
        ev = evaluator_from_config(None, store=store, tick_interval=None)
        assert ev.facts.history is store


BAD: list[tuple[dict[str, Any], str]] = [
    (
        {"rules": [{"name": "X", "condition": {"kind": "stale", "max_age": "2 hours"}}]},
        "alerts.rules[0].condition.max_age: cannot read '2 hours' as a duration",
    ),
    (
        {"rules": [{"name": "X", "condition": {"kind": "stal"}}]},
        "alerts.rules[0].condition: Input tag 'stal' found using 'kind' does not match",
    ),
    (
        {"rules": [{"name": "X", "condition": {"kind": "run_failed"}, "severity": "high"}]},
        "alerts.rules[0].severity: Input should be 'critical', 'warning' or 'info'",
    ),
    (
        {"rules": [{"name": "X", "condition": {"kind": "run_failed"}, "annotations": {"s": "{{ dataset }}"}}]},
        "alerts.rules[0]: rule 'X': annotation 's' refers to dataset",
    ),
    (
        {"rules": [{"name": "X", "condition": {"kind": "deadline", "cron": "6am"}}]},
        "alerts.rules[0].condition.cron: '6am' is not a cron expression",
    ),
    (
        {"rules": [{"name": "X", "condition": {"kind": "check_failed", "kinds": ["dupes"]}}]},
        "alerts.rules[0].condition.kinds[0]: Input should be 'loss'",
    ),
    (
        {"rules": [{"name": "X", "condition": {"kind": "run_failed"}, "actions": [{"kind": "resume", "max": 0}]}]},
        "alerts.rules[0].actions[0].max: Input should be greater than or equal to 1",
    ),
    (
        {"receivers": [{"name": "h", "kind": "webhook", "url": "http://x", "secret": "abc"}]},
        "alerts.receivers[0]: do not write a secret in pipewarden.yml",
    ),
    ({"receivers": [{"name": "h", "kind": "webhook"}]}, "alerts.receivers[0]: give exactly one of url"),
    (
        {"receivers": [{"name": "a", "kind": "alertmanager", "url": "http://x", "resend_interval": "10m"}]},
        "alerts.receivers[0].resend_interval: must be from 30s to 3m",
    ),
    (
        {"receivers": [{"name": "a", "kind": "alertmanager", "url": "ftp://x"}]},
        "alerts.receivers[0].url: must be an http:// or https:// URL",
    ),
    ({"disable": ["NoSuchRule"]}, "alerts.disable: 'NoSuchRule' is not a default rule"),
    (
        {"rules": [{"name": "X", "condition": {"kind": "run_failed"}}] * 2},
        "alerts.rules: names must be unique; X appear",
    ),
    ({"reciever": []}, "alerts.reciever: unknown key"),
]


@pytest.mark.parametrize(("data", "message"), BAD, ids=[m.split(":")[0] + f"-{i}" for i, (_, m) in enumerate(BAD)])
def test_problems_name_their_key_path_and_what_is_allowed(data: dict[str, Any], message: str) -> None:
    """Each mistake gives a ConfigError whose message starts with the key path and says what to write."""
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert any(p.startswith(message) for p in info.value.problems), info.value.problems


def test_every_problem_is_reported_at_once() -> None:
    """Three mistakes in three places: three problems in one error."""
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "group_wait": "soon",
                "rules": [{"name": "X", "condition": {"kind": "stale"}}],
                "receivers": [{"name": "l", "kind": "log", "level": "loud"}],
            }
        )
    assert [p.split(":")[0] for p in info.value.problems] == [
        "alerts.group_wait",
        "alerts.rules[0].condition.max_age",
        "alerts.receivers[0].level",
    ]


def test_secrets_come_from_the_environment_or_a_file(tmp_path: Path) -> None:
    """secret_env reads a variable, secret_file a file; a variable that is not set is an error naming it."""
    key = tmp_path / "hook.key"
    key.write_text("from-file\n")
    cfg = parse_config(
        {
            "receivers": [
                {"name": "a", "kind": "webhook", "url": "http://x", "secret_env": "PW_SECRET"},
                {"name": "b", "kind": "webhook", "url": "http://x", "secret_file": str(key)},
            ]
        }
    )
    a, b = build_receivers(cfg, env={"PW_SECRET": "from-env"})
    assert (a.secret, b.secret) == (b"from-env", b"from-file")  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="PW_SECRET, which is not set"):
        build_receivers(cfg, env={})


def test_the_models_are_usable_directly() -> None:
    """AlertsConfig.model_validate gives the same result as parse_config, with defaults filled in."""
    cfg = AlertsConfig.model_validate({"rules": [{"name": "X", "condition": {"kind": "run_failed"}, "for": "1m"}]})
    assert (cfg.rules[0].for_, cfg.repeat_interval, cfg.group_by) == (60.0, 14400.0, ["alertname", "pipeline"])
    assert parse_config(cfg) is cfg
