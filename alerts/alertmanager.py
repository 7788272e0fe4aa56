"""Alertmanager API v2: every change POSTed to ``/api/v2/alerts`` at once, firing alerts re-sent.

>>> am = AlertmanagerReceiver("am", "http://127.0.0.1:9093", resend_interval=60)
>>> from alerts.delivery import sample_alert
>>> doc = am.payload(sample_alert(0.0), now=0.0)
>>> doc["labels"]["alertname"], doc["startsAt"], doc["endsAt"]
('PipewardenTest', '1970-01-01T00:00:00.000Z', '1970-01-01T00:04:00.000Z')

Alertmanager forgets an alert it has not heard of for a while, so firing
alerts are re-sent every ``resend_interval`` seconds (default 60; Alertmanager
wants 30 s to 3 min). A firing alert carries ``endsAt`` four intervals ahead,
as Prometheus does: if pipewarden stops, Alertmanager resolves it by itself
rather than keeping a stale alert forever. A resolution is the alert with
``endsAt`` at the time it resolved; one that could not be delivered is tried
again at each interval. Alertmanager does the grouping, the repeats and the
routing to people; ``generatorURL`` links to the alert on the daemon's status
page when ``external_url`` is set.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.errors import ConfigError
from agent.records import AlertEvent, AlertState
from alerts.delivery import Receiver, http_send, sample_alert
from alerts.metrics import NotificationOutcome
from alerts.receivers import _check_url, iso_time
from alerts.routing import alert_url

__all__ = ["AlertmanagerReceiver", "Batch"]

_RESEND_LIMITS = (30.0, 180.0)
_MAX_UNSENT_RESOLVED = 10_000


@dataclass(frozen=True, slots=True)
class Batch:
    """One POST: alerts as Alertmanager wants them, made at ``at``; ``repeat`` for re-sends."""

    alerts: tuple[dict[str, Any], ...]
    fingerprints: tuple[str, ...]
    firing: tuple[bool, ...]
    at: float
    repeat: bool = False


class AlertmanagerReceiver(Receiver):
    """Sends alerts to one Alertmanager (for an HA pair, declare one receiver per instance)."""

    kind = "alertmanager"
    grouped = False

    def __init__(
        self, name: str, url: str, *, resend_interval: float = 60.0, bearer_token: str | None = None, **options: Any
    ) -> None:
        super().__init__(name, **options)
        self.url = _check_url(name, url).rstrip("/") + "/api/v2/alerts"
        if not (isinstance(resend_interval, int | float) and math.isfinite(resend_interval) and resend_interval > 0):
            raise ConfigError(
                f"receiver {name!r}: resend_interval must be a positive number of seconds "
                f"(Alertmanager wants {_RESEND_LIMITS[0]:g} to {_RESEND_LIMITS[1]:g}) "
                f"— got {resend_interval!r}"
            )
        self.resend_interval = float(resend_interval)
        self.bearer_token = bearer_token
        self._lock = threading.Lock()
        self._sent: dict[str, float] = {}  # firing alert -> when Alertmanager last accepted it
        self._tried: dict[str, float] = {}  # alert -> when it was last queued
        self._unsent_resolved: dict[str, tuple[dict[str, Any], float]] = {}  # resolution -> last tried

    def __repr__(self) -> str:
        return f"<AlertmanagerReceiver {self.name!r} {self.url}>"

    def payload(self, event: AlertEvent, *, now: float) -> dict[str, Any]:
        """One alert in the shape of ``POST /api/v2/alerts`` (empty label values left out)."""
        firing = event.state is AlertState.FIRING
        doc: dict[str, Any] = {
            "labels": {k: v for k, v in event.labels.items() if v},
            "annotations": {k: v for k, v in event.annotations.items() if v},
            "startsAt": iso_time(event.fired_at or event.active_at or now),
            "endsAt": iso_time(now + 4 * self.resend_interval if firing else (event.resolved_at or now)),
        }
        if url := alert_url(self.external_url, event.fingerprint):
            doc["generatorURL"] = url
        return doc

    def _batch(self, events: Sequence[AlertEvent], now: float, repeat: bool) -> Batch:
        return Batch(
            tuple(self.payload(e, now=now) for e in events),
            tuple(e.fingerprint for e in events),
            tuple(e.state is AlertState.FIRING for e in events),
            now,
            repeat,
        )

    def update(self, events: Sequence[AlertEvent], *, now: float) -> None:
        """Send alerts that started firing or resolved, now."""
        chosen = [e for e in events if e.state in (AlertState.FIRING, AlertState.RESOLVED)]
        if not chosen:
            return
        with self._lock:
            for e in chosen:
                self._tried[e.fingerprint] = now
                self._unsent_resolved.pop(e.fingerprint, None)
                if e.state is not AlertState.FIRING:
                    self._sent.pop(e.fingerprint, None)
        self.notify(self._batch(chosen, now, False))

    def tick(self, firing: Sequence[AlertEvent], *, now: float) -> None:
        """Re-send the firing alerts not sent for ``resend_interval`` and the resolutions not delivered yet."""
        due: list[AlertEvent] = []
        retry: list[tuple[str, dict[str, Any]]] = []
        with self._lock:
            live = {e.fingerprint for e in firing}
            for fp in [fp for fp in self._sent if fp not in live]:
                del self._sent[fp]
            for e in firing:
                last = max(self._sent.get(e.fingerprint, -math.inf), self._tried.get(e.fingerprint, -math.inf))
                if now - last >= self.resend_interval:
                    due.append(e)
                    self._tried[e.fingerprint] = now
            for fp, (doc, tried) in list(self._unsent_resolved.items()):
                if fp in live:
                    del self._unsent_resolved[fp]
                elif now - tried >= self.resend_interval:
                    retry.append((fp, doc))
                    self._unsent_resolved[fp] = (doc, now)
            for fp in [fp for fp in self._tried if fp not in live and fp not in self._unsent_resolved]:
                del self._tried[fp]
        if due or retry:
            batch = self._batch(due, now, True)
            self.notify(
                Batch(
                    batch.alerts + tuple(d for _, d in retry),
                    batch.fingerprints + tuple(f for f, _ in retry),
                    batch.firing + (False,) * len(retry),
                    now,
                    True,
                )
            )

    def delivered(self, item: Any, outcome: NotificationOutcome, detail: str) -> None:
        batch: Batch = item
        with self._lock:
            for fp, firing, doc in zip(batch.fingerprints, batch.firing, batch.alerts, strict=True):
                if outcome is NotificationOutcome.SENT:
                    if firing:
                        self._sent[fp] = batch.at
                    else:
                        self._unsent_resolved.pop(fp, None)
                elif not firing and len(self._unsent_resolved) < _MAX_UNSENT_RESOLVED:
                    self._unsent_resolved[fp] = (doc, batch.at)

    def deliver(self, item: Any, *, timeout: float) -> str:
        batch: Batch = item
        headers = {"Content-Type": "application/json"}
        if self.bearer_token:
            headers["Authorization"] = f"Bearer {self.bearer_token}"
        body = json.dumps(list(batch.alerts), separators=(",", ":")).encode()
        return http_send(self.url, body, headers, timeout=timeout)

    def sample(self, *, now: float) -> Batch:
        """A test alert that Alertmanager shows for five minutes."""
        doc = self.payload(sample_alert(now), now=now)
        doc["endsAt"] = iso_time(now + 300)
        return Batch((doc,), ("test",), (True,), now)
