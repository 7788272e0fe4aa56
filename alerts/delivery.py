"""How a receiver delivers: its own worker thread, a bounded queue, retries with backoff, every outcome counted.

A receiver never runs on the pipeline's thread or the evaluator's: they only
enqueue. Each attempt has a total deadline (``timeout``); an attempt that
fails with a connection error, a timeout, 408, 425, 429 or 5xx is retried up
to ``retries`` times after an exponential backoff (``backoff``, doubled each
time, capped at ``backoff_max``, with jitter; a ``Retry-After`` is honoured up
to the cap). Other answers fail at once. When the queue is full, a
notification is dropped and counted ``throttled``. Failures are logged once
(until the receiver works again) and counted in ``pipewarden_notifications_total``.
"""

from __future__ import annotations

import abc
import collections
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agent.errors import ConfigError
from agent.records import AlertEvent, AlertState
from alerts.conditions import matches
from alerts.metrics import AlertMetrics, NotificationOutcome, NullAlertMetrics
from alerts.rules import SEVERITIES

__all__ = ["AlertMatch", "DeliveryError", "Receiver", "ResultHook", "TestResult", "http_send"]

log = logging.getLogger("pipewarden.alerts")

ResultHook = Callable[["Receiver", Any, NotificationOutcome, str], None]
"""``on_result(receiver, item, outcome, detail)``: called on the receiver's thread after each final outcome."""


class DeliveryError(Exception):
    """One attempt failed; ``retryable`` says whether another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class TestResult:
    """What one receiver answered to a test notification."""

    receiver: str
    kind: str
    ok: bool
    answer: str


@dataclass(frozen=True)
class AlertMatch:
    """Which alerts a receiver gets: ``severities`` (empty: all) and ``labels`` (values are glob patterns)."""

    severities: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for s in self.severities:
            if s not in SEVERITIES:
                raise ConfigError(f"match.severities must be among {', '.join(SEVERITIES)} — got {s!r}")

    def __call__(self, event: AlertEvent) -> bool:
        if self.severities and event.severity not in self.severities:
            return False
        return all(matches(event.labels.get(k, ""), (v,)) for k, v in self.labels.items())


def http_send(url: str, body: bytes, headers: Mapping[str, str], *, timeout: float) -> str:
    """POST and classify the answer: return ``"200 OK"``, or raise :class:`DeliveryError`.

    Messages never include the URL: a Slack webhook URL is itself the secret.
    """
    import http.client  # delivery only: `import alerts.evaluator` stays free of http and ssl

    from exporters.http import DeadlineExceeded, post

    try:
        resp = post(url, body, headers, timeout=timeout)
    except DeadlineExceeded:
        raise DeliveryError(f"no complete answer within {timeout:g}s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
    answer = f"{resp.status} {resp.reason}".strip()
    if resp.ok:
        return answer
    text = resp.body[:200].decode("utf-8", "replace").strip()
    retryable = resp.status in (408, 425, 429) or resp.status >= 500
    retry_after = None
    if (value := resp.headers.get("retry-after")) and value.strip().isdigit():
        retry_after = float(value.strip())
    raise DeliveryError(f"{answer}: {text}" if text else answer, retryable=retryable, retry_after=retry_after)


def sample_alert(now: float) -> AlertEvent:
    """The alert ``pipewarden alerts test`` sends through every receiver."""
    from alerts.state import fingerprint

    labels = {"alertname": "PipewardenTest", "severity": "info", "pipeline": "example"}
    return AlertEvent(
        fingerprint(labels),
        "PipewardenTest",
        AlertState.FIRING,
        "info",
        labels,
        {
            "summary": "pipewarden test alert: this receiver is reachable",
            "description": "Sent by `pipewarden alerts test`; nothing is wrong.",
        },
        value=1.0,
        active_at=now,
        fired_at=now,
        updated_at=now,
    )


class Receiver(abc.ABC):
    """Base of every receiver: the worker thread, the queue, retries and outcome counting.

    Subclasses implement :meth:`deliver` (one attempt, on the worker thread)
    and :meth:`sample` (the item :meth:`test` sends).
    """

    kind: ClassVar[str] = ""
    #: True for receivers that get grouped Notifications; False for Alertmanager (every change, re-sent).
    grouped: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        queue_size: int = 1000,
        match: AlertMatch | None = None,
        send_resolved: bool = True,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a receiver needs a name — got {name!r}")
        if not timeout > 0:
            raise ConfigError(f"receiver {name!r}: timeout must be more than 0 seconds — got {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"receiver {name!r}: retries must be 0 or more — got {retries!r}")
        if not (backoff >= 0 and backoff_max >= backoff):
            raise ConfigError(
                f"receiver {name!r}: backoff must be 0 or more and backoff_max at least backoff "
                f"— got {backoff!r}, {backoff_max!r}"
            )
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ConfigError(f"receiver {name!r}: queue_size must be 1 or more — got {queue_size!r}")
        self.name = name
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self.backoff_max = float(backoff_max)
        self.queue_size = queue_size
        self.match = match or AlertMatch()
        self.send_resolved = send_resolved
        self.metrics: AlertMetrics = NullAlertMetrics()
        self.on_result: ResultHook | None = None
        self.external_url = ""
        self._items: collections.deque[Any] = collections.deque()
        self._cv = threading.Condition()
        self._pending = 0
        self._stopping = False
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def __repr__(self) -> str:  # never a URL: a Slack webhook URL is itself the secret
        return f"<{type(self).__name__} {self.name!r}>"

    def bind(
        self,
        *,
        metrics: AlertMetrics | None = None,
        on_result: ResultHook | None = None,
        external_url: str | None = None,
    ) -> None:
        """Wire the receiver to the evaluator's metrics sink, history hook and status-page URL."""
        if metrics is not None:
            self.metrics = metrics
        if on_result is not None:
            self.on_result = on_result
        if external_url is not None:
            self.external_url = external_url

    def wants(self, event: AlertEvent) -> bool:
        """Whether this receiver is told about ``event`` (its match, and send_resolved for resolutions)."""
        if event.state is not AlertState.FIRING and not self.send_resolved:
            return False
        return self.match(event)

    # --- the queue ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread (done on first use otherwise)."""
        with self._cv:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._abort.clear()
                self._thread = threading.Thread(target=self._loop, name=f"pipewarden-receiver-{self.name}", daemon=True)
                self._thread.start()

    def notify(self, item: Any) -> bool:
        """Queue ``item`` for delivery; False (counted ``throttled``) when the queue is full."""
        with self._cv:
            if len(self._items) >= self.queue_size:
                full = True
            else:
                full = False
                self._items.append(item)
                self._pending += 1
                self._cv.notify_all()
        if full:
            self._outcome(item, NotificationOutcome.THROTTLED, f"queue full ({self.queue_size} waiting)")
            return False
        thread = self._thread
        if thread is None or not thread.is_alive():
            self.start()
        return True

    def update(self, events: Sequence[AlertEvent], *, now: float) -> None:
        """Alert changes, for receivers that are not grouped (Alertmanager)."""
        raise NotImplementedError

    def tick(self, firing: Sequence[AlertEvent], *, now: float) -> None:  # noqa: B027 - optional hook
        """The firing alerts, for receivers that re-send them (Alertmanager)."""

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` seconds for everything queued to be delivered (or given up)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def stop(self, timeout: float = 5.0) -> bool:
        """Deliver what is queued within ``timeout`` seconds, then stop; what is left is abandoned (counted failed)."""
        done = self.flush(timeout)
        self._abort.set()
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(max(0.1, min(1.0, timeout)))
        with self._cv:
            left = list(self._items)
            self._items.clear()
            self._pending -= len(left)
        for item in left:
            self._outcome(item, NotificationOutcome.FAILED, "abandoned: the receiver stopped")
        return done

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._items and not self._stopping:
                    self._cv.wait()
                if not self._items:
                    return
                item = self._items.popleft()
            try:
                self._attempts(item)
            except Exception:  # never let one item kill the worker
                log.exception("pipewarden receiver %s could not deliver", self.name)
            finally:
                with self._cv:
                    self._pending -= 1
                    self._cv.notify_all()

    def _attempts(self, item: Any) -> None:
        attempt = 0
        while True:
            try:
                answer = self.deliver(item, timeout=self.timeout)
            except Exception as exc:
                err = exc if isinstance(exc, DeliveryError) else DeliveryError(f"{type(exc).__name__}: {exc}")
                if err.retryable and attempt < self.retries and not self._abort.is_set():
                    self.metrics.notification(self.name, NotificationOutcome.RETRIED)
                    delay = min(self.backoff_max, self.backoff * 2**attempt)
                    delay = random.uniform(delay / 2, delay)
                    if err.retry_after is not None:
                        delay = min(self.backoff_max, max(delay, err.retry_after))
                    attempt += 1
                    if not self._abort.wait(delay):
                        continue
                self._outcome(item, NotificationOutcome.FAILED, str(err))
                if not self._failing:
                    self._failing = True
                    log.warning(
                        "pipewarden receiver %s (%s) failed after %d attempt(s): %s; the pipelines go "
                        "on, further failures are counted in pipewarden_notifications_total",
                        self.name,
                        self.kind,
                        attempt + 1,
                        err,
                    )
                return
            if self._failing:
                self._failing = False
                log.info("pipewarden receiver %s (%s) delivers again", self.name, self.kind)
            self._outcome(item, NotificationOutcome.SENT, answer)
            return

    def _outcome(self, item: Any, outcome: NotificationOutcome, detail: str) -> None:
        try:
            self.metrics.notification(self.name, outcome)
            self.delivered(item, outcome, detail)
            if self.on_result is not None:
                self.on_result(self, item, outcome, detail)
        except Exception:
            log.exception("pipewarden receiver %s could not record an outcome", self.name)

    def delivered(self, item: Any, outcome: NotificationOutcome, detail: str) -> None:  # noqa: B027 - optional hook
        """Called after each final outcome, on the worker thread (Alertmanager keeps track of what it sent)."""

    # --- one attempt --------------------------------------------------------------------------

    @abc.abstractmethod
    def deliver(self, item: Any, *, timeout: float) -> str:
        """Send ``item`` once within ``timeout`` seconds; return what the other side answered, or raise."""

    @abc.abstractmethod
    def sample(self, *, now: float) -> Any:
        """The item :meth:`test` sends: a sample alert, firing."""

    def test(self, *, now: float) -> TestResult:
        """Send a sample alert once (no retries, not counted) and report what came back."""
        try:
            answer = self.deliver(self.sample(now=now), timeout=self.timeout)
        except Exception as exc:
            return TestResult(self.name, self.kind, False, str(exc))
        return TestResult(self.name, self.kind, True, answer)
