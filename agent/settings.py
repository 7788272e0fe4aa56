"""Environment variables pipewarden reads, as documented constants.

Precedence everywhere: explicit argument > environment variable > config file > default.
The standard ``OTEL_*`` variables are read by :mod:`exporters.tracing`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from exporters.files import default_home

__all__ = [
    "PIPEWARDEN_CONFIG",
    "PIPEWARDEN_DASK_WORKER_WAIT",
    "PIPEWARDEN_HOME",
    "PIPEWARDEN_LOG_FORMAT",
    "PIPEWARDEN_METRICS_ADDR",
    "PIPEWARDEN_METRICS_PORT",
    "PIPEWARDEN_PUSHGATEWAY_URL",
    "PIPEWARDEN_PUSH_TIMEOUT",
    "PIPEWARDEN_RETENTION_DAYS",
    "PIPEWARDEN_STORE",
    "PIPEWARDEN_TEXTFILE_DIR",
    "default_home",
    "home",
]

log = logging.getLogger("pipewarden.settings")

#: State directory: run store, JSON-lines spans, task outputs. Private to the user (0700, files 0600).
#: Default: ``$XDG_STATE_HOME/pipewarden``, else ``~/.local/state/pipewarden`` (:func:`default_home`).
PIPEWARDEN_HOME = "PIPEWARDEN_HOME"
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
#: Seconds a task submitted to Dask waits while the cluster has no worker before it fails (default 60).
PIPEWARDEN_DASK_WORKER_WAIT = "PIPEWARDEN_DASK_WORKER_WAIT"
#: The run store, as a URL: ``postgresql://user:password@host:5432/database`` shares one PostgreSQL
#: database between agents on several hosts (the ``postgresql`` extra); ``sqlite:///path/to/pipewarden.db``
#: names a SQLite file. Unset: ``pipewarden.db`` in :data:`PIPEWARDEN_HOME`. See :func:`agent.store.open_store`.
PIPEWARDEN_STORE = "PIPEWARDEN_STORE"
#: Days a finished run is kept in the run store (default 90; ``0`` or ``off``: forever); see :mod:`agent.retention`.
PIPEWARDEN_RETENTION_DAYS = "PIPEWARDEN_RETENTION_DAYS"

#: Where older pipewarden versions kept their state: the working directory's ``.pipewarden``.
_OLD_DEFAULT = ".pipewarden"
_told_old_default = False


def home(path: str | os.PathLike[str] | None = None) -> Path:
    """The state directory: ``path`` if given, else ``$PIPEWARDEN_HOME``, else :func:`default_home`."""
    given = path or os.environ.get(PIPEWARDEN_HOME)
    if given:
        return Path(given)
    _mention_old_default()
    return default_home()


def _mention_old_default() -> None:
    """Once per process: a ``./.pipewarden`` of an older version is no longer read by default; say so."""
    global _told_old_default
    if _told_old_default:
        return
    _told_old_default = True
    old = Path(_OLD_DEFAULT) / "pipewarden.db"
    if old.is_file():
        log.warning(
            "%s was the default state directory of earlier pipewarden versions and is no longer read; "
            "the default is now %s. Set PIPEWARDEN_HOME=%s to keep using it, or move it there.",
            old.parent.resolve(),
            default_home(),
            old.parent.resolve(),
        )
