"""A signed request runs once on the platform: not on a second worker, nor after a restart."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers import final_status
from tests.integration.projects import write_files

from flash.platform import LocalPlatform, serve_project
from flash.runtime.protocol import PROTOCOL_VERSION
from flash.runtime.serialization import serialize_args
from flash.runtime.signing import sign_request

FILES = {
    "pyproject.toml": """
        [project]
        name = "signedapp"
        version = "0.1.0"
        dependencies = []
    """,
    "signedapp/__init__.py": "",
    "signedapp/jobs.py": """
        from pathlib import Path

        from flash import CpuLiveServerless, remote

        cpu = CpuLiveServerless(name="signed", workersMax=2)


        @remote(cpu)
        def record(path, line):  # untyped: called with signed pickles only
            with Path(path).open("a") as fh:
                fh.write(line + "\\n")
            return line


        @remote(cpu)
        def fails_once(path, line):
            if not Path(path).exists():
                Path(path).write_text("failed once")
                raise RuntimeError("the first run fails")
            return line
    """,
}
FUNCTION = "signedapp.jobs.record"
FLAKY = "signedapp.jobs.fails_once"


def _signed_body(platform: LocalPlatform, *args: Any, function: str = FUNCTION) -> dict[str, Any]:
    """A request as the Python client signs it (each of its calls gets a new nonce)."""
    wire_args, wire_kwargs = serialize_args(args, {})
    payload: dict[str, Any] = {
        "function_name": function,
        "args": wire_args,
        "kwargs": wire_kwargs,
        "protocol_version": PROTOCOL_VERSION,
    }
    assert platform.signing_key is not None
    payload["signature"] = sign_request(
        platform.signing_key,
        endpoint="signed",
        function=function,
        fields=payload,
        deadline=time.time() + 600,
    )
    return {"input": payload}


def _runsync(platform: LocalPlatform, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{platform.url}/v2/signed/runsync", json=body, timeout=60)


def test_a_replayed_signed_request_is_refused_by_every_worker_and_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Left over in the serving shell, this must not open the workers to unsigned pickles.
    monkeypatch.setenv("FLASH_ALLOW_UNSIGNED", "1")
    root = write_files(tmp_path / "proj", FILES)
    log = tmp_path / "ran.txt"
    with serve_project(root) as platform:
        body = _signed_body(platform, str(log), "first")
        first = _runsync(platform, body)
        assert first.json()["status"] == "COMPLETED"
        replayed = _runsync(platform, body)
        assert replayed.status_code == 409 and "submitted before" in replayed.json()["error"]
        # A fresh request runs (on whichever worker), and an unsigned one runs nowhere.
        assert _runsync(platform, _signed_body(platform, str(log), "second")).status_code == 200
        unsigned = _signed_body(platform, str(log), "unsigned")
        del unsigned["input"]["signature"]
        refused = _runsync(platform, unsigned).json()
        assert refused["status"] == "FAILED" and "not signed" in refused["error"]
    with serve_project(root) as platform:  # new workers, whose own caches are empty
        replayed = _runsync(platform, body)
        assert replayed.status_code == 409
    assert log.read_text().splitlines() == ["first", "second"]


def test_only_a_flash_signature_takes_a_nonce(tmp_path: Path) -> None:
    # A JSON call's own "signature" field, or a block no client of ours wrote, claims
    # nothing: sent twice, it is not a replay (the worker judges it), and never a 500.
    root = write_files(tmp_path / "proj", FILES)
    with serve_project(root) as platform:
        for block in (
            {"nonce": "a", "deadline": 10**400, "mac": "x"},
            {"nonce": "0" * 32, "deadline": time.time() + 60},  # no mac
            {"nonce": "0" * 32, "deadline": 10**400, "mac": "x"},
            {  # well formed but for its deadline, which no float holds
                "v": 4,
                "alg": "HMAC-SHA256",
                "endpoint": "signed",
                "function": FUNCTION,
                "digest": "0" * 64,
                "mac": "0" * 64,
                "nonce": "1" * 32,
                "deadline": 10**400,
                "caller": {"python": "3.11", "cloudpickle": "3.1.1"},
            },
        ):
            body = {"input": {"function_name": FUNCTION, "args": [], "signature": block}}
            for _ in range(2):
                refused = _runsync(platform, body)
                assert refused.status_code == 200
                assert refused.json()["status"] == "FAILED"


def test_a_retried_signed_job_runs_again_on_the_worker_that_ran_it(tmp_path: Path) -> None:
    # The same job again is no replay: the worker remembers which job each nonce came with.
    root = write_files(tmp_path / "proj", FILES)
    with serve_project(root) as platform:
        body = _signed_body(platform, str(tmp_path / "ran"), "second", function=FLAKY)
        failed = _runsync(platform, body).json()
        assert failed["status"] == "FAILED" and "first run fails" in failed["error"]
        url = f"{platform.url}/v2/signed"
        assert httpx.post(f"{url}/retry/{failed['id']}", timeout=30).status_code == 200
        ended = final_status(platform.url, "signed", failed["id"])
        assert ended["status"] == "COMPLETED" and ended["workerId"] == failed["workerId"]
