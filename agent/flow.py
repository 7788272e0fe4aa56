"""When a task runs, given how the tasks upstream of it ended: trigger rules and branch choices.

Pure functions of states; the runner applies them. A task's ``trigger_rule``
is evaluated as its upstream tasks end:

>>> from agent.records import RunStatus
>>> verdict("none_failed", {"a": RunStatus.SUCCESS, "b": RunStatus.SKIPPED}, {})
Verdict(run=True, state=None, reason='', blocked=False)
>>> verdict("all_success", {"a": RunStatus.SUCCESS, "b": RunStatus.SKIPPED}, {}).state
<RunStatus.SKIPPED: 'skipped'>

A task skipped because a blocking check upstream stopped the data (``blocked``)
never counts as merely skipped: a ``none_failed`` join downstream of it does
not run (fail closed), only ``all_done`` does.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.errors import BranchError
from agent.records import OK, RunStatus

__all__ = ["DEFAULT_RULE", "TRIGGER_RULES", "Verdict", "branch_choice", "branch_skips", "verdict"]

#: Every trigger rule, with what it asks of the upstream tasks (all evaluated once they ended, but
#: ``all_success`` and ``none_failed`` decide at the first upstream end that settles them).
TRIGGER_RULES: Mapping[str, str] = {
    "all_success": "every upstream task succeeded (or was cached)",
    "none_failed": "no upstream task failed; skipped ones are fine",
    "any_success": "at least one upstream task succeeded (or was cached)",
    "all_done": "every upstream task ended, however it ended",
}
DEFAULT_RULE = "all_success"

_FAILED = frozenset(
    {RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.UPSTREAM_FAILED, RunStatus.INTERRUPTED},
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Run the task, or end it in ``state`` with ``reason`` (``blocked``: a blocking check upstream stopped it)."""

    run: bool
    state: RunStatus | None = None
    reason: str = ""
    blocked: bool = False


_RUN = Verdict(True)


def verdict(
    rule: str,
    upstream: Mapping[str, RunStatus | None],
    blocked: Mapping[str, str],
    reasons: Mapping[str, str] | None = None,
) -> Verdict | None:
    """What a task with ``rule`` does given its upstream tasks' states (None: not ended yet), or None: wait.

    ``blocked`` maps the upstream tasks a blocking check stopped (the task whose check blocked, and
    the tasks skipped because of it) to the reason; ``reasons`` the reasons of upstream tasks that
    ended without running (an upstream failure names the task that failed first, not the one between).
    """
    failed = skipped = stopped = cancelled = None
    any_ok = waiting = False
    for name, state in upstream.items():
        if state is None:
            waiting = True
        elif name in blocked:
            stopped = stopped or name
        elif state in OK:
            any_ok = True
        elif state is RunStatus.CANCELLED:
            cancelled = cancelled or name
        elif state in _FAILED:
            failed = failed or (name, state)
        else:
            skipped = skipped or name
    if cancelled is not None:
        return Verdict(False, RunStatus.CANCELLED, "the run was cancelled")
    if rule == "all_done":
        return None if waiting else _RUN
    settled = rule != "any_success" or (not waiting and not any_ok)  # any_success waits for a success
    if failed is not None and settled:
        name, state = failed
        inherited = reasons.get(name) if reasons and state is RunStatus.UPSTREAM_FAILED else None
        return Verdict(False, RunStatus.UPSTREAM_FAILED, inherited or f"upstream task {name} {state}")
    if stopped is not None and settled:
        return Verdict(False, RunStatus.SKIPPED, blocked[stopped], blocked=True)
    if rule == "all_success" and skipped is not None:
        return Verdict(False, RunStatus.SKIPPED, f"upstream task {skipped} was skipped")
    if waiting:
        return None
    if rule == "any_success" and not any_ok:
        return Verdict(False, RunStatus.SKIPPED, "no upstream task succeeded (trigger_rule='any_success')")
    return _RUN


def branch_choice(task: str, value: Any, children: Collection[str]) -> frozenset[str]:
    """The tasks directly downstream of branch ``task`` that its return ``value`` chose.

    A name, a list (tuple, set) of names, or None or ``[]`` for none of them (everything
    downstream is skipped: a short circuit). Raises :class:`~agent.errors.BranchError` otherwise.
    """
    allowed = sorted(children)
    if value is None:
        names: list[Any] = []
    elif isinstance(value, str):
        names = [value]
    elif isinstance(value, list | tuple | set | frozenset):
        names = list(value)
    else:
        raise BranchError(
            f"branch task {task!r} returned a {type(value).__name__}; a branch returns the name of a task "
            f"directly downstream of it, a list of them, or None for none ({', '.join(map(repr, allowed)) or 'none'})",
            task=task,
            returned=value,
            allowed=allowed,
        )
    unknown = [n for n in names if not isinstance(n, str) or n not in children]
    if unknown:
        raise BranchError(
            f"branch task {task!r} returned {', '.join(map(repr, unknown))}, which is not a task directly "
            f"downstream of it; it may return {', '.join(map(repr, allowed)) or 'nothing (it has no downstream task)'}",
            task=task,
            returned=value,
            allowed=allowed,
        )
    return frozenset(names)


def branch_skips(children: Iterable[str], chosen: Collection[str], below_chosen: Collection[str]) -> list[str]:
    """The direct children a branch skips: those not chosen, unless they are downstream of a chosen one
    (a join the chosen path reaches is left to its trigger rule)."""
    return [c for c in children if c not in chosen and c not in below_chosen]
