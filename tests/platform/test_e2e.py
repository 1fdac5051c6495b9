"""The official runpod clients against the gateway, with both worker loops behind it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import requests
import runpod
from tests.helpers import alive, wait_for
from tests.platform.apps import ended, use_client, write_app

from flash.platform.local import LocalPlatform


def _raw(platform: LocalPlatform, method: str, path: str, **kw: object) -> requests.Response:
    headers = {"Authorization": "Bearer test-key"}
    return requests.request(method, f"{platform.url}/v2/{path}", headers=headers, timeout=30, **kw)


def _status(platform: LocalPlatform, endpoint: str, job_id: str) -> dict:
    return _raw(platform, "GET", f"{endpoint}/status/{job_id}").json()


def test_run_sync_returns_output_and_timings(served: LocalPlatform) -> None:
    use_client(served)
    ep = runpod.Endpoint("basic")
    assert ep.run_sync({"action": "echo", "value": [1, "two"]}, timeout=60) == {"echo": [1, "two"]}
    body = _raw(served, "POST", "basic/runsync", json={"input": {"action": "echo", "value": 3}})
    data = body.json()
    assert data["status"] == "COMPLETED"
    assert data["output"] == {"echo": 3}
    assert isinstance(data["delayTime"], int) and isinstance(data["executionTime"], int)
    assert data["workerId"].startswith("basic-")


def test_run_then_status_and_output(served: LocalPlatform) -> None:
    use_client(served)
    ep = runpod.Endpoint("basic")
    job = ep.run({"action": "scalar", "value": 42})
    assert job.output(timeout=60) == 42
    assert job.status() == "COMPLETED"
    env = ep.run_sync({"action": "pid"}, timeout=60)
    assert env["env"] == "demo-value"  # the resource's env reaches the worker
    assert env["resource"] == "basic"
    assert env["api"] == served.url  # where calls to other endpoints go


def test_handler_exception_fails_the_job_with_its_details(served: LocalPlatform) -> None:
    use_client(served)
    ep = runpod.Endpoint("basic")
    assert ep.run_sync({"action": "raise", "message": "kaput"}, timeout=60) is None
    job = ep.run({"action": "raise", "message": "kaput"})
    assert job.status() in ("IN_QUEUE", "IN_PROGRESS", "FAILED")
    final = ended(served, "basic", job.job_id)
    assert final["status"] == "FAILED"
    info = json.loads(final["error"])
    assert info["error_type"] == "<class 'ValueError'>"
    assert info["error_message"] == "kaput"
    assert "kaput" in info["error_traceback"]
    assert info["worker_id"] == final["workerId"]


def test_error_key_of_a_dict_result_is_popped_and_fails_the_job(served: LocalPlatform) -> None:
    use_client(served)
    job = runpod.Endpoint("basic").run({"action": "error_dict"})
    final = ended(served, "basic", job.job_id)
    assert final["status"] == "FAILED"
    assert final["error"] == "bad thing happened"
    assert final["output"] == {"partial": 1}


def test_generator_streams_chunks_in_order(served: LocalPlatform) -> None:
    use_client(served)
    job = runpod.Endpoint("gen").run({"n": 4, "pause": 0.05})
    assert list(job.stream()) == [{"chunk": i} for i in range(4)]
    final = ended(served, "gen", job.job_id)
    assert final["status"] == "COMPLETED"
    assert final["output"] == [{"chunk": i} for i in range(4)]


def test_generator_error_fails_the_job_after_its_chunks(served: LocalPlatform) -> None:
    use_client(served)
    job = runpod.Endpoint("gen").run({"n": 2, "fail": True})
    final = ended(served, "gen", job.job_id)
    assert final["status"] == "FAILED"
    assert "stream broke" in final["error"]


def test_asyncio_client_runs_streams_and_cancels(served: LocalPlatform) -> None:
    use_client(served)

    async def scenario() -> tuple[object, list[object], str, str]:
        async with aiohttp.ClientSession() as session:
            aio = runpod.AsyncioEndpoint("aio", session)
            job = await aio.run({"seconds": 0})
            output = await job.output(timeout=60)
            streamed = [
                c
                async for c in (
                    await runpod.AsyncioEndpoint("agen", session).run({"n": 3})
                ).stream()
            ]
            slow = await runpod.AsyncioEndpoint("aiocancel", session).run({"seconds": 30})
            await wait_async(lambda: slow.status(), "IN_PROGRESS")
            await slow.cancel()
            return output, streamed, await slow.status(), (await aio.health())["jobs"]

    output, streamed, cancelled, _ = asyncio.run(scenario())
    assert isinstance(output, dict) and "pid" in output
    assert streamed == ["part-0", "part-1", "part-2"]
    assert cancelled == "CANCELLED"


async def wait_async(fetch: object, wanted: str, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (await fetch()) != wanted:  # type: ignore[operator]
        assert loop.time() < deadline, f"never reached {wanted}"
        await asyncio.sleep(0.02)


def test_async_handler_runs_jobs_concurrently_on_one_worker(served: LocalPlatform) -> None:
    use_client(served)
    ep = runpod.Endpoint("aio")
    jobs = [ep.run({"seconds": 1.0}) for _ in range(4)]
    outputs = [j.output(timeout=60) for j in jobs]
    assert len({o["pid"] for o in outputs}) == 1
    starts = sorted(o["started"] for o in outputs)
    if served.worker_loop == "flash":
        assert starts[-1] - starts[0] < 0.9  # all four ran at once, not one after another
    else:
        # The SDK loop counts a fetched job twice against its concurrency, so it runs
        # them two by two: still concurrent, not four in a row.
        assert starts[-1] - starts[0] < 2.5


def test_cancel_a_queued_job_and_a_running_one(served: LocalPlatform) -> None:
    use_client(served)
    ep = runpod.Endpoint("aiocancel")
    running = [ep.run({"seconds": 30}) for _ in range(4)]
    queued = ep.run({"seconds": 0})
    wait_for(lambda: all(j.status() == "IN_PROGRESS" for j in running), 60, "jobs to start")
    assert queued.cancel()["status"] == "CANCELLED"
    assert _status(served, "aiocancel", queued.job_id)["status"] == "CANCELLED"
    for job in running:
        assert job.cancel()["status"] == "CANCELLED"
    # The worker really stopped them: it takes new work right away.
    assert ep.run_sync({"seconds": 0}, timeout=30)["pid"]
    assert _status(served, "aiocancel", running[0].job_id)["status"] == "CANCELLED"


def test_execution_timeout_kills_a_stuck_worker_and_replaces_it(served: LocalPlatform) -> None:
    use_client(served)
    ep = runpod.Endpoint("fragile")
    before = ep.run_sync({"action": "pid"}, timeout=60)["pid"]
    job = ep.run({"action": "hang"})
    final = ended(served, "fragile", job.job_id)
    assert final["status"] == "TIMED_OUT"
    assert "1500 ms" in final["error"]
    wait_for(lambda: not alive(before), 30, "the stuck worker to be killed")
    after = ep.run_sync({"action": "pid"}, timeout=60)["pid"]
    assert after != before


def test_policy_execution_timeout_applies_per_job(served: LocalPlatform) -> None:
    response = _raw(
        served,
        "POST",
        "basic/run",
        json={"input": {"action": "sleep", "seconds": 5}, "policy": {"executionTimeout": 300}},
    )
    final = ended(served, "basic", response.json()["id"])
    assert final["status"] == "TIMED_OUT"


def test_crash_mid_job_requeues_once_then_fails_with_the_reason(
    served: LocalPlatform, tmp_path
) -> None:
    use_client(served)
    ep = runpod.Endpoint("fragile")
    marker = tmp_path / "crashed-once"
    assert ep.run_sync({"action": "crash_once", "marker": str(marker)}, timeout=90) == {
        "recovered": True
    }
    job = ep.run({"action": "crash", "code": 7})
    final = ended(served, "fragile", job.job_id, timeout=90)
    assert final["status"] == "FAILED"
    assert "exited with code 7" in final["error"]
    assert "about to crash: last words" in final["error"]
    assert "crashing soon" in final["error"]  # what the job printed, both streams
    # The gateway kept serving and the endpoint recovered.
    assert ep.run_sync({"action": "echo", "value": 1}, timeout=90) == {"echo": 1}


def test_purge_queue_removes_only_queued_jobs(served: LocalPlatform) -> None:
    use_client(served)
    ep = runpod.Endpoint("fragile")
    # Long enough for the purge to come while it runs; its own limit, not the endpoint's
    # 1.5 s, so that a slow machine does not time it out.
    running = {"input": {"action": "sleep", "seconds": 3}, "policy": {"executionTimeout": 60000}}
    first = ep.run(running)
    wait_for(lambda: first.status() == "IN_PROGRESS", 60, "first job to start")
    waiting = [ep.run({"action": "echo", "value": i}) for i in range(3)]
    assert ep.purge_queue() == {"removed": 3, "status": "completed"}
    assert first.output(timeout=30) == {"slept": 3}
    assert {_status(served, "fragile", j.job_id)["status"] for j in waiting} == {"CANCELLED"}


def test_retry_requeues_a_failed_job(served: LocalPlatform, tmp_path) -> None:
    use_client(served)
    ep = runpod.Endpoint("basic")
    job = ep.run({"action": "raise"})
    assert ended(served, "basic", job.job_id)["status"] == "FAILED"
    completed = ep.run_sync({"action": "echo", "value": 0}, timeout=30)
    assert completed == {"echo": 0}
    retried = _raw(served, "POST", f"basic/retry/{job.job_id}").json()
    assert retried == {"id": job.job_id, "status": "IN_QUEUE"}
    assert ended(served, "basic", job.job_id)["status"] == "FAILED"  # fails again, same input
    done = ep.run({"action": "echo", "value": 5})
    ended(served, "basic", done.job_id)
    refused = _raw(served, "POST", f"basic/retry/{done.job_id}")
    assert refused.status_code == 400
    assert "only FAILED or TIMED_OUT" in refused.json()["error"]
    assert ep.health()["jobs"]["retried"] >= 1


def test_health_counts_jobs_and_workers(served: LocalPlatform) -> None:
    use_client(served)
    ep = runpod.Endpoint("basic")
    ep.run_sync({"action": "echo"}, timeout=30)
    health = ep.health()
    assert health["jobs"]["completed"] >= 1
    assert set(health["jobs"]) == {"completed", "failed", "inProgress", "inQueue", "retried"}
    assert health["workers"]["idle"] + health["workers"]["running"] >= 1


def test_unknown_endpoint_and_job_are_404_with_a_message(served: LocalPlatform) -> None:
    missing = _raw(served, "POST", "nope/run", json={"input": {}})
    assert missing.status_code == 404
    assert "endpoint 'nope' not found" in missing.json()["error"]
    assert "basic" in missing.json()["error"]
    job = _raw(served, "GET", "basic/status/no-such-job")
    assert job.status_code == 404
    assert "job 'no-such-job' not found" in job.json()["error"]


def test_refresh_worker_replaces_the_worker_after_the_job(served: LocalPlatform) -> None:
    use_client(served)
    ep = runpod.Endpoint("fragile")
    first = ep.run_sync({"action": "refresh"}, timeout=60)
    assert "refresh_worker" not in first
    wait_for(lambda: not alive(first["pid"]), 30, "the refreshed worker to exit")
    assert ep.run_sync({"action": "pid"}, timeout=60)["pid"] != first["pid"]


def test_worker_output_is_echoed_with_endpoint_and_worker_prefix(served: LocalPlatform) -> None:
    use_client(served)
    runpod.Endpoint("fragile").run_sync({"action": "say", "text": "hello from a job"}, timeout=60)
    lines = served.logs.lines  # type: ignore[attr-defined]
    wait_for(
        lambda: any(
            line.startswith("[fragile fragile-") and line.endswith("hello from a job")
            for line in lines
        ),
        30,
        "the job's output with its prefix",
    )


# Yields each of the files it is given, once that file exists: the test says when.
GATED = """
import os
import time
from flash.runtime.worker import start

def handler(job):
    for gate in job["input"]["gates"]:
        while not os.path.exists(gate):
            time.sleep(0.01)
        yield gate

if __name__ == "__main__":
    start(handler)
"""


def test_a_stream_reader_that_hangs_up_while_waiting_takes_no_chunk(
    platform_factory: Callable[..., LocalPlatform], tmp_path: Path
) -> None:
    platform = platform_factory(write_app(tmp_path / "app", {"gated": (GATED, {})}))
    gates = [str(tmp_path / f"gate-{n}") for n in range(2)]
    job_id = _raw(platform, "POST", "gated/run", json={"input": {"gates": gates}}).json()["id"]
    dispatcher = platform.dispatcher
    assert dispatcher is not None
    address = urlsplit(platform.url)
    with socket.create_connection((address.hostname, address.port)) as reader:
        reader.sendall(
            f"GET /v2/gated/stream/{job_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        )
        # It waits (up to a second) for a chunk; then its reader hangs up...
        wait_for(lambda: dispatcher._stream_waiters.get(job_id), what="the poll to wait")
    for gate in gates:  # ...and the chunks come while it would still be waiting
        Path(gate).touch()
    assert ended(platform, "gated", job_id)["output"] == gates
    stream = _raw(platform, "GET", f"gated/stream/{job_id}").json()["stream"]
    assert [item["output"] for item in stream] == gates  # none went to the reader that left
