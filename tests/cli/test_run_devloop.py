"""`flash run`'s dev loop around a web app: restarts, failures, watched inputs, signals."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from tests.helpers import (
    PLATFORM_AT,
    WEB_APP_AT,
    CollectedProcess,
    alive,
    processes_under,
    wait_for,
)

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

# The same app from another module: main.py only imports it.
IMPORTED_APP = "from api import app  # noqa: F401\n"

# A web app that dies when asked to, as on an unhandled fatal error.
DYING_APP = (
    WEB_APP
    + """

async def die(request):
    os._exit(3)


app.router.routes.append(Route("/die", die))
"""
)

# A web app whose import waits until the test creates the file `go`; `importing-<pid>` says
# that it is waiting.
SLOW_APP = (
    """
import os
import time
from pathlib import Path

Path(f"importing-{os.getpid()}").touch()
while not Path("go").exists():
    time.sleep(0.05)
"""
    + WEB_APP
)


# Put before a worker module: its import (in the build's import check) notes SIGINT instead
# of ending, and waits for the file `go`.
SURVIVES_CTRL_C = """
import signal as _signal
import time as _time
from pathlib import Path as _Path

_signal.signal(_signal.SIGINT, lambda *_: _Path({folder!r}, "got-sigint").touch())
_Path({folder!r}, "importing").touch()
while not _Path({folder!r}, "go").exists():
    _time.sleep(0.05)
"""


class FlashRun(CollectedProcess):
    """`flash run PROJECT` on free ports it finds itself, in a session of its own (signalled
    as a terminal signals its foreground group), its output collected as it comes;
    ``nohup``: run under nohup; ``args``: more of its options."""

    def __init__(
        self,
        project: Path,
        *,
        nohup: bool = False,
        ignore_sigint: bool = False,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k != "COLUMNS"}
        # As a shell runs `flash run &` in a script: SIGINT ignored from the start.
        ignoring = ["sh", "-c", 'trap "" INT; exec "$@"', "sh"] if ignore_sigint else []
        super().__init__(
            [
                *ignoring,
                *(["nohup"] if nohup else []),
                sys.executable,
                *("-m", "flash.cli", "run", str(project)),
                *("--port", "0", "--app-port", "0"),
                *args,
            ],
            env={**env, "NO_COLOR": "1"},
            start_new_session=True,
        )

    def app_port(self) -> int:
        """The port of main.py's web app, as flash run said it last started it."""
        port = urlsplit(self.printed_url(WEB_APP_AT)).port
        assert port is not None, self.text()
        return port

    def signal_group(self, signum: int) -> None:
        """As a terminal does: Ctrl-C, or closing it, signals its foreground group."""
        os.killpg(self.proc.pid, signum)

    def edit(self, path: Path, text: str, expect: str) -> None:
        """Write ``text`` to ``path`` and wait for one more ``expect`` in the output."""
        seen = self.count(expect)
        path.write_text(text)
        self.wait_for_output(expect, seen + 1)


def rewritten(path: Path, before: int) -> Callable[[], bool]:
    """Whether ``path`` was written since its mtime was ``before`` (ns): a build done."""
    return lambda: path.stat().st_mtime_ns != before


def app_pid(app_port: int, timeout: float = 30) -> int | None:
    try:
        answer = httpx.get(f"http://127.0.0.1:{app_port}/pid", timeout=timeout)
    except httpx.TransportError:  # not listening
        return None
    return int(answer.json()) if answer.status_code == 200 else None


def new_app_pid(app_port: int, *old: int) -> int | None:
    """The pid of the web app answering if it is none of ``old``."""
    pid = app_pid(app_port)
    return pid if pid not in old else None


def web_apps(project: Path) -> list[int]:
    """Pids of the web app processes serving ``project``."""
    found = []
    for pid in processes_under(project):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"_web_app_child" in command and alive(pid):
            found.append(pid)
    return found


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on TCP ``port`` (Linux's /proc)."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                    sockets.add(f"socket:[{fields[9]}]")
    held = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):  # closed meanwhile
                held.add(os.readlink(fd))
    return bool(sockets & held)


def test_run_web_app_follows_edits_and_dies_with_flash(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    write_starter(project)
    (project / "main.py").write_text(NO_APP)
    # Build inputs .flashignore cannot hide from the watcher, and one outside the project.
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "extra.txt").write_text("# nothing yet\n")
    (project / "requirements.txt").write_text("-r ../shared/extra.txt\n")
    with (project / ".flashignore").open("a") as ignore:
        ignore.write("main.py\nrequirements.txt\npyproject.toml\n")
        # The files the test's web apps and the test itself write there: not the build's.
        ignore.write("holding\nrelease\ngo\nimporting-*\n")
    worker = project / "workers" / "cpu_worker.py"
    main = project / "main.py"
    flash = FlashRun(project, nohup=True)
    try:
        flash.wait_for_output("Scripts reach these endpoints")
        url = flash.printed_url(PLATFORM_AT)
        # Whole URLs in the table, though no terminal sets its width.
        assert f"{url}/v2/cpu-worker " in flash.text(), flash.text()
        # Under nohup a closed terminal's SIGHUP leaves it serving (seen at the next edit).
        flash.signal_group(signal.SIGHUP)

        # A second flash run on the same state folder is refused before it builds anything.
        second = subprocess.run(
            [sys.executable, "-m", "flash.cli", "run", str(project), "--port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1, second
        assert "another Flash platform" in second.stderr and "collect" not in second.stdout

        # main.py that cannot be read for `app` (a syntax error) is started anyway, so that
        # uvicorn says why it fails.
        flash.edit(main, "app = (\n", "exited with code 1 while starting")
        assert "SyntaxError" in flash.text(), flash.text()

        # main.py starts binding `app` (main.py is ignored by the build, watched anyway).
        flash.edit(main, WEB_APP, WEB_APP_AT)
        app_port = flash.app_port()
        first_pid = flash.wait(lambda: app_pid(app_port), 60, "the new web app to answer")
        assert flash.proc.poll() is None, flash.text()

        # A rebuild restarts the app gracefully: a request in flight finishes on the old
        # one, and no request meanwhile is refused.
        held: list[httpx.Response] = []
        holder = threading.Thread(
            target=lambda: held.append(httpx.get(f"http://127.0.0.1:{app_port}/hold", timeout=120))
        )
        holder.start()
        flash.wait((project / "holding").exists, 30, "the request to be in flight")
        refused: list[Exception] = []
        polling = threading.Event()

        def poll() -> None:
            while not polling.is_set():
                try:
                    httpx.get(f"http://127.0.0.1:{app_port}/pid", timeout=30)
                except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:  # unanswered
                    refused.append(exc)

        poller = threading.Thread(target=poll)
        poller.start()
        # A connection the old app takes before the restart, whose request comes only once
        # that app has stopped taking connections, is answered all the same.
        early = socket.create_connection(("127.0.0.1", app_port), timeout=30)
        flash.edit(worker, worker.read_text() + "\n# an edit\n", "Reloaded")
        new_pid = flash.wait(lambda: new_app_pid(app_port, first_pid), 60, "the restarted app")
        polling.set()
        poller.join(30)
        assert refused == []
        assert new_pid and holder.is_alive()  # the old app still answers its request
        flash.wait(lambda: not listens(first_pid, app_port), 30, "the old app to stop accepting")
        with early:
            early.sendall(b"GET /pid HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b"".join(iter(lambda: early.recv(4096), b""))  # it closes once answered
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"%d" % first_pid), answer
        (project / "release").touch()
        holder.join(30)
        assert held[0].status_code == 200 and held[0].json() == first_pid
        flash.wait(lambda: not alive(first_pid), 30, "the replaced app to exit")

        # main.py taking `app` from another module still serves it.
        (project / "api.py").write_text(WEB_APP)
        main.write_text(IMPORTED_APP)
        flash.wait(lambda: new_app_pid(app_port, new_pid), 60, "the app from api.py")
        assert "no longer binds" not in flash.text()

        # Edits to build inputs the ignore file lists, or outside the project, rebuild (one
        # that leaves the archive as it was reloads nothing); so does a file requirements.txt
        # names once it is created.
        archive = project / ".flash" / "archive.tar.gz"
        for source in (shared / "extra.txt", project / "pyproject.toml"):
            built = archive.stat().st_mtime_ns
            source.write_text(source.read_text() + "\n# an edit\n")
            flash.wait(rewritten(archive, built), 60, f"a rebuild for {source.name}")
        requirements = "-r ../shared/extra.txt\n-r ../shared/later.txt\n"
        flash.edit(project / "requirements.txt", requirements, "Build failed")
        seen = flash.count("Build good again") + flash.count("Reloaded")
        (shared / "later.txt").write_text("# created later\n")
        flash.wait(
            lambda: flash.count("Build good again") + flash.count("Reloaded") > seen,
            60,
            "a rebuild for later.txt",
        )

        # A web app that fails to restart is reported, and the one serving serves on.
        def one_app(*old: int) -> int | None:  # the app serving once no other runs, if new
            apps = web_apps(project)
            alone = len(apps) == 1 and app_pid(app_port) == apps[0] not in old
            return apps[0] if alone else None

        serving = flash.wait(one_app, 60, "one web app serving")
        flash.edit(main, "import no_such_module\n" + WEB_APP, "exited with code 1 while starting")
        assert "Still serving the previous web app" in flash.text(), flash.text()
        assert app_pid(app_port) == serving
        # Two quick edits: the second restart begins while the first is still starting;
        # only the last one serves, the others exit.
        main.write_text(SLOW_APP)
        flash.wait(lambda: len(list(project.glob("importing-*"))) == 1, 60, "a slow restart")
        main.write_text(SLOW_APP + "\n# again\n")
        flash.wait(lambda: len(list(project.glob("importing-*"))) >= 2, 60, "another restart")
        assert app_pid(app_port) == serving, flash.text()  # the old app serves while they start
        # The one superseded ends at once, inside its import.
        starting = [int(path.name.split("-")[1]) for path in project.glob("importing-*")]
        flash.wait(lambda: sum(map(alive, starting)) == 1, 30, "the superseded restart to end")
        (project / "go").touch()
        # The old app may answer a request or two while it drains.
        last = flash.wait(lambda: one_app(serving), 60, "the old web app to exit")
        assert last in starting

        # Project code raising KeyboardInterrupt is a failed build, not a Ctrl-C.
        original = worker.read_text()
        flash.edit(worker, "raise KeyboardInterrupt('oops')\n" + original, "Build failed")
        flash.wait(lambda: "KeyboardInterrupt" in flash.text(), 10, "the failure's reason")
        flash.edit(worker, original, "Build good again: serving")

        # An app that dies while serving is reported; its port is freed (connections are
        # refused, not left waiting), and the next change starts the app again.
        main.write_text(DYING_APP)
        dying = flash.wait(lambda: one_app(last), 60, "the new app")
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{app_port}/die", timeout=30)
        flash.wait_for_output("exited with code 3 while serving")
        flash.wait(lambda: not alive(dying), 30, "the app to be gone")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", app_port), timeout=5)
        flash.edit(main, WEB_APP, WEB_APP_AT)
        app_port = flash.app_port()  # another, had its port been taken meanwhile
        flash.wait(lambda: app_pid(app_port), 60, "the web app to start again")
        assert flash.proc.poll() is None

        # Killed outright, flash run takes its web app and workers along.
        last_pid = flash.wait(lambda: app_pid(app_port), 30, "the web app")
        flash.proc.kill()
        assert flash.exit_code() == -signal.SIGKILL
        flash.wait(lambda: not alive(last_pid), 30, "the web app to die with flash run")
        flash.wait(lambda: not processes_under(project), 30, "every process of the project")
    finally:
        flash.end()


def test_main_seen_empty_while_being_saved_leaves_its_web_app_serving(tmp_path: Path) -> None:
    # An editor saving in place empties main.py, then writes it: a watch may see the empty
    # file (a busy machine). It stopped the app as binding no `app`, down until the import
    # of the saved one ended.
    project = tmp_path / "proj"
    write_starter(project)
    main = project / "main.py"
    main.write_text(WEB_APP)
    worker = project / "workers" / "cpu_worker.py"
    flash = FlashRun(project)
    try:
        app_port = flash.app_port()
        pid = flash.wait(lambda: app_pid(app_port), 60, "the web app to answer")
        flash.edit(main, "", "main.py is empty")
        assert app_pid(app_port) == pid, flash.text()
        # Said once while it stays empty, not again at each reload.
        flash.edit(worker, worker.read_text() + "\n# an edit\n", "Reloaded")
        main.write_text(WEB_APP + "\n# saved\n")
        saved = flash.wait(lambda: new_app_pid(app_port, pid), 60, "the saved app")
        assert flash.count("main.py is empty") == 1, flash.text()
        assert "no longer binds" not in flash.text()
        flash.edit(main, "", "main.py is empty")  # empty again: said again
        assert app_pid(app_port) == saved, flash.text()
        main.unlink()  # gone: no web app
        flash.wait_for_output("main.py no longer binds `app`: its web app is stopped")
    finally:
        flash.end()


def test_run_stops_cleanly_on_sighup_to_its_group(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    write_starter(project)
    (project / "main.py").write_text(WEB_APP)
    flash = FlashRun(project)
    try:
        app_port = flash.app_port()
        pid = wait_for(lambda: app_pid(app_port), 60, "the web app to answer")
    finally:
        flash.signal_group(signal.SIGHUP)  # as when its terminal closes
    assert flash.exit_code() == 0, flash.text()
    assert not alive(pid)
    # The app stopped gracefully at flash run's request, not killed by the hangup.
    assert "exited with code" not in flash.text() and "Error" not in flash.text(), flash.text()
    assert "Application shutdown complete" in flash.text(), flash.text()
    wait_for(lambda: not processes_under(project), 10, "every process of the project to exit")


def test_ctrl_c_during_a_rebuild_stops_without_reloading(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    write_starter(project)
    (project / "main.py").write_text(WEB_APP)
    worker = project / "workers" / "cpu_worker.py"
    flash = FlashRun(project)
    try:
        app_port = flash.app_port()
        pid = wait_for(lambda: app_pid(app_port), 60, "the web app to answer")
        # The rebuild's import of the worker outlives the Ctrl-C (it says it got it), and
        # lets the build go on once the test creates `go`: the build ends after the stop.
        worker.write_text(SURVIVES_CTRL_C.format(folder=str(tmp_path)) + worker.read_text())
        wait_for((tmp_path / "importing").exists, 60, "the rebuild's import check")
        flash.signal_group(signal.SIGINT)
        wait_for((tmp_path / "got-sigint").exists, 30, "the group to get SIGINT")
        (tmp_path / "go").touch()
        assert flash.exit_code() == 0, flash.text()
    finally:
        flash.end()
    after = flash.text().split("Scripts reach these endpoints", 1)[1]
    for unwanted in ("Traceback", "KeyboardInterrupt", "exited with code", "Reloaded"):
        assert unwanted not in after, flash.text()
    assert flash.count("Web app (main.py) on") == 1, flash.text()
    assert "Application shutdown complete" in after, flash.text()  # stopped gracefully
    assert not alive(pid)
    wait_for(lambda: not processes_under(project), 10, "every process of the project to exit")


def starter_whose_worker_starts_with(folder: Path, code: str) -> Path:
    """The starter project in ``folder``/proj, ``code`` put before its cpu worker's."""
    project = folder / "proj"
    write_starter(project)
    worker = project / "workers" / "cpu_worker.py"
    worker.write_text(code + worker.read_text())
    return project


def test_ctrl_c_during_the_first_build_says_interrupted(tmp_path: Path) -> None:
    project = starter_whose_worker_starts_with(tmp_path, "import time\n\ntime.sleep(60)\n")
    flash = FlashRun(project)
    try:
        # The build's import check (cwd .flash/.build) is importing the slow module.
        wait_for(lambda: processes_under(project / ".flash" / ".build"), 60, "the import check")
    finally:
        flash.signal_group(signal.SIGINT)  # Ctrl-C: the terminal signals the group
    assert flash.exit_code() == 130, flash.text()
    assert "Interrupted during the first build" in flash.text()
    assert "failed to import" not in flash.text()
    wait_for(lambda: not processes_under(project), 10, "every process of the project to exit")


def test_keyboard_interrupt_raised_by_the_project_fails_the_first_build(tmp_path: Path) -> None:
    project = starter_whose_worker_starts_with(tmp_path, "raise KeyboardInterrupt('oops')\n")
    flash = FlashRun(project)
    try:
        # Reported as the project's failure: flash run waits for a fix, not interrupted.
        flash.wait_for_output("waits for a change to the project to build again")
        reported = flash.text()
    finally:
        flash.end()
    assert "Interrupted" not in reported
    assert "Error:" in reported and "KeyboardInterrupt" in reported, reported


def test_run_started_ignoring_sigint_builds_through_a_sigint(tmp_path: Path) -> None:
    # The build's import check signals its whole group, flash run included, as a Ctrl-C to
    # a script running `flash run &` would: ignored from the start, it stays ignored.
    signal_group = "import os\nimport signal\n\nos.killpg(0, signal.SIGINT)\n"
    project = starter_whose_worker_starts_with(tmp_path, signal_group)
    flash = FlashRun(project, ignore_sigint=True)
    try:
        serving = "Scripts reach these endpoints"
        wait_for(
            lambda: serving in flash.text() or flash.proc.poll() is not None,
            60,
            "flash run to serve or exit",
        )
        assert flash.proc.poll() is None, flash.text()
    finally:
        flash.end()
    assert "KeyboardInterrupt" not in flash.text() and "Interrupted" not in flash.text()


def test_run_starts_a_main_py_with_a_syntax_error_to_report_it(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    write_starter(project)
    (project / "main.py").write_text("app = (\n")
    with (project / ".flashignore").open("a") as ignore:
        ignore.write("main.py\n")  # else the build reports it
    flash = FlashRun(project)
    try:
        assert flash.exit_code() == 1, flash.text()
    finally:
        flash.end()
    assert "SyntaxError" in flash.text() and "exited with code 1 while starting" in flash.text()


def test_run_shows_where_main_py_fails_to_import_in_the_projects_own_files(
    tmp_path: Path,
) -> None:
    project = tmp_path / "proj"
    write_starter(project)
    (project / "main.py").write_text("from api import app  # noqa: F401\n")
    (project / "api.py").write_text(
        "from starlette.applications import Starlette\n"
        "from workers.cpu_worker import preprocess, nothere\n\napp = Starlette()\n"
    )
    flash = FlashRun(project)
    try:
        assert flash.exit_code() == 1, flash.text()
    finally:
        flash.end()
    said = flash.text().split("Scripts reach these endpoints", 1)[1]
    # As a failed import of the build shows it: the project's frames, then the error.
    report = (
        "main.py failed to import:\n"
        "  main.py:1 in <module>: from api import app  # noqa: F401\n"
        "  api.py:2 in <module>: from workers.cpu_worker import preprocess, nothere\n"
        "ImportError: cannot import name 'nothere' from 'workers.cpu_worker' "
        "(workers/cpu_worker.py)\n"
    )
    assert report in said, said
    # Not the frames of runpy, uvicorn and importlib that imported it.
    for unwanted in ("Traceback", "runpy", "_web_app_child", "uvicorn", "importlib"):
        assert unwanted not in said, said
    assert "exited with code 1 while starting; its output is above" in said, said


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


# A web app that notes each of its starts in app.log, in the project, as a web app's own
# log or SQLite database is written there.
LOGGING_APP = (
    WEB_APP
    + """
with open("app.log", "a") as log:
    log.write(f"started {os.getpid()}\\n")
"""
)


def test_a_file_the_web_app_writes_at_each_start_stops_reloading_it(tmp_path: Path) -> None:
    # Each write was a change: a new build, the web app restarted, which wrote again, for
    # ever, nothing saying why.
    project = tmp_path / "proj"
    write_starter(project)
    (project / "main.py").write_text(LOGGING_APP)
    log = project / "app.log"
    worker = project / "workers" / "cpu_worker.py"
    flash = FlashRun(project)
    try:
        flash.wait_for_output("add it to .flashignore, or write it outside the project", 1, 120)
        assert "app.log" in flash.text().rsplit("Warning", 1)[1], flash.text()
        reloads = flash.count("Reloaded")
        # An edit of another file still reloads; the app's write as it restarts does not.
        starts = len(log.read_text().splitlines())
        flash.edit(worker, worker.read_text() + "\n# an edit\n", "Reloaded")
        flash.wait(lambda: len(log.read_text().splitlines()) > starts, 60, "the app's log")
        flash.edit(worker, worker.read_text() + "\n# another\n", "Reloaded")
        flash.wait(lambda: len(log.read_text().splitlines()) > starts + 1, 60, "the app's log")
        assert flash.count("Reloaded") == reloads + 2, flash.text()
        assert flash.count("add it to .flashignore") == 1, flash.text()
    finally:
        flash.end()


@contextlib.contextmanager
def appending_rows(path: Path) -> Iterator[None]:
    """Append a row to ``path`` every 50 ms while the block runs, as a script writing a
    data file does."""
    done = threading.Event()

    def append() -> None:
        while not done.wait(0.05):
            with path.open("a") as rows:
                rows.write("row\n")

    writer = threading.Thread(target=append)
    writer.start()
    try:
        yield
    finally:
        done.set()
        writer.join(30)


def test_files_changing_while_building_are_built_once_they_stay_put(tmp_path: Path) -> None:
    # Each build saw data.txt change while it ran, 3 times over: "Build failed", though
    # nothing was broken (and at the first build, an error).
    project = tmp_path / "proj"
    write_starter(project)
    data = project / "data.txt"
    with appending_rows(data):
        flash = FlashRun(project)
        flash.wait_for_output("stay put")
    try:
        flash.wait_for_output("Scripts reach these endpoints")
        with appending_rows(data):
            flash.wait_for_output("stay put", 2)
        flash.wait_for_output("Reloaded")
        for failure in ("Error", "Build failed", "Build good again"):
            assert failure not in flash.text(), flash.text()
    finally:
        flash.end()


def test_a_changed_secret_file_the_build_leaves_out_keeps_the_workers(tmp_path: Path) -> None:
    # Its build was new (the file screened again), its archive the same: the workers were
    # replaced all the same. The web app, which reads the project's files (the key, say),
    # restarts as after any new build.
    project = tmp_path / "proj"
    write_starter(project)
    (project / "main.py").write_text(WEB_APP)
    pem = "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n"
    (project / "deploy.pem").write_text(pem.format("MIIEpAIBAAKCAQEA" * 4))
    archive = project / ".flash" / "archive.tar.gz"
    worker = project / "workers" / "cpu_worker.py"
    flash = FlashRun(project)
    try:
        flash.wait_for_output("Scripts reach these endpoints")
        app_port = flash.app_port()
        first_pid = flash.wait(lambda: app_pid(app_port), 60, "the web app to answer")
        built = archive.stat().st_mtime_ns
        (project / "deploy.pem").write_text(pem.format("MIIEowIBAAKCAQEA" * 4))  # rotated
        flash.wait(rewritten(archive, built), 60, "the build of the new key")
        flash.wait(lambda: new_app_pid(app_port, first_pid), 60, "the web app to restart")
        flash.edit(worker, worker.read_text() + "\n# an edit\n", "Reloaded")
        assert flash.count("Reloaded") == 1, flash.text()  # the edit's, not the key's
    finally:
        flash.end()


def test_second_ctrl_c_stops_at_once_while_the_web_app_answers_a_request(
    tmp_path: Path,
) -> None:
    project = tmp_path / "proj"
    write_starter(project)
    (project / "main.py").write_text(WEB_APP)
    flash = FlashRun(project)
    held: list[BaseException] = []

    def hold() -> None:  # answered never: the test creates no `release`
        try:
            httpx.get(f"http://127.0.0.1:{app_port}/hold", timeout=120)
        except httpx.TransportError as exc:
            held.append(exc)

    try:
        app_port = flash.app_port()
        pid = flash.wait(lambda: app_pid(app_port), 60, "the web app to answer")
        holder = threading.Thread(target=hold)
        holder.start()
        flash.wait((project / "holding").exists, 30, "the request to be in flight")
        flash.signal_group(signal.SIGINT)
        # flash run says what it waits for, and how to stop at once (the app's own session
        # gets no Ctrl-C: uvicorn's "CTRL+C to force quit" would be wrong).
        flash.wait_for_output("Ctrl+C again stops it at once", timeout=30)
        assert flash.count("Ctrl+C again stops it at once") == 1
        assert alive(pid) and flash.proc.poll() is None  # still waiting for the request
        flash.signal_group(signal.SIGINT)
        assert flash.exit_code(timeout=15) == 0, flash.text()
    finally:
        flash.end()
    holder.join(30)
    assert held, "the request in flight was cut off"
    assert "CTRL+C to force quit" not in flash.text(), flash.text()
    assert "Traceback" not in flash.text(), flash.text()
    assert not alive(pid)
    wait_for(lambda: not processes_under(project), 10, "every process of the project to exit")
