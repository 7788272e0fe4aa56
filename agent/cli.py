"""The ``pipewarden`` command: parse, load config, validate, construct, run.

Exit codes: 0 ok, 1 the work failed (a run failed, a blocking check failed),
2 usage or configuration error.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any, NoReturn

import click

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pipewarden")
def cli() -> None:
    """pipewarden: observability and data quality for data pipelines."""


@cli.command()
@click.option("--rows", default=50_000, show_default=True, help="Rows of generated orders data.")
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    help="State directory (default $PIPEWARDEN_HOME, else ~/.local/state/pipewarden).",
)
def demo(rows: int, home: str | None) -> None:
    """Run the bundled example ETL (extract -> transform -> load) with checks, and summarise."""
    from agent.demo import run_demo
    from agent.errors import PipewardenError

    try:
        code = run_demo(rows=rows, home=home)
    except PipewardenError as exc:
        _fail(exc)
    sys.exit(code)


# --- orchestrator: run, runs list/show/resume, backfill -----------------------------------------
# Heavy imports stay inside the commands so `import agent.cli` (and `pipewarden --help`) stays light.

_HOME = click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    help="State directory (default $PIPEWARDEN_HOME, else ~/.local/state/pipewarden).",
)
_EXECUTOR = click.option(
    "--executor",
    type=click.Choice(["threads", "processes", "dask"]),
    default="threads",
    show_default=True,
    help="Where task functions run.",
)
_ADDRESS = click.option("--address", default=None, help="Dask scheduler address (default: a local cluster).")
_WORKERS = click.option(
    "--max-workers",
    type=click.IntRange(min=1),
    default=None,
    help="Tasks running at once (default: the pipeline's, else the executor's).",
)
#: Items of a mapped task `runs show` lists by default; as many again of those that did not succeed after them.
_ITEMS_SHOWN = 50
_PROGRESS = click.option(
    "--progress/--no-progress", default=None, help="Live task table (default: when stderr is a terminal)."
)


def _fail(exc: BaseException) -> NoReturn:
    """Print a pipewarden error as one clear message and exit 2 (usage or configuration error)."""
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


def _params(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--param")
        out[key.strip()] = value
    return out


def _orchestrate(
    home: str | None,
    executor: str,
    address: str | None,
    max_workers: int | None,
    progress: bool | None,
    work: Any,
    config: str | None = None,
) -> int:
    """Open the store, build the runner (with a live display on a terminal), run ``work(runner)``."""
    import threading

    from agent.errors import PipewardenError, RunLimitError
    from agent.executors import get_executor
    from agent.runner import Runner
    from agent.store import open_store

    cancel = threading.Event()
    previous = _install_signals(cancel)
    ex = None
    tel = None
    try:
        with open_store(home) as store:
            tel = _telemetry(home, config)
            ex = get_executor(executor, max_workers=max_workers, address=address) if executor != "threads" else None
            live = progress if progress is not None else sys.stderr.isatty()
            runner = Runner(store=store, executor=ex, max_workers=max_workers, home=home, telemetry=tel)
            if live:
                from agent.progress import LiveProgress

                with LiveProgress() as display:
                    tel.bus.add(display, inline=True)
                    try:
                        return int(work(runner, store, cancel))
                    finally:
                        tel.bus.remove(display)
            return int(work(runner, store, cancel))
    except RunLimitError as exc:  # not a usage error: the work was not done (exit 1), nothing was recorded
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except PipewardenError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        # Interrupted twice: the run is recorded; do not wait for task threads that may never end.
        click.echo("interrupted; unfinished tasks are recorded cancelled (pipewarden runs resume)", err=True)
        if tel is not None:
            tel.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    finally:
        if ex is not None:
            ex.shutdown()
        if tel is not None:
            tel.shutdown()  # flush spans before the process exits
        _restore_signals(previous)


def _telemetry(home: str | None, config: str | None = None) -> Any:
    """Telemetry from the environment (and pipewarden.yml's alert rules), with spans under ``--home`` when given."""
    from agent.telemetry import Telemetry

    return Telemetry.from_env(home=home, history=False, config=config)


def _recover(store: Any, home: str | None) -> None:
    from agent.runner import recover_interrupted

    recover_interrupted(store, lambda: _telemetry(home))


def _install_signals(cancel: Any) -> dict[int, Any]:
    """First SIGINT/SIGTERM: cancel the run (the handler only sets a flag); a second one interrupts."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        cancel.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    import signal

    for sig, h in previous.items():
        signal.signal(sig, h)


def _summary(record: Any) -> None:
    from agent.progress import summary_text

    if sys.stdout.isatty():
        from rich.console import Console

        from agent.progress import render_summary

        Console().print(render_summary(record))
    else:
        summary_text(record, sys.stdout)


@cli.command("run")
@click.argument("target")
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A run parameter (repeatable); `path` is the triggering file.",
)
@click.option("--logical-date", default=None, help="ISO date or datetime the run is for (default: now).")
@_EXECUTOR
@_ADDRESS
@_WORKERS
@_PROGRESS
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON instead of a table.")
@click.option(
    "--wait",
    is_flag=True,
    help="When the pipeline already has max_active_runs runs running, wait for a slot instead of refusing (exit 1).",
)
@click.option(
    "--config",
    "config_path",
    default=None,
    envvar="PIPEWARDEN_CONFIG",
    type=click.Path(dir_okay=False),
    help="A pipewarden.yml: TARGET may name one of its pipelines (with its overrides and checks), and "
    "its alert rules are evaluated (default $PIPEWARDEN_CONFIG).",
)
@_HOME
def run_cmd(
    target: str,
    params: tuple[str, ...],
    logical_date: str | None,
    executor: str,
    address: str | None,
    max_workers: int | None,
    progress: bool | None,
    as_json: bool,
    wait: bool,
    config_path: str | None,
    home: str | None,
) -> None:
    """Run a pipeline: TARGET is path/to/file.py[:pipeline], or a pipeline of --config. Exit 1 when the run fails
    or is refused because the pipeline already has max_active_runs runs running (see --wait)."""
    from agent.errors import PipewardenError
    from agent.loader import load_pipeline

    values = _params(params)
    try:
        pipe = None
        if config_path is not None:
            from agent.config import load_pipelines_from

            configured = load_pipelines_from(config_path).pipelines
            if target in configured:
                pipe = configured[target].pipeline
        if pipe is None:
            pipe = load_pipeline(target)
        from agent.params import resolve_params

        resolve_params(pipe, {k: v for k, v in values.items() if k != "logical_date"})  # refused before anything runs
    except PipewardenError as exc:
        _fail(exc)

    def work(runner: Any, store: Any, cancel: Any) -> int:
        if wait:
            running = store.list_runs(pipeline=pipe.name, status="running", limit=pipe.max_active_runs)
            if len(running) >= pipe.max_active_runs:
                click.echo(
                    f"waiting: pipeline {pipe.name!r} has {len(running)} run(s) running "
                    f"(max_active_runs={pipe.max_active_runs}): {', '.join(r.run_id for r in running)}; "
                    "this run starts when one ends",
                    err=True,
                )
        record = runner.run(
            pipe,
            params=values,
            logical_date=logical_date,
            trigger="manual",
            cancel=cancel,
            wait=math.inf if wait else 0.0,
        )
        _report(record, as_json)
        return 0 if record.ok else 1

    sys.exit(_orchestrate(home, executor, address, max_workers, progress, work, config=config_path))


def _report(record: Any, as_json: bool) -> None:
    if as_json:
        import json

        from agent.records import record_to_dict

        click.echo(json.dumps(record_to_dict(record), indent=2, default=str))
    else:
        _summary(record)


@cli.group()
def runs() -> None:
    """Run history: list, show, resume, prune."""


#: The states a run (not a task) can be in: what `runs list --status` accepts.
_RUN_STATES = ("queued", "running", "success", "failed", "cancelled", "interrupted")


@runs.command("list")
@click.option("--pipeline", default=None, help="Only runs of this pipeline.")
@click.option("--status", default=None, help=f"Only runs in this state: {', '.join(_RUN_STATES)}.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("-q", "--quiet", is_flag=True, help="Print only the run ids, newest first (for scripts).")
@_HOME
def runs_list(
    pipeline: str | None, status: str | None, limit: int, as_json: bool, quiet: bool, home: str | None
) -> None:
    """The latest runs, newest first (runs whose process died are marked interrupted first)."""
    from agent.errors import PipewardenError
    from agent.store import open_store

    if status is not None and status not in _RUN_STATES:
        click.echo(f"error: --status {status!r} is not a run state; allowed: {', '.join(_RUN_STATES)}", err=True)
        sys.exit(2)
    try:
        with open_store(home) as store:
            _recover(store, home)
            rows = store.list_runs(pipeline=pipeline, status=status, limit=limit)
    except PipewardenError as exc:
        _fail(exc)
    if as_json:
        import json

        from agent.records import record_to_dict

        click.echo(json.dumps([record_to_dict(r) for r in rows], indent=2, default=str))
        return
    if quiet:
        for r in rows:
            click.echo(r.run_id)
        return
    if not rows:
        click.echo("no runs recorded", err=True)
        return
    import datetime as dt

    click.echo(f"{'RUN':<24} {'PIPELINE':<20} {'STATUS':<12} {'TRIGGER':<9} {'STARTED (UTC)':<20} DURATION")
    for r in rows:
        started = dt.datetime.fromtimestamp(r.started_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if r.started_at else "-"
        dur = f"{r.duration:.2f}s" if r.duration is not None else "-"
        after = f"  after {r.triggered_by}" if r.triggered_by else ""
        click.echo(f"{r.run_id:<24} {r.pipeline:<20} {r.status!s:<12} {r.trigger:<9} {started:<20} {dur}{after}")


@runs.command("prune")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="AGE",
    help="Delete runs that ended longer ago than AGE: 30d, 12h, 2w.",
)
@click.option("--pipeline", default=None, help="Only runs of this pipeline.")
@click.option("--dry-run", is_flag=True, help="Say how many runs would be deleted; delete nothing.")
@_HOME
def runs_prune(older_than: str, pipeline: str | None, dry_run: bool, home: str | None) -> None:
    """Delete finished runs older than AGE, with their task states, check results and kept outputs.

    Queued and running runs, check history and metric totals stay. Without this command, runs are
    kept PIPEWARDEN_RETENTION_DAYS (default 90) days.
    """
    import datetime as dt
    import time

    from agent.errors import PipewardenError
    from agent.retention import prune
    from agent.schedules import parse_interval
    from agent.settings import home as home_dir
    from agent.store import open_store

    try:
        age = parse_interval(older_than, where="--older-than")
        base = home_dir(home)
        with open_store(home, retain=False) as store:  # no retention pass of its own: it would not be dry
            before = time.time() - age.total_seconds()
            ids = prune(store, base, before, pipeline=pipeline, dry_run=dry_run)
    except PipewardenError as exc:
        _fail(exc)
    when = dt.datetime.fromtimestamp(before, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    scope = f" of pipeline {pipeline!r}" if pipeline else ""
    click.echo(f"{'would delete' if dry_run else 'deleted'} {len(ids)} run(s){scope} that ended before {when}")


@runs.command("show")
@click.argument("run_id")
@click.option("--task", "task", default=None, help="Only this task: its attempts, errors and checks.")
@click.option("--logs", is_flag=True, help="Also what each attempt logged and printed.")
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--all-items",
    is_flag=True,
    help=f"List every item of mapped tasks (default: the first {_ITEMS_SHOWN}, then up to {_ITEMS_SHOWN} more that "
    "did not succeed, and how many more there are).",
)
@_HOME
def runs_show(run_id: str, task: str | None, logs: bool, as_json: bool, all_items: bool, home: str | None) -> None:
    """One run: its tasks, items of mapped tasks, attempts, errors and check results (--logs: what they logged)."""
    import dataclasses

    from agent.errors import PipewardenError
    from agent.store import open_store

    try:
        with open_store(home) as store:
            _recover(store, home)
            record = store.get_run(run_id, logs=logs)
            source = store.get_run(record.triggered_by) if record is not None and record.triggered_by else None
    except PipewardenError as exc:
        _fail(exc)
    if record is None:
        click.echo(f"error: there is no run {run_id!r} in the run store; `pipewarden runs list` shows them", err=True)
        sys.exit(2)
    if task is not None:
        if task not in record.tasks and not any(a.task == task for a in record.attempts):
            click.echo(f"error: run {run_id} has no task {task!r} (tasks: {', '.join(record.tasks)})", err=True)
            sys.exit(2)
        record = dataclasses.replace(
            record, tasks=(task,), attempts=tuple(a for a in record.attempts if a.task == task)
        )
    if as_json:
        _report(record, True)
        return
    click.echo(f"run {record.run_id}  pipeline {record.pipeline}  status {record.status}  trigger {record.trigger}")
    if record.triggered_by:
        of = f" of pipeline {source.pipeline} ({source.status})" if source is not None else " (no longer in the store)"
        click.echo(f"triggered by run {record.triggered_by}{of}")
    click.echo(
        f"version {record.version or '-'}  logical date "
        f"{record.logical_date.isoformat() if record.logical_date else '-'}  params {dict(record.params)}"
    )
    if record.error:
        click.echo(f"error: {record.error}")
    if task is not None:
        click.echo(f"task {task}:")
        for a in record.attempts:
            dur = f" {a.duration:.3f}s" if a.duration is not None else ""
            detail = a.error or a.reason
            click.echo(f"  #{a.attempt} {a.status}{dur}" + (f": {detail}" if detail else ""))
    else:
        _summary(record)
    _items(record, all_items)
    retried = [a for a in record.attempts if a.attempt > 0 and a.status != "success" and a.error]
    if retried and task is None:  # with --task, its attempts are listed above
        click.echo("attempts:")
        of_items = 0  # a map with thousands of failed items stays readable: the first ones, then a count
        for a in retried:
            of_items += a.item is not None
            if all_items or a.item is None or of_items <= _ITEMS_SHOWN:
                click.echo(f"  {a.label} #{a.attempt} {a.status}: {a.error}")
        if not all_items and of_items > _ITEMS_SHOWN:
            click.echo(f"  ... and {of_items - _ITEMS_SHOWN} more failed attempts of items (--all-items lists them)")
    checks = [(a.label, c) for a in record.attempts for c in a.checks]
    if checks:
        click.echo("checks:")
        for name, c in checks:
            col = f"[{c.column}]" if c.column else ""
            obs = f" observed={c.observed:g}" if isinstance(c.observed, int | float) else ""
            click.echo(f"  {name}: {c.check}{col} {c.status}{obs} {c.detail}".rstrip())
    if logs:
        _print_logs(record)


def _print_logs(record: Any) -> None:
    """Each attempt's logs under a line naming it (attempts that wrote nothing say so)."""
    from agent.tasklogs import MAX_CHARS

    for a in record.attempts:
        if a.attempt == 0:  # a state recorded without running: nothing was logged
            continue
        head = f"--- logs of {a.task} #{a.attempt} ({a.status})"
        if not a.logs:
            click.echo(f"{head}: nothing logged or printed")
            continue
        click.echo(f"{head}, up to {MAX_CHARS:,} characters kept ---")
        click.echo(a.logs, nl=not a.logs.endswith("\n"))


def _items(record: Any, every: bool) -> None:
    """The items of each mapped task: state, attempts, time, and why one did not succeed."""
    from agent.records import OK

    tasks = list(dict.fromkeys(a.task for a in record.attempts if a.item is not None))
    if not tasks:
        return
    click.echo("items:")
    for task in tasks:
        items = record.items(task)
        runs: dict[int, int] = {}
        for a in record.attempts:
            if a.task == task and a.item is not None and a.attempt > 0:
                runs[a.item] = runs.get(a.item, 0) + 1
        hidden = bad = bad_hidden = 0
        for i, a in items.items():
            if not every and i >= _ITEMS_SHOWN and a.status in OK:
                hidden += 1
                continue
            bad += a.status not in OK
            if not every and i >= _ITEMS_SHOWN and bad > _ITEMS_SHOWN:  # failures are capped too
                bad_hidden += 1
                continue
            dur = f"{a.duration:.3f}s" if a.duration is not None and a.attempt else ""
            detail = a.error or a.reason or ""
            click.echo(f"  {a.label:<14} {a.status:<12} attempts={runs.get(i, 0):<2} {dur:>9}  {detail}".rstrip())
        if hidden:
            click.echo(f"  ... and {hidden} more items of {task} that succeeded (runs show --all-items lists them)")
        if bad_hidden:
            click.echo(
                f"  ... and {bad_hidden} more items of {task} that did not succeed (runs show --all-items lists them)"
            )


@cli.command("kpis")
@click.option("--pipeline", default=None, help="Only this pipeline.")
@click.option("--last", type=click.IntRange(min=1), default=None, help="Only the last N finished runs.")
@click.option("--json", "as_json", is_flag=True)
@_HOME
def kpis_cmd(pipeline: str | None, last: int | None, as_json: bool, home: str | None) -> None:
    """Success rate, time to recovery and change failure rate of each pipeline, from the run store."""
    import datetime as dt

    from agent import kpis
    from agent.errors import PipewardenError
    from agent.store import open_store

    try:
        with open_store(home) as store:
            _recover(store, home)
            names = [pipeline] if pipeline else sorted({r.pipeline for r in store.list_runs(limit=10_000)})
            reports = {name: kpis.report(store.pipeline_history(name, limit=last)) for name in names}
    except PipewardenError as exc:
        _fail(exc)
    if as_json:
        import json

        click.echo(
            json.dumps(
                {
                    name: {
                        "runs": r.runs,
                        "verdicts": r.verdicts,
                        "success_rate": r.success_rate,
                        "mean_time_to_recovery_seconds": r.mean_time_to_recovery,
                        "recoveries": len(r.recovery_times),
                        "changes": r.changes,
                        "failed_changes": r.failed_changes,
                        "change_failure_rate": r.change_failure_rate,
                        "up": r.health.up,
                        "last_success_at": r.health.last_success_at,
                    }
                    for name, r in reports.items()
                },
                indent=2,
            )
        )
        return
    if not any(r.runs for r in reports.values()):
        click.echo("no finished runs recorded", err=True)
        return

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.0%}"

    def age(at: float | None) -> str:
        if at is None:
            return "never"
        return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")

    click.echo(
        f"{'PIPELINE':<20} {'RUNS':>5} {'SUCCESS':>8} {'MTTR':>9} {'CHANGES':>8} {'CFR':>6} {'UP':>4}"
        "  LAST SUCCESS (UTC)"
    )
    for name, r in reports.items():
        mttr = "-" if r.mean_time_to_recovery is None else f"{r.mean_time_to_recovery:.1f}s"
        up = {True: "yes", False: "no", None: "-"}[r.health.up]
        click.echo(
            f"{name:<20} {r.runs:>5} {pct(r.success_rate):>8} {mttr:>9} {r.changes:>8} "
            f"{pct(r.change_failure_rate):>6} {up:>4}  {age(r.health.last_success_at)}"
        )


@runs.command("resume")
@click.argument("run_id")
@click.option("--target", default=None, help="path/to/file.py[:pipeline] (default: the file the run came from).")
@_EXECUTOR
@_ADDRESS
@_WORKERS
@_PROGRESS
@click.option("--json", "as_json", is_flag=True)
@_HOME
def runs_resume(
    run_id: str,
    target: str | None,
    executor: str,
    address: str | None,
    max_workers: int | None,
    progress: bool | None,
    as_json: bool,
    home: str | None,
) -> None:
    """Run again the failed, timed-out, skipped and interrupted tasks of RUN_ID; exit 1 if it still fails."""
    from agent.errors import PipewardenError
    from agent.loader import load_pipeline

    def work(runner: Any, store: Any, cancel: Any) -> int:
        rec = store.get_run(run_id)  # Runner.resume marks the run interrupted first if its process died
        if rec is None:
            click.echo(f"error: there is no run {run_id!r} in the run store", err=True)
            return 2
        if rec.status == "success":
            click.echo(f"run {run_id} already succeeded; nothing to resume", err=True)
            return 0
        where = target or rec.target
        if not where:
            click.echo(f"error: run {run_id} does not say which file it came from; pass --target FILE[:NAME]", err=True)
            return 2
        if target is None:  # a path read from the store: import it only if nobody else could have put it there
            from agent.loader import split_target
            from agent.trust import require_trusted

            require_trusted(
                [*store.files, split_target(where)[0]],
                what=f"import the pipeline file run {run_id} names in the run store",
            )
        pipe = load_pipeline(where)
        for task, why in runner.plan_resume(pipe, run_id).again.items():
            click.echo(f"resume: {task} finished before but runs again: {why}", err=True)
        record = runner.resume(pipe, run_id, cancel=cancel)
        _report(record, as_json)
        return 0 if record.ok else 1

    try:
        code = _orchestrate(home, executor, address, max_workers, progress, work)
    except PipewardenError as exc:
        _fail(exc)
    sys.exit(code)


@cli.command()
@click.argument("target")
@click.option("--start", required=True, help="First logical date (ISO).")
@click.option("--end", required=True, help="Last logical date (ISO), inclusive.")
@click.option("--every", default=None, help="Interval between logical dates (1d, 6h, 15m) instead of the schedule.")
@click.option("--rerun", is_flag=True, help="Also run logical dates that already have a run.")
@_EXECUTOR
@_ADDRESS
@_WORKERS
@_PROGRESS
@_HOME
def backfill(
    target: str,
    start: str,
    end: str,
    every: str | None,
    rerun: bool,
    executor: str,
    address: str | None,
    max_workers: int | None,
    progress: bool | None,
    home: str | None,
) -> None:
    """Run TARGET (path/to/file.py[:pipeline]) once per logical date of its schedule in [--start, --end]."""
    import datetime as dt

    from agent.errors import ConfigError, PipewardenError
    from agent.loader import load_pipeline
    from agent.scheduler import backfill_runs
    from agent.schedules import parse_interval

    try:
        pipe = load_pipeline(target)
        step = parse_interval(every, where="--every") if every is not None else None
        try:
            first, last = dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)
        except ValueError as exc:
            raise ConfigError(f"--start/--end must be ISO dates or datetimes ({exc})") from None
    except PipewardenError as exc:
        _fail(exc)

    def work(runner: Any, store: Any, cancel: Any) -> int:
        due = backfill_runs(store, pipe, first, last, every=step, rerun=rerun)
        if not due:
            click.echo("nothing to backfill: every logical date in range already has a run (use --rerun)", err=True)
            return 0
        failed = 0
        for d in due:
            if cancel.is_set():
                break
            record = runner.run(pipe, run_id=d.run_id, cancel=cancel, wait=math.inf)  # one after another
            failed += not record.ok
            click.echo(f"{d.logical_date.isoformat() if d.logical_date else '-'}  {record.run_id}  {record.status}")
        click.echo(f"{len(due)} run(s), {failed} failed", err=True)
        return 1 if failed or cancel.is_set() else 0

    sys.exit(_orchestrate(home, executor, address, max_workers, progress, work))


# --- the daemon: daemon, validate, trigger ------------------------------------------------------------

_CONFIG = click.argument("config", default="pipewarden.yml", type=click.Path(dir_okay=False))


@cli.command("daemon")
@click.option(
    "--config",
    "config_path",
    default="pipewarden.yml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The configuration file.",
)
@_HOME
def daemon_cmd(config_path: str, home: str | None) -> None:
    """Run the agent as one long-lived process: schedules, file triggers, /metrics, API, status page, alerts.

    SIGTERM or SIGINT: start nothing new, let running tasks finish for agent.grace_period, cancel the rest,
    exit 0. SIGHUP, or an edit of the file: reload (a bad file keeps the running configuration).
    """
    import logging
    import os

    from agent.daemon import Daemon
    from agent.errors import PipewardenError

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    daemon = Daemon(config_path, home=home)
    try:
        daemon.start()
    except PipewardenError as exc:
        _fail(exc)
    code = daemon.run_forever()
    if daemon.abandoned:
        # Tasks past the grace period are recorded interrupted; their threads cannot be stopped, and the
        # interpreter would wait for them at exit: leave now, everything is written.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


@cli.command("validate")
@_CONFIG
def validate_cmd(config: str) -> None:
    """Check CONFIG (default pipewarden.yml) whole: every problem with its line; exit 0 if valid, 2 if not."""
    from agent.config import load_pipelines_from
    from agent.errors import PipewardenError

    try:
        loaded = load_pipelines_from(config)
    except PipewardenError as exc:
        problems = getattr(exc, "problems", None) or [str(exc)]
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(2)
    alerts = loaded.config.alerts
    click.echo(
        f"{config}: valid; {len(loaded.pipelines)} pipeline(s): {', '.join(loaded.pipelines) or 'none'}; "
        f"{len(alerts.rules) if alerts else 0} alert rule(s) of your own, "
        f"{len(alerts.receivers) if alerts else 0} receiver(s)"
    )


@cli.command("trigger")
@click.argument("pipeline")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="A run parameter (repeatable).")
@click.option("--url", default=None, help="The daemon's address (default: agent.listen of --config).")
@click.option(
    "--config",
    "config_path",
    default="pipewarden.yml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Where to read agent.listen when --url is not given.",
)
@click.option("--wait/--no-wait", default=False, help="Wait for the run to end; exit 1 if it failed.")
def trigger_cmd(pipeline: str, params: tuple[str, ...], url: str | None, config_path: str, wait: bool) -> None:
    """Ask a running daemon to run PIPELINE now (the token comes from $PIPEWARDEN_API_TOKEN)."""
    import json
    import os
    import time

    from agent.errors import PipewardenError

    if url is None:
        from agent.config import load_config

        try:
            agent = load_config(config_path).agent
        except PipewardenError as exc:
            _fail(exc)
        url = f"http://{agent.listen}"
        token = os.environ.get(agent.api_token_env, "")
    else:
        token = os.environ.get("PIPEWARDEN_API_TOKEN", "")
    base = url.rstrip("/")
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    body = json.dumps({"params": _params(params)}).encode()
    run_id = _daemon_call(base, "POST", f"/api/v1/pipelines/{pipeline}/runs", body, auth)["run_id"]
    click.echo(run_id)
    if not wait:
        return
    while True:
        status = _daemon_call(base, "GET", f"/api/v1/runs/{run_id}", b"", auth)["status"]
        if status not in ("queued", "running"):
            click.echo(f"{run_id} {status}", err=True)
            sys.exit(0 if status == "success" else 1)
        time.sleep(0.5)


def _daemon_call(base: str, method: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
    """One call to the daemon's API through the deadline client; any failure is one line and exit 2."""
    import json

    from exporters.http import request

    try:
        resp = request(method, base + path, body, {"Content-Type": "application/json", **headers}, timeout=30)
    except (OSError, ValueError) as exc:  # refused, reset, no answer within the deadline, not an http URL
        click.echo(
            f"error: no pipewarden daemon answers at {base} ({exc}); start one with `pipewarden daemon`", err=True
        )
        sys.exit(2)
    try:
        answer = json.loads(resp.body)
    except ValueError:
        answer = None
    if not resp.ok or not isinstance(answer, dict):
        detail = answer.get("error", answer) if isinstance(answer, dict) else resp.body.decode(errors="replace")
        click.echo(f"error: the daemon at {base} answered {resp.status}: {detail}", err=True)
        sys.exit(2)
    return answer


@cli.group()
def baseline() -> None:
    """Drift baselines: accept a run as the new normal."""


@baseline.command("accept")
@click.argument("dataset")
@click.option("--pipeline", default=None, help="Pipeline of the dataset (default: the only one with a baseline).")
@click.option("--run", "run_id", default=None, help="Run whose profiles become the baseline (default: the latest).")
@click.option("--note", default="", help="Why, kept with the acceptance.")
@_HOME
def baseline_accept(dataset: str, pipeline: str | None, run_id: str | None, note: str, home: str | None) -> None:
    """Accept run RUN_ID's profiles of DATASET (default: the latest) as its drift baseline, recorded in history."""
    import getpass

    from agent.errors import PipewardenError
    from agent.store import open_store
    from checks import BaselineError, accept_baseline

    try:
        by = getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment
        by = ""
    try:
        store = open_store(home)
    except PipewardenError as exc:
        _fail(exc)
    try:
        if pipeline is None:
            found = store.baseline_pipelines(dataset, run_id)
            what = f"dataset {dataset!r}" + (f" in run {run_id!r}" if run_id else "")
            if not found:
                raise BaselineError(
                    f"no drift profile of {what} in the run store; a drift check with no reference records one per run",
                    pipeline="",
                    dataset=dataset,
                    run_id=run_id,
                )
            if len(found) > 1:
                raise BaselineError(
                    f"{what} has baselines in pipelines {', '.join(found)}; pass --pipeline",
                    pipeline="",
                    dataset=dataset,
                    run_id=run_id,
                )
            pipeline = found[0]
        acc = accept_baseline(store, pipeline=pipeline, dataset=dataset, run_id=run_id, by=by, note=note)
    except (BaselineError, PipewardenError) as exc:
        _fail(exc)
    finally:
        store.close()
    click.echo(
        f"accepted run {acc.run_id or '(unnamed)'} as the baseline of {pipeline}/{dataset} "
        f"({acc.profiles} profile(s)) by {acc.by or 'unknown'} at {acc.accepted_at.isoformat()}"
    )


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    from agent.errors import PipewardenError

    try:
        cli.main(args=argv, prog_name="pipewarden")
    except PipewardenError as exc:  # anything a command did not handle itself: one line, exit 2
        _fail(exc)


# --- alerts: list, ack, test ------------------------------------------------------------------------
# One block, kept last. Heavy imports (pydantic, HTTP) stay inside the commands.


@cli.group("alerts")
def alerts_group() -> None:
    """Alerts: what is pending or firing, acknowledgement, a test of every receiver."""


def _since(t: float | None) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


@alerts_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also resolved alerts (the latest 100).")
@click.option("--json", "as_json", is_flag=True, help="Print the alerts as JSON.")
@_HOME
def alerts_list(show_all: bool, as_json: bool, home: str | None) -> None:
    """Alerts pending or firing, most recently changed first (from the run store)."""
    import contextlib

    from agent.errors import PipewardenError
    from agent.store import open_store

    try:
        with contextlib.closing(open_store(home)) as store:
            states = None if show_all else ("pending", "firing")
            rows = store.list_alerts(states=states, limit=100 if show_all else None)
    except PipewardenError as exc:
        _fail(exc)
    if as_json:
        import dataclasses
        import json

        click.echo(
            json.dumps(
                [
                    {
                        **dataclasses.asdict(a),
                        "labels": dict(a.labels),
                        "annotations": dict(a.annotations),
                        "state": str(a.state),
                    }
                    for a in rows
                ],
                indent=2,
            )
        )
        return
    if not rows:
        click.echo("no alerts pending or firing" if not show_all else "no alerts recorded", err=True)
        return
    click.echo(f"{'ID':<16} {'ALERT':<26} {'STATE':<9} {'SEVERITY':<9} {'PIPELINE':<18} {'SINCE (UTC)':<20} ACK")
    for a in rows:
        since = a.fired_at or a.active_at
        ack = a.acknowledged_by or "-"
        click.echo(
            f"{a.fingerprint:<16} {a.alert:<26} {a.state!s:<9} {a.severity:<9} "
            f"{a.labels.get('pipeline', '-'):<18} {_since(since):<20} {ack}"
        )
        if summary := a.annotations.get("summary"):
            click.echo(f"{'':<16} {summary}")


@alerts_group.command("ack")
@click.argument("alert_id", metavar="ID")
@click.option("--by", default=None, help="Who takes it on (default: the user name).")
@_HOME
def alerts_ack(alert_id: str, by: str | None, home: str | None) -> None:
    """Acknowledge the firing alert ID (its id from `pipewarden alerts list`, or its first 4+ characters)."""
    import contextlib
    import getpass
    import time

    from agent.errors import PipewardenError
    from agent.store import open_store
    from alerts.store import find_alert

    who = by or getpass.getuser()
    try:
        with contextlib.closing(open_store(home)) as store:
            found = find_alert(store, alert_id)
            acked = store.acknowledge_alert(found.fingerprint, by=who, now=time.time())
    except PipewardenError as exc:
        _fail(exc)
    if acked is None:
        click.echo(
            f"error: alert {found.fingerprint} ({found.alert}) is {found.state}, not firing; only a firing "
            "alert can be acknowledged",
            err=True,
        )
        sys.exit(2)
    labels = " ".join(f"{k}={v}" for k, v in sorted(acked.labels.items()) if k not in ("alertname", "severity"))
    if acked.acknowledged_by != who:
        click.echo(
            f"alert {acked.fingerprint} ({acked.alert} {labels}) was already acknowledged by "
            f"{acked.acknowledged_by} at {_since(acked.acknowledged_at)} UTC"
        )
        return
    click.echo(f"acknowledged {acked.fingerprint} ({acked.alert} {labels}) as {who}")


def _alerts_config(path: str) -> Any:
    """The ``alerts:`` section of ``path``, validated with the rest of pipewarden.yml."""
    from agent.config import load_config
    from alerts.config import parse_config

    return parse_config(load_config(path).alerts)


@alerts_group.command("test")
@click.option(
    "--config",
    "config_path",
    default="pipewarden.yml",
    show_default=True,
    help="The pipewarden.yml whose alerts.receivers to test.",
)
def alerts_test(config_path: str) -> None:
    """Send a sample alert through every receiver and say what each answered; exit 1 if one failed."""
    import time

    from agent.errors import PipewardenError
    from alerts.config import build_receivers

    try:
        receivers = build_receivers(_alerts_config(config_path))
    except PipewardenError as exc:
        _fail(exc)
    now = time.time()
    failed = 0
    for receiver in receivers:
        result = receiver.test(now=now)
        failed += not result.ok
        click.echo(f"{'ok  ' if result.ok else 'FAIL'} {result.receiver} ({result.kind}): {result.answer}")
    sys.exit(1 if failed else 0)


# --- dashboards: export the Grafana dashboards and provisioning files -----------------------------


@cli.group()
def dashboards() -> None:
    """Grafana dashboards: write them, with provisioning files, for a Grafana to load."""


@dashboards.command("export")
@click.argument("directory", type=click.Path(path_type=str))
@click.option(
    "--prometheus-url",
    default="http://127.0.0.1:9090",
    show_default=True,
    help="URL of the Prometheus the provisioned data source points at.",
)
def dashboards_export(directory: str, prometheus_url: str) -> None:
    """Write the dashboards to DIRECTORY/dashboards and Grafana provisioning files to DIRECTORY/provisioning.

    Start Grafana with GF_PATHS_PROVISIONING=DIRECTORY/provisioning, or import the JSON files in its UI.
    """
    import dashboards as package

    if os.path.exists(directory) and not os.path.isdir(directory):
        click.echo(f"error: {directory} is a file; give a directory to write the dashboards into", err=True)
        sys.exit(2)
    try:
        written = package.export(directory, prometheus_url=prometheus_url)
    except OSError as exc:
        click.echo(f"error: cannot write the dashboards to {directory}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    for path in written:
        click.echo(str(path))
