"""A job that asks for a fresh worker (refresh_worker) retires its worker: the jobs still
running there finish, for as long as their own limits allow, and a worker that does not
exit once they have is killed after a short grace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.helpers import alive, wait_for
from tests.platform.apps import ended, post, write_app

from flash.platform import supervisor

# Two jobs at once on one worker: one that sleeps (noting each run in ``log``), one that
# asks for a fresh worker, leaving a thread behind that keeps its process from exiting
# if told to (``linger``).
REFRESHING = """
import asyncio, os, threading, time
from flash.runtime.worker import start

async def handler(job):
    inp = job["input"]
    if inp.get("refresh"):
        if inp.get("linger"):
            threading.Thread(target=time.sleep, args=(3600,)).start()
        return {"pid": os.getpid(), "refresh_worker": True}
    with open(inp["log"], "a") as log:
        log.write("run\\n")
    await asyncio.sleep(inp["seconds"])
    return {"pid": os.getpid()}

if __name__ == "__main__":
    start(handler)
"""


@pytest.fixture
def platform(tmp_path: Path, platform_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(supervisor, "DRAIN_GRACE_S", 1.0)
    config = {"workersMax": 1, "concurrency": 2, "idleTimeout": 60}
    return platform_factory(write_app(tmp_path / "app", {"fresh": (REFRESHING, config)}))


def test_a_refresh_lets_the_other_jobs_of_its_worker_finish_within_their_limits(
    tmp_path: Path, platform: Any
) -> None:
    log = tmp_path / "runs.log"
    # Its policy allows it far longer than the drain's grace.
    job_id = _slow_job_started(platform, log, seconds=4, limit_ms=60000)
    refresh = post(platform, "fresh/runsync", {"input": {"refresh": True}})
    assert refresh["status"] == "COMPLETED", refresh
    final = ended(platform, "fresh", job_id)
    assert final["status"] == "COMPLETED", final
    assert final["output"]["pid"] == refresh["output"]["pid"]  # on the refreshed worker...
    assert log.read_text().split() == ["run"]  # ...where it ran once
    assert "killed worker" not in platform.echo.text()
    wait_for(lambda: not alive(refresh["output"]["pid"]), 10, "the refreshed worker to exit")


def test_a_refreshed_worker_that_does_not_exit_is_killed_after_the_grace(
    platform: Any,
) -> None:
    # The refreshing job's own limit is long: it ended, so it holds the worker no longer.
    body = {"input": {"refresh": True, "linger": True}, "policy": {"executionTimeout": 60000}}
    refresh = post(platform, "fresh/runsync", body)
    assert refresh["status"] == "COMPLETED", refresh
    _killed(platform, refresh["output"]["pid"], within=10)


def test_a_refreshed_worker_that_does_not_exit_is_killed_a_grace_after_its_other_jobs(
    tmp_path: Path, platform: Any
) -> None:
    # Its other job may run 90 s by its limit, but ends after 2 s: the kill comes a grace
    # after that, not a grace after the 90 s.
    job_id = _slow_job_started(platform, tmp_path / "runs.log", seconds=2, limit_ms=90000)
    body = {"input": {"refresh": True, "linger": True}}
    refresh = post(platform, "fresh/runsync", body)
    assert refresh["status"] == "COMPLETED", refresh
    assert ended(platform, "fresh", job_id)["status"] == "COMPLETED"
    _killed(platform, refresh["output"]["pid"], within=15)


def _slow_job_started(platform: Any, log: Path, *, seconds: float, limit_ms: int) -> str:
    """The id of a job that sleeps ``seconds`` under ``limit_ms``, once it runs."""
    slow = {
        "input": {"seconds": seconds, "log": str(log)},
        "policy": {"executionTimeout": limit_ms},
    }
    job_id = str(post(platform, "fresh/run", slow)["id"])
    wait_for(lambda: log.exists() and log.read_text(), 30, "the slow job to start")
    return job_id


def _killed(platform: Any, pid: int, *, within: float) -> None:
    wait_for(lambda: not alive(pid), within, "the refreshed worker's kill")
    # Said just after the kill: wait for the line, not only for the process to go.
    wait_for(lambda: "killed worker" in platform.echo.text(), 10, "the kill to be said")
