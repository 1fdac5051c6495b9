"""`flash run`: build, serve, reload on change, and leave nothing running after SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.build.test_collect import EDITOR_FILES
from tests.helpers import (
    PLATFORM_AT,
    WEB_APP_AT,
    completed_jobs,
    printed_url,
    processes_under,
    wait_for,
)
from watchfiles import Change

from flash.build import collect
from flash.build.dependencies import DependencyOptions
from flash.cli.init import write_starter
from flash.platform.devloop import always_watched, source_filter


def preprocess(url: str) -> Any:
    body = {"input": {"function": "preprocess", "kwargs": {"texts": ["  a   b "]}}}
    job = httpx.post(f"{url}/v2/cpu-worker/runsync", json=body, timeout=60).json()
    assert job["status"] == "COMPLETED", job
    return job["output"]["result"]


WEB_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from workers.cpu_worker import preprocess


async def clean(request):
    return JSONResponse(await preprocess([request.query_params["text"]]))


app = Starlette(routes=[Route("/clean", clean)])
"""

# Typed, but no JSON Schema can be derived for a socket: the build warns.
OPAQUE = """

import socket


@remote(resource_config=cpu)
def opaque(connection: socket.socket) -> int:
    return connection.fileno()
"""


def test_run_serves_reloads_and_stops_cleanly(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    write_starter(project)
    (project / "main.py").write_text(WEB_APP)
    worker = project / "workers" / "cpu_worker.py"
    worker.write_text(worker.read_text() + OPAQUE)
    proc = subprocess.Popen(
        [
            sys.executable,
            *("-m", "flash.cli", "run", str(project)),
            *("--port", "0", "--app-port", "0"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    lines: list[str] = []
    url_found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Flash platform on" in line:
                url_found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert url_found.wait(60), "".join(lines)

        def warnings() -> int:  # the build's warnings, as flash build prints them
            return "".join(lines).count("Warning: 1 function with type hints got no JSON Schema")

        assert warnings() == 1 and "cpu_worker.py:" in "".join(lines), "".join(lines)

        url = printed_url("".join(lines), PLATFORM_AT)
        assert url is not None, "".join(lines)
        assert preprocess(url) == ["a b"]

        # main.py's web app runs too, and its @remote calls go to the local endpoints.
        before = completed_jobs(url, "cpu-worker")

        def clean_page() -> httpx.Response | None:
            app = printed_url("".join(lines), WEB_APP_AT)
            try:
                return None if app is None else httpx.get(f"{app}/clean", params={"text": " x  y "})
            except httpx.TransportError:  # not answering yet
                return None

        page = wait_for(clean_page, 60, "main.py's web app to answer")
        assert page.json() == ["x y"]
        assert completed_jobs(url, "cpu-worker") == before + 1

        worker.write_text(worker.read_text().replace('" ".join', '"-".join'))
        wait_for(lambda: preprocess(url) == ["a-b"], 60, "the rebuilt endpoint to serve the edit")
        # The rebuild's warning is the first one's: said in a word, not printed again.
        wait_for(lambda: "(1 warning as before)" in "".join(lines), 10, "the reload's line")
        assert warnings() == 1, "".join(lines)
        # The first build's copy goes once its workers are gone; the served one stays.
        serve_dir = project / ".flash" / "serve"
        wait_for(
            lambda: len([p for p in serve_dir.iterdir() if p.is_dir()]) == 1,
            60,
            "the first build's extracted copy to be removed",
        )

        worker.write_text("def broken(:\n")  # a bad edit keeps the last good build serving
        wait_for(lambda: any("Build failed" in line for line in lines), 60, "a failed build")
        assert preprocess(url) == ["a-b"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, "".join(lines)
        reader.join(10)
    key = (project / ".flash" / "secrets" / "signing_key").read_text().strip()
    assert len(key) == 64 and key not in "".join(lines)  # the signing key is never printed
    mode = (project / ".flash" / "secrets" / "signing_key").stat().st_mode & 0o777
    assert mode == 0o600
    wait_for(lambda: not processes_under(project), 10, "every process of the project to exit")


def test_run_reloads_for_a_file_a_nested_ignore_file_re_includes(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / ".gitignore").write_text("*.json\nnotes/\n")
    (tmp_path / "config" / ".gitignore").write_text("!settings.json\n")
    wanted = source_filter(tmp_path.resolve())
    # The build collects config/settings.json, so editing it must reload; the rest never.
    assert wanted(Change.modified, str(tmp_path / "config" / "settings.json"))
    assert wanted(Change.modified, str(tmp_path / "workers" / "gpu.py"))
    assert not wanted(Change.modified, str(tmp_path / "config" / "other.json"))
    assert not wanted(Change.modified, str(tmp_path / "notes" / "config" / "settings.json"))
    assert not wanted(Change.modified, str(tmp_path / ".flash" / "archive.tar.gz"))
    assert not wanted(Change.added, str(tmp_path / "config" / ".env"))
    for name in EDITOR_FILES:  # an open editor is no edit
        assert not wanted(Change.added, str(tmp_path / "workers" / name)), name


def test_run_reloads_for_the_wheels_of_its_find_links_folders(tmp_path: Path) -> None:
    # One requirements.txt names, ignored by the build, and one given as an option, outside
    # the project: the build reads their wheels.
    root, outside = tmp_path / "proj", tmp_path / "wheels"
    (root / "dist").mkdir(parents=True)
    outside.mkdir()
    (root / ".gitignore").write_text("dist/\n")
    (root / "requirements.txt").write_text("--find-links dist\nzzlocal\n")
    sources = DependencyOptions(find_links=(str(outside),))
    wanted = source_filter(root, always_watched(root, sources), sources)
    for folder in (root / "dist", outside):
        assert wanted(Change.added, str(folder / "zzlocal-1.0-py3-none-any.whl"))
        assert not wanted(Change.added, str(folder / "notes.txt"))


def test_run_filters_its_own_writes_without_reading_ignore_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every rebuild writes hundreds of files under .flash/: none may cost a read of the
    # ignore files (their patterns cannot re-include what is always left out).
    (tmp_path / ".gitignore").write_text("*.log\n")
    reads: list[Path] = []
    real = collect.load_ignore_spec
    monkeypatch.setattr(collect, "load_ignore_spec", lambda root: reads.append(root) or real(root))
    wanted = source_filter(tmp_path.resolve())
    for name in (".flash/.build/handler_cpu.py", ".flash/archive.tar.gz", ".git/index"):
        assert not wanted(Change.modified, str(tmp_path / name))
    assert reads == []
    assert not wanted(Change.modified, str(tmp_path / "debug.log"))
    assert len(reads) == 1  # a project file still goes by the project's ignore files
