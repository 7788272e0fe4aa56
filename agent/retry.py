"""When a failed task attempt is tried again, and after how long.

Exponential backoff with a cap and jitter, and an optional condition on the
exception. The runner owns the sleeping (it injects a ``sleep`` that a
cancellation interrupts, and tests inject one that records the delays).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.errors import DecorationError

__all__ = ["RetryCondition", "RetryPolicy"]

#: Exception types, or a predicate on the exception that returns True to retry.
RetryCondition = tuple[type[BaseException], ...] | type[BaseException] | Callable[[BaseException], bool] | None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``retries`` extra attempts; before attempt *n+1* wait ``delay * backoff**(n-1)``.

    >>> p = RetryPolicy(retries=3, delay=2.0, backoff=2.0, max_delay=5.0)
    >>> [p.delay_for(n) for n in (1, 2, 3)]
    [2.0, 4.0, 5.0]

    ``jitter`` is a fraction: each delay is multiplied by a uniform factor in
    ``[1 - jitter, 1 + jitter]`` (spreading retries of many tasks that failed
    together), and the cap ``max_delay`` applies after jitter, so it is a hard
    bound. ``retry_on`` limits retries to some exception types, or is a
    predicate ``(exc) -> bool``; ``None`` retries every exception.
    """

    retries: int = 0
    delay: float = 1.0
    backoff: float = 2.0
    max_delay: float | None = None
    jitter: float = 0.0
    retry_on: RetryCondition = None

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            problems.append(f"retries must be an int >= 0 — got {self.retries!r}")
        if not _number(self.delay) or self.delay < 0:
            problems.append(f"retry_delay must be a number of seconds >= 0 — got {self.delay!r}")
        if not _number(self.backoff) or self.backoff < 1:
            problems.append(f"retry_backoff must be a number >= 1 (1 keeps the delay constant) — got {self.backoff!r}")
        if self.max_delay is not None and (not _number(self.max_delay) or self.max_delay < 0):
            problems.append(f"retry_max_delay must be seconds >= 0 or None — got {self.max_delay!r}")
        if not _number(self.jitter) or not 0 <= self.jitter <= 1:
            problems.append(f"retry_jitter must be a fraction between 0 and 1 — got {self.jitter!r}")
        r = self.retry_on
        if (
            r is not None
            and not callable(r)
            and not (isinstance(r, tuple) and all(isinstance(t, type) and issubclass(t, BaseException) for t in r))
        ):
            problems.append(
                f"retry_on must be an exception type, a tuple of them, or a predicate (exc) -> bool — got {r!r}"
            )
        if problems:
            raise DecorationError("; ".join(problems))

    def delay_for(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based) before the next."""
        d = self.delay * self.backoff ** max(attempt - 1, 0)
        if self.jitter:
            d *= (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        if self.max_delay is not None:
            d = min(d, self.max_delay)
        return float(d)

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """True when failed attempt ``attempt`` (1-based) is followed by another one."""
        if attempt > self.retries:
            return False
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: never retried
            return False
        r = self.retry_on
        if r is None:
            return True
        if isinstance(r, type | tuple):
            return isinstance(exc, r)
        try:
            return bool(r(exc))
        except Exception:
            return False


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)
