"""In-process calls (no platform connected) keep to their timeout, as remote ones do."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from flash import LiveServerless, RemoteTimeoutError, remote, run

CFG = LiveServerless(name="local-timeouts")
RELEASE = threading.Event()  # lets the sync functions' threads end once a test is over
CLEANED_UP: list[str] = []


@pytest.fixture(autouse=True)
def _release_threads() -> Iterator[None]:
    RELEASE.clear()
    CLEANED_UP.clear()
    yield
    RELEASE.set()


@remote(CFG)
async def waits_forever() -> str:
    try:
        await asyncio.Event().wait()
    finally:
        CLEANED_UP.append("waits_forever")
    return "never"


@remote(CFG)
def blocks(answer: str) -> str:
    RELEASE.wait()
    return answer


@remote(CFG, timeout=0.2)
async def with_default_timeout() -> None:
    await asyncio.Event().wait()


@remote(CFG)
async def raises_its_own_timeout() -> None:
    raise TimeoutError("mine")


@remote(CFG)
async def one_then_stuck() -> AsyncIterator[int]:
    yield 1
    await asyncio.Event().wait()


@remote(CFG)
def sync_one_then_stuck() -> Iterator[int]:
    yield 1
    RELEASE.wait()


@remote(CFG)
class Slow:
    def wait(self) -> str:
        RELEASE.wait()
        return "done"


def test_an_async_call_past_its_timeout_is_cancelled_and_raises_remote_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(RemoteTimeoutError) as info:
        waits_forever.options(timeout=0.2).call()
    assert time.monotonic() - started < 5
    assert CLEANED_UP == ["waits_forever"]  # the coroutine was cancelled, not left running
    assert info.value.endpoint == "local-timeouts"
    assert info.value.function is not None and info.value.function.endswith("waits_forever")


def test_the_decorators_timeout_applies_in_process_too() -> None:
    with pytest.raises(RemoteTimeoutError):
        with_default_timeout.call()


def test_a_sync_call_past_its_timeout_raises_at_the_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(RemoteTimeoutError, match="did not finish in time"):
        blocks.options(timeout=0.2).call("x")
    assert time.monotonic() - started < 5


def test_a_sync_call_within_its_timeout_returns_its_result() -> None:
    RELEASE.set()
    assert blocks.options(timeout=30).call("x") == "x"
    assert asyncio.run(blocks("y")) == "y"  # and without a timeout, as before


def test_a_timeout_error_the_function_raises_is_its_own() -> None:
    with pytest.raises(TimeoutError, match="mine") as info:
        raises_its_own_timeout.options(timeout=30).call()
    assert not isinstance(info.value, RemoteTimeoutError)


def test_a_method_call_keeps_to_the_class_timeout() -> None:
    with pytest.raises(RemoteTimeoutError):
        run(Slow.options(timeout=0.2)().wait())


@pytest.mark.parametrize("fn", [one_then_stuck, sync_one_then_stuck])
def test_a_stream_must_finish_within_its_timeout(fn: object) -> None:
    got: list[int] = []

    async def collect() -> None:
        async for item in fn.options(timeout=0.3).stream():  # type: ignore[attr-defined]
            got.append(item)

    with pytest.raises(RemoteTimeoutError):
        run(collect())
    assert got == [1]  # the items produced in time arrive
