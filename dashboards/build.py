"""Generate the committed dashboard JSON: ``python -m dashboards`` writes ``dashboards/*.json``.

``python -m dashboards --check`` exits 1 naming every file that differs from what
the generator makes (a test runs the same comparison, byte for byte).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import DASHBOARD_FILES, PACKAGE_DIR, alerts, data_quality, pipelines
from dashboards.kit import SCHEMA_VERSION

__all__ = ["BUILDERS", "main", "model", "render"]

#: File name -> the function building that dashboard.
BUILDERS: dict[str, Callable[[], Dashboard]] = {
    "pipelines.json": pipelines.build,
    "data-quality.json": data_quality.build,
    "alerts.json": alerts.build,
}
assert tuple(BUILDERS) == DASHBOARD_FILES


def model(name: str) -> dict[str, Any]:
    """The dashboard JSON model of file ``name``, as plain data."""
    built = BUILDERS[name]().build()
    built.schema_version = SCHEMA_VERSION
    data: dict[str, Any] = json.loads(json.dumps(built, cls=JSONEncoder))
    for i, panel in enumerate(data.get("panels", []), start=1):
        panel["id"] = i  # stable ids: Grafana keys panel links and view state on them
    return data


def render(name: str) -> str:
    """The exact text of ``dashboards/<name>``: sorted keys, two-space indent, one final newline."""
    return json.dumps(model(name), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR, help="directory to write (default: the package)")
    args = parser.parse_args(argv)
    stale = []
    for name in BUILDERS:
        path = args.out / name
        text = render(name)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        path.write_text(text, encoding="utf-8")
        print(path)
    if stale:
        print(f"stale: {', '.join(stale)}: run `python -m dashboards`", file=sys.stderr)
        return 1
    return 0
