"""What a failed remote call brings back: a short error of the function's own making, whatever
the size of its message, tracebacks that name the project's files and only the user's frames,
and a StopIteration that fails like any other exception."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers import final_status
from tests.integration.projects import served_files

import flash
from flash.platform.local import LocalPlatform

FILES = {
    "pyproject.toml": """
        [project]
        name = "limitsapp"
        version = "0.1.0"
        dependencies = []
    """,
    "limitsapp/__init__.py": "",
    "limitsapp/work.py": """
        from flash import CpuLiveServerless, remote

        outer = CpuLiveServerless(name="limits-outer", workersMax=1, concurrency=2)
        inner = CpuLiveServerless(name="limits-inner", workersMax=1, concurrency=2)


        @remote(inner)
        def huge(n):
            raise ValueError("head-" + "x" * n + "-tail")


        @remote(outer)
        async def calls_huge(n):
            return await huge(n)


        @remote(inner)
        def fails(key):
            raise KeyError(key)


        @remote(outer)
        async def calls_fails(key):
            return await fails(key)


        @remote(inner)
        def grouped():
            raise ExceptionGroup("several", [ValueError("one"), KeyError("two")])


        @remote(inner)
        def stops():
            return next(iter([]))


        @remote(inner)
        def counts(n):
            yield from range(n)
    """,
}
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPlatform, Any, Path]]:
    root = (tmp_path_factory.mktemp("limits") / "project").resolve()
    with served_files(root, FILES) as platform:
        from limitsapp import work  # type: ignore[import-not-found]

        yield platform, work, root


def _raised(call: Any) -> BaseException:
    with pytest.raises(BaseException) as raised:
        asyncio.run(call)
    return raised.value


def _notes(error: BaseException) -> str:
    return "\n".join(getattr(error, "__notes__", []))


def _status(platform: LocalPlatform, endpoint: str, job_id: str) -> dict[str, Any]:
    return final_status(platform.url, endpoint, job_id, api_key=platform.api_key)


def _job_of(error: BaseException, endpoint: str) -> str:
    """The job id the error's remote traceback of ``endpoint`` names."""
    header = _notes(error).split(f"Remote traceback (endpoint {endpoint}, job ", 1)[1]
    return header.split("):", 1)[0]


def test_a_huge_message_comes_back_short_as_its_own_type(served: Any) -> None:
    platform, work, _ = served
    error = _raised(work.huge(20_000_000))
    assert type(error) is ValueError, repr(error)[:300]
    message = str(error)
    assert len(message) < 2 * LIMIT and message.startswith("head-xxx") and message.endswith("-tail")
    assert "characters cut ..." in message
    assert len(_notes(error)) < 3 * LIMIT
    status = _status(platform, "limits-inner", _job_of(error, "limits-inner"))
    assert len(httpx.Response(200, json=status).content) < 5 * LIMIT


def test_a_huge_message_stays_short_a_hop_up(served: Any) -> None:
    platform, work, _ = served
    error = _raised(work.calls_huge(20_000_000))
    assert isinstance(error, ValueError) or "ValueError" in str(error), repr(error)[:300]
    assert "characters cut ..." in str(error) and len(str(error)) < 3 * LIMIT
    assert len(_notes(error)) < 6 * LIMIT
    status = _status(platform, "limits-outer", _job_of(error, "limits-outer"))
    assert len(httpx.Response(200, json=status).content) < 8 * LIMIT


def test_a_nested_calls_traceback_ends_at_the_users_own_frame(served: Any) -> None:
    platform, work, root = served
    error = _raised(work.calls_fails("model.bin"))
    assert isinstance(error, KeyError)
    notes = _notes(error)
    source = str(root / "limitsapp" / "work.py")
    assert f'File "{source}", line 24, in calls_fails' in notes, notes
    # Not Flash's own frames, through which the nested call failed.
    for internal in ("in call_function", "in _call", "in _raise_for", "client.py"):
        assert internal not in notes, notes
    status = _status(platform, "limits-outer", _job_of(error, "limits-outer"))
    assert "client.py" not in status["output"]["traceback"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is new in 3.11")
def test_an_exception_groups_traceback_names_the_projects_file(served: Any) -> None:
    platform, work, root = served
    error = _raised(work.grouped())
    assert type(error).__name__ == "ExceptionGroup"
    notes = _notes(error)
    source = str(root / "limitsapp" / "work.py")
    assert f'|   File "{source}", line 29, in grouped' in notes, notes
    assert str(platform.state_dir) not in notes  # not the served copy under .flash/serve


def test_a_stop_iteration_fails_like_any_other_exception(served: Any) -> None:
    _, work, root = served
    error = _raised(work.stops())
    assert isinstance(error, StopIteration) or (
        isinstance(error, flash.RemoteError)
        and error.remote_type == "StopIteration"
        and "limitsapp.work.stops on limits-inner" in str(error)
        and "job " in str(error)
    ), repr(error)
    notes = _notes(error)
    source = str(root / "limitsapp" / "work.py")
    traceback = notes.split("\n", 2)[2]  # under the header and "Traceback (...):"
    assert traceback.lstrip().startswith(f'File "{source}", line 34, in stops'), notes
    assert "RuntimeError" not in str(error) + notes


def test_a_generator_still_ends_normally(served: Any) -> None:
    _, work, _ = served
    assert asyncio.run(work.counts(3)) == [0, 1, 2]
