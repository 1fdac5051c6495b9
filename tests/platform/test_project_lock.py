"""start_project holds the state folder from before the build until the platform stops."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.cli.test_run import OPAQUE

from flash.build.pipeline import BuildOptions
from flash.cli.init import write_starter
from flash.platform.local import lock_state_dir
from flash.platform.manifest import PlatformError
from flash.platform.project import start_project


def test_no_other_platform_can_take_the_state_folder_after_the_build(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    write_starter(project)
    worker = project / "workers" / "cpu_worker.py"
    # A function the build warns about: warnings come between the build and the start.
    worker.write_text(worker.read_text() + OPAQUE)
    state_dir = project / ".flash"
    refusals: list[str] = []

    def try_to_take_it(_warning: str) -> None:
        with pytest.raises(PlatformError) as refused:
            lock_state_dir(state_dir)
        refusals.append(str(refused.value))

    platform = start_project(
        BuildOptions(project_dir=project), warn=try_to_take_it, port=0, echo=None
    )
    try:
        assert refusals and "another Flash platform" in refusals[0]
        with pytest.raises(PlatformError):
            lock_state_dir(state_dir)
    finally:
        platform.stop()
    os.close(lock_state_dir(state_dir))  # free once it stopped
