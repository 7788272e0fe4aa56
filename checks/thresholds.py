"""Drift limits: an effect-size floor that matters, raised to the sampling noise of the sizes.

>>> limits("ks", 1_000_000, 1_000_000, 1, DEFAULT_THRESHOLDS["ks"]).warn
0.03
>>> round(limits("ks", 1_000, 1_000, 1, DEFAULT_THRESHOLDS["ks"]).warn, 4)
0.0872

The reasoning behind each default is in ``docs/checks.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from checks.distances import chi2_quantile

__all__ = [
    "CATEGORICAL_METHODS",
    "DEFAULT_THRESHOLDS",
    "Limits",
    "METHODS",
    "NOISE_TAIL",
    "apply_min_effect",
    "ks_noise",
    "normal_quantile",
    "NUMERIC_METHODS",
    "limits",
    "parse_methods",
    "parse_thresholds",
]

NUMERIC_METHODS = ("psi", "ks", "wasserstein", "js")
CATEGORICAL_METHODS = ("psi", "js", "chi2")
METHODS = ("psi", "ks", "wasserstein", "js", "chi2")

#: Effect-size floors (warn, fail) per method. chi2's are Cohen's w, not the statistic.
DEFAULT_THRESHOLDS: dict[str, tuple[float, float]] = {
    "psi": (0.1, 0.25),  # the credit-scoring convention
    "ks": (0.03, 0.10),  # 3% / 10% of the mass moved across some value
    "wasserstein": (0.1, 0.25),  # in robust standard deviations of the reference
    "js": (0.1, 0.2),  # Jensen-Shannon distance, base 2
    "chi2": (0.1, 0.3),  # Cohen's w: small / medium
}
#: Tail probability of the noise floor for one drift check on one frame, all its comparisons together.
NOISE_TAIL = 0.001
_WASSERSTEIN_NOISE = 4.0  # times sqrt(1/n + 1/m) times the CDF spread at the 0.001 tail; from simulation


def ks_noise(tail: float = NOISE_TAIL) -> float:
    """c with P(K > c) = tail for the Kolmogorov distribution (2 exp(-2 c^2), exact in the far tail): 1.95 at 0.001."""
    return math.sqrt(math.log(2.0 / tail) / 2.0)


def normal_quantile(tail: float = NOISE_TAIL) -> float:
    """z with P(Z > z) = tail: 3.09 at 0.001."""
    return NormalDist().inv_cdf(1.0 - tail)


@dataclass(frozen=True)
class Limits:
    """Warn and fail limits on a score, the noise floor in them and the effect floors used."""

    warn: float
    fail: float
    noise: float
    effect: tuple[float, float]


def limits(
    method: str,
    n: int,
    m: int,
    dof: int,
    effect: tuple[float, float],
    spread: float = 1.0,
    tail: float = NOISE_TAIL,
) -> Limits:
    """Warn and fail limits on the method's score for samples of n and m values.

    ``spread`` (Wasserstein only) is the reference's integral of sqrt(F(1-F))
    divided by its scale: heavy tails make the distance between two samples of
    one distribution larger, and this factor grows with them. ``tail`` is the
    probability that two independent samples of one distribution reach the
    noise floor (a drift check divides its 0.001 among its comparisons).
    """
    inv = 1.0 / max(n, 1) + 1.0 / max(m, 1)
    z = normal_quantile(tail)
    if method == "ks":
        noise = ks_noise(tail) * math.sqrt(inv)
        ew, ef = effect
    elif method == "psi":
        noise = chi2_quantile(dof, z) * inv
        ew, ef = effect
    elif method == "js":
        noise = math.sqrt(chi2_quantile(dof, z) * inv / (8 * math.log(2)))
        ew, ef = effect
    elif method == "wasserstein":
        noise = _WASSERSTEIN_NOISE * ks_noise(tail) / ks_noise() * spread * math.sqrt(inv)
        ew, ef = effect
    else:  # chi2: the statistic that an effect w reaches with these sizes is w^2 / (1/n + 1/m)
        noise = chi2_quantile(dof, z)
        ew, ef = effect[0] ** 2 / inv, effect[1] ** 2 / inv
    return Limits(warn=max(ew, noise), fail=max(ef, noise), noise=noise, effect=effect)


def parse_methods(method: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if method is None or method == "auto":
        return None
    names = (method,) if isinstance(method, str) else tuple(method)
    bad = [m for m in names if m not in METHODS]
    if bad:
        raise ValueError(f"drift method must be one of {', '.join(METHODS)} — got {bad[0]!r}")
    return names


def parse_thresholds(thresholds: Mapping[str, Any] | None) -> dict[str, tuple[float, float]]:
    out = dict(DEFAULT_THRESHOLDS)
    for k, v in (thresholds or {}).items():
        if k not in METHODS:
            raise ValueError(f"drift thresholds key must be one of {', '.join(METHODS)} — got {k!r}")
        if isinstance(v, int | float):
            out[k] = (float(v), float(v))
        else:
            w, f = (float(x) for x in v)
            if w > f:
                raise ValueError(f"drift thresholds[{k}]: warn {w} is above fail {f}")
            out[k] = (w, f)
    return out


def apply_min_effect(
    floors: dict[str, tuple[float, float]], min_effect: float | Mapping[str, float] | None
) -> dict[str, tuple[float, float]]:
    """Effect floors raised to ``min_effect`` (one number for every method, or a number per method).

    The number is in each method's own unit: the KS statistic, PSI, JS distance,
    robust standard deviations for Wasserstein, Cohen's w for chi2.
    """
    if min_effect is None:
        return floors
    if isinstance(min_effect, Mapping):
        bad = [k for k in min_effect if k not in METHODS]
        if bad:
            raise ValueError(f"drift min_effect key must be one of {', '.join(METHODS)} — got {bad[0]!r}")
        wanted = {k: float(v) for k, v in min_effect.items()}
    elif isinstance(min_effect, int | float) and not isinstance(min_effect, bool):
        wanted = dict.fromkeys(METHODS, float(min_effect))
    else:
        raise TypeError(f"drift min_effect must be a number or a mapping of method -> number — got {min_effect!r}")
    if any(v < 0 or v != v for v in wanted.values()):
        raise ValueError(f"drift min_effect must not be negative — got {min_effect!r}")
    out = dict(floors)
    for m, v in wanted.items():
        w, f = out[m]
        out[m] = (max(w, v), max(f, v))
    return out
