"""RetryPolicy: delays and conditions, without any sleeping."""

from __future__ import annotations

import random

import pytest

from agent.errors import DecorationError, TaskTimeoutError
from agent.retry import RetryPolicy


@pytest.mark.parametrize(
    "policy, expected",
    [
        (RetryPolicy(retries=4, delay=2.0, backoff=2.0), [2.0, 4.0, 8.0, 16.0]),
        (RetryPolicy(retries=4, delay=2.0, backoff=3.0, max_delay=10.0), [2.0, 6.0, 10.0, 10.0]),
        (RetryPolicy(retries=2, delay=0.0), [0.0, 0.0]),
    ],
)
def test_delays(policy: RetryPolicy, expected: list[float]) -> None:
    """delay * backoff**(n-1), capped."""
    assert [policy.delay_for(n) for n in range(1, len(expected) + 1)] == expected


def test_jitter_is_bounded_and_reproducible() -> None:
    """Jittered delays stay within [d(1-j), min(cap, d(1+j))] and follow the injected generator."""
    p = RetryPolicy(retries=50, delay=1.0, backoff=1.5, max_delay=20.0, jitter=0.25)
    a = [p.delay_for(n, random.Random(7)) for n in range(1, 30)]
    b = [p.delay_for(n, random.Random(7)) for n in range(1, 30)]
    assert a == b
    for n, d in enumerate(a, start=1):
        base = 1.5 ** (n - 1)
        assert min(20.0, base * 0.75) <= d <= min(20.0, base * 1.25)


def test_retry_budget_and_interrupts() -> None:
    """Attempts beyond `retries` are not retried; KeyboardInterrupt never is."""
    p = RetryPolicy(retries=2)
    assert p.should_retry(ValueError(), 1) and p.should_retry(ValueError(), 2)
    assert not p.should_retry(ValueError(), 3)
    assert not p.should_retry(KeyboardInterrupt(), 1)


def test_timeouts_are_retried_unless_excluded() -> None:
    """A timed-out attempt is an exception like any other for retry_on (TimeoutError is an OSError)."""
    assert RetryPolicy(retries=1).should_retry(TaskTimeoutError("slow"), 1)
    assert RetryPolicy(retries=1, retry_on=(OSError,)).should_retry(TaskTimeoutError("slow"), 1)
    assert not RetryPolicy(retries=1, retry_on=(ValueError,)).should_retry(TaskTimeoutError("slow"), 1)
    assert RetryPolicy(retries=1, retry_on=TimeoutError).should_retry(TaskTimeoutError("slow"), 1)


def test_a_failing_predicate_means_no_retry() -> None:
    """A retry_on predicate that raises is treated as 'do not retry'."""
    assert not RetryPolicy(retries=1, retry_on=lambda e: 1 / 0).should_retry(ValueError(), 1)


def test_invalid_policy_lists_every_problem() -> None:
    """All wrong arguments are reported in one DecorationError."""
    with pytest.raises(DecorationError) as err:
        RetryPolicy(retries=-1, delay=-1, backoff=0.5)
    assert "retries" in str(err.value) and "retry_delay" in str(err.value) and "retry_backoff" in str(err.value)
