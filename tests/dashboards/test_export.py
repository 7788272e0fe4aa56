"""`pipewarden dashboards export DIR`: the dashboards and Grafana provisioning files, ready to load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from dashboards import DASHBOARD_FILES, PACKAGE_DIR, export

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_export_writes_dashboards_and_provisioning_and_prints_them(tmp_path: Path) -> None:
    """Exit 0; every dashboard copied unchanged; the provider points at DIR/dashboards; each path printed."""
    out = tmp_path / "grafana"
    done = cli("dashboards", "export", str(out), "--prometheus-url", "http://prom.example:9090")
    assert (done.returncode, done.stderr) == (0, "")
    for name in DASHBOARD_FILES:
        assert (out / "dashboards" / name).read_bytes() == (PACKAGE_DIR / name).read_bytes()
    providers = yaml.safe_load((out / "provisioning/dashboards/pipewarden.yml").read_text())
    assert providers["apiVersion"] == 1
    [provider] = providers["providers"]
    assert (provider["type"], provider["options"]["path"]) == ("file", str((out / "dashboards").resolve()))
    sources = yaml.safe_load((out / "provisioning/datasources/pipewarden.yml").read_text())
    [source] = sources["datasources"]
    assert (sources["apiVersion"], source["type"], source["uid"], source["url"]) == (
        1,
        "prometheus",
        "pipewarden-prometheus",
        "http://prom.example:9090",
    )
    expected = [out / "dashboards" / n for n in DASHBOARD_FILES] + [
        out / "provisioning" / n for n in ("datasources/pipewarden.yml", "dashboards/pipewarden.yml")
    ]
    assert done.stdout.splitlines() == [str(p.resolve()) for p in expected]


def test_export_into_a_file_exits_2_with_one_line(tmp_path: Path) -> None:
    """A DIR that is a file is a usage error: exit 2, one line saying so, nothing written."""
    target = tmp_path / "taken"
    target.write_text("x")
    done = cli("dashboards", "export", str(target))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {target} is a file; give a directory to write the dashboards into"
    ]


def test_export_where_nothing_can_be_written_exits_2_with_one_line(tmp_path: Path) -> None:
    """A DIR whose parent is a file cannot be created: exit 2 with one line naming it."""
    (tmp_path / "file").write_text("x")
    done = cli("dashboards", "export", str(tmp_path / "file" / "grafana"))
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot write the dashboards to {tmp_path / 'file' / 'grafana'}")


def test_committed_provisioning_files_are_what_grafana_reads() -> None:
    """apiVersion 1; a Prometheus data source with the fixed uid; a file provider of the dashboards folder."""
    sources = yaml.safe_load((PACKAGE_DIR / "provisioning/datasources/pipewarden.yml").read_text())
    assert sources["apiVersion"] == 1 and sources["datasources"][0]["uid"] == "pipewarden-prometheus"
    assert sources["datasources"][0]["jsonData"]["timeInterval"] == "15s"
    providers = yaml.safe_load((PACKAGE_DIR / "provisioning/dashboards/pipewarden.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/pipewarden"


def test_export_needs_no_grafana_library(tmp_path: Path) -> None:
    """Exporting imports neither the foundation SDK nor matplotlib (the committed JSON is copied)."""
    code = (
        "import sys; import dashboards; dashboards.export(sys.argv[1]); "
        "print(sorted(m for m in sys.modules if m.startswith(('grafana_foundation_sdk', 'matplotlib'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr
    assert len(export(tmp_path / "again")) == len(DASHBOARD_FILES) + 2
