"""``fn.stream()`` against an endpoint that answers ``/stream`` at once, as RunPod's does."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.helpers import QuietHandler, serve_http

import flash
from flash import CpuLiveServerless, remote
from flash.runtime.client import Endpoints, PlatformInvoker
from flash.runtime.remote import set_invoker
from flash.runtime.signing import generate_key


@remote(CpuLiveServerless(name="api"))
def ticks(n: int) -> Iterator[int]:
    yield from range(n)


class _SlowJob(QuietHandler):
    """A job that never produces an item: every /stream poll answers IN_PROGRESS, empty."""

    requests: list[tuple[str, str]] = []

    def _answer(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _SlowJob.requests.append(("POST", self.path))
        self._answer({"id": "j1", "status": "IN_QUEUE"})

    def do_GET(self) -> None:
        _SlowJob.requests.append(("GET", self.path))
        self._answer({"status": "IN_PROGRESS", "stream": []})


@pytest.fixture
def slow_endpoint() -> Iterator[str]:
    _SlowJob.requests = []
    with serve_http(_SlowJob) as port:
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            set_invoker(None)


def test_a_stream_backs_off_and_stops_at_its_timeout(slow_endpoint: str) -> None:
    set_invoker(PlatformInvoker(Endpoints(slow_endpoint), signing_key=generate_key()))

    async def main() -> list[int]:
        return [item async for item in ticks.options(timeout=1.0).stream(3)]

    started = time.monotonic()
    with pytest.raises(flash.RemoteTimeoutError):
        asyncio.run(asyncio.wait_for(main(), 20))
    assert time.monotonic() - started < 10
    polls = [path for method, path in _SlowJob.requests if path.startswith("/v2/api/stream/")]
    # Backing off from 5 ms to 1 s makes about ten polls in a second, not thousands.
    assert 1 <= len(polls) <= 30, len(polls)
    assert ("POST", "/v2/api/cancel/j1") in _SlowJob.requests  # the job is told to stop
