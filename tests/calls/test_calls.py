"""`await fn(...)` reaches the right endpoint: from a client, and between endpoints,
through the local platform with real worker processes."""

from __future__ import annotations

import asyncio
import datetime
import importlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.calls.project import write_project
from tests.calls.support import connections_to, inputs_sent, keyless, runsync
from tests.helpers import CreatesFile, Logs, completed_jobs, wait_for

import flash
from flash.platform import LocalPlatform, serve_project
from flash.runtime.client import Endpoints, PlatformInvoker
from flash.runtime.remote import get_invoker, set_invoker
from flash.sdk import InvalidResultError


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    root = write_project(tmp_path_factory.mktemp("calls") / "proj")
    sys.path.insert(0, str(root))
    try:
        with serve_project(root, echo=Logs(), max_workers=8) as served:
            yield served
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m.startswith("callsapp")]:
            del sys.modules[name]


def app_module(name: str) -> Any:
    return importlib.import_module(f"callsapp.{name}")


def test_client_call_chain_a_to_b_to_c(platform: LocalPlatform) -> None:
    chain = app_module("chain")
    result = asyncio.run(chain.top(4))
    assert result == {"value": 51, "path": ["svc-a", "svc-b", "svc-c"]}


def test_same_endpoint_call_runs_in_process_without_a_job(platform: LocalPlatform) -> None:
    chain = app_module("chain")
    before = completed_jobs(platform.url, "svc-a")
    value, _pid = asyncio.run(chain.uses_helper(1))
    assert value == 2
    # One job: uses_helper's; the helper it calls ran inline.
    assert completed_jobs(platform.url, "svc-a") == before + 1


def test_class_state_is_kept_across_calls(platform: LocalPlatform) -> None:
    model = app_module("model")

    async def main() -> list[int]:
        tally = model.Tally(100)
        return [await tally.add(1), await tally.add(2), await tally.get()]

    assert asyncio.run(main()) == [101, 103, 103]


def test_a_callable_class_is_called_through_its_handle(platform: LocalPlatform) -> None:
    model = app_module("model")

    async def twice() -> list[list[int]]:
        handle = model.Doubler(3)
        return [await handle(2), await handle.__call__(5)]

    first, second = asyncio.run(twice())
    assert first[0] == 6 and second[0] == 15 and first[1] == second[1]  # one instance
    with pytest.raises(TypeError, match="Tally instances are not callable"):
        model.Tally(1)(2)


def test_one_handle_reaches_one_instance(platform: LocalPlatform) -> None:
    # A worker keeps JSON-made instances apart from pickle-made ones: a handle's calls all
    # go one way, whether its methods are typed or not, and from another endpoint too
    # (workers have no JSON codecs).
    model = app_module("model")
    chain = app_module("chain")

    async def main() -> list[int]:
        tally = model.Tally(10)
        return [
            await tally.add(5),
            await tally.peek(),
            await chain.add_through(tally, 10),
            await tally.add(1),
            await tally.peek(),
        ]

    assert asyncio.run(main()) == [15, 15, 25, 26, 26]


def test_python_client_calls_typed_classes_with_json_when_asked(platform: LocalPlatform) -> None:
    model = app_module("model")

    async def main() -> list[int]:
        as_json = model.Tally.options(serialization="json")(1000)
        as_pickle = model.Tally(2000)  # the client holds the app's key
        return [await as_json.add(1), await as_pickle.add(1)]

    with inputs_sent(platform) as sent:
        assert asyncio.run(main()) == [1001, 2001]
    inputs = [json.loads(text) for endpoint, text in sent if endpoint == "svc-b"]
    sent_as_json = [i for i in inputs if i.get("init") == {"start": 1000}]
    assert [(i["function"], i["method"], i["kwargs"]) for i in sent_as_json] == [
        ("callsapp.model.Tally", "add", {"x": 1})
    ]
    # No pickle goes; the call is signed all the same, so that its answer comes back signed.
    assert "args" not in sent_as_json[0] and "signature" in sent_as_json[0]
    pickled = [i for i in inputs if i.get("execution_type") == "class"]
    assert pickled and all("signature" in i for i in pickled)


def test_remote_exception_is_raised_with_its_type_and_traceback(platform: LocalPlatform) -> None:
    chain = app_module("chain")
    errors = app_module("errors")
    with pytest.raises(errors.QuotaError, match="monthly quota") as info:
        asyncio.run(chain.fails("quota"))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "Remote traceback" in notes and "chain.py" in notes and "fails" in notes

    with pytest.raises(flash.RemoteExecutionError) as other:
        asyncio.run(chain.fails("local"))
    assert other.value.remote_type == "Unpicklable"
    assert "holds a lock" in str(other.value)
    assert 'raise Unpicklable("holds a lock")' in other.value.remote_traceback


def test_an_exception_whose_init_takes_other_arguments_arrives_as_itself(
    platform: LocalPlatform,
) -> None:
    # OverQuota(user, used): pickle's default form would rebuild it as OverQuota(message).
    chain = app_module("chain")
    errors = app_module("errors")
    tracebacks = ["Remote traceback (endpoint svc-b", "Remote traceback (endpoint svc-a"]
    for hops, call in enumerate((chain.fails, chain.fails_below), start=1):  # a hop up too
        with pytest.raises(errors.OverQuota) as info:
            asyncio.run(call("over"))
        error = info.value
        assert (error.user, error.used) == ("bob", 7)
        assert error.args == ("user bob over quota: 7",) and str(error) == error.args[0]
        assert type(error.__cause__) is LookupError
        assert error.__cause__.args == ("no paid plan for bob",)
        assert error.__notes__[0] == "plan: free"
        assert [n.split(",")[0] for n in error.__notes__[1:]] == tracebacks[:hops]
        assert "raise error from LookupError" in error.__notes__[1]


def test_an_exception_that_cannot_come_back_as_itself_says_why_once(
    platform: LocalPlatform,
) -> None:
    chain = app_module("chain")
    for call in (chain.fails, chain.fails_below):  # a hop up too
        with pytest.raises(flash.RemoteExecutionError) as info:
            asyncio.run(call("lock"))
        error = info.value
        assert error.remote_type == "Unpicklable"
        assert re.match(r"'[\w.]*fails' raised Unpicklable: holds a lock \[", str(error))
        assert str(error).count("Unpicklable") == 1
        assert error.__notes__[0] == (
            "Unpicklable could not be rebuilt here: TypeError: cannot pickle '_thread.lock' object"
        )


def test_a_signed_pickled_call_raises_the_remote_exception_as_its_type(
    platform: LocalPlatform,
) -> None:
    # The worker loop moves the answer's "error" to the job, as RunPod's SDK does; the
    # caller puts it back before checking the signature, or it would lose type and traceback.
    chain = app_module("chain")
    with pytest.raises(ValueError, match="bad item 3") as info:
        asyncio.run(chain.maybe_fail(3))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "Remote traceback" in notes and "maybe_fail" in notes


def test_nested_call_gets_only_the_time_its_caller_has_left(platform: LocalPlatform) -> None:
    chain = app_module("chain")
    started = time.monotonic()
    with pytest.raises(flash.RemoteTimeoutError):
        asyncio.run(chain.calls_sleepy.options(timeout=1.0)(30))
    assert time.monotonic() - started < 10


def test_cancelling_the_caller_cancels_the_running_job(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    chain = app_module("chain")
    marker = tmp_path / "sleepy"

    async def main() -> None:
        task = asyncio.ensure_future(chain.sleepy(60, str(marker)))
        while not Path(f"{marker}.started").exists():
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    wait_for(Path(f"{marker}.cancelled").exists, 20, "the cancelled marker")


def test_map_over_200_items_keeps_order(platform: LocalPlatform) -> None:
    chain = app_module("chain")
    assert asyncio.run(chain.noop.map(range(200), concurrency=32)) == list(range(200))


def test_starmap_spreads_each_tuple_over_the_arguments(platform: LocalPlatform) -> None:
    chain = app_module("chain")
    pairs = [(base, base % 3) for base in range(100)]
    assert asyncio.run(chain.power.starmap(pairs, concurrency=8)) == [b**e for b, e in pairs]
    assert asyncio.run(chain.power.starmap([(3,)], chunk_size=1)) == [9]  # one job per item
    with pytest.raises(flash.MapError) as info:
        asyncio.run(chain.power.starmap([(2, 3), ("x", 2)]))
    assert list(info.value.errors) == [1] and info.value.results[0] == 8


def test_map_and_starmap_pass_the_same_keyword_arguments_to_every_item(
    platform: LocalPlatform,
) -> None:
    chain, model = app_module("chain"), app_module("model")
    assert asyncio.run(chain.power.map([1, 2, 3], kwargs={"exponent": 3})) == [1, 8, 27]
    assert asyncio.run(chain.power.starmap([(2,), (3,)], kwargs={"exponent": 0})) == [1, 1]
    texts = ["great", "great great"]
    labels = asyncio.run(model.Classifier(["great"]).predict.map(texts, kwargs={"threshold": 2}))
    assert [label["label"] for label in labels] == ["neutral", "positive"]
    with pytest.raises(TypeError, match="kwargs"):  # a mapping of names, nothing else
        asyncio.run(chain.power.map([1], kwargs=[("exponent", 3)]))


def test_map_on_an_endpoint_that_streams(platform: LocalPlatform) -> None:
    # svc-c also serves a generator, so its handler streams and signs each answer as an item.
    chain = app_module("chain")
    results = asyncio.run(chain.leaf.map([1, 2, 3, 4], chunk_size=2))
    assert [r["value"] for r in results] == [10, 20, 30, 40]


def test_map_reports_errors_per_item(platform: LocalPlatform) -> None:
    chain = app_module("chain")
    with pytest.raises(flash.MapError) as info:
        asyncio.run(chain.fails.map(["quota", "local"], concurrency=2))
    assert sorted(info.value.errors) == [0, 1]
    results = asyncio.run(chain.fails.map(["quota"], return_exceptions=True))
    assert type(results[0]).__name__ == "QuotaError"


def test_map_sends_items_in_chunks_and_keeps_per_item_errors(platform: LocalPlatform) -> None:
    chain = app_module("chain")
    before = completed_jobs(platform.url, "svc-a")
    results = asyncio.run(chain.maybe_fail.map(range(40), concurrency=2, return_exceptions=True))
    jobs = completed_jobs(platform.url, "svc-a") - before
    assert 1 <= jobs < 40  # batched, not one job per item
    for i, value in enumerate(results):
        if i % 3 == 0:
            assert isinstance(value, ValueError) and str(value) == f"bad item {i}"
        else:
            assert value == i


def test_a_chunk_whose_job_fails_fails_only_its_own_items(platform: LocalPlatform) -> None:
    chain = app_module("chain")
    # The second chunk's items outlive their timeout; the first chunk's results stand.
    results = asyncio.run(
        chain.sleepy.options(timeout=5).map(
            [0, 0, 60, 60], chunk_size=2, concurrency=2, return_exceptions=True
        )
    )
    assert results[:2] == ["woke", "woke"]
    assert all(isinstance(r, flash.RemoteTimeoutError) for r in results[2:]), results
    with pytest.raises(ValueError, match="chunk_size must be at least 1"):
        asyncio.run(chain.noop.map([1, 2, 3], chunk_size=0))


def test_a_client_without_the_key_maps_a_typed_function_with_json(
    platform: LocalPlatform,
) -> None:
    # Another app's client: no signing key, so typed calls, mapped ones too, go as JSON.
    chain = app_module("chain")
    previous = set_invoker(PlatformInvoker(Endpoints(platform.url, platform.api_key)))
    try:
        assert asyncio.run(chain.helper.map(range(10), chunk_size=4)) == list(range(1, 11))
        forced = chain.helper.options(serialization="json")
        assert asyncio.run(forced.starmap([(1,), (2,)])) == [2, 3]
        # An Any argument too: JSON is all this caller can send (a tuple arrives as a list).
        assert asyncio.run(chain.kind((1, 2))) == "list"
        assert asyncio.run(chain.kind.map([(1,), "a"])) == ["list", "str"]
    finally:
        set_invoker(previous)


def test_streaming_items_arrive_as_they_are_produced(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    chain = app_module("chain")
    gate = tmp_path / "gate"

    async def main() -> list[int]:
        seen = []
        async for item in chain.ticks.stream(3, str(gate)):
            seen.append(item)
            gate.write_text("go")  # only now may the generator go on
        return seen

    assert asyncio.run(main()) == [0, 1, 2]
    gate.unlink()
    gate.write_text("go")
    assert asyncio.run(chain.ticks(3, str(gate))) == [0, 1, 2]  # awaited: the whole list


def test_worker_killed_mid_call_is_recovered_by_requeue(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    chain = app_module("chain")
    marker = tmp_path / "crash-marker"
    assert asyncio.run(chain.crash_once(str(marker))) == "recovered after crashed"


def test_call_depth_limit_stops_endpoints_calling_each_other(platform: LocalPlatform) -> None:
    chain = app_module("chain")
    with pytest.raises(flash.CallDepthError, match="nested more than 3 deep"):
        asyncio.run(chain.ping_pong(0))


def test_call_depth_error_crosses_every_hop_as_itself(platform: LocalPlatform) -> None:
    # Ten jobs deep, across two endpoints: each caller on the way raises it again as the
    # CallDepthError the deepest call raised, not wrapped in a RemoteExecutionError per hop.
    chain = app_module("chain")
    with pytest.raises(flash.CallDepthError) as info:
        asyncio.run(chain.deep_ping(0))
    message = str(info.value)
    assert message.startswith("remote calls nested more than 10 deep (")
    assert message.count("nested more than") == 1 and "RemoteExecutionError" not in message
    assert message.endswith("[callsapp.chain.deep_ping on svc-d]")
    assert info.value.remote_type is None and len(message) < 1000


def test_blocking_call_for_sync_code(platform: LocalPlatform) -> None:
    chain = app_module("chain")
    assert chain.helper.call(41) == 42


def test_unreachable_platform_is_endpoint_unavailable(platform: LocalPlatform) -> None:
    chain = app_module("chain")
    previous = get_invoker()
    flash.connect("http://127.0.0.1:9", signing_key=platform.signing_key)  # nothing listens
    try:
        with pytest.raises(flash.EndpointUnavailableError) as info:
            asyncio.run(chain.noop.options(retries=1)(1))
    finally:
        set_invoker(previous)
    message = str(info.value)
    assert "failed after 2 attempts" in message and "cannot connect to 127.0.0.1:9" in message
    assert message.endswith("[callsapp.chain.noop on svc-a]")  # no job, but a call all the same


def test_any_client_can_call_a_typed_function_with_plain_json(platform: LocalPlatform) -> None:
    job = runsync(
        platform, "svc-a", {"input": {"function": "callsapp.chain.helper", "kwargs": {"x": 2}}}
    )
    assert job["status"] == "COMPLETED"
    assert job["output"]["result"] == 3 and job["output"]["encoding"] == "json"

    bad = runsync(platform, "svc-a", {"input": {"function": "helper", "kwargs": {"x": "two"}}})
    assert bad["status"] == "FAILED"
    assert (
        bad["error"]
        == "invalid arguments for 'helper': kwargs.x: expected integer, got string \"two\""
    )
    assert bad["output"]["error_type"] == "InvalidInput"
    assert [issue["path"] for issue in bad["output"]["issues"]] == ["kwargs.x"]

    # An unsigned call's answer carries no pickled exception: no caller could check it.
    raised = runsync(
        platform,
        "svc-b",
        {"input": {"function": "callsapp.chain.fails", "kwargs": {"kind": "quota"}}},
    )
    assert raised["status"] == "FAILED" and raised["output"]["error_type"] == "QuotaError"
    assert "exception" not in raised["output"] and "mac" not in raised["output"]


def test_python_client_picks_json_or_signed_pickle(platform: LocalPlatform) -> None:
    chain = app_module("chain")
    as_json = asyncio.run(chain.leaf(3))
    as_pickle = asyncio.run(chain.leaf.options(serialization="pickle")(3))
    assert as_json == as_pickle == {"value": 30, "endpoint": "svc-c"}
    with pytest.raises(TypeError, match="cannot be called with JSON"):
        asyncio.run(chain.noop.options(serialization="json")(1))


def test_a_number_json_cannot_carry_goes_pickled_or_fails_naming_its_argument(
    platform: LocalPlatform,
) -> None:
    # JSON has no NaN or infinity: the caller holding the key sends such a call of a function
    # pickled; one that cannot, or was told JSON, fails before sending it, naming the
    # argument (the gateway would answer 400 about the request body).
    chain = app_module("chain")

    def pickled_jobs(sent: list[tuple[str, str]], function: str) -> int:
        inputs = [json.loads(text) for _, text in sent]
        return sum(i.get("function_name") == f"callsapp.chain.{function}" for i in inputs)

    with inputs_sent(platform) as sent:
        assert asyncio.run(chain.sleepy(float("-inf"))) == "woke"
        assert pickled_jobs(sent, "sleepy") == 1
        # So does an integer too long to write (JSON text has no room for 5,000 digits); one
        # just short of that goes as JSON, and its result comes back as JSON too.
        assert asyncio.run(chain.helper(10**5000)) == 10**5000 + 1
        assert pickled_jobs(sent, "helper") == 1
        assert asyncio.run(chain.helper(10**4250)) == 10**4250 + 1
        assert pickled_jobs(sent, "helper") == 1
    forced = chain.sleepy.options(serialization="json")
    with pytest.raises(ValueError, match=r"argument seconds: -inf has no JSON form.*asked for"):
        asyncio.run(forced(float("-inf")))

    # A class's calls go pickled from a caller holding the key, a NaN with them; made to go
    # as JSON, all its calls go so (one pickled would reach another instance), and one
    # JSON cannot carry fails naming the argument.
    tally = app_module("model").Tally

    async def scaled_by_nan(model: Any) -> float:
        return await model(2).scaled(float("nan"))  # type: ignore[no-any-return]

    assert math.isnan(asyncio.run(scaled_by_nan(tally)))
    with pytest.raises(ValueError, match=r"argument factor: nan has no JSON form.*one way"):
        asyncio.run(scaled_by_nan(tally.options(serialization="json")))

    previous = set_invoker(PlatformInvoker(Endpoints(platform.url, platform.api_key)))
    try:
        with pytest.raises(ValueError, match=r"argument seconds: nan .*holding the app's key"):
            asyncio.run(chain.sleepy(float("nan")))
    finally:
        set_invoker(previous)


def test_an_any_argument_arrives_as_itself(platform: LocalPlatform) -> None:
    # JSON would deliver a tuple as a list and a date as text: the client pickles such calls.
    chain = app_module("chain")
    values = [(1, 2), {1, 2}, datetime.date(2024, 1, 2), b"ab", frozenset()]
    assert asyncio.run(chain.kind.map(values)) == [type(v).__name__ for v in values]
    assert asyncio.run(chain.kind((1, 2))) == "tuple"
    # Asked for, JSON still goes, and plain JSON clients still have the schema.
    assert asyncio.run(chain.kind.options(serialization="json")((1, 2))) == "list"
    job = runsync(platform, "svc-a", {"input": {"function": "kind", "kwargs": {"x": [1]}}})
    assert job["output"]["result"] == "list"


def test_a_signed_answer_is_checked_once(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checking a MAC hashes the whole answer: a big result must not be hashed twice.
    from flash.runtime import client

    checked: list[str] = []

    def counting(key: bytes, mac: Any, **options: Any) -> None:
        checked.append(options["nonce"])
        verify_result(key, mac, **options)

    verify_result = client.verify_result
    monkeypatch.setattr(client, "verify_result", counting)
    chain = app_module("chain")
    assert asyncio.run(chain.noop.options(serialization="pickle")(b"x" * 100_000)) == b"x" * 100_000
    assert len(checked) == 1
    with pytest.raises(flash.RemoteExecutionError):
        asyncio.run(chain.fails.options(serialization="pickle")("local"))
    assert len(checked) == 2  # a failure's details are checked too, once


def test_unsigned_pickle_never_runs_on_an_endpoint(platform: LocalPlatform, tmp_path: Path) -> None:
    from flash.runtime.serialization import serialize_args

    marker = tmp_path / "pwned"
    args, kwargs = serialize_args((CreatesFile(str(marker)),), {})
    job = runsync(
        platform,
        "svc-a",
        {"input": {"function_name": "callsapp.chain.noop", "args": args, "kwargs": kwargs}},
    )
    assert job["status"] == "FAILED" and "refused" in job["error"]
    assert not marker.exists()
    assert asyncio.run(app_module("chain").noop(7)) == 7  # the endpoint keeps serving


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_each_endpoint_publishes_an_openapi_document_of_its_functions(
    platform: LocalPlatform,
) -> None:
    document = httpx.get(f"{platform.url}/v2/svc-a/openapi.json").json()
    schemas = document["components"]["schemas"]
    call = schemas["callsapp.chain.helper.call"]
    assert call["properties"]["function"]["enum"] == ["callsapp.chain.helper", "helper"]
    assert call["properties"]["kwargs"]["properties"]["x"]["type"] == "integer"
    assert schemas["callsapp.chain.helper.result"]["type"] == "integer"
    for ref in _refs(document):  # every reference resolves inside the document
        assert ref.startswith("#/components/schemas/") and ref.split("/")[-1] in schemas
    assert "callsapp.chain.noop" in document["info"]["description"]  # untyped: pickle only
    page = httpx.get(f"{platform.url}/docs").text
    assert "callsapp.chain.helper" in page and "/v2/svc-b/openapi.json" in page
    assert httpx.get(f"{platform.url}/v2/nope/openapi.json").status_code == 404


def test_deeply_nested_request_is_a_clear_400(platform: LocalPlatform) -> None:
    depth = 100_000
    body = '{"input": {"function": "helper", "kwargs": {"x": ' + "[" * depth + "]" * depth + "}}}"
    response = httpx.post(
        f"{platform.url}/v2/svc-a/runsync",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert "nested deeper than 256" in response.json()["error"]
    assert asyncio.run(app_module("chain").helper(1)) == 2  # still serving


def test_any_client_can_call_a_class_method_with_plain_json(platform: LocalPlatform) -> None:
    call = {"function": "callsapp.model.Tally", "init": {"start": 10}, "method": "add"}
    first = runsync(platform, "svc-b", {"input": {**call, "kwargs": {"x": 5}}})
    second = runsync(platform, "svc-b", {"input": {**call, "kwargs": {"x": 1}}})
    assert (first["output"]["result"], second["output"]["result"]) == (15, 16)  # one instance
    document = httpx.get(f"{platform.url}/v2/svc-b/openapi.json").json()
    add = document["components"]["schemas"]["callsapp.model.Tally.add.call"]
    assert add["properties"]["method"] == {"const": "add"}
    assert add["properties"]["init"]["properties"]["start"]["type"] == "integer"


def test_blocking_calls_from_many_threads_at_once(platform: LocalPlatform) -> None:
    # As a threaded web app makes them: each call runs its own event loop, in its thread.
    chain = app_module("chain")

    def calls(base: int) -> list[Any]:
        return [chain.power.call(base, n % 3) for n in range(30)] + [chain.helper.call(base)]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(calls, range(16)))
    assert results == [[b ** (n % 3) for n in range(30)] + [b + 1] for b in range(16)]
    # Each call's loop closed its connections as it ended; none is left for the gc.
    assert connections_to(platform.port) == 0


def test_disconnect_closes_the_connections_of_a_loop_running_elsewhere(
    platform: LocalPlatform,
) -> None:
    chain = app_module("chain")
    previous = get_invoker()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        flash.connect(platform.url, platform.api_key, signing_key=platform.signing_key)
        assert asyncio.run_coroutine_threadsafe(chain.helper(1), loop).result(30) == 2
        assert connections_to(platform.port) == 1  # kept for that loop's next call
        flash.disconnect()
        wait_for(lambda: connections_to(platform.port) == 0, 10, "the connection to close")
    finally:
        set_invoker(previous)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def test_a_base_url_ending_in_v2_as_the_runpod_sdk_writes_it_reaches_the_endpoint(
    platform: LocalPlatform,
) -> None:
    # runpod.endpoint_url_base is "https://api.runpod.ai/v2": no /v2/v2 (404) from it.
    chain = app_module("chain")
    previous = get_invoker()
    try:
        flash.connect(f"{platform.url}/v2/", platform.api_key, signing_key=platform.signing_key)
        assert chain.helper.call(1) == 2
    finally:
        flash.disconnect()
        set_invoker(previous)


async def _collect(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


def test_a_client_without_the_key_sends_no_pickled_call(platform: LocalPlatform) -> None:
    # Its answer would come back unsigned, and unpickling that runs what the gateway says.
    chain = app_module("chain")
    jobs_before = _job_count(platform)
    with keyless(platform):
        with pytest.raises(flash.RemoteError) as info:
            asyncio.run(chain.noop(1))
        with pytest.raises(flash.MapError) as mapped:
            asyncio.run(chain.noop.map([1, 2]))
        with pytest.raises(flash.RemoteError, match="signing key"):
            asyncio.run(_collect(chain.ticks.stream(1, "never")))
        assert asyncio.run(chain.helper(1)) == 2  # typed: JSON needs no key
    message = str(info.value)
    assert "a pickled call needs the app's signing key, and this client has none" in message
    assert "FLASH_SIGNING_KEY" in message and "flash.connect(signing_key=...)" in message
    assert ".flash/secrets/signing_key is found from the current folder up" in message
    assert "JSON-able types" in message and message.endswith("[callsapp.chain.noop on svc-a]")
    assert all(isinstance(e, flash.RemoteError) for e in mapped.value.errors.values())
    assert _job_count(platform) == jobs_before + 1  # helper's only


def _job_count(platform: LocalPlatform) -> int:
    dispatcher = platform.dispatcher
    assert dispatcher is not None
    return platform.call(lambda: len(dispatcher.jobs))


def _script_env(platform: LocalPlatform, **extra: str) -> dict[str, str]:
    """What `flash run` gives a script: the platform's address, and no key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASH_")}
    env["FLASH_API_BASE"] = platform.url
    if platform.api_key:
        env["FLASH_API_KEY"] = platform.api_key
    return {**env, **extra}


def test_a_script_given_flash_api_base_finds_the_projects_key(platform: LocalPlatform) -> None:
    # As flash.connect() does: from FLASH_SIGNING_KEY, else the project's .flash/secrets.
    root = platform.state_dir.parent
    script = "from callsapp import chain; print(chain.noop.call(5))"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env=_script_env(platform),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "5"), done.stderr
    # Inside a worker (FLASH_RESOURCE_NAME) only FLASH_SIGNING_KEY counts, and here it has none.
    in_worker = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env=_script_env(platform, FLASH_RESOURCE_NAME="svc-c"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert in_worker.returncode != 0 and "needs the app's signing key" in in_worker.stderr


CTRL_C_SCRIPT = """
import asyncio, sys
from callsapp import chain

async def main():
    chain.sleepy.call(60, sys.argv[1])  # blocking, inside a running loop

asyncio.run(main())
"""


def test_ctrl_c_cancels_a_blocking_call_made_inside_a_running_loop(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    marker = tmp_path / "sleepy"
    script = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT, str(marker)],
        cwd=platform.state_dir.parent,
        env=_script_env(platform),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(Path(f"{marker}.started").exists, 60, "the job to start")
        script.send_signal(signal.SIGINT)
        _, errors = script.communicate(timeout=20)  # not the 60 s the call would take
    finally:
        if script.poll() is None:
            script.kill()
            script.communicate()
    assert "KeyboardInterrupt" in errors
    wait_for(Path(f"{marker}.cancelled").exists, 20, "the job to be cancelled")


def test_a_result_that_breaks_its_annotation_names_the_call(platform: LocalPlatform) -> None:
    chain = app_module("chain")
    with pytest.raises(InvalidResultError) as info:
        asyncio.run(chain.wrong_return(1))
    message = str(info.value)
    assert message.startswith("wrong_return returned a value its return annotation does not")
    assert "result: Input should be a valid integer" in message and "'not a number'" in message
    assert "[callsapp.chain.wrong_return on svc-a, job " in message
    assert isinstance(info.value, flash.RemoteError) and info.value.job_id


def test_wrong_arguments_of_a_typed_call_name_the_function(platform: LocalPlatform) -> None:
    chain = app_module("chain")
    with pytest.raises(TypeError, match=r"wrong arguments for helper: missing .* 'x'"):
        asyncio.run(chain.helper())
    with pytest.raises(TypeError, match=r"wrong arguments for Tally.add: .*'y'"):
        asyncio.run(app_module("model").Tally(1).add(1, y=2))


def test_a_number_an_int_parameter_cannot_be_is_refused_before_sending(
    platform: LocalPlatform,
) -> None:
    # JSON would carry the NaN as null; no key makes it a valid int either.
    chain = app_module("chain")
    jobs_before = _job_count(platform)
    for value in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=rf"helper: argument x: {value} is not allowed"):
            asyncio.run(chain.helper(value))
    assert _job_count(platform) == jobs_before


def test_bytes_json_cannot_carry_go_pickled_or_fail_naming_the_argument(
    platform: LocalPlatform,
) -> None:
    # JSON carries bytes as UTF-8 text: other bytes go as a signed pickle from a caller
    # holding the key, and fail before sending, naming the argument, from one without it.
    chain = app_module("chain")
    raw = b"\x00\xff\xfe"
    assert asyncio.run(chain.same_bytes(raw)) == raw
    assert asyncio.run(chain.same_bytes(b"text")) == b"text"  # UTF-8: JSON still carries it
    jobs_before = _job_count(platform)
    with keyless(platform), pytest.raises(ValueError) as info:
        asyncio.run(chain.same_bytes(raw))
    assert str(info.value) == (
        "callsapp.chain.same_bytes: argument b: bytes that are not UTF-8 have no JSON form, "
        "so the call cannot go as JSON, and only a caller holding the app's key may send it "
        "pickled"
    )
    assert _job_count(platform) == jobs_before


def test_wrong_arguments_of_a_class_fail_before_sending(platform: LocalPlatform) -> None:
    # Classifier's calls go pickled (its result is typed object), and are checked all the same.
    model = app_module("model")
    jobs_before = _job_count(platform)
    with pytest.raises(TypeError) as constructed:
        asyncio.run(model.Classifier().predict("great"))
    with pytest.raises(TypeError) as called:
        asyncio.run(model.Classifier(["great"]).predict())
    with pytest.raises(TypeError) as typed:  # and with JSON, naming the same way
        asyncio.run(model.Tally().add(1))
    with pytest.raises(TypeError) as loose:  # a function that goes pickled, too
        asyncio.run(app_module("chain").kind())
    assert str(constructed.value) == (
        "wrong arguments for Classifier: missing a required argument: 'positive'"
    )
    assert str(called.value) == (
        "wrong arguments for Classifier.predict: missing a required argument: 'text'"
    )
    assert str(typed.value) == "wrong arguments for Tally: missing a required argument: 'start'"
    assert str(loose.value) == "wrong arguments for kind: missing a required argument: 'x'"
    # The handle itself refuses them, where it is made, before any method is called.
    with pytest.raises(TypeError, match=r"wrong arguments for Classifier: too many positional"):
        model.Classifier(["great"], 1, 2)
    assert _job_count(platform) == jobs_before
    # Defaults, *args and **kwargs still take what Python takes.
    classifier = model.Classifier(positive=["great"])
    assert asyncio.run(classifier.predict("great stuff")) == {"label": "positive"}
    assert asyncio.run(classifier.predict("great stuff", threshold=2)) == {"label": "neutral"}
    assert asyncio.run(model.Packed(1, 2, k=3).unpack()) == [[1, 2], {"k": 3}]
    assert asyncio.run(model.Packed().unpack()) == [[], {}]


def test_decorated_methods_take_what_the_worker_calls_them_with(platform: LocalPlatform) -> None:
    # The client checks the callable the worker calls, not what a decorator wraps.
    decorated = app_module("model").Decorated()
    assert asyncio.run(decorated.logged(1)) == ["logged", 1]
    assert asyncio.run(decorated.cached(2)) == ["cached", 2]
    assert asyncio.run(decorated.injected(3)) == ["session", 3]
    assert asyncio.run(decorated.static(4)) == ["static", 4]
    assert asyncio.run(decorated.of_class(5)) == ["Decorated", 5]
    with pytest.raises(TypeError, match=r"^wrong arguments for Decorated.static: too many"):
        asyncio.run(decorated.static(4, 5))
