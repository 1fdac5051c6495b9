"""A method of a remote instance has what a remote function has: ``.stream`` for a
generator method, ``.options``, ``.call``, ``.map``; through the local platform (real
worker processes) and in-process."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import Logs
from tests.integration.projects import served_files

from flash import MapError
from flash.runtime.errors import RemoteTimeoutError
from flash.runtime.remote import get_invoker, set_invoker

FILES = {
    "pyproject.toml": """
        [project]
        name = "methodstreamapp"
        version = "0.1.0"
        dependencies = []
    """,
    "methodstreamapp/__init__.py": "",
    "methodstreamapp/model.py": """
        import asyncio
        import os
        import time
        from pathlib import Path

        from flash import CpuLiveServerless, remote

        cpu = CpuLiveServerless(name="method-stream", workersMax=1, concurrency=8)


        @remote(cpu)
        class Counter:
            def __init__(self, start: int) -> None:
                self.start = start

            def count(self, n: int):
                for i in range(n):
                    yield self.start + i

            async def acount(self, n: int):
                for i in range(n):
                    yield self.start + i

            def count_gated(self, n: int, gate: str):
                for i in range(n):
                    yield i
                    # The next item waits for the caller to have seen this one: deadlocks
                    # unless items really arrive as they are produced.
                    waited = time.monotonic()
                    while i == 0 and not Path(gate).exists():
                        if time.monotonic() - waited > 30:
                            raise RuntimeError("item 0 never reached the caller")
                        time.sleep(0.01)

            def add(self, x: int) -> int:
                if x < 0:
                    raise ValueError(f"negative {x}")
                return self.start + x

            async def nap(self, seconds: float) -> str:
                await asyncio.sleep(seconds)
                return "woke"

            def where(self) -> str:
                return os.environ.get("FLASH_RESOURCE_NAME") or "here"
    """,
}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("methodstream") / "proj"
    with served_files(root, FILES, echo=Logs(), max_workers=2):
        yield importlib.import_module("methodstreamapp.model")


async def _items(stream: Any) -> list[Any]:
    return [item async for item in stream]


def test_a_generator_method_streams_through_the_platform(model: Any) -> None:
    counter = model.Counter(10)
    assert asyncio.run(_items(counter.count.stream(3))) == [10, 11, 12]
    assert asyncio.run(_items(counter.acount.stream(2))) == [10, 11]
    assert asyncio.run(counter.where()) == "method-stream"  # it ran on the endpoint


async def _gated_stream(counter: Any, gate: Path) -> list[Any]:
    """The items of ``counter.count_gated``, whose generator goes on past item 0 only once
    this caller has seen it (and written ``gate``): they come one by one, or not at all."""
    seen = []
    async for item in counter.count_gated.stream(3, str(gate)):
        seen.append(item)
        gate.write_text("seen")
    return seen


def test_a_generator_method_streams_item_by_item_through_the_platform(
    model: Any, tmp_path: Path
) -> None:
    counter = model.Counter(0)
    assert asyncio.run(_gated_stream(counter, tmp_path / "gate")) == [0, 1, 2]
    # Not streamed, a generator method's call answers with the list of its items.
    assert asyncio.run(counter.count(2)) == [0, 1]
    assert asyncio.run(counter.add(1)) == 1  # the endpoint's other methods answer as before


def test_streaming_a_method_that_is_no_generator_is_refused(model: Any) -> None:
    with pytest.raises(TypeError, match=r"Counter\.add is not a generator method"):
        model.Counter(1).add.stream(1)


def test_method_options_apply_to_its_calls(model: Any) -> None:
    counter = model.Counter(5)
    assert asyncio.run(counter.add.options(timeout=30, serialization="pickle")(1)) == 6
    with pytest.raises(RemoteTimeoutError):
        asyncio.run(counter.nap.options(timeout=1)(60))
    with pytest.raises(ValueError, match="serialization must be"):
        counter.add.options(serialization="xml")


def test_method_call_and_map(model: Any) -> None:
    counter = model.Counter(100)
    assert counter.add.call(1) == 101  # from code that is not async
    assert asyncio.run(counter.add.map([1, 2, 3], concurrency=2)) == [101, 102, 103]
    assert asyncio.run(counter.add.starmap([(4,), (5,)])) == [104, 105]
    with pytest.raises(MapError) as caught:
        asyncio.run(counter.add.map([1, -2, 3]))
    assert list(caught.value.errors) == [1] and caught.value.results[0] == 101
    assert isinstance(caught.value.errors[1], ValueError)


def test_in_process_a_method_streams_item_by_item(model: Any, tmp_path: Path) -> None:
    previous = set_invoker(None)
    try:
        assert get_invoker() is None  # calls run in this process
        counter = model.Counter(0)
        assert asyncio.run(_gated_stream(counter, tmp_path / "gate")) == [0, 1, 2]
        assert counter.where.options(timeout=5).call() == "here"
        # One instance per handle, also through an options() clone.
        assert counter.add.options(timeout=5).handle.local_instance() is counter.local_instance()
    finally:
        set_invoker(previous)
