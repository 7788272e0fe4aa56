"""Annotation templates: ``{{ name }}`` placeholders filled from an alert's labels and facts, with no eval.

>>> t = Template("{{ pipeline }} failed {{ value }} times ({{ value | percent }})")
>>> t.render({"pipeline": "orders", "value": 3})
'orders failed 3 times (300%)'

A placeholder is a name and at most one filter. The names are the alert's
labels (``pipeline``, ``task``, ``dataset``, ``check``, ... and the rule's own
labels), ``alertname``, ``severity``, ``value`` (the observed value the rule
compared), ``run_id`` and ``run_url`` (a link to the run on the daemon's status
page). A name the rule can never fill is a configuration error, reported when
the rule is built (:meth:`Template.names`); a name the rule fills only
sometimes (``run_id`` of a timed rule) renders as an empty string. Filters:
``duration`` (seconds as ``1h30m``), ``percent`` (a fraction as ``12.5%``),
``number`` (up to four significant digits).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from alerts.durations import format_duration

__all__ = ["FILTERS", "Template", "render_value"]

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\|\s*([A-Za-z_]+)\s*)?\}\}")
_ANY_BRACES = re.compile(r"\{\{.*?\}\}")


def render_value(value: Any) -> str:
    """How ``{{ value }}`` prints a number: integers without a fraction, others with four significant digits."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


def _percent(value: Any) -> str:
    return "" if value is None else f"{float(value) * 100:.4g}%"


def _duration(value: Any) -> str:
    return "" if value is None else format_duration(float(value))


def _number(value: Any) -> str:
    return "" if value is None else f"{float(value):.4g}"


#: The filters a placeholder may name after ``|``.
FILTERS = {"duration": _duration, "percent": _percent, "number": _number}


class Template:
    """One annotation text; ``names()`` lists what it refers to, ``render(values)`` fills it in."""

    __slots__ = ("_parts", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        parts: list[str | tuple[str, str | None]] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(text):
            parts.append(text[pos : match.start()])
            parts.append((match.group(1), match.group(2)))
            pos = match.end()
        parts.append(text[pos:])
        rest = _PLACEHOLDER.sub("", text)
        if bad := _ANY_BRACES.search(rest):
            raise ValueError(
                f"template {text!r}: {bad.group(0)!r} is not a placeholder; write {{{{ name }}}} or "
                f"{{{{ name | filter }}}} with one of the filters {', '.join(sorted(FILTERS))}"
            )
        for part in parts:
            if isinstance(part, tuple) and part[1] is not None and part[1] not in FILTERS:
                raise ValueError(
                    f"template {text!r}: unknown filter {part[1]!r}; use one of {', '.join(sorted(FILTERS))}"
                )
        self._parts = tuple(parts)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"

    def names(self) -> set[str]:
        """The names the template refers to."""
        return {p[0] for p in self._parts if isinstance(p, tuple)}

    def render(self, values: Mapping[str, Any]) -> str:
        """The text with each placeholder filled; a name without a value renders as an empty string."""
        out = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            name, filt = part
            value = values.get(name)
            out.append(FILTERS[filt](value) if filt else render_value(value))
        return "".join(out)
