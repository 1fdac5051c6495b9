"""A parameter named ``self`` (or ``cls``) of a remote function, constructor or method is
passed by keyword like any other: through every way of calling it, in-process and through
the local platform."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from tests.calls.support import keyless
from tests.helpers import Logs
from tests.integration.projects import served_files

from flash.runtime.remote import set_invoker

FILES = {
    "pyproject.toml": """
        [project]
        name = "selfkwapp"
        version = "0.1.0"
        dependencies = []
    """,
    "selfkwapp/__init__.py": "",
    "selfkwapp/odd.py": """
        import os

        from flash import CpuLiveServerless, remote

        cfg = CpuLiveServerless(name="odd", workersMax=1, concurrency=4)


        def where():
            return os.environ.get("FLASH_RESOURCE_NAME") or "here"


        @remote(cfg)
        def weird3(_private: int, self: int = 2, cls: int = 3) -> list:
            return [_private, self, cls, where()]


        @remote(cfg)
        def counting(self: int):
            yield self
            yield where()


        @remote(cfg)
        class Odd:
            def __init__(this, self: int = 0) -> None:
                this.base = self

            def add(this, self: int) -> list:
                return [this.base + self, where()]

            def count(this, self: int):
                yield this.base + self
                yield where()

            def __call__(this, self: int) -> list:
                return [this.base * self, where()]
    """,
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("selfkw") / "proj"
    with served_files(root, FILES, echo=Logs(), max_workers=2) as platform:
        yield platform


@pytest.fixture
def odd(served: Any) -> Any:
    return importlib.import_module("selfkwapp.odd")


async def _items(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


def _every_way(odd: Any) -> list[Any]:
    async def awaited() -> list[Any]:
        handle = odd.Odd(self=2)
        return [
            await odd.weird3(1, self=5),
            await odd.weird3.options(timeout=30)(1, self=5, cls=6),
            await _items(odd.counting.stream(self=7)),
            await handle.add(self=3),
            await handle.add.options(timeout=30)(self=3),
            await handle(self=4),
            await _items(handle.count.stream(self=1)),
            await odd.Odd.options(timeout=30)(self=2).add(self=1),
        ]

    results = asyncio.run(awaited())
    results.append(odd.weird3.call(1, self=5))
    results.append(odd.Odd(self=2).add.call(self=3))
    return results


def _expected(where: str) -> list[Any]:
    return [
        [1, 5, 3, where],
        [1, 5, 6, where],
        [7, where],
        [5, where],
        [5, where],
        [8, where],
        [3, where],
        [3, where],
        [1, 5, 3, where],
        [5, where],
    ]


def test_self_by_keyword_through_the_platform(odd: Any) -> None:
    assert _every_way(odd) == _expected("odd")


def test_self_by_keyword_as_json_through_the_platform(served: Any, odd: Any) -> None:
    with keyless(served):  # no key: typed calls go as JSON
        assert odd.weird3.call(1, self=5) == [1, 5, 3, "odd"]
        assert odd.Odd(self=2).add.call(self=3) == [5, "odd"]


def test_self_by_keyword_in_process(odd: Any) -> None:
    previous = set_invoker(None)
    try:
        assert _every_way(odd) == _expected("here")
    finally:
        set_invoker(previous)
    # The original function and class, here.
    assert odd.weird3.local(1, self=5) == [1, 5, 3, "here"]
    assert odd.Odd.local(self=2).add(self=1) == [3, "here"]
