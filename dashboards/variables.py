"""Template variables substituted the way Grafana substitutes them into Prometheus queries.

The proof test and :mod:`dashboards.pictures` run the dashboards' queries against a real
Prometheus without a Grafana; this module is what Grafana would have done to them first.

>>> expr = 'rate(x{pipeline=~"$pipeline"}[$__rate_interval])'
>>> interpolate(expr, {"pipeline": regex_value(["orders", "a.b"]), **builtin_intervals(0, 3600, step=15)})
'rate(x{pipeline=~"(orders|a\\\\\\\\.b)"}[60s])'
>>> label_values_call("label_values(pipewarden_task_runs_total{pipeline=~\\".*\\"}, task)")
('pipewarden_task_runs_total{pipeline=~".*"}', 'task')
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

__all__ = [
    "ALL",
    "builtin_intervals",
    "duration",
    "interpolate",
    "label_values_call",
    "regex_value",
]

#: The value of a multi-value variable set to All: the dashboards' ``allValue``.
ALL = ".*"
#: Grafana's default minimum interval when the data source does not set ``timeInterval``.
DEFAULT_SCRAPE_INTERVAL = 15.0

_VARIABLE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\s*\(\s*(?:(?P<selector>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$", re.DOTALL)
_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")


def regex_value(values: Sequence[str] | None) -> str:
    """A multi-value variable's text inside ``=~"..."``: All (``None``) is ``.*``, one value is escaped,
    several are ``(a|b)``. Escapes are doubled because the text sits in a PromQL string (Grafana's
    ``prometheusSpecialRegexEscape``)."""
    if values is None:
        return ALL
    escaped = [_REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), v.replace("\\", "\\\\\\\\")) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def duration(seconds: float) -> str:
    """A Prometheus duration in whole seconds (at least ``1s``)."""
    return f"{max(1, math.ceil(seconds))}s"


def builtin_intervals(
    start: float, end: float, *, step: float, scrape_interval: float = DEFAULT_SCRAPE_INTERVAL
) -> dict[str, str]:
    """``$__range``, ``$__interval`` and ``$__rate_interval`` for a dashboard time range ``[start, end]``.

    ``step`` is the panel's interval (Grafana: the range over the panel's data points, never
    below the data source's ``timeInterval``, the scrape interval). ``$__rate_interval`` is
    Grafana's ``max($__interval + scrape interval, 4 * scrape interval)``.
    """
    interval = max(step, scrape_interval)
    return {
        "__range": duration(end - start),
        "__range_s": str(max(1, math.ceil(end - start))),
        "__interval": duration(interval),
        "__rate_interval": duration(max(interval + scrape_interval, 4 * scrape_interval)),
    }


def interpolate(expr: str, variables: Mapping[str, str]) -> str:
    """Replace ``$name``, ``${name}`` and ``[[name]]`` by ``variables[name]``; unknown names stay."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return variables.get(name, m.group(0))

    return _VARIABLE.sub(sub, expr)


def label_values_call(query: str) -> tuple[str | None, str]:
    """``(selector, label)`` of a Grafana ``label_values([selector,] label)`` variable query.

    Raises ``ValueError`` for anything else (Grafana's other query functions are not used here).
    """
    m = _LABEL_VALUES.match(query)
    if m is None:
        raise ValueError(f"not a label_values(selector, label) query: {query!r}")
    return m.group("selector"), m.group("label")
