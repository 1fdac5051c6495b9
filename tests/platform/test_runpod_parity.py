"""Where the local platform answers as RunPod does: bodies over the limit are refused while
they arrive, /health counts every ended job (also after a restart), errors are JSON on every
path, and a purged job is a cancelled one."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import requests
from tests.helpers import wait_for
from tests.platform.apps import BASIC, ended, write_app

from flash.platform.local import LocalPlatform
from flash.runtime.protocol import RUN_LIMIT

KEY = {"Authorization": "Bearer test-key"}


def _post(platform: LocalPlatform, path: str, **kw: Any) -> requests.Response:
    return requests.post(f"{platform.url}/v2/{path}", headers=KEY, timeout=60, **kw)


def _get(platform: LocalPlatform, path: str) -> requests.Response:
    return requests.get(f"{platform.url}/v2/{path}", headers=KEY, timeout=60)


def test_a_chunked_body_over_the_limit_is_refused_before_it_ends(
    tmp_path: Path, platform_factory
) -> None:
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))
    host, port = platform.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"POST /v2/basic/run HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer test-key\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        piece = b"x" * (1024 * 1024)
        chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        for _ in range(RUN_LIMIT // len(piece) + 1):
            sock.sendall(chunk)
        # The body never ends: only a gateway that stops reading past the limit answers.
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            received = sock.recv(65536)
            if not received:
                break
            answer += received
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert "exceeds the /run limit of 10 MB" in json.loads(body)["error"]
    # It goes on serving.
    assert _post(platform, "basic/runsync", json={"input": {"value": 1}}).json()["output"] == {
        "echo": 1
    }


# ---------------------------------------------------------------- /health


def test_health_counts_timed_out_jobs_as_failed_and_survives_a_restart(
    tmp_path: Path, platform_factory
) -> None:
    app = write_app(tmp_path / "app", {"basic": (BASIC, {})})
    platform = platform_factory(app, worker_loop="flash")
    done = _post(platform, "basic/runsync", json={"input": {"action": "echo"}}).json()
    assert done["status"] == "COMPLETED"
    slow = {"input": {"action": "sleep", "seconds": 30}, "policy": {"executionTimeout": 300}}
    job = _post(platform, "basic/run", json=slow).json()
    assert ended(platform, "basic", job["id"])["status"] == "TIMED_OUT"
    counts = {"completed": 1, "failed": 1}
    jobs = _get(platform, "basic/health").json()["jobs"]
    assert {k: jobs[k] for k in counts} == counts, jobs
    platform.stop(grace_s=1)
    again = platform_factory(app, worker_loop="flash")  # the same state folder
    jobs = _get(again, "basic/health").json()["jobs"]
    assert {k: jobs[k] for k in counts} == counts, jobs


def _health_jobs(platform: LocalPlatform, endpoint: str) -> dict[str, int]:
    return dict(_get(platform, f"{endpoint}/health").json()["jobs"])


def test_health_counts_a_retried_job_once_by_its_status_and_the_same_after_a_restart(
    tmp_path: Path, platform_factory
) -> None:
    app = write_app(tmp_path / "app", {"one": (BASIC, {"workersMax": 1})})
    platform = platform_factory(app)
    job = _post(platform, "one/run", json={"input": {"action": "raise"}}).json()["id"]
    assert ended(platform, "one", job)["status"] == "FAILED"
    busy = _post(platform, "one/run", json={"input": {"action": "hang"}}).json()["id"]
    wait_for(
        lambda: _get(platform, f"one/status/{busy}").json()["status"] == "IN_PROGRESS",
        30,
        "the busy job to start",
    )
    assert _post(platform, f"one/retry/{job}").json()["status"] == "IN_QUEUE"
    # Queued again behind the busy job: no longer a failed one.
    queued = {"completed": 0, "failed": 0, "inProgress": 1, "inQueue": 1, "retried": 1}
    assert _health_jobs(platform, "one") == queued
    _post(platform, f"one/cancel/{busy}")
    assert ended(platform, "one", job)["status"] == "FAILED"  # its second failure
    # A job that a crashed worker lost runs again, but nobody retried it.
    marker = tmp_path / "crashed"
    lost = {"input": {"action": "crash_once", "marker": str(marker)}}
    lost_id = _post(platform, "one/run", json=lost).json()["id"]
    assert ended(platform, "one", lost_id)["output"] == {"recovered": True}
    counts = {"completed": 1, "failed": 1, "inProgress": 0, "inQueue": 0, "retried": 1}
    assert _health_jobs(platform, "one") == counts
    platform.stop(grace_s=1)
    again = platform_factory(app)  # the same state folder
    assert _health_jobs(again, "one") == counts


# ---------------------------------------------------------------- errors are JSON


def test_unknown_paths_and_wrong_methods_answer_json(tmp_path: Path, platform_factory) -> None:
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))
    for method, path, status in [
        ("GET", "/nowhere", 404),
        ("GET", "/v2/basic/nowhere", 404),
        ("GET", "/v2", 404),
        ("POST", "/openapi.json", 405),
        ("DELETE", "/docs", 405),
        ("GET", "/v2/basic/run", 405),
    ]:
        answer = requests.request(method, f"{platform.url}{path}", headers=KEY, timeout=30)
        assert answer.status_code == status, (method, path, answer.text)
        assert answer.headers["content-type"] == "application/json", (method, path)
        assert set(answer.json()) == {"error"} and answer.json()["error"], (method, path)
        if status == 405:  # RFC 9110: a 405 says which methods the path takes
            assert answer.headers.get("allow"), (method, path)
    assert requests.get(f"{platform.url}/v2/basic/run", timeout=30).headers["allow"] == "POST"
    # An id of any length is named, not echoed whole.
    long_id = "a" * 20_000
    answer = requests.get(f"{platform.url}/v2/basic/status/{long_id}", headers=KEY, timeout=30)
    assert answer.status_code == 404 and len(answer.text) < 500, answer.text[:200]
    # Known routes are as they were.
    assert requests.get(f"{platform.url}/openapi.json", timeout=30).status_code == 200


# ---------------------------------------------------------------- purge-queue


def test_a_purged_job_looks_cancelled_without_an_error(tmp_path: Path, platform_factory) -> None:
    platform = platform_factory(write_app(tmp_path / "app", {"one": (BASIC, {"workersMax": 1})}))
    busy = _post(platform, "one/run", json={"input": {"action": "hang"}}).json()
    wait_for(
        lambda: _get(platform, f"one/status/{busy['id']}").json()["status"] == "IN_PROGRESS",
        30,
        "the busy job to start",
    )
    queued = _post(platform, "one/run", json={"input": {"action": "echo"}}).json()
    assert _post(platform, "one/purge-queue").json() == {"removed": 1, "status": "completed"}
    purged = _get(platform, f"one/status/{queued['id']}").json()
    assert purged["status"] == "CANCELLED" and "error" not in purged, purged
    _post(platform, f"one/cancel/{busy['id']}")
