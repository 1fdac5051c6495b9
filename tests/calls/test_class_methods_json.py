"""A remote class's typed classmethods take JSON calls, as its static and plain methods do:
from curl, and from the Python client sending JSON."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.integration.projects import served_files

from flash.platform.local import LocalPlatform

FILES = {
    "kapp/__init__.py": "",
    "kapp/k.py": """
        from flash import CpuLiveServerless, remote


        @remote(CpuLiveServerless(name="k-cpu"))
        class K:
            def __init__(self, base: int) -> None:
                self.base = base

            @classmethod
            def cm(cls, x: int) -> str:
                return f"{cls.__name__}:{x}"

            @staticmethod
            def sm(x: int) -> int:
                return -x

            def add(self, x: int) -> int:
                return self.base + x
    """,
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPlatform, Any]]:
    root = (tmp_path_factory.mktemp("classmethods") / "project").resolve()
    with served_files(root, FILES) as platform:
        from kapp import k  # type: ignore[import-not-found]

        yield platform, k


def _runsync(platform: LocalPlatform, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    body = {"input": {"function": "K", "init": {"base": 10}, "method": method, "kwargs": kwargs}}
    headers = {"Authorization": f"Bearer {platform.api_key}"} if platform.api_key else {}
    response = httpx.post(
        f"{platform.url}/v2/k-cpu/runsync", json=body, headers=headers, timeout=60
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_typed_classmethod_takes_a_plain_json_call(served: Any) -> None:
    platform, _ = served
    answers = [_runsync(platform, m, {"x": 2}) for m in ("cm", "sm", "add")]
    assert [a["status"] for a in answers] == ["COMPLETED"] * 3, answers
    assert [a["output"]["result"] for a in answers] == ["K:2", -2, 12]
    assert all(a["output"]["encoding"] == "json" for a in answers)
    bad = _runsync(platform, "cm", {"x": "two"})
    assert bad["status"] == "FAILED" and "kwargs.x" in bad["error"], bad


def test_the_python_client_calls_a_classmethod_with_json(served: Any) -> None:
    _, k = served
    handle = k.K.options(serialization="json")(10)

    async def main() -> list[Any]:
        return [await handle.cm(3), await handle.sm(3), await handle.add(3)]

    assert asyncio.run(main()) == ["K:3", -3, 13]
