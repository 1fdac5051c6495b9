"""Every job a worker takes is reported: also one whose code raises CancelledError itself,
and one whose result the platform is slow to acknowledge."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import QuietHandler, serve_http, serve_jobs, worker_env


def _job_id(path: str) -> str:
    return path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[1]


# ------------------------------------------------- user code raising CancelledError itself

CANCELLING_WORKER = """
import asyncio
from flash.runtime.generic_handler import create_handler
from flash.runtime.worker import start


def sync_raises():
    raise asyncio.CancelledError("sync gave up")


async def async_raises(x=0):
    await asyncio.sleep(0)
    raise asyncio.CancelledError(f"async gave up {x}")


start(create_handler({"sync_raises": sync_raises, "async_raises": async_raises}))
"""


def _call(name: str, **payload: Any) -> dict[str, Any]:
    return {
        "function_name": name,
        "execution_type": "function",
        "args": [],
        "kwargs": {},
        **payload,
    }


CANCELLING_JOBS = {
    "sync": _call("sync_raises"),
    "async": _call("async_raises"),
    "map": _call("async_raises", execution_type="map", items=[{}, {}]),
}


@pytest.mark.parametrize("loop", ["flash", "runpod"])
def test_a_function_raising_cancelled_error_fails_its_job_instead_of_hanging(
    tmp_path: Path, loop: str, worker_processes: list[subprocess.Popen[Any]]
) -> None:
    (tmp_path / "worker.py").write_text(CANCELLING_WORKER)
    jobs = [{"id": name, "input": job} for name, job in CANCELLING_JOBS.items()]
    extra = {"FLASH_WORKER_LOOP": "runpod"} if loop == "runpod" else {}
    with serve_jobs(jobs) as (port, queue):
        worker = subprocess.Popen(
            [sys.executable, str(tmp_path / "worker.py")],
            env=worker_env(port, **extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        worker_processes.append(worker)
        finished = queue.all_done.wait(30)
        assert finished, f"jobs never reported: {set(CANCELLING_JOBS) - set(queue.done)}"
    done = queue.done
    for name, message in (("sync", "sync gave up"), ("async", "async gave up 0")):
        answer = done[name]["output"]
        assert answer["success"] is False, answer
        assert answer["error_type"] == "CancelledError"
        assert message in done[name]["error"]
        assert "CancelledError" in done[name]["error"]
    # Each mapped call fails on its own.
    results = done["map"]["output"]["results"]
    assert [r["error_type"] for r in results] == ["CancelledError", "CancelledError"]
    assert all("async gave up 0" in r["error"] for r in results)


SYNC_CANCELLING_WORKER = """
import asyncio
from flash.runtime.worker import start


def handler(job):
    raise asyncio.CancelledError(f"{job['id']} gave up")


start(handler)
"""


@pytest.mark.parametrize("concurrency", ["1", "2"])
def test_a_plain_handler_raising_cancelled_error_fails_its_job(
    tmp_path: Path, concurrency: str, worker_processes: list[subprocess.Popen[Any]]
) -> None:
    # Run on the loop's thread (one job at a time) or in a thread of its own (several).
    (tmp_path / "worker.py").write_text(SYNC_CANCELLING_WORKER)
    jobs = [{"id": name, "input": {}} for name in CANCELLING_JOBS]
    with serve_jobs(jobs) as (port, queue):
        worker = subprocess.Popen(
            [sys.executable, str(tmp_path / "worker.py")],
            env=worker_env(port, FLASH_WORKER_CONCURRENCY=concurrency),
            stderr=subprocess.DEVNULL,
        )
        worker_processes.append(worker)
        assert queue.all_done.wait(30), f"reported only {set(queue.done)}"
    for name, answer in queue.done.items():
        error = json.loads(answer["error"])
        assert error["error_type"] == "<class 'asyncio.exceptions.CancelledError'>"
        assert error["error_message"] == f"{name} gave up"


# ------------------------------------------------- a result whose acknowledgement is slow

GC_WORKER = """
import gc
from flash.runtime.worker import start


async def handler(job):
    if job["id"] == "collector":
        # Runs while the first job's result waits for the platform's answer.
        gc.collect()
    return {"job": job["id"]}


start(handler)
"""


class _SlowAckPlatform(QuietHandler):
    """Answers the first job-done POST of job "first" with a 503, but only once the
    "collector" job has run; the worker must then post that result again."""

    first_posted = threading.Event()
    collector_done = threading.Event()
    posts: list[str] = []
    retried = threading.Event()
    jobs: list[str] = []
    lock = threading.Lock()

    def do_GET(self) -> None:
        job = None
        if "/job-take" in self.path:
            with self.lock:
                # "collector" only once "first" is reporting its result.
                if self.jobs and (len(self.jobs) == 2 or self.first_posted.is_set()):
                    job = self.jobs.pop(0)
        if job is None:
            self.answer(204, b"")
        else:
            self.answer(200, json.dumps([{"id": job, "input": {}}]).encode())

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        if "/job-done/" not in self.path:
            self.answer(200, b"{}")
            return
        job_id = _job_id(self.path)
        with self.lock:
            self.posts.append(job_id)
            count = self.posts.count(job_id)
        if job_id == "first" and count == 1:
            self.first_posted.set()
            self.collector_done.wait(30)
            self.answer(503, b"busy")
            return
        if job_id == "collector":
            self.collector_done.set()
        elif job_id == "first":
            self.retried.set()
        self.answer(200, b"{}")


def test_a_result_waiting_for_its_acknowledgement_survives_garbage_collection(
    tmp_path: Path, worker_processes: list[subprocess.Popen[Any]]
) -> None:
    (tmp_path / "worker.py").write_text(GC_WORKER)
    _SlowAckPlatform.jobs = ["first", "collector"]
    _SlowAckPlatform.posts = []
    for event in ("first_posted", "collector_done", "retried"):
        setattr(_SlowAckPlatform, event, threading.Event())
    with serve_http(_SlowAckPlatform) as port:
        worker = subprocess.Popen(
            [sys.executable, str(tmp_path / "worker.py")],
            env=worker_env(port, FLASH_WORKER_CONCURRENCY="2"),
            stderr=subprocess.PIPE,
            text=True,
        )
        worker_processes.append(worker)
        assert _SlowAckPlatform.collector_done.wait(30), "the second job never ran"
        retried = _SlowAckPlatform.retried.wait(10)
        worker.kill()
        _, stderr = worker.communicate(timeout=30)
    assert "Task was destroyed but it is pending" not in stderr
    assert retried, f"the first job's result was lost after a 503: {_SlowAckPlatform.posts}"
