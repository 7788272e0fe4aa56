"""What `pipewarden run --executor dask` costs per task, beside the process executor: fresh process, every run printed.

Each round runs, each in a fresh process (``python -m agent run FILE --no-progress
--home NEW_DIR``, default configuration), a pipeline file of one no-op task (the
baseline) and of ``--tasks`` no-op tasks, once as a chain (each task waits for the one
before: the latency of one task) and once as a fan-out (all independent: throughput),
with each executor:

  threads      the default, for reference
  processes    --executor processes --max-workers 2: a pool of 2 worker processes
  dask         --executor dask --address A: a `dask scheduler` and `dask worker --nworkers 2
               --nthreads 1` on loopback, started once by this bench (their start is not counted)
  dask-local   --executor dask: the run starts and stops its own LocalCluster of worker processes
               (its start shows in the 1-task wall; LocalCluster sizes it from the CPU count)

and prints:

  wall          the whole process, from exec to exit (with dask-local: the cluster's start and stop)
  run s         the run's own duration as the run store has it (``--json``): from its start to its
                end, without the interpreter's or the local cluster's start and stop
  ms/task       (run s - run s of the 1-task pipeline, same executor, same round) / (tasks - 1)
  - processes   ms/task minus the process executor's ms/task of the same shape in the same round
                (a ratio would mislead: the process executor's ms/task is near zero, within the noise)

Then, in this process, Dask's own floor on the same cluster: ``client.submit(f).result()``
of a no-op, one after the other (what a chain of tasks cannot go below), and pipewarden's
``DaskExecutor.submit(...).result()`` of the same no-op task, to show what it adds.

Usage: python bench/dask_executor.py [--tasks 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXECUTORS = ("threads", "processes", "dask", "dask-local")


def pipeline_file(directory: Path, shape: str, n: int) -> Path:
    """``n`` no-op tasks: a chain, or a fan-out of independent tasks."""
    path = directory / f"{shape}_{n}.py"
    body = [
        "from agent import Pipeline",
        f"pipe = Pipeline('bench_dask_{shape}_{n}')",
        "def noop():",
        "    return None",
        f"for i in range({n}):",
        "    pipe.task(name=f't{i}', depends_on=[f't{i - 1}'] if i else ())(noop)"
        if shape == "chain"
        else "    pipe.task(name=f't{i}')(noop)",
    ]
    path.write_text("\n".join(body) + "\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_", "DASK_"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


def start_cluster(workdir: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """A `dask scheduler` (allowed-failures 0, as docs/orchestrator.md says) and 2 single-thread workers."""
    from distributed import Client

    env = {**environment(), "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = (workdir / "cluster.log").open("ab")
    dask = [sys.executable, "-m", "dask"]
    procs = [
        subprocess.Popen(
            [
                *dask,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-dashboard",
                "--dashboard-address",
                f"127.0.0.1:{free_port()}",
            ],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ]
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or procs[0].poll() is not None:
                raise SystemExit(f"dask scheduler did not start; see {workdir / 'cluster.log'}") from None
            time.sleep(0.1)
    procs.append(
        subprocess.Popen(
            [*dask, "worker", address, "--nworkers", "2", "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    )
    with Client(address, timeout=30, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
    return address, procs


def run_measured(target: Path, home: Path, executor: str, address: str) -> tuple[float, float]:
    """(wall seconds of one `python -m agent run --json` in a fresh process, the run's recorded duration)."""
    argv = [sys.executable, "-m", "agent", "run", str(target), "--no-progress", "--json", "--home", str(home)]
    if executor == "processes":
        argv += ["--executor", "processes", "--max-workers", "2"]
    elif executor == "dask":
        argv += ["--executor", "dask", "--address", address]
    elif executor == "dask-local":
        argv += ["--executor", "dask"]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=environment(), cwd=home.parent, capture_output=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{target.name} with {executor} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    record = json.loads(proc.stdout)
    if record["status"] != "success":
        raise SystemExit(f"{target.name} with {executor}: run {record['status']}: {record['error']}")
    return wall, float(record["duration"])


def floor(address: str, n: int = 300) -> tuple[float, float]:
    """(Dask's own ms per sequential no-op task, pipewarden's DaskExecutor ms for the same) on the cluster."""
    from agent.dask_executor import DaskExecutor
    from agent.executors import measured

    def noop() -> None:
        return None

    ex = DaskExecutor(address)
    try:
        client = ex.client
        results = []
        for call in (lambda: client.submit(noop, pure=False).result(), lambda: ex.submit(measured, noop, {}).result()):
            for _ in range(30):
                call()
            t0 = time.perf_counter()
            for _ in range(n):
                call()
            results.append((time.perf_counter() - t0) / n * 1e3)
        return results[0], results[1]
    finally:
        ex.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if not _has_distributed():
        raise SystemExit("needs dask.distributed: pip install 'pipewarden[dask]'")

    per_task: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        address, cluster = start_cluster(work)
        try:
            files = {shape: pipeline_file(work, shape, a.tasks) for shape in ("chain", "fanout")}
            one = pipeline_file(work, "chain", 1)
            print(
                f"`python -m agent run FILE --no-progress --home NEW_HOME [--executor ...]`, fresh process; "
                f"{os.cpu_count()} CPUs; {a.tasks} no-op tasks; dask: 2 workers x 1 thread at {address}"
            )
            print(
                f"  {'round':>5} {'executor':<11} {'pipeline':<8} {'tasks':>6} {'wall s':>8} {'run s':>8}"
                f" {'ms/task':>8} {'- processes':>12}"
            )
            run_no = 0
            for r in range(1, a.rounds + 1):
                base: dict[str, float] = {}
                per: dict[tuple[str, str], float] = {}
                for executor in EXECUTORS:
                    run_no += 1
                    wall, base[executor] = run_measured(one, work / f"home{run_no}", executor, address)
                    print(
                        f"  {r:>5} {executor:<11} {'chain':<8} {1:>6} {wall:8.3f} {base[executor]:8.3f}"
                        f" {'-':>8} {'-':>12}"
                    )
                    for shape, target in files.items():
                        run_no += 1
                        wall, took = run_measured(target, work / f"home{run_no}", executor, address)
                        ms = (took - base[executor]) / (a.tasks - 1) * 1e3
                        per[(executor, shape)] = ms
                        per_task.setdefault((executor, shape), []).append(ms)
                        versus = per.get(("processes", shape))
                        shown = (
                            f"{ms - versus:+12.2f}" if versus is not None and executor != "processes" else f"{'-':>12}"
                        )
                        print(
                            f"  {r:>5} {executor:<11} {shape:<8} {a.tasks:>6} {wall:8.3f} {took:8.3f} {ms:8.2f} {shown}"
                        )
            print("\nmedian ms/task over the rounds:")
            for (executor, shape), values in per_task.items():
                print(
                    f"  {executor:<11} {shape:<8} {statistics.median(values):8.2f}   runs: "
                    + ", ".join(f"{v:.2f}" for v in values)
                )
            dask_ms, ours_ms = floor(address)
            print(f"\nin this process, {address}, one after the other:")
            print(f"  client.submit(noop).result()                 {dask_ms:6.2f} ms   (Dask's own floor)")
            print(
                f"  DaskExecutor.submit(measured, noop).result() {ours_ms:6.2f} ms   "
                f"({ours_ms / dask_ms:.2f} x Dask's floor)"
            )
        finally:
            for proc in reversed(cluster):
                proc.terminate()
            for proc in reversed(cluster):
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _has_distributed() -> bool:
    import importlib.util

    return importlib.util.find_spec("distributed") is not None


if __name__ == "__main__":
    main()
