"""The pieces every pipewarden dashboard is made of, built with Grafana's foundation SDK.

Every panel and every query uses the ``datasource`` template variable, never an
``__inputs`` placeholder: file provisioning cannot resolve ``__inputs``
(grafana/grafana#10786), a variable works for both UI import and provisioning.
Every panel states the question it answers (its description) and its unit.

>>> from grafana_foundation_sdk.builders.dashboard import Dashboard
>>> panel = timeseries("Runs", "How many runs ended?", "short", [query("sum(pipewarden_pipeline_runs_total)")])
>>> board = Dashboard("x").with_panel(panel).build()
>>> board.panels[0].datasource.uid
'${datasource}'
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import bargauge, stat, table
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus as prom_b
from grafana_foundation_sdk.builders import timeseries as ts_b
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import prometheus as prom_m

__all__ = [
    "DATASOURCE",
    "DATASOURCE_NAME",
    "DATASOURCE_UID",
    "SCHEMA_VERSION",
    "STATUS_URL",
    "bars",
    "board",
    "datasource_variable",
    "gauge_bars",
    "label_variable",
    "query",
    "runs_link",
    "stat_panel",
    "status_url_variable",
    "table_panel",
    "thresholds",
    "timeseries",
]

#: The classic dashboard JSON model these files follow (Grafana 12; later versions migrate it on load).
SCHEMA_VERSION = 41
#: The uid of the provisioned data source (dashboards/provisioning/datasources/pipewarden.yml).
DATASOURCE_UID = "pipewarden-prometheus"
DATASOURCE_NAME = "Prometheus (pipewarden)"
#: Where the daemon's status page is, until a user says otherwise (the ``status_url`` variable).
STATUS_URL = "http://127.0.0.1:9464"
DATASOURCE = common_m.DataSourceRef(type_val="prometheus", uid="${datasource}")

Step = tuple[float | None, str]
Builder = ts_b.Panel | stat.Panel | table.Panel | bargauge.Panel


def board(uid: str, title: str, description: str, variables: Sequence[dash_b.QueryVariable]) -> dash_b.Dashboard:
    """A dashboard with the data source variable, ``variables``, the status page variable and link."""
    b = (
        dash_b.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["pipewarden"])
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .editable()
        .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
        .with_variable(datasource_variable())
    )
    for v in variables:
        b = b.with_variable(v)
    b = b.with_variable(status_url_variable())
    return b.link(
        dash_b.DashboardLink("Run history (status page)")
        .type(dash_m.DashboardLinkType.LINK)
        .url("${status_url}/")
        .target_blank(True)
        .icon("external link")
        .tooltip("The pipewarden daemon's status page")
    )


def datasource_variable() -> dash_b.DatasourceVariable:
    """``$datasource``: any Prometheus data source; the provisioned one by default."""
    return (
        dash_b.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .description("The Prometheus that scrapes pipewarden (or its Pushgateway).")
        .current(dash_m.VariableOption(selected=True, text=DATASOURCE_NAME, value=DATASOURCE_UID))
    )


def label_variable(name: str, label: str, source: str, description: str) -> dash_b.QueryVariable:
    """A multi-value ``label_values(source, name)`` variable whose All is the regex ``.*``."""
    expr = f"label_values({source}, {name})"
    return (
        dash_b.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DATASOURCE)
        .query(expr)
        .definition(expr)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dash_m.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
    )


def status_url_variable() -> dash_b.TextBoxVariable:
    """``$status_url``: base URL of the daemon's status page, for links to a pipeline's runs."""
    return (
        dash_b.TextBoxVariable("status_url")
        .label("Status page")
        .default_value(STATUS_URL)
        .description("Base URL of the pipewarden daemon's status page (links to a pipeline's runs).")
        .current(dash_m.VariableOption(selected=True, text=STATUS_URL, value=STATUS_URL))
    )


def query(expr: str, legend: str = "", *, instant: bool = False, table_format: bool = False) -> prom_b.Dataquery:
    """A Prometheus query on ``$datasource``; instant ones are evaluated at the end of the time range.

    Its ``refId`` is set by the panel it goes in (A, B, ... in order).
    """
    q = prom_b.Dataquery().datasource(DATASOURCE).expr(expr)
    if legend:
        q = q.legend_format(legend)
    q = q.instant() if instant else q.range()
    if table_format:
        q = q.format(prom_m.PromQueryFormat.TABLE)
    return q


def thresholds(*steps: Step) -> dash_b.ThresholdsConfig:
    """Absolute thresholds: ``(None, base colour), (value, colour from there up), ...``."""
    return (
        dash_b.ThresholdsConfig()
        .mode(dash_m.ThresholdsMode.ABSOLUTE)
        .steps([dash_m.Threshold(value=v, color=c) for v, c in steps])
    )


def runs_link(pipeline: str = "${__field.labels.pipeline}") -> dash_b.DashboardLink:
    """A data link to the pipeline's runs on the daemon's status page."""
    return (
        dash_b.DashboardLink("Runs of this pipeline")
        .url(f"${{status_url}}/runs?pipeline={pipeline}")
        .target_blank(True)
    )


def _common(
    panel: Builder,
    title: str,
    description: str,
    unit: str,
    targets: Sequence[prom_b.Dataquery],
    steps: Sequence[Step],
    link: bool,
    span: int,
    height: int,
) -> None:
    panel.title(title).description(description).unit(unit).datasource(DATASOURCE).span(span).height(height)
    for i, target in enumerate(targets):
        panel.with_target(target.ref_id(chr(ord("A") + i)))
    if steps:
        panel.thresholds(thresholds(*steps))
    if link:
        panel.data_links([runs_link()])


def timeseries(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[prom_b.Dataquery],
    *,
    steps: Sequence[Step] = (),
    link: bool = False,
    span: int = 12,
    height: int = 8,
    min_value: float | None = None,
) -> ts_b.Panel:
    """Lines over time, legend as a table with last and max values."""
    p = ts_b.Panel().line_width(1).fill_opacity(10).show_points(common_m.VisibilityMode.NEVER)
    p.legend(
        common_b.VizLegendOptions()
        .display_mode(common_m.LegendDisplayMode.TABLE)
        .placement(common_m.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )
    p.tooltip(common_b.VizTooltipOptions().mode(common_m.TooltipDisplayMode.MULTI).sort(common_m.SortOrder.DESCENDING))
    if steps:
        p.thresholds_style(common_b.GraphThresholdsStyleConfig().mode(common_m.GraphThresholdsStyleMode.DASHED))
    if min_value is not None:
        p.min(min_value)
    _common(p, title, description, unit, targets, steps, link, span, height)
    return p


def bars(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[prom_b.Dataquery],
    *,
    link: bool = False,
    span: int = 12,
    height: int = 8,
) -> ts_b.Panel:
    """Stacked bars over time: counts per interval."""
    p = timeseries(title, description, unit, targets, link=link, span=span, height=height, min_value=0)
    p.draw_style(common_m.GraphDrawStyle.BARS).fill_opacity(80)
    p.stacking(common_b.StackingConfig().mode(common_m.StackingMode.NORMAL))
    return p


def stat_panel(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[prom_b.Dataquery],
    *,
    steps: Sequence[Step] = (),
    link: bool = False,
    span: int = 6,
    height: int = 5,
    mappings: Sequence[dash_m.ValueMapping] = (),
) -> stat.Panel:
    """One number per series at the end of the range, coloured by ``steps``."""
    p = (
        stat.Panel()
        .color_mode(common_m.BigValueColorMode.BACKGROUND)
        .graph_mode(common_m.BigValueGraphMode.NONE)
        .text_mode(common_m.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if mappings:
        p.mappings(list(mappings))
    _common(p, title, description, unit, targets, steps, link, span, height)
    return p


def gauge_bars(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[prom_b.Dataquery],
    *,
    steps: Sequence[Step] = (),
    link: bool = False,
    span: int = 12,
    height: int = 8,
    min_value: float | None = 0,
    max_value: float | None = None,
) -> bargauge.Panel:
    """One horizontal bar per series at the end of the range."""
    p = (
        bargauge.Panel()
        .orientation(common_m.VizOrientation.HORIZONTAL)
        .display_mode(common_m.BarGaugeDisplayMode.BASIC)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if min_value is not None:
        p.min(min_value)
    if max_value is not None:
        p.max(max_value)
    _common(p, title, description, unit, targets, steps or [(None, "blue")], link, span, height)
    return p


def table_panel(
    title: str,
    description: str,
    targets: Sequence[prom_b.Dataquery],
    *,
    columns: Sequence[tuple[str, str, str]] = (),
    link_field: str = "pipeline",
    span: int = 24,
    height: int = 8,
) -> table.Panel:
    """A table of instant queries merged on their labels; ``columns`` renames ``Value #X`` to (name, unit).

    The ``link_field`` column links each row to that pipeline's runs on the status page.
    """
    p = table.Panel().cell_height(common_m.TableCellHeight.SM)
    _common(p, title, description, "short", targets, (), False, span, height)
    renames: dict[str, str] = {}
    for ref, name, unit in columns:
        renames[f"Value #{ref}"] = name
        # Overrides match the field's name after the transformations: the new name.
        p.override_by_name(name, [dash_m.DynamicConfigValue(id_val="unit", value=unit)])
    p.with_transformation(dash_m.DataTransformerConfig(id_val="merge", options={}))
    p.with_transformation(
        dash_m.DataTransformerConfig(
            id_val="organize", options={"excludeByName": {"Time": True}, "renameByName": renames}
        )
    )
    if link_field:
        p.override_by_name(
            link_field,
            [
                dash_m.DynamicConfigValue(
                    id_val="links", value=[runs_link("${__data.fields." + link_field + "}").build().to_json()]
                )
            ],
        )
    return p
