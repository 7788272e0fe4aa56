"""Errors of the checks package.

``checks`` imports nothing else of pipewarden's, so its errors have their own
small base; each also inherits the matching built-in, as the style guide asks.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["BaselineError", "CheckConfigError", "CheckError", "CheckInputError"]


class CheckError(Exception):
    """Base of every error the checks package raises on purpose."""


class CheckConfigError(CheckError, ValueError):
    """A check declaration is wrong; ``problems`` lists every problem, ``path`` names the file.

    >>> err = CheckConfigError(["pipewarden.yml: checks[0] is empty"], path="pipewarden.yml")
    >>> err.problems
    ['pipewarden.yml: checks[0] is empty']
    """

    def __init__(self, problems: Sequence[str], *, path: str | None = None) -> None:
        self.problems = list(problems)
        self.path = path
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems in check configuration:\n" + "\n".join(
                f"  {p}" for p in self.problems
            )
        super().__init__(message)


class CheckInputError(CheckError, ValueError):
    """Raised inside a check when the frame cannot be checked (missing column, unusable dtype).

    :class:`checks.base.Check` turns it into a result of status ``error`` whose
    message is this text, prefixed with the check's name; ``column`` names the
    column at fault, if any.
    """

    def __init__(self, message: str, *, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


class BaselineError(CheckError, LookupError):
    """A baseline cannot be accepted: there is no profile of that dataset (or run) to accept.

    ``pipeline``, ``dataset`` and ``run_id`` name what was asked for.
    """

    def __init__(self, message: str, *, pipeline: str, dataset: str, run_id: str | None) -> None:
        super().__init__(message)
        self.pipeline = pipeline
        self.dataset = dataset
        self.run_id = run_id
