"""Durations as people write them in ``pipewarden.yml``: ``30s``, ``5m``, ``1h30m``, ``2d``.

>>> parse_duration("1h30m"), parse_duration(90), format_duration(5400.0)
(5400.0, 90.0, '1h30m')

The units are Prometheus's (``ms``, ``s``, ``m``, ``h``, ``d``, ``w``), so a
``for:`` reads the same in pipewarden.yml and in a Prometheus rule file.
"""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: object) -> float:
    """Seconds from a number of seconds or a string like ``'90s'``, ``'5m'``, ``'1h30m'``.

    Raises ``ValueError`` saying what is allowed; negative, infinite and NaN values are refused.
    """
    if isinstance(value, bool):
        raise ValueError(f"a duration is a number of seconds or a string like '5m' or '1h30m' — got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _PART.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise ValueError(
                f"cannot read {value!r} as a duration; write e.g. '30s', '5m', '1h30m', '2d' "
                "(units ms, s, m, h, d, w) or a number of seconds"
            )
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ValueError(f"a duration is a number of seconds or a string like '5m' — got {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be finite and not negative — got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form: ``0s``, ``45s``, ``5m``, ``1h30m``, ``2d3h`` (at most two units, rounded down)."""
    if not math.isfinite(seconds):
        return str(seconds)
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms" if seconds else "0s"
    out = []
    rest = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, rest = divmod(rest, size)
        if n:
            out.append(f"{n}{unit}")
        if len(out) == 2:
            break
    return "".join(out)
