"""A remote class used from a function of its own endpoint reaches the instance the
endpoint's jobs reach: one per worker per constructor arguments (as sent), not one per
call. Through the local platform, with real worker processes."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from tests.helpers import Logs
from tests.integration.projects import served_files

FILES = {
    "pyproject.toml": """
        [project]
        name = "sameinstapp"
        version = "0.1.0"
        dependencies = []
    """,
    "sameinstapp/__init__.py": "",
    "sameinstapp/loader.py": """
        import asyncio
        import os
        import threading

        from flash import CpuLiveServerless, remote

        # One worker that stays: every job below runs in the same process. Two slots, so
        # a sync function runs in a thread of its own (and its .call() on a loop of its own).
        one = CpuLiveServerless(name="one", workersMax=1, concurrency=2, idleTimeout=120)

        CONSTRUCTED = []


        @remote(one)
        class Loader:
            def __init__(self, model):
                CONSTRUCTED.append(model)  # a model's weights loading

            def get(self):
                return {"constructed": len(CONSTRUCTED), "id": id(self), "pid": os.getpid()}

            def ids(self, n):
                for _ in range(n):
                    yield id(self)


        @remote(one)
        class Broken:
            def __init__(self):
                raise ValueError("no weights")

            def get(self):
                return "unreachable"


        @remote(one)
        async def use_loader(model="m"):
            return await Loader(model).get()


        @remote(one)
        def use_loader_sync(model="m"):
            return Loader(model).get.call()


        @remote(one)
        async def stream_loader(model="m"):
            return [i async for i in Loader(model).ids.stream(2)]


        @remote(one)
        async def use_broken():
            try:
                await Broken().get()
            except ValueError as exc:
                return [type(exc).__name__, str(exc)]
            return None


        @remote(one)
        class Waiter:
            # Binds to the loop it first waits on, as asyncio objects and async clients do.
            def __init__(self, name):
                self.ready = asyncio.Event()

            async def get(self):
                self.ready.clear()
                asyncio.get_running_loop().call_soon(self.ready.set)
                await self.ready.wait()
                return "ok"


        @remote(one)
        async def waiter_from_job(name):
            return await Waiter(name).get()


        @remote(one)
        def waiter_from_sync(name):
            return Waiter(name).get.call()


        @remote(one)
        async def use_unpicklable():
            # A constructor argument no job could carry: the handle keeps its own instance.
            handle = Loader(threading.Lock())
            first, second = await handle.get(), await handle.get()
            return [first["id"] == second["id"], second["constructed"] - first["constructed"]]
    """,
}


@pytest.fixture(scope="module")
def loader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("sameinst") / "proj"
    with served_files(root, FILES, echo=Logs(), max_workers=2):
        yield importlib.import_module("sameinstapp.loader")


def test_calls_from_its_own_endpoint_reach_the_instance_jobs_reach(loader: Any) -> None:
    async def main() -> list[dict[str, Any]]:
        handle = loader.Loader("m")
        from_script = [await handle.get() for _ in range(3)]
        from_endpoint = [await loader.use_loader() for _ in range(3)]
        return from_script + from_endpoint

    answers = asyncio.run(main())
    assert len({a["pid"] for a in answers}) == 1  # one worker throughout
    assert {a["id"] for a in answers} == {answers[0]["id"]}
    assert [a["constructed"] for a in answers] == [1] * 6
    # A method's stream: the same instance again, still constructed once.
    assert loader.stream_loader.call() == [answers[0]["id"]] * 2
    # From a sync function's .call() (in a thread, on a loop of its own): not the jobs'
    # instance, whose loop-bound parts belong to their loop, but its handle's own.
    again = loader.use_loader_sync.call()
    assert again["id"] != answers[0]["id"] and again["constructed"] == 2
    # Other constructor arguments: another instance, kept as well.
    other = [loader.use_loader.call("n") for _ in range(2)]
    assert other[0]["id"] == other[1]["id"] != answers[0]["id"]
    assert [o["constructed"] for o in other] == [3, 3]


def test_an_instance_bound_to_the_jobs_loop_is_not_shared_with_a_sync_call(loader: Any) -> None:
    # The jobs' instance used from a sync function's own loop failed ("bound to a different
    # event loop"), and one made there first broke every later job of its arguments.
    assert loader.waiter_from_job.call("m") == "ok"
    assert loader.waiter_from_sync.call("m") == "ok"
    assert loader.waiter_from_sync.call("z") == "ok"
    assert [loader.waiter_from_job.call("z") for _ in range(2)] == ["ok", "ok"]


def test_a_failing_constructor_raises_its_own_error_in_the_caller(loader: Any) -> None:
    assert loader.use_broken.call() == ["ValueError", "no weights"]
    assert loader.use_broken.call() == ["ValueError", "no weights"]  # tried again


def test_constructor_arguments_no_job_could_carry_keep_one_instance_per_handle(
    loader: Any,
) -> None:
    assert loader.use_unpicklable.call() == [True, 0]
