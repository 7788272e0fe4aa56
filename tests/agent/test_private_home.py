"""A private, per-user state directory: modes whatever the umask, one history per user, nothing untrusted loaded."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FAILING = """
    import os
    from pathlib import Path
    from agent.pipeline import Pipeline

    Path({marker!r}).write_text("imported")
    pipe = Pipeline("private")

    @pipe.task
    def extract() -> list[int]:
        return [1, 2, 3]

    @pipe.task
    def transform(extract: list[int]) -> int:
        if os.path.exists({broken!r}):
            raise RuntimeError("transform is broken")
        return sum(extract)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIPEWARDEN_"))}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def _cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)) or ".": stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


SCRIPT = """
    import json, os, sys
    from pathlib import Path
    os.umask(0)
    import pandas as pd
    from agent.pipeline import Pipeline
    from agent.runner import Runner
    from agent.store import open_store
    from agent.telemetry import Telemetry

    home = Path(sys.argv[1])
    pipe = Pipeline("umask")

    @pipe.task(persist=True)
    def extract() -> pd.DataFrame:
        return pd.DataFrame({"id": [1, 2, 3]})

    @pipe.task
    def fail(extract: pd.DataFrame) -> None:
        raise RuntimeError("keep the outputs for a resume")

    tel = Telemetry.from_env(home=home)
    with open_store(home) as store:
        Runner(store=store, telemetry=tel).run(pipe)
        tel.shutdown()
        root = Path(sys.argv[1])
        print(json.dumps({str(p.relative_to(root)): oct(p.stat().st_mode & 0o777) for p in root.rglob("*")}))
"""


def test_state_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """Under umask 000, the home is 0700 and the store, its WAL, task outputs, spans and textfiles 0600."""
    home, textfiles = tmp_path / "home", tmp_path / "node_exporter"
    textfiles.mkdir()
    os.chmod(textfiles, 0o755)
    (tmp_path / "script.py").write_text(textwrap.dedent(SCRIPT))
    done = subprocess.run(
        [sys.executable, str(tmp_path / "script.py"), str(home)],
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=120,
        env=_env(PIPEWARDEN_TEXTFILE_DIR=str(textfiles), OTEL_TRACES_EXPORTER="jsonl"),
    )
    assert done.returncode == 0, done.stderr
    seen = {name: int(mode, 8) for name, mode in json.loads(done.stdout).items()}
    assert {"pipewarden.db", "pipewarden.db-wal", "pipewarden.db-shm", "traces.jsonl"} <= set(seen)
    assert any(name.endswith("extract.arrow") for name in seen), seen
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for name, mode in seen.items():
        assert mode == (0o700 if (home / name).is_dir() else 0o600), (name, oct(mode))
    textfile = textfiles / "pipewarden_umask.prom"
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o644  # node_exporter (another user) reads it; nobody writes


def test_the_default_home_is_per_user_not_per_working_directory(tmp_path: Path) -> None:
    """Runs started from two directories without PIPEWARDEN_HOME share one history in the XDG state directory."""
    env = _env(XDG_STATE_HOME=str(tmp_path / "state"))
    target = str(REPO / "examples" / "pipelines" / "one_task.py")
    for cwd in (tmp_path / "project", tmp_path / "cron"):
        cwd.mkdir()
        done = _cli("run", target, "--no-progress", cwd=cwd, env=env)
        assert done.returncode == 0, done.stderr
        assert list(cwd.iterdir()) == []  # no ./.pipewarden left behind
    listed = _cli("runs", "list", cwd=tmp_path, env=env)
    assert listed.stdout.count("one_task") == 2, listed.stdout
    assert (tmp_path / "state" / "pipewarden" / "pipewarden.db").is_file()


@pytest.fixture
def failed_run(tmp_path: Path) -> tuple[Path, Path, str, dict[str, str]]:
    """A run of a pipeline that failed: (home, the import marker, the run id, the environment)."""
    home, marker, broken = tmp_path / "home", tmp_path / "imported", tmp_path / "broken"
    broken.write_text("")
    path = tmp_path / "pipe.py"
    path.write_text(textwrap.dedent(FAILING.format(marker=str(marker), broken=str(broken))))
    env = _env(PIPEWARDEN_HOME=str(home))
    done = _cli("run", str(path), "--json", "--no-progress", cwd=tmp_path, env=env)
    assert done.returncode == 1, done.stderr
    marker.unlink()
    broken.unlink()
    return home, marker, json.loads(done.stdout)["run_id"], env


@pytest.mark.parametrize("loosen", ["home", "store"])
def test_resume_refuses_a_state_directory_others_can_write(
    failed_run: tuple[Path, Path, str, dict[str, str]], loosen: str
) -> None:
    """A home or store file writable by every user: resume imports nothing and says how to fix it."""
    home, marker, run_id, env = failed_run
    os.chmod(home if loosen == "home" else home / "pipewarden.db", 0o777 if loosen == "home" else 0o666)
    done = _cli("runs", "resume", run_id, "--no-progress", cwd=home.parent, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "writable by every user" in done.stderr and "chmod" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not marker.exists()


def _record_target(home: Path, run_id: str, evil: Path, marker: Path) -> Path:
    """Write ``evil`` (a module that creates ``marker`` when imported) and record it as the run's pipeline."""
    evil.write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    with sqlite3.connect(home / "pipewarden.db") as conn:
        conn.execute("UPDATE runs SET target=? WHERE run_id=?", (f"{evil}:private", run_id))
    return evil


def test_resume_refuses_to_import_a_pipeline_path_others_can_write(
    failed_run: tuple[Path, Path, str, dict[str, str]], tmp_path: Path
) -> None:
    """A pipeline path recorded in the store whose file every user can write is not imported."""
    home, marker, run_id, env = failed_run
    evil = _record_target(home, run_id, tmp_path / "evil.py", marker)
    os.chmod(evil, 0o666)
    done = _cli("runs", "resume", run_id, "--no-progress", cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert str(evil) in done.stderr and "chmod 600" in done.stderr
    assert not marker.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_resume_refuses_a_pipeline_file_owned_by_another_user(
    failed_run: tuple[Path, Path, str, dict[str, str]], tmp_path: Path
) -> None:
    """A recorded pipeline file that belongs to another user is not imported, even when only they can write it."""
    home, marker, run_id, env = failed_run
    evil = _record_target(home, run_id, tmp_path / "evil.py", marker)
    os.chown(evil, 65534, 65534)
    done = _cli("runs", "resume", run_id, "--no-progress", cwd=tmp_path, env=env)
    assert done.returncode == 2 and "belongs to uid 65534" in done.stderr
    assert not marker.exists()
