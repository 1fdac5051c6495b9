"""The generic job handler: wire format, class instance reuse, and structured errors."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import json
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flash.runtime
from flash.runtime import generic_handler
from flash.runtime.generic_handler import ManifestError, create_handler, load_manifest
from flash.runtime.protocol import ERROR_CATEGORIES, PROTOCOL_VERSION
from flash.runtime.serialization import deserialize, serialize

# ---------------------------------------------------------------- user code


@dataclass
class Point:
    x: float
    y: float


def add(a: int, b: int = 0) -> int:
    return a + b


def shift(point: Point, dx: float) -> Point:
    return Point(point.x + dx, point.y)


async def slow_double(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


def fail_with_value_error(text: str) -> None:
    raise ValueError(f"bad input: {text}")


def fail_with_type_error_inside() -> int:
    return None + 1  # type: ignore[operator]


def exit_worker() -> None:
    sys.exit(3)


def interrupt() -> None:
    raise KeyboardInterrupt


def return_lock() -> threading.Lock:
    return threading.Lock()


def current_thread_id() -> int:
    return threading.get_ident()


async def async_thread_id() -> int:
    return threading.get_ident()


def count_up(n: int) -> Iterator[int]:
    yield from range(n)


async def count_up_async(n: int) -> Any:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


class Counter:
    constructed: list[tuple[Any, ...]] = []

    def __init__(self, start: int = 0, *, step: int = 1) -> None:
        Counter.constructed.append((start, step))
        self.value = start
        self.step = step

    def increment(self) -> int:
        self.value += self.step
        return self.value

    async def increment_later(self, times: int) -> int:
        for _ in range(times):
            await asyncio.sleep(0)
            self.value += self.step
        return self.value

    def __call__(self, extra: int) -> int:
        return self.value + extra

    def _secret(self) -> str:
        return "hidden"


class Flaky:
    """Its constructor fails until ``allow`` is set: models a model load that can fail."""

    allow = False
    constructed = 0

    def __init__(self) -> None:
        if not Flaky.allow:
            raise RuntimeError("GPU not ready")
        Flaky.constructed += 1

    def ping(self) -> str:
        return "pong"


class FakeRemote:
    """Stands in for an ``@remote`` wrapper: calling it would go over the network."""

    __flash_remote__ = True

    def __init__(self, wrapped: Any) -> None:
        self.__wrapped__ = wrapped

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the handler must call the wrapped function, not the wrapper")


def make_registry() -> dict[str, Any]:
    offset = 100

    def plus_offset(v: int) -> int:
        return v + offset

    return {
        "add": add,
        "shift": shift,
        "slow_double": slow_double,
        "fail_with_value_error": fail_with_value_error,
        "fail_with_type_error_inside": fail_with_type_error_inside,
        "exit_worker": exit_worker,
        "interrupt": interrupt,
        "return_lock": return_lock,
        "current_thread_id": current_thread_id,
        "async_thread_id": async_thread_id,
        "count_up": count_up,
        "count_up_async": count_up_async,
        "square": lambda v: v * v,
        "plus_offset": plus_offset,
        "wrapped_add": FakeRemote(add),
        "Counter": Counter,
        "WrappedCounter": FakeRemote(Counter),
        "Flaky": Flaky,
        "len": len,
    }


# ---------------------------------------------------------------- helpers


def fn_job(name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {
        "id": "job-1",
        "input": {
            "function_name": name,
            "execution_type": "function",
            "args": [serialize(a) for a in args],
            "kwargs": {k: serialize(v) for k, v in kwargs.items()},
        },
    }


def class_job(
    name: str,
    method: str | None = None,
    ctor_args: tuple[Any, ...] = (),
    ctor_kwargs: dict[str, Any] | None = None,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "function_name": name,
        "execution_type": "class",
        "args": [serialize(a) for a in ctor_args],
        "kwargs": {k: serialize(v) for k, v in (ctor_kwargs or {}).items()},
        "method_args": [serialize(a) for a in args],
        "method_kwargs": {k: serialize(v) for k, v in (kwargs or {}).items()},
    }
    if method is not None:
        payload["method_name"] = method
    return {"id": "job-2", "input": payload}


def answers(handler: Any, job: Any) -> list[dict[str, Any]]:
    """Every answer a handler gives to ``job``: one, or one per streamed item."""

    async def collect() -> list[dict[str, Any]]:
        if inspect.isasyncgenfunction(handler):
            return [answer async for answer in handler(job)]
        return [await handler(job)]

    responses = [unpack_streamed_failure(r) for r in asyncio.run(collect())]
    for response in responses:
        json.dumps(response)  # RunPod sends it back as JSON
        assert response["protocol_version"] == PROTOCOL_VERSION
    return responses


def unpack_streamed_failure(answer: dict[str, Any]) -> dict[str, Any]:
    """A streaming handler sends a failure as JSON text under "error" (all the worker loop
    keeps of a failed item) and numbers it: read it back as the plain answer."""
    if set(answer) != {"error"}:
        return answer
    inner = json.loads(answer["error"])
    assert isinstance(inner.pop("item"), int)
    return dict(inner)


def run(handler: Any, job: Any) -> dict[str, Any]:
    (response,) = answers(handler, job)
    return response


def result_of(response: dict[str, Any]) -> Any:
    assert response["success"] is True, response
    assert set(response) == {"success", "result", "protocol_version"}
    return deserialize(response["result"])


def assert_error(response: dict[str, Any], error_type: str, *fragments: str) -> None:
    assert response["success"] is False, response
    required = {"success", "error", "error_type", "traceback", "protocol_version"}
    # A user exception also travels pickled, when it can, so the caller can re-raise it.
    assert required <= set(response) <= required | {"exception"}
    if "exception" in response:
        assert type(deserialize(response["exception"])).__name__ == error_type
    assert response["error_type"] == error_type, response
    assert isinstance(response["traceback"], str)
    for fragment in fragments:
        assert fragment in response["error"], (fragment, response["error"])


@pytest.fixture(autouse=True)
def _unsigned_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests are about the wire format; signing has its own tests.
    monkeypatch.delenv("FLASH_SIGNING_KEY", raising=False)
    monkeypatch.setenv("FLASH_ALLOW_UNSIGNED", "1")


@pytest.fixture(autouse=True)
def _reset_class_state() -> None:
    Counter.constructed = []
    Flaky.allow = False
    Flaky.constructed = 0


@pytest.fixture
def handler() -> Any:
    return create_handler(make_registry())


# ---------------------------------------------------------------- functions


def test_sync_function_with_args_and_kwargs(handler: Any) -> None:
    assert result_of(run(handler, fn_job("add", 2, b=3))) == 5
    assert result_of(run(handler, fn_job("add", 7))) == 7


def test_execution_type_defaults_to_function(handler: Any) -> None:
    job = fn_job("add", 1, 2)
    del job["input"]["execution_type"]
    del job["input"]["kwargs"]
    assert result_of(run(handler, job)) == 3


def test_null_fields_mean_their_defaults(handler: Any) -> None:
    job = fn_job("add", 1, 2)
    job["input"].update(execution_type=None, kwargs=None, protocol_version=None)
    assert result_of(run(handler, job)) == 3
    job = class_job("Counter", None, args=(1,))
    job["input"].update(method_name=None, args=None, kwargs=None, method_kwargs=None)
    assert result_of(run(handler, job)) == 1


def test_async_function_is_awaited(handler: Any) -> None:
    assert result_of(run(handler, fn_job("slow_double", 21))) == 42


def test_custom_class_arguments_and_results_round_trip(handler: Any) -> None:
    assert result_of(run(handler, fn_job("shift", Point(1.0, 2.0), dx=0.5))) == Point(1.5, 2.0)


def test_lambda_and_closure_in_the_registry(handler: Any) -> None:
    assert result_of(run(handler, fn_job("square", 9))) == 81
    assert result_of(run(handler, fn_job("plus_offset", 1))) == 101


def test_remote_wrappers_are_unwrapped(handler: Any) -> None:
    assert result_of(run(handler, fn_job("wrapped_add", 4, 5))) == 9
    assert result_of(run(handler, class_job("WrappedCounter", "increment", (10,)))) == 11


def test_builtin_function_in_the_registry(handler: Any) -> None:
    assert result_of(run(handler, fn_job("len", [1, 2, 3]))) == 3


def test_a_function_pickled_by_value_can_be_an_argument(handler: Any) -> None:
    # The client ships a callable that exists only in the caller's process.
    factor = 3
    scale: Any = lambda v: v * factor  # noqa: E731
    job = fn_job("len", [scale(1), scale(2)])
    assert result_of(run(handler, job)) == 2
    echo = create_handler({"apply": lambda f, v: f(v)})
    assert result_of(run(echo, fn_job("apply", scale, 5))) == 15


def test_generators_stream_one_answer_per_item(handler: Any) -> None:
    assert inspect.isasyncgenfunction(handler)  # the worker loop streams its items
    assert [result_of(a) for a in answers(handler, fn_job("count_up", 4))] == [0, 1, 2, 3]
    assert [result_of(a) for a in answers(handler, fn_job("count_up_async", 3))] == [0, 1, 2]


def test_endpoint_without_generators_gets_a_plain_coroutine_handler() -> None:
    plain = create_handler({"add": add})
    assert inspect.iscoroutinefunction(plain)
    assert result_of(run(plain, fn_job("add", 1, 2))) == 3


def test_generator_failing_midway_streams_items_then_the_error() -> None:
    def broken(n: int) -> Iterator[int]:
        yield 1
        raise ValueError(f"stopped at {n}")

    responses = answers(create_handler({"broken": broken}), fn_job("broken", 7))
    assert result_of(responses[0]) == 1
    assert responses[1]["error_type"] == "ValueError"
    assert "stopped at 7" in responses[1]["error"]


def test_a_stream_closed_early_runs_the_generators_cleanup_at_once() -> None:
    # As when a job is cancelled mid-stream: the worker loop closes the handler's stream.
    cleaned: list[str] = []

    async def ticks(n: int) -> Any:
        try:
            for i in range(n):
                yield i
        finally:
            cleaned.append("async")

    def sync_ticks(n: int) -> Iterator[int]:
        try:
            yield from range(n)
        finally:
            cleaned.append("sync")

    async def take_two_then_close(name: str, cleanup: str) -> list[Any]:
        stream = create_handler({"ticks": ticks, "sync_ticks": sync_ticks})(fn_job(name, 100))
        got = [result_of(await stream.__anext__()) for _ in range(2)]
        await stream.aclose()  # no "async generator ignored GeneratorExit"
        # Cleaned up by now, in this task: not later by the loop, in a task of its own.
        assert cleaned[-1:] == [cleanup]
        return got

    assert asyncio.run(take_two_then_close("ticks", "async")) == [0, 1]
    assert asyncio.run(take_two_then_close("sync_ticks", "sync")) == [0, 1]
    assert cleaned == ["async", "sync"]


def test_sync_functions_run_on_the_event_loop_thread_by_default(handler: Any) -> None:
    # asyncio.run drives the loop on this thread: no thread hop per call.
    assert result_of(run(handler, fn_job("current_thread_id"))) == threading.get_ident()


def test_run_sync_in_thread_moves_sync_calls_off_the_loop() -> None:
    threaded = create_handler(make_registry(), run_sync_in_thread=True)
    here = threading.get_ident()
    assert result_of(run(threaded, fn_job("current_thread_id"))) != here
    assert result_of(run(threaded, fn_job("async_thread_id"))) == here
    assert result_of(run(threaded, fn_job("add", 1, 2))) == 3
    assert [result_of(a) for a in answers(threaded, fn_job("count_up", 3))] == [0, 1, 2]
    assert result_of(run(threaded, class_job("Counter", "increment", (1,)))) == 2


# ---------------------------------------------------------------- classes


def test_class_is_constructed_once_and_reused(handler: Any) -> None:
    assert result_of(run(handler, class_job("Counter", "increment", (10,)))) == 11
    assert result_of(run(handler, class_job("Counter", "increment", (10,)))) == 12
    assert result_of(run(handler, class_job("Counter", "increment", (10,)))) == 13
    assert Counter.constructed == [(10, 1)]


def test_distinct_constructor_arguments_get_distinct_instances(handler: Any) -> None:
    assert result_of(run(handler, class_job("Counter", "increment", (0,)))) == 1
    assert result_of(run(handler, class_job("Counter", "increment", (100,)))) == 101
    assert result_of(run(handler, class_job("Counter", "increment", (0,), {"step": 5}))) == 5
    assert result_of(run(handler, class_job("Counter", "increment", (0,)))) == 2
    assert Counter.constructed == [(0, 1), (100, 1), (0, 5)]


def test_keyword_order_does_not_create_a_second_instance(handler: Any) -> None:
    first = class_job("Counter", "increment", ctor_kwargs={"start": 1, "step": 2})
    second = class_job("Counter", "increment", ctor_kwargs={"step": 2, "start": 1})
    assert result_of(run(handler, first)) == 3
    assert result_of(run(handler, second)) == 5
    assert len(Counter.constructed) == 1


def test_instances_are_per_handler_not_global() -> None:
    one, two = create_handler(make_registry()), create_handler(make_registry())
    assert result_of(run(one, class_job("Counter", "increment"))) == 1
    assert result_of(run(two, class_job("Counter", "increment"))) == 1
    assert len(Counter.constructed) == 2


def test_async_method_is_awaited(handler: Any) -> None:
    job = class_job("Counter", "increment_later", (0,), {"step": 2}, args=(3,))
    assert result_of(run(handler, job)) == 6


def test_method_name_defaults_to_call(handler: Any) -> None:
    assert result_of(run(handler, class_job("Counter", None, (5,), args=(1,)))) == 6


class Base:
    def greet(self) -> str:
        return "base"

    def shadowed(self) -> str:
        return "base"


class Child(Base):
    shadowed = None  # type: ignore[assignment]

    @staticmethod
    def static_sum(a: int, b: int) -> int:
        return a + b

    @classmethod
    def class_name(cls) -> str:
        return cls.__name__


def test_inherited_static_and_class_methods_are_callable() -> None:
    handler = create_handler({"Child": Child})
    assert result_of(run(handler, class_job("Child", "greet"))) == "base"
    assert result_of(run(handler, class_job("Child", "static_sum", args=(2, 3)))) == 5
    assert result_of(run(handler, class_job("Child", "class_name"))) == "Child"


@pytest.mark.parametrize("method", [None, "mro", "shadowed"])
def test_attributes_that_are_not_methods_of_instances_are_unknown(method: str | None) -> None:
    # Every class object has type.__call__ and type.mro; instances of Child do not.
    handler = create_handler({"Child": Child})
    response = run(handler, class_job("Child", method))
    assert_error(
        response,
        "UnknownMethod",
        f"'Child' has no method {method or '__call__'!r}",
        "available: class_name, greet, static_sum",
    )


def test_failing_constructor_is_not_cached(handler: Any) -> None:
    response = run(handler, class_job("Flaky", "ping"))
    assert_error(response, "RuntimeError", "constructor of 'Flaky'", "GPU not ready")
    assert "in __init__" in response["traceback"]
    assert 'raise RuntimeError("GPU not ready")' in response["traceback"]
    Flaky.allow = True
    assert result_of(run(handler, class_job("Flaky", "ping"))) == "pong"
    assert result_of(run(handler, class_job("Flaky", "ping"))) == "pong"
    assert Flaky.constructed == 1


def test_concurrent_first_calls_construct_once() -> None:
    started, release = threading.Event(), threading.Event()
    constructions: list[int] = []

    class SlowModel:
        def __init__(self) -> None:
            constructions.append(1)
            started.set()
            release.wait(timeout=30)

        def predict(self, v: int) -> int:
            return v + 1

    threaded = create_handler({"SlowModel": SlowModel}, run_sync_in_thread=True)

    async def main() -> list[dict[str, Any]]:
        jobs = [
            asyncio.ensure_future(threaded(class_job("SlowModel", "predict", args=(i,))))
            for i in range(3)
        ]
        # All three jobs take their first step (the cache lookup) in the loop iteration
        # that starts the first constructor, so by now each has either waited for it or
        # started its own construction.
        await asyncio.to_thread(started.wait, 30)
        release.set()
        return await asyncio.gather(*jobs)

    responses = asyncio.run(main())
    assert [result_of(r) for r in responses] == [1, 2, 3]
    assert constructions == [1]


# ---------------------------------------------------------------- errors


def raw_job(**payload: Any) -> dict[str, Any]:
    return {"id": "job-x", "input": payload}


BAD_PICKLE = base64.b64encode(b"not a pickle at all").decode()
MISSING_MODULE = base64.b64encode(b"cno_such_module_for_flash\nThing\n.").decode()

ERROR_CASES: list[tuple[str, Any, str, tuple[str, ...]]] = [
    ("job is not a dict", ["add"], "InvalidJob", ("a job must be a JSON object", "list")),
    ("job is None", None, "InvalidJob", ("NoneType",)),
    ("input missing", {"id": "1"}, "InvalidJob", ("'input' must be a JSON object",)),
    ("input not a dict", {"input": "add"}, "InvalidJob", ("'input'", "str")),
    ("no function_name", raw_job(), "InvalidJob", ("'function_name'", "a JSON job is")),
    ("empty function_name", raw_job(function_name=""), "InvalidJob", ("non-empty string",)),
    ("non-str function_name", raw_job(function_name=3), "InvalidJob", ("got 3",)),
    (
        "unknown function",
        raw_job(function_name="nope"),
        "UnknownFunction",
        ("'nope'", "available: Counter, Flaky, WrappedCounter, add, async_thread_id"),
    ),
    (
        "unknown execution_type",
        raw_job(function_name="add", execution_type="method"),
        "InvalidJob",
        ("'execution_type' must be 'function' or 'class'", "'method'"),
    ),
    (
        "class called as a function",
        raw_job(function_name="Counter"),
        "ExecutionTypeMismatch",
        ("'Counter' is a class", "execution_type 'class'"),
    ),
    (
        "function called as a class",
        raw_job(function_name="add", execution_type="class", method_name="add"),
        "ExecutionTypeMismatch",
        ("'add' is a function, not a class",),
    ),
    (
        "unknown method",
        raw_job(function_name="Counter", execution_type="class", method_name="reset"),
        "UnknownMethod",
        ("'Counter' has no method 'reset'", "available: __call__, increment, increment_later"),
    ),
    (
        "private method",
        raw_job(function_name="Counter", execution_type="class", method_name="_secret"),
        "UnknownMethod",
        ("'_secret'", "private"),
    ),
    (
        "dunder method",
        raw_job(function_name="Counter", execution_type="class", method_name="__init__"),
        "UnknownMethod",
        ("private",),
    ),
    (
        "non-str method_name",
        raw_job(function_name="Counter", execution_type="class", method_name=["increment"]),
        "InvalidJob",
        ("'method_name' must be a non-empty string",),
    ),
    (
        "args not a list",
        raw_job(function_name="add", args={"a": serialize(1)}),
        "InvalidJob",
        ("'args' must be a list", "dict"),
    ),
    (
        "kwargs not a dict",
        raw_job(function_name="add", kwargs=[serialize(1)]),
        "InvalidJob",
        ("'kwargs' must be an object", "list"),
    ),
    (
        "arg not a string",
        raw_job(function_name="add", args=[serialize(1), 2]),
        "InvalidJob",
        ("args[1] must be a base64 string", "int"),
    ),
    (
        "kwarg not a string",
        raw_job(function_name="add", args=[serialize(1)], kwargs={"b": None}),
        "InvalidJob",
        ("kwargs['b'] must be a base64 string",),
    ),
    (
        "bad base64",
        raw_job(function_name="add", args=["%%% not base64"]),
        "ArgumentDecodeError",
        ("arguments for 'add'", "args[0]", "not valid base64"),
    ),
    (
        "payload that fails to unpickle",
        raw_job(function_name="add", kwargs={"b": BAD_PICKLE}, args=[serialize(1)]),
        "ArgumentDecodeError",
        ("kwargs['b']", "failed to unpickle"),
    ),
    (
        "payload of a module the worker lacks",
        raw_job(function_name="add", args=[MISSING_MODULE]),
        "ArgumentDecodeError",
        ("No module named 'no_such_module_for_flash'",),
    ),
    (
        "bad method payload",
        raw_job(
            function_name="Counter",
            execution_type="class",
            method_name="increment",
            method_args=["???"],
        ),
        "ArgumentDecodeError",
        ("'Counter.increment'", "method_args[0]"),
    ),
    (
        "bad constructor payload",
        raw_job(
            function_name="Counter",
            execution_type="class",
            method_name="increment",
            args=[BAD_PICKLE],
        ),
        "ArgumentDecodeError",
        ("constructor of 'Counter'", "args[0]"),
    ),
    (
        "missing argument",
        fn_job("add"),
        "InvalidArguments",
        ("wrong arguments for 'add'", "missing 1 required positional argument: 'a'"),
    ),
    (
        "unexpected keyword",
        fn_job("add", 1, c=2),
        "InvalidArguments",
        ("wrong arguments for 'add'", "'c'"),
    ),
    ("too many arguments", fn_job("add", 1, 2, 3), "InvalidArguments", ("'add'",)),
    (
        "wrong arguments for an async function",
        fn_job("slow_double"),
        "InvalidArguments",
        ("'slow_double'",),
    ),
    (
        "wrong constructor arguments",
        class_job("Counter", "increment", (1, 2)),
        "InvalidArguments",
        ("constructor of 'Counter'",),
    ),
    (
        "wrong method arguments",
        class_job("Counter", "increment", args=(1,)),
        "InvalidArguments",
        ("'Counter.increment'",),
    ),
    (
        "exception in user code",
        fn_job("fail_with_value_error", "xyz"),
        "ValueError",
        ("'fail_with_value_error' raised ValueError: bad input: xyz",),
    ),
    (
        "TypeError from the body, not from binding",
        fn_job("fail_with_type_error_inside"),
        "TypeError",
        ("'fail_with_type_error_inside' raised TypeError", "NoneType"),
    ),
    (
        "TypeError from a builtin body",
        fn_job("len", 5),
        "TypeError",
        ("'len' raised TypeError",),
    ),
    ("SystemExit", fn_job("exit_worker"), "SystemExit", ("'exit_worker' raised SystemExit: 3",)),
    ("KeyboardInterrupt", fn_job("interrupt"), "KeyboardInterrupt", ("'interrupt'",)),
    (
        "unpicklable result",
        fn_job("return_lock"),
        "ResultNotPicklable",
        ("result of 'return_lock' cannot be pickled", "lock"),
    ),
    (
        "protocol from the future",
        raw_job(function_name="add", protocol_version=2),
        "UnsupportedProtocol",
        ("protocol_version 2 is not supported", "speaks protocol version 1", "redeploy"),
    ),
    (
        "protocol zero",
        raw_job(function_name="add", protocol_version=0),
        "UnsupportedProtocol",
        ("protocol_version 0",),
    ),
    (
        "protocol not an int",
        raw_job(function_name="add", protocol_version="1"),
        "InvalidJob",
        ("'protocol_version' must be an integer", "'1'"),
    ),
    (
        "protocol a bool",
        raw_job(function_name="add", protocol_version=True),
        "InvalidJob",
        ("'protocol_version' must be an integer",),
    ),
]


@pytest.mark.parametrize("threaded", [False, True], ids=["inline", "threaded"])
@pytest.mark.parametrize(
    ("job", "error_type", "fragments"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_failures_are_structured_and_the_next_job_still_works(
    job: Any, error_type: str, fragments: tuple[str, ...], threaded: bool
) -> None:
    handler = create_handler(make_registry(), run_sync_in_thread=threaded)
    assert_error(run(handler, job), error_type, *fragments)
    assert result_of(run(handler, fn_job("add", 1, 2))) == 3
    assert result_of(run(handler, class_job("Counter", "increment", (1,)))) == 2


def test_error_categories_are_exported() -> None:
    categories = {case[2] for case in ERROR_CASES} - {
        "ValueError",
        "TypeError",
        "SystemExit",
        "KeyboardInterrupt",
    }
    assert categories <= ERROR_CATEGORIES


def test_user_traceback_shows_user_code_not_the_handler(handler: Any) -> None:
    response = run(handler, fn_job("fail_with_value_error", "abc"))
    tb = response["traceback"]
    assert tb.startswith("Traceback (most recent call last):")
    assert "fail_with_value_error" in tb
    assert 'raise ValueError(f"bad input: {text}")' in tb
    assert tb.rstrip().endswith("ValueError: bad input: abc")
    assert generic_handler.__file__ not in tb
    assert "asyncio" not in tb


def test_user_traceback_in_thread_mode_skips_the_thread_machinery() -> None:
    threaded = create_handler(make_registry(), run_sync_in_thread=True)
    tb = run(threaded, fn_job("fail_with_value_error", "abc"))["traceback"]
    assert tb.splitlines()[1].strip().startswith('File "')
    assert "test_generic_handler.py" in tb.splitlines()[1]
    assert "concurrent" not in tb and generic_handler.__file__ not in tb


def test_missing_module_error_carries_the_import_traceback(handler: Any) -> None:
    response = run(handler, raw_job(function_name="add", args=[MISSING_MODULE]))
    assert "ModuleNotFoundError" in response["traceback"]


def test_user_exception_with_broken_str_is_still_reported(handler: Any) -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    def raise_weird() -> None:
        raise Weird

    weird = create_handler({"raise_weird": raise_weird})
    response = run(weird, fn_job("raise_weird"))
    assert_error(response, "Weird", "'raise_weird' raised Weird", "unprintable")


def gives_up() -> None:
    raise asyncio.CancelledError("gave up")


async def gives_up_async() -> None:
    await asyncio.sleep(0)
    raise asyncio.CancelledError("gave up")


def gives_up_midway() -> Iterator[int]:
    yield 1
    raise asyncio.CancelledError("gave up")


async def gives_up_midway_async() -> Any:
    yield 1
    await asyncio.sleep(0)
    raise asyncio.CancelledError("gave up")


GIVING_UP = {
    "gives_up": gives_up,
    "gives_up_async": gives_up_async,
    "gives_up_midway": gives_up_midway,
    "gives_up_midway_async": gives_up_midway_async,
}


@pytest.mark.parametrize("in_thread", [False, True])
@pytest.mark.parametrize("without_cancelling", [False, True])
def test_user_code_raising_cancelled_error_fails_the_job(
    in_thread: bool, without_cancelling: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nobody cancelled the job: the CancelledError is the function's own answer, and the
    # caller must get it, not wait for a job that never ends.
    if without_cancelling:  # as on Python 3.10, whose tasks have no cancelling()
        monkeypatch.setattr(generic_handler, "_HAS_CANCELLING", False, raising=False)
    handler = create_handler(GIVING_UP, run_sync_in_thread=in_thread)
    for name in ("gives_up", "gives_up_async"):
        assert_error(run(handler, fn_job(name)), "CancelledError", f"'{name}' raised", "gave up")
        mapped = run(handler, raw_job(function_name=name, execution_type="map", items=[{}, {}]))
        assert [r["error_type"] for r in mapped["results"]] == ["CancelledError"] * 2
    # Python 3.10 cannot tell within an async generator (Flash's worker loop still fails
    # such a job: it knows it did not stop it).
    midway = ["gives_up_midway"] + ([] if without_cancelling else ["gives_up_midway_async"])
    for name in midway:
        first, failure = answers(handler, fn_job(name))
        assert result_of(first) == 1
        assert_error(failure, "CancelledError", "gave up")


@pytest.mark.parametrize("without_cancelling", [False, True])
def test_a_real_cancellation_still_propagates(
    without_cancelling: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if without_cancelling:
        monkeypatch.setattr(generic_handler, "_HAS_CANCELLING", False, raising=False)
    entered = asyncio.Event()
    cleaned: list[str] = []

    async def wait_forever() -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append("done")

    cancellable = create_handler({"wait_forever": wait_forever})

    async def main() -> None:
        task = asyncio.ensure_future(cancellable(fn_job("wait_forever")))
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert cleaned == ["done"]


def test_registry_keys_must_be_strings() -> None:
    with pytest.raises(TypeError, match="registry keys must be str"):
        create_handler({1: add})  # type: ignore[dict-item]


def test_empty_registry_says_so(handler: Any) -> None:
    empty = create_handler({})
    assert_error(run(empty, fn_job("add")), "UnknownFunction", "available: (none)")


# ---------------------------------------------------------------- fuzzing

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
payload_strings = st.sampled_from(
    [serialize(1), serialize(2), serialize("x"), serialize(Point(0, 0)), BAD_PICKLE, "%%"]
)
arg_lists = st.lists(payload_strings, max_size=3)
kwarg_dicts = st.dictionaries(
    st.sampled_from(["a", "b", "dx", "step", "start", "n"]), payload_strings, max_size=2
)


def job_inputs(junk: Any) -> Any:
    """Input dicts whose fields are well typed, or also anything from ``junk``."""
    return st.tuples(
        st.fixed_dictionaries(
            {"function_name": st.sampled_from(sorted(make_registry())) | junk},
            optional={
                "execution_type": st.sampled_from(["function", "class"]) | junk,
                "args": arg_lists | junk,
                "kwargs": kwarg_dicts | junk,
                "method_name": st.sampled_from(
                    ["increment", "increment_later", "__call__", "_secret", "nope"]
                )
                | junk,
                "method_args": arg_lists | junk,
                "method_kwargs": kwarg_dicts | junk,
                "protocol_version": st.sampled_from([1, 2]) | junk,
            },
        ),
        st.dictionaries(st.text(max_size=5), junk, max_size=2),
    ).map(lambda pair: {**pair[1], **pair[0]})


# Well-typed inputs reach the calls; the others exercise the validation.
jobs = st.one_of(
    json_values,
    st.fixed_dictionaries({"id": st.text(max_size=5), "input": job_inputs(st.nothing())}),
    st.fixed_dictionaries({"id": st.text(max_size=5), "input": job_inputs(json_values)}),
    st.fixed_dictionaries({"input": json_values}),
)


@settings(max_examples=300, deadline=None)
@given(job=jobs)
def test_arbitrary_jobs_never_make_the_handler_raise(job: Any) -> None:
    for response in answers(create_handler(make_registry()), job):
        assert isinstance(response["success"], bool)
        if response["success"]:
            deserialize(response["result"])
        else:
            assert isinstance(response["error"], str) and response["error"]
            assert isinstance(response["error_type"], str) and response["error_type"]
            assert isinstance(response["traceback"], str)


# ---------------------------------------------------------------- manifest


def write_manifest(directory: Path, content: str) -> Path:
    path = directory / "flash_manifest.json"
    path.write_text(content, encoding="utf-8")
    return path


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No manifest anywhere load_manifest looks unless a test writes one."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.delenv("FLASH_MANIFEST_PATH", raising=False)
    monkeypatch.chdir(empty)
    monkeypatch.setattr(sys, "path", [str(empty), *sys.path[1:]])
    return tmp_path


def test_manifest_from_an_explicit_file_or_directory(isolated: Path) -> None:
    path = write_manifest(isolated, '{"version": 1, "resources": {}}')
    assert load_manifest(path) == {"version": 1, "resources": {}}
    assert load_manifest(str(isolated)) == {"version": 1, "resources": {}}


def test_manifest_from_the_environment(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_manifest(isolated, '{"from": "env"}')
    monkeypatch.setenv("FLASH_MANIFEST_PATH", str(path))
    assert load_manifest() == {"from": "env"}
    monkeypatch.setenv("FLASH_MANIFEST_PATH", str(isolated))
    assert load_manifest() == {"from": "env"}


def test_manifest_from_the_working_directory(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_manifest(isolated, '{"from": "cwd"}')
    monkeypatch.chdir(isolated)
    assert load_manifest() == {"from": "cwd"}


def test_manifest_next_to_the_running_handler(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = isolated / "app"
    app.mkdir()
    write_manifest(app, '{"from": "handler dir"}')
    monkeypatch.setattr(sys, "path", [str(app), *sys.path[1:]])
    assert load_manifest() == {"from": "handler dir"}


def test_absent_manifest_is_none(isolated: Path) -> None:
    assert load_manifest() is None
    assert load_manifest(isolated / "missing.json") is None


def test_invalid_manifest_json_is_a_clear_error(isolated: Path) -> None:
    path = write_manifest(isolated, '{\n  "version": 1,\n  oops\n}')
    with pytest.raises(ManifestError, match=r"flash_manifest\.json:3:3: .*not valid JSON"):
        load_manifest(path)


def test_manifest_must_be_an_object(isolated: Path) -> None:
    path = write_manifest(isolated, "[1, 2]")
    with pytest.raises(ManifestError, match="must be a JSON object, got list"):
        load_manifest(path)


# ---------------------------------------------------------------- isolation


def test_runtime_imports_with_only_the_stdlib_and_cloudpickle(tmp_path: Path) -> None:
    site = tmp_path / "site"
    runtime_src = Path(flash.runtime.__file__).parent
    shutil.copytree(
        runtime_src, site / "flash" / "runtime", ignore=shutil.ignore_patterns("__pycache__")
    )
    (site / "flash" / "__init__.py").write_text("")
    shutil.copytree(
        Path(cloudpickle.__file__).parent,
        site / "cloudpickle",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.path.insert(0, {str(site)!r})
        from flash.runtime.generic_handler import create_handler
        from flash.runtime.serialization import deserialize, serialize

        def add(a, b):
            return a + b

        handler = create_handler({{"add": add}})
        job = {{"input": {{"function_name": "add", "args": [serialize(2), serialize(3)]}}}}
        response = asyncio.run(handler(job))
        assert deserialize(response["result"]) == 5, response
        import flash.runtime.generic_handler as gh
        assert gh.__file__.startswith({str(site)!r}), gh.__file__
        outside = sorted(
            name for name, mod in sys.modules.items()
            if getattr(mod, "__file__", None) and "site-packages" in mod.__file__
        )
        assert not outside, outside
        print("isolated ok")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-S", "-I", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "isolated ok"


def test_a_cancelled_job_in_a_thread_keeps_its_slot_until_the_thread_returns() -> None:
    # A thread cannot be stopped: the job's task ends only once it has, so the worker goes
    # on listing the job as running (and the platform replaces a worker whose never does).
    from flash.runtime.generic_handler import _in_thread

    release = threading.Event()

    async def scenario() -> None:
        task = asyncio.create_task(_in_thread(release.wait, 30))
        for _ in range(5):
            await asyncio.sleep(0)  # the thread has started
        task.cancel()
        for _ in range(20):
            await asyncio.sleep(0)  # turns of the loop: a plain to_thread ends here
        assert not task.done()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_stop_iteration_raised_in_a_thread_fails_the_call_instead_of_hanging_it() -> None:
    # asyncio refuses to put a StopIteration into a future: the job used to hang for good.
    from flash.runtime.generic_handler import _invoke, _UserCodeError

    def empty() -> Any:
        return next(iter([]))

    async def call() -> Any:
        return await asyncio.wait_for(_invoke(empty, [], {}, "'empty'", in_thread=True), 30)

    with pytest.raises(_UserCodeError) as info:
        asyncio.run(call())
    # It fails the call as itself, as it does on the event loop's thread.
    assert type(info.value.exc) is StopIteration


def test_a_sync_generator_in_a_thread_keeps_one_thread_and_one_context() -> None:
    # State kept across yields: a contextvar set and reset, and the thread itself (as
    # torch.inference_mode() is per thread); closing it early runs its finally there too.
    import contextvars

    from flash.runtime.generic_handler import _iterate

    mode: contextvars.ContextVar[str] = contextvars.ContextVar("mode", default="none")
    seen: list[tuple[int, str]] = []

    def items() -> Any:
        token = mode.set("inference")
        try:
            for i in range(3):
                seen.append((threading.get_ident(), mode.get()))
                yield i
        finally:
            seen.append((threading.get_ident(), mode.get()))
            mode.reset(token)  # raises ValueError in another context

    async def first_two() -> list[int]:
        got = []
        async with contextlib.aclosing(_iterate(items(), "'items'", in_thread=True)) as it:
            async for item in it:
                got.append(item)
                if len(got) == 2:
                    break
        return got

    assert asyncio.run(first_two()) == [0, 1]
    assert len(seen) == 3 and len(set(seen)) == 1  # two items and the close
    assert seen[0][0] != threading.get_ident() and seen[0][1] == "inference"


# ---------------------------------------------------------------- src layout names


def test_a_src_prefixed_name_finds_the_function_registered_without_it() -> None:
    # In a src layout (src/ without __init__.py) a client may have imported the module as
    # src.models.train while the build registered models.train: either name reaches it.
    served = create_handler({"models.train.add": add, "src.jobs.Counter": Counter})
    assert result_of(run(served, fn_job("src.models.train.add", 2, b=3))) == 5
    assert result_of(run(served, class_job("jobs.Counter", "increment", ctor_args=(1,)))) == 2
    # The exact name still wins.
    both = create_handler({"src.m.f": add, "m.f": lambda a, b=0: a - b})
    assert result_of(run(both, fn_job("src.m.f", 2, b=3))) == 5
    assert result_of(run(both, fn_job("m.f", 2, b=3))) == -1


def test_an_unknown_name_with_or_without_src_still_lists_what_is_there() -> None:
    served = create_handler({"models.train.add": add})
    for name in ("src.models.train.nope", "models.nope", "src.src.models.train.add"):
        assert_error(
            run(served, fn_job(name)),
            "UnknownFunction",
            f"no function or class named {name!r}",
            "available: models.train.add",
        )


def test_a_short_name_two_functions_share_names_both() -> None:
    served = create_handler({"m.big": add, "n.big": add, "m.other": add})
    assert_error(
        run(served, fn_job("big")),
        "UnknownFunction",
        "'big' is the name of 2 functions on this endpoint",
        "qualified name (m.big, n.big)",
    )


@pytest.mark.parametrize(
    "deadline", [10**400, -(10**400), "soon", [1]], ids=["huge", "-huge", "text", "list"]
)
def test_a_context_deadline_no_float_holds_counts_as_absent(handler: Any, deadline: Any) -> None:
    # An integer JSON allows but a float cannot hold (the gateway takes up to 4,300 digits)
    # was an internal worker error (OverflowError) naming the worker's files.
    job = fn_job("add", 2, 3)
    job["input"]["context"] = {"deadline": deadline}
    assert result_of(run(handler, job)) == 5
