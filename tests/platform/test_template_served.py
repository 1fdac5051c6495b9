"""The `flash init` project, built by `flash build`, served, and called with the runpod client."""

from __future__ import annotations

import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from tests.helpers import Logs
from tests.platform.apps import LOOPS

from flash.build.pipeline import BuildOptions, build_project
from flash.cli.init import write_starter
from flash.platform.archive import extract_archive
from flash.platform.local import LocalPlatform
from flash.runtime.serialization import deserialize, serialize_args
from flash.runtime.signing import (
    KEY_ENV_VAR,
    generate_key,
    key_from_text,
    key_to_text,
    sign_request,
)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template") / "proj"
    write_starter(root)
    return build_project(BuildOptions(project_dir=root)).archive


@pytest.mark.parametrize("loop", LOOPS)
def test_built_template_serves_its_endpoints(archive: Path, tmp_path: Path, loop: str) -> None:
    assert tarfile.is_tarfile(archive)
    key = generate_key()
    app = extract_archive(archive, tmp_path / "serve")
    platform = LocalPlatform(
        tmp_path / "state",
        echo=Logs(),
        worker_loop=loop,
        worker_env={KEY_ENV_VAR: key_to_text(key)},  # the app's key, for its workers only
    )
    platform.start()
    try:
        specs = platform.load_app(app)
        assert {"gpu-worker", "cpu-worker"} <= set(specs)
        vectors = _call_embed(platform.url, key, ["abc", "aab"])
        assert vectors[0][:3] == [0.3333, 0.3333, 0.3333]
        assert vectors[1][:2] == [0.6667, 0.3333]
        # A class endpoint keeps its instance between jobs.
        answers = [_call_class(platform.url, key, "great day") for _ in range(2)]
        assert answers == [
            {"label": "positive", "calls": 1},
            {"label": "positive", "calls": 2},
        ]
    finally:
        platform.stop()


def _call_embed(url: str, key: bytes, texts: list[str]) -> Any:
    args, kwargs = serialize_args([texts], {})
    job = {"function_name": "embed", "execution_type": "function", "args": args, "kwargs": kwargs}
    return _signed_call(url, key, "gpu-worker", job)


def _call_class(url: str, key: bytes, text: str) -> object:
    args, kwargs = serialize_args([["great"]], {})
    method_args, method_kwargs = serialize_args([text], {})
    job = {
        "function_name": "Classifier",
        "execution_type": "class",
        "args": args,
        "kwargs": kwargs,
        "method_name": "predict",
        "method_args": method_args,
        "method_kwargs": method_kwargs,
    }
    return _signed_call(url, key, "classifier", job)


def _signed_call(url: str, key: bytes, endpoint: str, job: dict[str, Any]) -> Any:
    """Sign ``job`` as a caller holding ``key`` would, run it, and return its result."""
    job["signature"] = sign_request(
        key,
        endpoint=endpoint,
        function=job["function_name"],
        fields=job,
        deadline=time.time() + 60,
    )
    answer = requests.post(f"{url}/v2/{endpoint}/runsync", json={"input": job}, timeout=60).json()
    assert answer["status"] == "COMPLETED", answer.get("error")
    output = _answer(answer["output"])
    assert output["success"] is True, output
    return deserialize(output["result"])


def _answer(output: object) -> dict:
    """The handler's answer: a generator handler's single chunk arrives as a one-item list."""
    if isinstance(output, list):
        (output,) = output
    assert isinstance(output, dict), output
    return output


def test_client_env_signs_calls_the_workers_accept(archive: Path, tmp_path: Path) -> None:
    # No key given: the platform makes the project's own, once, for workers and clients.
    logs = Logs()
    platform = LocalPlatform(tmp_path / ".flash", echo=logs)
    platform.start()
    try:
        platform.load_app(extract_archive(archive, tmp_path / "serve"))
        env = platform.client_env()
        assert env["FLASH_API_BASE"] == platform.url
        key_file = tmp_path / ".flash" / "secrets" / "signing_key"
        assert env[KEY_ENV_VAR] == key_file.read_text().strip()
        assert key_file.stat().st_mode & 0o777 == 0o600
        key = key_from_text(env[KEY_ENV_VAR])
        assert len(_call_embed(env["FLASH_API_BASE"], key, ["abc"])) == 1
    finally:
        platform.stop()
    assert env[KEY_ENV_VAR] not in logs.text()
