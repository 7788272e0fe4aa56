"""From alert changes to notifications: which receivers, in which groups, when.

Receivers other than Alertmanager get one :class:`Notification` per group
(alerts sharing the values of ``group_by``, by default ``alertname`` and
``pipeline``): the alerts of a group that started firing or resolved in one
evaluation step go out together, after ``group_wait`` seconds when it is set
(more changes of the group join it meanwhile). A firing alert nobody
acknowledged is sent again every ``repeat_interval`` (the evaluator decides
which). Alertmanager receivers get every change at once and do their own
grouping; pipewarden only re-sends what is firing, as Alertmanager requires.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.records import AlertEvent, AlertState

if TYPE_CHECKING:
    from alerts.delivery import Receiver

__all__ = ["Notification", "Router", "alert_url", "run_url"]


def run_url(external_url: str, run_id: str | None) -> str:
    """The run's page on the daemon's status page (``<external_url>/runs/<run_id>``), or ``""``."""
    if not external_url or not run_id:
        return ""
    return f"{external_url.rstrip('/')}/runs/{urllib.parse.quote(run_id, safe='')}"


def alert_url(external_url: str, fingerprint: str) -> str:
    """The alert's page on the daemon's status page (``<external_url>/alerts/<fingerprint>``), or ``""``."""
    if not external_url:
        return ""
    return f"{external_url.rstrip('/')}/alerts/{fingerprint}"


@dataclass(frozen=True, slots=True)
class Notification:
    """The alerts of one group to tell one receiver about: those that started firing or resolved
    (``repeat``: the group's firing alerts again, after ``repeat_interval``)."""

    group_key: str
    group_labels: Mapping[str, str]
    alerts: tuple[AlertEvent, ...]
    at: float
    external_url: str = ""
    repeat: bool = False
    id: str = field(default="")

    @property
    def status(self) -> str:
        """``firing`` when one of its alerts fires, else ``resolved``."""
        return "firing" if any(a.state is AlertState.FIRING for a in self.alerts) else "resolved"

    @property
    def firing(self) -> list[AlertEvent]:
        return [a for a in self.alerts if a.state is AlertState.FIRING]

    @property
    def resolved(self) -> list[AlertEvent]:
        return [a for a in self.alerts if a.state is not AlertState.FIRING]

    def common_labels(self) -> dict[str, str]:
        return _common([a.labels for a in self.alerts])

    def common_annotations(self) -> dict[str, str]:
        return _common([a.annotations for a in self.alerts])


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def _group_key(receiver: str, labels: Mapping[str, str]) -> str:
    text = "\x00".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return f"{receiver}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"


class Router:
    """Hands alert changes to receivers: grouped notifications, or every change for Alertmanager.

    Not thread-safe: the evaluator calls it under its lock. Receivers only
    enqueue, so nothing here waits on the network.
    """

    def __init__(
        self,
        receivers: Sequence[Receiver],
        *,
        group_by: Sequence[str] = ("alertname", "pipeline"),
        group_wait: float = 0.0,
        external_url: str = "",
    ) -> None:
        self.receivers = list(receivers)
        self.group_by = tuple(group_by)
        self.group_wait = group_wait
        self.external_url = external_url
        # (receiver, group key) -> (labels, due time, alerts by fingerprint): groups waiting out group_wait.
        self._held: dict[tuple[str, str], tuple[dict[str, str], float, dict[str, AlertEvent]]] = {}
        self._count = 0

    def dispatch(self, events: Sequence[AlertEvent], *, now: float, repeat: bool = False) -> None:
        """Route alerts that changed (or, with ``repeat``, are due again) to the receivers."""
        for receiver in self.receivers:
            chosen = [e for e in events if receiver.wants(e)]
            if not chosen:
                continue
            if not receiver.grouped:
                if not repeat:
                    receiver.update(chosen, now=now)
                continue
            groups: dict[tuple[tuple[str, str], ...], list[AlertEvent]] = {}
            for e in chosen:
                groups.setdefault(tuple((k, e.labels.get(k, "")) for k in self.group_by), []).append(e)
            for labels_t, alerts in groups.items():
                labels = dict(labels_t)
                key = _group_key(receiver.name, labels)
                if self.group_wait > 0 and not repeat:
                    held = self._held.setdefault((receiver.name, key), (labels, now + self.group_wait, {}))
                    held[2].update({a.fingerprint: a for a in alerts})
                    continue
                self._send(receiver, key, labels, alerts, now, repeat)

    def tick(self, *, now: float, firing: Sequence[AlertEvent]) -> None:
        """Send the held groups that are due; let Alertmanager receivers re-send what fires."""
        self.flush_held(now=now, due_only=True)
        for receiver in self.receivers:
            if not receiver.grouped:
                receiver.tick([e for e in firing if receiver.wants(e)], now=now)

    def flush_held(self, *, now: float, due_only: bool = False) -> None:
        """Send the groups waiting out ``group_wait`` (all of them, or those due)."""
        by_name = {r.name: r for r in self.receivers}
        for (name, key), (labels, due, alerts) in list(self._held.items()):
            if due_only and due > now:
                continue
            del self._held[(name, key)]
            self._send(by_name[name], key, labels, list(alerts.values()), now, False)

    def _send(
        self,
        receiver: Receiver,
        key: str,
        labels: dict[str, str],
        alerts: Sequence[AlertEvent],
        now: float,
        repeat: bool,
    ) -> None:
        self._count += 1
        note = Notification(
            key,
            labels,
            tuple(sorted(alerts, key=lambda a: a.fingerprint)),
            now,
            self.external_url,
            repeat,
            id=f"{key}:{int(now * 1000)}:{self._count}",
        )
        receiver.notify(note)
