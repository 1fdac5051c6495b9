"""A new build drains the workers of the old one: their running jobs finish there, for as
long as their own limits allow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers import wait_for
from tests.platform.apps import ended, write_app

from flash.platform import supervisor

# Notes each run's build in the file ``log``, then sleeps.
VERSIONED = """
import time
from flash.runtime.worker import start

def handler(job):
    inp = job["input"]
    with open(inp["log"], "a") as log:
        log.write("VERSION\\n")
    time.sleep(inp["seconds"])
    return {"version": VERSION}

if __name__ == "__main__":
    start(handler)
"""


def test_a_new_build_lets_a_running_job_finish_within_its_own_limit(
    tmp_path: Path, platform_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "DRAIN_GRACE_S", 1.0)
    config = {"workersMax": 1, "executionTimeoutMs": 1000}
    v1, v2 = (
        write_app(tmp_path / f"v{n}", {"dev": (VERSIONED.replace("VERSION", str(n)), config)})
        for n in (1, 2)
    )
    platform = platform_factory(v1)
    log = tmp_path / "runs.log"
    answer = httpx.post(
        f"{platform.url}/v2/dev/run",
        # Its policy allows far longer than the endpoint's limit (and the drain's grace).
        json={"input": {"seconds": 4, "log": str(log)}, "policy": {"executionTimeout": 30000}},
        headers={"Authorization": "Bearer test-key"},
        timeout=30,
    )
    answer.raise_for_status()
    job_id = answer.json()["id"]
    wait_for(lambda: log.exists() and log.read_text(), 30, "the job to start")
    platform.replace_app(v2)
    final = ended(platform, "dev", job_id)
    assert final["status"] == "COMPLETED", final
    assert final["output"] == {"version": 1}  # finished on the old build's worker...
    assert log.read_text().split() == ["1"]  # ...where it ran once
    assert "killed worker" not in platform.echo.text()
    wait_for(
        lambda: not any(w["alive"] for w in platform.workers() if w["generation"] == 1),
        10,
        "the old worker to exit",
    )
