"""What workers print reaches the console: long lines too, cut with a note, never dropped
silently, and with the secrets the platform gave them still masked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from tests.helpers import Logs, wait_for
from tests.platform.apps import BASIC, write_app

SAYS = """
import os, sys
from flash.runtime.worker import start

def handler(job):
    inp = job["input"]
    key = os.environ["FLASH_SIGNING_KEY"]
    # A partial line, then the rest of it, megabytes long with a secret in it, then more.
    sys.stdout.write("partial ")
    sys.stdout.flush()
    sys.stdout.write("x" * inp["before"] + key + "y" * inp["after"] + "-end\\n")
    sys.stdout.write("next line\\n")
    sys.stdout.write("unfinished")
    sys.stdout.flush()
    return {"said": True}

if __name__ == "__main__":
    start(handler)
"""
# Where a line is cut: what the platform shows of a long line.
SHOWN = 64 * 1024


def _said(platform: Any, body: dict[str, Any]) -> Any:
    response = httpx.post(
        f"{platform.url}/v2/says/runsync",
        json={"input": body},
        headers={"Authorization": "Bearer test-key"},
        timeout=60,
    )
    return response.json()


def test_a_long_line_is_cut_with_a_note_keeping_what_came_before_and_after(
    tmp_path: Path, platform_factory: Any
) -> None:
    logs = Logs()
    app = write_app(tmp_path / "app", {"says": (SAYS, {"workersMax": 1})})
    platform = platform_factory(app, echo=logs)
    key = platform.worker_env["FLASH_SIGNING_KEY"]
    # The secret straddles the point where the line is cut.
    before = SHOWN - len("partial ") - len(key) // 2
    assert _said(platform, {"before": before, "after": 20_000_000})["status"] == "COMPLETED"
    wait_for(lambda: any(line.endswith("] next line") for line in logs.lines), what="next line")
    (long_line,) = [line for line in logs.lines if "xxxx" in line]
    assert "] partial xxxx" in long_line  # the partial line written before it is not lost
    assert "not shown" in long_line and "20,0" in long_line  # says what it left out
    assert len(long_line) < 2 * SHOWN
    # The secret is masked, or cut off whole: no part of it shows.
    for line in logs.lines:
        assert key[: len(key) // 2] not in line and key[len(key) // 2 :] not in line
    # A line the worker did not finish is shown when the worker's output ends.
    platform.stop(grace_s=1)
    assert any(line.endswith("] unfinished") for line in logs.lines)


def test_a_stop_with_a_job_running_says_the_platform_stopped_its_worker(
    tmp_path: Path, platform_factory: Any
) -> None:
    logs = Logs()
    app = write_app(tmp_path / "app", {"basic": (BASIC, {"workersMax": 1})})
    platform = platform_factory(app, echo=logs)
    headers = {"Authorization": "Bearer test-key"}
    body = {"input": {"action": "sleep", "seconds": 60}}
    job_id = httpx.post(f"{platform.url}/v2/basic/run", json=body, headers=headers).json()["id"]

    def running() -> bool:
        status = httpx.get(f"{platform.url}/v2/basic/status/{job_id}", headers=headers)
        return bool(status.json()["status"] == "IN_PROGRESS")

    wait_for(running, what="the job to run")
    platform.stop(grace_s=0.5)  # the job does not finish in time: its worker is killed
    said = [line for line in logs.lines if job_id in line]
    assert any(
        "stopped with the platform" in line and f"job {job_id} runs again at the next start" in line
        for line in said
    ), said
    assert not any("killed by signal" in line for line in logs.lines), said
