"""Receivers of grouped notifications: a generic JSON webhook, a Slack-compatible incoming webhook, the log.

>>> hook = WebhookReceiver("ops", "http://127.0.0.1:9/hook", secret=b"s3cret")
>>> sorted(json.loads(hook.body(hook.sample(now=0.0))))[:4]
['alerts', 'commonAnnotations', 'commonLabels', 'externalURL']

Every POST carries ``X-Pipewarden-Delivery`` (the same across retries of one
notification); with a ``secret``, also ``X-Pipewarden-Timestamp`` and
``X-Pipewarden-Signature`` (see :mod:`alerts.signing`).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from agent.errors import ConfigError
from agent.records import AlertEvent, AlertState
from alerts.delivery import Receiver, http_send, sample_alert
from alerts.routing import Notification, alert_url, run_url
from alerts.signing import DELIVERY_HEADER, sign_headers
from alerts.templates import render_value

__all__ = ["LogReceiver", "SlackReceiver", "WebhookReceiver", "iso_time"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def iso_time(t: float | None) -> str | None:
    """RFC 3339 in UTC with milliseconds (``2025-01-01T12:00:00.000Z``), as Alertmanager writes it."""
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check_url(name: str, url: str) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"receiver {name!r}: url must start with http:// or https://")
    return url


@functools.cache  # read once: every POST sends it, and the lookup reads the installed metadata
def _version() -> str:
    try:
        from importlib.metadata import version

        return version("pipewarden")
    except Exception:
        return "dev"


class _HttpReceiver(Receiver):
    """A receiver that POSTs JSON, signed when it has a secret."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        secret: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name, **options)
        self.url = _check_url(name, url)
        self.secret = secret
        self.headers = dict(headers or {})
        self.clock = time.time  # the signature's timestamp: the wall clock at the attempt

    def body(self, note: Notification) -> bytes:
        raise NotImplementedError

    def deliver(self, item: Any, *, timeout: float) -> str:
        note: Notification = item
        body = self.body(note)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"pipewarden/{_version()}",
            **self.headers,
            DELIVERY_HEADER: note.id,
        }
        if self.secret is not None:
            headers.update(sign_headers(self.secret, body, timestamp=self.clock()))
        return http_send(self.url, body, headers, timeout=timeout)

    def sample(self, *, now: float) -> Notification:
        alert = sample_alert(now)
        return Notification(
            f"{self.name}:test",
            {"alertname": alert.alert},
            (alert,),
            now,
            self.external_url,
            id=f"{self.name}:test:{int(now * 1000)}",
        )


def alert_dict(a: AlertEvent, external_url: str) -> dict[str, Any]:
    """One alert as the JSON webhook (and ``pipewarden alerts list --json``) shows it."""
    return {
        "status": "firing" if a.state is AlertState.FIRING else "resolved",
        "fingerprint": a.fingerprint,
        "labels": dict(a.labels),
        "annotations": dict(a.annotations),
        "value": a.value,
        "startsAt": iso_time(a.fired_at or a.active_at),
        "endsAt": iso_time(a.resolved_at) if a.state is not AlertState.FIRING else None,
        "runId": a.run_id,
        "runURL": run_url(external_url, a.run_id) or None,
        "generatorURL": alert_url(external_url, a.fingerprint) or None,
        "acknowledgedBy": a.acknowledged_by,
        "acknowledgedAt": iso_time(a.acknowledged_at),
    }


class WebhookReceiver(_HttpReceiver):
    """POSTs one JSON document per notification, shaped like Alertmanager's webhook (``version`` ``"1"``)."""

    kind = "webhook"

    def body(self, note: Notification) -> bytes:
        doc = {
            "version": "1",
            "receiver": self.name,
            "status": note.status,
            "repeat": note.repeat,
            "groupKey": note.group_key,
            "groupLabels": dict(note.group_labels),
            "commonLabels": note.common_labels(),
            "commonAnnotations": note.common_annotations(),
            "externalURL": note.external_url,
            "alerts": [alert_dict(a, note.external_url) for a in note.alerts],
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackReceiver(_HttpReceiver):
    """POSTs ``{"text": ...}`` (Slack mrkdwn) to a Slack, Mattermost or Rocket.Chat incoming webhook."""

    kind = "slack"

    def __init__(
        self,
        name: str,
        url: str,
        *,
        channel: str | None = None,
        username: str | None = None,
        icon_emoji: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name, url, **options)
        self.channel = channel
        self.username = username
        self.icon_emoji = icon_emoji

    def text(self, note: Notification) -> str:
        lines = []
        for title, alerts, mark in (
            ("FIRING", note.firing, ":red_circle:"),
            ("RESOLVED", note.resolved, ":large_green_circle:"),
        ):
            if not alerts:
                continue
            labels = " ".join(f"{k}={v}" for k, v in note.group_labels.items() if v)
            again = " (still firing)" if note.repeat else ""
            lines.append(f"{mark} *[{title}:{len(alerts)}] {_slack_escape(labels)}*{again}")
            for a in alerts:
                summary = a.annotations.get("summary") or a.alert
                line = f"• *{_slack_escape(summary)}*"
                if desc := a.annotations.get("description"):
                    line += f" — {_slack_escape(desc)}"
                if link := run_url(note.external_url, a.run_id):
                    line += f" <{link}|run {_slack_escape(a.run_id or '')}>"
                lines.append(line)
        return "\n".join(lines)

    def body(self, note: Notification) -> bytes:
        doc: dict[str, Any] = {"text": self.text(note)}
        for key in ("channel", "username", "icon_emoji"):
            if value := getattr(self, key):
                doc[key] = value
        return json.dumps(doc, separators=(",", ":")).encode()


class LogReceiver(Receiver):
    """Writes one log line per alert to the ``pipewarden.alerts`` logger (firing at ``level``, resolved at info)."""

    kind = "log"

    def __init__(
        self, name: str = "log", *, level: str = "warning", logger: logging.Logger | None = None, **options: Any
    ) -> None:
        options.setdefault("retries", 0)
        super().__init__(name, **options)
        if level not in _LEVELS:
            raise ConfigError(f"receiver {name!r}: level must be one of {', '.join(_LEVELS)} — got {level!r}")
        self.level = _LEVELS[level]
        self.logger = logger or logging.getLogger("pipewarden.alerts")

    def deliver(self, item: Any, *, timeout: float) -> str:
        note: Notification = item
        for a in note.alerts:
            firing = a.state is AlertState.FIRING
            labels = ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()) if k != "alertname")
            text = a.annotations.get("summary") or ""
            value = f" value={render_value(a.value)}" if a.value is not None else ""
            self.logger.log(
                self.level if firing else logging.INFO,
                "alert %s %s {%s}%s%s%s",
                "FIRING" if firing else "RESOLVED",
                a.alert,
                labels,
                value,
                ": " if text else "",
                text,
            )
        return "logged"

    def sample(self, *, now: float) -> Notification:
        alert = sample_alert(now)
        return Notification(f"{self.name}:test", {"alertname": alert.alert}, (alert,), now)
