"""In-process calls (no platform connected) keep to their timeout, as remote ones do."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
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


@remote(CFG)
def raises_stop_iteration() -> int:
    return next(iter([]))  # type: ignore[no-any-return]


def test_a_sync_function_raising_stop_iteration_fails_at_once_not_at_the_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="StopIteration") as info:
        raises_stop_iteration.options(timeout=3).call()
    assert not isinstance(info.value, RemoteTimeoutError)
    assert time.monotonic() - started < 2
    with pytest.raises(RuntimeError, match="StopIteration"):  # as without a timeout
        raises_stop_iteration.call()


THREAD_STATE = threading.local()
STEP_THREADS: list[int] = []


@remote(CFG)
def keeps_thread_state() -> Iterator[str]:
    # A connection a generator opens in its first step (sqlite3's, say) is bound to the
    # thread that opened it: every step must run there, its clean-up too.
    try:
        THREAD_STATE.conn = "opened"
        STEP_THREADS.append(threading.get_ident())
        yield THREAD_STATE.conn
        STEP_THREADS.append(threading.get_ident())
        yield getattr(THREAD_STATE, "conn", "missing")
        STEP_THREADS.append(threading.get_ident())
        yield "never asked for"
    finally:
        STEP_THREADS.append(threading.get_ident())
        CLEANED_UP.append("keeps_thread_state")


def test_a_sync_stream_with_a_timeout_runs_in_one_thread_and_closes_when_left() -> None:
    STEP_THREADS.clear()

    async def first_two() -> list[str]:
        stream = keeps_thread_state.options(timeout=30).stream()
        got = [await stream.__anext__(), await stream.__anext__()]
        assert len(STEP_THREADS) == 2  # no item is made before it is asked for
        await stream.aclose()
        return got

    assert run(first_two()) == ["opened", "opened"]
    assert CLEANED_UP == ["keeps_thread_state"]  # closed by the time aclose returns
    assert len(STEP_THREADS) == 3 and len(set(STEP_THREADS)) == 1
    assert threading.get_ident() not in STEP_THREADS  # and not in the caller's thread


VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


@remote(CFG)
async def keeps_its_context() -> AsyncIterator[tuple[str, object]]:
    VAR.set("set in step 1")
    yield VAR.get(), asyncio.current_task()
    yield VAR.get(), asyncio.current_task()


def test_an_async_stream_with_a_timeout_runs_as_one_in_the_callers_task() -> None:
    async def collect() -> list[tuple[str, object]]:
        return [item async for item in keeps_its_context.options(timeout=30).stream()]

    async def main() -> None:
        got = await collect()
        task = asyncio.current_task()
        # A context variable set in one step is there in the next, and a cancel scope or
        # asyncio.timeout across a yield keeps its task, as without a timeout.
        assert got == [("set in step 1", task), ("set in step 1", task)]

    run(main())


@remote(CFG)
async def sets_the_context(value: str) -> str:
    VAR.set(value)
    await asyncio.sleep(0)
    return value


def test_an_async_call_with_a_timeout_runs_in_the_callers_context() -> None:
    async def main() -> str:
        await sets_the_context.options(timeout=30)("mine")
        return VAR.get()

    assert run(main()) == "mine"  # as an awaited coroutine's change is, without a timeout


@remote(CFG)
async def swallows_cancellation() -> str:
    with contextlib.suppress(asyncio.CancelledError):  # a bug, but a common one
        await asyncio.Event().wait()
    return "late"


def test_an_async_call_that_swallows_its_cancellation_still_times_out() -> None:
    started = time.monotonic()
    with pytest.raises(RemoteTimeoutError):
        swallows_cancellation.options(timeout=0.2).call()
    assert time.monotonic() - started < 5


def test_cancelling_the_caller_is_not_a_timeout() -> None:
    async def main() -> None:
        call = asyncio.ensure_future(waits_forever.options(timeout=30)())
        await asyncio.sleep(0)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    run(main())
    assert CLEANED_UP == ["waits_forever"]
