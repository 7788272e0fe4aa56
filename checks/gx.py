"""Great Expectations suites as pipewarden checks.

Great Expectations is imported lazily, on the first call of a :class:`GxSuite`
(importing ``checks`` never imports it: it costs seconds and ~200 MB). One
ephemeral GX context per process is shared by every suite; its progress bars
and analytics are off and its loggers quiet.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from checks.base import Check, CheckContext
from checks.errors import CheckInputError
from checks.frame import require_frame
from checks.keys import jsonable
from checks.result import CheckResult, Kind, Status

__all__ = ["GxSuite", "gx_suite"]

_lock = threading.Lock()
_batch_definition: Any = None
_RESULT_KEYS = (
    "observed_value",
    "element_count",
    "missing_count",
    "unexpected_count",
    "unexpected_percent",
    "partial_unexpected_list",
    "details",
)


def _quiet() -> None:
    for name in (
        "great_expectations",
        "great_expectations.core",
        "great_expectations.data_context",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)


def gx_batch_definition() -> Any:
    """The shared whole-dataframe batch definition of the process's ephemeral GX context."""
    global _batch_definition
    with _lock:
        if _batch_definition is None:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no traffic the user did not ask for
            _quiet()
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            ctx = gx.get_context(mode="ephemeral")
            ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
            source = ctx.data_sources.add_pandas("pipewarden")
            asset = source.add_dataframe_asset("frame")
            _batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        return _batch_definition


def _suite_dict(suite: Mapping[str, Any]) -> dict[str, Any]:
    """A suite's JSON (GX 1.x; 0.x key names are translated) as ExpectationSuite arguments."""
    name = suite.get("name") or suite.get("expectation_suite_name") or "suite"
    expectations = []
    for e in suite.get("expectations", ()):
        e = dict(e)
        if "expectation_type" in e and "type" not in e:
            e["type"] = e.pop("expectation_type")
        expectations.append({k: e[k] for k in ("type", "kwargs", "meta", "id", "severity") if k in e})
    return {"name": name, "expectations": expectations, "meta": suite.get("meta") or {}}


class GxSuite(Check):
    """Run a Great Expectations 1.x ExpectationSuite; one result of kind ``gx`` per expectation.

    ``suite`` is an ``ExpectationSuite``, its JSON as a dict, or the path of the
    JSON file a GX project saves. Status comes from the expectation's success;
    an expectation GX could not evaluate (a missing column) is ``error``.

    >>> import pandas as pd
    >>> spec = {"name": "s", "expectations": [
    ...     {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}}]}
    >>> gx_suite(spec)(pd.DataFrame({"a": [1, None]}))[0].status  # doctest: +SKIP
    <Status.FAIL: 'fail'>
    """

    kind = Kind.GX

    def __init__(
        self,
        suite: Any,
        *,
        result_format: str = "SUMMARY",
        name: str | None = None,
        severity: str = "fail",
        on_error: str = "fail",
    ) -> None:
        if isinstance(suite, str | Path):
            path = Path(suite)
            try:
                suite = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"gx_suite: cannot read suite JSON {str(path)!r}: {exc}") from exc
        if isinstance(suite, Mapping):
            self._spec: dict[str, Any] | None = _suite_dict(suite)
            self._suite: Any = None
            label = self._spec["name"]
        else:
            if not hasattr(suite, "expectations"):
                raise TypeError(
                    f"gx_suite takes an ExpectationSuite, its JSON dict or a path — got {type(suite).__name__}"
                )
            self._spec, self._suite = None, suite
            label = getattr(suite, "name", "suite")
        super().__init__(name=name or f"gx({label})", severity=severity, on_error=on_error)
        self.result_format = result_format

    def suite(self) -> Any:
        """The ExpectationSuite (built from the JSON on first use)."""
        if self._suite is None:
            gx_batch_definition()
            import great_expectations as gx

            assert self._spec is not None
            self._suite = gx.ExpectationSuite(**self._spec)
        return self._suite

    def evaluate(self, df: Any, context: CheckContext) -> list[CheckResult]:
        frame = require_frame(df)
        try:
            definition = gx_batch_definition()
        except ImportError as exc:
            raise CheckInputError("needs great_expectations: pip install 'pipewarden[gx]'") from exc
        suite = self.suite()
        with _lock:  # one shared asset: GX batches of one definition are not meant to interleave
            batch = definition.get_batch(batch_parameters={"dataframe": frame})
            outcome = batch.validate(suite, result_format=self.result_format)
        return [self._one(r) for r in outcome.results]

    def _one(self, r: Any) -> CheckResult:
        cfg = r.expectation_config
        etype = cfg.type
        kwargs = {k: jsonable(v) for k, v in dict(cfg.kwargs).items() if k != "batch_id"}
        result = dict(r.result or {})
        details: dict[str, Any] = {
            "expectation_type": etype,
            "kwargs": kwargs,
            "result": {k: jsonable(result[k]) for k in _RESULT_KEYS if k in result},
        }
        info = r.exception_info or {}
        raised = (
            info.get("raised_exception")
            if "raised_exception" in info
            else any(isinstance(v, Mapping) and v.get("raised_exception") for v in info.values())
        )
        column = kwargs.get("column") if isinstance(kwargs.get("column"), str) else None
        if raised:
            msgs = [info.get("exception_message")] + [
                v.get("exception_message") for v in info.values() if isinstance(v, Mapping)
            ]
            text = next((m for m in msgs if m), "the expectation raised")
            return self.result(
                Status.ERROR,
                column=column,
                measure=etype,
                details=details,
                message=f"{self.name}: {etype}: {text}",
            )
        observed, measure = result.get("observed_value"), etype
        if not isinstance(observed, int | float) or isinstance(observed, bool):
            observed = result.get("unexpected_count")
            measure = "unexpected_count" if observed is not None else etype
        status = Status.PASS if r.success else Status.FAIL
        return self.result(
            status,
            observed=None if observed is None else float(observed),
            column=column,
            measure=measure,
            details=details,
            message=f"{self.name}: {etype}({_describe(kwargs)}) {'passed' if r.success else 'failed'}",
        )


def _describe(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())[:200]


def gx_suite(suite: Any, **kwargs: Any) -> GxSuite:
    """A Great Expectations suite as a check (see :class:`GxSuite`)."""
    return GxSuite(suite, **kwargs)
