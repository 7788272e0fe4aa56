"""What the runner does with a task's ``cache=`` (:mod:`agent.cache`): look its output up, keep a new one.

A hit is recorded as an attempt ``0`` in state ``cached`` naming the run whose
output it reuses; a miss or an argument with no fingerprint runs the task.
Every look-up is counted in ``pipewarden_cache_lookups_total{outcome}``. An
entry whose file is gone (pruned, or kept on another host of a shared store)
is a miss; so is one whose file was damaged, truncated or replaced since (its
SHA-256, kept in the reference, differs) or that another user could have
written (:mod:`agent.trust`), with one warning line saying which.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from agent.cache import cache_key, code_of

__all__ = ["cache_keep", "cache_lookup"]

# ``job`` is :class:`agent.runner._Job`.


def cache_lookup(job: Any, task: Any, kwargs: Mapping[str, Any], item: int | None) -> tuple[str | None, Any]:
    """(the task's cache key, or None when its arguments have no fingerprint; its end ``(status, detail,
    gated)`` when the cache had its output, which is then recorded and delivered, else None)."""
    import logging

    from agent.artifacts import load_output
    from agent.records import RunStatus

    cache = task.cache
    name, now = task.name, job.r.clock()
    lookups = "pipewarden_cache_lookups_total"
    try:
        given = kwargs if cache.key is None else {"key": cache.key(**kwargs)}
        key = cache_key(job.name, name, code_of(task.fn), given, version=cache.version)
    except Exception as exc:  # no fingerprint (or the key function failed): run it, never serve a stale output
        job.tel.child(lookups, job.name, name, "unkeyed").inc()
        logging.getLogger("pipewarden.runner").info("task %s of %s runs uncached: %s", name, job.name, exc)
        return None, None
    pickles = task.persist == "pickle"
    found = job.store.cache_get(job.name, name, key, now=now)
    value: Any = None
    if found is not None:
        try:
            value = load_output(job.home, found[0], allow_pickle=pickles)
        except FileNotFoundError:  # pruned, kept on another host of a shared store, or a pickle not opted into
            found = None
        except Exception as exc:  # damaged, swapped, or writable by others: never served, the task runs and recaches
            found = None
            why = " ".join(str(exc).split())
            logging.getLogger("pipewarden.runner").warning(
                "task %s of %s runs: its cached output is not used: %s", name, job.name, why
            )
    if found is None:
        job.tel.child(lookups, job.name, name, "miss").inc()
        return key, None
    ref, run_id, made = found
    when = dt.datetime.fromtimestamp(made, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    reason = f"cached: the output of run {run_id} ({when}); inputs and code unchanged"
    tr_id = job.store.start_task(job.run_id, name, 0, now=now, item=item)
    job.store.finish_task(tr_id, RunStatus.CACHED, now=now, reason=reason, output_ref=ref)
    job.tel.child(lookups, job.name, name, "hit").inc()
    job.tel.task_state(job.name, name, RunStatus.CACHED, reason=reason, run_id=job.run_id, durable=True, item=item)
    job._delivered(name, item, value, None)
    return key, (RunStatus.CACHED, None, False)


def cache_keep(job: Any, task: Any, key: str, value: Any) -> str | None:
    """Cache a successful output under ``key``; why it could not be, or None."""
    from agent.artifacts import remove_cached, save_cached

    ref, why = save_cached(job.home, job.name, task.name, key, value, allow_pickle=task.persist == "pickle")
    if ref is None:
        return f"not cached: {why}"
    now = job.r.clock()
    expire = task.cache.expire_seconds
    for gone in job.store.cache_put(
        job.name, task.name, key, ref, run_id=job.run_id, now=now, expires_at=now + expire if expire else None
    ):
        remove_cached(job.home, gone, keep=ref)
    return None
