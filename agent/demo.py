"""``pipewarden demo``: run the example orders ETL and show what pipewarden saw.

The example lives in ``examples/orders_etl.py`` (plain pandas functions with
``@monitor``). The demo runs it with the telemetry the environment configures
(by default: spans to ``<home>/traces.jsonl``, metrics to a node_exporter
textfile under ``<home>/metrics``), then prints the tasks, rows and check
results from the spans it produced, and where the metrics and traces went.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent import settings
from agent.errors import ConfigError
from agent.telemetry import Telemetry, set_telemetry
from exporters.files import make_private_dirs

__all__ = ["EXAMPLE", "run_demo"]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "orders_etl.py"


def _load_example(path: Path = EXAMPLE) -> ModuleType:
    if not path.is_file():
        raise FileNotFoundError(
            f"the demo pipeline {path} is missing; pipewarden demo runs from a clone "
            "of the repository (pip install -e .)"
        )
    spec = importlib.util.spec_from_file_location("pipewarden_example_orders_etl", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_demo(rows: int = 50_000, home: str | os.PathLike[str] | None = None, *, out: Any = None) -> int:
    """Run the example ETL; print the summary. Returns the exit code (0 ok, 1 the run failed)."""
    from rich.console import Console

    console = Console(file=out) if out is not None else Console()
    base = settings.home(home)
    env = dict(os.environ)
    try:
        make_private_dirs(base / "metrics")
        if not os.access(base, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable", str(base))
    except OSError as exc:
        blocker = next((p for p in (base, *base.parents) if p.exists()), base)
        if not blocker.is_dir():
            why = "is a file, not a directory" if blocker == base else f"cannot be created: {blocker} is a file"
        elif isinstance(exc, PermissionError):
            why = f"is not writable ({exc.filename or base})"
        else:
            why = f"cannot be used: {exc.strerror or exc}"
        raise ConfigError(
            f"state directory {base} {why}; set PIPEWARDEN_HOME (or --home) to a directory you can write",
            path=str(base),
        ) from None
    if settings.PIPEWARDEN_TEXTFILE_DIR not in env:
        env[settings.PIPEWARDEN_TEXTFILE_DIR] = str(base / "metrics")
    tel = Telemetry.from_env(env, home=base)
    spans = InMemorySpanExporter()
    tel.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    previous = set_telemetry(tel)
    example = _load_example()
    target = base / "demo" / "orders.parquet"
    failed: BaseException | None = None
    t0 = time.perf_counter()
    try:
        try:
            result = example.run(rows, target)
        except Exception as exc:  # the demo reports the pipeline's failure instead of a traceback
            failed = exc
        finally:
            elapsed = time.perf_counter() - t0
            tel.tracer_provider.force_flush()
            set_telemetry(previous)
        _print_summary(console, spans.get_finished_spans(), elapsed)
        if failed is not None:
            console.print(f"[bold red]run failed:[/] {type(failed).__name__}: {failed}")
        else:
            console.print(f"[bold green]run succeeded:[/] {len(result):,} orders written to {target}")
        _print_destinations(console, tel, env, base, example.PIPELINE)
    finally:
        tel.shutdown()
    return 1 if failed is not None else 0


def _print_summary(console: Any, spans: Any, elapsed: float) -> None:
    from rich.table import Table

    tasks = Table(title=f"pipeline run ({elapsed * 1e3:.0f} ms)", title_justify="left")
    for col in ("task", "result", "duration", "rows in", "rows out"):
        tasks.add_column(col, justify="right" if col.startswith(("rows", "dur")) else "left")
    checks = Table(title="data-quality checks", title_justify="left")
    for col in ("task", "check", "status", "observed", "limit"):
        checks.add_column(col, justify="right" if col in ("observed", "limit") else "left")
    notes: list[str] = []
    by_id = {s.context.span_id: s for s in spans}
    for s in sorted(spans, key=lambda s: s.start_time or 0):
        attrs = s.attributes or {}
        if s.name.startswith("RUN ") and "cicd.pipeline.task.name" in attrs:
            result = attrs.get("cicd.pipeline.task.run.result") or attrs.get("cicd.pipeline.result", "")
            style = "green" if result == "success" else "red"
            tasks.add_row(
                str(attrs["cicd.pipeline.task.name"]),
                f"[{style}]{result}[/]",
                f"{((s.end_time or 0) - (s.start_time or 0)) / 1e6:.1f} ms",
                _fmt(attrs.get("pipewarden.rows_in")),
                _fmt(attrs.get("pipewarden.rows_out")),
            )
        elif s.name.startswith("CHECK "):
            parent = by_id.get(s.parent.span_id) if s.parent else None
            task = (parent.attributes or {}).get("cicd.pipeline.task.name", "") if parent else ""
            status = str(attrs.get("pipewarden.check.status", ""))
            style = {"pass": "green", "warn": "yellow"}.get(status, "red")
            observed = attrs.get("pipewarden.check.observed")
            threshold = attrs.get("pipewarden.check.threshold")
            name = str(attrs.get("pipewarden.check.name", s.name[6:]))
            checks.add_row(str(task), name, f"[{style}]{status}[/]", _fmt(observed), _fmt(threshold))
            if status != "pass":
                notes.append(f"  [{style}]{status}[/] {task}: {attrs.get('pipewarden.check.message', name)}")
    console.print(tasks)
    console.print(checks)
    for note in notes:
        console.print(note, highlight=False)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    f = float(v)
    return f"{f:,.0f}" if f.is_integer() else f"{f:.4g}"


def _print_destinations(console: Any, tel: Telemetry, env: dict[str, str], base: Path, pipeline: str) -> None:
    from exporters.tracing import traces_exporter_names

    console.print("[bold]where it went[/]")
    for name in traces_exporter_names(env):
        where = {
            "jsonl": str(base / "traces.jsonl"),
            "console": "stderr",
            "otlp": env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        }
        console.print(f"  traces   {name}: {where.get(name, '')}")
    from exporters.prometheus import textfile_name

    for exporter in tel.outputs.exporters if tel.outputs is not None else ():
        if exporter.name == "textfile":
            console.print(f"  metrics  textfile: {exporter.directory / textfile_name(pipeline)}")
        elif exporter.name == "pushgateway":
            console.print(f"  metrics  pushgateway: {exporter.url}")
    if tel.server is not None:
        console.print(f"  metrics  scrape endpoint: {tel.server.url}")
    console.print(
        "  (set OTEL_EXPORTER_OTLP_ENDPOINT, PIPEWARDEN_PUSHGATEWAY_URL or PIPEWARDEN_METRICS_PORT "
        "to send them elsewhere)"
    )


if __name__ == "__main__":
    sys.exit(run_demo())
