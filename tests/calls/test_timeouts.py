"""Time limits through the local platform, with real workers: a config's
``executionTimeoutMs`` counts from a job's start, as RunPod counts it, while a call's own
``timeout`` and its caller's deadline are the caller's to keep."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import Logs, completed_jobs, wait_for
from tests.integration.projects import served_files

from flash import RemoteTimeoutError
from flash.platform import LocalPlatform

FILES = {
    "pyproject.toml": """
        [project]
        name = "timeoutsapp"
        version = "0.1.0"
        dependencies = []
    """,
    "timeoutsapp/__init__.py": "",
    "timeoutsapp/jobs.py": """
        import asyncio
        import time
        from pathlib import Path

        from flash import CpuLiveServerless, RemoteTimeoutError, remote

        # One worker, one job at a time: jobs queue behind each other.
        short = CpuLiveServerless(name="t-short", workersMax=1, executionTimeoutMs=1000)
        # Sync code in a thread (concurrency 2), so the worker's loop stays free.
        limited = CpuLiveServerless(
            name="t-limited", workersMax=1, concurrency=2, executionTimeoutMs=1000
        )
        free = CpuLiveServerless(name="t-free", workersMax=1, concurrency=2)
        work = CpuLiveServerless(name="t-work", workersMax=1)


        @remote(short)
        async def nap(seconds: float) -> float:
            await asyncio.sleep(seconds)
            return seconds


        @remote(short)
        def step(seconds: float) -> float:
            time.sleep(seconds)
            return seconds


        @remote(work)
        def slow_sync(seconds: float) -> float:
            time.sleep(seconds)
            return seconds


        @remote(work)
        async def slow_async(seconds: float) -> float:
            await asyncio.sleep(seconds)
            return seconds


        @remote(free)
        async def marked_nap(seconds: float, marker: str) -> str:
            Path(marker + ".started").write_text("1")
            try:
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                Path(marker + ".cancelled").write_text("1")
                raise
            return "woke"


        @remote(limited)
        def waits_on_nap(seconds: float, marker: str) -> str:
            # A blocking call from sync code: nothing cancels it when this job times out.
            try:
                return marked_nap.call(seconds, marker)
            except RemoteTimeoutError:
                Path(marker + ".timed_out").write_text("1")
                raise
    """,
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPlatform, Any]]:
    root = tmp_path_factory.mktemp("timeouts") / "proj"
    with served_files(root, FILES, echo=Logs(), max_workers=6) as platform:
        yield platform, importlib.import_module("timeoutsapp.jobs")


def test_a_config_limit_does_not_count_the_time_a_job_waits_in_the_queue(
    served: tuple[LocalPlatform, Any],
) -> None:
    # Five jobs of 0.4 s on one worker under a 1 s limit: the last waits about 1.6 s for
    # the worker, and runs well within its limit once it starts.
    platform, jobs = served
    before = completed_jobs(platform.url, "t-short")

    async def five() -> list[Any]:
        return await asyncio.gather(*(jobs.nap(0.4) for _ in range(5)), return_exceptions=True)

    assert asyncio.run(five()) == [0.4] * 5
    assert completed_jobs(platform.url, "t-short") == before + 5  # none cancelled


def test_a_config_limit_still_ends_a_job_that_runs_past_it(
    served: tuple[LocalPlatform, Any],
) -> None:
    _, jobs = served
    with pytest.raises(RemoteTimeoutError, match="execution timeout"):
        asyncio.run(jobs.nap(30))


def test_a_nested_call_gets_no_more_than_its_callers_config_limit(
    served: tuple[LocalPlatform, Any], tmp_path: Path
) -> None:
    # The caller's job may run 1 s (its config): the call it makes gets what is left of
    # that, so its job is cancelled then, not left running with nobody waiting for it.
    _, jobs = served
    marker = str(tmp_path / "nested")
    with pytest.raises(RemoteTimeoutError):
        asyncio.run(jobs.waits_on_nap(30, marker))
    # The nested call itself ran out of time (its caller's worker was not killed first).
    wait_for(Path(marker + ".timed_out").exists, 10, "the nested call to time out")
    wait_for(Path(marker + ".cancelled").exists, 10, "the nested job to be cancelled")


def test_a_maps_timeout_is_each_items_not_each_batchs(served: tuple[LocalPlatform, Any]) -> None:
    # 30 items of 0.05 s in one job: 1.5 s in all, each well within its 0.5 s.
    _, jobs = served
    items = [0.05] * 30
    mapped = jobs.slow_sync.options(timeout=0.5).map(items, chunk_size=30, concurrency=1)
    assert asyncio.run(mapped) == items


def test_a_config_limit_is_each_map_items_not_each_batchs(
    served: tuple[LocalPlatform, Any],
) -> None:
    # The endpoint's 1 s limit, no timeout of the call's: 40 items of 0.05 s in one job.
    _, jobs = served
    items = [0.05] * 40
    assert asyncio.run(jobs.step.map(items, chunk_size=40, concurrency=1)) == items


def test_only_the_map_item_past_its_limit_fails(served: tuple[LocalPlatform, Any]) -> None:
    # A sync item past its limit fails at it (its thread runs on), and the items after it
    # in its job still run, each under its own limit.
    _, jobs = served
    items = [0.05] * 5 + [3.0] + [0.05] * 5
    mapped = jobs.slow_sync.options(timeout=0.5).map(items, chunk_size=11, return_exceptions=True)
    results = asyncio.run(mapped)
    assert isinstance(results[5], RemoteTimeoutError), results[5]
    assert results[:5] + results[6:] == [0.05] * 10
    # An async item past its limit is cancelled at it; the others of its job give results.
    items = [0.05] * 5 + [30.0] + [0.05] * 5
    mapped = jobs.slow_async.options(timeout=0.5).map(items, chunk_size=11, return_exceptions=True)
    results = asyncio.run(mapped)
    assert isinstance(results[5], RemoteTimeoutError), results[5]
    assert results[:5] + results[6:] == [0.05] * 10
    # And under a config's limit, as under a call's timeout.
    items = [0.05] * 3 + [3.0] + [0.05] * 3
    results = asyncio.run(jobs.step.map(items, chunk_size=7, return_exceptions=True))
    assert isinstance(results[3], RemoteTimeoutError), results[3]
    assert results[:3] + results[4:] == [0.05] * 6
