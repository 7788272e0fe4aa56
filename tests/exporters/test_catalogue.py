"""The metric catalogue: naming conventions, bounded labels, the generated docs, and every reference to it."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporters.catalogue import CATALOGUE, MetricSpec, MetricType, by_name, render_markdown

ROOT = Path(__file__).resolve().parents[2]

#: Labels a pipewarden metric may carry: each has a small, bounded set of values.
ALLOWED_LABELS = frozenset(
    {
        "pipeline",
        "task",
        "dataset",
        "column",
        "check",
        "kind",
        "status",
        "severity",
        "method",
        "exporter",
        "trigger",
        "alert",
        "state",
        "receiver",
        "outcome",
        "action",
        "listener",
        "reason",
        "route",
        "code",
    }
)
#: Allowed only as the info key of an ``_info`` metric (one series per pipeline at a time).
INFO_ONLY_LABELS = frozenset({"version"})
UNIT_SUFFIXES = {"seconds": "_seconds", "bytes": "_bytes"}
KNOWN_UNITS = frozenset({"", "seconds", "bytes", "ratio"})
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def spec_id(spec: MetricSpec) -> str:
    return spec.name


# --- conventions --------------------------------------------------------------------------------


def test_names_are_unique() -> None:
    """No two catalogue entries share a name or an exposition series."""
    names = [m.name for m in CATALOGUE]
    assert len(names) == len(set(names))
    series = [s for m in CATALOGUE for s in m.series_names]
    assert len(series) == len(set(series))


@pytest.mark.parametrize("spec", CATALOGUE, ids=spec_id)
def test_name_follows_prometheus_conventions(spec: MetricSpec) -> None:
    """pipewarden_ prefix; _total on counters only; _info on info; no reserved series suffix."""
    assert METRIC_NAME.match(spec.name)
    assert spec.name.startswith("pipewarden_")
    assert spec.name == spec.name.lower()
    assert spec.name.endswith("_total") == (spec.type is MetricType.COUNTER)
    assert spec.name.endswith("_info") == (spec.type is MetricType.INFO)
    assert not spec.name.endswith(("_bucket", "_count", "_sum", "_created"))
    assert "__" not in spec.name


@pytest.mark.parametrize("spec", CATALOGUE, ids=spec_id)
def test_unit_is_known_and_in_the_name(spec: MetricSpec) -> None:
    """A seconds or bytes unit is the name's suffix (before _total), and such a suffix has that unit."""
    assert spec.unit in KNOWN_UNITS
    base = spec.name.removesuffix("_total")
    for unit, suffix in UNIT_SUFFIXES.items():
        assert (spec.unit == unit) == base.endswith(suffix), (spec.name, spec.unit)


@pytest.mark.parametrize("spec", CATALOGUE, ids=spec_id)
def test_labels_are_bounded(spec: MetricSpec) -> None:
    """Labels come from the bounded set; version appears only as the info key of an _info metric."""
    assert len(spec.labels) == len(set(spec.labels))
    for label in spec.labels:
        assert LABEL_NAME.match(label) and not label.startswith("__")
        assert label not in ("le", "quantile")  # reserved by histograms and summaries
    if spec.type is MetricType.INFO:
        assert set(spec.info_keys) <= set(spec.labels)
        assert set(spec.labels) - set(spec.info_keys) <= ALLOWED_LABELS
        assert set(spec.info_keys) <= INFO_ONLY_LABELS
    else:
        assert set(spec.labels) <= ALLOWED_LABELS, set(spec.labels) - ALLOWED_LABELS
        assert spec.info_keys == ()


@pytest.mark.parametrize("spec", CATALOGUE, ids=spec_id)
def test_buckets_only_on_histograms_and_strictly_increasing(spec: MetricSpec) -> None:
    """Histograms have increasing positive finite buckets; other types have none."""
    if spec.type is MetricType.HISTOGRAM:
        assert spec.buckets and all(b > 0 for b in spec.buckets)
        assert list(spec.buckets) == sorted(set(spec.buckets))
        assert spec.buckets[-1] != float("inf")  # prometheus_client adds +Inf itself
    else:
        assert spec.buckets == ()


@pytest.mark.parametrize("spec", CATALOGUE, ids=spec_id)
def test_help_is_a_sentence(spec: MetricSpec) -> None:
    """Every metric has help text: a sentence (not lower-case first) ending in a full stop, on one line."""
    assert spec.help and not spec.help[0].islower()
    assert spec.help.endswith(".") and "\n" not in spec.help
    assert "|" not in spec.help  # it is a cell of the Markdown table


@pytest.mark.parametrize("spec", CATALOGUE, ids=spec_id)
def test_series_and_base_names(spec: MetricSpec) -> None:
    """Series names are what prometheus_client exposes for the type; base_name is what it is given."""
    expected = {
        MetricType.COUNTER: (spec.name,),
        MetricType.HISTOGRAM: (f"{spec.name}_bucket", f"{spec.name}_sum", f"{spec.name}_count"),
        MetricType.GAUGE: (spec.name,),
        MetricType.INFO: (spec.name,),
    }[spec.type]
    assert spec.series_names == expected
    assert by_name(spec.name) is spec


def test_unknown_name_is_a_key_error_naming_it() -> None:
    """by_name of a name not in the catalogue raises KeyError naming it."""
    with pytest.raises(KeyError, match="pipewarden_made_up_total"):
        by_name("pipewarden_made_up_total")


# --- docs ---------------------------------------------------------------------------------------


def test_docs_page_equals_the_rendered_catalogue() -> None:
    """docs/metrics.md is exactly render_markdown(); regenerate it with python -m exporters.catalogue."""
    page = ROOT / "docs" / "metrics.md"
    assert page.read_text(encoding="utf-8") == render_markdown(), (
        "docs/metrics.md is stale: run `python -m exporters.catalogue > docs/metrics.md`"
    )


def test_module_main_prints_the_page() -> None:
    """`python -m exporters.catalogue` prints render_markdown() and nothing else."""
    result = subprocess.run(
        [sys.executable, "-m", "exporters.catalogue"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == render_markdown()


def test_docs_table_has_one_row_per_metric() -> None:
    """Each metric appears in exactly one table row, in catalogue order."""
    rows = [line for line in render_markdown().splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [m.name for m in CATALOGUE]


# --- names the code uses --------------------------------------------------------------------------

#: ``pipewarden_…`` strings in the code that are not metrics, and why.
NOT_METRICS = {
    "pipewarden_scope": "the name of the contextvar holding the current scope",
    "pipewarden_example_orders_etl": "the module name the demo pipeline is imported under",
    "pipewarden_pipelines": "the package name pipeline files are imported under",
    "pipewarden_task_": "the prefix of the task families kept in cells",
    "pipewarden_pipeline_": "the prefix of the pipeline families kept in cells",
}
KNOWN_SERIES = (
    {s for m in CATALOGUE for s in m.series_names} | {m.name for m in CATALOGUE} | {m.base_name for m in CATALOGUE}
)
# A name followed by "." or "-" is a module path or a file name (pipewarden_orders.prom).
NAME_IN_TEXT = re.compile(r"(?<![\w.])pipewarden_[a-z_]+(?![\w.-])")


def string_literals(path: Path) -> Iterator[str]:
    """Every string constant of a module: literals, docstrings and the text parts of f-strings."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def referenced_names() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for package in ("agent", "exporters"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for text in string_literals(path):
                for name in NAME_IN_TEXT.findall(text):
                    found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def test_code_references_the_catalogue_metrics() -> None:
    """The scan finds the metric names the metrics code is known to use (it is not vacuous)."""
    found = referenced_names()
    for name, where in (
        ("pipewarden_task_runs_total", "exporters/cells.py"),
        ("pipewarden_dq_drift_score", "exporters/run_metrics.py"),
        ("pipewarden_export_errors_total", "exporters/run_metrics.py"),
        ("pipewarden_pipeline_recovery_seconds", "exporters/cells.py"),
    ):
        assert where in found[name]


def test_every_metric_named_in_the_code_is_in_the_catalogue() -> None:
    """Each pipewarden_* name in agent/ and exporters/ string literals is a catalogue series."""
    unknown = {
        name: files
        for name, files in referenced_names().items()
        if name not in KNOWN_SERIES and name not in NOT_METRICS
    }
    assert unknown == {}, (
        "names that look like metrics but are not in exporters/catalogue.py "
        "(add them there, or to NOT_METRICS with the reason): "
        f"{unknown}"
    )


# --- dashboards and rule files --------------------------------------------------------------------

#: Series Prometheus or the Pushgateway create about pipewarden's own targets.
GENERATED_SERIES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE", "push_time_seconds", "push_failure_time_seconds"})
PROMQL_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "atan2",
        "inf",
        "nan",
        "Inf",
        "NaN",
        "start",
        "end",
    }
)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana variables and label names left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"#[^\n]*", "", text)
    text = re.sub(r"\{[^{}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    # Grafana's label_values(metric, label): the second argument is a label.
    text = re.sub(r"\blabel_values\s*\(([^,()]*),[^()]*\)", r"label_values(\1)", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", text):
        name = match.group(1)
        if name not in PROMQL_KEYWORDS:
            names.add(name)
    return names


PROMQL_CASES: list[tuple[str, set[str]]] = [
    (
        'sum by (pipeline) (rate(pipewarden_task_runs_total{status="failed"}[5m]))'
        " / sum by (pipeline) (rate(pipewarden_task_runs_total[5m]))",
        {"pipewarden_task_runs_total"},
    ),
    (
        "histogram_quantile(0.95, sum by (le, pipeline) "
        "(rate(pipewarden_task_duration_seconds_bucket[$__rate_interval])))",
        {"pipewarden_task_duration_seconds_bucket"},
    ),
    (
        "time() - pipewarden_pipeline_last_success_timestamp_seconds > 3600",
        {"pipewarden_pipeline_last_success_timestamp_seconds"},
    ),
    ('avg_over_time(pipewarden_pipeline_up{pipeline=~"$pipeline"}[1d] offset 1h)', {"pipewarden_pipeline_up"}),
    (
        "pipewarden_dq_rows unless on(pipeline, dataset) pipewarden_dq_rows_lost == bool 0",
        {"pipewarden_dq_rows", "pipewarden_dq_rows_lost"},
    ),
    ("label_values(pipewarden_task_runs_total, pipeline)", {"pipewarden_task_runs_total"}),
    ('absent(up{job="pipewarden"}) or vector(0)', {"up"}),
    ("pipewarden:task_failure:ratio_rate5m > 0.1", {"pipewarden:task_failure:ratio_rate5m"}),
]


@pytest.mark.parametrize(("expr", "expected"), PROMQL_CASES, ids=[c[0][:40] for c in PROMQL_CASES])
def test_promql_metric_names_are_extracted(expr: str, expected: set[str]) -> None:
    """The extractor finds exactly the selected metrics: no functions, labels, keywords or variables."""
    assert promql_metric_names(expr) == expected


def unknown_metrics(exprs: list[str], recorded: set[str]) -> set[str]:
    known = KNOWN_SERIES | GENERATED_SERIES | recorded
    return {name for expr in exprs for name in promql_metric_names(expr)} - known


def test_catalogue_series_pass_and_unknown_names_fail_the_reference_check() -> None:
    """Every catalogue series is accepted by the reference check, and a made-up name is caught."""
    exprs = [
        f"rate({s}[5m])" if s.endswith(("_total", "_count", "_sum", "_bucket")) else s
        for m in CATALOGUE
        for s in m.series_names
    ]
    assert unknown_metrics(exprs, set()) == set()
    assert unknown_metrics(["rate(pipewarden_tasks_total[5m])"], set()) == {"pipewarden_tasks_total"}


#: Grafana template variables whose ``query`` is not PromQL: a plugin id (datasource), the default
#: text (textbox, constant), a comma-separated list (custom) or intervals (interval).
NOT_PROMQL_VARIABLES = frozenset({"datasource", "textbox", "constant", "custom", "interval"})


def walk_queries(node: Any) -> Iterator[str]:
    """Every string under an ``expr`` or ``query`` key, at any depth (but a non-PromQL variable's query)."""
    if isinstance(node, dict):
        literal = "name" in node and node.get("type") in NOT_PROMQL_VARIABLES
        for key, value in node.items():
            if key == "query" and literal:
                continue
            if key in ("expr", "query") and isinstance(value, str):
                yield value
            else:
                yield from walk_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_queries(item)


def load(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def recorded_names(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {node["record"]} if isinstance(node.get("record"), str) else set()
        return own.union(*(recorded_names(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(recorded_names(v) for v in node))
    return set()


DASHBOARDS = sorted((ROOT / "dashboards").rglob("*.json"))
RULE_FILES = sorted(p for p in (ROOT / "alerts").rglob("*") if p.suffix in (".yml", ".yaml", ".json"))
ALL_RECORDED = set().union(*(recorded_names(load(p)) for p in RULE_FILES))


FOUND = [pytest.param(p, id=str(p.relative_to(ROOT))) for p in DASHBOARDS + RULE_FILES] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no dashboards/*.json or alerts/*.yml yet"))
]


@pytest.mark.parametrize("path", FOUND)
def test_dashboards_and_rules_reference_only_catalogue_metrics(path: Path) -> None:
    """Every PromQL expression in the file selects catalogue series (or recorded rules) only."""
    exprs = list(walk_queries(load(path)))
    assert exprs, f"{path} holds no expr/query: is it a dashboard or rule file?"
    unknown = unknown_metrics(exprs, ALL_RECORDED)
    assert unknown == set(), f"{path.relative_to(ROOT)} uses metrics not in the catalogue: {unknown}"
