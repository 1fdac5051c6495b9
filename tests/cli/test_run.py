"""`flash run`: build, serve, reload on change, and leave nothing running after SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from flash.cli.init import write_starter


def processes_under(folder: Path) -> list[int]:
    """Pids of processes whose working directory is inside ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(folder)):
            found.append(int(entry.name))
    return found


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def completed(url: str) -> int:
    return int(httpx.get(f"{url}/v2/cpu-worker/health").json()["jobs"]["completed"])


def test_run_serves_reloads_and_stops_cleanly(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    write_starter(project)
    (project / "main.py").write_text(WEB_APP)
    app_port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            *("-m", "flash.cli", "run", str(project)),
            *("--port", "0", "--app-port", str(app_port)),
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
        url = re.search(r"http://127\.0\.0\.1:\d+", "".join(lines)).group(0)  # type: ignore[union-attr]
        assert preprocess(url) == ["a b"]

        # main.py's web app runs too, and its @remote calls go to the local endpoints.
        before = completed(url)
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{app_port}/clean", params={"text": " x  y "})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "".join(lines)
                time.sleep(0.1)
        assert page.json() == ["x y"]
        assert completed(url) == before + 1

        worker = project / "workers" / "cpu_worker.py"
        worker.write_text(worker.read_text().replace('" ".join', '"-".join'))
        deadline = time.monotonic() + 60
        while preprocess(url) != ["a-b"]:
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        # The first build's copy goes once its workers are gone; the served one stays.
        serve_dir = project / ".flash" / "serve"
        while len(copies := [p for p in serve_dir.iterdir() if p.is_dir()]) != 1:
            assert time.monotonic() < deadline, f"copies left: {copies}"
            time.sleep(0.1)

        worker.write_text("def broken(:\n")  # a bad edit keeps the last good build serving
        deadline = time.monotonic() + 60
        while not any("Build failed" in line for line in lines):
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        assert preprocess(url) == ["a-b"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, "".join(lines)
        reader.join(10)
    key = (project / ".flash" / "secrets" / "signing_key").read_text().strip()
    assert len(key) == 64 and key not in "".join(lines)  # the signing key is never printed
    mode = (project / ".flash" / "secrets" / "signing_key").stat().st_mode & 0o777
    assert mode == 0o600
    deadline = time.monotonic() + 10
    while processes_under(project):
        assert time.monotonic() < deadline, f"orphans: {processes_under(project)}"
        time.sleep(0.1)
