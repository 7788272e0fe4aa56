"""Ports of the orchestrator tutorials, through `pipewarden run` in a fresh process: mapping over a list read at
run time, a branch with a join, a file sensor, a cached task; `runs show` shows each item, skip, wait and hit.
And a SIGKILL in the middle of a mapped task: the resume runs only the items that had not finished."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from agent.records import RunStatus
from agent.store import SQLiteRunStore

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "pipelines"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def cli(
    home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args, "--home", str(home)],
        env=env or _env(),
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_json(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    res = cli(home, "run", *args, "--json", "--no-progress", env=env)
    assert res.stdout, res.stderr
    return res.returncode, json.loads(res.stdout)


def test_mapping_over_files_found_at_run_time(tmp_path: Path) -> None:
    """Each file found when the run starts is one item; a file still being written fails its item once, the item
    is retried on its own, and `runs show` lists every item with its attempts."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name, rows in (("a.csv", 3), ("b.csv", 5), ("c.csv", 1)):
        (inbox / name).write_text("id\n" + "".join(f"{i}\n" for i in range(rows)))
    (inbox / "b.csv.partial").write_text("")
    home = tmp_path / "home"
    code, record = run_json(home, str(EXAMPLES / "mapped_files.py"), "-p", f"inbox={inbox}")
    assert code == 0, record
    assert record["tasks"] == {"list_files": "success", "count_rows": "success", "summarize": "success"}
    items = [a for a in record["attempts"] if a["task"] == "count_rows" and a["item"] is not None]
    assert sorted((a["item"], a["attempt"], a["status"]) for a in items) == [
        (0, 1, "success"),
        (1, 1, "failed"),
        (1, 2, "success"),
        (2, 1, "success"),
    ]
    show = cli(home, "runs", "show", record["run_id"])
    assert show.returncode == 0, show.stderr
    out = show.stdout
    assert "3 items: success 3" in out
    for line in ("count_rows[0]  success      attempts=1", "count_rows[1]  success      attempts=2"):
        assert line in out
    assert "count_rows[1] #1 failed: OSError:" in out and "b.csv is still being written" in out


def test_a_branch_and_its_join(tmp_path: Path) -> None:
    """On a Monday the full reload runs and the incremental load is skipped (not failed); the join runs; on a
    Tuesday the other way round; `runs show` says which branch chose what."""
    home = tmp_path / "home"
    code, monday = run_json(home, str(EXAMPLES / "branching.py"), "--logical-date", "2025-01-27")
    assert code == 0
    assert monday["tasks"]["full_reload"] == "success" and monday["tasks"]["incremental_load"] == "skipped"
    assert monday["tasks"]["report"] == "success"
    code, tuesday = run_json(home, str(EXAMPLES / "branching.py"), "--logical-date", "2025-01-28")
    assert code == 0 and tuesday["tasks"]["full_reload"] == "skipped"
    show = cli(home, "runs", "show", monday["run_id"]).stdout
    assert re.search(r"\n  incremental_load +skipped ", show) and "branch choose chose full_reload" in show
    kpis = json.loads(cli(home, "kpis", "--json").stdout)
    assert kpis["branching"]["success_rate"] == 1.0  # a branch not taken is no failure


def test_a_file_sensor_waits_then_loads(tmp_path: Path) -> None:
    """The sensor waits for the day's file (recorded waiting, pokes counted, no failed attempt), then the load runs;
    `runs show` shows the wait."""
    landing = tmp_path / "landing"
    landing.mkdir()
    target = landing / "orders-2025-01-31.csv"
    home = tmp_path / "home"

    shown: list[str] = []

    def land() -> None:  # look at the run while its sensor waits, then land the file
        time.sleep(1.0)
        run_id = cli(home, "runs", "list", "--quiet", "--limit", "1").stdout.strip()
        shown.append(cli(home, "runs", "show", run_id).stdout)
        target.write_text("id\n1\n2\n")

    threading.Thread(target=land).start()
    code, record = run_json(
        home, str(EXAMPLES / "file_sensor.py"), "-p", f"landing={landing}", "--logical-date", "2025-01-31"
    )
    assert code == 0, record
    sensor = [a for a in record["attempts"] if a["task"] == "landed"]
    assert len(sensor) == 1 and sensor[0]["attempt"] == 1 and sensor[0]["status"] == "success"
    assert sensor[0]["pokes"] >= 3 and sensor[0]["duration"] >= 1.0
    assert record["tasks"]["load"] == "success"
    show = cli(home, "runs", "show", record["run_id"]).stdout
    assert f"waited {sensor[0]['duration']:.1f}s ({sensor[0]['pokes']} pokes)" in show
    assert "status running" in shown[0] and re.search(r"\n  landed +waiting +waiting since .* UTC, \d+ pokes", shown[0])


def test_a_cached_task_is_not_run_again(tmp_path: Path) -> None:
    """The second run reuses the enrichment (cached, the run succeeds), a new rate runs it again; `runs show`
    names the run whose output was reused."""
    home = tmp_path / "home"
    marker = tmp_path / "marker"
    env = _env(PIPEWARDEN_EXAMPLE_MARKER=str(marker))
    target = str(EXAMPLES / "cached.py")
    code, first = run_json(home, target, env=env)
    assert code == 0
    code, second = run_json(home, target, env=env)
    assert code == 0 and second["tasks"]["enrich"] == "cached" and second["status"] == "success"
    assert marker.read_text() == "enrich\n"
    code, third = run_json(home, target, "-p", "rate=0.25", env=env)
    assert code == 0 and third["tasks"]["enrich"] == "success"
    assert marker.read_text() == "enrich\nenrich\n"
    show = cli(home, "runs", "show", second["run_id"]).stdout
    assert re.search(r"\n  enrich +cached ", show) and f"cached: the output of run {first['run_id']}" in show


KILLED = textwrap.dedent("""
    import os
    import time
    from agent.pipeline import Pipeline

    pipe = Pipeline("killed", params={"marker": "marker"})

    @pipe.task
    def batches() -> list[int]:
        return list(range(40))

    @pipe.task(map="batches", max_parallel=2)
    def process(batches: int, marker: str) -> int:
        time.sleep(0.05)
        with open(marker, "a") as f:
            f.write(f"{batches}\\n")
            f.flush()
            os.fsync(f.fileno())
        return batches * 10

    @pipe.task
    def total(process: list[int]) -> int:
        return sum(process)
""")


def test_sigkill_during_a_mapped_task_then_resume_runs_only_the_unfinished_items(tmp_path: Path) -> None:
    """A runner killed with SIGKILL mid-map: resume runs the items that had not finished; an item recorded
    finished never runs twice (the side-effect file has it once), and the total is right."""
    path = tmp_path / "killed.py"
    path.write_text(KILLED)
    marker = tmp_path / "marker"
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "run",
            str(path),
            "--no-progress",
            "--home",
            str(home),
            "-p",
            f"marker={marker}",
        ],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not marker.exists() or len(marker.read_text().split()) < 12):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    with SQLiteRunStore(home / "pipewarden.db") as store:
        [run] = store.list_runs(pipeline="killed")
        before = store.get_run(run.run_id)
    assert before is not None
    finished = {i for i, a in before.items("process").items() if a.status is RunStatus.SUCCESS}
    assert 10 <= len(finished) < 40  # 12 items wrote their line; the 2 running at the kill may not be recorded
    res = cli(home, "runs", "resume", run.run_id, "--json", "--no-progress")
    assert res.returncode == 0, res.stderr
    after = json.loads(res.stdout)
    assert after["status"] == "success" and after["tasks"]["process"] == "success"
    counts = Counter(int(x) for x in marker.read_text().split())
    assert set(counts) == set(range(40))
    assert all(counts[i] == 1 for i in finished)
    assert sum(counts.values()) <= 40 + 2  # at most the two items running at the kill ran again
    show = cli(home, "runs", "show", run.run_id).stdout
    assert f"40 items: success 40 ({len(finished)} kept from the earlier execution)" in show
    with SQLiteRunStore(home / "pipewarden.db") as store:
        rec = store.get_run(run.run_id)
    assert rec is not None and rec.latest()["total"].status is RunStatus.SUCCESS
    interrupted = [a for a in rec.attempts if a.task == "process" and a.status is RunStatus.INTERRUPTED]
    assert interrupted and all(a.item is None or a.item not in finished for a in interrupted)


def test_runs_show_lists_the_first_items_and_every_one_that_did_not_succeed(tmp_path: Path) -> None:
    """Of 60 items `runs show` lists the first 50 and the failed one after them, and says how many more
    succeeded; --all-items lists all 60."""
    path = tmp_path / "sixty.py"
    path.write_text(
        "from agent.pipeline import Pipeline\n"
        "pipe = Pipeline('sixty')\n"
        "pipe.task(name='ids')(lambda: list(range(60)))\n"
        "def check(ids):\n"
        "    if ids == 55:\n"
        "        raise ValueError('bad id 55')\n"
        "    return ids\n"
        "pipe.task(name='each', map='ids')(check)\n"
    )
    home = tmp_path / "home"
    code, record = run_json(home, str(path))
    assert code == 1
    show = cli(home, "runs", "show", record["run_id"]).stdout
    listed = re.findall(r"\n  each\[(\d+)\] +(?:success|failed)", show)
    assert listed == [str(i) for i in range(50)] + ["55"]
    assert "each[55]       failed       attempts=1" in show and "ValueError: bad id 55" in show
    assert "... and 9 more items of each that succeeded (runs show --all-items lists them)" in show
    every = cli(home, "runs", "show", record["run_id"], "--all-items").stdout
    assert re.findall(r"\n  each\[(\d+)\] +(?:success|failed)", every) == [str(i) for i in range(60)]
