"""What a run looks like while it happens, and after: the CLI's terminal display.

The library itself prints nothing; the CLI adds :class:`LiveProgress` (a rich
live table) to the run-event listeners when the output is a terminal, and
prints :func:`render_summary` at the end. ``rich`` is imported
only here, and only when a display is made.
"""

from __future__ import annotations

import threading
import time
from typing import IO, Any

from agent.events import RunEnded, RunStarted, TaskEnded, TaskStarted
from agent.records import RunRecord

__all__ = ["LiveProgress", "render_summary", "summary_text"]

_STYLE = {
    "success": "green",
    "failed": "bold red",
    "timed_out": "bold red",
    "skipped": "yellow",
    "upstream_failed": "yellow",
    "cancelled": "magenta",
    "interrupted": "magenta",
    "running": "cyan",
    "waiting": "cyan",
    "cached": "dim green",
    "pending": "dim",
    "retrying": "yellow",
    "done": "dim green",
}


class LiveProgress:
    """A rich live table of the run's tasks, refreshed as run events arrive (an inline listener).

    >>> from agent import Pipeline, Telemetry, run
    >>> pipe = Pipeline("doc")
    >>> _ = pipe.task(name="one")(lambda: 1)
    >>> tel = Telemetry()
    >>> with LiveProgress() as live:                        # doctest: +SKIP
    ...     tel.bus.add(live, inline=True)
    ...     record = run(pipe, telemetry=tel)

    The table is erased when a run finishes (so a summary printed next stays
    clean) and shown again when the next run starts inside the same block.
    """

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self._lock = threading.Lock()
        self._rows: dict[str, dict[str, Any]] = {}
        self._title = ""
        self._live: Any = None
        self._entered = False  # inside the with block: a run that starts shows the table again

    def __enter__(self) -> LiveProgress:
        self._entered = True
        self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._entered = False
        self._stop()

    def _start(self) -> None:
        from rich.live import Live

        if self._live is None:
            self._live = Live(
                self._render(), console=self.console, refresh_per_second=8, transient=True, get_renderable=self._render
            )
            self._live.__enter__()

    def _stop(self) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def handle(self, event: Any) -> None:
        if isinstance(event, TaskEnded):
            if event.item is not None:
                self._item_ended(event)
            else:
                self._task_ended(event)
        elif isinstance(event, TaskStarted):
            if event.item is not None:
                return  # the mapped task's row counts its items as they end
            with self._lock:
                self._rows.setdefault(event.task, {}).update(
                    status="waiting" if event.waiting else "running",
                    attempt=event.attempt,
                    start=time.monotonic(),
                    detail="",
                )
        elif isinstance(event, RunStarted):
            self._run_started(event)
        elif isinstance(event, RunEnded):
            # Stop (and erase) the live table now: the caller prints the summary next, and
            # output written while the table is live lands where the table is erased.
            self._stop()

    def _run_started(self, e: RunStarted) -> None:
        with self._lock:
            self._title = f"{e.pipeline} · run {e.run_id}"
            for t in e.tasks:
                kept = t in e.kept
                self._rows[t] = {
                    "status": "done" if kept else "pending",
                    "attempt": 0,
                    "start": None,
                    "duration": None,
                    "detail": "kept from the earlier run" if kept else "",
                }
        if self._entered:
            self._start()

    def _task_ended(self, e: TaskEnded) -> None:
        if e.retry_in is not None:
            update: dict[str, Any] = {
                "status": "retrying",
                "start": None,
                "detail": f"retry in {e.retry_in:.1f}s after {e.error}",
            }
        else:
            warned = [c.check for c in e.checks if str(c.status) in ("warn", "error")]
            detail = e.error or e.reason or (f"checks warned: {', '.join(warned)}" if warned else "")
            update = {
                "status": str(e.status),
                "start": None,
                "duration": e.duration if e.attempt else None,
                "detail": detail,
            }
        with self._lock:
            self._rows.setdefault(e.task, {}).update(update)

    def _item_ended(self, e: TaskEnded) -> None:
        with self._lock:
            row = self._rows.setdefault(e.task, {})
            done = row["items"] = row.get("items", {})
            if e.retry_in is None:
                done[str(e.status)] = done.get(str(e.status), 0) + 1
            row["detail"] = "items " + ", ".join(f"{k} {v}" for k, v in sorted(done.items()))

    def _render(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        if not self._title:  # nothing to show before the run starts (and nothing to erase after)
            return Text("")
        table = Table(title=self._title, title_justify="left", expand=False, box=None, pad_edge=False)
        for col in ("task", "status", "attempt", "time", "detail"):
            table.add_column(col, overflow="fold" if col == "detail" else "ellipsis")
        now = time.monotonic()
        with self._lock:
            rows = list(self._rows.items())
        for name, r in rows:
            status = r.get("status", "pending")
            elapsed = (now - r["start"]) if r.get("start") else r.get("duration")
            table.add_row(
                name,
                f"[{_STYLE.get(status, '')}]{status}[/]",
                str(r.get("attempt") or ""),
                f"{elapsed:.2f}s" if elapsed is not None else "",
                _short(r.get("detail", ""), 80),
            )
        return table


def _short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _rows(record: RunRecord) -> list[tuple[str, str, str, str, str, str]]:
    latest = record.latest()
    executions = record.execution_counts()
    out = []
    for name in record.tasks or tuple(latest):
        a = latest.get(name)
        if a is None:
            out.append((name, "not run", "", "", "", ""))
            continue
        checks = ""
        if a.checks:
            bad = [c for c in a.checks if not c.ok or c.status == "warn"]
            checks = f"{len(a.checks) - len(bad)}/{len(a.checks)} ok"
        detail = a.error or a.reason or ""
        if a.status == "waiting" and a.started_at is not None:
            detail = f"waiting since {time.strftime('%H:%M:%S', time.gmtime(a.started_at))} UTC, {a.pokes or 0} pokes"
        dur = f"{a.duration:.3f}s" if a.duration is not None and a.attempt else ""
        rows_out = "" if a.rows_out is None else str(a.rows_out)
        out.append(
            (
                name,
                str(a.status),
                str(executions.get(name) or ""),
                dur,
                rows_out,
                "; ".join(x for x in (checks, _short(detail, 100)) if x),
            )
        )
    return out


def render_summary(record: RunRecord) -> Any:
    """A rich table of the run: one line per task with its final state."""
    from rich.table import Table

    dur = f" in {record.duration:.2f}s" if record.duration is not None else ""
    style = "green" if record.ok else "bold red"
    table = Table(
        title=f"{record.pipeline} · run {record.run_id} · [{style}]{record.status}[/]{dur}", title_justify="left"
    )
    for col in ("task", "status", "runs", "time", "rows out", "checks / detail"):
        table.add_column(col, justify="right" if col in ("runs", "time", "rows out") else "left")
    for name, status, runs, dur_s, rows_out, detail in _rows(record):
        table.add_row(name, f"[{_STYLE.get(status, '')}]{status}[/]", runs, dur_s, rows_out, detail)
    return table


def summary_text(record: RunRecord, file: IO[str] | None = None) -> str:
    """The same summary as plain text (for logs and pipes, where rich is not needed)."""
    dur = f" in {record.duration:.2f}s" if record.duration is not None else ""
    lines = [f"{record.pipeline} run {record.run_id}: {record.status}{dur}"]
    rows = _rows(record)
    width = max((len(r[0]) for r in rows), default=4)
    for name, status, runs, dur_s, rows_out, detail in rows:
        extra = f"  rows={rows_out}" if rows_out else ""
        if runs and runs != "1":
            extra += f"  runs={runs}"
        tail = f"  {detail}" if detail else ""
        lines.append(f"  {name:<{width}}  {status:<15} {dur_s:>9}{extra}{tail}")
    text = "\n".join(lines) + "\n"
    if file is not None:
        file.write(text)
    return text
