"""A job told to stop (a cancel, a timeout) that its worker cannot stop at once: the jobs
beside it on that worker finish there, and the worker is replaced once they have."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.helpers import wait_for
from tests.platform.apps import ended, post, write_app

from flash.platform import dispatch

# Each run notes its name and worker's pid in the file ``log``, then sleeps: in a thread for
# a sync function, on the loop for an async one, whose cancellation cleanup takes ``cleanup``
# seconds more (awaiting: the loop goes on).
RUNS = """
import asyncio, os, time
from flash.runtime.worker import start

def note(inp):
    with open(inp["log"], "a") as log:
        log.write(f"{inp['name']} {os.getpid()}\\n")

def handler(job):
    inp = job["input"]
    note(inp)
    time.sleep(inp["seconds"])
    return {"name": inp["name"], "pid": os.getpid()}

async def async_handler(job):
    inp = job["input"]
    note(inp)
    try:
        await asyncio.sleep(inp["seconds"])
    except asyncio.CancelledError:
        await asyncio.sleep(inp.get("cleanup", 0))
        raise
    return {"name": inp["name"], "pid": os.getpid()}

if __name__ == "__main__":
    start(async_handler if os.environ.get("ASYNC") else handler)
"""


def _runs(log: Path) -> list[tuple[str, int]]:
    """Each run noted in ``log``: its name and its worker's pid."""
    lines = log.read_text().split() if log.exists() else []
    return [(name, int(pid)) for name, pid in zip(lines[::2], lines[1::2], strict=True)]


@pytest.mark.parametrize("how", ["cancel", "timeout", "async-cancel"])
def test_a_job_that_keeps_running_after_a_stop_does_not_cost_the_jobs_beside_it(
    tmp_path: Path, platform_factory: Any, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    # Over the heartbeat interval (1 s), so that a heartbeat shows the job still running.
    monkeypatch.setattr(dispatch, "STOP_GRACE_S", 2.0)
    env = {"ASYNC": "1"} if how.startswith("async") else {}
    config = {"workersMax": 1, "concurrency": 3, "idleTimeout": 30, "env": env}
    app = write_app(tmp_path / "app", {"conc": (RUNS, config)})
    platform = platform_factory(app, worker_loop="flash")
    log = tmp_path / "runs.log"

    def run(name: str, seconds: float, **extra: Any) -> str:
        body = {"input": {"name": name, "seconds": seconds, "log": str(log), **extra}}
        if how == "timeout" and name == "stuck":
            body["policy"] = {"executionTimeout": 1000}
        return str(post(platform, "conc/run", body)["id"])

    # The stopped job runs on (its thread cannot be stopped; its cleanup takes long) past the
    # grace time, and past the end of the two beside it.
    stuck = run("stuck", 12, cleanup=12)
    beside = [run(name, 4) for name in ("b", "c")]
    wait_for(lambda: len(_runs(log)) == 3, 30, "the three jobs to start")
    pid = _runs(log)[0][1]
    if how != "timeout":
        assert post(platform, f"conc/cancel/{stuck}")["status"] == "CANCELLED"
    assert ended(platform, "conc", stuck)["status"] in ("CANCELLED", "TIMED_OUT")
    later = run("later", 0)  # no room on that worker: another takes it

    for job_id, name in zip(beside, ("b", "c"), strict=True):
        final = ended(platform, "conc", job_id)
        assert final["status"] == "COMPLETED", final
        assert final["output"] == {"name": name, "pid": pid}
    final = ended(platform, "conc", later)
    assert final["status"] == "COMPLETED", final
    assert final["output"]["pid"] != pid
    # The stopped job still ran when the others ended: its worker is replaced then.
    wait_for(
        lambda: not next(w["alive"] for w in platform.workers() if w["pid"] == pid),
        10,
        "the worker of the stopped job to be replaced",
    )
    # Each job ran once: none of them again on the new worker.
    assert sorted(name for name, _ in _runs(log)) == ["b", "c", "later", "stuck"]
    assert "runs again" not in platform.echo.text()


# Its first run takes ``first`` seconds, later ones ``then``; each run adds a line to
# ``marker``.
SLOW_FIRST = """
import os, time
from flash.runtime.worker import start

def handler(job):
    inp = job["input"]
    first = not os.path.exists(inp["marker"])
    with open(inp["marker"], "a") as marker:
        marker.write("run\\n")
    time.sleep(inp["first"] if first else inp["then"])
    return {"run": "first" if first else "later", "pid": os.getpid()}

if __name__ == "__main__":
    start(handler)
"""


def test_a_job_retried_while_its_timed_out_run_goes_on_completes(
    tmp_path: Path, platform_factory: Any
) -> None:
    config = {"workersMax": 1, "concurrency": 3, "idleTimeout": 30}
    app = write_app(tmp_path / "app", {"conc": (SLOW_FIRST, config)})
    platform = platform_factory(app, worker_loop="flash")
    marker = tmp_path / "runs"
    job_id = post(
        platform,
        "conc/run",
        {
            "input": {"marker": str(marker), "first": 3, "then": 1.5},
            "policy": {"executionTimeout": 2500},
        },
    )["id"]
    assert ended(platform, "conc", job_id)["status"] == "TIMED_OUT"
    # At once: its first run's thread still runs on the worker.
    assert post(platform, f"conc/retry/{job_id}")["status"] == "IN_QUEUE"
    final = ended(platform, "conc", job_id)
    assert final["status"] == "COMPLETED", final
    assert final["output"]["run"] == "later"
    assert marker.read_text().split() == ["run", "run"]
    assert "killed worker" not in platform.echo.text()
