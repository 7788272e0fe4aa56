"""The alert evaluator: a run-event listener with a steppable timer.

>>> from agent.events import RunEnded
>>> from alerts.store import MemoryAlertStore
>>> ev = AlertEvaluator(receivers=[], store=MemoryAlertStore())
>>> ev.handle(RunEnded("r1", "orders", "failed", 0.0, 5.0), now=5.0)
>>> [(a.alert, str(a.state)) for a in ev.alerts()]
[('PipelineRunFailed', 'firing')]
>>> ev.handle(RunEnded("r2", "orders", "success", 10.0, 12.0), now=12.0)
>>> ev.alerts()
[]

Add it to the run-event bus as a queued listener (``bus.add(evaluator)``: it
hears TaskEnded, ChecksEvaluated and RunEnded on its own thread, never the
pipeline's). Call :meth:`tick` from the host's loop (the daemon does) or give
``tick_interval`` and :meth:`start` runs a timer thread: timed rules
(staleness, deadlines, windows, failing exports), ``for`` and
``keep_firing_for``, repeats, re-sends to Alertmanager and picking up what
other processes wrote to the store (an acknowledgement from
``pipewarden alerts ack``) all happen in :meth:`tick`. Every state change is
written to the store before it is sent, so a restart neither re-notifies nor
forgets a firing alert. Time always comes in as ``now`` (default: ``clock()``,
read once at the entry point).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from agent.errors import ConfigError
from agent.events import ChecksEvaluated, RunEnded, TaskEnded
from agent.records import AlertEvent, AlertState
from alerts.actions import ActionHandler, ActionRunner
from alerts.conditions import Observation
from alerts.delivery import Receiver
from alerts.facts import ExportError, Facts, RunHistory
from alerts.metrics import ActionOutcome, AlertMetrics, NotificationOutcome, NullAlertMetrics
from alerts.receivers import LogReceiver
from alerts.routing import Notification, Router, run_url
from alerts.rules import DEFAULT_RULES, Rule
from alerts.state import Tracked, advance, fingerprint, observe
from alerts.store import AlertHistoryEntry, AlertStateStore, HistoryKind, MemoryAlertStore, find_alert
from alerts.templates import render_value

__all__ = ["AlertEvaluator"]

log = logging.getLogger("pipewarden.alerts")

_LIVE = (AlertState.PENDING, AlertState.FIRING)


class AlertEvaluator:
    """Evaluates rules over run events and time; keeps alert states in ``store``; tells ``receivers``.

    ``receivers`` default to one :class:`~alerts.receivers.LogReceiver`.
    ``history`` (the run store) tells the timed rules about runs of earlier
    processes. ``actions`` runs the rules' automated responses (none run
    without it). ``group_by``, ``group_wait`` and ``repeat_interval`` apply to
    receivers other than Alertmanager. ``external_url`` is the daemon's status
    page, for links. ``sync_interval`` is how often :meth:`tick` reads changes
    other processes made to the store.
    """

    #: The run events it hears (the bus reads this).
    events = (TaskEnded, ChecksEvaluated, RunEnded)
    name = "alerts"

    def __init__(
        self,
        rules: Iterable[Rule] = DEFAULT_RULES,
        *,
        receivers: Sequence[Receiver] | None = None,
        store: AlertStateStore | None = None,
        history: RunHistory | None = None,
        metrics: AlertMetrics | None = None,
        actions: ActionHandler | None = None,
        group_by: Sequence[str] = ("alertname", "pipeline"),
        group_wait: float = 0.0,
        repeat_interval: float = 4 * 3600.0,
        external_url: str = "",
        clock: Callable[[], float] = time.time,
        tick_interval: float | None = None,
        sync_interval: float = 5.0,
    ) -> None:
        self.rules = list(rules)
        names = [r.name for r in self.rules]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ConfigError(f"alert rule names must be unique; {', '.join(dupes)} appear more than once")
        if not repeat_interval > 0:
            raise ConfigError(f"repeat_interval must be more than 0 seconds — got {repeat_interval!r}")
        self._rules = {r.name: r for r in self.rules}
        self._by_event: dict[type, list[Rule]] = {
            t: [r for r in self.rules if t in r.condition.events] for t in self.events
        }
        self._timed = [r for r in self.rules if r.condition.timed]
        self.store: AlertStateStore = store if store is not None else MemoryAlertStore()
        self.metrics: AlertMetrics = metrics if metrics is not None else NullAlertMetrics()
        self.receivers = list(receivers) if receivers is not None else [LogReceiver()]
        rnames = [r.name for r in self.receivers]
        if dupes := sorted({n for n in rnames if rnames.count(n) > 1}):
            raise ConfigError(f"receiver names must be unique; {', '.join(dupes)} appear more than once")
        self.external_url = external_url
        self.repeat_interval = float(repeat_interval)
        self.clock = clock
        self.tick_interval = tick_interval
        self.sync_interval = sync_interval
        keep = max([r.condition.history_window() for r in self.rules] + [0.0])
        self.facts = Facts(history, keep=keep)
        self.router = Router(self.receivers, group_by=group_by, group_wait=group_wait, external_url=external_url)
        for receiver in self.receivers:
            receiver.bind(metrics=self.metrics, on_result=self._delivered, external_url=external_url)
        declare = getattr(self.metrics, "declare", None)  # optional: a sink written before it existed lacks it
        if declare is not None:
            declare(
                [(r.name, str(o)) for r in self.receivers for o in NotificationOutcome],
                [
                    (rule.name, action.name, str(o))
                    for rule in self.rules
                    for action in rule.actions
                    for o in ActionOutcome
                ],
            )
        self.actions = ActionRunner(actions, self.store, self.metrics) if actions is not None else None
        if actions is None and (acting := [r.name for r in self.rules if r.actions]):
            log.info(
                "pipewarden alert rules %s have automated responses; this process has no action handler, "
                "so they run only where one is (the daemon)",
                ", ".join(acting),
            )
        self._alerts: dict[str, Tracked] = {}
        self._lock = threading.RLock()
        self._exports: collections.deque[ExportError] = collections.deque(maxlen=100_000)
        self._firing: dict[tuple[str, str, str], int] = {}
        self._started = False
        self._synced_at: float | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<AlertEvaluator {len(self.rules)} rules, {len(self.receivers)} receivers>"

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, *, now: float | None = None) -> None:
        """Load the pending and firing alerts from the store, start the receivers (and the timer thread
        when ``tick_interval`` was given). Called by the first event or tick when not called before."""
        with self._lock:
            if self._started:
                return
            now = self.clock() if now is None else now
            self._started = True
            self.facts.started_at = now
            self.facts.discover()
            for event in self.store.list_alerts(states=_LIVE):
                self._adopt(event)
            self._synced_at = now
            self._update_firing()
        for receiver in self.receivers:
            receiver.start()
        if self.tick_interval is not None and self._ticker is None:
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick_loop, name="pipewarden-alerts-timer", daemon=True)
            self._ticker.start()

    def _tick_loop(self) -> None:
        assert self.tick_interval is not None
        failing = False
        while not self._stop.wait(self.tick_interval):
            try:
                self.tick()
                failing = False
            except Exception:
                # One failing tick must not stop the timer, nor fill the log once a second.
                if not failing:
                    log.exception("pipewarden alert evaluation failed; the timer goes on")
                failing = True

    def flush(self, timeout: float = 5.0) -> bool:
        """Send the groups waiting out ``group_wait`` and wait up to ``timeout`` s for every receiver."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self.router.flush_held(now=self.clock())
        ok = True
        for receiver in self.receivers:
            ok = receiver.flush(max(0.0, deadline - time.monotonic())) and ok
        return ok

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the timer, deliver what is queued within ``timeout`` seconds, stop the receivers."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout)
            self._ticker = None
        deadline = time.monotonic() + timeout
        ok = self.flush(timeout)
        for receiver in self.receivers:
            ok = receiver.stop(max(0.0, deadline - time.monotonic())) and ok
        return ok

    # --- inputs -----------------------------------------------------------------------------------

    def handle(self, event: Any, *, now: float | None = None) -> None:
        """Evaluate the event-driven rules on one run event."""
        rules = self._by_event.get(type(event))
        if rules is None:
            return
        if not self._started:
            self.start(now=now)
        with self._lock:
            now = self.clock() if now is None else now
            self._drain_exports()
            if isinstance(event, RunEnded):
                self.facts.run_ended(event)
            changes: list[tuple[Tracked, list[AlertState]]] = []
            acting: list[Tracked] = []
            for rule in rules:
                for obs in rule.condition.observe(event, self.facts):
                    self._apply(rule, obs, now, changes, acting)
            self._commit(changes, acting, now)

    def export_failed(self, exporter: str, *, pipeline: str = "", now: float | None = None) -> None:
        """Report a telemetry export that failed (cheap, any thread: evaluated at the next tick)."""
        self._exports.append(ExportError(exporter, pipeline, self.clock() if now is None else now))

    def tick(self, now: float | None = None) -> None:
        """Evaluate timed rules, let ``for``/``keep_firing_for`` elapse, repeat, re-send, sync the store."""
        if not self._started:
            self.start(now=now)
        with self._lock:
            now = self.clock() if now is None else now
            self._drain_exports()
            if self._synced_at is None or now - self._synced_at >= self.sync_interval:
                self._sync(now)
            changes: list[tuple[Tracked, list[AlertState]]] = []
            acting: list[Tracked] = []
            for rule in self._timed:
                holding = set()
                for obs in rule.condition.poll(now, self.facts):
                    holding.add(fingerprint(rule.alert_labels(obs.labels)))
                    self._apply(rule, obs, now, changes, acting)
                for t in [t for t in self._alerts.values() if t.rule is rule and t.event.fingerprint not in holding]:
                    labels = {k: t.event.labels.get(k, "") for k in rule.condition.labels}
                    self._apply(rule, Observation(labels, False), now, changes, acting)
            for t in list(self._alerts.values()):
                if entered := advance(t, now):
                    changes.append((t, entered))
            self._commit(changes, acting, now)
            self._repeat(now)
            self.router.tick(
                now=now, firing=[t.event for t in self._alerts.values() if t.event.state is AlertState.FIRING]
            )

    def ack(self, alert_id: str, *, by: str, now: float | None = None) -> AlertEvent:
        """Acknowledge the firing alert ``alert_id`` (its fingerprint, or 4+ leading characters of it).

        Observes the incident response time once. Raises
        :class:`~alerts.store.AlertNotFoundError` when no alert matches,
        ``ValueError`` when it is not firing.
        """
        with self._lock:
            now = self.clock() if now is None else now
            found = find_alert(self.store, alert_id)
            acked = self.store.acknowledge_alert(found.fingerprint, by=by, now=now)
            if acked is None:
                raise ValueError(
                    f"alert {found.fingerprint} ({found.alert}) is {found.state}, not firing; only a "
                    "firing alert can be acknowledged"
                )
            t = self._alerts.get(acked.fingerprint)
            if acked.acknowledged_at == now and acked.fired_at is not None:
                self._incident(acked, now - acked.fired_at)
            if t is not None:
                t.event = acked
            return acked

    def alerts(self) -> list[AlertEvent]:
        """The pending and firing alerts, oldest first."""
        with self._lock:
            return sorted((t.event for t in self._alerts.values()), key=lambda a: (a.active_at or 0.0, a.fingerprint))

    # --- inside ------------------------------------------------------------------------------

    def _drain_exports(self) -> None:
        while self._exports:
            self.facts.export_failed(self._exports.popleft())

    def _values(self, event: AlertEvent) -> dict[str, Any]:
        return {
            **event.labels,
            "value": event.value,
            "run_id": event.run_id,
            "run_url": run_url(self.external_url, event.run_id),
        }

    def _apply(
        self,
        rule: Rule,
        obs: Observation,
        now: float,
        changes: list[tuple[Tracked, list[AlertState]]],
        acting: list[Tracked],
    ) -> None:
        fp = fingerprint(rule.alert_labels(obs.labels))
        t = self._alerts.get(fp)
        if t is None and not obs.active:
            return
        before = (t.event.value, t.event.run_id) if t is not None else None
        t, entered = observe(t, rule, obs.labels, obs.active, now=now, value=obs.value, run_id=obs.run_id)
        if t is None:
            return
        self._alerts[fp] = t
        if before != (t.event.value, t.event.run_id):
            t.event = dataclasses.replace(t.event, annotations=rule.render(self._values(t.event)))
        if entered:
            changes.append((t, entered))
        elif before is not None and before[1] != t.event.run_id:
            changes.append((t, []))  # a new run keeps it active: remember the run (resume acts on it)
        if obs.active and t.event.state is AlertState.FIRING and rule.actions and obs.run_id is not None:
            acting.append(t)

    def _commit(self, changes: list[tuple[Tracked, list[AlertState]]], acting: list[Tracked], now: float) -> None:
        """Record the changes of one step (store first), then notify and act."""
        notify: list[AlertEvent] = []
        for t, entered in changes:
            e = t.event
            pipeline = e.labels.get("pipeline", "")
            told = AlertState.FIRING in entered or AlertState.RESOLVED in entered
            if told:
                t.event = e = dataclasses.replace(e, last_sent_at=now)
            self.store.save_alert(e)
            for state in entered:
                self.store.add_alert_history(
                    AlertHistoryEntry(
                        e.fingerprint,
                        e.alert,
                        HistoryKind.TRANSITION,
                        now,
                        name=str(state),
                        run_id=e.run_id,
                        detail=_value_text(e.value),
                    )
                )
                if state is AlertState.INACTIVE:
                    continue
                self.metrics.transition(e.alert, e.severity, pipeline, state)
                if state is AlertState.RESOLVED and e.fired_at is not None:
                    self.metrics.response(e.alert, e.severity, pipeline, max(0.0, now - e.fired_at))
                if state is AlertState.FIRING and t.rule.actions and t not in acting:
                    acting.append(t)
            if e.state not in _LIVE:
                self._alerts.pop(e.fingerprint, None)
            if told:
                notify.append(e)
        if changes:
            self._update_firing()
        if notify:
            self.router.dispatch(notify, now=now)
        if self.actions is not None:
            for t in acting:
                if t.event.state is AlertState.FIRING:
                    try:
                        self.actions.run(t, self._values(t.event), now=now)
                    except Exception:
                        log.exception("pipewarden alert %s: automated response failed", t.event.alert)

    def _repeat(self, now: float) -> None:
        due = [
            t
            for t in self._alerts.values()
            if t.event.state is AlertState.FIRING
            and t.event.acknowledged_at is None
            and (t.event.last_sent_at is None or now - t.event.last_sent_at >= self.repeat_interval)
        ]
        if not due:
            return
        # Never sent (stopped between saving and sending): a first notification, not a repeat.
        first = [t.event for t in due if t.event.last_sent_at is None]
        again = [t.event for t in due if t.event.last_sent_at is not None]
        for t in due:
            t.event = dataclasses.replace(t.event, last_sent_at=now)
            self.store.save_alert(t.event)
        if first:
            self.router.dispatch(first, now=now)
        if again:
            self.router.dispatch(again, now=now, repeat=True)

    def _adopt(self, event: AlertEvent) -> None:
        rule = self._rules.get(event.alert)
        if rule is None or event.state not in _LIVE:
            return
        self._alerts[event.fingerprint] = Tracked(rule, event, holds=True)
        if pipeline := event.labels.get("pipeline"):
            self.facts.pipeline(pipeline)

    def _sync(self, now: float) -> None:
        """Take in what other processes changed in the store since the last sync (acks, their alerts)."""
        since = (self._synced_at if self._synced_at is not None else now) - self.sync_interval
        self._synced_at = now
        try:
            rows = self.store.list_alerts(updated_since=since)
        except Exception as exc:
            log.warning("pipewarden alerts could not read the alert store (%s); retrying at the next sync", exc)
            return
        changed = False
        for row in rows:
            t = self._alerts.get(row.fingerprint)
            if t is None:
                if row.state in _LIVE:
                    self._adopt(row)
                    changed = True
                continue
            if (row.updated_at or 0.0) <= (t.event.updated_at or 0.0):
                continue
            if (
                t.event.acknowledged_at is None
                and row.acknowledged_at is not None
                and row.fired_at == t.event.fired_at
                and row.fired_at is not None
            ):
                self._incident(row, row.acknowledged_at - row.fired_at)
            if row.state in _LIVE:
                t.event = row
            else:
                del self._alerts[row.fingerprint]
            changed = True
        if changed:
            self._update_firing()

    def _incident(self, event: AlertEvent, seconds: float) -> None:
        self.metrics.incident_response(event.alert, event.severity, event.labels.get("pipeline", ""), max(0.0, seconds))

    def _update_firing(self) -> None:
        counts: dict[tuple[str, str, str], int] = {}
        for t in self._alerts.values():
            if t.event.state is AlertState.FIRING:
                key = (t.event.alert, t.event.severity, t.event.labels.get("pipeline", ""))
                counts[key] = counts.get(key, 0) + 1
        for key in self._firing.keys() | counts.keys():
            if self._firing.get(key, 0) != counts.get(key, 0):
                self.metrics.firing(*key, counts.get(key, 0))
        self._firing = counts

    def _delivered(self, receiver: Receiver, item: Any, outcome: NotificationOutcome, detail: str) -> None:
        """Record a notification's outcome in each alert's history (on the receiver's thread)."""
        if item.repeat and outcome is NotificationOutcome.SENT:
            return  # a re-send that worked says nothing new
        if isinstance(item, Notification):
            alerts = [(a.fingerprint, a.alert, a.run_id) for a in item.alerts]
        else:  # an Alertmanager batch
            alerts = [
                (fp, doc["labels"].get("alertname", ""), None)
                for fp, doc in zip(item.fingerprints, item.alerts, strict=True)
            ]
        at = self.clock()
        try:
            for fp, alert, run_id in alerts:
                self.store.add_alert_history(
                    AlertHistoryEntry(
                        fp,
                        alert,
                        HistoryKind.NOTIFICATION,
                        at,
                        name=receiver.name,
                        outcome=outcome,
                        detail=detail[:500],
                        run_id=run_id,
                    )
                )
        except Exception as exc:
            log.debug("pipewarden alerts could not record a notification outcome: %s", exc)


def _value_text(value: float | None) -> str:
    return "" if value is None else f"value {render_value(value)}"
