"""A platform that crashed runs an interrupted caller again, and not the calls it had made:
their answers would have nobody to read them, and the caller makes them anew. (A platform
stopped as it should cancels those calls itself.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from tests.cli.test_run_devloop import FlashRun
from tests.cli.test_run_first_build import SERVING, api_base
from tests.helpers import processes_under, wait_for
from tests.integration.projects import write_files

from flash.platform import serve_project

FILES = {
    "pyproject.toml": """
        [project]
        name = "nested"
        version = "0.1.0"
        dependencies = []
    """,
    "nested/__init__.py": "",
    "nested/work.py": """
        import time
        from pathlib import Path

        from flash import CpuLiveServerless, remote


        @remote(CpuLiveServerless(name="outer"))
        async def outer(gate: str) -> str:
            return "outer " + await inner(gate)


        @remote(CpuLiveServerless(name="inner"))
        def inner(gate: str) -> str:
            with open(gate + ".runs", "a") as runs:
                runs.write("run\\n")
            while not Path(gate).exists():  # the app's own wait, for the test to end
                time.sleep(0.02)
            return "inner"
    """,
}


def test_a_call_whose_caller_runs_again_after_a_crash_is_not_run_again(tmp_path: Path) -> None:
    root = write_files(tmp_path / "proj", FILES)
    gate = tmp_path / "gate"
    runs = tmp_path / "gate.runs"
    # A platform that dies at once (SIGKILL: no call is cancelled, no job ends), its workers
    # with it, while outer waits on its call to inner.
    flash = FlashRun(root, args=("--no-watch",))
    try:
        flash.wait_for_output(SERVING)
        base = api_base(flash.text())
        body = {"input": {"gate": str(gate)}}
        outer_id = httpx.post(f"{base}/v2/outer/run", json=body, timeout=60).json()["id"]
        wait_for(runs.exists, 60, "the inner call to run")
        flash.proc.kill()
        flash.proc.wait(60)
    finally:
        flash.end()
    wait_for(lambda: not processes_under(root), 30, "the workers to die with the platform")
    with serve_project(root) as platform:
        dispatcher = platform.dispatcher
        assert dispatcher is not None
        (old_inner,) = platform.call(
            lambda: [job for job in dispatcher.jobs.values() if job.endpoint == "inner"]
        )
        url = f"{platform.url}/v2/inner/status/{old_inner.id}"
        status = httpx.get(url, timeout=60).json()
        assert status["status"] == "FAILED", status
        assert status["error"] == (
            f"not run again: the job that called it ({outer_id}) stopped with the "
            "platform and runs again, making its calls anew"
        )
        gate.touch()

        def outer_status() -> dict[str, Any] | None:
            url = f"{platform.url}/v2/outer/status/{outer_id}"
            answer: dict[str, Any] = httpx.get(url, timeout=60).json()
            return answer if answer["status"] == "COMPLETED" else None

        done = wait_for(outer_status, 60, "the caller to run again and end")
        assert done["output"]["result"] == "outer inner"
    # The first run, and the call the caller made anew: not the old call a third time.
    assert runs.read_text().splitlines() == ["run", "run"]
