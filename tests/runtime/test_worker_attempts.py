"""A job handed to a worker again while the thread of its stopped attempt still runs there:
the new attempt is reported, the old one is not, and each keeps its own slot."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.helpers import QuietHandler, serve_http, worker_env

WORKER = """
import time
from flash.runtime.worker import start


def handler(job):
    time.sleep(job["input"]["seconds"])
    return {"run": job["input"]["run"]}


start(handler)
"""


class _RetryingPlatform(QuietHandler):
    """Hands out job "J", tells the worker to stop it once a heartbeat lists it, then hands
    "J" out again once the worker has taken in the stop (its next stop poll): a retry while
    the first attempt's thread still runs. Notes when each was handed out, when each job
    take came, and every job-done body."""

    lock = threading.Lock()
    handed: list[float] = []
    running = False  # a heartbeat listed "J"
    stop_sent = False
    stop_taken = False
    takes: list[float] = []
    done: list[dict[str, Any]] = []
    reported = threading.Event()

    def do_GET(self) -> None:
        cls = type(self)
        if "/job-stop/" in self.path:
            with cls.lock:
                cls.stop_taken = cls.stop_sent
                stop = cls.running and not cls.stop_sent
                cls.stop_sent = cls.stop_sent or stop
            if stop:
                self.answer(200, json.dumps({"jobsToStop": ["J"]}).encode())
            else:
                time.sleep(0.05)
                self.answer(204, b"")
            return
        if "/job-take" not in self.path:  # a heartbeat
            with cls.lock:
                cls.running = cls.running or (len(cls.handed) == 1 and "job_id=J&" in self.path)
            self.answer(200, b"{}")
            return
        with cls.lock:
            cls.takes.append(time.monotonic())
            job = None
            if not cls.handed:
                # Long enough for the stop and the hand-out again to come while it runs.
                job = {"id": "J", "input": {"seconds": 3.0, "run": "first"}}
            elif len(cls.handed) == 1 and cls.stop_taken:
                job = {"id": "J", "input": {"seconds": 4.0, "run": "second"}}
            if job is not None:
                cls.handed.append(time.monotonic())
        if job is None:
            time.sleep(0.05)
            self.answer(204, b"")
        else:
            self.answer(200, json.dumps(job).encode())

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if "/job-done/" in self.path:
            with type(self).lock:
                type(self).done.append(body)
            type(self).reported.set()
        self.answer(200, b"{}")


def test_a_job_handed_again_while_its_stopped_attempt_runs_on_is_reported(
    tmp_path: Path, worker_processes: list[subprocess.Popen[Any]]
) -> None:
    (tmp_path / "worker.py").write_text(WORKER)
    platform: Any = type("Platform", (_RetryingPlatform,), {"handed": [], "takes": [], "done": []})
    platform.reported = threading.Event()
    with serve_http(platform) as port:
        worker = subprocess.Popen(
            [sys.executable, str(tmp_path / "worker.py")],
            env=worker_env(port, FLASH_WORKER_CONCURRENCY="2", RUNPOD_PING_INTERVAL="50"),
            stderr=subprocess.DEVNULL,
        )
        worker_processes.append(worker)
        assert platform.reported.wait(30), "the second attempt was never reported"
    # Reported by the second attempt alone: the first one's thread returned long before.
    assert len(platform.handed) == 2
    assert platform.done == [{"output": {"run": "second"}}]
    # While the first attempt's thread ran on beside the second attempt, both of the
    # worker's slots were taken: it asked for no job then.
    first, second = platform.handed
    assert not [at for at in platform.takes if second < at < first + 2.9]
