"""Tracebacks of a project served from its folder name the project's files, not the copy
the workers run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.integration.projects import served_files

import flash

FILES = {
    "pyproject.toml": """
        [project]
        name = "tracedapp"
        version = "0.1.0"
        dependencies = []
    """,
    "tracedapp/__init__.py": "",
    "tracedapp/work.py": """
        from flash import CpuLiveServerless, remote

        cpu = CpuLiveServerless(name="traced", workersMax=1)


        def check(x):
            if x < 0:
                raise ValueError("negative")
            return x


        @remote(cpu)
        def run(x):
            return check(x)
    """,
}


def test_a_remote_traceback_names_the_projects_own_file(tmp_path: Path) -> None:
    root = (tmp_path / "project").resolve()
    with served_files(root, FILES) as platform:
        from tracedapp import work  # type: ignore[import-not-found]

        with pytest.raises(ValueError, match="negative") as raised:
            asyncio.run(work.run(-1))
    source = str(root / "tracedapp" / "work.py")
    notes = "\n".join(getattr(raised.value, "__notes__", []))
    # Both frames, the @remote function's and the helper's it called, at their lines there.
    assert f'File "{source}", line 8, in check' in notes, notes
    assert f'File "{source}", line 14, in run' in notes, notes
    assert str(platform.state_dir) not in notes  # not the served copy under .flash/serve
    assert isinstance(raised.value, ValueError) and not isinstance(raised.value, flash.RemoteError)
