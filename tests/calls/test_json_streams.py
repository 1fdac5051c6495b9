"""Typed generators are called with JSON from Python as functions are: streamed item by item
(each decoded with the type it yields), or called once for the list of them; and a remote
class's generator method streams item by item through the platform, from the instance the
handle's other calls reach. Through the local platform, with real worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.calls.support import keyless
from tests.helpers import Logs
from tests.integration.projects import served_files

from flash.platform import LocalPlatform
from flash.sdk import InvalidResultError

FILES = {
    "pyproject.toml": """
        [project]
        name = "jsonstreamapp"
        version = "0.1.0"
        dependencies = []
    """,
    "jsonstreamapp/__init__.py": "",
    "jsonstreamapp/svc.py": """
        import asyncio
        import time
        from collections.abc import AsyncIterator, Iterator
        from pathlib import Path
        from typing import Any

        from flash import CpuLiveServerless, remote

        # One worker: a handle's calls all reach its one instance there.
        cpu = CpuLiveServerless(name="json-streams", workersMax=1, concurrency=4)


        def wait_for_gate(gate: str) -> None:
            # The next item waits for the caller to have seen the one before: deadlocks
            # unless items really arrive as they are produced.
            waited = time.monotonic()
            while not Path(gate).exists():
                if time.monotonic() - waited > 20:
                    raise RuntimeError("item 0 never reached the caller")
                time.sleep(0.01)


        @remote(cpu)
        def gen(n: int) -> Iterator[int]:
            yield from range(n)


        @remote(cpu)
        def gated(n: int, gate: str) -> Iterator[int]:
            for i in range(n):
                yield i
                if i == 0:
                    wait_for_gate(gate)


        @remote(cpu)
        async def agated(n: int, gate: str) -> AsyncIterator[str]:
            for i in range(n):
                yield f"item {i}"
                while i == 0 and not Path(gate).exists():
                    await asyncio.sleep(0.01)


        @remote(cpu)
        def halves(n: int) -> Iterator[float]:
            yield from range(n)  # ints: as JSON they come as the floats annotated


        @remote(cpu)
        def each(xs: Any) -> Iterator[Any]:
            yield from xs


        @remote(cpu)
        def wrong(n: int) -> Iterator[int]:
            yield n
            yield "not an int"


        @remote(cpu)
        class Tally:
            def __init__(self, start: int) -> None:
                self.total = start

            def add(self, x: int) -> int:
                self.total += x
                return self.total

            def running(self, n: int, gate: str) -> Iterator[int]:
                for i in range(n):
                    self.total += 1
                    yield self.total
                    if i == 0:
                        wait_for_gate(gate)

            async def arunning(self, n: int) -> AsyncIterator[int]:
                for _ in range(n):
                    self.total += 1
                    yield self.total
    """,
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPlatform, Any]]:
    root = tmp_path_factory.mktemp("jsonstreams") / "proj"
    with served_files(root, FILES, echo=Logs(), max_workers=2) as platform:
        yield platform, importlib.import_module("jsonstreamapp.svc")


async def _gated(stream: AsyncIterator[Any], gate: Path) -> list[Any]:
    """The items of ``stream``, opening ``gate`` once the first came: the generator goes
    on past its first item only once the caller has seen it."""
    seen = []
    async for item in stream:
        seen.append(item)
        gate.write_text("seen")
    return seen


async def _items(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


# ---------------------------------------------------------------- generator functions


def test_a_typed_generator_streams_as_json_from_a_client_without_the_key(
    served: tuple[LocalPlatform, Any], tmp_path: Path
) -> None:
    platform, svc = served
    with keyless(platform):
        gate = tmp_path / "gate"
        assert asyncio.run(_gated(svc.gated.stream(3, str(gate)), gate)) == [0, 1, 2]
        again = tmp_path / "again"
        got = asyncio.run(_gated(svc.agated.stream(2, str(again)), again))
        assert got == ["item 0", "item 1"]
        assert asyncio.run(svc.gen(3)) == [0, 1, 2]  # not streamed: the list of its items
        assert asyncio.run(svc.gen(0)) == []
        assert svc.halves.call(2) == [0.0, 1.0] and all(
            type(x) is float for x in svc.halves.call(2)
        )


def test_forced_json_streams_a_generator_as_json_from_a_client_with_the_key(
    served: tuple[LocalPlatform, Any], tmp_path: Path
) -> None:
    _, svc = served  # served_files routes this process's calls there, with the app's key
    as_json = svc.halves.options(serialization="json")
    items = asyncio.run(_items(as_json.stream(3)))
    assert items == [0.0, 1.0, 2.0] and all(type(x) is float for x in items)  # as annotated
    assert all(type(x) is float for x in asyncio.run(as_json(2)))
    assert asyncio.run(svc.gen.options(serialization="json")(3)) == [0, 1, 2]
    gate = tmp_path / "gate"
    stream = svc.gated.options(serialization="json").stream(3, str(gate))
    assert asyncio.run(_gated(stream, gate)) == [0, 1, 2]
    # Forced pickle goes pickled: the ints as the generator yielded them.
    pickled = asyncio.run(_items(svc.halves.options(serialization="pickle").stream(2)))
    assert pickled == [0, 1] and all(type(x) is int for x in pickled)


def test_a_loosely_typed_generator_goes_pickled_with_the_key_and_json_without(
    served: tuple[LocalPlatform, Any],
) -> None:
    platform, svc = served
    # Any: JSON would bring a tuple as a list, so a caller with the key pickles the call.
    assert asyncio.run(_items(svc.each.stream([(1, 2)]))) == [(1, 2)]
    with keyless(platform):
        assert asyncio.run(_items(svc.each.stream([(1, 2)]))) == [[1, 2]]


def test_an_item_its_annotation_does_not_allow_fails_the_stream_after_those_before(
    served: tuple[LocalPlatform, Any],
) -> None:
    platform, svc = served
    seen: list[Any] = []

    async def main() -> None:
        async for item in svc.wrong.stream(7):
            seen.append(item)

    with keyless(platform), pytest.raises(InvalidResultError, match="return annotation"):
        asyncio.run(main())
    assert seen == [7]


# ---------------------------------------------------------------- generator methods


@pytest.mark.parametrize("without_key", [False, True], ids=["pickled", "json"])
def test_a_generator_method_streams_item_by_item_from_the_handles_instance(
    served: tuple[LocalPlatform, Any], tmp_path: Path, without_key: bool
) -> None:
    platform, svc = served
    # With the key a class's calls go as signed pickles; without it, as JSON: each way
    # reaches its own instance, so the two runs start apart.
    start = 1000 if without_key else 0
    with keyless(platform) if without_key else contextlib.nullcontext():
        tally = svc.Tally(start)
        assert asyncio.run(tally.add(5)) == start + 5
        gate = tmp_path / "gate"
        got = asyncio.run(_gated(tally.running.stream(3, str(gate)), gate))
        assert got == [start + 6, start + 7, start + 8]  # the instance add() changed
        assert asyncio.run(_items(tally.arunning.stream(2))) == [start + 9, start + 10]
        assert asyncio.run(tally.add(0)) == start + 10  # and the stream changed it
        # Not streamed: the list of its items, as before.
        assert asyncio.run(tally.running(2, str(gate))) == [start + 11, start + 12]
        assert asyncio.run(tally.add(1)) == start + 13
