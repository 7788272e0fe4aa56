"""Sensors: waiting for a condition without failed attempts, bounded by a timeout, holding no worker or run slot."""

from __future__ import annotations

import datetime as dt
import sqlite3
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.daemon import Daemon
from agent.errors import DecorationError
from agent.pipeline import Pipeline
from agent.records import RunStatus
from agent.runner import run
from agent.sensors import SensorSpec, file_exists, pipeline_succeeded, table_partition
from agent.store import SQLiteRunStore
from agent.telemetry import Telemetry


def test_a_sensor_waits_in_one_attempt_holding_no_worker(
    run_opts: dict[str, Any], store: SQLiteRunStore, tmp_path: Path, tel: Telemetry
) -> None:
    """With one worker, a task beside a waiting sensor still runs (it makes the file the sensor waits for);
    the sensor is recorded waiting meanwhile, then succeeds in one attempt with its pokes counted."""
    pipe = Pipeline("landing", max_workers=1)
    flag = tmp_path / "landing" / "orders.csv"
    seen: dict[str, Any] = {}

    ready = pipe.sensor(name="arrived", poke=0.05, timeout=20)(file_exists(str(tmp_path / "landing" / "*.csv")))

    @pipe.task
    def producer(run_id: str) -> None:
        time.sleep(0.3)
        with SQLiteRunStore(store.path) as other:  # what another process reading the store sees now
            latest = other.get_run(run_id).latest()  # type: ignore[union-attr]
        seen["state"], seen["pokes"] = latest["arrived"].status, latest["arrived"].pokes
        seen["waiting"] = tel.metrics.sample("pipewarden_sensors_waiting", pipeline="landing")
        flag.parent.mkdir()
        flag.write_text("id\n1\n")

    @pipe.task
    def load(arrived: list[str]) -> int:
        return len(arrived)

    assert ready.__name__ == "file_exists"
    rec = run(pipe, **run_opts)
    assert rec.ok and rec.outputs["arrived"] == [str(flag)] and rec.outputs["load"] == 1
    assert seen["state"] is RunStatus.WAITING and seen["pokes"] >= 2 and seen["waiting"] == 1
    rows = [a for a in rec.attempts if a.task == "arrived"]
    assert len(rows) == 1 and rows[0].attempt == 1 and rows[0].status is RunStatus.SUCCESS
    assert rows[0].pokes is not None and rows[0].pokes >= 3
    assert (rows[0].reason or "").startswith("waited ")
    m = tel.metrics
    assert m.sample("pipewarden_sensor_pokes_total", pipeline="landing", task="arrived") == rows[0].pokes
    assert m.sample("pipewarden_sensor_wait_seconds_count", pipeline="landing", task="arrived") == 1
    assert (m.sample("pipewarden_sensor_wait_seconds_sum", pipeline="landing", task="arrived") or 0) >= 0.25
    assert m.sample("pipewarden_sensors_waiting", pipeline="landing") == 0
    assert m.sample("pipewarden_task_retries_total", pipeline="landing", task="arrived") == 0
    assert m.sample("pipewarden_task_runs_total", pipeline="landing", task="arrived", status="failed") == 0


@pytest.mark.parametrize(
    ("on_timeout", "sensor", "run_status", "below"),
    [
        ("fail", RunStatus.TIMED_OUT, RunStatus.FAILED, RunStatus.UPSTREAM_FAILED),
        ("skip", RunStatus.SKIPPED, RunStatus.SUCCESS, RunStatus.SKIPPED),
    ],
)
def test_a_sensor_that_times_out_fails_or_skips(
    run_opts: dict[str, Any], tmp_path: Path, on_timeout: str, sensor: RunStatus, run_status: RunStatus, below: Any
) -> None:
    """At its timeout a sensor ends timed_out (the run fails) or, with on_timeout='skip', skipped (the run succeeds)."""
    pipe = Pipeline("late")
    pipe.sensor(name="never", poke=0.05, timeout=0.3, on_timeout=on_timeout)(file_exists(str(tmp_path / "none.csv")))
    pipe.task(name="load", depends_on=["never"])(lambda: 1)
    t0 = time.monotonic()
    rec = run(pipe, **run_opts)
    assert time.monotonic() - t0 < 15  # bounded: it never waits past its timeout by more than a poke
    assert rec.status is run_status and rec.task_state("never") is sensor and rec.task_state("load") is below
    a = rec.latest()["never"]
    text = a.error if on_timeout == "fail" else a.reason
    assert "did not hold within timeout=0.3s" in (text or "") and (a.pokes or 0) >= 2
    assert [x.attempt for x in rec.attempts if x.task == "never"] == [1]


def test_a_poke_that_raises_counts_against_retries(run_opts: dict[str, Any]) -> None:
    """Pokes that raise are tried again up to retries=N; one more ends the sensor failed with the error."""
    pipe = Pipeline("flaky_source")
    calls = {"n": 0}

    def probe() -> bool:
        calls["n"] += 1
        raise ConnectionError(f"down ({calls['n']})")

    pipe.sensor(name="probe", poke=0.01, timeout=10, retries=2)(probe)
    rec = run(pipe, **run_opts)
    assert calls["n"] == 3
    assert rec.task_state("probe") is RunStatus.FAILED
    assert rec.latest()["probe"].error == "ConnectionError: down (3)"


def test_a_cancelled_run_ends_its_waiting_sensor_cancelled(run_opts: dict[str, Any], tmp_path: Path) -> None:
    """Cancelling a run while a sensor waits ends the sensor cancelled at the loop's next look, not at its timeout."""
    pipe = Pipeline("cancel_wait")
    pipe.sensor(name="wait", poke=0.05, timeout=60)(file_exists(str(tmp_path / "none")))
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    t0 = time.monotonic()
    rec = run(pipe, cancel=cancel, **run_opts)
    assert time.monotonic() - t0 < 10
    assert rec.status is RunStatus.CANCELLED and rec.task_state("wait") is RunStatus.CANCELLED


def test_file_exists_fills_in_the_logical_date_and_run_parameters(tmp_path: Path) -> None:
    """file_exists formats its pattern with the logical date and the run parameters; a file too small waits."""
    cond = file_exists(str(tmp_path / "{region}" / "ds={logical_date:%Y-%m-%d}" / "_SUCCESS"), min_bytes=1)
    when = dt.datetime(2025, 1, 31, tzinfo=dt.UTC)
    target = tmp_path / "eu" / "ds=2025-01-31" / "_SUCCESS"
    assert cond(logical_date=when, params={"region": "eu"}) == []
    target.parent.mkdir(parents=True)
    target.write_text("")
    assert cond(logical_date=when, params={"region": "eu"}) == []
    target.write_text("ok")
    assert cond(logical_date=when, params={"region": "eu"}) == [str(target)]


def test_table_partition_waits_for_the_days_rows(tmp_path: Path) -> None:
    """table_partition is true once the table has a row for the run's logical date."""
    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (ds TEXT, amount REAL)")
    cond = table_partition(lambda: sqlite3.connect(db), "orders")
    when = dt.datetime(2025, 1, 31, tzinfo=dt.UTC)
    assert not cond(logical_date=when)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO orders VALUES ('2025-01-31', 9.5)")
    assert cond(logical_date=when) == [(1,)]
    with pytest.raises(DecorationError, match="plain SQL identifier"):
        table_partition(lambda: sqlite3.connect(db), "orders; DROP TABLE orders")


def test_pipeline_succeeded_waits_for_the_other_pipelines_run_of_the_same_day(run_opts: dict[str, Any]) -> None:
    """A sensor on another pipeline's success is ready once that pipeline has a successful run for the same date."""
    upstream = Pipeline("upstream")
    upstream.task(name="make")(lambda: 1)
    downstream = Pipeline("downstream")
    downstream.sensor(name="upstream_done", poke=0.05, timeout=0.3, on_timeout="skip")(pipeline_succeeded("upstream"))
    downstream.task(name="use", depends_on=["upstream_done"])(lambda: 2)

    early = run(downstream, logical_date="2025-01-31", **run_opts)
    assert early.task_state("upstream_done") is RunStatus.SKIPPED
    other_day = run(upstream, logical_date="2025-01-30", **run_opts)
    assert run(downstream, logical_date="2025-01-31", **run_opts).task_state("use") is RunStatus.SKIPPED
    same_day = run(upstream, logical_date="2025-01-31", **run_opts)
    late = run(downstream, logical_date="2025-01-31", **run_opts)
    assert late.ok and late.outputs["upstream_done"] == same_day.run_id != other_day.run_id


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"poke": 0}, "poke must be a number of seconds > 0"),
        ({"timeout": float("inf")}, "timeout must be a number of seconds > 0"),
        ({"on_timeout": "ignore"}, "on_timeout must be one of fail, skip"),
    ],
)
def test_sensor_options_are_checked_when_declared(options: dict[str, Any], message: str) -> None:
    """A zero poke, an unbounded timeout or an unknown on_timeout is a DecorationError when the sensor is declared."""
    with pytest.raises(DecorationError, match=message):
        Pipeline("bad").sensor(**options)(lambda: True)


def test_sensor_spec_keeps_seconds_as_floats() -> None:
    """Poke and timeout are kept as seconds."""
    assert SensorSpec(poke=1, timeout=2) == SensorSpec(poke=1.0, timeout=2.0, on_timeout="fail")


DAEMON_PIPES = textwrap.dedent("""
    from pathlib import Path
    from agent import Pipeline
    from agent.sensors import file_exists

    FLAG = Path(__file__).parent / "flag"

    waits = Pipeline("waits")
    waits.sensor(name="flag", poke=0.05, timeout=20)(file_exists(str(FLAG)))

    makes = Pipeline("makes")

    @makes.task
    def make() -> None:
        FLAG.write_text("ready")
""")


@pytest.mark.usefixtures("restore_logging")
def test_in_the_daemon_a_waiting_sensor_gives_back_its_run_slot(tmp_path: Path) -> None:
    """With max_runs: 1, a run only waiting on a sensor frees the slot: another pipeline's run starts, makes the
    file, and the sensor's run then takes a slot again and succeeds (held, it would have timed out)."""
    (tmp_path / "pipes.py").write_text(DAEMON_PIPES)
    (tmp_path / "pipewarden.yml").write_text(
        "agent: {max_runs: 1}\npipelines:\n  - target: pipes.py:waits\n  - target: pipes.py:makes\n"
    )
    d = Daemon(tmp_path / "pipewarden.yml", env={}, home=tmp_path / "home", serve=False, watch_config=False)
    d.start()

    def trigger(name: str) -> str:
        out: list[str] = []
        caller = threading.Thread(target=lambda: out.append(d.trigger(name)))
        caller.start()
        while caller.is_alive():
            d.tick(d.clock())
            time.sleep(0.01)
        return out[0]

    def until(what: Any, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not what():
            d.tick(d.clock())
            time.sleep(0.02)
        assert what()

    try:
        waiting = trigger("waits")
        until(lambda: (d.store.get_run(waiting).latest().get("flag") or RunStatus.PENDING) and d._holding() == 0)
        assert d.store.get_run(waiting).latest()["flag"].status is RunStatus.WAITING
        made = trigger("makes")
        until(lambda: d.store.get_run(made).status is RunStatus.SUCCESS)
        until(lambda: d.store.get_run(waiting).status is RunStatus.SUCCESS)
    finally:
        d.stop(grace=5)
