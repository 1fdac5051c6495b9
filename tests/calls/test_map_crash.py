"""A map item that crashes its worker fails alone: the items batched in its chunk job with
it still return their results (through the local platform, real worker processes)."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from tests.helpers import Logs
from tests.integration.projects import served_files

from flash import MapError
from flash.runtime.errors import RemoteExecutionError

FILES = {
    "pyproject.toml": """
        [project]
        name = "crashmapapp"
        version = "0.1.0"
        dependencies = []
    """,
    "crashmapapp/__init__.py": "",
    "crashmapapp/jobs.py": """
        import os

        from flash import CpuLiveServerless, remote

        cpu = CpuLiveServerless(name="crash-map", workersMax=2, concurrency=2)


        @remote(cpu)
        def double_or_die(x):
            if x == "die":
                os._exit(7)  # the worker process ends, as a segfault or the OOM killer ends it
            if x == "fail":
                raise ValueError("a plain failure")
            return x * 2
    """,
}


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("crashmap") / "proj"
    with served_files(root, FILES, echo=Logs(), max_workers=4):
        yield importlib.import_module("crashmapapp.jobs")


def _is_crash(error: Any) -> bool:
    return isinstance(error, RemoteExecutionError) and "exited with code 7" in str(error)


def test_only_the_item_that_crashes_the_worker_fails(jobs: Any) -> None:
    items = [1, 2, 3, "die", 5, 6, 7, 8]
    results = asyncio.run(jobs.double_or_die.map(items, chunk_size=8, return_exceptions=True))
    assert results[:3] == [2, 4, 6] and results[4:] == [10, 12, 14, 16]
    assert _is_crash(results[3]), results[3]


def test_map_error_names_the_crashing_item_alone(jobs: Any) -> None:
    items = [1, "fail", 3, "die", 5, 6]
    with pytest.raises(MapError) as caught:
        asyncio.run(jobs.double_or_die.map(items, chunk_size=6))
    error = caught.value
    assert sorted(error.errors) == [1, 3]
    assert isinstance(error.errors[1], ValueError)
    assert _is_crash(error.errors[3]), error.errors[3]
    assert [error.results[i] for i in (0, 2, 4, 5)] == [2, 6, 10, 12]


def test_default_chunks_of_a_long_map_lose_no_bystander(jobs: Any) -> None:
    items: list[Any] = [*range(199), "die"]
    results = asyncio.run(jobs.double_or_die.map(items, return_exceptions=True))
    assert results[:199] == [x * 2 for x in range(199)]
    assert _is_crash(results[199]), results[199]


def test_a_chunk_whose_every_item_crashes_stops_after_a_few(jobs: Any) -> None:
    # Each crash costs two worker restarts: past three items that crash again on their own,
    # the rest of the chunk fails with it, unrun.
    items: list[Any] = ["die"] * 6 + [1]
    results = asyncio.run(jobs.double_or_die.map(items, chunk_size=7, return_exceptions=True))
    assert all(_is_crash(error) for error in results[:6]), results
    assert _is_crash(results[6])  # the bystander after the cap fails with the chunk
