"""A caller unpickles nothing from an answer it cannot check came from its app's worker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import CreatesFile, QuietHandler, serve_http

import flash
from flash import CpuLiveServerless, remote
from flash.runtime.client import Endpoints, PlatformInvoker
from flash.runtime.remote import set_invoker
from flash.runtime.serialization import serialize
from flash.runtime.signing import generate_key, sign_result


@remote(CpuLiveServerless(name="api"))
def typed(x: int) -> int:  # called with JSON: every type is JSON-able
    return x


@remote(CpuLiveServerless(name="api"))
def loose(x):  # untyped: called with a signed pickle
    return x


class _Endpoint(QuietHandler):
    """Answers every call with a failed job whose answer carries a pickled exception."""

    answer: dict[str, Any] = {}  # type: ignore[assignment]  # shadows QuietHandler.answer
    bodies: list[dict[str, Any]] = []
    key: bytes | None = None  # set: the answer is signed, as the app's worker signs it

    def do_POST(self) -> None:
        _Endpoint.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        output = dict(_Endpoint.answer)
        if _Endpoint.key is not None:
            nonce = _Endpoint.bodies[-1]["input"]["signature"]["nonce"]
            fields = {**output, "error": "boom"}  # the worker loop moves "error" to the job
            output["mac"] = sign_result(_Endpoint.key, nonce=nonce, result_fields=fields)
        job = {"id": "j1", "status": "FAILED", "error": "boom", "output": output}
        body = json.dumps(job).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    marker = tmp_path / "pwned"
    _Endpoint.answer = {
        "success": False,
        "error_type": "QuotaError",
        "traceback": "",
        "exception": serialize(CreatesFile(marker)),
        "protocol_version": 1,
    }
    _Endpoint.bodies = []
    _Endpoint.key = None
    with serve_http(_Endpoint) as port:
        try:
            yield f"http://127.0.0.1:{port}", marker
        finally:
            set_invoker(None)


def test_an_unsigned_json_call_never_unpickles_the_answer(hostile: tuple[str, Path]) -> None:
    url, marker = hostile
    set_invoker(PlatformInvoker(Endpoints(url)))  # no key: JSON calls go unsigned
    with pytest.raises(flash.RemoteExecutionError) as info:
        asyncio.run(typed(1))
    assert info.value.remote_type == "QuotaError" and "boom" in str(info.value)
    assert "signature" not in _Endpoint.bodies[0]["input"]
    assert not marker.exists()


@pytest.mark.parametrize("mac", [None, "0" * 64], ids=["unsigned", "forged"])
def test_a_signed_json_call_unpickles_only_a_signed_answer(
    hostile: tuple[str, Path], mac: str | None
) -> None:
    url, marker = hostile
    if mac is not None:
        _Endpoint.answer["mac"] = mac
    set_invoker(PlatformInvoker(Endpoints(url), signing_key=generate_key()))
    with pytest.raises(flash.RemoteExecutionError) as info:
        asyncio.run(typed(1))
    # What the answer says is kept as text (a worker without the key cannot sign it)...
    assert info.value.remote_type == "QuotaError" and "boom" in str(info.value)
    assert "signature" in _Endpoint.bodies[0]["input"]  # the key holder signs JSON calls too
    assert not marker.exists()


def test_an_answer_the_apps_worker_signed_raises_the_remote_exception_itself(
    hostile: tuple[str, Path],
) -> None:
    url, _ = hostile
    key = generate_key()
    _Endpoint.key = key
    _Endpoint.answer["exception"] = serialize(ValueError("monthly quota used up"))
    set_invoker(PlatformInvoker(Endpoints(url), signing_key=key))
    with pytest.raises(ValueError, match="monthly quota"):
        asyncio.run(typed(1))


class _Completed(QuietHandler):
    """Answers every call with a completed job: ``output``, signed (when ``key`` is set) for
    ``nonce``, or the request's nonce when that is None."""

    output: dict[str, Any] = {}
    bodies: list[dict[str, Any]] = []
    key: bytes | None = None
    nonce: str | None = None

    def do_POST(self) -> None:
        _Completed.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        output = dict(_Completed.output)
        if _Completed.key is not None:
            nonce = _Completed.nonce or _Completed.bodies[-1]["input"]["signature"]["nonce"]
            output["mac"] = sign_result(_Completed.key, nonce=nonce, result_fields=output)
        self.answer(200, json.dumps({"id": "j1", "status": "COMPLETED", "output": output}).encode())


@pytest.fixture
def succeeding(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An endpoint answering a pickled call with success, and a result that, unpickled,
    creates the marker file."""
    marker = tmp_path / "pwned"
    _Completed.output = {
        "success": True,
        "result": serialize(CreatesFile(marker)),
        "protocol_version": 1,
    }
    _Completed.bodies = []
    _Completed.key = None
    _Completed.nonce = None
    with serve_http(_Completed) as port:
        try:
            yield f"http://127.0.0.1:{port}", marker
        finally:
            set_invoker(None)


@pytest.mark.parametrize("forgery", ["unsigned", "forged", "other-nonce", "other-key"])
def test_a_forged_success_answer_to_a_signed_pickled_call_is_never_unpickled(
    succeeding: tuple[str, Path], forgery: str
) -> None:
    url, marker = succeeding
    key = generate_key()
    if forgery == "forged":
        _Completed.output["mac"] = "0" * 64
    elif forgery == "other-nonce":  # a MAC the worker made for another request's answer
        _Completed.key, _Completed.nonce = key, "ab" * 16
    elif forgery == "other-key":
        _Completed.key = generate_key()
    set_invoker(PlatformInvoker(Endpoints(url), signing_key=key))
    with pytest.raises(flash.RemoteError, match="failed its signature check"):
        asyncio.run(loose(1))
    assert "function_name" in _Completed.bodies[0]["input"]  # it was a pickled call...
    assert "signature" in _Completed.bodies[0]["input"]  # ...and a signed one
    assert not marker.exists()


def test_a_success_answer_the_apps_worker_signed_is_returned(
    succeeding: tuple[str, Path],
) -> None:
    url, _ = succeeding
    key = generate_key()
    _Completed.key = key
    _Completed.output["result"] = serialize({"sum": 5})
    set_invoker(PlatformInvoker(Endpoints(url), signing_key=key))
    assert asyncio.run(loose(1)) == {"sum": 5}
