"""How a call weathers its platform: restarts, silence, refusals. Scripted gateways on real
sockets stand in for the platform, so each outage happens exactly when the test says."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from tests.calls.support import Restartable, connections_to
from tests.helpers import wait_for

import flash
from flash import CpuLiveServerless, remote
from flash.runtime import client
from flash.runtime.client import Endpoints, PlatformInvoker
from flash.runtime.http import HttpClient, HttpError
from flash.runtime.remote import set_invoker
from flash.runtime.serialization import serialize

NAMES = f"[{__name__}.typed on api]"


@remote(CpuLiveServerless(name="api"))
def typed(x: int) -> int:  # called with JSON: no key needed
    return x


def _done(result: Any) -> dict[str, Any]:
    return {
        "id": "j1",
        "status": "COMPLETED",
        "output": {"success": True, "result": result, "encoding": "json"},
    }


@contextlib.contextmanager
def _connected(url: str) -> Iterator[list[str]]:
    """Calls go to ``url`` while the block runs; yields the failed requests, as they fail."""
    invoker = PlatformInvoker(Endpoints(url))
    failures: list[str] = []
    request = invoker.http.request

    async def counting(*args: Any, **kwargs: Any) -> Any:
        try:
            return await request(*args, **kwargs)
        except HttpError as exc:
            failures.append(str(exc))
            raise

    invoker.http.request = counting  # type: ignore[method-assign]
    previous = set_invoker(invoker)
    try:
        yield failures
    finally:
        set_invoker(previous)
        invoker.close()


# The old client gave up after 5 attempts in 0.75 s; a restart takes longer than that.
OLD_ATTEMPTS = 5


def test_a_restart_after_the_job_was_accepted_is_ridden_out_by_polling_it() -> None:
    seen: list[tuple[str, str, bool]] = []
    submitted = threading.Event()
    restarted = threading.Event()

    def answer(method: str, path: str, headers: dict[str, str], body: Any) -> Any:
        seen.append((method, path.split("?")[0], restarted.is_set()))
        if method == "POST":
            submitted.set()
            return 200, {"id": "j1", "status": "IN_PROGRESS"}
        return 200, _done(7) if restarted.is_set() else {"id": "j1", "status": "IN_PROGRESS"}

    platform = Restartable(answer)
    try:
        # retries=0: the job was accepted, so polling it rides out the outage regardless.
        with _connected(platform.url) as failures, ThreadPoolExecutor(1) as pool:
            call = pool.submit(typed.options(retries=0).call, 7)
            assert submitted.wait(20)
            platform.stop()  # gone: connections are refused from now on
            wait_for(lambda: len(failures) > OLD_ATTEMPTS or call.done(), 20, "retries")
            restarted.set()
            platform.start()  # back on the same port
            assert call.result(timeout=30) == 7
    finally:
        platform.close()
    assert [s for s in seen if s[0] == "POST"] == [("POST", "/v2/api/runsync", False)]
    assert ("GET", "/v2/api/status/j1", True) in seen
    assert all("cannot connect" in failure for failure in failures[1:])


def test_a_submission_cut_off_by_a_restart_is_sent_again_under_its_key() -> None:
    keys: list[str | None] = []
    submitted = threading.Event()
    gone = threading.Event()

    def answer(method: str, path: str, headers: dict[str, str], body: Any) -> Any:
        keys.append(headers.get("Idempotency-Key"))
        if len(keys) == 1:
            submitted.set()
            gone.wait(20)  # the platform dies during runsync's wait: no answer
            return None
        return 200, _done(body["input"]["kwargs"]["x"])

    platform = Restartable(answer)
    try:
        with _connected(platform.url) as failures, ThreadPoolExecutor(1) as pool:
            call = pool.submit(typed.call, 5)
            assert submitted.wait(20)
            platform.stop()
            gone.set()
            wait_for(lambda: len(failures) > OLD_ATTEMPTS or call.done(), 20, "retries")
            platform.start()
            assert call.result(timeout=30) == 5
    finally:
        platform.close()
    # The same key: a platform that had kept the first submission answers with that job.
    assert len(keys) == 2 and keys[0] is not None and keys[0] == keys[1]


def test_connection_failures_are_retried_for_seconds_not_past_the_deadline() -> None:
    platform = Restartable(lambda *_: (200, _done(1)))
    platform.stop()  # nothing listens on its port
    try:
        with _connected(platform.url):
            started = time.monotonic()
            with pytest.raises(flash.RemoteTimeoutError) as info:
                typed.options(timeout=1.5).call(1)
    finally:
        platform.close()
    assert 1.4 < time.monotonic() - started < 5
    message = str(info.value)
    assert "ran out of time after" in message and "cannot connect" in message
    assert message.endswith(NAMES)


@contextlib.contextmanager
def _silent_platform() -> Iterator[str]:
    """A platform that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_silent_platform_fails_a_call_without_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every request is bounded: runsync's wait plus time to answer (shortened here).
    monkeypatch.setattr(client, "RUNSYNC_WAIT_MS", 200)
    monkeypatch.setattr(client, "_ANSWER_WITHIN_S", 0.5)
    with (
        _silent_platform() as url,
        _connected(url),
        pytest.raises(flash.EndpointUnavailableError) as info,
    ):
        asyncio.run(asyncio.wait_for(typed.options(retries=0)(1), 20))
    message = str(info.value)
    assert "failed after 1 attempt;" in message and "no answer within 0.7 s" in message
    assert message.endswith(NAMES)


def test_a_silent_platform_is_a_timeout_once_the_callers_time_is_up() -> None:
    with _silent_platform() as url, _connected(url):
        started = time.monotonic()
        with pytest.raises(flash.RemoteTimeoutError) as info:
            asyncio.run(asyncio.wait_for(typed.options(timeout=1)(1), 20))
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "ran out of time after 1 attempt;" in message and "no answer within" in message


def test_a_job_whose_deadline_passed_before_it_started_is_a_timeout() -> None:
    def answer(method: str, path: str, headers: dict[str, str], body: Any) -> Any:
        refused = "the caller's deadline passed 0.002 s before 'typed' could start"
        output = {"success": False, "error_type": "DeadlineExceeded", "error": refused}
        return 200, {"id": "j9", "status": "FAILED", "error": refused, "output": output}

    platform = Restartable(answer)
    try:
        with _connected(platform.url), pytest.raises(flash.RemoteTimeoutError) as info:
            typed.call(1)
    finally:
        platform.close()
    assert info.value.remote_type == "DeadlineExceeded" and info.value.job_id == "j9"


@pytest.mark.parametrize(("status", "words"), [(404, "Not Found"), (401, "Unauthorized")])
def test_a_refusal_without_a_body_names_its_status_and_the_call(status: int, words: str) -> None:
    platform = Restartable(lambda *_: (status, None))
    try:
        with _connected(platform.url), pytest.raises(flash.EndpointUnavailableError) as info:
            typed.call(1)
    finally:
        platform.close()
    message = str(info.value)
    assert f"HTTP {status} {words}" in message and "None" not in message
    assert message.endswith(NAMES)


def test_an_outage_is_timed_from_when_it_showed_not_from_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A /runsync held while its job runs, then cut off by a restart, is sent again even
    # when the hold outlasted the retry window (shortened here).
    monkeypatch.setattr(client, "_OUTAGE_S", 0.5)
    requests = 0

    def answer(method: str, path: str, headers: dict[str, str], body: Any) -> Any:
        nonlocal requests
        requests += 1
        if requests == 1:
            threading.Event().wait(1.0)  # the platform holds it while the job runs...
            return None  # ...and goes down: no answer
        return 200, _done(body["input"]["kwargs"]["x"])

    platform = Restartable(answer)
    try:
        with _connected(platform.url):
            assert typed.call(3) == 3
    finally:
        platform.close()
    assert requests == 2


def test_a_retry_on_a_fresh_connection_keeps_to_the_calls_deadline() -> None:
    release = threading.Event()
    requests = 0

    def answer(method: str, path: str, headers: dict[str, str], body: Any) -> Any:
        nonlocal requests
        requests += 1
        if requests == 1:
            return 200, _done(1)  # leaves a kept-alive connection behind
        if requests == 2:
            release.wait(3.8)  # then that connection is cut off, nothing answered...
            return None
        release.wait(20)  # ...and the fresh one gets no answer
        return None

    async def two_calls() -> float:
        assert await typed(1) == 1  # its connection is kept for the next call of this loop
        started = time.monotonic()
        with pytest.raises(flash.RemoteTimeoutError):
            await typed.options(timeout=4, retries=0)(1)
        return time.monotonic() - started

    platform = Restartable(answer, keep_alive=True)
    try:
        with _connected(platform.url):
            took = asyncio.run(two_calls())
    finally:
        release.set()
        platform.close()
    # The fresh connection gets what is left of the deadline (and its grace), not all
    # of it again: 4 s plus 1 s of grace, where it took 8.8 s before.
    assert requests == 3 and took < 7


def test_a_kernel_timeout_without_a_limit_of_ours_is_a_transport_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # From Python 3.11 the kernel's ETIMEDOUT is the TimeoutError asyncio raises too; a
    # request without a time limit (a worker's result post) got a TypeError from it.
    async def timing_out(*args: Any, **kwargs: Any) -> Any:
        raise TimeoutError(110, "Connection timed out")

    monkeypatch.setattr(asyncio, "open_connection", timing_out)
    refused = r"cannot connect to 127\.0\.0\.1:9: .*Connection timed out"
    with pytest.raises(HttpError, match=refused):
        asyncio.run(HttpClient().request("GET", "http://127.0.0.1:9/ping"))


@remote(CpuLiveServerless(name="api"))
def counting(n):  # untyped: a pickled stream
    yield from range(n)


def test_a_stream_left_open_when_its_loop_ends_leaves_no_connection_open() -> None:
    cancelled = threading.Event()

    def answer(method: str, path: str, headers: dict[str, str], body: Any) -> Any:
        if path.endswith("/run"):
            return 200, {"id": "j1", "status": "IN_QUEUE"}
        if "/cancel/" in path:
            cancelled.set()
            return 200, {"id": "j1", "status": "CANCELLED"}
        chunk = {"output": {"success": True, "result": serialize(0)}}
        return 200, {"status": "IN_PROGRESS", "stream": [chunk]}

    platform = Restartable(answer, keep_alive=True)
    invoker = PlatformInvoker(Endpoints(platform.url), allow_unsigned=True)
    previous = set_invoker(invoker)
    kept: list[Any] = []

    async def main() -> None:
        stream = counting.stream(3)
        assert await stream.__anext__() == 0
        kept.append(stream)  # still open when asyncio.run closes the loop

    try:
        asyncio.run(main())
        kept.clear()
        assert cancelled.is_set()  # its clean-up told the platform to stop the job
        assert connections_to(platform.port) == 0
    finally:
        set_invoker(previous)
        invoker.close()
        platform.close()


def test_an_http_1_0_answer_leaves_no_connection_to_reuse() -> None:
    # HTTP/1.0 closes after each answer: a request sent on that connection can cross its
    # close (a worker's job-done post was lost so now and then).
    platform = Restartable(lambda *_: (200, _done(1)))  # answers as HTTP/1.0

    async def call_then_count() -> int:
        assert await typed(1) == 1
        return connections_to(platform.port)

    try:
        with _connected(platform.url):
            assert asyncio.run(call_then_count()) == 0
    finally:
        platform.close()


def test_a_connection_reset_as_it_opens_is_a_transport_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The other side can reset a connection before the client has set its socket up: that
    # is a failed request (retried like any), not an OSError escaping the client.
    open_connection = asyncio.open_connection

    async def reset_at_once(*args: Any, **kwargs: Any) -> Any:
        reader, writer = await open_connection(*args, **kwargs)
        writer.transport.abort()  # its socket is gone before the client touches it
        return reader, writer

    platform = Restartable(lambda *_: (200, _done(1)))
    monkeypatch.setattr(asyncio, "open_connection", reset_at_once)
    try:
        with pytest.raises(HttpError, match=r"GET http://127\.0\.0\.1"):
            asyncio.run(HttpClient().request("GET", f"{platform.url}/ping", timeout=5))
    finally:
        platform.close()
