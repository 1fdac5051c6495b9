"""An endpoint's ``concurrency``: a worker runs that many jobs of sync functions at once."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator

import pytest
from tests.helpers import Logs
from tests.integration.projects import served_files

from flash.platform import LocalPlatform

FILES = {
    "pyproject.toml": """
        [project]
        name = "pairapp"
        version = "0.1.0"
        dependencies = []
    """,
    "pairapp/__init__.py": "",
    "pairapp/work.py": """
        import threading

        from flash import CpuLiveServerless, remote

        pair = CpuLiveServerless(name="pair", workersMax=1, concurrency=2)
        met = threading.Barrier(2)


        @remote(pair)
        def meet(who: str) -> str:
            met.wait(timeout=30)  # passes only when both calls run at once, in one worker
            return who


        streams = CpuLiveServerless(name="streams", workersMax=1, concurrency=2)
        streamed = threading.Barrier(2)


        @remote(streams)
        def meet_items(who: str):  # a generator: its endpoint's worker streams
            yield who
            streamed.wait(timeout=30)
            yield who.upper()
    """,
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    root = tmp_path_factory.mktemp("pair") / "proj"
    with served_files(root, FILES, echo=Logs()) as served:
        yield served


def test_a_worker_runs_as_many_sync_jobs_at_once_as_its_concurrency(
    platform: LocalPlatform,
) -> None:
    work = importlib.import_module("pairapp.work")

    async def both() -> list[str]:
        return list(await asyncio.gather(work.meet("a"), work.meet("b")))

    assert asyncio.run(both()) == ["a", "b"]
    assert asyncio.run(both()) == ["a", "b"]  # and again, on the same worker


def test_sync_generators_of_a_worker_also_run_at_once(platform: LocalPlatform) -> None:
    work = importlib.import_module("pairapp.work")

    async def both() -> list[list[str]]:
        return list(await asyncio.gather(work.meet_items("a"), work.meet_items("b")))

    assert asyncio.run(both()) == [["a", "A"], ["b", "B"]]
