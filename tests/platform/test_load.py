"""5,000 jobs through 4 workers from 64 concurrent clients: each completes exactly once."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import aiohttp
import pytest
from tests.helpers import Logs, wait_for
from tests.platform.apps import write_app

from flash.platform.local import LocalPlatform

COUNTING = """
import os
from flash.runtime.worker import start

LOG = open(os.path.join(os.environ["RUN_LOG_DIR"], f"{os.getpid()}.log"), "a", buffering=1)

def handler(job):
    LOG.write(job["id"] + "\\n")
    return {"n": job["input"]["n"]}

if __name__ == "__main__":
    start(handler)
"""

JOBS = 5000
CLIENTS = 64


async def _client(
    session: aiohttp.ClientSession, base: str, numbers: list[int], results: dict[int, dict]
) -> None:
    for n in numbers:
        if n % 2:  # half through /runsync, half through /run and /status polling
            async with session.post(f"{base}/runsync", json={"input": {"n": n}}) as r:
                body = await r.json()
        else:
            async with session.post(f"{base}/run", json={"input": {"n": n}}) as r:
                body = await r.json()
        while body["status"] not in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"):
            await asyncio.sleep(0.01)
            async with session.get(f"{base}/status/{body['id']}") as r:
                body = await r.json()
        results[n] = body


async def _drive(base: str) -> dict[int, dict]:
    results: dict[int, dict] = {}
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector) as session:
        numbers = list(range(JOBS))
        await asyncio.gather(
            *(_client(session, base, numbers[i::CLIENTS], results) for i in range(CLIENTS))
        )
    return results


@pytest.mark.slow
def test_five_thousand_jobs_complete_exactly_once(tmp_path: Path, monkeypatch) -> None:
    log_dir = tmp_path / "runs"
    log_dir.mkdir()
    monkeypatch.setenv("RUN_LOG_DIR", str(log_dir))
    app = write_app(tmp_path / "app", {"load": (COUNTING, {"workersMin": 4, "workersMax": 4})})
    platform = LocalPlatform(tmp_path / "state", echo=Logs(), max_workers=4)
    platform.start()
    try:
        platform.load_app(app)
        wait_for(lambda: len(platform.workers()) == 4, 30, "four workers")
        results = asyncio.run(_drive(f"{platform.url}/v2/load"))
        health = platform.call(lambda: platform.dispatcher.completed["load"])  # type: ignore[union-attr]
    finally:
        platform.stop()

    assert sorted(results) == list(range(JOBS))
    assert all(r["status"] == "COMPLETED" and r["output"] == {"n": n} for n, r in results.items())
    ids = [r["id"] for r in results.values()]
    assert len(set(ids)) == JOBS
    executions = collections.Counter(
        line for log in log_dir.iterdir() for line in log.read_text().splitlines()
    )
    assert set(executions) == set(ids)  # none lost
    assert max(executions.values()) == 1  # none run twice
    assert len(list(log_dir.iterdir())) == 4  # spread over the four workers
    assert health == JOBS
