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
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd

from checks.base import Check, CheckContext, CheckStore
from checks.distances import (
    CategoricalComparison,
    NumericComparison,
    NumericCounts,
    _dof,
    compare_categorical,
    compare_counts,
    count_numeric,
    js_distance,
    psi,
)
from checks.errors import CheckInputError
from checks.frame import (
    as_columns,
    column_kind,
    null_count,
    numeric_values,
    require_column,
    require_frame,
    text_timestamps,
)
from checks.merge import merge_profiles
from checks.profile import DEFAULT_TOP_K, ColumnProfile, Profile, category_counts, profile
from checks.result import CheckResult, Kind, Status
from checks.stream import Plan
from checks.thresholds import (
    CATEGORICAL_METHODS,
    DEFAULT_THRESHOLDS,
    METHODS,
    NOISE_TAIL,
    NUMERIC_METHODS,
    apply_min_effect,
    limits,
    parse_methods,
    parse_thresholds,
)

__all__ = ["BASELINES", "DEFAULT_THRESHOLDS", "Drift", "METHODS", "drift"]

#: How a moving baseline is chosen among the accepted profiles of earlier runs.
BASELINES = ("previous", "window", "fixed")
#: A column whose values are at least this share distinct is identifier-like.
IDENTIFIER_SHARE = 0.95
_IDENTIFIER_MIN_VALUES = 50
#: Run profiles a store keeps per check (pinned ones are kept besides).
PROFILES_KEPT = 100


class _Score(NamedTuple):
    """A score waiting for its limits, which depend on how many comparisons the check makes."""

    column: str
    method: str
    score: float
    n: int
    m: int
    dof: int
    details: dict[str, Any]


class Drift(Check):
    """Per-column drift scores against a reference; one result per column and method.

    ``reference`` is a :class:`Profile`, a DataFrame (profiled once), the name of
    a profile in the store (saved for this pipeline, else for every pipeline),
    or None: a baseline made of earlier runs of this check on the dataset, kept
    in the store under the context's pipeline and the dataset. Each run's
    profile is recorded, and accepted as a baseline unless the run breached a
    fail limit or a column could not be checked; :func:`checks.accept_baseline`
    accepts a run after the fact (a new normal). ``baseline`` chooses which
    accepted profiles are the reference: ``previous`` (the newest), ``window``
    (the newest ``window`` ones, merged) or ``fixed`` (the latest one accepted
    by hand, else the first run's). The first run passes with "no reference
    yet" for each column it can check, and is an error for a column it cannot.

    ``method`` is one name or a list; the default is ``ks`` for numeric and
    datetime columns (text holding ISO 8601 timestamps counts as datetime) and
    ``chi2`` for categorical ones. Methods that do not apply to a column's kind
    are skipped for it. ``top_k`` is the profile's cardinality: up to that many
    categories are compared one by one, beyond it every category is hashed into
    ``top_k`` buckets shared by both sides. ``min_effect`` raises the effect
    floors: no score below it is flagged. With ``columns=None`` every column is
    compared except identifier-like ones (at least 95% distinct text or
    integers), each reported as skipped.
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
        baseline: str = "previous",
        window: int = 5,
        top_k: int = DEFAULT_TOP_K,
        bins: int = 10,
        thresholds: Mapping[str, Any] | None = None,
        min_effect: float | Mapping[str, float] | None = None,
        p_values: bool = False,
        name: str | None = None,
        severity: str = "fail",
        on_error: str = "fail",
    ) -> None:
        self.columns = as_columns(columns)
        label = ",".join(self.columns) if self.columns else "*"
        super().__init__(name=name or f"drift({label})", severity=severity, on_error=on_error)
        if not isinstance(reference, Profile | pd.DataFrame | str | type(None)):
            raise TypeError(
                "drift reference must be a Profile, a DataFrame, a stored profile's name "
                f"or None — got {type(reference).__name__}"
            )
        if baseline not in BASELINES:
            raise ValueError(f"drift baseline must be one of {', '.join(BASELINES)} — got {baseline!r}")
        if baseline != "previous" and reference is not None:
            raise ValueError(
                f"drift baseline={baseline!r} chooses among earlier runs' profiles, so it needs "
                "reference=None — got a reference as well"
            )
        if int(window) < 1:
            raise ValueError(f"drift window must be at least 1 — got {window}")
        if int(top_k) < 1:
            raise ValueError(f"drift top_k must be at least 1 — got {top_k}")
        if int(bins) < 2:
            raise ValueError(f"drift bins must be at least 2 — got {bins}")
        self.reference = reference
        self.methods = parse_methods(method)
        self.dataset = dataset
        self.baseline = baseline
        self.window = int(window)
        self.top_k = int(top_k)
        self.bins = int(bins)
        self.thresholds = apply_min_effect(parse_thresholds(thresholds), min_effect)
        self.p_values = p_values
        self._ref_profile: Profile | None = reference if isinstance(reference, Profile) else None
        # a Profile or DataFrame reference needs no store: say so per instance, so a runner
        # does not open one for nothing (the class-level answer stays True)
        vars(self)["needs_store"] = reference is None or isinstance(reference, str)

    # -- reference -------------------------------------------------------------------------
    def _dataset(self, ctx: CheckContext) -> str:
        dataset = self.dataset or ctx.dataset
        if not dataset:
            raise CheckInputError(
                "reference=None keeps earlier runs' profiles under the dataset's "
                "name, but no dataset is named: pass dataset= or set context.dataset"
            )
        return dataset

    def _store(self, ctx: CheckContext) -> CheckStore:
        if ctx.store is None:
            raise CheckInputError(
                "needs a CheckStore for a stored reference profile; pass context.store "
                "(checks.MemoryStore or the agent's run store)"
            )
        return ctx.store

    def _resolve(self, ctx: CheckContext) -> tuple[Profile | None, dict[str, Any]]:
        """The reference profile (None: no baseline yet) and what it is, for the details."""
        if self._ref_profile is not None:
            return self._ref_profile, {"reference": "profile"}
        if isinstance(self.reference, pd.DataFrame):
            cols = self.columns or [str(c) for c in self.reference.columns]
            present = [c for c in cols if c in self.reference.columns]
            self._ref_profile = profile(self.reference, present, top_k=self.top_k)
            return self._ref_profile, {"reference": "profile"}
        store = self._store(ctx)
        if isinstance(self.reference, str):
            name = self.reference
            d = store.load_profile(ctx.pipeline, name)
            if d is None and ctx.pipeline:
                d = store.load_profile("", name)  # saved for every pipeline
            if d is None:
                raise CheckInputError(
                    f"no profile named {name!r} in the store for pipeline {ctx.pipeline!r} or for every "
                    f"pipeline; save one with checks.profile(df).save(store, {name!r})"
                )
            return Profile.from_dict(d), {"reference": name}
        dataset = self._dataset(ctx)
        limit = self.window if self.baseline == "window" else 1 if self.baseline == "previous" else 1_000_000
        rows = store.profiles(ctx.pipeline, dataset, self.name, limit=limit)
        if not rows:
            return None, {"baseline": self.baseline}
        if self.baseline == "fixed":
            pinned = [r for r in rows if r.pinned is not None]
            rows = [max(pinned, key=lambda r: r.pinned or r.created_at)] if pinned else [rows[-1]]
        ref = merge_profiles([Profile.from_dict(r.profile) for r in rows])
        return ref, {"baseline": self.baseline, "baseline_runs": [r.run_id for r in rows]}

    # -- evaluation ------------------------------------------------------------------------
    def plan(self, context: CheckContext, prototype: pd.DataFrame) -> Plan:
        from checks.drift_stream import DriftPlan

        return DriftPlan(self, context, prototype)

    def evaluate(self, df: Any, context: CheckContext) -> Iterator[CheckResult]:
        frame = require_frame(df)
        history = self.reference is None
        if history:
            self._store(context)
            self._dataset(context)
        ref, about = self._resolve(context)
        results: list[CheckResult] = []
        columns = self._columns(frame, ref, results)
        if ref is None:
            results += self._first_run(lambda col: _uncheckable(frame, col), columns, context)
        else:
            found: list[CheckResult | _Score] = []
            for col in columns:
                if self.columns is None and col not in ref.columns:
                    found.append(self._new_column(col))
                    continue
                found.extend(self._column(frame, ref, col, about))
            results += self._judge_all(found)
        if history:
            self._record(
                lambda cols: profile(frame, cols, top_k=self.top_k, now=context.now), frame, columns, results, context
            )
        yield from results

    def _columns(
        self,
        frame: pd.DataFrame,
        ref: Profile | None,
        out: list[CheckResult],
        share_of: Callable[[str], float | None] | None = None,
    ) -> list[str]:
        """The columns to compare; with columns=None, identifier-like ones are reported as skipped.

        ``share_of(column)`` gives a column's distinct share when it is identifier-like (default: from ``frame``).
        """
        if self.columns is not None:
            return list(self.columns)
        names = [str(c) for c in frame.columns]
        if ref is not None:
            names += [c for c in ref.columns if c not in names]
        keep = []
        for c in names:
            cref = ref.columns.get(c) if ref is not None else None
            if c not in frame.columns:
                share = None
            elif share_of is not None:
                share = share_of(c)
            else:
                share = _identifier_share(frame[c], cref)
            if share is None:
                keep.append(c)
                continue
            out.append(
                self.result(
                    Status.PASS,
                    column=c,
                    details={"skipped": "identifier-like", "distinct_share": share},
                    message=f"{self.name}: {c} skipped: identifier-like ({share:.1%} of its values are "
                    "distinct), so its distribution says nothing; name it in columns= to compare it anyway, "
                    "or check it with unique()",
                )
            )
        return keep

    def _new_column(self, col: str) -> CheckResult:
        return self.result(
            Status.PASS, column=col, message=f"{self.name}: {col} is new since the reference; no reference yet"
        )

    def _judge_all(self, found: list[CheckResult | _Score]) -> list[CheckResult]:
        # one false alarm in a thousand runs for the check as a whole: the tail is shared out
        tail = NOISE_TAIL / max(sum(isinstance(f, _Score) for f in found), 1)
        return [self._judge(f, tail) if isinstance(f, _Score) else f for f in found]

    def _first_run(
        self, problem_of: Callable[[str], str | None], columns: list[str], ctx: CheckContext
    ) -> list[CheckResult]:
        """ "no reference yet" for each column that can be checked, an error for each that cannot."""
        store, dataset = self._store(ctx), self._dataset(ctx)
        legacy = store.load_profile("", dataset) is not None
        out = []
        for col in columns:
            problem = problem_of(col)
            if problem:
                out.append(self._error(col, problem))
                continue
            message = f"{self.name}: no reference yet; this frame's profile is the baseline from now on"
            status = Status.PASS
            if legacy:
                status = Status.WARN
                message = (
                    f"{self.name}: no reference yet for pipeline {ctx.pipeline!r}; a profile named "
                    f"{dataset!r} kept before history was kept per pipeline was not used, because it "
                    "cannot be told which pipeline it belongs to; this frame's profile is the baseline now"
                )
            out.append(self.result(status, column=col, details={"baseline": self.baseline}, message=message))
        return out

    def _record(
        self,
        profile_of: Callable[[list[str]], Profile],
        frame: pd.DataFrame,
        columns: list[str],
        results: list[CheckResult],
        ctx: CheckContext,
    ) -> None:
        """Keep this run's profile; it is a baseline unless a limit was breached or a column was unusable.

        ``frame`` gives the columns (it may have no rows); ``profile_of(columns)`` the profile.
        """
        store, dataset = self._store(ctx), self._dataset(ctx)
        bad = {r.column for r in results if r.status is Status.ERROR}
        present = [c for c in columns if c in frame.columns and c not in bad]
        failed = any(r.details.get("verdict") == "fail" or r.status is Status.ERROR for r in results)
        first = not store.profiles(ctx.pipeline, dataset, self.name, limit=1, accepted_only=False)
        store.add_profile(
            ctx.pipeline,
            dataset,
            self.name,
            profile_of(present).to_dict(),
            run_id=ctx.run_id,
            now=ctx.now,
            accepted=not failed,
            pinned=first and not failed,
            keep=PROFILES_KEPT,
        )

    def _error(self, col: str, message: str) -> CheckResult:
        return self.result(Status.ERROR, column=col, message=f"{self.name}: {message}")

    def _column(self, frame: pd.DataFrame, ref: Profile, col: str, about: dict[str, Any]) -> list[CheckResult | _Score]:
        setup = self._setup(frame, ref, col)
        if isinstance(setup, list):
            return list[CheckResult | _Score](setup)
        ref_kind, methods, text = setup
        s, cref = frame[col], ref.columns[col]
        stamps = None
        if text:
            stamps = text_timestamps(s)
            if stamps is None:
                return [self._not_text(col, s.dtype)]
        if ref_kind == "numeric":
            return self._numeric(s, cref, col, methods, about, stamps)
        return self._categorical(s, cref, col, methods, about)

    def _not_text(self, col: str, dtype: Any) -> CheckResult:
        return self._error(
            col,
            f"column {col!r} held ISO 8601 timestamps as text in the reference, "
            f"but not every value of it ({dtype}) is one now",
        )

    def _setup(self, frame: pd.DataFrame, ref: Profile, col: str) -> list[CheckResult] | tuple[str, list[str], bool]:
        """What a column is compared as, from its dtype alone: (numeric or categorical, methods, text to parse).

        Or the error that says why it cannot be compared. ``frame`` may have no rows.
        """
        cref = ref.columns.get(col)
        if cref is None:
            have = ", ".join(ref.columns) or "none"
            return [self._error(col, f"column {col!r} is not in the reference profile; it has: {have}")]
        try:
            s = require_column(frame, col)
        except CheckInputError as exc:
            return [self._error(col, str(exc))]
        kind = column_kind(s.dtype)
        text = cref.kind == "datetime" and cref.text and kind == "categorical"
        if text:
            kind = "datetime"
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
                    f"column {col!r} is {kind} ({s.dtype}) but {cref.kind} in the reference ({cref.dtype})",
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
        return ref_kind, methods, text

    def _numeric(
        self,
        s: pd.Series,
        cref: ColumnProfile,
        col: str,
        methods: list[str],
        about: dict[str, Any],
        stamps: np.ndarray | None = None,
    ) -> list[CheckResult | _Score]:
        try:
            x = numeric_values(s) if stamps is None else stamps
        except (TypeError, ValueError) as exc:
            return [self._error(col, f"column {col!r} ({s.dtype}) cannot be read as numbers: {exc}")]
        finite = np.isfinite(x)
        if np.count_nonzero(finite) < len(x):
            x = x[finite]
        counts = count_numeric(cref, x, tails="wasserstein" in methods) if cref.finite else None
        return self._numeric_scores(cref, counts, len(s), len(x), col, methods, about, stamps is not None)

    def _numeric_scores(
        self,
        cref: ColumnProfile,
        counts: NumericCounts | None,
        rows: int,
        n_finite: int,
        col: str,
        methods: list[str],
        about: dict[str, Any],
        parsed: bool,
    ) -> list[CheckResult | _Score]:
        """Scores from the current column's counts on the reference grid (additive: a stream sums its batches')."""
        if n_finite == 0 or cref.finite == 0 or counts is None:
            which = "current frame" if n_finite == 0 else "reference"
            return [self._error(col, f"column {col!r} has no finite values in the {which}")]
        cmp = compare_counts(cref, counts)
        base = {
            **about,
            "n_current": n_finite,
            "n_reference": cref.finite,
            "nulls_current": int(rows - n_finite),
            "nulls_reference": cref.nulls,
        }
        if parsed:
            base["parsed"] = "ISO 8601 text as timestamps"
        out: list[CheckResult | _Score] = []
        for m in methods:
            score, dof, extra = self._numeric_score(cmp, m)
            out.append(_Score(col, m, score, cmp.n_cur, cmp.n_ref, dof, {**base, **extra}))
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
        self, s: pd.Series, cref: ColumnProfile, col: str, methods: list[str], about: dict[str, Any]
    ) -> list[CheckResult | _Score]:
        try:
            labels, counts = category_counts(s)
        except TypeError as exc:
            return [self._error(col, f"column {col!r} ({s.dtype}) holds unhashable values: {exc}")]
        return self._categorical_scores(compare_categorical(cref, labels, counts), col, methods, about)

    def _categorical_scores(
        self, cmp: CategoricalComparison, col: str, methods: list[str], about: dict[str, Any]
    ) -> list[CheckResult | _Score]:
        if cmp.n_cur == 0 or cmp.n_ref == 0:
            which = "current frame" if cmp.n_cur == 0 else "reference"
            return [self._error(col, f"column {col!r} has no non-null values in the {which}")]
        base: dict[str, Any] = {
            **about,
            "n_current": cmp.n_cur,
            "n_reference": cmp.n_ref,
            "new_categories": cmp.new[:20],
            "vanished_categories": cmp.vanished[:20],
            "categories": len(cmp.labels),
        }
        if cmp.hashed:
            base["hashed_buckets"] = cmp.hashed  # more categories than top_k: new ones cannot be named
        out: list[CheckResult | _Score] = []
        for m in methods:
            score = cmp.psi() if m == "psi" else cmp.js() if m == "js" else cmp.chi2()
            extra = dict(base)
            if m == "chi2":
                inv = 1 / cmp.n_cur + 1 / cmp.n_ref
                extra["effect_size_w"] = math.sqrt(score * inv)
            out.append(_Score(col, m, score, cmp.n_cur, cmp.n_ref, cmp.dof, extra))
        return out

    def _judge(self, sc: _Score, tail: float) -> CheckResult:
        col, method, score, n, m, dof, details = sc
        lim = limits(method, n, m, dof, self.thresholds[method], details.get("spread", 1.0), tail)
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
            "noise_tail": tail,
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


def identifier_candidate(dtype: Any, cref: ColumnProfile | None) -> bool:
    """Whether a column of ``dtype`` may be identifier-like: text or integers, not time in the reference."""
    kind = column_kind(dtype)
    integer = pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    if not (integer or (kind == "categorical" and not pd.api.types.is_bool_dtype(dtype))):
        return False
    return cref is None or cref.kind != "datetime"


def identifier_share(values: int, distinct: int, text_times: bool) -> float | None:
    """The distinct share of ``values`` non-null values when it makes the column identifier-like, else None."""
    if values < _IDENTIFIER_MIN_VALUES:
        return None
    share = distinct / values
    if share < IDENTIFIER_SHARE or text_times:  # timestamps as text are compared as time
        return None
    return share


def _identifier_share(s: pd.Series, cref: ColumnProfile | None) -> float | None:
    """The distinct share of an identifier-like column (text or integers, nearly all distinct), else None."""
    if not identifier_candidate(s.dtype, cref):
        return None
    n = len(s) - null_count(s)
    if n < _IDENTIFIER_MIN_VALUES:
        return None
    try:
        distinct = int(s.nunique(dropna=True))
    except TypeError:  # unhashable values: not an identifier
        return None
    if distinct / n < IDENTIFIER_SHARE:
        return None
    text_times = column_kind(s.dtype) == "categorical" and text_timestamps(s) is not None
    return identifier_share(n, distinct, text_times)


def _uncheckable(frame: pd.DataFrame, col: str) -> str | None:
    """Why ``col`` of ``frame`` cannot be profiled for drift, or None when it can."""
    try:
        s = require_column(frame, col)
    except CheckInputError as exc:
        return str(exc)
    kind = column_kind(s.dtype)
    if kind == "other":
        return f"column {col!r} has dtype {s.dtype}; drift needs numbers, timestamps or categories"
    if kind == "categorical":
        try:
            labels, _ = category_counts(s)
        except TypeError as exc:
            return f"column {col!r} ({s.dtype}) holds unhashable values: {exc}"
        if not labels:
            return f"column {col!r} has no non-null values in the current frame"
        return None
    try:
        x = numeric_values(s)
    except (TypeError, ValueError) as exc:
        return f"column {col!r} ({s.dtype}) cannot be read as numbers: {exc}"
    if not np.isfinite(x).any():
        return f"column {col!r} has no finite values in the current frame"
    return None
