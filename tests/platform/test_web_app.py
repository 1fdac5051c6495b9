"""flash.platform.web_app: which main.py binds `app`, and the web app's process on its own."""

from __future__ import annotations

import contextlib
import os
import queue
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from tests.helpers import alive, wait_for

from flash.build.scanner import module_bindings
from flash.platform._web_app_child import ORPHANED, UNSUPPORTED
from flash.platform.web_app import WEB_APP_DRAIN_S, WEB_APP_STOP_S, WebApp, defines_web_app

CHILD = "flash.platform._web_app_child"


@pytest.mark.parametrize(
    "source",
    [
        "app = make()",
        "app: Starlette = make()",
        "from api import app",
        "from api import application as app",
        "import app",
        "app, other = make(), 1",
        "[first, *app] = parts",
        "def app(scope, receive, send): ...",
        "async def app(scope, receive, send): ...",
        "class app: ...",
        "try:\n    app = make()\nexcept ImportError:\n    pass",
        "try:\n    pass\nexcept ImportError:\n    app = make()",
        "if DEBUG:\n    app = make()\nelse:\n    app = other()",
        "with context() as app:\n    pass",
        "for app in apps:\n    pass",
        "match x:\n    case 1:\n        app = make()",
    ],
)
def test_main_binding_app_in_any_top_level_form_defines_a_web_app(
    tmp_path: Path, source: str
) -> None:
    (tmp_path / "main.py").write_text(source + "\n")
    assert defines_web_app(tmp_path / "main.py") is True


@pytest.mark.parametrize(
    "source",
    [
        "print('a script')",
        "def make():\n    app = 1\n    return app",
        "class Holder:\n    app = 1",
        "config.app = make()",
        "apps['app'] = make()",
        "from api import *",
        "import api.app",
    ],
)
def test_main_not_binding_app_defines_none(tmp_path: Path, source: str) -> None:
    (tmp_path / "main.py").write_text(source + "\n")
    assert defines_web_app(tmp_path / "main.py") is False


def test_unreadable_main_cannot_be_told(tmp_path: Path) -> None:
    assert defines_web_app(tmp_path / "main.py") is False  # no main.py: no web app
    (tmp_path / "main.py").write_text("app = (\n")
    assert defines_web_app(tmp_path / "main.py") is None


def test_module_bindings_lists_every_top_level_name() -> None:
    source = "import a.b\nfrom c import d as e\nf, (g, h) = 1, (2, 3)\nx += 1\n"
    assert module_bindings(source) == {"a", "e", "f", "g", "h", "x"}


class Child:
    """The web app's process for a one-function ASGI app, started as WebApp starts it,
    for ``parent``; ``ready`` and ``lifeline`` are this test's pipe ends."""

    def __init__(self, folder: Path, parent: int) -> None:
        (folder / "main.py").write_text("async def app(scope, receive, send):\n    pass\n")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.ready, ready_w = os.pipe()
        lifeline, self.lifeline = os.pipe()
        fds = (self.listener.fileno(), ready_w, lifeline)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", CHILD, *map(str, fds), str(parent), "1"],
            cwd=folder,
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
        )
        os.close(ready_w)
        os.close(lifeline)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.ready, self.lifeline):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.listener.close()


def test_web_app_process_exits_when_its_parent_is_gone(tmp_path: Path) -> None:
    # Its parent here is this test; the lifeline's write end closing stands for the parent
    # dying (the only holder of that end), as on a system without PR_SET_PDEATHSIG.
    child = Child(tmp_path, os.getpid())
    try:
        assert select.select([child.ready], [], [], 60)[0], "the app never said it was ready"
        assert os.read(child.ready, 1) == b"1"
        assert child.proc.poll() is None
        os.close(child.lifeline)
        assert child.proc.wait(30) == ORPHANED
    finally:
        child.close()


def test_web_app_process_started_for_a_parent_already_gone_exits(tmp_path: Path) -> None:
    # A process spawned and reaped is never this child's parent: as when flash run died
    # before the child ran (pid 1 would be, were the tests run as pid 1).
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    child = Child(tmp_path, gone.pid)
    try:
        assert child.proc.wait(30) == ORPHANED
        assert os.read(child.ready, 1) == b""  # never said ready
    finally:
        child.close()


def test_web_app_process_refuses_a_uvicorn_it_cannot_drive(tmp_path: Path) -> None:
    # A uvicorn whose Server lacks what readiness relies on (here: a module in the app's
    # folder, which comes first on its path) fails loudly rather than never saying ready.
    (tmp_path / "uvicorn.py").write_text("class Server:\n    pass\n\n\nclass Config:\n    pass\n")
    child = Child(tmp_path, os.getpid())
    try:
        assert child.proc.wait(30) == UNSUPPORTED
        assert os.read(child.ready, 1) == b""
    finally:
        child.close()


# An ASGI app answering "ok", that exits at once (as on a fatal error) on a request for /die.
OK_APP = """
import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/die":
        os._exit(3)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_web_app_port_is_refused_while_no_app_serves(tmp_path: Path) -> None:
    main = tmp_path / "main.py"
    main.write_text(OK_APP)
    errors: queue.Queue[str] = queue.Queue()
    web = WebApp(
        tmp_path,
        "127.0.0.1",
        0,
        {},
        threading.Event(),
        say=lambda _: None,
        warn=lambda _, message: errors.put(message),
    )
    try:
        web.start()
        port = web.port
        url = f"http://127.0.0.1:{port}"
        # Connections made while it starts wait for it (the port is held).
        assert httpx.get(url, timeout=60).text == "ok"
        web.stop()  # as when main.py no longer binds `app`
        assert refused(port)
        web.start()  # on the same port
        assert httpx.get(url, timeout=60).text == "ok"
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"{url}/die", timeout=60)
        assert "exited with code 3 while serving" in errors.get(timeout=60)
        assert refused(port)
        main.write_text("raise SystemExit(1)\n")
        web.start()
        assert "exited with code 1 while starting" in errors.get(timeout=60)
        assert refused(port)
    finally:
        web.close()


def test_an_app_on_any_port_whose_port_was_taken_while_down_starts_on_another(
    tmp_path: Path,
) -> None:
    # --app-port 0: the port found is bound again at each start, but one that another
    # program took while no app held it left the app down ("Cannot start the web app")
    # until flash run restarted, though the user had asked for any free port.
    (tmp_path / "main.py").write_text(OK_APP)
    said: list[str] = []
    web = WebApp(
        tmp_path, "127.0.0.1", 0, {}, threading.Event(), say=said.append, warn=lambda *_: None
    )
    try:
        web.start()
        first = web.port
        web.stop()
        with socket.socket() as taken:
            with contextlib.suppress(OSError):  # else another program took it: as good
                taken.bind(("127.0.0.1", first))
            web.start()
        assert web.port != first
        assert httpx.get(f"http://127.0.0.1:{web.port}", timeout=60).text == "ok"
        assert said[-1] == (
            f"Web app (main.py) on http://127.0.0.1:{web.port} (port {first} was taken meanwhile)"
        )
    finally:
        web.close()


def test_a_start_that_cannot_start_its_process_leaves_the_port_free(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.py").write_text(OK_APP)
    errors: queue.Queue[str] = queue.Queue()
    web = _web_app(project, errors)
    try:
        web.start()
        url = f"http://127.0.0.1:{web.port}"
        assert httpx.get(url, timeout=60).text == "ok"
        shutil.rmtree(project)  # no process starts in the project's folder now
        with pytest.raises(FileNotFoundError):
            web.start()
        assert httpx.get(url, timeout=60).text == "ok"  # the app serving serves on
        web.stop()
        assert refused(web.port)
        with pytest.raises(FileNotFoundError):
            web.start()
        assert refused(web.port)  # not held for an app that never came
        assert not web.running and errors.empty()
    finally:
        web.close()


# OK_APP whose import waits for the file `go`, saying so with the file `starting` (which
# holds its pid).
SLOW_OK_APP = (
    """
import os
import time
from pathlib import Path

Path("starting").write_text(str(os.getpid()))
while not Path("go").exists():
    time.sleep(0.05)
"""
    + OK_APP
)

# An ASGI app answering "ok" whose lifespan startup (main.py imported) waits for `go`, saying
# so with the file `starting`, as an app loading a model at startup.
SLOW_LIFESPAN_APP = """
import asyncio
import os
from pathlib import Path


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                Path("starting").write_text(str(os.getpid()))
                while not Path("go").exists():
                    await asyncio.sleep(0.05)
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def _starting(folder: Path) -> int:
    """The pid of the slow app starting in ``folder``, once it waits for `go`."""
    said = folder / "starting"
    return int(wait_for(lambda: said.exists() and said.read_text(), 60, "the app to start"))


@pytest.mark.parametrize("serving", [False, True], ids=["none-serving", "one-serving"])
def test_a_retry_on_its_way_is_not_asked_for_again(tmp_path: Path, serving: bool) -> None:
    # After a failed start any change retries; a retry still starting is not asked for
    # again, by a watch that begins (an empty batch) or a build that changed nothing: that
    # started a second app, importing main.py twice, for one save.
    main = tmp_path / "main.py"
    errors: queue.Queue[str] = queue.Queue()
    web = _web_app(tmp_path, errors)
    try:
        if serving:
            main.write_text(OK_APP)
            web.start()
            # Not a request: one can be answered before the app's "ready" is read, and a
            # start meanwhile supersedes it.
            wait_for(lambda: web.serving, 60, "the app to serve")
        main.write_text("raise SystemExit(1)\n")
        web.start()
        assert "exited with code 1 while starting" in errors.get(timeout=60)
        assert web.needs_start
        main.write_text(SLOW_OK_APP)
        web.start()
        _starting(tmp_path)
        assert not web.needs_start
        (tmp_path / "go").touch()
        assert httpx.get(f"http://127.0.0.1:{web.port}", timeout=60).text == "ok"
        assert not web.needs_start
        main.write_text("raise SystemExit(1)\n")  # a retry failing in turn asks again
        web.start()
        assert "exited with code 1 while starting" in errors.get(timeout=60)
        assert web.needs_start
    finally:
        web.close()


SLOW_APPS = pytest.mark.parametrize(
    "slow", [SLOW_OK_APP, SLOW_LIFESPAN_APP], ids=["in-import", "in-lifespan-startup"]
)


@SLOW_APPS
def test_stopping_an_app_still_starting_ends_it_at_once(tmp_path: Path, slow: str) -> None:
    # Its start ran on to the end (the signal only noted), and flash run waited for it
    # until WEB_APP_STOP_S: a Ctrl-C, or a main.py that no longer binds `app`, hung 40 s.
    (tmp_path / "main.py").write_text(slow)
    errors: queue.Queue[str] = queue.Queue()
    web = _web_app(tmp_path, errors)
    try:
        web.start()
        starting = _starting(tmp_path)
        began = time.monotonic()
        web.stop()
        assert time.monotonic() - began < WEB_APP_STOP_S / 4
        assert not alive(starting)
        assert refused(web.port)
    finally:
        web.close()
    assert errors.empty()


@SLOW_APPS
def test_a_start_superseded_while_starting_ends_and_frees_the_port(
    tmp_path: Path, slow: str
) -> None:
    # Only the last start may serve. One replaced while it started was no longer followed:
    # it served on once ready, and still held the port after a stop, so that the next start
    # failed ("Address already in use").
    main = tmp_path / "main.py"
    main.write_text(OK_APP)
    errors: queue.Queue[str] = queue.Queue()
    web = _web_app(tmp_path, errors)
    try:
        web.start()
        url = f"http://127.0.0.1:{web.port}"
        first = wait_for(lambda: web.serving, 60, "the app to serve")
        main.write_text(slow)
        web.start()
        superseded = _starting(tmp_path)
        main.write_text("raise SystemExit(1)\n")
        web.start()
        assert "exited with code 1 while starting" in errors.get(timeout=60)
        wait_for(lambda: not alive(superseded), WEB_APP_STOP_S / 4, "the superseded start to end")
        assert httpx.get(url, timeout=60).text == "ok"  # the first app serves on
        assert web.serving == first
        web.stop()
        main.write_text(OK_APP)
        web.start()
        assert httpx.get(url, timeout=60).text == "ok"
    finally:
        web.close()
    assert errors.empty()


# SLOW_OK_APP that does not end on SIGTERM: its import installs a handler of its own, as
# some libraries do.
DEAF_SLOW_APP = (
    """
import signal

signal.signal(signal.SIGTERM, lambda *_: None)
"""
    + SLOW_OK_APP
)


def test_a_start_failing_beside_a_superseded_one_still_running_leaves_the_port_usable(
    tmp_path: Path,
) -> None:
    # With none serving, a failed start freed the port while a superseded start, not yet
    # gone, held it: the next start failed ("Address already in use").
    main = tmp_path / "main.py"
    main.write_text(DEAF_SLOW_APP)
    errors: queue.Queue[str] = queue.Queue()
    web = _web_app(tmp_path, errors)
    try:
        web.start()
        superseded = _starting(tmp_path)
        main.write_text("raise SystemExit(1)\n")
        web.start()
        assert "The web app is down until the next change" in errors.get(timeout=60)
        assert alive(superseded)
        main.write_text(OK_APP)
        web.start()
        assert httpx.get(f"http://127.0.0.1:{web.port}", timeout=60).text == "ok"
    finally:
        web.close()
    assert not alive(superseded)
    assert errors.empty()


WSGI_FUNCTION = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("wsgi " + environ["PATH_INFO"]).encode()]
"""
# As Flask's and Django's apps are: an object whose __call__ takes (environ, start_response).
WSGI_OBJECT = """
class Application:
    def __call__(self, environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [("object " + environ["PATH_INFO"]).encode()]


app = Application()
"""


def _web_app(folder: Path, errors: queue.Queue[str]) -> WebApp:
    return WebApp(
        folder,
        "127.0.0.1",
        0,
        {},
        threading.Event(),
        say=lambda _: None,
        warn=lambda _, message: errors.put(message),
    )


@pytest.mark.parametrize(("source", "answer"), [(WSGI_FUNCTION, "wsgi"), (WSGI_OBJECT, "object")])
def test_a_wsgi_app_is_served_as_wsgi(tmp_path: Path, source: str, answer: str) -> None:
    # uvicorn's own guess would call it as ASGI: a 500 for every request.
    (tmp_path / "main.py").write_text(source)
    errors: queue.Queue[str] = queue.Queue()
    web = _web_app(tmp_path, errors)
    try:
        web.start()
        reply = httpx.get(f"http://127.0.0.1:{web.port}/page", timeout=60)
        assert (reply.status_code, reply.text) == (200, f"{answer} /page")
    finally:
        web.close()
    assert errors.empty()


LOOP_AT_IMPORT = """
import asyncio

LOOP = asyncio.get_running_loop()  # as under uvicorn: main.py is imported in its loop


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    same = asyncio.get_running_loop() is LOOP
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"same loop" if same else b"another"})
"""


def test_main_is_imported_in_the_loop_that_serves_it(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(LOOP_AT_IMPORT)
    errors: queue.Queue[str] = queue.Queue()
    web = _web_app(tmp_path, errors)
    try:
        web.start()
        assert httpx.get(f"http://127.0.0.1:{web.port}/", timeout=60).text == "same loop"
    finally:
        web.close()
    assert errors.empty()


def test_an_app_that_is_no_web_app_fails_to_start_saying_so(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "main.py").write_text("app = 5\n")
    errors: queue.Queue[str] = queue.Queue()
    web = _web_app(tmp_path, errors)
    try:
        web.start()
        assert "exited with code 1 while starting" in errors.get(timeout=60)
    finally:
        web.close()
    said = capfd.readouterr().err
    assert "main.py's `app` is not a web app (a value of type int)" in said, said


def test_stopping_waits_out_uvicorns_own_drain() -> None:
    # Else a Ctrl-C kills a request that uvicorn would still let finish.
    assert WEB_APP_STOP_S > WEB_APP_DRAIN_S
