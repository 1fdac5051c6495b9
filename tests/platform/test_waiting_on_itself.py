"""The platform says when an endpoint at its workersMax may wait on calls to itself: a
deadlock RunPod would leave silent."""

from __future__ import annotations

from pathlib import Path

import httpx
from tests.helpers import Logs, wait_for
from tests.integration.projects import served_files

FILES = {
    "pyproject.toml": """
        [project]
        name = "cyc"
        version = "0.1.0"
        dependencies = []
    """,
    "cyc/__init__.py": "",
    "cyc/work.py": """
        from flash import CpuLiveServerless, remote


        @remote(CpuLiveServerless(name="ping", workersMax=1))
        async def ping(n: int) -> int:
            return 0 if n <= 0 else 1 + await pong(n - 1)


        @remote(CpuLiveServerless(name="pong", workersMax=1))
        async def pong(n: int) -> int:
            return 0 if n <= 0 else 1 + await ping(n - 1)
    """,
}


def test_an_endpoint_waiting_on_a_call_to_itself_at_its_workers_max_is_said(
    tmp_path: Path,
) -> None:
    logs = Logs()
    with served_files(tmp_path / "proj", FILES, echo=logs) as platform:
        # One hop: a worker each is enough, and nothing is said.
        done = httpx.post(f"{platform.url}/v2/ping/runsync", json={"input": {"n": 1}}, timeout=120)
        assert done.json()["output"]["result"] == 1, done.json()
        # ping -> pong -> ping: the second ping waits for ping's one worker, which waits on it.
        job = httpx.post(f"{platform.url}/v2/ping/run", json={"input": {"n": 2}}, timeout=60)
        assert job.status_code == 200, job.text

        def said() -> list[str]:
            return [line for line in logs.lines if "endpoint ping: job" in line]

        (line,) = wait_for(said, 60, "the platform to say ping waits on itself")
        assert "all 1 of its workers (workersMax=1) are busy" in line
        assert "(cyc.work.ping -> cyc.work.pong -> cyc.work.ping)" in line
        assert "Raise workersMax" in line
        assert not [line for line in logs.lines if "endpoint pong: job" in line]
        httpx.post(f"{platform.url}/v2/ping/cancel/{job.json()['id']}", timeout=60)
