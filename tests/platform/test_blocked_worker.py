"""A worker whose event loop is blocked, or that never learnt of a job handed to it: the
platform notices from its heartbeats, and other callers' jobs run elsewhere."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import wait_for
from tests.platform.apps import LOOPS, ended, post, write_app

from flash.platform.dispatch import Dispatcher
from flash.platform.store import JobStore

# An async function that never awaits: a busy loop holds the worker's event loop.
HOG = """
import asyncio, os, time
from flash.runtime.worker import start

async def handler(job):
    spin = job["input"].get("spin", 0)
    if spin:
        await asyncio.sleep(0.5)  # the worker's take for a second job is pending meanwhile
        with open(job["input"]["marker"], "w") as f:
            f.write(str(os.getpid()))
        end = time.monotonic() + spin
        while time.monotonic() < end:
            pass
    return {"pid": os.getpid()}

if __name__ == "__main__":
    start(handler)
"""

# The same as an async generator.
HOG_GEN = HOG.replace('    return {"pid"', '    yield {"pid"').replace(
    "start(handler)", "start(handler, return_aggregate_stream=True)"
)

# The first worker takes one job and forgets it (as when a take answer is lost), then only
# sends heartbeats without it; later workers run jobs as usual.
FORGETFUL = """
import json, os, sys, time, urllib.request
from pathlib import Path
from flash.runtime.worker import start

def handler(job):
    return {"pid": os.getpid()}

def forget_one(marker):
    key = {"Authorization": os.environ["RUNPOD_AI_API_KEY"]}
    url = os.environ["RUNPOD_WEBHOOK_GET_JOB"] + "&job_in_progress=0"
    while True:
        with urllib.request.urlopen(urllib.request.Request(url, headers=key)) as answer:
            body = answer.read()
        if answer.status == 200 and body:
            break
    marker.write_text(json.dumps({"pid": os.getpid(), "job": json.loads(body)["id"]}))
    ping = os.environ["RUNPOD_WEBHOOK_PING"].replace("$RUNPOD_POD_ID", os.environ["RUNPOD_POD_ID"])
    while True:  # alive, and running nothing
        # As Flash's loop pings (runpod_version=flash-1), listing no job.
        sep = "&" if "?" in ping else "?"
        urllib.request.urlopen(
            urllib.request.Request(ping + sep + "runpod_version=flash-1", headers=key)
        ).read()
        time.sleep(0.2)

if __name__ == "__main__":
    marker = Path(os.environ["MARKER"])
    if not marker.exists():
        forget_one(marker)
    start(handler)
"""


def _run(platform: Any, endpoint: str, body: dict[str, Any]) -> str:
    return str(post(platform, f"{endpoint}/run", body)["id"])


@pytest.mark.parametrize(
    ("loop", "handler"),
    [*((loop, HOG) for loop in LOOPS), ("flash", HOG_GEN)],
    ids=[*LOOPS, "flash-generator"],
)
def test_a_job_beside_a_timed_out_busy_loop_runs_on_a_fresh_worker(
    tmp_path: Path, platform_factory: Any, loop: str, handler: str
) -> None:
    app = write_app(tmp_path / "app", {"hog": (handler, {"workersMax": 2, "concurrency": 2})})
    platform = platform_factory(app, worker_loop=loop)
    marker = tmp_path / "hog.pid"
    hog = _run(
        platform,
        "hog",
        {"input": {"spin": 60, "marker": str(marker)}, "policy": {"executionTimeout": 1000}},
    )
    wait_for(marker.exists, 15, "the busy loop to start")
    # Its own limit is long: before, it waited for the busy loop (60 s) on the hog's worker.
    # Now the hog's worker is killed 3 s after its stop went unanswered, and this job runs on
    # a fresh worker: well within 30 s, even on a loaded machine.
    submitted = time.monotonic()
    ok = _run(platform, "hog", {"input": {}, "policy": {"executionTimeout": 60000}})
    final = ended(platform, "hog", ok, timeout=45)
    took = time.monotonic() - submitted
    assert final["status"] == "COMPLETED", final
    assert took < 30, f"the job beside the busy loop took {took:.1f} s"
    output = final["output"][0] if handler is HOG_GEN else final["output"]
    assert output["pid"] != int(marker.read_text())
    assert ended(platform, "hog", hog)["status"] == "TIMED_OUT"
    assert "did not stop job" in platform.echo.text() or "no heartbeat" in platform.echo.text()


def test_a_job_its_worker_never_learnt_of_is_requeued_and_runs(
    tmp_path: Path, platform_factory: Any
) -> None:
    marker = tmp_path / "forgot.json"
    app = write_app(
        tmp_path / "app",
        {"ep": (FORGETFUL, {"workersMax": 2, "env": {"MARKER": str(marker)}})},
    )
    platform = platform_factory(app)
    job = _run(platform, "ep", {"input": {}})
    forgot = wait_for(lambda: marker.exists() and marker.read_text(), 15, "a take")
    assert f'"job": "{job}"' in forgot
    final = ended(platform, "ep", job, timeout=15)
    assert final["status"] == "COMPLETED", final
    # Run by another worker (the pids compared as numbers: the job id may hold the digits).
    assert final["output"]["pid"] != json.loads(forgot)["pid"]
    # Not counted as a crash of the job: it never ran there.
    assert platform.dispatcher.jobs[job].crashes == 0


def test_a_take_answered_while_the_loop_was_held_past_its_timeout_is_used(
    tmp_path: Path, platform_factory: Any
) -> None:
    # The take's own timeout (120 s by default) made short: the busy loop outlasts it while
    # the answer, handing out the second job, waits in the socket.
    env = {"FLASH_WORKER_TAKE_TIMEOUT_S": "2"}
    app = write_app(
        tmp_path / "app", {"hog": (HOG, {"workersMax": 1, "concurrency": 2, "env": env})}
    )
    platform = platform_factory(app, worker_loop="flash")
    marker = tmp_path / "hog.pid"
    hog = _run(platform, "hog", {"input": {"spin": 4, "marker": str(marker)}})
    wait_for(marker.exists, 15, "the busy loop to start")
    ok = _run(platform, "hog", {"input": {}})
    final = ended(platform, "hog", ok, timeout=15)
    assert final["status"] == "COMPLETED", final
    assert ended(platform, "hog", hog)["status"] == "COMPLETED"
    assert "job-take failed" not in platform.echo.text()


def test_only_a_job_no_heartbeat_ever_listed_goes_back_to_the_queue(tmp_path: Path) -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher(JobStore(tmp_path / "jobs.db"))
        dispatcher.add_endpoint("e", None)
        dispatcher.register_worker("w1", "e")
        known, lost = (dispatcher.submit("e", f'{{"n": {n}}}') for n in range(2))
        assert len(await dispatcher.take("w1", 2, False)) == 2
        ping = functools.partial(dispatcher.ping, "w1", lists_taken=True)  # Flash's loop
        ping([])  # may have been sent before the take's answer arrived
        ping([known.id])
        assert (known.status, lost.status) == ("IN_PROGRESS", "IN_PROGRESS")
        for handed in dispatcher.workers["w1"].handed.values():
            handed.at -= 60  # handed out long ago
        # Heartbeats without either: the known job's result is on its way; the other was
        # never known to the worker.
        ping([])
        ping([])
        assert known.status == "IN_PROGRESS"
        assert (lost.status, lost.worker_id, lost.attempts, lost.crashes) == (
            "IN_QUEUE",
            None,
            0,
            0,
        )
        dispatcher.register_worker("w2", "e")
        assert [j.id for j in await dispatcher.take("w2", 1, False)] == [lost.id]


def test_the_sdks_heartbeats_requeue_nothing(tmp_path: Path) -> None:
    # The runpod SDK pings from a process of its own: a job its held event loop has not
    # read yet is left out, yet it will run it. Requeued, it would run twice.
    async def scenario() -> None:
        dispatcher = Dispatcher(JobStore(tmp_path / "jobs.db"))
        dispatcher.add_endpoint("e", None)
        dispatcher.register_worker("w1", "e")
        job = dispatcher.submit("e", "{}")
        assert len(await dispatcher.take("w1", 1, False)) == 1
        dispatcher.workers["w1"].handed[job.id].at -= 60  # handed out long ago
        for _ in range(5):
            dispatcher.ping("w1", [])
        assert (job.status, job.worker_id) == ("IN_PROGRESS", "w1")

    asyncio.run(scenario())
