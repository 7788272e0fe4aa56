"""What `pipewarden run` costs per task, as a user runs it: fresh process, default configuration.

For each shape and size it writes a pipeline file of no-op tasks, then runs
``python -m agent run FILE --no-progress --home NEW_DIR`` in a fresh process with
the environment's defaults (spans to ``traces.jsonl``, every state durable in the
SQLite store, the first run in a new home), several times, and prints every run:

  wall        the whole process, from exec to exit
  peak RSS    the process's high-water resident memory
  us/task     (wall - wall of the one-task pipeline in the same round) / tasks:
              what each task adds (budget 250 us; at 10,000 no higher than at 1,000)

Besides no-op chains and fan-outs: a chain of 1,000 tasks each taking the previous one's int
by parameter, and of 100 tasks passing a 10,000-row DataFrame (outputs a downstream task
takes are kept for resume: an int in the store, a frame as an Arrow IPC file).

Mapped tasks: one task mapped over a list of 10,000 items made at run time (``mapped``: no-op
items, nothing kept; ``mapped_ints``: each item returns an int that a task below takes, so each
item's output is kept for resume, like ``ints``). Each item is an attempt of its own (a row in the
store, a span, events): us/item = (wall - wall of the one-task pipeline) / items, printed beside
the per-task cost of the task shapes that do the same work per task.

Each round also runs the one-task pipeline (the baseline) and ``python -c pass``,
so the ratios hold when the machine's speed drifts. Then, in this process, the
cost of one SQLite commit in WAL mode with synchronous NORMAL and FULL.

Then the same runs with the store in PostgreSQL: the bench starts a throwaway
cluster (tests/pg_cluster.py: initdb in a temporary directory, a free loopback
port, the server's default settings) and points ``PIPEWARDEN_STORE`` at a new
database per run, in two settings of the URL: the server's default (every commit
waits for its WAL flush, ``synchronous_commit=on``) and
``options=-c synchronous_commit=off`` (a commit survives the agent's death, not
the server's crash). Per task, the baseline is the one-task pipeline on
PostgreSQL in the same round; then the cost of one commit in each setting.
Skipped, with the reason, without PostgreSQL's binaries or psycopg.

Usage: python bench/orchestrator.py [--sizes 1000 10000] [--rounds 3] [--pg-sizes 1000] [--no-postgresql]
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

BUDGET_US = 250.0
RSS_BUDGET_MIB = 100.0


def pipeline_file(directory: Path, shape: str, n: int) -> Path:
    """A pipeline file of ``n`` no-op tasks: a chain, or fan-out root -> n -> sink."""
    path = directory / f"{shape}_{n}.py"
    body = [
        "from agent import Pipeline",
        f"pipe = Pipeline('bench_{shape}_{n}')",
        "def noop():",
        "    return None",
    ]
    if shape == "chain":
        body.append(f"for i in range({n}):")
        body.append("    pipe.task(name=f't{i}', depends_on=[f't{i - 1}'] if i else ())(noop)")
    elif shape in ("ints", "frames"):  # each task takes the previous one's output by parameter (kept for resume)
        first = "pd.DataFrame({'a': range(10_000), 'b': 1.5})" if shape == "frames" else "0"
        step = "t{p}.assign(a=t{p}['a'] + 1)" if shape == "frames" else "t{p} + 1"
        if shape == "frames":  # pandas' import (~0.4 s) would otherwise be spread over the ints' tasks
            body.insert(0, "import pandas as pd")
        for i in range(n):
            body.append(
                f"@pipe.task\ndef t{i}({f't{i - 1}' if i else ''}):\n    return {step.format(p=i - 1) if i else first}"
            )
    elif shape in ("mapped", "mapped_ints"):  # one task mapped over n items made at run time
        body.append(f"pipe.task(name='items')(lambda: list(range({n})))")
        if shape == "mapped":
            body.append("pipe.task(name='each', map='items')(lambda items: None)")
        else:
            body.append("pipe.task(name='each', map='items')(lambda items: items + 1)")
            body.append("pipe.task(name='total')(lambda each: sum(each))")
    else:
        body.append("pipe.task(name='root')(noop)")
        body.append(f"names = [f't{{i}}' for i in range({n})]")
        body.append("for name in names:")
        body.append("    pipe.task(name=name, depends_on=['root'])(noop)")
        body.append("pipe.task(name='sink', depends_on=names)(noop)")
    path.write_text("\n".join(body) + "\n")
    return path


def run_measured(target: Path, home: Path, store: str | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one `python -m agent run` in a fresh process (RSS from wait4)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
    env["PYTHONPATH"] = str(ROOT)
    if store is not None:
        env["PIPEWARDEN_STORE"] = store
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", str(target), "--no-progress", "--home", str(home)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{target.name} failed ({proc.returncode}): {err.decode()[-2000:]}")
    if not (home / "traces.jsonl").read_text(encoding="utf-8").strip():
        raise SystemExit(f"{target.name}: no spans were written: not the default configuration")
    return wall, usage.ru_maxrss / 1024


def bare_python() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t0


def commit_cost(directory: str, synchronous: str, n: int = 2000) -> float:
    """Seconds per single-row INSERT + commit in WAL mode."""
    path = os.path.join(directory, f"commit-{synchronous}.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, task TEXT, status TEXT, at REAL)")
    for _ in range(100):  # warm-up
        conn.execute("INSERT INTO t (task, status, at) VALUES (?,?,?)", ("t", "running", 0.0))
    t0 = time.perf_counter()
    for i in range(n):
        conn.execute("INSERT INTO t (task, status, at) VALUES (?,?,?)", ("t", "running", float(i)))
    elapsed = (time.perf_counter() - t0) / n
    conn.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pg-sizes", type=int, nargs="+", default=[1000])
    ap.add_argument("--no-postgresql", action="store_true", help="Measure SQLite only.")
    a = ap.parse_args()

    per_task: dict[tuple[str, int], list[float]] = {}
    rss: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        files = {(shape, n): pipeline_file(work, shape, n) for shape in ("chain", "fanout") for n in a.sizes}
        files[("ints", 1000)] = pipeline_file(work, "ints", 1000)
        files[("frames", 100)] = pipeline_file(work, "frames", 100)
        for shape in ("mapped", "mapped_ints"):
            files[(shape, max(a.sizes))] = pipeline_file(work, shape, max(a.sizes))
        one = pipeline_file(work, "chain", 1)
        print("`python -m agent run FILE --no-progress --home NEW_HOME`, fresh process, default configuration")
        print(
            f"  {'round':>5} {'pipeline':<14} {'tasks':>6} {'wall s':>8} {'peak MiB':>9} {'us/task':>8}"
            f" {'wall / 1-task wall':>19}"
        )
        run_no = 0
        walls: dict[tuple[str, int], list[float]] = {("chain", 1): []}  # every wall, for the best-of summary
        for r in range(1, a.rounds + 1):
            py = bare_python()
            run_no += 1
            base, base_rss = run_measured(one, work / f"home{run_no}")
            walls[("chain", 1)].append(base)
            print(
                f"  {r:>5} {'chain':<14} {1:>6} {base:8.3f} {base_rss:9.1f} {'-':>8} {1.0:19.2f}"
                f"   (python -c pass: {py:.3f} s)"
            )
            for (shape, n), target in files.items():
                run_no += 1
                wall, peak = run_measured(target, work / f"home{run_no}")
                tasks = n + 2 if shape == "fanout" else n
                us = (wall - base) / (tasks if shape.startswith("mapped") else tasks - 1) * 1e6
                per_task.setdefault((shape, n), []).append(us)
                walls.setdefault((shape, n), []).append(wall)
                rss.setdefault((shape, n), []).append(peak)
                print(f"  {r:>5} {shape:<14} {tasks:>6} {wall:8.3f} {peak:9.1f} {us:8.1f} {wall / base:19.2f}")
        print(
            "per task added (us), every round; budget "
            f"{BUDGET_US:.0f} us for no-op tasks, and no higher at {max(a.sizes)} than at {min(a.sizes)}"
        )
        for (shape, n), values in per_task.items():
            if shape.startswith("mapped"):
                continue
            if shape == "frames":
                print(
                    f"  frames     100: {', '.join(f'{v:.0f}' for v in values)}  (a 10,000-row frame made, passed "
                    "and kept per task: real work, no budget)"
                )
                continue
            fast = max(values) <= BUDGET_US  # in every round, not in the best one
            small = max(rss[(shape, n)]) < RSS_BUDGET_MIB
            each = ", ".join(f"{v:.0f}" for v in values)
            print(
                f"  {shape:<7} {n:>6}: {each}  (median {statistics.median(values):.0f}, budget {BUDGET_US:.0f}: "
                f"{'ok' if fast else 'OVER'}; peak RSS max {max(rss[(shape, n)]):.0f} MiB, budget "
                f"{RSS_BUDGET_MIB:.0f}: {'ok' if small else 'OVER'})"
            )
        print("per item of a mapped task (us), every round, beside the per-task cost of the same work")
        for shape, twin in (("mapped", ("chain", max(a.sizes))), ("mapped_ints", ("ints", 1000))):  # same work
            values = per_task[(shape, max(a.sizes))]
            same = per_task[twin]
            print(
                f"  {shape:<11} {max(a.sizes):>6} items: {', '.join(f'{v:.0f}' for v in values)}"
                f"  (median {statistics.median(values):.0f})   per task, {twin[0]} {twin[1]}: "
                f"{', '.join(f'{v:.0f}' for v in same)}  (median {statistics.median(same):.0f}; "
                f"item / task {statistics.median(values) / statistics.median(same):.2f})"
            )
        normal = commit_cost(d, "NORMAL")
        full = commit_cost(d, "FULL", n=300)
        print("SQLite commit, WAL, one small INSERT (this process)")
        print(f"  synchronous=NORMAL (the store's default)  {normal * 1e6:8.1f} us")
        print(f"  synchronous=FULL   (fsync per commit)     {full * 1e6:8.1f} us")
        if not a.no_postgresql:
            postgresql(work, one, a.rounds, a.pg_sizes, walls)


def _cluster_module() -> object | None:
    """tests/pg_cluster.py, which starts the tests' throwaway clusters."""
    spec = importlib.util.spec_from_file_location("_bench_pg_cluster", ROOT / "tests" / "pg_cluster.py")
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


#: The two durability settings measured: the server's default, and asynchronous commit (named in the URL).
PG_MODES = {"synchronous_commit=on": {}, "synchronous_commit=off": {"options": "-csynchronous_commit%3Doff"}}


def best_per_task(walls: list[float], bases: list[float], tasks: int) -> float:
    """Microseconds a task adds, from the fastest run of each (the machine's noise only ever adds time)."""
    return (min(walls) - min(bases)) / (tasks - 1) * 1e6


def postgresql(
    work: Path, one: Path, rounds: int, sizes: list[int], sqlite: dict[tuple[str, int], list[float]]
) -> None:
    """The same runs with PIPEWARDEN_STORE at a throwaway local PostgreSQL cluster (a new database per run)."""
    pgc: Any = _cluster_module()
    bindir = pgc.find_bindir() if pgc is not None else None
    try:
        import psycopg
    except ImportError as exc:
        print(f"PostgreSQL: skipped, psycopg is not installed ({exc}); pip install -e '.[postgresql]'")
        return
    if bindir is None:
        print("PostgreSQL: skipped, no initdb (apt-get install postgresql)")
        return
    cluster = pgc.start_cluster(bindir, settings={})  # the server's defaults: fsync on, every commit flushed
    try:
        version = cluster.execute("SHOW server_version")[0][0]
        print(
            f"\nthe same with PIPEWARDEN_STORE=postgresql://...@127.0.0.1:{cluster.port}/<new database per run>"
            f" (PostgreSQL {version}, loopback, default server settings)"
        )
        print(
            f"  {'round':>5} {'commit':<23} {'pipeline':<8} {'tasks':>6} {'wall s':>8} {'peak MiB':>9} {'us/task':>8}"
        )
        names = (f"bench{i}" for i in itertools.count())
        files = {(shape, n): pipeline_file(work, shape, n) for shape in ("chain", "fanout") for n in sizes}
        per_task: dict[tuple[str, str, int], list[float]] = {}
        walls: dict[tuple[str, str, int], list[float]] = {}
        for r in range(1, rounds + 1):
            for mode, query in PG_MODES.items():
                cluster.create_database(db := next(names))
                base, base_rss = run_measured(one, work / f"pg-{db}", cluster.url(db, **query))
                walls.setdefault((mode, "chain", 1), []).append(base)
                print(f"  {r:>5} {mode:<23} {'chain':<8} {1:>6} {base:8.3f} {base_rss:9.1f} {'-':>8}")
                for (shape, n), target in files.items():
                    cluster.create_database(db := next(names))
                    wall, peak = run_measured(target, work / f"pg-{db}", cluster.url(db, **query))
                    tasks = n + 2 if shape == "fanout" else n
                    us = (wall - base) / (tasks - 1) * 1e6
                    per_task.setdefault((mode, shape, n), []).append(us)
                    walls.setdefault((mode, shape, n), []).append(wall)
                    print(f"  {r:>5} {mode:<23} {shape:<8} {tasks:>6} {wall:8.3f} {peak:9.1f} {us:8.1f}")
        print(
            "per task added (us) on PostgreSQL, each round against its own 1-task run; then the best of the rounds"
            " (fastest run - fastest 1-task run), beside SQLite's best; goal under 1,000 us on loopback"
        )
        for (mode, shape, n), values in per_task.items():
            tasks = n + 2 if shape == "fanout" else n
            best = best_per_task(walls[(mode, shape, n)], walls[(mode, "chain", 1)], tasks)
            lite = sqlite.get((shape, n))
            beside = f"{best_per_task(lite, sqlite[('chain', 1)], tasks):.0f}" if lite else "-"
            print(
                f"  {mode:<23} {shape:<7} {n:>6}: {', '.join(f'{v:.0f}' for v in values)};"
                f" best {best:.0f} ({'under' if best < 1000 else 'OVER'} the goal); SQLite best {beside}"
            )
        print("PostgreSQL commit, one small INSERT over loopback (this process, psycopg)")
        for mode, query in PG_MODES.items():
            cost = pg_commit_cost(psycopg, cluster.url("postgres", **query))
            print(f"  {mode:<23} {cost * 1e6:8.1f} us")
    finally:
        cluster.remove()


def pg_commit_cost(psycopg: Any, url: str, n: int = 300) -> float:
    """Seconds per single-row INSERT in autocommit over one connection."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commit (id bigserial PRIMARY KEY, at float8)")
        for _ in range(50):  # warm-up, and the statement prepared
            conn.execute("INSERT INTO bench_commit (at) VALUES (%s)", (0.0,))
        t0 = time.perf_counter()
        for i in range(n):
            conn.execute("INSERT INTO bench_commit (at) VALUES (%s)", (float(i),))
        return (time.perf_counter() - t0) / n


if __name__ == "__main__":
    main()
