"""Telemetry: scopes turn runs into spans and metrics, checks into gauges; exports never raise."""

from __future__ import annotations

import doctest
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

import agent.telemetry
from agent.errors import TaskTimeoutError
from agent.monitor import monitor
from agent.records import RunStatus, otel_result
from agent.telemetry import Scope, Telemetry, current_scope
from checks.result import CheckResult, Kind, Status
from exporters.metrics import Metrics


@pytest.fixture
def tel(spans: InMemorySpanExporter) -> Telemetry:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return Telemetry(metrics=Metrics(), tracer_provider=provider, clock=lambda: 1_700_000_000.0)


def sample(tel: Telemetry, name: str, **labels: str) -> float | None:
    return tel.metrics.sample(name, **labels)


def named(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = [s for s in spans.get_finished_spans() if s.name == name]
    return span


class BoomError(Exception):
    pass


# --- every final status -----------------------------------------------------------------------


def _ran(tel: Telemetry, action: Callable[[Scope], None]) -> None:
    with tel.pipeline_scope("orders", run_id="r1"), tel.task_scope("orders", "load") as task:
        action(task)


def _raise(exc: BaseException) -> Callable[[Scope], None]:
    def action(scope: Scope) -> None:
        raise exc

    return action


def _set(status: str) -> Callable[[Scope], None]:
    return lambda scope: scope.set_status(status, reason=f"told to be {status}")


# status, how the runner produces it, semantic-convention result, whether the task ran
STATUSES: list[tuple[str, str, str]] = [
    ("success", "ran", "success"),
    ("failed", "raised", "failure"),
    ("timed_out", "raised", "timeout"),
    ("skipped", "never ran", "skip"),
    ("upstream_failed", "never ran", "skip"),
    ("cancelled", "never ran", "cancellation"),
    ("interrupted", "never ran", "error"),
]


@pytest.mark.parametrize(("status", "route", "result"), STATUSES, ids=[s[0] for s in STATUSES])
def test_every_task_status_gives_its_span_and_count(
    tel: Telemetry, spans: InMemorySpanExporter, status: str, route: str, result: str
) -> None:
    """Each final task status counts one run under its label and sets the semconv task result."""
    errors = {"failed": BoomError("boom"), "timed_out": TaskTimeoutError("slow", task="load")}
    with tel.pipeline_scope("orders", run_id="r1"):
        if route == "ran":
            with tel.task_scope("orders", "load"):
                pass
        elif route == "raised":
            with pytest.raises(type(errors[status])), tel.task_scope("orders", "load"):
                raise errors[status]
        else:
            tel.task_state("orders", "load", status, reason="why", run_id="r1")

    assert sample(tel, "pipewarden_task_runs_total", pipeline="orders", task="load", status=status) == 1
    # success and failed are exported at 0 (rates divide by them); other statuses appear when they happen.
    others = [s for s, _, _ in STATUSES if s != status]
    assert all(
        sample(tel, "pipewarden_task_runs_total", pipeline="orders", task="load", status=o)
        == (0 if o in ("success", "failed") else None)
        for o in others
    )
    duration_count = sample(tel, "pipewarden_task_duration_seconds_count", pipeline="orders", task="load")
    # A task that never ran has no duration: the histogram observes nothing.
    assert duration_count == (0 if route == "never ran" else 1)

    task, root = named(spans, "RUN load"), named(spans, "RUN orders")
    assert task.parent is not None and task.parent.span_id == root.context.span_id
    assert task.kind is SpanKind.INTERNAL
    attrs = dict(task.attributes or {})
    assert attrs["cicd.pipeline.task.run.result"] == result
    assert (attrs["cicd.pipeline.name"], attrs["cicd.pipeline.task.name"]) == ("orders", "load")
    assert attrs["cicd.pipeline.run.id"] == "r1"
    if route == "never ran":
        assert (attrs["pipewarden.status"], attrs["pipewarden.reason"]) == (status, "why")
    # Failures are span errors (failed, timed out, interrupted); skips and cancellations are not.
    assert (task.status.status_code is StatusCode.ERROR) == (status in ("failed", "timed_out", "interrupted"))


@pytest.mark.parametrize(("status", "route", "result"), STATUSES, ids=[s[0] for s in STATUSES])
def test_every_pipeline_status_gives_its_span_and_count(
    tel: Telemetry, spans: InMemorySpanExporter, status: str, route: str, result: str
) -> None:
    """A pipeline run ending in each status counts under it and sets cicd.pipeline.result."""
    with tel.pipeline_scope("orders", run_id="r1") as run:
        if status != "success":
            run.set_status(status, reason=f"run was {status}")

    assert sample(tel, "pipewarden_pipeline_runs_total", pipeline="orders", status=status) == 1
    assert sample(tel, "pipewarden_pipeline_duration_seconds_count", pipeline="orders") == 1
    root = named(spans, "RUN orders")
    assert root.kind is SpanKind.SERVER
    assert dict(root.attributes or {})["cicd.pipeline.result"] == result
    up = {"success": 1.0, "failed": 0.0, "timed_out": 0.0, "interrupted": 0.0}.get(status)
    assert sample(tel, "pipewarden_pipeline_up", pipeline="orders") == up


def test_interrupted_task_scope_is_a_failed_run_of_result_error(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """A task scope set to interrupted counts under interrupted with result error and an ERROR span."""
    _ran(tel, _set("interrupted"))
    assert sample(tel, "pipewarden_task_runs_total", pipeline="orders", task="load", status="interrupted") == 1
    task = named(spans, "RUN load")
    assert dict(task.attributes or {})["cicd.pipeline.task.run.result"] == "error"
    assert task.status.status_code is StatusCode.ERROR
    assert task.status.description == "told to be interrupted"


@pytest.mark.parametrize("status", list(RunStatus))
def test_otel_result_maps_every_status(status: RunStatus) -> None:
    """Every status maps to a CI/CD semconv result; non-final states map to error."""
    expected = {
        "success": "success",
        "failed": "failure",
        "timed_out": "timeout",
        "skipped": "skip",
        "upstream_failed": "skip",
        "cancelled": "cancellation",
        "interrupted": "error",
        "queued": "error",
        "pending": "error",
        "running": "error",
        "waiting": "error",
        "cached": "success",
    }[status.value]
    assert otel_result(status) == otel_result(status.value) == expected


def test_task_state_rejects_nothing_and_never_raises(tel: Telemetry, caplog: pytest.LogCaptureFixture) -> None:
    """An unknown status is logged, not raised: bookkeeping never breaks the caller."""
    with caplog.at_level(logging.ERROR, logger="pipewarden.telemetry"):
        tel.task_state("orders", "load", "exploded", run_id="r1")
    assert any("orders.load" in r.getMessage() for r in caplog.records)


def test_retry_attempt_is_counted_and_on_the_span(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """A second attempt increments the retry counter and carries its attempt number."""
    for attempt in (1, 2):
        with tel.task_scope("orders", "load", attempt=attempt):
            pass
    assert sample(tel, "pipewarden_task_retries_total", pipeline="orders", task="load") == 1
    first, second = spans.get_finished_spans()
    assert "pipewarden.task.attempt" not in (first.attributes or {})
    assert dict(second.attributes or {})["pipewarden.task.attempt"] == 2


# --- checks ------------------------------------------------------------------------------------


def result_of(**kw: Any) -> Callable[[Any], CheckResult]:
    """A check callable returning one fixed result."""
    kw.setdefault("status", Status.PASS)
    kw.setdefault("kind", Kind.CUSTOM)
    check = kw.setdefault("check", "c")

    def fixed(df: Any) -> CheckResult:
        return CheckResult(**kw)

    fixed.__name__ = check
    return fixed


def test_run_checks_gives_one_child_span_per_check(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """Each check gets a CHECK <name> span, child of the task span, with its result attributes."""
    checks = [
        result_of(check="rows", kind=Kind.VOLUME, observed=10, threshold=1, measure="row_count"),
        result_of(
            check="nulls",
            kind=Kind.COMPLETENESS,
            status=Status.FAIL,
            observed=0.5,
            threshold=0.1,
            column="amount",
            measure="null_fraction",
            message="too many",
        ),
        result_of(
            check="fresh",
            kind=Kind.FRESHNESS,
            status=Status.WARN,
            observed=90.0,
            column="ts",
            measure="freshness_lag_seconds",
        ),
    ]
    with tel.task_scope("orders", "load", dataset="orders_raw") as task:
        results = task.run_checks(checks, object())

    assert [r.check for r in results] == ["rows", "nulls", "fresh"]
    assert list(task.check_results) == results
    parent = named(spans, "RUN load")
    check_spans = [s for s in spans.get_finished_spans() if s.name.startswith("CHECK ")]
    assert [s.name for s in check_spans] == ["CHECK rows", "CHECK nulls", "CHECK fresh"]
    for s in check_spans:
        assert s.parent is not None and s.parent.span_id == parent.context.span_id
        assert s.context.trace_id == parent.context.trace_id
    nulls = dict(check_spans[1].attributes or {})
    assert nulls == {
        "pipewarden.check.name": "nulls",
        "pipewarden.check.kind": "completeness",
        "pipewarden.check.status": "fail",
        "pipewarden.check.results": 1,
        "pipewarden.check.observed": 0.5,
        "pipewarden.check.threshold": 0.1,
        "pipewarden.check.column": "amount",
        "pipewarden.check.message": "too many",
    }
    assert check_spans[1].status.status_code is StatusCode.ERROR
    assert check_spans[0].status.status_code is StatusCode.UNSET
    assert check_spans[2].status.status_code is StatusCode.UNSET
    for kind in ("volume", "completeness", "freshness"):
        assert sample(tel, "pipewarden_check_duration_seconds_count", pipeline="orders", kind=kind) == 1
    assert (
        sample(
            tel,
            "pipewarden_check_results_total",
            pipeline="orders",
            dataset="orders_raw",
            check="nulls",
            kind="completeness",
            status="fail",
        )
        == 1
    )


# measure and column of a result -> the gauge and labels (beyond pipeline, dataset) it sets
GAUGES: list[tuple[str, str | None, str, dict[str, str]]] = [
    ("row_count", None, "pipewarden_dq_rows", {}),
    ("null_fraction", "amount", "pipewarden_dq_null_fraction", {"column": "amount"}),
    ("duplicates", None, "pipewarden_dq_duplicates", {"check": "c"}),
    ("rows_lost", None, "pipewarden_dq_rows_lost", {"check": "c"}),
    ("freshness_lag_seconds", "ts", "pipewarden_dq_freshness_lag_seconds", {"column": "ts"}),
    *[
        (m, "price", "pipewarden_dq_drift_score", {"column": "price", "method": m})
        for m in ("psi", "ks", "wasserstein", "js", "chi2")
    ],
]
DQ_GAUGES = sorted({g for _, _, g, _ in GAUGES})


def dq_samples(tel: Telemetry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in tel.metrics.registry.collect()
        if family.name in DQ_GAUGES
        for s in family.samples
    }


@pytest.mark.parametrize(("measure", "column", "gauge", "labels"), GAUGES, ids=[f"{g[0]}" for g in GAUGES])
def test_observed_value_goes_to_its_gauge(
    tel: Telemetry, measure: str, column: str | None, gauge: str, labels: dict[str, str]
) -> None:
    """A result's observed value sets exactly the gauge its measure names, with its labels."""
    check = result_of(observed=0.25, column=column, measure=measure)
    with tel.task_scope("orders", "load", dataset="orders_raw") as task:
        task.run_checks([check], object())
    full = frozenset({"pipeline": "orders", "dataset": "orders_raw", **labels}.items())
    assert dq_samples(tel) == {(gauge, full): 0.25}


@pytest.mark.parametrize(
    "kw",
    [
        {"observed": 3.0, "measure": "volume_zscore"},
        {"observed": 0.5, "measure": "null_fraction"},  # no column
        {"observed": 0.5, "measure": "psi"},  # no column
        {"observed": 0.5, "measure": "null_fraction", "column": "a", "status": Status.ERROR},
        {"observed": None, "measure": "row_count"},
    ],
    ids=["unknown-measure", "null-fraction-without-column", "drift-without-column", "error-status", "no-observed"],
)
def test_results_without_a_gauge_set_none(tel: Telemetry, kw: dict[str, Any]) -> None:
    """Unknown measures, missing columns, errors and missing values set no gauge but still count."""
    with tel.task_scope("orders", "load") as task:
        task.run_checks([result_of(**kw)], object())
    assert dq_samples(tel) == {}
    status = str(kw.get("status", Status.PASS))
    assert (
        sample(
            tel,
            "pipewarden_check_results_total",
            pipeline="orders",
            dataset="load",
            check="c",
            kind="custom",
            status=status,
        )
        == 1
    )


def test_result_dataset_overrides_the_scope_dataset(tel: Telemetry) -> None:
    """A result naming its own dataset is recorded under it."""
    with tel.task_scope("orders", "load", dataset="out") as task:
        task.run_checks([result_of(observed=7, measure="row_count", dataset="source")], object())
    assert sample(tel, "pipewarden_dq_rows", pipeline="orders", dataset="source") == 7
    assert sample(tel, "pipewarden_dq_rows", pipeline="orders", dataset="out") is None


def test_unrecordable_result_is_counted_and_the_block_completes(
    tel: Telemetry, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """A result the metrics cannot record is one warning and one count; the check span ends and the run succeeds."""
    bad = result_of(check="weird", observed="not a number", measure="row_count")  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="pipewarden.events"), tel.task_scope("orders", "load") as task:
        results = task.run_checks([bad], object())
    assert len(results) == 1
    assert [r.getMessage() for r in caplog.records if "listener metrics raised ValueError" in r.getMessage()]
    assert sample(tel, "pipewarden_listener_errors_total", pipeline="orders", listener="metrics", reason="raised") == 1
    assert [s.name for s in spans.get_finished_spans()] == ["CHECK weird", "RUN load"]
    assert sample(tel, "pipewarden_task_runs_total", pipeline="orders", task="load", status="success") == 1


def test_current_scope_follows_the_blocks(tel: Telemetry) -> None:
    """current_scope() is the innermost open scope, and None outside them."""
    assert current_scope() is None
    with tel.pipeline_scope("orders") as run:
        assert current_scope() is run
        with tel.task_scope("orders", "load") as task:
            assert current_scope() is task
            assert task.parent is run and task.run_id == run.run_id and run.run_id
        assert current_scope() is run
    assert current_scope() is None


def test_task_inherits_the_run_id(tel: Telemetry, spans: InMemorySpanExporter) -> None:
    """A task scope inside a pipeline scope takes its run id when given none."""
    with tel.pipeline_scope("orders", run_id="r42"), tel.task_scope("orders", "load") as task:
        assert task.run_id == "r42"
    assert dict(named(spans, "RUN load").attributes or {})["cicd.pipeline.run.id"] == "r42"


# --- export errors -----------------------------------------------------------------------------


def test_export_error_counts_each_and_warns_once_per_exporter(tel: Telemetry, caplog: pytest.LogCaptureFixture) -> None:
    """Every failure is counted under its exporter and pipeline; each exporter is warned about once."""
    with caplog.at_level(logging.WARNING, logger="pipewarden.telemetry"):
        for _ in range(3):
            tel.export_error("otlp", ConnectionError("refused"), "orders", "billing")
        for _ in range(2):
            tel.export_error("pushgateway", None, pipeline="orders")
        tel.export_error("metrics_endpoint", None)

    assert sample(tel, "pipewarden_export_errors_total", pipeline="orders", exporter="otlp") == 3
    assert sample(tel, "pipewarden_export_errors_total", pipeline="billing", exporter="otlp") == 3
    assert sample(tel, "pipewarden_export_errors_total", pipeline="orders", exporter="pushgateway") == 2
    assert sample(tel, "pipewarden_export_errors_total", pipeline="", exporter="metrics_endpoint") == 1
    warnings = [r.getMessage() for r in caplog.records if r.name == "pipewarden.telemetry"]
    assert len(warnings) == 3
    assert "otlp" in warnings[0] and "refused" in warnings[0]
    assert "pushgateway" in warnings[1]


def test_warnings_are_per_telemetry_instance(caplog: pytest.LogCaptureFixture) -> None:
    """A fresh Telemetry warns again: the once-only memory is not process-global."""
    with caplog.at_level(logging.WARNING, logger="pipewarden.telemetry"):
        for _ in range(2):
            Telemetry(metrics=Metrics()).export_error("otlp", None)
    assert len([r for r in caplog.records if r.name == "pipewarden.telemetry"]) == 2


# --- from_env ----------------------------------------------------------------------------------


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.usefixtures("restore_logging")
def test_from_env_serves_metrics_on_port_zero_until_shutdown(tmp_path: Path) -> None:
    """PIPEWARDEN_METRICS_PORT=0 serves /metrics on a free port; shutdown() closes it."""
    tel = Telemetry.from_env(
        {"OTEL_TRACES_EXPORTER": "none", "PIPEWARDEN_METRICS_PORT": "0"}, home=tmp_path, metrics=Metrics()
    )
    try:

        @monitor(pipeline="orders", telemetry=tel)
        def load() -> int:
            return 1

        load()
        url = f"http://127.0.0.1:{tel.server.port}/metrics"
        samples = scrape(url)
    finally:
        tel.shutdown()

    key = ("pipewarden_task_runs_total", frozenset({"pipeline": "orders", "task": "load", "status": "success"}.items()))
    assert samples[key] == 1
    assert tel.server is None
    with pytest.raises(urllib.error.URLError):
        scrape(url)
    assert not (tmp_path / "traces.jsonl").exists()  # OTEL_TRACES_EXPORTER=none


@pytest.mark.usefixtures("restore_logging")
def test_from_env_defaults_write_spans_to_home_and_serve_nothing(tmp_path: Path) -> None:
    """With no variables set, spans go to <home>/traces.jsonl and no endpoint is started."""
    tel = Telemetry.from_env({}, home=tmp_path, metrics=Metrics())

    @monitor(pipeline="orders", telemetry=tel)
    def load() -> int:
        return 1

    load()
    tel.shutdown()
    assert tel.server is None
    lines = (tmp_path / "traces.jsonl").read_text().splitlines()
    # ... and the run is in the store's history
    from agent.store import SQLiteRunStore

    with SQLiteRunStore(tmp_path / "pipewarden.db") as store:
        [run] = store.list_runs()
    assert (run.pipeline, run.status, run.trigger) == ("orders", "success", "monitor")
    assert len(lines) == 1 and '"RUN orders"' in lines[0]


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"PIPEWARDEN_METRICS_PORT": "http"}, "PIPEWARDEN_METRICS_PORT"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
    ],
)
def test_from_env_rejects_invalid_settings(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    """An invalid variable is a ValueError naming it, raised before anything starts."""
    with pytest.raises(ValueError, match=needle):
        Telemetry.from_env(env, home=tmp_path, metrics=Metrics())


def test_doctests_run() -> None:
    """The examples in the module's docstrings run as written."""
    result = doctest.testmod(agent.telemetry)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    ("attempt", "retry", "counted"),
    [
        (1, None, 0),
        (2, None, 1),
        (3, False, 0),  # a resumed run's first attempt continues the numbering but retries nothing
        (1, True, 1),
    ],
)
def test_retries_counted_from_the_retry_flag_or_the_attempt_number(
    tel: Telemetry, attempt: int, retry: bool | None, counted: int
) -> None:
    """pipewarden_task_retries_total rises only for attempts that retry a failure."""
    with tel.task_scope("orders", "load", attempt=attempt, retry=retry):
        pass
    assert (tel.metrics.sample("pipewarden_task_retries_total", pipeline="orders", task="load") or 0) == counted


def test_pipeline_scope_takes_the_outcome_from_a_runner_with_a_store(tel: Telemetry) -> None:
    """An outcome set by the runner (from its store) overrides what this process has seen."""
    from agent.events import RunOutcome

    with tel.pipeline_scope("orders", version="v1") as run:
        run.outcome = RunOutcome(change=False, recovery_seconds=600.0)
    assert tel.metrics.sample("pipewarden_pipeline_changes_total", pipeline="orders") == 0
    assert tel.metrics.sample("pipewarden_pipeline_recovery_seconds_sum", pipeline="orders") == pytest.approx(600)


@pytest.mark.usefixtures("restore_logging")
def test_a_port_already_taken_is_one_warning_and_the_pipeline_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """PIPEWARDEN_METRICS_PORT on a port in use warns once, counts it, and the monitored call still runs."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="pipewarden.telemetry"):
            tel = Telemetry.from_env(
                {"OTEL_TRACES_EXPORTER": "none", "PIPEWARDEN_METRICS_PORT": str(port)}, home=tmp_path, metrics=Metrics()
            )
        try:

            @monitor(pipeline="orders", telemetry=tel)
            def load() -> int:
                return 1

            assert load() == 1
        finally:
            tel.shutdown()
    assert tel.server is None
    assert [r for r in caplog.records if f"127.0.0.1:{port}" in r.getMessage()]
    assert sample(tel, "pipewarden_export_errors_total", pipeline="", exporter="metrics_endpoint") == 1


@pytest.mark.parametrize("addr", ["no such host.invalid", "a" * 300, "999.1.1.1"], ids=["name", "too-long", "ip"])
def test_a_bad_metrics_address_is_one_warning_and_the_cli_run_goes_on(tmp_path: Path, addr: str) -> None:
    """`pipewarden run` with a PIPEWARDEN_METRICS_ADDR that cannot be bound warns once and runs (exit 0)."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
    env.update(
        PYTHONPATH=str(repo), PIPEWARDEN_METRICS_PORT="0", PIPEWARDEN_METRICS_ADDR=addr, OTEL_TRACES_EXPORTER="none"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "run",
            str(repo / "examples" / "pipelines" / "one_task.py"),
            "--no-progress",
            "--home",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert len([line for line in done.stderr.splitlines() if "metrics_endpoint" in line]) == 1


def test_a_loss_check_sets_rows_lost_and_rows_gained(tel: Telemetry) -> None:
    """A join that drops one key and fans another out: the loss check's lost and gained rows are both gauges."""
    from checks import loss

    @monitor(pipeline="orders", dataset="orders_raw", telemetry=tel, checks=[loss(key="id")])
    def join(df: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([df[df["id"] != 1], df[df["id"] == 2], df[df["id"] == 2]])

    join(pd.DataFrame({"id": [1, 2, 3]}))
    gauges = {name: value for (name, _), value in dq_samples_all(tel).items()}
    assert gauges == {"pipewarden_dq_rows_lost": 1.0, "pipewarden_dq_rows_gained": 2.0}


def dq_samples_all(tel: Telemetry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in tel.metrics.registry.collect()
        if family.name.startswith("pipewarden_dq_")
        for s in family.samples
    }
