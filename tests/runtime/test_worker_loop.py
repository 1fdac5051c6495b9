"""Our worker loop against a platform that answers nonsense: it says so and keeps working."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tests.helpers import QuietHandler, serve_http, worker_env

WORKER = """
from flash.runtime.worker import start

start(lambda job: {"doubled": job["input"]["x"] * 2})
"""


class _Platform(QuietHandler):
    # Job-take answers, in order: not JSON, a job without an id, a real job; then nothing.
    takes = [b"not json", b'[{"input": {"x": 0}}]', b'[{"id": "j1", "input": {"x": 21}}]']
    # Job-stop answers, in order: job ids that are no list, ids that are no strings, not
    # JSON. The poll must survive each: it asks again after the last.
    stops = [b'{"jobsToStop": 5}', b'{"jobsToStop": [[1], {"id": 2}]}', b"{broken"]
    stops_survived = threading.Event()
    done: dict[str, Any] = {}
    finished = threading.Event()

    def do_GET(self) -> None:
        if "/job-take/" in self.path and self.takes:
            self.answer(200, self.takes.pop(0))
        elif "/job-stop/" in self.path and self.stops:
            self.answer(200, self.stops.pop(0))
        elif "/job-stop/" in self.path:
            _Platform.stops_survived.set()
            self.answer(204, b"")
        else:
            self.answer(204, b"")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if "/job-done/" in self.path:
            _Platform.done = json.loads(body)
            _Platform.finished.set()
        self.answer(200, b"{}")


def test_the_worker_loop_survives_bodies_that_are_not_jobs(tmp_path: Path) -> None:
    (tmp_path / "worker.py").write_text(WORKER)
    with serve_http(_Platform) as port:
        worker = subprocess.Popen(
            [sys.executable, str(tmp_path / "worker.py")],
            env=worker_env(port),
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert _Platform.finished.wait(30), "the real job was never answered"
            assert _Platform.done == {"output": {"doubled": 42}}
            assert _Platform.stops_survived.wait(30), "the stop poll died on a bad answer"
        finally:
            worker.kill()
            _, stderr = worker.communicate(timeout=30)
    assert "job-take answered a body that is not JSON" in stderr
    assert "job-take answered a job without an id" in stderr
    assert "job-stop answered a body that is not JSON" in stderr
    assert "job-stop answered no list of job ids" in stderr
    assert "Traceback" not in stderr


def test_a_body_holding_a_lone_surrogate_is_sent_ascii_escaped() -> None:
    from flash.runtime.worker import _json_body

    assert _json_body({"output": "é"}) == '{"output": "é"}'.encode()  # UTF-8 when it can be
    body = _json_body({"output": ["héllo \ud83d", {"\udc00": 1}]})
    assert body == b'{"output": ["h\\u00e9llo \\ud83d", {"\\udc00": 1}]}'
    assert json.loads(body) == {"output": ["héllo \ud83d", {"\udc00": 1}]}
