"""`flash run`'s dev loop around a web app: restarts, failures, watched inputs, signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from tests.helpers import alive, free_port, processes_under, wait_for

from flash.cli.init import write_starter

# A web app whose /hold request lasts until the test creates the file `release`.
WEB_APP = """
import asyncio
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def pid(request):
    return JSONResponse(os.getpid())


async def hold(request):
    Path("holding").touch()
    while not Path("release").exists():
        await asyncio.sleep(0.05)
    return JSONResponse(os.getpid())


app = Starlette(routes=[Route("/pid", pid), Route("/hold", hold)])
"""

NO_APP = "print('a script, no web app')\n"


class FlashRun:
    """`flash run PROJECT` as a child process whose output is collected as it comes."""

    def __init__(self, project: Path, app_port: int, *, new_session: bool = False) -> None:
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # as in a log or CI
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *("-m", "flash.cli", "run", str(project)),
                *("--port", "0", "--app-port", str(app_port)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**env, "NO_COLOR": "1"},
            start_new_session=new_session,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def count(self, words: str) -> int:
        return self.text().count(words)

    def wait_for_output(self, words: str, times: int = 1, timeout: float = 60) -> None:
        wait_for(lambda: self.count(words) >= times, timeout, f"{words!r} in:\n{self.text()}")

    def exit_code(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        self.reader.join(10)
        return code


def app_pid(app_port: int) -> int | None:
    try:
        answer = httpx.get(f"http://127.0.0.1:{app_port}/pid", timeout=30)
    except httpx.TransportError:  # not listening
        return None
    return int(answer.json()) if answer.status_code == 200 else None


def test_run_web_app_follows_edits_and_dies_with_flash(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    write_starter(project)
    (project / "main.py").write_text(NO_APP)
    # Build inputs .flashignore cannot hide from the watcher, and one outside the project.
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "extra.txt").write_text("# nothing yet\n")
    (project / "requirements.txt").write_text("-r ../shared/extra.txt\n")
    with (project / ".flashignore").open("a") as ignore:
        ignore.write("main.py\nrequirements.txt\npyproject.toml\n")
    worker = project / "workers" / "cpu_worker.py"
    app_port = free_port()
    flash = FlashRun(project, app_port)
    try:
        flash.wait_for_output("Scripts reach these endpoints")
        url = re.search(r"http://127\.0\.0\.1:\d+", flash.text()).group(0)  # type: ignore[union-attr]
        # Whole URLs in the table, though no terminal sets its width.
        assert f"{url}/v2/cpu-worker " in flash.text(), flash.text()

        # A second flash run on the same state folder is refused before it builds anything.
        second = subprocess.run(
            [sys.executable, "-m", "flash.cli", "run", str(project), "--port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1, second
        assert "another Flash platform" in second.stderr and "collect" not in second.stdout

        # main.py starts binding `app` (main.py is ignored by the build, watched anyway).
        (project / "main.py").write_text(WEB_APP)
        first_pid = wait_for(lambda: app_pid(app_port), 60, "the new web app to answer")

        # A rebuild restarts the app gracefully: a request in flight finishes on the old
        # one, and no request meanwhile is refused.
        held: list[httpx.Response] = []
        holder = threading.Thread(
            target=lambda: held.append(httpx.get(f"http://127.0.0.1:{app_port}/hold", timeout=120))
        )
        holder.start()
        wait_for((project / "holding").exists, 30, "the request to be in flight")
        refused: list[Exception] = []
        polling = threading.Event()

        def poll() -> None:
            while not polling.is_set():
                try:
                    httpx.get(f"http://127.0.0.1:{app_port}/pid", timeout=30)
                except httpx.TransportError as exc:
                    refused.append(exc)

        poller = threading.Thread(target=poll)
        poller.start()
        reloads = flash.count("Reloaded")
        worker.write_text(worker.read_text() + "\n# an edit\n")
        flash.wait_for_output("Reloaded", reloads + 1)
        new_pid = wait_for(lambda: app_pid(app_port) != first_pid, 60, "the restarted app")
        polling.set()
        poller.join(30)
        assert refused == []
        assert new_pid and holder.is_alive()  # the old app still answers its request
        (project / "release").touch()
        holder.join(30)
        assert held[0].status_code == 200 and held[0].json() == first_pid

        # Edits to build inputs the ignore file lists, or outside the project, rebuild.
        for source in (tmp_path / "shared" / "extra.txt", project / "pyproject.toml"):
            reloads = flash.count("Reloaded")
            source.write_text(source.read_text() + "\n# an edit\n")
            flash.wait_for_output("Reloaded", reloads + 1)

        # A web app that fails to restart is reported; the next good edit starts it again.
        (project / "main.py").write_text("import no_such_module\n" + WEB_APP)
        flash.wait_for_output("exited with code 1 while starting")
        assert re.search(
            r"^Error: main\.py's web app .* the web app is down until the next change",
            flash.text(),
            re.M,
        )
        wait_for(lambda: app_pid(app_port) is None, 30, "the failed app to be down")
        (project / "main.py").write_text(WEB_APP)
        wait_for(lambda: app_pid(app_port), 60, "the fixed web app to answer")

        # A broken edit, then its fix back to the served code (a skipped build), say so.
        original = worker.read_text()
        worker.write_text(original + "\ndef broken(:\n")
        flash.wait_for_output("Build failed")
        worker.write_text(original)
        flash.wait_for_output("Build good again: serving")

        # Killed outright, flash run takes its web app and workers along.
        last_pid = wait_for(lambda: app_pid(app_port), 30, "the web app")
        flash.proc.kill()
        assert flash.exit_code() == -signal.SIGKILL
        wait_for(lambda: not alive(last_pid), 30, "the web app to die with flash run")
        wait_for(lambda: not processes_under(project), 30, "every process of the project")
    finally:
        if flash.proc.poll() is None:
            flash.proc.terminate()
            flash.exit_code()


def test_run_stops_cleanly_on_sighup(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    write_starter(project)
    (project / "main.py").write_text(WEB_APP)
    app_port = free_port()
    flash = FlashRun(project, app_port)
    try:
        pid = wait_for(lambda: app_pid(app_port), 60, "the web app to answer")
    finally:
        flash.proc.send_signal(signal.SIGHUP)  # as when its terminal closes
    assert flash.exit_code() == 0, flash.text()
    assert not alive(pid)
    wait_for(lambda: not processes_under(project), 10, "every process of the project to exit")


def test_ctrl_c_during_the_first_build_says_interrupted(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    write_starter(project)
    worker = project / "workers" / "cpu_worker.py"
    worker.write_text("import time\n\ntime.sleep(60)\n" + worker.read_text())
    flash = FlashRun(project, free_port(), new_session=True)
    try:
        # The build's import check (cwd .flash/.build) is importing the slow module.
        wait_for(lambda: processes_under(project / ".flash" / ".build"), 60, "the import check")
    finally:
        os.killpg(flash.proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the group
    assert flash.exit_code() == 130, flash.text()
    assert "Interrupted during the first build" in flash.text()
    assert "failed to import" not in flash.text()
    wait_for(lambda: not processes_under(project), 10, "every process of the project to exit")


def test_serve_stops_cleanly_on_sighup(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    write_starter(project)
    flash = [sys.executable, "-m", "flash.cli"]
    subprocess.run([*flash, "build", str(project)], check=True, capture_output=True, timeout=120)
    archive = project / ".flash" / "archive.tar.gz"
    serve = subprocess.Popen(
        [*flash, "serve", str(archive), "--port", "0", "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert serve.stdout is not None
    try:
        for line in serve.stdout:
            if "Pickled calls are signed" in line:  # the last line once it serves
                break
    finally:
        serve.send_signal(signal.SIGHUP)
    assert serve.wait(60) == 0
