"""A ``str`` holding a lone surrogate is valid JSON once escaped ("\\ud83d"): such a value
goes through end to end (worker answers, stream chunks, stored outputs, HTTP answers and
webhooks, the Python client), not lost after the function has run."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import runpod
from tests.helpers import Logs, wait_for
from tests.integration.projects import served_files
from tests.platform.apps import BASIC, ended, write_app
from tests.platform.test_webhook_delivery import Inbox, receiving

from flash.platform.local import LocalPlatform

LONE = "héllo \ud83d and \udc00 alone"

ECHO_STREAM = """
from flash.runtime.worker import start

def handler(job):
    for item in job["input"]["items"]:
        yield item

if __name__ == "__main__":
    start(handler)
"""

FILES = {
    "pyproject.toml": """
        [project]
        name = "loneapp"
        version = "0.1.0"
        dependencies = []
    """,
    "loneapp/__init__.py": "",
    "loneapp/work.py": """
        from flash import CpuLiveServerless, remote

        texts = CpuLiveServerless(name="texts", workersMax=1)


        @remote(texts)
        def t_str(s: str) -> str:
            return s


        @remote(texts)
        def t_dict(s: str) -> dict:
            return {s: [s, {"k": s}]}
    """,
}


def _post(platform: LocalPlatform, path: str, body: Any) -> requests.Response:
    return requests.post(
        f"{platform.url}/v2/{path}",
        headers={"Authorization": "Bearer test-key"},
        json=body,
        timeout=60,
    )


@pytest.fixture
def app_platform(
    tmp_path: Path,
    platform_factory: Callable[..., LocalPlatform],
) -> LocalPlatform:
    app = write_app(
        tmp_path / "app",
        {
            "basic": (BASIC, {"workersMax": 1, "idleTimeout": 60}),
            "echostream": (ECHO_STREAM, {"workersMax": 1, "idleTimeout": 60}),
        },
    )
    return platform_factory(app)


def test_a_lone_surrogate_comes_back_from_runsync_and_status(app_platform: LocalPlatform) -> None:
    answer = _post(app_platform, "basic/runsync", {"input": {"action": "echo", "value": LONE}})
    assert answer.status_code == 200
    data = json.loads(answer.content)  # the answer's JSON text, whatever escaping it uses
    assert data["status"] == "COMPLETED", data
    assert data["output"] == {"echo": LONE}
    answer = _post(app_platform, "basic/runsync", {"input": {"action": "scalar", "value": LONE}})
    assert json.loads(answer.content)["output"] == LONE
    job = _post(app_platform, "basic/run", {"input": {"action": "echo", "value": [LONE]}})
    final = ended(app_platform, "basic", job.json()["id"])
    assert final["status"] == "COMPLETED", final
    assert final["output"] == {"echo": [LONE]}


def test_a_stream_chunk_holding_a_lone_surrogate_is_streamed(app_platform: LocalPlatform) -> None:
    items = ["plain", LONE, {"k": LONE}]
    job = _post(app_platform, "echostream/run", {"input": {"items": items}}).json()
    final = ended(app_platform, "echostream", job["id"])
    assert final["status"] == "COMPLETED", final
    assert final["output"] == items
    streamed = requests.get(
        f"{app_platform.url}/v2/echostream/stream/{job['id']}",
        headers={"Authorization": "Bearer test-key"},
        timeout=60,
    ).json()
    assert [chunk["output"] for chunk in streamed["stream"]] == items
    job = runpod.Endpoint("echostream").run({"items": items})
    assert list(job.stream()) == items


def test_a_webhook_carries_a_lone_surrogate(
    tmp_path: Path, platform_factory: Callable[..., LocalPlatform]
) -> None:
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))
    inbox = Inbox()
    with receiving(inbox) as port:
        job = _post(
            platform,
            "basic/run",
            {"input": {"action": "echo", "value": LONE}, "webhook": f"http://127.0.0.1:{port}/h"},
        ).json()
        assert ended(platform, "basic", job["id"])["status"] == "COMPLETED"
        wait_for(lambda: inbox.bodies("/h"), 30, "the webhook")
    assert inbox.bodies("/h")[0]["output"] == {"echo": LONE}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    root = tmp_path_factory.mktemp("lone") / "proj"
    with served_files(root, FILES, echo=Logs()) as served:
        yield served


def test_a_remote_function_returns_a_lone_surrogate_through_the_client(
    project: LocalPlatform,
) -> None:
    work = importlib.import_module("loneapp.work")
    assert asyncio.run(work.t_str(LONE)) == LONE
    assert asyncio.run(work.t_str("\ud83d")) == "\ud83d"
    assert asyncio.run(work.t_dict(LONE)) == {LONE: [LONE, {"k": LONE}]}


def test_runsync_of_a_remote_function_returns_a_lone_surrogate(project: LocalPlatform) -> None:
    answer = requests.post(
        f"{project.url}/v2/texts/runsync",
        json={"input": {"function": "t_str", "kwargs": {"s": LONE}}},
        timeout=60,
    )
    data = json.loads(answer.content)
    assert data["status"] == "COMPLETED", data
    assert data["output"]["result"] == LONE
