"""The daemon under load: 100 pipelines on one-minute crons plus 10 file triggers.

Three measurements, each printed as it goes, then against its budget:

  simulated   the real Daemon class on a generated pipewarden.yml (no-op tasks), stepped
              with ``tick(now)`` over an hour of simulated minutes, without the HTTP
              server or the config watcher. The clock jumps to each minute, then flows in
              real time, so the times the store records are real delays. Every 10
              simulated minutes: RSS, current and peak (budget: under 80 MiB and flat), the
              tick that claims the minute's 100 runs and an idle tick. Then each run's
              tick lateness: when its QUEUED record was written, after its minute (budget:
              p99 under 100 ms; Airflow's and Prefect's schedulers work on multi-second
              loops), and its start lateness, which includes waiting for one of
              agent.max_runs run slots.
  real clock  ``pipewarden daemon`` as a process for a few minutes, with files dropped in
              the 10 watched directories every minute (and moved away once processed).
              From its run store: the wake lateness (what
              pipewarden_scheduler_lateness_seconds observes), the tick lateness (all of a
              minute's runs are QUEUED before its first run starts), the start lateness,
              and a file run's lateness after the file became stable. Idle CPU of the
              process between minute boundaries, from /proc/PID/stat (budget: under 1% of
              a core), its exit code on SIGTERM, and ``GET /metrics``.
  /metrics    ``generate_latest`` on a Telemetry holding 10,000 series or more.

The machine's other work shows in wall-clock figures; the CPU time of a tick does not
depend on it, and is printed beside them.

Usage: python bench/daemon.py [--sim-minutes 60] [--real-seconds 150] [--skip-sim] [--skip-real]
Short run: python bench/daemon.py --sim-minutes 10 --real-seconds 75
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LATENESS_BUDGET_MS = 100.0
IDLE_CPU_BUDGET = 0.01  # of one core
RSS_BUDGET_MIB = 80.0
RSS_FLAT = 0.02  # flat: the second half of the simulated time adds less than 2% to the RSS
METRIC_SERIES = 10_000
STABLE_SECONDS = 1.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the generated configuration ----------------------------------------------------------------


def write_config(root: Path, crons: int, files: int) -> Path:
    """``crons`` pipelines on ``* * * * *`` and ``files`` file-triggered ones, each extract -> load (no-ops)."""
    (root / "pipes.py").write_text(
        "from agent.pipeline import Pipeline\n\n\n"
        "def noop() -> None:\n    return None\n\n\n"
        f"for name in [*(f'cron_{{i:03d}}' for i in range({crons})), *(f'files_{{i:02d}}' for i in range({files}))]:\n"
        "    pipe = Pipeline(name)\n"
        "    pipe.task(name='extract')(noop)\n"
        "    pipe.task(name='load', depends_on=['extract'])(noop)\n"
        "    globals()[name] = pipe\n"
    )
    lines = ["agent:", "  listen: 127.0.0.1:0", "  grace_period: 5s", "pipelines:"]
    for i in range(crons):
        lines += [f"  - target: pipes.py:cron_{i:03d}", '    schedule: "* * * * *"']
    for i in range(files):
        (root / "incoming" / f"f{i:02d}").mkdir(parents=True, exist_ok=True)
        lines += [
            f"  - target: pipes.py:files_{i:02d}",
            f"    files: {{directory: incoming/f{i:02d}, pattern: '*.csv', stable_seconds: {STABLE_SECONDS}s}}",
        ]
    path = root / "pipewarden.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def drop_files(root: Path, files: int, tag: str) -> dict[str, float]:
    """One small CSV in each watched directory; returns {path: Unix time it became stable}."""
    out = {}
    for i in range(files):
        path = root / "incoming" / f"f{i:02d}" / f"{tag}.csv"
        path.write_text("id,amount\n1,2.5\n")
        out[str(path)] = path.stat().st_mtime + STABLE_SECONDS
    return out


# --- numbers ------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def rss_mib() -> tuple[float, float]:
    """(current RSS from /proc/self/status, peak RSS from getrusage), MiB."""
    current = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            current = int(line.split()[1]) / 1024
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def sqlite_inserts(path: Path, n: int, rounds: int = 20) -> float:
    """The baseline of a claiming tick: CPU seconds of ``n`` one-row commits with the run store's settings (median)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, pipeline TEXT, idempotency_key TEXT UNIQUE, at REAL)")
    times = []
    for r in range(rounds):
        c0 = time.thread_time()
        for i in range(n):
            db.execute("INSERT INTO runs VALUES (?, ?, ?, ?)", (f"{r}-{i}", f"p{i}", f"p{i}@{r}", time.time()))
        times.append(time.thread_time() - c0)
    db.close()
    return pct(times, 50)


def run_rows(home: Path) -> list[dict[str, Any]]:
    """Every run in the store under ``home``, read with a connection of its own (no records kept in the daemon)."""
    db = sqlite3.connect(home / "pipewarden.db")
    db.row_factory = sqlite3.Row
    try:
        return [
            dict(r)
            for r in db.execute("SELECT status, trigger, created_at, started_at, scheduled_for, params FROM runs")
        ]
    finally:
        db.close()


def count_runs(home: Path) -> int:
    db = sqlite3.connect(home / "pipewarden.db")
    try:
        return int(db.execute("SELECT count(*) FROM runs").fetchone()[0])
    finally:
        db.close()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# --- simulated clock ----------------------------------------------------------------------------


class SteppedClock:
    """Unix time that jumps to each step, then flows in real time until the next one."""

    def __init__(self, start: float) -> None:
        self.base = start
        self.real = time.perf_counter()
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.base + (time.perf_counter() - self.real)

    def jump(self, to: float) -> None:
        with self.lock:
            self.base, self.real = to, time.perf_counter()


def simulated(minutes: int, crons: int, files: int, work: Path) -> dict[str, Any]:
    from agent.daemon import Daemon

    root = work / "sim"
    root.mkdir()
    config = write_config(root, crons, files)
    start = (dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)).timestamp()
    clock = SteppedClock(start - 30)
    daemon = Daemon(config, home=root / "home", env={}, clock=clock, serve=False, watch_config=False)
    daemon.start()
    busy = lambda: len(daemon._pending) + len(daemon._running())  # noqa: E731 - the bench reads the run slots
    claimed: list[float] = []  # for each scheduled run: when its QUEUED record was written, after its minute
    create = daemon.store.create_run

    def timed_create(**kw: Any) -> bool:
        made = bool(create(**kw))
        if made and kw.get("scheduled_for") is not None:
            claimed.append(clock() - kw["scheduled_for"])
        return made

    daemon.store.create_run = timed_create

    def drain(step: Callable[[], float]) -> None:
        while busy():
            daemon.wake.wait(0.5)
            daemon.wake.clear()
            daemon.tick(step())

    print(
        f"\nsimulated clock: {crons} one-minute crons + {files} file triggers, {minutes} minutes, "
        f"max_runs {daemon.loaded.agent.max_runs}"
    )
    print(
        f"{'minute':>6} {'runs':>6} {'RSS MiB':>8} {'peak MiB':>8} {'due tick ms':>11} {'idle tick ms':>12} "
        f"{'idle CPU ms/tick':>16} {'drain s':>7}"
    )
    daemon.tick(clock())  # first sight of every schedule: nothing is due before start
    rss: list[tuple[int, float, float]] = []
    due_ticks: list[float] = []
    due_cpu: list[float] = []  # CPU time of the ticking thread: what the tick costs, whatever the machine's load
    idle_ticks: list[float] = []
    idle_cpu: list[float] = []
    for minute in range(minutes):
        at = start + 60 * minute
        clock.jump(at)
        t0, c0 = time.perf_counter(), time.thread_time()
        daemon.tick(clock())
        due_ticks.append(time.perf_counter() - t0)
        due_cpu.append(time.thread_time() - c0)
        d0 = time.perf_counter()
        drain(clock)
        drain_s = time.perf_counter() - d0
        if files:
            clock.jump(at + 10)
            dropped = drop_files(root, files, f"m{minute:03d}")
            for second in range(10, 20):  # watchdog reports the files; they are stable one second later
                clock.jump(at + second)
                daemon.tick(clock())
                time.sleep(0.02)
            drain(clock)
            for path in dropped:  # processed: moved away, as a pipeline archiving its input does
                Path(path).unlink()
        for second in (30, 40, 50):  # idle ticks: nothing is due
            clock.jump(at + second)
            c0, t0 = time.process_time(), time.perf_counter()
            daemon.tick(clock())
            idle_ticks.append(time.perf_counter() - t0)
            idle_cpu.append(time.process_time() - c0)
        if (minute + 1) % 10 == 0 or minute + 1 == minutes:
            current, peak = rss_mib()
            rss.append((minute + 1, current, peak))
            done = count_runs(root / "home")
            print(
                f"{minute + 1:>6} {done:>6} {current:>8.1f} {peak:>8.1f} {1000 * due_ticks[-1]:>11.1f} "
                f"{1000 * statistics.median(idle_ticks[-3:]):>12.2f} {1000 * statistics.median(idle_cpu[-3:]):>16.2f}"
                f" {drain_s:>7.2f}"
            )
    daemon.stop(grace=5)
    runs = run_rows(root / "home")
    cron = [r for r in runs if r["trigger"] == "cron"]
    start_late = [1000 * (r["started_at"] - r["scheduled_for"]) for r in cron if r["started_at"]]
    statuses = {r["status"] for r in runs}
    print(
        f"runs: {len(cron)} cron + {len(runs) - len(cron)} file; statuses {sorted(statuses)}; "
        f"start lateness (queue for a run slot) p50 {pct(start_late, 50):.0f} ms, p99 {pct(start_late, 99):.0f} ms"
    )
    print(
        f"tick claiming {crons} runs: p50 {1000 * pct(due_ticks, 50):.1f} ms, p99 {1000 * pct(due_ticks, 99):.1f} ms"
        f" wall, p50 {1000 * pct(due_cpu, 50):.1f} ms, p99 {1000 * pct(due_cpu, 99):.1f} ms CPU of its thread;"
        f" idle tick: p50 {1000 * pct(idle_ticks, 50):.2f} ms wall, {1000 * pct(idle_cpu, 50):.2f} ms CPU"
    )
    late = [1000 * c for c in claimed]
    print(
        f"tick lateness (QUEUED record written - scheduled minute): p50 {pct(late, 50):.1f} ms, "
        f"p99 {pct(late, 99):.1f} ms, max {max(late):.1f} ms"
    )
    base = sqlite_inserts(work / "baseline.db", crons)
    print(
        f"baseline: {crons} inserts into SQLite (WAL, synchronous NORMAL), one commit each: {1000 * base:.1f} ms "
        f"CPU; the tick claiming {crons} runs costs {pct(due_cpu, 50) / base:.1f}x that"
    )
    return {
        "rss": rss,
        "runs": len(runs),
        "claim_late": late,
        "expected": minutes * (crons + files),
        "statuses": statuses,
        "idle_cpu_per_tick": pct(idle_cpu, 50),
    }


# --- real clock ---------------------------------------------------------------------------------


def real(seconds: float, crons: int, files: int, work: Path) -> dict[str, Any]:
    root = work / "real"
    root.mkdir()
    config = write_config(root, crons, files)
    home = root / "home"
    log = root / "daemon.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
    env["PYTHONPATH"] = str(ROOT)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "daemon", "--config", str(config), "--home", str(home)],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = ""
    deadline = time.monotonic() + 60
    while not url:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the daemon did not start:\n{log.read_text()}")
        m = re.search(r"serving (http://\S+)", log.read_text())
        url = m.group(1) if m else ""
        time.sleep(0.1)
    began = time.time()
    print(
        f"\nreal clock: pipewarden daemon (pid {proc.pid}) for {seconds:.0f} s at {url}; "
        "CPU over idle windows (second 20 to 58 of each minute)"
    )
    stable: dict[str, float] = {}
    windows: list[float] = []
    try:
        while time.time() < began + seconds:
            now = time.time()
            second = now % 60
            if 10 <= second < 11 and not any(f"/m{int(now // 60)}.csv" in p for p in stable):
                stable.update(drop_files(root, files, f"m{int(now // 60)}"))
            if 18 <= second < 19:  # processed by now: moved away, as a pipeline archiving its input does
                for path in stable:
                    Path(path).unlink(missing_ok=True)
            if 20 <= second < 21 and now + 38 < began + seconds + 1:
                c0, w0 = cpu_seconds(proc.pid), time.monotonic()
                time.sleep(38)
                share = (cpu_seconds(proc.pid) - c0) / (time.monotonic() - w0)
                windows.append(share)
                print(f"  idle window ending {dt.datetime.now(dt.UTC):%H:%M:%S}: {100 * share:.2f}% of a core")
                continue
            time.sleep(0.2)
        gets = []
        text = b""
        for _ in range(10):
            t0 = time.perf_counter()
            with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
                text = resp.read()
            gets.append(time.perf_counter() - t0)
        series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
        hist = {
            m.group(1): float(m.group(2))
            for m in re.finditer(rb"^pipewarden_scheduler_lateness_seconds_(count|sum) (\S+)$", text, re.M)
        }
        total_cpu = cpu_seconds(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    wall = time.time() - began
    wake_late, start_late, file_late = [], [], []
    first_start: dict[float, float] = {}  # scheduled minute -> the first start of its runs
    for row in run_rows(home):
        trigger, created, started = row["trigger"], row["created_at"], row["started_at"]
        scheduled = row["scheduled_for"]
        if trigger == "cron" and scheduled is not None:
            wake_late.append(1000 * (created - scheduled))
            if started is not None:
                start_late.append(1000 * (started - scheduled))
                first_start[scheduled] = min(first_start.get(scheduled, started), started)
        elif trigger == "file":
            path = json.loads(row["params"] or "{}").get("path", "")
            if path in stable:
                file_late.append(1000 * (created - stable[path]))
    # The tick records every run of the minute QUEUED before it starts the first: the first start bounds
    # when the last run of the minute was claimed.
    minutes = {at: 1000 * (first - at) for at, first in sorted(first_start.items())}
    tick_late = list(minutes.values())
    print(
        f"runs: {len(wake_late)} cron, {len(file_late)} file; daemon exit code {code}; "
        f"CPU {total_cpu:.1f} s over {wall:.0f} s ({100 * total_cpu / wall:.1f}% of a core, runs included)"
    )
    if wake_late:
        print(
            f"wake lateness (the tick's time - scheduled minute, what pipewarden_scheduler_lateness_seconds sees): "
            f"p50 {pct(wake_late, 50):.1f} ms, p99 {pct(wake_late, 99):.1f} ms, max {max(wake_late):.1f} ms"
        )
        print(
            "tick lateness (every run of the minute recorded QUEUED by its first start): "
            + ", ".join(f"{dt.datetime.fromtimestamp(at, dt.UTC):%H:%M} {late:.1f} ms" for at, late in minutes.items())
        )
        print(
            f"start lateness (run started - scheduled minute): p50 {pct(start_late, 50):.1f} ms, "
            f"p99 {pct(start_late, 99):.1f} ms, max {max(start_late):.1f} ms"
        )
    if file_late:
        print(
            f"file lateness (QUEUED record - file stable): p50 {pct(file_late, 50):.1f} ms, "
            f"p99 {pct(file_late, 99):.1f} ms"
        )
    if hist.get(b"count"):
        print(
            f"the daemon's pipewarden_scheduler_lateness_seconds: {hist[b'count']:.0f} observations, "
            f"mean {1000 * hist[b'sum'] / hist[b'count']:.1f} ms"
        )
    print(f"GET /metrics ({series} series): p50 {1000 * pct(gets, 50):.1f} ms, max {1000 * max(gets):.1f} ms")
    return {"tick_late": tick_late, "windows": windows, "code": code}


# --- /metrics with 10,000 series ------------------------------------------------------------------


def metrics_render(repeats: int) -> dict[str, Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import generate_latest

    from agent.telemetry import Telemetry
    from exporters.metrics import Metrics

    tel = Telemetry(metrics=Metrics(), tracer_provider=TracerProvider())

    def series() -> int:
        return sum(len(m.samples) for m in tel.metrics.registry.collect())

    pipelines = 0
    while series() < METRIC_SERIES:
        name = f"pipeline_{pipelines:04d}"
        for task in ("extract", "transform", "check", "load"):
            with tel.pipeline_scope(name, run_id=f"{name}-{task}"), tel.task_scope(name, task) as scope:
                scope.rows_out(1000)
        pipelines += 1
    count = series()
    times = []
    size = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        size = len(generate_latest(tel.metrics.registry))
        times.append(time.perf_counter() - t0)
    print(
        f"\n/metrics: {count} series ({pipelines} pipelines x 4 tasks), {size / 1024:.0f} KiB; generate_latest "
        + " ".join(f"{1000 * t:.0f}" for t in times)
        + " ms"
    )
    base = plain_registry_render(tel.metrics.registry, repeats)
    print(
        f"  p50 {1000 * pct(times, 50):.1f} ms, {1e6 * pct(times, 50) / count:.2f} us a series; the same samples "
        f"from one plain prometheus_client collector: {1000 * base:.1f} ms (ratio {pct(times, 50) / base:.2f})"
    )
    return {"p50": pct(times, 50), "series": count, "ratio": pct(times, 50) / base}


def plain_registry_render(registry: Any, repeats: int) -> float:
    """The baseline: generate_latest of a registry whose one collector yields the same families, already built."""
    from prometheus_client import CollectorRegistry, generate_latest

    families = list(registry.collect())

    class Fixed:
        def collect(self) -> list[Any]:
            return families

    plain = CollectorRegistry(auto_describe=False)
    plain.register(Fixed())  # type: ignore[arg-type]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        generate_latest(plain)
        times.append(time.perf_counter() - t0)
    return pct(times, 50)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim-minutes", type=int, default=60, help="simulated minutes (default an hour)")
    ap.add_argument("--real-seconds", type=float, default=150, help="how long the real daemon runs")
    ap.add_argument("--pipelines", type=int, default=100, help="one-minute cron pipelines")
    ap.add_argument("--file-pipelines", type=int, default=10, help="file-triggered pipelines")
    ap.add_argument("--metrics-repeats", type=int, default=10)
    ap.add_argument("--skip-sim", action="store_true")
    ap.add_argument("--skip-real", action="store_true")
    args = ap.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    verdicts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pipewarden-bench-daemon-") as tmp:
        work = Path(tmp)
        if not args.skip_sim:
            sim = simulated(args.sim_minutes, args.pipelines, args.file_pipelines, work)
            rss = sim["rss"]
            first, last = rss[0][1], rss[-1][1]
            half_minute, half = min(rss, key=lambda r: abs(r[0] - args.sim_minutes / 2))[:2]
            ok = last < RSS_BUDGET_MIB and last - half < RSS_FLAT * last
            verdicts.append(
                f"RSS after {args.sim_minutes} simulated minutes: {last:.1f} MiB (minute {rss[0][0]}: {first:.1f}, "
                f"minute {half_minute}: {half:.1f}; budget under {RSS_BUDGET_MIB:.0f} MiB, and the second half adding "
                f"less than {100 * RSS_FLAT:.0f}%: {last - half:+.1f} MiB): {verdict(ok)}"
            )
            p99 = pct(sim["claim_late"], 99)
            verdicts.append(
                f"simulated tick lateness (each run's QUEUED record - its minute) p99 {p99:.1f} ms (budget "
                f"under {LATENESS_BUDGET_MS:.0f} ms): {verdict(p99 < LATENESS_BUDGET_MS)}"
            )
            ok = sim["runs"] == sim["expected"] and sim["statuses"] == {"success"}
            verdicts.append(
                f"simulated runs: {sim['runs']} of {sim['expected']} expected, all successful: {verdict(ok)}"
            )
        if not args.skip_real:
            rl = real(args.real_seconds, args.pipelines, args.file_pipelines, work)
            if rl["tick_late"]:
                p99 = pct(rl["tick_late"], 99)
                verdicts.append(
                    f"real-clock tick lateness (last QUEUED record of a minute) p99 {p99:.1f} ms over "
                    f"{len(rl['tick_late'])} minutes (budget under {LATENESS_BUDGET_MS:.0f} ms): "
                    f"{verdict(p99 < LATENESS_BUDGET_MS)}"
                )
            if rl["windows"]:
                worst = max(rl["windows"])
                verdicts.append(
                    f"idle CPU, worst window {100 * worst:.2f}% of a core (budget under "
                    f"{100 * IDLE_CPU_BUDGET:.0f}%): {verdict(worst < IDLE_CPU_BUDGET)}"
                )
            verdicts.append(f"daemon exit code on SIGTERM: {rl['code']}: {verdict(rl['code'] == 0)}")
    m = metrics_render(args.metrics_repeats)
    verdicts.append(
        f"/metrics render with {m['series']} series: {1000 * m['p50']:.1f} ms, {m['ratio']:.2f}x the formatting of "
        "the same samples alone (no budget set)"
    )
    print("\nbudgets")
    for line in verdicts:
        print("  " + line)


if __name__ == "__main__":
    main()
