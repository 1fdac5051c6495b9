"""The supervisor under orderings a burst of calls brings out, and endpoints that call each
other in a cycle at the machine-wide cap; real worker processes, real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
import runpod
from tests.helpers import Logs, wait_for
from tests.platform.apps import BASIC, ended, write_app

from flash.platform.local import LocalPlatform

# Calls the endpoint ``via`` with the input ``next`` and returns what it returned; with
# ``back``, answers at once. Each worker runs one job at a time.
CALLER = """
import os, time
import requests
from flash.runtime.worker import start

def handler(job):
    inp = job["input"]
    me = os.environ["RUNPOD_ENDPOINT_ID"]
    if inp.get("back"):
        return {"path": [me]}
    base = f"{os.environ['FLASH_API_BASE']}/v2/{inp['via']}"
    key = os.environ.get("FLASH_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    job_id = requests.post(
        f"{base}/run", json={"input": inp["next"]}, headers=headers, timeout=30
    ).json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = requests.get(f"{base}/status/{job_id}", headers=headers, timeout=30).json()
        if status["status"] == "COMPLETED":
            return {"path": [me, *status["output"]["path"]]}
        if status["status"] in ("FAILED", "CANCELLED", "TIMED_OUT"):
            raise RuntimeError(f"nested call ended {status}")
        time.sleep(0.05)
    raise RuntimeError("nested call never ended")

if __name__ == "__main__":
    start(handler)
"""


def _status(platform: LocalPlatform, endpoint: str, job_id: str) -> dict[str, Any]:
    response = requests.get(
        f"{platform.url}/v2/{endpoint}/status/{job_id}",
        headers={"Authorization": "Bearer test-key"},
        timeout=30,
    )
    return dict(response.json())


def test_a_worker_that_polls_before_it_is_registered_is_ready_and_scaling_goes_on(
    tmp_path: Path, platform_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under a burst the platform's loop is slow to finish starting a worker's process: the
    # process can take its first job before the supervisor has added it to its workers.
    # Here each worker is added only once its process has polled, every time.
    config = {
        "scalerType": "QUEUE_DELAY",
        "scalerValue": 0.5,
        "workersMax": 2,
        "idleTimeout": 1,
    }
    logs = Logs()
    platform = platform_factory(write_app(tmp_path / "app", {"qd": (BASIC, config)}), echo=logs)
    supervisor = platform.supervisor
    assert supervisor is not None
    dispatcher = supervisor.dispatcher
    real_exec = asyncio.create_subprocess_exec

    async def started_after_its_first_poll(*args: Any, **kw: Any) -> Any:
        proc = await real_exec(*args, **kw)
        worker_id = (kw.get("env") or {}).get("RUNPOD_POD_ID")
        if worker_id in dispatcher.workers:  # one of this platform's workers
            deadline = time.monotonic() + 60
            while not dispatcher.workers[worker_id].polled and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # polling for the condition, on the platform's loop
            assert dispatcher.workers[worker_id].polled, "the worker never polled"
        return proc

    monkeypatch.setattr(asyncio, "create_subprocess_exec", started_after_its_first_poll)
    ep = runpod.Endpoint("qd")
    jobs = [ep.run({"action": "sleep", "seconds": 1}) for _ in range(4)]
    for job in jobs:
        job.output(timeout=60)
    workers = platform.workers()
    assert workers and all(w["cold_start_ms"] is not None for w in workers), workers
    # Its jobs waited past scalerValue: a second worker joined the first.
    finished = [_status(platform, "qd", j.job_id) for j in jobs]
    assert len({f["workerId"] for f in finished}) == 2, (finished, logs.text()[-3000:])
    # Ready, idle workers stop after idleTimeout.
    wait_for(lambda: not any(w["alive"] for w in platform.workers()), 20, "idle workers' end")


@pytest.mark.parametrize("max_workers", [1, 2])
def test_endpoints_calling_each_other_in_a_cycle_finish_at_the_cap(
    tmp_path: Path, platform_factory: Any, max_workers: int
) -> None:
    # a's one-job worker waits for b, whose worker waits for a: a needs a second worker,
    # though the machine-wide cap is reached and no worker anywhere is idle.
    config = {"scalerType": "REQUEST_COUNT", "scalerValue": 1, "workersMax": 2}
    app = write_app(tmp_path / "app", {"a": (CALLER, config), "b": (CALLER, config)})
    logs = Logs()
    platform = platform_factory(app, max_workers=max_workers, echo=logs)
    cycle = {"via": "b", "next": {"via": "a", "next": {"back": True}}}
    job_id = runpod.Endpoint("a").run(cycle).job_id
    final = ended(platform, "a", job_id, timeout=45)
    assert final["status"] == "COMPLETED", (final, logs.text()[-3000:])
    assert final["output"] == {"path": ["a", "b", "a"]}
    # a got the one worker more it needed, within its workersMax; b kept its one.
    started = Counter(w["endpoint"] for w in platform.workers())
    assert started == {"a": 2, "b": 1}, platform.workers()
