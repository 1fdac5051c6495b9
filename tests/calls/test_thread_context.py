"""Calls a job makes from threads keep its deadline and call chain: through a
ThreadPoolExecutor, and from a thread of its own run in a copy of the job's context.
Through the local platform, with real worker processes."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers import Logs, wait_for
from tests.integration.projects import served_files

import flash
from flash.platform import LocalPlatform

FILES = {
    "pyproject.toml": """
        [project]
        name = "threadctxapp"
        version = "0.1.0"
        dependencies = []
    """,
    "threadctxapp/__init__.py": "",
    "threadctxapp/work.py": """
        import asyncio
        import contextvars
        import threading
        from concurrent.futures import ThreadPoolExecutor
        from pathlib import Path

        from flash import CpuLiveServerless, remote

        # Workers that stay between the tests' calls, warm.
        slow = CpuLiveServerless(name="slow", workersMax=1, concurrency=4, idleTimeout=120)
        other = CpuLiveServerless(name="other", workersMax=1, concurrency=2, idleTimeout=120)
        # A worker whose calls may nest only one deep: the job itself is that one.
        shallow = CpuLiveServerless(
            name="shallow", workersMax=1, env={"FLASH_MAX_CALL_DEPTH": "1"}
        )


        @remote(slow)
        async def nap(seconds: float, marker: str) -> str:
            Path(marker + ".started").write_text("1")
            await asyncio.sleep(seconds)
            return "woke"


        @remote(other)
        def in_pool(seconds: float, marker: str) -> str:
            with ThreadPoolExecutor(2) as pool:
                return pool.submit(nap.call, seconds, marker).result()


        @remote(other)
        async def in_default_executor(seconds: float, marker: str) -> str:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, nap.call, seconds, marker)


        @remote(other)
        def in_own_thread(seconds: float, marker: str) -> str:
            # A thread of its own starts with an empty context: its work runs in a copy of
            # the job's, as asyncio.to_thread runs it.
            outcome = {}

            def work():
                try:
                    outcome["result"] = nap.call(seconds, marker)
                except BaseException as exc:
                    outcome["error"] = exc

            thread = threading.Thread(target=contextvars.copy_context().run, args=(work,))
            thread.start()
            thread.join()
            if "error" in outcome:
                raise outcome["error"]
            return outcome["result"]


        @remote(shallow)
        def nested_in_pool(marker: str) -> str:
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(nap.call, 0, marker).result()
    """,
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    root = tmp_path_factory.mktemp("threadctx") / "proj"
    with served_files(root, FILES, echo=Logs(), max_workers=4) as platform:
        yield platform


@pytest.fixture
def work(served: LocalPlatform, tmp_path: Path) -> Any:
    work = importlib.import_module("threadctxapp.work")
    # Both workers up: the timed calls below start at once, well within their time.
    assert work.in_pool.call(0, str(tmp_path / "warm")) == "woke"
    return work


def _ended(platform: LocalPlatform, before: dict[str, int]) -> str:
    """How the slow endpoint's next job ended: "failed" (it timed out at its caller's
    deadline) or "completed" (it slept its full time)."""

    def changed() -> str | None:
        jobs = httpx.get(f"{platform.url}/v2/slow/health", timeout=30).json()["jobs"]
        ended = [k for k in ("completed", "failed") if jobs[k] != before[k]]
        return ended[0] if ended else None

    return str(wait_for(changed, 30, "the inner job to end"))


def _counts(platform: LocalPlatform) -> dict[str, int]:
    return dict(httpx.get(f"{platform.url}/v2/slow/health", timeout=30).json()["jobs"])


@pytest.mark.parametrize("caller", ["in_pool", "in_default_executor", "in_own_thread"])
def test_a_call_from_a_thread_gets_only_the_time_its_job_has_left(
    served: LocalPlatform, work: Any, tmp_path: Path, caller: str
) -> None:
    before = _counts(served)
    with pytest.raises(flash.RemoteTimeoutError):
        getattr(work, caller).options(timeout=2).call(4, str(tmp_path / caller))
    assert _ended(served, before) == "failed"  # timed out, not slept 4 s


def test_a_call_from_a_thread_counts_in_its_jobs_call_depth(work: Any, tmp_path: Path) -> None:
    marker = tmp_path / "nested"
    with pytest.raises(flash.CallDepthError, match=r"nested_in_pool -> .*nap"):
        work.nested_in_pool.call(str(marker))
    assert not Path(f"{marker}.started").exists()  # never sent
