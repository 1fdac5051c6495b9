"""The name a call sends for a function of a module run as a script (``__main__``): the
module's real dotted name, so two modules on one endpoint may both define ``process``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration.projects import write_files

_CONFIG = """
    from flash import CpuLiveServerless

    cpu = CpuLiveServerless(name="dup-cpu", workersMax=1)
"""


def _worker_module(tag: str) -> str:
    return f"""
        from flash import remote

        from app.config import cpu


        @remote(cpu)
        def process(x: int) -> str:
            return "{tag}:" + str(x)


        if __name__ == "__main__":
            from flash.platform import serve_project

            with serve_project("."):
                print("RESULT", process.call(1))
    """


def _project(root: Path) -> Path:
    return write_files(
        root,
        {
            "app/__init__.py": "",
            "app/config.py": _CONFIG,
            "app/workers/__init__.py": "",
            "app/workers/dup.py": _worker_module("dup"),
            "app/workers/other.py": _worker_module("other"),
        },
    )


def _run_script(root: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    done = subprocess.run(
        [sys.executable, *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_module_run_with_dash_m_calls_its_own_function(tmp_path: Path) -> None:
    root = _project(tmp_path / "proj")
    assert "RESULT dup:1" in _run_script(root, "-m", "app.workers.dup")


def test_a_module_run_by_its_path_calls_its_own_function(tmp_path: Path) -> None:
    root = _project(tmp_path / "proj")
    # Run by path, the script's folder is first on sys.path, not the project: put it there.
    env_path = "import sys; sys.path.insert(0, '.'); import runpy; "
    code = env_path + "runpy.run_path('app/workers/other.py', run_name='__main__')"
    assert "RESULT other:1" in _run_script(root, "-c", code)
