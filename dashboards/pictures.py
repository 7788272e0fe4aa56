"""Pictures of the dashboards drawn from a real Prometheus's answers, for docs/dashboards.md.

No Grafana is packaged for the machines pipewarden is built on, so this draws each
dashboard's panels (same grid, titles, units and queries, variables at All) with
matplotlib from ``/api/v1/query_range`` and ``/api/v1/query`` results::

    python -m dashboards.pictures --prometheus http://127.0.0.1:9090 --minutes 30 --out docs/img

The committed pictures come from the proof test's scenario
(``PIPEWARDEN_DASHBOARD_PICTURES=docs/img python3 -m pytest tests/dashboards/test_proof.py``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

from dashboards import DASHBOARD_FILES, PACKAGE_DIR
from dashboards.variables import builtin_intervals, interpolate, regex_value

__all__ = ["fmt", "main", "render", "render_all"]

GRID_ROW_INCHES = 0.32
WIDTH_INCHES = 18.0
COLORS = {"green": "#37872d", "red": "#c4162a", "orange": "#fa6400", "blue": "#1f60c4", "yellow": "#e0b400"}
Series = tuple[dict[str, str], list[tuple[float, float]]]


class Prometheus:
    """The two query endpoints a dashboard needs, with the dashboard's variables substituted."""

    def __init__(self, url: str, start: float, end: float, scrape_interval: float) -> None:
        self.url = url.rstrip("/")
        self.start, self.end = start, end
        self.step = max(scrape_interval, (end - start) / 400)
        self.vars = {name: regex_value(None) for name in ("pipeline", "task", "dataset", "job")}
        self.vars.update(builtin_intervals(start, end, step=self.step, scrape_interval=scrape_interval))

    def series(self, expr: str, instant: bool) -> list[Series]:
        expr = interpolate(expr, self.vars)
        if instant:
            params = {"query": expr, "time": f"{self.end:.3f}"}
            path = "/api/v1/query?"
        else:
            params = {"query": expr, "start": f"{self.start:.3f}", "end": f"{self.end:.3f}", "step": f"{self.step:g}"}
            path = "/api/v1/query_range?"
        with urllib.request.urlopen(self.url + path + urllib.parse.urlencode(params), timeout=30) as resp:
            body = json.load(resp)
        out: list[Series] = []
        for r in body["data"]["result"]:
            points = [r["value"]] if instant else r["values"]
            out.append((r["metric"], [(float(t), float(v)) for t, v in points]))
        return out


def fmt(value: float, unit: str) -> str:
    """A value as Grafana would show it in ``unit`` (the units the dashboards use)."""
    if not math.isfinite(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        for limit, div, suffix in ((60, 1, "s"), (3600, 60, "min"), (86400, 3600, "h")):
            if abs(value) < limit:
                return f"{value / div:.3g} {suffix}" if value else "0 s"
        return f"{value / 86400:.3g} d"
    if unit == "bytes":
        for suffix in ("B", "KiB", "MiB", "GiB"):
            if abs(value) < 1024:
                return f"{value:.3g} {suffix}"
            value /= 1024
        return f"{value:.3g} TiB"
    suffix = {"rowsps": " rows/s", "reqps": " req/s"}.get(unit, "")
    return f"{value:.3g}{suffix}"


def _legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip() or "value"


def _color(value: float, steps: Sequence[dict[str, Any]]) -> str:
    color = "blue"
    for s in steps:
        if s.get("value") is None or (math.isfinite(value) and value >= s["value"]):
            color = s["color"]
    return COLORS.get(color, color)


def _timeseries(ax: Axes, panel: dict[str, Any], prom: Prometheus, unit: str) -> None:
    bars = panel["fieldConfig"]["defaults"].get("custom", {}).get("drawStyle") == "bars"
    shown = 0
    for t in panel["targets"]:
        for labels, points in prom.series(t["expr"], instant=False):
            xs = mdates.date2num([dt.datetime.fromtimestamp(ts, dt.UTC) for ts, _ in points])
            ys = [v if math.isfinite(v) else float("nan") for _, v in points]
            label = _legend(t.get("legendFormat", ""), labels) if shown < 8 else None
            if bars:
                ax.fill_between(xs, ys, step="mid", alpha=0.5, label=label)
            else:
                ax.plot(xs, ys, linewidth=1.2, label=label)
            shown += 1
    defaults = panel["fieldConfig"]["defaults"]
    if defaults.get("custom", {}).get("thresholdsStyle") and shown:
        low, high = ax.get_ylim()
        for step in defaults.get("thresholds", {}).get("steps", [])[1:]:
            if low <= step["value"] <= high:  # a line far above the data would flatten it
                ax.axhline(step["value"], color=COLORS.get(step["color"], step["color"]), linestyle="--", lw=0.8)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v, unit)))
    ax.tick_params(labelsize=7)
    if shown:
        ax.legend(fontsize=6, loc="upper left", ncol=2, frameon=False)
    else:
        ax.text(0.5, 0.5, "No data", ha="center", va="center", transform=ax.transAxes, color="grey")


def _values(panel: dict[str, Any], prom: Prometheus) -> list[tuple[str, float]]:
    out = []
    for t in panel["targets"]:
        for labels, points in prom.series(t["expr"], instant=True):
            out.append((_legend(t.get("legendFormat", ""), labels), points[-1][1]))
    return out


def _stat(ax: Axes, panel: dict[str, Any], prom: Prometheus, unit: str) -> None:
    steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
    mappings = {k: v for m in panel["fieldConfig"]["defaults"].get("mappings", []) for k, v in m["options"].items()}
    values = _values(panel, prom)[:4] or [("No data", float("nan"))]
    ax.axis("off")
    width = 1 / len(values)
    for i, (name, value) in enumerate(values):
        mapped = mappings.get(f"{value:g}") if math.isfinite(value) else None
        text = mapped["text"] if mapped else fmt(value, unit)
        color = COLORS.get(mapped["color"], "grey") if mapped else (_color(value, steps) if steps else "#1f60c4")
        ax.add_patch(
            plt.Rectangle((i * width + 0.01, 0.02), width - 0.02, 0.8, color=color, alpha=0.85, transform=ax.transAxes)
        )
        ax.text(
            (i + 0.5) * width,
            0.45,
            text,
            ha="center",
            va="center",
            fontsize=15,
            color="white",
            weight="bold",
            transform=ax.transAxes,
        )
        ax.text(
            (i + 0.5) * width,
            0.13,
            name[:28],
            ha="center",
            va="center",
            fontsize=7,
            color="white",
            transform=ax.transAxes,
        )


def _bargauge(ax: Axes, panel: dict[str, Any], prom: Prometheus, unit: str) -> None:
    steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
    values = [(n, v) for n, v in _values(panel, prom) if math.isfinite(v)][:8]
    if not values:
        ax.axis("off")
        ax.text(0.5, 0.5, "No data", ha="center", va="center", transform=ax.transAxes, color="grey")
        return
    names = [n for n, _ in values][::-1]
    nums = [v for _, v in values][::-1]
    ax.barh(range(len(nums)), nums, color=[_color(v, steps) for v in nums], height=0.6)
    for y, (name, v) in enumerate(zip(names, nums, strict=True)):
        ax.text(0, y + 0.36, name, va="bottom", fontsize=7)
        ax.text(v, y, " " + fmt(v, unit), va="center", fontsize=7)
    ax.set_yticks([])
    ax.set_ylim(-0.5, len(nums))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v, unit)))
    ax.tick_params(labelsize=7)
    ax.set_xlim(0, max(max(nums) * 1.3, panel["fieldConfig"]["defaults"].get("max", 0) or 0, 1e-9))


def _table(ax: Axes, panel: dict[str, Any], prom: Prometheus) -> None:
    renames: dict[str, str] = next(
        (t["options"]["renameByName"] for t in panel.get("transformations", []) if t["id"] == "organize"), {}
    )
    units = {
        o["matcher"]["options"]: p["value"]
        for o in panel["fieldConfig"]["overrides"]
        for p in o["properties"]
        if p["id"] == "unit"
    }
    rows: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    label_names: list[str] = []
    columns: list[str] = []
    for t in panel["targets"]:
        column = renames.get(f"Value #{t['refId']}", f"Value #{t['refId']}")
        columns.append(column)
        for labels, points in prom.series(t["expr"], instant=True):
            labels = {k: v for k, v in labels.items() if k not in ("job", "instance")}
            label_names += [k for k in labels if k not in label_names]
            key = tuple(sorted(labels.items()))
            rows.setdefault(key, dict(labels))[column] = fmt(points[-1][1], units.get(column, "short"))
    ax.axis("off")
    header = label_names + columns
    cells = [[r.get(h, "") for h in header] for r in list(rows.values())[:8]] or [
        ["No data"] + [""] * (len(header) - 1)
    ]
    table = ax.table(cellText=cells, colLabels=header, loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.scale(1, 1.25)


def render(dashboard: dict[str, Any], prom: Prometheus, out: Path) -> Path:
    """Draw ``dashboard``'s panels on its grid into the PNG ``out``."""
    panels = dashboard["panels"]
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig = plt.figure(figsize=(WIDTH_INCHES, height * GRID_ROW_INCHES + 1.2), dpi=90)
    grid = fig.add_gridspec(
        height, 24, hspace=3.0, wspace=1.2, left=0.03, right=0.99, top=1 - 1.0 / fig.get_figheight(), bottom=0.02
    )
    fig.suptitle(
        f"{dashboard['title']}  ·  variables: All  ·  {prom.vars['__range']} of the proof scenario",
        fontsize=13,
        x=0.03,
        ha="left",
    )
    for panel in panels:
        g = panel["gridPos"]
        ax = fig.add_subplot(grid[g["y"] : g["y"] + g["h"], g["x"] : g["x"] + g["w"]])
        if panel["type"] == "row":
            ax.axis("off")
            ax.text(0, 0.2, panel["title"], fontsize=11, weight="bold", transform=ax.transAxes)
            continue
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        ax.set_title(panel["title"], fontsize=9, loc="left")
        kind = panel["type"]
        if kind == "timeseries":
            _timeseries(ax, panel, prom, unit)
        elif kind == "stat":
            _stat(ax, panel, prom, unit)
        elif kind == "bargauge":
            _bargauge(ax, panel, prom, unit)
        else:
            _table(ax, panel, prom)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def render_all(url: str, start: float, end: float, out_dir: Path, *, scrape_interval: float = 15.0) -> list[Path]:
    """One PNG per dashboard (``pipelines.png``, ...) from the Prometheus at ``url`` over ``[start, end]``."""
    prom = Prometheus(url, start, end, scrape_interval)
    return [
        render(
            json.loads((PACKAGE_DIR / name).read_text(encoding="utf-8")),
            prom,
            Path(out_dir) / name.replace(".json", ".png"),
        )
        for name in DASHBOARD_FILES
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.pictures", description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    parser.add_argument("--minutes", type=float, default=60, help="time range: the last N minutes")
    parser.add_argument("--scrape-interval", type=float, default=15, help="seconds between scrapes")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args(argv)
    end = time.time()
    for path in render_all(
        args.prometheus, end - args.minutes * 60, end, args.out, scrape_interval=args.scrape_interval
    ):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
