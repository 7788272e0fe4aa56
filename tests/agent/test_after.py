"""Pipelines that run after others: once per upstream run, across ticks, restarts and reloads, linked in history."""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.config import load_pipelines_from
from agent.daemon import Daemon
from agent.errors import ConfigError
from agent.pipeline import Pipeline
from agent.records import RunStatus, record_to_dict
from agent.runner import Runner
from agent.scheduler import AFTER_OVERLAP, Scheduler
from agent.schedules import After, Link, parse_schedule
from agent.store import SQLiteRunStore

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 2, 9, 59, 30, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pipelines(fail: set[str]) -> tuple[Pipeline, Pipeline, Pipeline]:
    """extract (orders, then publish), report after extract, audit after extract's orders dataset."""
    extract = Pipeline("extract")

    @extract.task
    def orders() -> int:
        return 1

    @extract.task
    def publish(orders: int) -> int:
        if "publish" in fail:
            raise RuntimeError("publisher down")
        return orders

    report = Pipeline("report", schedule=After("extract"))
    report.task(name="build")(lambda: 2)
    audit = Pipeline("audit", schedule=After(Link("extract", dataset="orders")))
    audit.task(name="check")(lambda: 3)
    return extract, report, audit


@pytest.fixture
def world(store: SQLiteRunStore, tel: Any) -> Iterator[tuple[SQLiteRunStore, Clock, Any]]:
    clock = Clock(T0)
    fail: set[str] = set()
    extract, report, audit = pipelines(fail)

    def run_extract(*, failing: bool = False) -> str:
        fail.clear()
        if failing:
            fail.add("publish")
        clock.now += 5
        return Runner(store=store, telemetry=tel, clock=clock).run(extract).run_id

    run_extract.pipes = (extract, report, audit)  # type: ignore[attr-defined]
    run_extract.tel = tel  # type: ignore[attr-defined]
    yield store, clock, run_extract


def scheduler(store: SQLiteRunStore, run_extract: Any) -> Scheduler:
    return Scheduler(store, run_extract.pipes)


def tick(s: Scheduler, clock: Clock) -> list[Any]:
    clock.now += 1
    return s.tick(dt.datetime.fromtimestamp(clock.now, UTC))


def test_a_success_makes_the_downstream_due_once(world: Any) -> None:
    """Each successful run of extract makes report due once, linked to it; ticking again adds nothing."""
    store, clock, run_extract = world
    s = scheduler(store, run_extract)
    assert tick(s, clock) == []  # first sight
    first = run_extract()
    [due] = [d for d in tick(s, clock) if d.pipeline == "report"]
    assert (due.trigger, due.triggered_by) == ("after", first)
    assert due.logical_date == store.get_run(first).logical_date
    assert [d for d in tick(s, clock) if d.pipeline == "report"] == []
    record = store.get_run(due.run_id)
    assert record is not None and record.triggered_by == first and record.status is RunStatus.QUEUED
    assert record_to_dict(record)["triggered_by"] == first


def test_a_failed_run_makes_only_the_dataset_link_due(world: Any) -> None:
    """A run that failed after its orders task succeeded triggers audit (the dataset), not report (the run)."""
    store, clock, run_extract = world
    s = scheduler(store, run_extract)
    tick(s, clock)
    failed = run_extract(failing=True)
    assert store.get_run(failed).status is RunStatus.FAILED
    due = tick(s, clock)
    assert [(d.pipeline, d.triggered_by) for d in due] == [("audit", failed)]


def test_a_restart_never_runs_the_downstream_twice_and_misses_nothing(world: Any) -> None:
    """A new scheduler on the same store adds nothing for handled runs and picks up a run that ended while down."""
    store, clock, run_extract = world
    s = scheduler(store, run_extract)
    tick(s, clock)
    first = run_extract()
    queued = {d.run_id for d in tick(s, clock)}
    assert len(queued) == 2  # report and audit, recorded QUEUED; the process stops before starting them
    s.stop()
    while_down = run_extract()  # the daemon is down: nobody ticks
    again = scheduler(store, run_extract)

    def start(due: list[Any]) -> None:
        for d in due:
            pipe = run_extract.pipes[1 if d.pipeline == "report" else 2]
            Runner(store=store, telemetry=run_extract.tel, clock=clock).run(pipe, run_id=d.run_id)

    due = tick(again, clock)
    assert {d.run_id for d in due} == queued  # handed out again, not made twice; they hold max_active_runs=1
    start(due)
    due = tick(again, clock)
    assert sorted((d.pipeline, d.triggered_by) for d in due) == [("audit", while_down), ("report", while_down)]
    start(due)
    assert tick(scheduler(store, run_extract), clock) == []
    linked = [r.triggered_by for r in store.list_runs(pipeline="report")]
    assert sorted(linked) == sorted([first, while_down])


def test_runs_before_the_link_was_first_seen_do_not_run(world: Any) -> None:
    """Upstream runs that ended before the downstream pipeline was first seen start nothing (no catch-up)."""
    store, clock, run_extract = world
    run_extract()
    run_extract()
    s = scheduler(store, run_extract)
    assert tick(s, clock) == []
    clock.now += AFTER_OVERLAP / 2  # still inside the look-back: the old runs stay handled
    assert tick(s, clock) == []


def test_after_takes_names_links_and_text() -> None:
    """After() takes pipeline names and Links (repeats dropped); "after a, b" parses to the same."""
    sched = After("extract", Link("extract", dataset="orders"), "extract")
    assert sched.links == (Link("extract"), Link("extract", dataset="orders"))
    assert parse_schedule("after extract, ingest") == After("extract", "ingest")


def test_two_links_share_the_idempotency_key(store: SQLiteRunStore, tel: Any) -> None:
    """With a run link and a dataset link to the same pipeline, one upstream run queues one downstream run."""
    clock = Clock(T0)
    extract, _, _ = pipelines(set())
    both = Pipeline("both", schedule=After("extract", Link("extract", dataset="orders")))
    both.task(name="t")(lambda: None)
    s = Scheduler(store, [extract, both])
    s.tick(dt.datetime.fromtimestamp(clock.now, UTC))
    clock.now += 5
    upstream = Runner(store=store, telemetry=tel, clock=clock).run(extract).run_id
    clock.now += 1
    due = s.tick(dt.datetime.fromtimestamp(clock.now, UTC))
    assert [(d.pipeline, d.triggered_by) for d in due] == [("both", upstream)]


def test_max_active_runs_holds_upstream_runs_for_later(world: Any) -> None:
    """Over the downstream's max_active_runs, later upstream runs wait and are started once a slot frees."""
    store, clock, run_extract = world
    s = scheduler(store, run_extract)
    tick(s, clock)
    first, second = run_extract(), run_extract()
    due = [d for d in tick(s, clock) if d.pipeline == "report"]
    assert [d.triggered_by for d in due] == [first]  # max_active_runs=1: the queued run holds the slot
    assert [d for d in tick(s, clock) if d.pipeline == "report"] == []
    report = run_extract.pipes[1]
    Runner(store=store, telemetry=run_extract.tel, clock=clock).run(report, run_id=due[0].run_id)
    assert [d.triggered_by for d in tick(s, clock) if d.pipeline == "report"] == [second]


CHAIN = textwrap.dedent("""
    from agent import Pipeline
    from agent.schedules import After

    extract = Pipeline("extract", schedule="every 1m")

    @extract.task
    def orders() -> int:
        return 1

    report = Pipeline("report")

    @report.task
    def build() -> int:
        return 2

    declared = Pipeline("declared", schedule=After("nowhere"))

    @declared.task
    def t() -> None:
        return None
""")


@pytest.mark.parametrize(
    "entries, problems",
    [
        (
            "  - target: pipes.py:report\n    after: [extract, extrct]\n",
            ["{f}:4: pipelines[1].after[1]: no pipeline 'extrct' in pipewarden.yml; did you mean 'extract'?"],
        ),
        (
            "  - target: pipes.py:report\n    after:\n      - {pipeline: extract, dataset: ordrs}\n",
            [
                "{f}:5: pipelines[1].after[0]: pipeline 'extract' writes no dataset 'ordrs' (its datasets are its "
                "tasks: orders); did you mean 'orders'?"
            ],
        ),
        (
            "  - target: pipes.py:report\n    after: report\n",
            ["{f}:4: pipelines[1].after: pipeline 'report' cannot run after itself"],
        ),
        (
            "  - target: pipes.py:report\n    after: extract\n    schedule: '0 * * * *'\n",
            ["{f}:4: pipelines[1].after: a pipeline has one schedule; give one of schedule, files or after"],
        ),
        (
            "  - target: pipes.py:declared\n",
            ["{f}:3: pipelines[1].after: no pipeline 'nowhere' in pipewarden.yml (pipelines: extract, declared)"],
        ),
    ],
)
def test_links_that_name_nothing_are_config_errors_with_their_line(
    tmp_path: Path, entries: str, problems: list[str]
) -> None:
    """An unknown pipeline or dataset, a self link or a second schedule: a ConfigError with file and line."""
    (tmp_path / "pipes.py").write_text(CHAIN)
    config = tmp_path / "pipewarden.yml"
    config.write_text("pipelines:\n  - target: pipes.py:extract\n" + entries)
    with pytest.raises(ConfigError) as err:
        load_pipelines_from(config)
    assert err.value.problems == [p.format(f=config) for p in problems]


def test_a_cycle_of_pipelines_is_a_config_error(tmp_path: Path) -> None:
    """Pipelines that run after each other in a circle are refused, the cycle named."""
    (tmp_path / "pipes.py").write_text(CHAIN)
    config = tmp_path / "pipewarden.yml"
    config.write_text(
        "pipelines:\n  - target: pipes.py:extract\n    after: report\n  - target: pipes.py:report\n    after: extract\n"
    )
    with pytest.raises(ConfigError, match=r"pipewarden.yml:\d: pipelines run after each other in a cycle: "):
        load_pipelines_from(config)


CONFIG = """
agent: {listen: "127.0.0.1:0", grace_period: 1s}
pipelines:
  - target: pipes.py:extract
  - target: pipes.py:report
    after: extract
"""


def make_daemon(tmp_path: Path, clock: Clock) -> Daemon:
    d = Daemon(
        tmp_path / "pipewarden.yml", env={}, home=tmp_path / "home", clock=clock, serve=False, watch_config=False
    )
    d.start()
    return d


def step(d: Daemon, clock: Clock, seconds: float) -> None:
    clock.now += seconds
    d.tick(clock.now)
    for active in d._running():
        active.thread.join(20)
    assert not d._running()


@pytest.mark.usefixtures("restore_logging")
def test_the_daemon_runs_b_once_after_a_even_across_a_restart(tmp_path: Path) -> None:
    """In the daemon, extract's success starts report once; a restart and more ticks never start it again."""
    (tmp_path / "pipes.py").write_text(CHAIN.split("declared =")[0])
    (tmp_path / "pipewarden.yml").write_text(CONFIG)
    clock = Clock(T0)
    d = make_daemon(tmp_path, clock)
    try:
        step(d, clock, 0)  # 09:59:30, first sight
        step(d, clock, 30)  # 10:00:00: extract's interval tick runs
        step(d, clock, 1)  # report is due now that extract succeeded
        step(d, clock, 1)
        [a] = d.store.list_runs(pipeline="extract")
        [b] = d.store.list_runs(pipeline="report")
        assert (a.status, b.status, b.trigger, b.triggered_by) == (
            RunStatus.SUCCESS,
            RunStatus.SUCCESS,
            "after",
            a.run_id,
        )
        assert b.logical_date == a.logical_date == dt.datetime(2026, 3, 2, 10, tzinfo=UTC)
        assert {p["name"]: p["schedule"] for p in d.pipelines()}["report"] == "after extract"
    finally:
        d.stop(grace=5)
    d = make_daemon(tmp_path, clock)  # a restart
    try:
        step(d, clock, 1)
        step(d, clock, 1)
        assert [r.triggered_by for r in d.store.list_runs(pipeline="report")] == [a.run_id]
        assert d.reload()  # a reload re-adds the pipelines: still once
        step(d, clock, 1)
        assert len(d.store.list_runs(pipeline="report")) == 1
        step(d, clock, 60)  # 10:01: the next extract run, and its report
        step(d, clock, 1)
        assert len(d.store.list_runs(pipeline="report")) == 2
    finally:
        d.stop(grace=5)
    home = str(tmp_path / "home")
    listed = CliRunner().invoke(cli, ["runs", "list", "--pipeline", "report", "--home", home])
    assert f"after {a.run_id}" in listed.output
    shown = CliRunner().invoke(cli, ["runs", "show", b.run_id, "--home", home])
    assert f"triggered by run {a.run_id} of pipeline extract (success)" in shown.output
