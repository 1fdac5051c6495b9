"""A worker whose job takes are refused (a 400: a misconfigured worker) pauses between tries
instead of spinning on the platform and the console."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from tests.helpers import QuietHandler, serve_http, worker_env

WORKER = """
from flash.runtime.worker import start

start(lambda job: job["input"])
"""

# A few tries with growing pauses fit in the window; a spinning loop makes thousands.
_WINDOW_S = 2.0
_MOST_TAKES = 10


class _Refusing(QuietHandler):
    takes = 0
    first = threading.Event()
    too_many = threading.Event()
    lock = threading.Lock()

    def do_GET(self) -> None:
        if "/job-take" in self.path:
            with _Refusing.lock:
                _Refusing.takes += 1
                if _Refusing.takes > _MOST_TAKES:
                    _Refusing.too_many.set()
            _Refusing.first.set()
            self.answer(400, b'{"error": "bad worker"}')
        else:
            self.answer(204, b"")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.answer(200, b"{}")


def test_a_worker_refused_its_job_takes_backs_off(tmp_path: Path) -> None:
    (tmp_path / "worker.py").write_text(WORKER)
    with serve_http(_Refusing) as port:
        worker = subprocess.Popen(
            [sys.executable, str(tmp_path / "worker.py")],
            env=worker_env(port),
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert _Refusing.first.wait(30), "the worker never asked for a job"
            # Counting from its first take: more than a handful in the window is a spin.
            spun = _Refusing.too_many.wait(_WINDOW_S)
            takes = _Refusing.takes
            assert worker.poll() is None, "the worker died on a refused take"
        finally:
            worker.kill()
            _, stderr = worker.communicate(timeout=30)
    assert not spun, f"{takes} job takes in {_WINDOW_S} s"
    assert stderr.count("job-take answered 400") <= 1, stderr[-2000:]
