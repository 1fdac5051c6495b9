"""Serving an archive built for another Python or platform: a warning, and JSON errors that
say why the build derived no schemas."""

from __future__ import annotations

import signal
import sys
import textwrap
from pathlib import Path

import pytest
import requests
from tests.helpers import PLATFORM_AT, CollectedProcess, Logs

from flash.build.dependencies import DependencyOptions
from flash.build.pipeline import BuildOptions, build_project
from flash.build.target import WORKER_PLATFORM, platform_for_this_machine, this_machine
from flash.platform.archive import extract_archive
from flash.platform.local import LocalPlatform

HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# A supported target Python that is not this interpreter's.
OTHER_PYTHON = "3.12" if HOST_PYTHON != "3.12" else "3.11"
OTHER_PLATFORM = "aarch64-manylinux_2_28"

PROJECT = """\
    from flash import CpuLiveServerless, remote


    @remote(CpuLiveServerless(name="xt", workersMax=1))
    def add_one(x: int) -> int:
        return x + 1
"""


def _build(root: Path, source: str = PROJECT, **target: str) -> Path:
    root.mkdir(parents=True)
    (root / "m.py").write_text(textwrap.dedent(source), encoding="utf-8")
    options = BuildOptions(project_dir=root, dependencies=DependencyOptions(**target))
    return build_project(options).archive


@pytest.fixture(scope="module")
def cross_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cross") / "proj"
    return _build(root, python_version=OTHER_PYTHON, platform=OTHER_PLATFORM)


def _target_warnings(logs: Logs) -> list[str]:
    return [line for line in logs.lines if line.startswith("Warning: archive built for")]


def test_a_cross_target_archive_is_served_with_a_warning_naming_both_targets(
    cross_archive: Path, tmp_path: Path
) -> None:
    logs = Logs()
    platform = LocalPlatform(tmp_path / "state", echo=logs)
    platform.start()
    try:
        platform.load_app(extract_archive(cross_archive, tmp_path / "serve"))
        [warning] = _target_warnings(logs)
        assert warning.startswith(
            f"Warning: archive built for Python {OTHER_PYTHON} on {OTHER_PLATFORM}; this "
            f"machine runs Python {HOST_PYTHON} on "
        ), warning
        assert "packages with compiled code may not import here" in warning
        # What builds for this machine (this test runs on Linux, where one exists).
        own = platform_for_this_machine()
        assert warning.endswith(
            f"flash build --python-version {HOST_PYTHON} --platform {own}, then serve that"
        ), warning
        # A JSON call of the typed function: the build's reason, not "no type hints".
        answer = requests.post(
            f"{platform.url}/v2/xt/runsync",
            json={"input": {"function": "add_one", "kwargs": {"x": 1}}},
            timeout=60,
        ).json()
        error = answer["error"]
        assert "takes pickled calls only: cross-target build" in error, answer
        assert "no JSON-able type hints" not in error
    finally:
        platform.stop()


def test_the_advice_names_only_what_differs_and_the_default_target_is_the_workers(
    tmp_path: Path,
) -> None:
    # Another Python on the default platform: on an x86-64 Linux only the Python differs.
    archive = _build(tmp_path / "proj", python_version=OTHER_PYTHON)
    logs = Logs()
    platform = LocalPlatform(tmp_path / "state", echo=logs)
    platform.start()
    try:
        platform.load_app(extract_archive(archive, tmp_path / "serve"))
        [warning] = _target_warnings(logs)
        assert f"on {WORKER_PLATFORM} (RunPod's Linux x86-64 workers);" in warning, warning
        if this_machine().processor == "x86_64":
            assert warning.endswith(
                f"flash build --python-version {HOST_PYTHON}, then serve that"
            ), warning
    finally:
        platform.stop()


def test_rebuilds_for_one_target_are_warned_about_once(cross_archive: Path, tmp_path: Path) -> None:
    # As flash run deploys each rebuild: another archive, built for the same target.
    changed = PROJECT.replace("x + 1", "x + 2")
    rebuilt = _build(
        tmp_path / "proj", changed, python_version=OTHER_PYTHON, platform=OTHER_PLATFORM
    )
    logs = Logs()
    platform = LocalPlatform(tmp_path / "state", echo=logs)
    platform.start()
    try:
        platform.load_app(extract_archive(cross_archive, tmp_path / "serve"))
        platform.replace_app(extract_archive(rebuilt, tmp_path / "serve"))
        platform.replace_app(extract_archive(cross_archive, tmp_path / "serve"))
        assert len(_target_warnings(logs)) == 1, logs.lines
    finally:
        platform.stop()


def test_an_archive_built_for_this_machine_is_served_without_a_warning(tmp_path: Path) -> None:
    archive = _build(tmp_path / "proj")
    logs = Logs()
    platform = LocalPlatform(tmp_path / "state", echo=logs)
    platform.start()
    try:
        platform.load_app(extract_archive(archive, tmp_path / "serve"))
        assert not [line for line in logs.lines if "archive built for" in line]
    finally:
        platform.stop()


def test_flash_serve_prints_the_target_warning(cross_archive: Path, tmp_path: Path) -> None:
    code = "import typer; from flash.cli.serve import serve; typer.run(serve)"
    args = [str(cross_archive), "--port", "0", "--state-dir", str(tmp_path / "state")]
    served = CollectedProcess([sys.executable, "-c", code, *args])
    try:
        served.printed_url(PLATFORM_AT)  # serving
        served.proc.send_signal(signal.SIGTERM)
        assert served.exit_code(30) == 0, served.text()
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
    warning = f"Warning: archive built for Python {OTHER_PYTHON} on {OTHER_PLATFORM}"
    assert warning in served.text()
