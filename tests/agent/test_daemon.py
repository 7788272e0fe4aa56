"""The daemon stepped with a simulated clock: schedules, file arrival, run slots, reload, one per home, stop."""

from __future__ import annotations

import datetime as dt
import os
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.daemon import Daemon, DaemonLockedError
from agent.errors import ConfigError
from agent.records import RunStatus

pytestmark = pytest.mark.usefixtures("restore_logging")  # the daemon's telemetry installs the log-record factory

T0 = dt.datetime(2026, 3, 2, 9, 59, 30, tzinfo=dt.UTC).timestamp()

PIPES = textwrap.dedent("""
    import threading
    from agent import Pipeline

    GATE = threading.Event()

    hourly = Pipeline("hourly", schedule="0 * * * *")

    @hourly.task
    def work() -> int:
        return 1

    quarter = Pipeline("quarter", schedule="*/15 * * * *")

    @quarter.task
    def count() -> int:
        return 2

    slow = Pipeline("slow", schedule="every 1m")

    @slow.task
    def wait() -> None:
        GATE.wait(30)

    files = Pipeline("files")

    @files.task
    def load(path: str) -> str:
        return path

    broken = Pipeline("broken")

    @broken.task
    def fail() -> None:
        raise RuntimeError("source is down")
""")

CONFIG = """
agent: {listen: "127.0.0.1:0", grace_period: 1s, max_runs: 4}
pipelines:
  - target: pipes.py:hourly
  - target: pipes.py:quarter
  - target: pipes.py:files
    files: {directory: inbox, pattern: "*.csv", stable_seconds: 5}
  - target: pipes.py:broken
"""


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pipeline_module(tmp_path: Path) -> Any:
    """The module the daemon imported ``tmp_path/pipes.py`` as."""
    import sys

    path = str((tmp_path / "pipes.py").resolve())
    return next(m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == path)


def settle(daemon: Daemon, timeout: float = 20.0) -> None:
    """Wait for every run the daemon started to end."""
    deadline = time.monotonic() + timeout
    for active in daemon._running():
        active.thread.join(max(0.0, deadline - time.monotonic()))
    assert not daemon._running(), "runs still going"


def started(tmp_path: Path, clock: Clock) -> Daemon:
    """A started daemon of ``tmp_path/pipewarden.yml`` that serves no HTTP and watches no file, stepped by ``clock``."""
    d = Daemon(
        tmp_path / "pipewarden.yml", env={}, home=tmp_path / "home", clock=clock, serve=False, watch_config=False
    )
    d.start()
    return d


def trigger_ticking(daemon: Daemon, clock: Clock, pipeline: str) -> str:
    """Trigger ``pipeline`` from another thread, ticking until the daemon took it; the run id."""
    out: list[str] = []
    caller = threading.Thread(target=lambda: out.append(daemon.trigger(pipeline)))
    caller.start()
    while caller.is_alive():
        daemon.tick(clock.now)
        time.sleep(0.01)
    return out[0]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Path, Clock]]:
    (tmp_path / "pipes.py").write_text(PIPES)
    (tmp_path / "pipewarden.yml").write_text(CONFIG)
    yield tmp_path, Clock(T0)


@pytest.fixture
def daemon(setup: tuple[Path, Clock]) -> Iterator[Daemon]:
    tmp_path, clock = setup
    d = started(tmp_path, clock)
    yield d
    d.stop(grace=5)


def runs(daemon: Daemon, pipeline: str) -> list[Any]:
    return list(reversed(daemon.store.list_runs(pipeline=pipeline)))


def step(daemon: Daemon, clock: Clock, seconds: float) -> float:
    clock.now += seconds
    delay = daemon.tick(clock.now)
    settle(daemon)
    return delay


def test_cron_ticks_run_on_time_and_once(daemon: Daemon, setup: tuple[Path, Clock]) -> None:
    """At 10:00 the hourly and the quarter-hourly pipelines run once each, for that logical date, never twice."""
    _, clock = setup
    daemon.tick(clock.now)  # 09:59:30: first sight, nothing from the past
    settle(daemon)
    assert runs(daemon, "hourly") == []
    step(daemon, clock, 30)  # 10:00:00
    step(daemon, clock, 0)  # the same time again: nothing new
    step(daemon, clock, 20)  # 10:00:20
    [hourly] = runs(daemon, "hourly")
    [quarter] = runs(daemon, "quarter")
    assert (hourly.status, hourly.trigger, hourly.logical_date) == (
        RunStatus.SUCCESS,
        "cron",
        dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC),
    )
    assert quarter.status is RunStatus.SUCCESS
    step(daemon, clock, 15 * 60)  # 10:15:20
    assert len(runs(daemon, "quarter")) == 2 and len(runs(daemon, "hourly")) == 1


def test_the_sleep_is_until_the_next_due_time(daemon: Daemon, setup: tuple[Path, Clock]) -> None:
    """With nothing due, the loop sleeps until the next tick or a second (alert timers), never busy-loops."""
    _, clock = setup
    assert daemon.tick(clock.now) == pytest.approx(1.0)  # next tick in 30 s: capped at the timer period
    clock.now = T0 + 29.6
    assert daemon.tick(clock.now) == pytest.approx(0.4, abs=1e-6)


def test_a_file_that_arrives_runs_once_when_stable(daemon: Daemon, setup: tuple[Path, Clock]) -> None:
    """A dropped file triggers one run (with its path) after stable_seconds; ticking again does not rerun it."""
    tmp_path, clock = setup
    inbox = tmp_path / "inbox"
    (inbox / "a.csv").write_text("x")
    step(daemon, clock, 1)
    assert runs(daemon, "files") == []  # seen, not yet stable
    step(daemon, clock, 5)
    step(daemon, clock, 5)
    [run] = runs(daemon, "files")
    assert run.trigger == "file" and run.params["path"] == str(inbox / "a.csv")


def test_a_hanging_pipeline_does_not_delay_the_others(tmp_path: Path) -> None:
    """While one pipeline's task hangs, another pipeline's tick still starts and finishes."""
    (tmp_path / "pipes.py").write_text(PIPES)
    (tmp_path / "pipewarden.yml").write_text("pipelines:\n  - target: pipes.py:slow\n  - target: pipes.py:quarter\n")
    clock = Clock(dt.datetime(2026, 3, 2, 10, 14, 30, tzinfo=dt.UTC).timestamp())
    d = started(tmp_path, clock)
    try:
        d.tick(clock.now)
        clock.now += 30  # 10:15:00: slow's interval tick and quarter's cron tick
        d.tick(clock.now)
        wait_for = time.monotonic() + 10
        while time.monotonic() < wait_for and not any(r.status is RunStatus.SUCCESS for r in runs(d, "quarter")):
            time.sleep(0.05)
        [slow] = runs(d, "slow")
        assert slow.status is RunStatus.RUNNING
        assert [r.status for r in runs(d, "quarter")] == [RunStatus.SUCCESS]
    finally:
        pipeline_module(tmp_path).GATE.set()
        d.stop(grace=5)


def test_triggers_run_and_unknown_pipelines_are_refused(daemon: Daemon, setup: tuple[Path, Clock]) -> None:
    """trigger() queues a run the loop starts; an unknown pipeline or parameter is a ConfigError naming it."""
    _, clock = setup
    done: list[str] = []
    caller = threading.Thread(target=lambda: done.append(daemon.trigger("broken")))
    caller.start()
    while not daemon._triggers:
        time.sleep(0.01)
    step(daemon, clock, 1)
    caller.join(5)
    [run] = runs(daemon, "broken")
    assert run.run_id == done[0] and (run.status, run.trigger) == (RunStatus.FAILED, "manual")
    with pytest.raises(ConfigError, match="no pipeline 'nope'"):
        daemon.trigger("nope")
    with pytest.raises(ConfigError, match="no run parameter 'x'"):
        daemon.trigger("hourly", {"x": 1})


def test_a_failing_run_fires_the_default_alert(daemon: Daemon, setup: tuple[Path, Clock]) -> None:
    """The daemon's evaluator hears run events: a failed run fires PipelineRunFailed, kept in the store."""
    _, clock = setup
    caller = threading.Thread(target=lambda: daemon.trigger("broken"))
    caller.start()
    while not daemon._triggers:
        time.sleep(0.01)
    step(daemon, clock, 1)
    caller.join(5)
    assert daemon.telemetry.bus.flush(10)  # the evaluator hears events on its own thread: it has heard RunEnded
    daemon.evaluator.flush(10)
    step(daemon, clock, 1)
    firing = daemon.store.list_alerts(states=["firing"])
    assert [(a.alert, a.labels["pipeline"]) for a in firing] == [("PipelineRunFailed", "broken")]
    assert (
        daemon.telemetry.metrics.sample(
            "pipewarden_alerts_firing", alert="PipelineRunFailed", severity=firing[0].severity, pipeline="broken"
        )
        == 1
    )


def test_a_good_reload_applies_the_difference(daemon: Daemon, setup: tuple[Path, Clock]) -> None:
    """A changed file adds and removes pipelines; an unchanged pipeline keeps its object; the metric says ok."""
    tmp_path, _ = setup
    hourly = daemon.scheduler.pipelines["hourly"]
    (tmp_path / "pipewarden.yml").write_text(
        CONFIG.replace("  - target: pipes.py:quarter\n", "") + "  - {target: 'pipes.py:slow', schedule: manual}\n"
    )
    assert daemon.reload()
    assert set(daemon.scheduler.pipelines) == {"hourly", "files", "broken", "slow"}
    assert daemon.scheduler.pipelines["hourly"] is hourly
    assert daemon.telemetry.metrics.sample("pipewarden_config_last_reload_successful") == 1


def test_a_bad_reload_keeps_the_running_configuration(
    daemon: Daemon, setup: tuple[Path, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    """A broken edit is refused: every error logged once, the old pipelines keep running, the metric reads 0."""
    tmp_path, clock = setup
    (tmp_path / "pipewarden.yml").write_text(CONFIG.replace("pipes.py:quarter", "pipes.py:quartr") + "oops: 1\n")
    with caplog.at_level("ERROR", logger="pipewarden.daemon"):
        assert not daemon.reload()
        assert not daemon.reload()  # the same errors: not logged again
    errors = [r.getMessage() for r in caplog.records]
    assert len(errors) == 1 and "oops: unknown key" in errors[0]
    assert daemon.telemetry.metrics.sample("pipewarden_config_last_reload_successful") == 0
    step(daemon, clock, 30)  # 10:00: the old configuration's schedules still run
    assert len(runs(daemon, "quarter")) == 1


def test_a_second_daemon_on_the_same_home_refuses(daemon: Daemon, setup: tuple[Path, Clock]) -> None:
    """Starting another daemon on a home that has one fails with the first one's pid."""
    tmp_path, clock = setup
    other = Daemon(
        tmp_path / "pipewarden.yml", env={}, home=tmp_path / "home", clock=clock, serve=False, watch_config=False
    )
    with pytest.raises(DaemonLockedError, match=r"another pipewarden daemon \(pid \d+\) is running") as info:
        other.start()
    assert info.value.pid == os.getpid()  # the first daemon runs in this process


def test_stop_records_interrupted_what_outlives_the_grace_period(tmp_path: Path) -> None:
    """A task still running when the grace period ends is recorded interrupted, and so is its run."""
    (tmp_path / "pipes.py").write_text(
        textwrap.dedent("""
        import threading
        from agent import Pipeline

        GATE = threading.Event()
        slow = Pipeline("slow", schedule="every 1m")

        @slow.task
        def wait() -> None:
            GATE.wait(30)

        @slow.task
        def after(wait: None) -> None:
            return None
    """)
    )
    (tmp_path / "pipewarden.yml").write_text("agent: {grace_period: 0.5s}\npipelines:\n  - target: pipes.py:slow\n")
    clock = Clock(dt.datetime(2026, 3, 2, 10, 0, 30, tzinfo=dt.UTC).timestamp())
    d = started(tmp_path, clock)
    d.tick(clock.now)
    clock.now += 30
    d.tick(clock.now)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not d._running():
        time.sleep(0.01)
    d.stop()  # returns although the task waits for GATE, which only opens below
    pipeline_module(tmp_path).GATE.set()
    from agent.store import SQLiteRunStore

    with SQLiteRunStore(tmp_path / "home" / "pipewarden.db") as store:
        [run] = store.list_runs(pipeline="slow")
        full = store.get_run(run.run_id)
    assert run.status is RunStatus.INTERRUPTED and "resume it" in (run.error or "")
    assert full is not None and full.task_states == {"wait": RunStatus.INTERRUPTED, "after": RunStatus.INTERRUPTED}


def test_a_pipeline_at_max_active_runs_keeps_its_next_run_queued(tmp_path: Path) -> None:
    """With max_active_runs=1, a second trigger waits queued while the first runs, here or in another process's
    runner on the same store, and starts once the slot is free; nothing runs twice, nothing is dropped."""
    (tmp_path / "pipes.py").write_text(
        textwrap.dedent("""
        import threading
        from agent import Pipeline

        GATE = threading.Event()
        one = Pipeline("one")

        @one.task
        def work() -> None:
            GATE.wait(30)
    """)
    )
    (tmp_path / "pipewarden.yml").write_text("pipelines:\n  - target: pipes.py:one\n")
    clock = Clock(T0)
    d = started(tmp_path, clock)
    gate = pipeline_module(tmp_path).GATE

    def wait_for(status: RunStatus, run_id: str) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and d.store.get_run(run_id).status is not status:
            d.tick(clock.now)
            time.sleep(0.02)
        assert d.store.get_run(run_id).status is status

    try:
        first, second = trigger_ticking(d, clock, "one"), trigger_ticking(d, clock, "one")
        wait_for(RunStatus.RUNNING, first)
        for _ in range(20):  # ticks while the first runs: the second stays queued
            d.tick(clock.now)
        assert d.store.get_run(second).status is RunStatus.QUEUED
        gate.set()
        wait_for(RunStatus.SUCCESS, first)
        wait_for(RunStatus.SUCCESS, second)

        # The slot held by a runner outside the daemon (another process on the same store).
        from agent.runner import Runner

        gate.clear()
        outside = threading.Thread(target=Runner(store=d.store).run, args=(pipeline_module(tmp_path).one,))
        outside.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not [
            r for r in d.store.list_runs(pipeline="one") if r.status is RunStatus.RUNNING
        ]:
            time.sleep(0.02)
        third = trigger_ticking(d, clock, "one")
        for _ in range(20):  # the daemon's attempt is refused a slot: its run stays queued, not failed
            d.tick(clock.now)
            time.sleep(0.01)
        assert d.store.get_run(third).status is RunStatus.QUEUED
        gate.set()
        outside.join(10)
        wait_for(RunStatus.SUCCESS, third)
        statuses = [r.status for r in d.store.list_runs(pipeline="one")]
        assert statuses == [RunStatus.SUCCESS] * 4
    finally:
        gate.set()
        d.stop(grace=5)


def test_the_daemon_runs_tasks_on_a_dask_cluster(tmp_path: Path, dask_cluster: Any) -> None:
    """agent.executor dask with a scheduler's address: a triggered run's task runs in a Dask worker process."""
    cluster = dask_cluster(workers=1)
    (tmp_path / "pipes.py").write_text(
        textwrap.dedent(f"""
        import os
        import pathlib
        from agent import Pipeline

        where = Pipeline("where")

        @where.task
        def pid() -> None:
            pathlib.Path({str(tmp_path / "pid")!r}).write_text(str(os.getpid()))
    """)
    )
    (tmp_path / "pipewarden.yml").write_text(
        f"agent: {{executor: dask, dask_address: '{cluster.address}'}}\npipelines:\n  - target: pipes.py:where\n"
    )
    clock = Clock(T0)
    d = started(tmp_path, clock)
    try:
        run_id = trigger_ticking(d, clock, "where")
        settle(d, timeout=60)
        run = d.store.get_run(run_id)
        assert run is not None and run.status is RunStatus.SUCCESS, run
        assert int((tmp_path / "pid").read_text()) in cluster.worker_pids()
    finally:
        d.stop(grace=5)


def test_the_daemon_records_a_run_whose_host_stopped_renewing_its_lease_interrupted(
    daemon: Daemon, setup: tuple[Path, Clock]
) -> None:
    """Every RECOVER_EVERY seconds the daemon looks for runs of other hosts whose lease ran out: interrupted."""
    from agent.daemon import RECOVER_EVERY
    from agent.sqlite_store import SQLiteRunStore

    _, clock = setup
    elsewhere = SQLiteRunStore(daemon.store.path, host="another-host")  # an agent on another machine
    elsewhere.create_run(run_id="far", pipeline="hourly", trigger="cron", tasks=["work"], now=clock.now)
    elsewhere.start_run("far", now=clock.now, lease_until=clock.now + 60)
    elsewhere.close()
    step(daemon, clock, RECOVER_EVERY)  # its lease still holds
    assert daemon.store.get_run("far").status is RunStatus.RUNNING
    step(daemon, clock, 60)
    far = daemon.store.get_run("far")
    assert far.status is RunStatus.INTERRUPTED and "another-host" in far.error
    assert far.task_state("work") is RunStatus.INTERRUPTED
