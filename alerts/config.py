"""The ``alerts:`` section of ``pipewarden.yml``: pydantic models, and the rules and receivers built from them.

>>> config = AlertsConfig.model_validate({
...     "rules": [{"name": "OrdersLate", "condition": {"kind": "deadline", "cron": "0 6 * * *",
...                "timezone": "Europe/Paris", "pipelines": ["orders"]}, "severity": "critical"}],
...     "receivers": [{"name": "log", "kind": "log"}],
... })
>>> [r.name for r in build_rules(config)][-1], [r.kind for r in build_receivers(config)]
('OrdersLate', ['log'])

Every model forbids unknown keys, and every value is checked with a message
that says what is allowed. :func:`parse_config` turns pydantic's errors into
one :class:`~agent.errors.ConfigError` listing every problem with its key
path (``alerts.rules[0].condition.max_age: ...``). Secrets are never written
in the file: ``secret_env``/``url_env`` name an environment variable,
``secret_file`` a file, read when the receivers are built.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.errors import ConfigError
from alerts.actions import ActionHandler
from alerts.alertmanager import AlertmanagerReceiver
from alerts.conditions import (
    CHECK_KINDS,
    CheckFailed,
    Condition,
    ConsecutiveFailures,
    DriftAbove,
    DuplicatesAbove,
    NullFractionAbove,
    RowsLostAbove,
    RunFailed,
    TaskFailed,
)
from alerts.delivery import AlertMatch, Receiver
from alerts.durations import parse_duration
from alerts.evaluator import AlertEvaluator
from alerts.facts import RunHistory
from alerts.metrics import AlertMetrics
from alerts.receivers import LogReceiver, SlackReceiver, WebhookReceiver
from alerts.rules import DEFAULT_RULES, Resume, Rule, Trigger
from alerts.store import AlertStateStore
from alerts.timed import (
    STATS,
    DeadlineMissed,
    DurationAbove,
    ExportsFailing,
    Stale,
    SuccessRateBelow,
    check_cron,
    check_timezone,
)

__all__ = ["AlertsConfig", "build_receivers", "build_rules", "evaluator_from_config", "parse_config"]

Duration = Annotated[float, BeforeValidator(parse_duration)]
Patterns = list[Annotated[str, Field(min_length=1)]]
Severity = Literal["critical", "warning", "info"]
DriftMethod = Literal["psi", "ks", "wasserstein", "js", "chi2"]
CheckKind = Literal["loss", "duplication", "drift", "freshness", "schema", "volume", "completeness", "custom", "gx"]
assert set(CHECK_KINDS) == set(CheckKind.__args__)  # type: ignore[attr-defined]
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- conditions ---------------------------------------------------------------------------------


class RunFailedSpec(_Model):
    """A run failed; holds until the pipeline's next success."""

    kind: Literal["run_failed"]
    pipelines: Patterns = ["*"]

    def build(self) -> Condition:
        return RunFailed(pipelines=tuple(self.pipelines))


class TaskFailedSpec(_Model):
    """A task's last attempt failed; holds until it next succeeds."""

    kind: Literal["task_failed"]
    pipelines: Patterns = ["*"]
    tasks: Patterns = ["*"]

    def build(self) -> Condition:
        return TaskFailed(pipelines=tuple(self.pipelines), tasks=tuple(self.tasks))


class ConsecutiveFailuresSpec(_Model):
    """``count`` runs failed in a row."""

    kind: Literal["consecutive_failures"]
    count: int = Field(3, ge=1)
    pipelines: Patterns = ["*"]

    def build(self) -> Condition:
        return ConsecutiveFailures(count=self.count, pipelines=tuple(self.pipelines))


class CheckFailedSpec(_Model):
    """A data-quality check failed or errored (by kind, dataset, check, severity)."""

    kind: Literal["check_failed"]
    statuses: list[Literal["fail", "error", "warn"]] = Field(["fail", "error"], min_length=1)
    kinds: list[CheckKind] = []
    datasets: Patterns = ["*"]
    checks: Patterns = ["*"]
    severities: list[Literal["warn", "fail"]] = []
    pipelines: Patterns = ["*"]

    def build(self) -> Condition:
        return CheckFailed(
            statuses=tuple(self.statuses),
            kinds=tuple(self.kinds),
            datasets=tuple(self.datasets),
            checks=tuple(self.checks),
            severities=tuple(self.severities),
            pipelines=tuple(self.pipelines),
        )


class DriftSpec(_Model):
    """A column's drift score above ``above`` for the ``methods`` named."""

    kind: Literal["drift"]
    above: float
    methods: list[DriftMethod] = Field(["psi"], min_length=1)
    columns: Patterns = ["*"]
    datasets: Patterns = ["*"]
    pipelines: Patterns = ["*"]

    def build(self) -> Condition:
        return DriftAbove(
            above=self.above,
            methods=tuple(self.methods),
            columns=tuple(self.columns),
            datasets=tuple(self.datasets),
            pipelines=tuple(self.pipelines),
        )


class RowsLostSpec(_Model):
    """More than ``above`` rows lost."""

    kind: Literal["rows_lost"]
    above: float = Field(0.0, ge=0)
    datasets: Patterns = ["*"]
    pipelines: Patterns = ["*"]

    def build(self) -> Condition:
        return RowsLostAbove(above=self.above, datasets=tuple(self.datasets), pipelines=tuple(self.pipelines))


class DuplicatesSpec(_Model):
    """More than ``above`` duplicate rows."""

    kind: Literal["duplicates"]
    above: float = Field(0.0, ge=0)
    datasets: Patterns = ["*"]
    pipelines: Patterns = ["*"]

    def build(self) -> Condition:
        return DuplicatesAbove(above=self.above, datasets=tuple(self.datasets), pipelines=tuple(self.pipelines))


class NullFractionSpec(_Model):
    """A column's null fraction above ``above`` (0 to 1)."""

    kind: Literal["null_fraction"]
    above: float = Field(ge=0, lt=1)
    columns: Patterns = ["*"]
    datasets: Patterns = ["*"]
    pipelines: Patterns = ["*"]

    def build(self) -> Condition:
        return NullFractionAbove(
            above=self.above,
            columns=tuple(self.columns),
            datasets=tuple(self.datasets),
            pipelines=tuple(self.pipelines),
        )


class StaleSpec(_Model):
    """The last success is older than ``max_age``."""

    kind: Literal["stale"]
    max_age: Duration = Field(gt=0)
    pipelines: Patterns = ["*"]

    def build(self) -> Condition:
        return Stale(max_age=self.max_age, pipelines=tuple(self.pipelines))


class DeadlineSpec(_Model):
    """No success by the deadlines of ``cron`` in ``timezone`` (within ``within`` before each)."""

    kind: Literal["deadline"]
    cron: str
    timezone: str = "UTC"
    within: Duration | None = Field(None, gt=0)
    pipelines: Patterns = ["*"]

    _cron = field_validator("cron")(check_cron)
    _timezone = field_validator("timezone")(check_timezone)

    def build(self) -> Condition:
        return DeadlineMissed(
            cron=self.cron, timezone=self.timezone, within=self.within, pipelines=tuple(self.pipelines)
        )


class DurationSpec(_Model):
    """Run duration (``stat`` over ``window``) above ``above``."""

    kind: Literal["duration"]
    above: Duration = Field(gt=0)
    stat: Literal["last", "mean", "max", "p50", "p90", "p95", "p99"] = "last"
    window: Duration = Field(3600.0, gt=0)
    min_runs: int = Field(1, ge=1)
    pipelines: Patterns = ["*"]

    def build(self) -> Condition:
        return DurationAbove(
            above=self.above,
            stat=self.stat,
            window=self.window,
            min_runs=self.min_runs,
            pipelines=tuple(self.pipelines),
        )


assert set(STATS) == set(DurationSpec.model_fields["stat"].annotation.__args__)  # type: ignore[union-attr]


class SuccessRateSpec(_Model):
    """Success rate over ``window`` below ``below``."""

    kind: Literal["success_rate"]
    below: float = Field(gt=0, le=1)
    window: Duration = Field(86400.0, gt=0)
    min_runs: int = Field(5, ge=1)
    pipelines: Patterns = ["*"]

    def build(self) -> Condition:
        return SuccessRateBelow(
            below=self.below, window=self.window, min_runs=self.min_runs, pipelines=tuple(self.pipelines)
        )


class ExportsFailingSpec(_Model):
    """At least ``count`` telemetry exports failed within ``window``."""

    kind: Literal["exports_failing"]
    exporters: Patterns = ["*"]
    count: int = Field(1, ge=1)
    window: Duration = Field(600.0, gt=0)
    pipelines: Patterns = ["*"]

    def build(self) -> Condition:
        return ExportsFailing(
            exporters=tuple(self.exporters), count=self.count, window=self.window, pipelines=tuple(self.pipelines)
        )


ConditionSpec = Annotated[
    RunFailedSpec
    | TaskFailedSpec
    | ConsecutiveFailuresSpec
    | CheckFailedSpec
    | DriftSpec
    | RowsLostSpec
    | DuplicatesSpec
    | NullFractionSpec
    | StaleSpec
    | DeadlineSpec
    | DurationSpec
    | SuccessRateSpec
    | ExportsFailingSpec,
    Field(discriminator="kind"),
]


# --- rules --------------------------------------------------------------------------------------


class ResumeSpec(_Model):
    """Resume the failed run, at most ``max`` times per ``per``."""

    kind: Literal["resume"]
    max: int = Field(3, ge=1)
    per: Duration = Field(3600.0, gt=0)

    def build(self) -> Resume:
        return Resume(max=self.max, per=self.per)


class TriggerSpec(_Model):
    """Start a run of ``pipeline`` with ``params``, at most ``max`` times per ``per``."""

    kind: Literal["trigger"]
    pipeline: str = Field(min_length=1)
    params: dict[str, str] = {}
    max: int = Field(1, ge=1)
    per: Duration = Field(3600.0, gt=0)

    def build(self) -> Trigger:
        return Trigger(pipeline=self.pipeline, params=self.params, max=self.max, per=self.per)


ActionSpec = Annotated[ResumeSpec | TriggerSpec, Field(discriminator="kind")]


class RuleSpec(_Model):
    """One rule of ``alerts.rules``."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
    condition: ConditionSpec
    for_: Duration = Field(0.0, alias="for")
    keep_firing_for: Duration = 0.0
    severity: Severity = "warning"
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    actions: list[ActionSpec] = []

    @model_validator(mode="after")
    def _builds(self) -> RuleSpec:
        self.build()  # templates, labels, actions: the Rule checks them and says what is allowed
        return self

    def build(self) -> Rule:
        return Rule(
            self.name,
            self.condition.build(),
            for_=self.for_,
            keep_firing_for=self.keep_firing_for,
            severity=self.severity,
            labels=self.labels,
            annotations=self.annotations,
            actions=tuple(a.build() for a in self.actions),
        )


# --- receivers ----------------------------------------------------------------------------------


def _http_url(value: str | None) -> str | None:
    if value is not None and not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(f"must be an http:// or https:// URL — got {value!r}")
    return value


def _env_name(value: str | None) -> str | None:
    if value is not None and not _ENV.match(value):
        raise ValueError(f"must be the name of an environment variable (letters, digits, _) — got {value!r}")
    return value


class MatchSpec(_Model):
    """Which alerts a receiver gets: ``severities`` (empty: all), ``labels`` (glob values)."""

    severities: list[Severity] = []
    labels: dict[str, str] = {}


class _ReceiverSpec(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$")
    match: MatchSpec | None = None
    send_resolved: bool = True
    timeout: Duration = Field(5.0, gt=0)
    retries: int = Field(3, ge=0, le=10)
    backoff: Duration = 0.5
    backoff_max: Duration = 30.0

    @model_validator(mode="after")
    def _backoff(self) -> _ReceiverSpec:
        if self.backoff_max < self.backoff:
            raise ValueError(f"backoff_max ({self.backoff_max:g}s) must be at least backoff ({self.backoff:g}s)")
        return self

    def options(self) -> dict[str, Any]:
        match = self.match or MatchSpec()
        return {
            "timeout": self.timeout,
            "retries": self.retries,
            "backoff": self.backoff,
            "backoff_max": self.backoff_max,
            "send_resolved": self.send_resolved,
            "match": AlertMatch(tuple(match.severities), dict(match.labels)),
        }


def _read_env(name: str, env: Mapping[str, str], receiver: str, key: str) -> str:
    value = env.get(name)
    if not value:
        raise ConfigError(
            f"receiver {receiver!r}: {key} names the environment variable {name}, which is not set; "
            f"export {name}=... before starting pipewarden"
        )
    return value


class _Signed(_ReceiverSpec):
    url: str | None = None
    url_env: str | None = None
    secret: str | None = None
    secret_env: str | None = None
    secret_file: str | None = None

    _url = field_validator("url")(_http_url)
    _envs = field_validator("url_env", "secret_env")(_env_name)

    @model_validator(mode="after")
    def _sources(self) -> _Signed:
        if self.secret is not None:
            raise ValueError(
                "do not write a secret in pipewarden.yml (it ends up in version control); write "
                "secret_env: NAME (an environment variable) or secret_file: PATH instead"
            )
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url (the address) or url_env (an environment variable holding it)")
        if self.secret_env is not None and self.secret_file is not None:
            raise ValueError("give at most one of secret_env or secret_file")
        return self

    def resolve(self, env: Mapping[str, str]) -> dict[str, Any]:
        url = self.url if self.url is not None else _read_env(self.url_env or "", env, self.name, "url_env")
        if _http_url(url) is None:
            raise ConfigError(f"receiver {self.name!r}: the URL is empty")
        secret = None
        if self.secret_env is not None:
            secret = _read_env(self.secret_env, env, self.name, "secret_env").encode()
        elif self.secret_file is not None:
            try:
                secret = Path(self.secret_file).expanduser().read_bytes().strip()
            except OSError as exc:
                raise ConfigError(
                    f"receiver {self.name!r}: secret_file {self.secret_file} cannot be read ({exc.strerror or exc})"
                ) from None
            if not secret:
                raise ConfigError(f"receiver {self.name!r}: secret_file {self.secret_file} is empty")
        return {"url": url, "secret": secret}


class AlertmanagerSpec(_ReceiverSpec):
    """Alertmanager's API v2 at ``url`` (the base URL, e.g. http://alertmanager:9093)."""

    kind: Literal["alertmanager"]
    url: str
    resend_interval: Duration = 60.0
    bearer_token_env: str | None = None

    _url = field_validator("url")(_http_url)
    _env = field_validator("bearer_token_env")(_env_name)

    @field_validator("resend_interval")
    @classmethod
    def _resend(cls, value: float) -> float:
        if not 30 <= value <= 180:
            raise ValueError(
                f"must be from 30s to 3m (Alertmanager forgets alerts not re-sent within its "
                f"resolve_timeout) — got {value:g}s"
            )
        return value

    def build(self, env: Mapping[str, str]) -> Receiver:
        token = _read_env(self.bearer_token_env, env, self.name, "bearer_token_env") if self.bearer_token_env else None
        return AlertmanagerReceiver(
            self.name, self.url, resend_interval=self.resend_interval, bearer_token=token, **self.options()
        )


class WebhookSpec(_Signed):
    """A generic JSON webhook, signed with HMAC-SHA256 when a secret is given."""

    kind: Literal["webhook"]
    headers: dict[str, str] = {}

    def build(self, env: Mapping[str, str]) -> Receiver:
        return WebhookReceiver(self.name, **self.resolve(env), headers=self.headers, **self.options())


class SlackSpec(_Signed):
    """A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat)."""

    kind: Literal["slack"]
    channel: str | None = None
    username: str | None = None
    icon_emoji: str | None = None

    def build(self, env: Mapping[str, str]) -> Receiver:
        return SlackReceiver(
            self.name,
            **self.resolve(env),
            channel=self.channel,
            username=self.username,
            icon_emoji=self.icon_emoji,
            **self.options(),
        )


class LogSpec(_ReceiverSpec):
    """The ``pipewarden.alerts`` logger."""

    kind: Literal["log"]
    level: Literal["debug", "info", "warning", "error"] = "warning"

    def build(self, env: Mapping[str, str]) -> Receiver:
        return LogReceiver(self.name, level=self.level, **self.options())


ReceiverSpec = Annotated[AlertmanagerSpec | WebhookSpec | SlackSpec | LogSpec, Field(discriminator="kind")]


# --- the section --------------------------------------------------------------------------------

_DEFAULT_NAMES = tuple(r.name for r in DEFAULT_RULES)


class AlertsConfig(_Model):
    """The ``alerts:`` section of pipewarden.yml.

    ``defaults``: run the default rules (a rule of yours with a default's
    name replaces it; ``disable`` leaves some out). With no ``receivers``,
    alerts go to the log.
    """

    defaults: bool = True
    disable: list[str] = []
    external_url: str | None = None
    group_by: list[Annotated[str, Field(min_length=1)]] = ["alertname", "pipeline"]
    group_wait: Duration = 0.0
    repeat_interval: Duration = Field(4 * 3600.0, gt=0)
    rules: list[RuleSpec] = []
    receivers: list[ReceiverSpec] = []

    _url = field_validator("external_url")(_http_url)

    @field_validator("disable")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in _DEFAULT_NAMES]
        if unknown:
            raise ValueError(
                f"{', '.join(map(repr, unknown))} is not a default rule; the default rules are "
                f"{', '.join(_DEFAULT_NAMES)}"
            )
        return names

    @field_validator("rules", "receivers")
    @classmethod
    def _unique(cls, items: list[Any]) -> list[Any]:
        names = [item.name for item in items]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"names must be unique; {', '.join(dupes)} appear more than once")
        return items


def parse_config(data: Mapping[str, Any] | AlertsConfig | None, *, where: str = "alerts") -> AlertsConfig:
    """Validate the ``alerts:`` section; raise one ConfigError listing every problem with its key path."""
    if isinstance(data, AlertsConfig):
        return data
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping (rules:, receivers:, ...) — got {type(data).__name__}")
    try:
        return AlertsConfig.model_validate(dict(data))
    except ValidationError as exc:
        problems = [f"{_path(where, data, err['loc'])}: {_message(err)}" for err in exc.errors()]
        head = (
            problems[0] if len(problems) == 1 else f"{len(problems)} problems in {where}:\n  " + "\n  ".join(problems)
        )
        raise ConfigError(head, problems=problems) from None


def _message(err: Mapping[str, Any]) -> str:
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if err["type"] == "extra_forbidden":
        return "unknown key; check its spelling against docs/alerts.md"
    if err["type"] == "missing":
        return "required"
    return msg


def _path(where: str, data: Any, loc: tuple[Any, ...]) -> str:
    """``alerts.rules[0].condition.max_age`` from a pydantic location (union tags left out)."""
    out = where
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        if isinstance(node, Mapping) and part not in node and node.get("kind") == part:
            continue  # the tag pydantic adds for a discriminated union
        if part == "for_":
            part = "for"
        out += f".{part}"
        node = node.get(part) if isinstance(node, Mapping) else None
    return out


def build_rules(config: AlertsConfig) -> list[Rule]:
    """The default rules (unless turned off, minus ``disable`` and those you redefine), then yours."""
    mine = [spec.build() for spec in config.rules]
    names = {r.name for r in mine}
    defaults = [r for r in DEFAULT_RULES if config.defaults and r.name not in config.disable and r.name not in names]
    return defaults + mine


def build_receivers(config: AlertsConfig, *, env: Mapping[str, str] | None = None) -> list[Receiver]:
    """The receivers, with secrets read from ``env`` (default: the process environment) or files.

    With none declared: one log receiver.
    """
    env = os.environ if env is None else env
    if not config.receivers:
        return [LogReceiver()]
    problems = []
    out = []
    for i, spec in enumerate(config.receivers):
        try:
            out.append(spec.build(env))
        except ConfigError as exc:
            problems.append(f"alerts.receivers[{i}]: {exc}")
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else "\n".join(problems), problems=problems)
    return out


def evaluator_from_config(
    config: Mapping[str, Any] | AlertsConfig | None = None,
    *,
    store: AlertStateStore | None = None,
    history: RunHistory | None = None,
    metrics: AlertMetrics | None = None,
    actions: ActionHandler | None = None,
    env: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
    tick_interval: float | None = 1.0,
) -> AlertEvaluator:
    """An evaluator for the ``alerts:`` section (None: the defaults, alerts to the log).

    ``store`` keeps alert states; when it also keeps runs (the run store), it
    serves as ``history`` too. ``tick_interval`` runs the timer in a thread
    (give None when the host calls :meth:`AlertEvaluator.tick` itself, as the
    daemon does). Add the result to the run-event bus: ``bus.add(evaluator)``.
    """
    cfg = parse_config(config)
    if history is None and isinstance(store, RunHistory):
        history = store
    return AlertEvaluator(
        build_rules(cfg),
        receivers=build_receivers(cfg, env=env),
        store=store,
        history=history,
        metrics=metrics,
        actions=actions,
        group_by=cfg.group_by,
        group_wait=cfg.group_wait,
        repeat_interval=cfg.repeat_interval,
        external_url=cfg.external_url or "",
        clock=clock,
        tick_interval=tick_interval,
    )
