"""Big arguments: a request over the platform's body limit fails before it is sent, as
PayloadTooLargeError naming its biggest argument; map jobs stay under the limit; big bytes
go pickled rather than as JSON escapes."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from tests.calls.support import Restartable
from tests.helpers import Logs
from tests.integration.projects import served_files

import flash
from flash import CpuLiveServerless, remote
from flash.runtime.client import Endpoints, PlatformInvoker
from flash.runtime.remote import set_invoker

MiB = 1024 * 1024
# Pickled, 16 MiB of bytes is 21.3 MiB of base64: over the /runsync limit on its own.
TOO_BIG = 16 * MiB

FILES = {
    "pyproject.toml": """
        [project]
        name = "payloadsapp"
        version = "0.1.0"
        dependencies = []
    """,
    "payloadsapp/__init__.py": "",
    "payloadsapp/sizes.py": """
        from flash import CpuLiveServerless, remote

        big = CpuLiveServerless(name="big", workersMax=1, concurrency=2)


        @remote(big)
        def size_of(data):
            return len(data)


        @remote(big)
        def typed_size(data: bytes) -> int:
            return len(data)


        @remote(big)
        class Store:
            def __init__(self, name):
                self.name = name

            def put(self, blob, tag=None):
                return len(blob)
    """,
}


@pytest.fixture(scope="module")
def sizes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("payloads") / "proj"
    with served_files(root, FILES, echo=Logs(), max_workers=2):
        yield importlib.import_module("payloadsapp.sizes")


def test_a_call_over_the_limit_fails_before_it_is_sent_naming_the_argument(sizes: Any) -> None:
    with pytest.raises(flash.PayloadTooLargeError) as info:
        asyncio.run(sizes.size_of(b"x" * TOO_BIG))
    message = str(info.value)
    assert "over the /runsync limit of 20 MiB" in message
    assert "biggest argument is data (21.3 MiB as sent)" in message
    assert "by reference" in message and "split the call" in message
    assert message.endswith("[payloadsapp.sizes.size_of on big]")
    # A method's positional argument is named as its parameter (the instance takes self).
    with pytest.raises(flash.PayloadTooLargeError, match=r"biggest argument is blob \(21.3"):
        asyncio.run(sizes.Store("s").put(b"x" * TOO_BIG))
    # Typed and forced to JSON: the same error, named by its keyword.
    as_json = sizes.typed_size.options(serialization="json")
    with pytest.raises(flash.PayloadTooLargeError, match="biggest argument is data"):
        asyncio.run(as_json(bytes(4 * MiB)))  # each zero byte is 6 as JSON: 24 MiB


def test_map_jobs_stay_under_the_limit_and_an_item_too_big_fails_in_its_place(
    sizes: Any,
) -> None:
    # Four items in one chunk would be a 45 MiB job; each of the three 6 MiB ones fits.
    items = [b"a" * 6 * MiB, b"b" * 6 * MiB, b"c" * TOO_BIG, b"d" * 6 * MiB]
    results = asyncio.run(sizes.size_of.map(items, chunk_size=4, return_exceptions=True))
    assert results[:2] == [6 * MiB, 6 * MiB] and results[3] == 6 * MiB
    assert isinstance(results[2], flash.PayloadTooLargeError)
    assert "biggest argument is data" in str(results[2])


def test_big_bytes_of_a_typed_function_go_pickled_in_auto_mode(sizes: Any) -> None:
    # As JSON, 4 MiB of zero bytes is a 24 MiB body the platform refuses; pickled, 5.3 MiB.
    assert asyncio.run(sizes.typed_size(bytes(4 * MiB))) == 4 * MiB


@remote(CpuLiveServerless(name="api"))
def echo(text: str) -> str:  # called with JSON: no key needed
    return text


def test_a_413_from_the_platform_is_payload_too_large() -> None:
    # A platform whose limit is lower than the client's: its refusal says what was too big.
    def answer(method: str, path: str, headers: dict[str, str], body: Any) -> Any:
        return 413, {"error": "request body exceeds the /runsync limit of 1 KB"}

    gateway = Restartable(answer)
    invoker = PlatformInvoker(Endpoints(gateway.url))
    previous = set_invoker(invoker)
    try:
        with pytest.raises(flash.PayloadTooLargeError) as info:
            asyncio.run(echo("x" * 4096))
    finally:
        set_invoker(previous)
        invoker.close()
        gateway.close()
    message = str(info.value)
    assert "HTTP 413: request body exceeds the /runsync limit of 1 KB" in message
    assert "biggest argument is text (4 KiB as sent)" in message
