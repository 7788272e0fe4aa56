"""Environment variables pipewarden reads, as documented constants.

Precedence everywhere: explicit argument > environment variable > config file > default.
The standard ``OTEL_*`` variables are read by :mod:`exporters.tracing`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "DEFAULT_HOME",
    "PIPEWARDEN_CONFIG",
    "PIPEWARDEN_HOME",
    "PIPEWARDEN_LOG_FORMAT",
    "PIPEWARDEN_METRICS_ADDR",
    "PIPEWARDEN_METRICS_PORT",
    "PIPEWARDEN_PUSHGATEWAY_URL",
    "PIPEWARDEN_PUSH_TIMEOUT",
    "PIPEWARDEN_TEXTFILE_DIR",
    "home",
]

#: State directory: run store, JSON-lines spans, artifacts. Default ``./.pipewarden``.
PIPEWARDEN_HOME = "PIPEWARDEN_HOME"
DEFAULT_HOME = ".pipewarden"
#: Port of the ``/metrics`` scrape endpoint; setting it starts the endpoint (9464 is usual).
PIPEWARDEN_METRICS_PORT = "PIPEWARDEN_METRICS_PORT"
#: Address the scrape endpoint binds; default ``127.0.0.1``.
PIPEWARDEN_METRICS_ADDR = "PIPEWARDEN_METRICS_ADDR"
#: Pushgateway base URL (``http://host:9091``); setting it pushes metrics at the end of each run.
PIPEWARDEN_PUSHGATEWAY_URL = "PIPEWARDEN_PUSHGATEWAY_URL"
#: Seconds a push may take before it is abandoned; default 2.
PIPEWARDEN_PUSH_TIMEOUT = "PIPEWARDEN_PUSH_TIMEOUT"
#: node_exporter textfile-collector directory; setting it writes ``pipewarden.prom`` there.
PIPEWARDEN_TEXTFILE_DIR = "PIPEWARDEN_TEXTFILE_DIR"
#: ``text`` (default) or ``json``: JSON log lines carry trace_id and span_id.
PIPEWARDEN_LOG_FORMAT = "PIPEWARDEN_LOG_FORMAT"
#: A pipewarden.yml whose alert rules scripts and ``pipewarden run`` evaluate (and whose pipelines
#: ``pipewarden run NAME`` runs); the daemon takes ``--config`` instead.
PIPEWARDEN_CONFIG = "PIPEWARDEN_CONFIG"


def home(path: str | os.PathLike[str] | None = None) -> Path:
    """The state directory: ``path`` if given, else ``$PIPEWARDEN_HOME``, else ``./.pipewarden``."""
    return Path(path or os.environ.get(PIPEWARDEN_HOME) or DEFAULT_HOME)
