"""Distribution drift of columns against a reference profile.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> ref = pd.DataFrame({"x": rng.normal(size=5000)})
>>> drift("x", reference=ref)(pd.DataFrame({"x": rng.normal(size=5000)}))[0].status
<Status.PASS: 'pass'>

Thresholds are effect sizes with a sample-size noise floor (see
``docs/checks.md``): a score flags only when the shift is large enough to
matter *and* larger than what two samples of the same distribution of these
sizes would show (a tail probability of about 0.001). So large samples do not
cry wolf over trivial shifts, and small samples do not cry wolf over noise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from checks.base import Check, CheckContext
from checks.distances import (
    CategoricalComparison,
    NumericComparison,
    _dof,
    compare_categorical,
    compare_numeric,
    js_distance,
    psi,
)
from checks.errors import CheckInputError
from checks.frame import as_columns, column_kind, numeric_values, require_column, require_frame
from checks.profile import ColumnProfile, Profile, category_counts, profile
from checks.result import CheckResult, Kind, Status
from checks.thresholds import (
    CATEGORICAL_METHODS,
    DEFAULT_THRESHOLDS,
    METHODS,
    NUMERIC_METHODS,
    limits,
    parse_methods,
    parse_thresholds,
)

__all__ = ["DEFAULT_THRESHOLDS", "Drift", "METHODS", "drift"]

class Drift(Check):
    """Per-column drift scores against a reference; one result per column and method.

    ``reference`` is a :class:`Profile`, a DataFrame (profiled once), the name of
    a profile in the store, or None: the profile of the previous run, stored
    under the dataset's name (a moving baseline; the first run passes with
    "no reference yet"). ``method`` is one name or a list; the default is
    ``ks`` for numeric and datetime columns and ``chi2`` for categorical ones.
    Methods that do not apply to a column's kind are skipped for it.
    """

    kind = Kind.DRIFT
    needs_store: ClassVar[bool] = True  # only used with reference=None or a profile name

    def __init__(
        self,
        columns: str | Sequence[str] | None = None,
        reference: Profile | pd.DataFrame | str | None = None,
        method: str | Sequence[str] | None = None,
        *,
        dataset: str | None = None,
        bins: int = 10,
        thresholds: Mapping[str, Any] | None = None,
        p_values: bool = False,
        name: str | None = None,
        severity: str = "fail",
    ) -> None:
        self.columns = as_columns(columns)
        label = ",".join(self.columns) if self.columns else "*"
        super().__init__(name=name or f"drift({label})", severity=severity)
        if not isinstance(reference, Profile | pd.DataFrame | str | type(None)):
            raise TypeError(
                "drift reference must be a Profile, a DataFrame, a stored profile's name "
                f"or None — got {type(reference).__name__}"
            )
        if int(bins) < 2:
            raise ValueError(f"drift bins must be at least 2 — got {bins}")
        self.reference = reference
        self.methods = parse_methods(method)
        self.dataset = dataset
        self.bins = int(bins)
        self.thresholds = parse_thresholds(thresholds)
        self.p_values = p_values
        self._ref_profile: Profile | None = reference if isinstance(reference, Profile) else None
        # a Profile or DataFrame reference needs no store: say so per instance, so a runner
        # does not open one for nothing (the class-level answer stays True)
        vars(self)["needs_store"] = reference is None or isinstance(reference, str)

    # -- reference -------------------------------------------------------------------------
    def _stored_name(self, ctx: CheckContext) -> str:
        if isinstance(self.reference, str):
            return self.reference
        dataset = self.dataset or ctx.dataset
        if not dataset:
            raise CheckInputError(
                "reference=None keeps the previous run's profile under the dataset's "
                "name, but no dataset is named: pass dataset= or set context.dataset"
            )
        return dataset

    def _resolve(self, ctx: CheckContext) -> Profile | None:
        if self._ref_profile is not None:
            return self._ref_profile
        if isinstance(self.reference, pd.DataFrame):
            cols = self.columns or [str(c) for c in self.reference.columns]
            present = [c for c in cols if c in self.reference.columns]
            self._ref_profile = profile(self.reference, present)
            return self._ref_profile
        if ctx.store is None:
            raise CheckInputError(
                "needs a CheckStore for a stored reference profile; pass context.store "
                "(checks.MemoryStore or the agent's run store)"
            )
        name = self._stored_name(ctx)
        d = ctx.store.load_profile(name)
        if d is None:
            if isinstance(self.reference, str):
                raise CheckInputError(
                    f"no profile named {name!r} in the store; save one with "
                    f"checks.profile(df).save(store, {name!r})"
                )
            return None
        return Profile.from_dict(d)

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, df: Any, context: CheckContext) -> Iterator[CheckResult]:
        frame = require_frame(df)
        ref = self._resolve(context)
        columns = self.columns or [c for c in (ref.columns if ref else map(str, frame.columns))]
        if ref is None:  # first run of a moving baseline
            current = profile(frame, [c for c in columns if c in frame.columns], now=context.now)
            assert context.store is not None
            current.save(context.store, self._stored_name(context))
            for c in columns:
                yield self.result(
                    Status.PASS,
                    column=c,
                    message=f"{self.name}: no reference yet; "
                    "saved this frame's profile as the reference",
                )
            return
        results: list[CheckResult] = []
        for col in columns:
            results.extend(self._column(frame, ref, col))
        yield from results
        if self.reference is None:  # move the baseline, unless this frame failed
            assert context.store is not None
            if not any(r.details.get("verdict") == "fail" for r in results):
                profile(frame, [c for c in columns if c in frame.columns], now=context.now).save(
                    context.store, self._stored_name(context)
                )

    def _error(self, col: str, message: str) -> CheckResult:
        return self.result(Status.ERROR, column=col, message=f"{self.name}: {message}")

    def _column(self, frame: pd.DataFrame, ref: Profile, col: str) -> list[CheckResult]:
        cref = ref.columns.get(col)
        if cref is None:
            have = ", ".join(ref.columns) or "none"
            return [
                self._error(col, f"column {col!r} is not in the reference profile; it has: {have}")
            ]
        try:
            s = require_column(frame, col)
        except CheckInputError as exc:
            return [self._error(col, str(exc))]
        kind = column_kind(s.dtype)
        ref_kind = "numeric" if cref.kind == "datetime" else cref.kind
        cur_kind = "numeric" if kind == "datetime" else kind
        if cref.kind == "other" or kind == "other":
            return [
                self._error(
                    col,
                    f"column {col!r} has dtype {s.dtype} (reference: {cref.dtype}); "
                    "drift needs numbers, timestamps or categories",
                )
            ]
        if ref_kind != cur_kind:
            return [
                self._error(
                    col,
                    f"column {col!r} is {kind} ({s.dtype}) but {cref.kind} in the "
                    f"reference ({cref.dtype})",
                )
            ]
        applicable = NUMERIC_METHODS if ref_kind == "numeric" else CATEGORICAL_METHODS
        wanted = self.methods or (("ks",) if ref_kind == "numeric" else ("chi2",))
        methods = [m for m in wanted if m in applicable]
        if not methods:
            return [
                self._error(
                    col,
                    f"column {col!r} is {ref_kind}; methods {', '.join(wanted)} do not "
                    f"apply — use {', '.join(applicable)}",
                )
            ]
        if ref_kind == "numeric":
            return self._numeric(s, cref, col, methods)
        return self._categorical(s, cref, col, methods)

    def _numeric(
        self, s: pd.Series, cref: ColumnProfile, col: str, methods: list[str]
    ) -> list[CheckResult]:
        try:
            x = numeric_values(s)
        except (TypeError, ValueError) as exc:
            return [
                self._error(col, f"column {col!r} ({s.dtype}) cannot be read as numbers: {exc}")
            ]
        finite = np.isfinite(x)
        n_finite = int(np.count_nonzero(finite))
        if n_finite < len(x):
            x = x[finite]
        if n_finite == 0 or cref.finite == 0:
            which = "current frame" if n_finite == 0 else "reference"
            return [self._error(col, f"column {col!r} has no finite values in the {which}")]
        cmp = compare_numeric(cref, x, tails="wasserstein" in methods)
        base = {
            "n_current": n_finite,
            "n_reference": cref.finite,
            "nulls_current": int(len(s) - n_finite),
            "nulls_reference": cref.nulls,
        }
        out = []
        for m in methods:
            score, dof, extra = self._numeric_score(cmp, m)
            out.append(self._judge(col, m, score, cmp.n_cur, cmp.n_ref, dof, {**base, **extra}))
        return out

    def _numeric_score(self, cmp: NumericComparison, m: str) -> tuple[float, int, dict[str, Any]]:
        if m == "ks":
            return cmp.ks(), 1, {}
        if m == "wasserstein":
            return (
                cmp.wasserstein(),
                1,
                {
                    "wasserstein_raw": cmp.wasserstein_raw(),
                    "scale": cmp.scale,
                    "spread": cmp.spread,
                },
            )
        cur, ref = cmp.bin_counts(self.bins)
        score = psi(cur, ref) if m == "psi" else js_distance(cur, ref)
        return score, _dof(cur, ref), {"bins": self.bins}

    def _categorical(
        self, s: pd.Series, cref: ColumnProfile, col: str, methods: list[str]
    ) -> list[CheckResult]:
        try:
            labels, counts = category_counts(s)
        except TypeError as exc:
            return [self._error(col, f"column {col!r} ({s.dtype}) holds unhashable values: {exc}")]
        cmp: CategoricalComparison = compare_categorical(cref, labels, counts)
        if cmp.n_cur == 0 or cmp.n_ref == 0:
            which = "current frame" if cmp.n_cur == 0 else "reference"
            return [self._error(col, f"column {col!r} has no non-null values in the {which}")]
        base: dict[str, Any] = {
            "n_current": cmp.n_cur,
            "n_reference": cmp.n_ref,
            "new_categories": cmp.new[:20],
            "vanished_categories": cmp.vanished[:20],
            "categories": len(cmp.labels),
        }
        out = []
        for m in methods:
            score = cmp.psi() if m == "psi" else cmp.js() if m == "js" else cmp.chi2()
            extra = dict(base)
            if m == "chi2":
                inv = 1 / cmp.n_cur + 1 / cmp.n_ref
                extra["effect_size_w"] = math.sqrt(score * inv)
            out.append(self._judge(col, m, score, cmp.n_cur, cmp.n_ref, cmp.dof, extra))
        return out

    def _judge(
        self, col: str, method: str, score: float, n: int, m: int, dof: int, details: dict[str, Any]
    ) -> CheckResult:
        lim = limits(method, n, m, dof, self.thresholds[method], details.get("spread", 1.0))
        if score >= lim.fail:
            verdict, status, thr = "fail", Status.FAIL, lim.fail
        elif score >= lim.warn:
            verdict, status, thr = "warn", Status.WARN, lim.warn
        else:
            verdict, status, thr = "pass", Status.PASS, lim.warn
        details = {
            **details,
            "method": method,
            "verdict": verdict,
            "warn_limit": lim.warn,
            "fail_limit": lim.fail,
            "noise_floor": lim.noise,
            "effect_floor": {"warn": lim.effect[0], "fail": lim.effect[1]},
        }
        if self.p_values and method in ("ks", "chi2"):
            details["p_value"] = _p_value(method, score, n, m, dof)
        word = {
            "pass": "within",
            "warn": "at or above the warn limit",
            "fail": "at or above the fail limit",
        }
        return self.result(
            status,
            observed=score,
            threshold=thr,
            column=col,
            measure=method,
            details=details,
            message=f"{self.name}: {col} {method}={score:.4g} {word[verdict]} "
            f"({lim.warn:.4g} warn / {lim.fail:.4g} fail)",
        )


def _p_value(method: str, score: float, n: int, m: int, dof: int) -> float:
    from scipy import stats  # only when asked: importing checks must not import scipy

    if method == "ks":
        return float(stats.kstwobign.sf(score * math.sqrt(n * m / (n + m))))
    return float(stats.chi2.sf(score, dof))


def drift(
    columns: str | Sequence[str] | None = None,
    reference: Profile | pd.DataFrame | str | None = None,
    method: str | Sequence[str] | None = None,
    **kwargs: Any,
) -> Drift:
    """Drift of ``columns`` against ``reference`` (see :class:`Drift`)."""
    return Drift(columns, reference, method, **kwargs)
