"""A call whose platform goes away after accepting its job, for longer than the client rides
out: the error says the job is kept (it runs when the platform is back) and how to reach it,
so that the user does not run it a second time by calling again."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from tests.calls.support import Restartable

from flash import CpuLiveServerless, remote
from flash.runtime.client import OUTAGE_ENV_VAR, Endpoints, PlatformInvoker
from flash.runtime.errors import EndpointUnavailableError
from flash.runtime.remote import set_invoker


@remote(CpuLiveServerless(name="api"))
def slow(x: int) -> int:  # typed: called with JSON, so no key is needed
    return x


def test_an_outage_after_the_job_was_accepted_says_the_job_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(OUTAGE_ENV_VAR, "0.5")  # the user's setting: give up after 0.5 s
    accepted = threading.Event()

    def answer(method: str, path: str, headers: dict[str, str], body: Any) -> Any:
        if method == "POST":
            accepted.set()
        return 200, {"id": "job-77", "status": "IN_QUEUE"}  # a slow job: still queued

    platform = Restartable(answer)
    invoker = PlatformInvoker(Endpoints(platform.url))
    previous = set_invoker(invoker)
    try:
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(slow.call, 1)
            assert accepted.wait(20)
            platform.stop()  # gone, for longer than the client waits
            with pytest.raises(EndpointUnavailableError) as raised:
                call.result(timeout=30)
    finally:
        set_invoker(previous)
        invoker.close()
        platform.close()
    message = str(raised.value)
    assert "accepted job job-77 and keeps it" in message
    assert "runs when the platform is back" in message
    assert f"GET {platform.url}/v2/api/status/job-77" in message
    assert f"POST {platform.url}/v2/api/cancel/job-77" in message
