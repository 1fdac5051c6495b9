"""Served workers see what the archive holds, as on Flash's worker image: a package the
build did not vendor fails here as it would there, even one installed beside Flash."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

import httpx
import pytest
from tests.helpers import Logs
from tests.integration.projects import served_files
from tests.wheelhouse import build_wheel

FILES = {
    "alone/__init__.py": "",
    "alone/jobs.py": """
        from flash import CpuLiveServerless, remote

        cpu = CpuLiveServerless(name="alone", workersMax=1)


        @remote(cpu, dependencies=["tinydep==2.0"])
        def vendored() -> int:
            import tinydep  # imported when called, so only the worker's path decides

            return tinydep.VALUE


        @remote(cpu)
        def builtins_missing() -> list[str]:
            import builtins

            names = ["exit", "quit", "help", "copyright", "credits", "license"]
            return [name for name in names if not hasattr(builtins, name)]


        @remote(cpu)
        def undeclared() -> str:
            import httpx  # installed beside Flash, but in no dependencies: not in the build

            return httpx.__version__
    """,
}


def test_a_worker_imports_only_what_the_build_vendored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "tinydep", "2.0", files={"tinydep/__init__.py": "VALUE = 100\n"})
    files = {**FILES, "requirements.txt": f"--no-index\n--find-links {wheels}\n"}
    # Not through PYTHONPATH either, set where the platform runs.
    monkeypatch.setenv("PYTHONPATH", str(Path(httpx.__file__).parent.parent))
    with served_files(tmp_path / "proj", files, echo=Logs()):
        jobs = importlib.import_module("alone.jobs")
        assert asyncio.run(jobs.vendored()) == 100
        with pytest.raises(ModuleNotFoundError, match="httpx"):
            asyncio.run(jobs.undeclared())
        # What site adds besides paths is there, as on the image: exit(), help().
        assert asyncio.run(jobs.builtins_missing()) == []
