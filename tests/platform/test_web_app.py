"""flash.platform.web_app: which main.py binds `app`, and the web app's process on its own."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from flash.build.scanner import module_bindings
from flash.platform._web_app_child import ORPHANED, UNSUPPORTED
from flash.platform.web_app import defines_web_app

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
    # Pid 1 is never this child's parent: as when flash run died before the child ran.
    child = Child(tmp_path, 1)
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
