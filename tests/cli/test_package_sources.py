"""flash run and serve_project get packages where flash build does: the package source
options, and $FLASH_INDEX_URL, $FLASH_EXTRA_INDEX_URL and $FLASH_FIND_LINKS."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from tests.cli.test_run_devloop import FlashRun
from tests.cli.test_run_first_build import SERVING, WAITING, api_base
from tests.integration.projects import write_files
from tests.wheelhouse import build_wheel

from flash.platform import serve_project

WORKER = """
    from flash import CpuLiveServerless, remote

    cpu = CpuLiveServerless(name="cpu")


    @remote(cpu)
    def version() -> str:
        import zzlocal  # only in the test's own wheel folder

        return zzlocal.VERSION
"""


def _project(root: Path, requirements: str) -> Path:
    return write_files(root, {"worker.py": WORKER, "requirements.txt": requirements})


def _version(base: str) -> str:
    answer = httpx.post(f"{base}/v2/cpu/runsync", json={"input": {}}, timeout=120).json()
    assert answer["status"] == "COMPLETED", answer
    return str(answer["output"]["result"])


def test_flash_run_takes_the_find_links_of_the_environment_and_no_index(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "zzlocal", "1.5")
    project = _project(tmp_path / "proj", "zzlocal\n")
    flash = FlashRun(project, env={"FLASH_FIND_LINKS": str(wheels)}, args=("--no-index",))
    try:
        flash.wait_for_output(SERVING)
        assert _version(api_base(flash.text())) == "1.5"
        flash.proc.send_signal(signal.SIGTERM)
        assert flash.exit_code() == 0, flash.text()
    finally:
        flash.end()


def test_flash_run_builds_again_when_a_wheel_of_its_find_links_is_added_or_rebuilt(
    tmp_path: Path,
) -> None:
    # Its --find-links folder, outside the project, was not watched: a wheel added there was
    # built in only at the next edit of a project file.
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    project = _project(tmp_path / "proj", "zzlocal\n")
    flash = FlashRun(project, args=("--find-links", str(wheels), "--no-index"))
    try:
        flash.wait_for_output(WAITING)  # no wheel of zzlocal yet
        build_wheel(wheels, "zzlocal", "1.0")
        flash.wait_for_output(SERVING)
        base = api_base(flash.text())
        assert _version(base) == "1.0"
        rebuilt = {"zzlocal/__init__.py": "VERSION = '1.0, rebuilt'\n"}
        build_wheel(wheels, "zzlocal", "1.0", files=rebuilt)  # under the same version
        flash.wait_for_output("Reloaded")
        assert _version(base) == "1.0, rebuilt"
        flash.edit(project / "requirements.txt", "zzlocal\nzzother\n", "Build failed")
        build_wheel(wheels, "zzother", "0.1")
        flash.wait_for_output("Reloaded", 2)
        flash.proc.send_signal(signal.SIGTERM)
        assert flash.exit_code() == 0, flash.text()
    finally:
        flash.end()


def test_serve_project_takes_the_find_links_of_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "zzlocal", "2.0")
    # No index at all: only the environment's wheel folder can have it.
    project = _project(tmp_path / "proj", "--no-index\nzzlocal\n")
    monkeypatch.setenv("FLASH_FIND_LINKS", str(wheels))
    with serve_project(project) as platform:
        assert _version(platform.url) == "2.0"
