"""The generic handler unpickles nothing it cannot trust: signed requests only."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import CreatesFile

from flash.runtime.generic_handler import create_handler
from flash.runtime.serialization import deserialize, serialize, serialize_args
from flash.runtime.signing import generate_key, sign_request, verify_result

KEY = generate_key()
ENDPOINT = "gpu-worker"


def add(a: int, b: int) -> int:
    return a + b


def job(
    args: tuple[Any, ...],
    *,
    key: bytes | None = KEY,
    endpoint: str = ENDPOINT,
    function: str = "add",
    deadline: float | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    wire_args, wire_kwargs = serialize_args(args, {})
    payload: dict[str, Any] = {"function_name": "add", "args": wire_args, "kwargs": wire_kwargs}
    if key is not None:
        payload["signature"] = sign_request(
            key,
            endpoint=endpoint,
            function=function,
            fields=payload,
            deadline=deadline or time.time() + 60,
            now=now,
        )
    return {"id": "job-1", "input": payload}


def run(handler: Any, job: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(handler(job))


@pytest.fixture
def handler() -> Any:
    return create_handler({"add": add}, endpoint=ENDPOINT, signing_key=KEY)


def test_signed_request_runs_and_the_answer_is_signed(handler: Any) -> None:
    request = job((2, 3))
    answer = run(handler, request)
    assert answer["success"] and deserialize(answer["result"]) == 5
    mac = answer.pop("mac")
    verify_result(KEY, mac, nonce=request["input"]["signature"]["nonce"], result_fields=answer)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: job((CreatesFile(p),), key=None), id="unsigned"),
        pytest.param(lambda p: job((CreatesFile(p),), key=generate_key()), id="wrong-key"),
        pytest.param(lambda p: job((CreatesFile(p),), endpoint="other"), id="other-endpoint"),
        pytest.param(lambda p: job((CreatesFile(p),), function="sub"), id="other-function"),
    ],
)
def test_bad_signatures_are_refused_before_unpickling(
    handler: Any, tmp_path: Path, make: Any
) -> None:
    marker = tmp_path / "pwned"
    answer = run(handler, make(str(marker)))
    assert not answer["success"] and answer["error_type"] == "SignatureRejected"
    assert not marker.exists()
    assert deserialize(run(handler, job((1, 1)))["result"]) == 2  # still serving


def test_tampered_payload_is_refused(handler: Any, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    request = job((1, 2))
    request["input"]["args"] = [serialize(CreatesFile(str(marker)))]
    answer = run(handler, request)
    assert answer["error_type"] == "SignatureRejected"
    assert not marker.exists()


def test_big_payloads_go_through_and_a_tampered_one_is_never_unpickled(
    handler: Any, tmp_path: Path
) -> None:
    # A big pickle is decoded to be hashed once the signature's MAC passed, and unpickled
    # only after its digest matched; the answer's big result is signed the same way.
    data = os.urandom(300_000)
    request = json.loads(json.dumps(job((data, b"!"))))  # plain strings, as sent
    answer = run(handler, request)
    assert answer["success"]
    mac = answer.pop("mac")
    nonce = request["input"]["signature"]["nonce"]
    decoded: dict[int, bytes] = {}
    verify_result(KEY, mac, nonce=nonce, result_fields=answer, decoded=decoded)
    assert deserialize(answer["result"], decoded) == data + b"!"

    marker = tmp_path / "pwned"
    request = json.loads(json.dumps(job((data, b"!"))))
    request["input"]["args"][0] = serialize((CreatesFile(str(marker)), data))
    answer = run(handler, request)
    assert answer["error_type"] == "SignatureRejected" and "altered" in answer["error"]
    assert not marker.exists()
    assert deserialize(run(handler, job((1, 1)))["result"]) == 2  # still serving


def test_expired_request_is_refused(handler: Any, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    # Validly signed an hour ago, for a deadline that passed ten minutes later.
    an_hour_ago = time.time() - 3600
    request = job((CreatesFile(str(marker)),), deadline=an_hour_ago + 600, now=an_hour_ago)
    answer = run(handler, request)
    assert answer["error_type"] == "SignatureRejected"
    assert "expired" in answer["error"]
    assert not marker.exists()
    assert deserialize(run(handler, job((2, 5)))["result"]) == 7  # still serving


def test_replayed_request_is_refused(handler: Any) -> None:
    request = job((2, 2))
    assert run(handler, request)["success"]
    # Sent again, it is another job (the platform gives each its own id): a replay.
    again = run(handler, {**request, "id": "job-2"})
    assert again["error_type"] == "SignatureRejected" and "replay" in again["error"].lower()
    # The same job again (the platform's /retry, or a rerun after a crash) is no replay.
    assert run(handler, request)["success"]
    assert deserialize(run(handler, job((4, 4)))["result"]) == 8  # a fresh call still runs


def test_without_a_key_pickles_are_refused_unless_allowed(tmp_path: Path) -> None:
    os.environ.pop("FLASH_SIGNING_KEY", None)
    strict = create_handler({"add": add}, signing_key=None, allow_unsigned=False)
    marker = tmp_path / "pwned"
    answer = run(strict, job((CreatesFile(str(marker)),), key=None))
    assert answer["error_type"] == "SignatureRejected" and "FLASH_SIGNING_KEY" in answer["error"]
    assert not marker.exists()
    relaxed = create_handler({"add": add}, signing_key=None, allow_unsigned=True)
    assert deserialize(run(relaxed, job((1, 2), key=None))["result"]) == 3


def test_python_version_mismatch_is_reported_as_such(
    handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sign as a caller on another Python: the MAC is valid and only the versions differ.
    from flash.runtime import signing

    real = signing.local_versions()
    monkeypatch.setattr(
        signing, "local_versions", lambda: {"python": "3.99", "cloudpickle": real["cloudpickle"]}
    )
    request = job((1, 2))
    monkeypatch.undo()
    answer = run(handler, request)
    assert answer["error_type"] == "VersionMismatch"
    assert "3.99" in answer["error"]


def signed_by_cloudpickle(version: str, args: tuple[Any, ...]) -> dict[str, Any]:
    """A job signed by a caller whose cloudpickle is ``version`` (same Python): its MAC is
    valid, only the declared versions differ."""
    from flash.runtime import signing

    real = signing.local_versions()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            signing, "local_versions", lambda: {"python": real["python"], "cloudpickle": version}
        )
        return job(args)


def test_cloudpickle_major_mismatch_is_reported_as_such_and_nothing_is_unpickled(
    handler: Any, tmp_path: Path
) -> None:
    from flash.runtime.signing import local_versions

    marker = tmp_path / "pwned"
    answer = run(handler, signed_by_cloudpickle("99.0.1", (CreatesFile(str(marker)),)))
    assert not answer["success"] and answer["error_type"] == "VersionMismatch"
    mine = ".".join(local_versions()["cloudpickle"].split(".")[:2])
    assert "cloudpickle 99.0" in answer["error"] and f"cloudpickle {mine}" in answer["error"]
    assert "major version" in answer["error"]
    assert not marker.exists()
    assert deserialize(run(handler, job((1, 2)))["result"]) == 3  # still serving


def test_cloudpickle_of_the_same_major_version_is_no_mismatch(handler: Any) -> None:
    from flash.runtime.signing import local_versions

    major = local_versions()["cloudpickle"].split(".")[0]
    answer = run(handler, signed_by_cloudpickle(f"{major}.99.0", (2, 3)))
    assert answer["success"] and deserialize(answer["result"]) == 5


def test_signing_handler_needs_its_endpoint_name() -> None:
    os.environ.pop("FLASH_RESOURCE_NAME", None)
    with pytest.raises(ValueError, match="endpoint"):
        create_handler({"add": add}, signing_key=KEY)
