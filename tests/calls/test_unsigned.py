"""A client without the app's key sends no pickle, and so unpickles no answer, unless told
that unsigned pickles are fine (trusted local experiments), as workers are told."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.calls.support import Restartable
from tests.helpers import CreatesFile

import flash
from flash import CpuLiveServerless, remote
from flash.runtime.client import Endpoints, PlatformInvoker
from flash.runtime.remote import set_invoker
from flash.runtime.serialization import serialize


@remote(CpuLiveServerless(name="api"))
def untyped(x):  # type: ignore[no-untyped-def]  # no hints: it takes pickled calls only
    return x


@pytest.mark.parametrize(
    ("environment", "allow_unsigned", "sent"),
    [
        (None, None, False),
        ("0", None, False),
        ("1", None, True),  # FLASH_ALLOW_UNSIGNED=1, as for workers
        ("1", False, False),
        (None, True, True),
    ],
)
def test_unsigned_pickles_go_only_where_allowed(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    environment: str | None,
    allow_unsigned: bool | None,
    sent: bool,
) -> None:
    marker = tmp_path / "pwned"
    bodies: list[Any] = []

    def answer(method: str, path: str, headers: dict[str, str], body: Any) -> Any:
        bodies.append(body)  # whoever answers may put any pickle in the answer
        output = {"success": True, "result": serialize(CreatesFile(marker))}
        return 200, {"id": "j1", "status": "COMPLETED", "output": output}

    if environment is None:
        monkeypatch.delenv("FLASH_ALLOW_UNSIGNED", raising=False)
    else:
        monkeypatch.setenv("FLASH_ALLOW_UNSIGNED", environment)
    platform = Restartable(answer)
    invoker = PlatformInvoker(Endpoints(platform.url), allow_unsigned=allow_unsigned)
    with _calling_through(invoker, platform):
        if sent:
            untyped.call(1)
        else:
            with pytest.raises(flash.RemoteError, match="needs the app's signing key"):
                untyped.call(1)
    assert len(bodies) == int(sent)
    assert marker.exists() is sent  # allowed: this caller chose to trust its platform
    assert all("signature" not in body["input"] for body in bodies)


def test_an_unsigned_answer_is_unpickled_only_while_unsigned_is_allowed(tmp_path: Path) -> None:
    # The second guard: a caller no longer allowed unsigned pickles by the time the answer
    # comes (it changed its mind mid-call) refuses it, though it sent the call unsigned.
    marker = tmp_path / "pwned"

    def answer(method: str, path: str, headers: dict[str, str], body: Any) -> Any:
        invoker.allow_unsigned = False
        output = {"success": True, "result": serialize(CreatesFile(marker))}
        return 200, {"id": "j1", "status": "COMPLETED", "output": output}

    platform = Restartable(answer)
    invoker = PlatformInvoker(Endpoints(platform.url), allow_unsigned=True)
    with (
        _calling_through(invoker, platform),
        pytest.raises(flash.RemoteError, match="refusing to unpickle an answer nobody"),
    ):
        untyped.call(1)
    assert not marker.exists()


@contextlib.contextmanager
def _calling_through(invoker: PlatformInvoker, platform: Restartable) -> Iterator[None]:
    """Calls in the block go through ``invoker``; then it and ``platform`` are closed."""
    previous = set_invoker(invoker)
    try:
        yield
    finally:
        set_invoker(previous)
        invoker.close()
        platform.close()
