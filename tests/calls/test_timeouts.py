"""Time limits through the local platform, with real workers: a config's
``executionTimeoutMs`` counts from a job's start, as RunPod counts it, while a call's own
``timeout`` and its caller's deadline are the caller's to keep."""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.calls.support import inputs_sent, keyless
from tests.helpers import (
    Logs,
    completed_jobs,
    failed_jobs,
    final_status,
    jobs_in_progress,
    wait_for,
)
from tests.integration.projects import served_files

from flash import RemoteTimeoutError
from flash.platform import LocalPlatform
from flash.runtime import client as client_module
from flash.runtime.client import PlatformInvoker
from flash.runtime.http import HttpClient

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
        import threading
        import time
        from pathlib import Path

        from flash import CpuLiveServerless, MapError, RemoteTimeoutError, remote, run

        # One worker, one job at a time: jobs queue behind each other.
        short = CpuLiveServerless(name="t-short", workersMax=1, executionTimeoutMs=1000)
        # Sync code in a thread (concurrency 2), so the worker's loop stays free.
        limited = CpuLiveServerless(
            name="t-limited", workersMax=1, concurrency=2, executionTimeoutMs=1000
        )
        free = CpuLiveServerless(name="t-free", workersMax=1, concurrency=2)
        work = CpuLiveServerless(name="t-work", workersMax=1)
        here = CpuLiveServerless(name="t-here", workersMax=1)
        # An hour's limit, as a long GPU job has.
        hour = CpuLiveServerless(name="t-hour", workersMax=1, executionTimeoutMs=3_600_000)


        @remote(short)
        async def nap(seconds: float) -> float:
            await asyncio.sleep(seconds)
            return seconds


        @remote(short)
        def step(seconds: float) -> float:
            time.sleep(seconds)
            return seconds


        @remote(hour)
        def untyped(x):
            return x


        @remote(short)
        def thread_of(n: int) -> str:
            return threading.current_thread().name


        @remote(short)
        async def thread_of_a_call_here() -> str:
            return await thread_of(0)


        @remote(work)
        def slow_sync(seconds: float) -> float:
            time.sleep(seconds)
            return seconds


        @remote(work)
        async def slow_async(seconds: float) -> float:
            await asyncio.sleep(seconds)
            return seconds


        @remote(work)
        async def counts_after(marker: str, n: int):
            # Item 0 at once, the others once the marker exists (a minute at most).
            yield 0
            for _ in range(6000):
                if Path(marker).exists():
                    break
                await asyncio.sleep(0.01)
            for i in range(1, n):
                yield i


        @remote(work)
        async def counts_then_fails(marker: str, n: int):
            # As counts_after, then fails.
            async for item in counts_after.local(marker, n):
                yield item
            raise ValueError("boom at the end")


        @remote(work)
        async def holds_until(marker: str) -> str:
            while not Path(marker).exists():
                await asyncio.sleep(0.01)
            return "released"


        @remote(here)
        def slow_here(seconds: float) -> float:
            time.sleep(seconds)
            return seconds


        @remote(here)
        async def aslow_here(seconds: float) -> float:
            await asyncio.sleep(seconds)
            return seconds


        @remote(here, timeout=0.3)
        async def limited_here(seconds: float) -> float:
            await asyncio.sleep(seconds)
            return seconds


        @remote(here)
        async def ticks_here():
            n = 0
            while True:
                yield n
                n += 1
                await asyncio.sleep(0.01)


        @remote(here)
        def sync_ticks_here():
            while True:
                yield 0
                time.sleep(0.01)


        @remote(here)
        class Sleeper:
            async def nap(self, seconds: float) -> float:
                await asyncio.sleep(seconds)
                return seconds

            async def ticks(self):
                while True:
                    yield 0
                    await asyncio.sleep(0.01)


        async def _outcome(awaitable) -> str:
            try:
                await awaitable
            except RemoteTimeoutError:
                return "timed out"
            return "finished"


        async def _drain(stream) -> None:
            async for _ in stream:
                pass


        @remote(here)
        async def calls_here_with_timeouts() -> dict:
            return {
                "sync": await _outcome(slow_here.options(timeout=0.3)(3)),
                "async": await _outcome(aslow_here.options(timeout=0.3)(30)),
                "decorated": await _outcome(limited_here(30)),
                "method": await _outcome(Sleeper().nap.options(timeout=0.3)(30)),
            }


        @remote(here)
        async def streams_here_with_timeouts() -> dict:
            return {
                "async": await _outcome(_drain(ticks_here.options(timeout=0.3).stream())),
                "sync": await _outcome(_drain(sync_ticks_here.options(timeout=0.3).stream())),
                "method": await _outcome(_drain(Sleeper().ticks.options(timeout=0.3).stream())),
            }


        @remote(here)
        async def maps_here_with_a_timeout() -> list:
            mapped = slow_here.options(timeout=0.3).map([0.01, 3, 0.01], return_exceptions=True)
            return [type(result).__name__ for result in await mapped]


        @remote(here)
        async def waits_here(seconds: float, marker: str) -> float:
            try:
                return await aslow_here(seconds)
            except RemoteTimeoutError:
                Path(marker).write_text("1")
                raise


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


        @remote(limited)
        def maps_on_nap(seconds: float, marker: str) -> None:
            # A map's items count their timeout from their start, within this job's time.
            try:
                run(marked_nap.options(timeout=30).starmap([(seconds, marker)]))
            except MapError as exc:
                if isinstance(exc.errors[0], RemoteTimeoutError):
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
    # The platform's words: which limit, and how long it was.
    with pytest.raises(RemoteTimeoutError, match="exceeded its execution timeout of 1000 ms"):
        asyncio.run(jobs.nap(30))


@pytest.mark.parametrize("caller", ["waits_on_nap", "maps_on_nap"])
def test_a_nested_call_gets_no_more_than_its_callers_config_limit(
    served: tuple[LocalPlatform, Any], tmp_path: Path, caller: str
) -> None:
    # The caller's job may run 1 s (its config): the call it makes gets what is left of
    # that, so its job is cancelled then, not left running with nobody waiting for it. A
    # map's items too, though each counts its own timeout from its start.
    _, jobs = served
    marker = str(tmp_path / "nested")
    with pytest.raises(RemoteTimeoutError):
        asyncio.run(getattr(jobs, caller)(30, marker))
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


def test_sync_code_without_a_timeout_of_its_own_stays_on_its_thread(
    served: tuple[LocalPlatform, Any],
) -> None:
    # Under a config's limit, with no timeout of the call's, a map's items and a call made
    # on the same endpoint run on the thread that runs the job, as in-process calls do:
    # moved to threads of their own, thread-bound state (an sqlite connection, a
    # threading.local cache) failed there.
    _, jobs = served
    names = asyncio.run(jobs.thread_of.map(range(4), chunk_size=4, concurrency=1))
    assert names == ["MainThread"] * 4
    assert asyncio.run(jobs.thread_of_a_call_here()) == "MainThread"


# Calls between functions of one endpoint run in its worker, with no job: they keep to their
# time limits all the same, as in-process calls do and as calls to another endpoint do. The
# client's own timeout (20 s) only bounds a test that would otherwise never end.


def test_a_same_endpoint_call_keeps_to_its_timeout(served: tuple[LocalPlatform, Any]) -> None:
    _, jobs = served
    outcomes = asyncio.run(jobs.calls_here_with_timeouts.options(timeout=20)())
    assert outcomes == dict.fromkeys(["sync", "async", "decorated", "method"], "timed out")


def test_a_same_endpoint_stream_keeps_to_its_timeout(served: tuple[LocalPlatform, Any]) -> None:
    _, jobs = served
    outcomes = asyncio.run(jobs.streams_here_with_timeouts.options(timeout=20)())
    assert outcomes == dict.fromkeys(["async", "sync", "method"], "timed out")


def test_a_same_endpoint_map_keeps_each_items_timeout(served: tuple[LocalPlatform, Any]) -> None:
    _, jobs = served
    kinds = asyncio.run(jobs.maps_here_with_a_timeout.options(timeout=20)())
    assert kinds == ["float", "RemoteTimeoutError", "float"]


def test_a_same_endpoint_call_gets_no_more_than_its_callers_time(
    served: tuple[LocalPlatform, Any], tmp_path: Path
) -> None:
    # The call itself times out when its caller's time is up (the caller sees
    # RemoteTimeoutError from it), rather than being cancelled with its caller's job.
    _, jobs = served
    marker = tmp_path / "timed_out"
    with pytest.raises(RemoteTimeoutError):
        asyncio.run(jobs.waits_here.options(timeout=1)(30, str(marker)))
    wait_for(marker.exists, 10, "the same-endpoint call to time out")


def test_a_long_config_limit_lets_a_signed_call_wait_as_long_to_start(
    served: tuple[LocalPlatform, Any],
) -> None:
    # Its signature allowed 15 minutes once the limit no longer made a deadline: a job of an
    # hour's limit queued longer than that was refused as expired.
    platform, jobs = served
    with inputs_sent(platform) as sent:
        assert asyncio.run(jobs.untyped(5)) == 5
    ((_, text),) = sent
    signed = json.loads(text)["signature"]
    assert signed["deadline"] - time.time() > 3_500, signed["deadline"] - time.time()


def test_a_stream_that_ended_in_time_gives_all_its_items_to_a_slow_reader(
    served: tuple[LocalPlatform, Any], tmp_path: Path
) -> None:
    # The timeout is the job's, not the reader's: its job ended well before the deadline,
    # and the reader, slow, asks for the rest after it.
    platform, jobs = served
    marker = tmp_path / "go"
    ended = completed_jobs(platform.url, "t-work") + 1

    async def read() -> list[int]:
        got = []
        async for item in jobs.counts_after.options(timeout=2).stream(str(marker), 4):
            got.append(item)
            if item == 0:  # came while the job waited for the marker: it was running
                marker.write_text("1")
                await asyncio.to_thread(
                    wait_for, lambda: completed_jobs(platform.url, "t-work") == ended
                )
                await asyncio.sleep(2)  # a slow reader: past the deadline
        return got

    assert asyncio.run(read()) == [0, 1, 2, 3]


def test_a_stream_that_failed_in_time_gives_its_failure_to_a_slow_reader(
    served: tuple[LocalPlatform, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first poll finds the job ended (its items and its failure in one answer), and the
    # reader takes its time over them: the end is read after the deadline, as a reader far
    # from the platform reads it (10 ms a request), and is the job's failure, not a timeout.
    platform, jobs = served
    marker = tmp_path / "go"
    marker.write_text("1")  # no waiting: the job ends at once
    failed = failed_jobs(platform.url, "t-work") + 1
    get, exchange = PlatformInvoker._get, HttpClient._exchange

    async def late(self: PlatformInvoker, url: str, route: str, *args: Any) -> Any:
        if route == "stream":  # as a poll of a busy platform comes late
            await asyncio.to_thread(wait_for, lambda: failed_jobs(platform.url, "t-work") == failed)
        return await get(self, url, route, *args)

    async def far(self: HttpClient, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.01)
        return await exchange(self, *args, **kwargs)

    monkeypatch.setattr(PlatformInvoker, "_get", late)
    monkeypatch.setattr(HttpClient, "_exchange", far)
    got = []

    async def read() -> None:
        async for item in jobs.counts_then_fails.options(timeout=2).stream(str(marker), 3):
            got.append(item)
            await asyncio.sleep(3 if item == 0 else 0)  # past the deadline, and a second more

    with pytest.raises(ValueError, match="boom at the end"):
        asyncio.run(read())
    assert got == [0, 1, 2]


def test_a_stream_still_running_at_its_deadline_times_out_however_it_is_read(
    served: tuple[LocalPlatform, Any], tmp_path: Path
) -> None:
    platform, jobs = served

    async def read() -> None:
        async for _ in jobs.counts_after.options(timeout=1).stream(str(tmp_path / "never"), 4):
            await asyncio.sleep(1)  # past the deadline: the job still waits for its marker

    with pytest.raises(RemoteTimeoutError) as raised:
        asyncio.run(read())
    # Ended by the caller or by the platform at its limit, whichever came first.
    job = final_status(platform.url, "t-work", str(raised.value.job_id))
    assert job["status"] in ("CANCELLED", "TIMED_OUT"), job


def test_a_maps_items_waiting_for_a_worker_do_not_time_out(
    served: tuple[LocalPlatform, Any],
) -> None:
    # One worker: the items after the slow one wait for it, each then within its timeout,
    # which counts from its start, as in-process.
    platform, jobs = served
    mapped = jobs.slow_sync.options(timeout=1).map([0.05, 3, 0.05, 0.05], return_exceptions=True)
    results = asyncio.run(mapped)
    assert isinstance(results[1], RemoteTimeoutError), results[1]
    assert results[:1] + results[2:] == [0.05] * 3
    # Where each item is a job of its own: a method's map, a JSON function's.
    naps = jobs.Sleeper().nap.options(timeout=1).map([0.05, 30, 0.05], return_exceptions=True)
    results = asyncio.run(naps)
    assert isinstance(results[1], RemoteTimeoutError), results[1]
    assert results[:1] + results[2:] == [0.05] * 2
    with keyless(platform):
        mapped = jobs.slow_async.options(timeout=1).map([0.05, 30, 0.05], return_exceptions=True)
        results = asyncio.run(mapped)
    assert isinstance(results[1], RemoteTimeoutError), results[1]
    assert results[:1] + results[2:] == [0.05] * 2


def test_a_call_whose_job_never_started_says_so(
    served: tuple[LocalPlatform, Any], tmp_path: Path
) -> None:
    # A plain call's timeout counts from the call: its job waited for the one worker.
    platform, jobs = served
    marker = tmp_path / "release"
    holding = threading.Thread(target=jobs.holds_until.call, args=(str(marker),))
    holding.start()
    try:
        wait_for(lambda: jobs_in_progress(platform.url, "t-work") == 1, 20, "the worker to be held")
        with pytest.raises(RemoteTimeoutError, match="never started") as raised:
            asyncio.run(jobs.slow_sync.options(timeout=0.5)(0.01))
        assert "waited in the queue for 0." in str(raised.value), raised.value
    finally:
        marker.write_text("1")
        holding.join()


def test_a_map_item_that_cannot_start_before_its_signature_expires_says_so(
    served: tuple[LocalPlatform, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A map item's timeout counts from its start, so only its signature bounds its wait: a
    # worker refuses a request signed until a time past, and the caller stops waiting then.
    platform, jobs = served
    monkeypatch.setattr(client_module, "DEFAULT_TTL_S", 0.5)
    monkeypatch.setattr(client_module, "CLOCK_SKEW_S", 0.0)
    marker = tmp_path / "release"
    holding = threading.Thread(target=jobs.holds_until.call, args=(str(marker),))
    holding.start()
    try:
        wait_for(lambda: jobs_in_progress(platform.url, "t-work") == 1, 20, "the worker to be held")
        mapped = jobs.slow_sync.options(timeout=0.5).map([0.01], return_exceptions=True)
        [error] = asyncio.run(asyncio.wait_for(mapped, 20))
        assert isinstance(error, RemoteTimeoutError), error
        assert "never started" in str(error) and "signature" in str(error), error
    finally:
        marker.write_text("1")
        holding.join()
