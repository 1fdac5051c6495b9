"""``flash.connect`` against a platform that asks for an API key, as `flash serve --api-key`
starts one."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator

import pytest
from tests.helpers import Logs
from tests.integration.projects import served_files

import flash
from flash.platform import LocalPlatform

API_KEY = "k-" + "7" * 30

FILES = {
    "pyproject.toml": """
        [project]
        name = "keyedapp"
        version = "0.1.0"
        dependencies = []
    """,
    "keyedapp/__init__.py": "",
    "keyedapp/work.py": """
        from flash import CpuLiveServerless, remote


        @remote(CpuLiveServerless(name="keyed"))
        def double(x: int) -> int:
            return 2 * x
    """,
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    root = tmp_path_factory.mktemp("keyed") / "proj"
    with served_files(root, FILES, echo=Logs(), api_key=API_KEY) as served:
        yield served


def test_connect_takes_the_api_key_from_the_environment(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = importlib.import_module("keyedapp.work")
    monkeypatch.setenv("FLASH_API_KEY", API_KEY)
    try:
        flash.connect(platform.url, signing_key=platform.signing_key)
        assert asyncio.run(work.double(4)) == 8
        # An api_key given wins over the environment's; the refusal shows neither key.
        flash.connect(platform.url, "k-wrong", signing_key=platform.signing_key)
        with pytest.raises(flash.EndpointUnavailableError, match="HTTP 401") as info:
            asyncio.run(work.double(4))
    finally:
        flash.disconnect()
    assert API_KEY not in str(info.value) and "k-wrong" not in str(info.value)


def test_a_refusal_says_what_to_check_on_this_side(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = importlib.import_module("keyedapp.work")
    monkeypatch.delenv("FLASH_API_KEY", raising=False)
    try:
        flash.connect(platform.url, signing_key=platform.signing_key)
        with pytest.raises(flash.EndpointUnavailableError) as no_key:
            asyncio.run(work.double(4))
        flash.connect(platform.url, "k-wrong", signing_key=platform.signing_key)
        with pytest.raises(flash.EndpointUnavailableError) as wrong_key:
            asyncio.run(work.double(4))
        # Another project's platform: it has no endpoint of this name.
        flash.connect(
            platform.url,
            API_KEY,
            endpoint_ids={"keyed": "elsewhere"},
            signing_key=platform.signing_key,
        )
        with pytest.raises(flash.EndpointUnavailableError) as unknown:
            asyncio.run(work.double(4))
    finally:
        flash.disconnect()
    advice = "set $FLASH_API_KEY to the platform's (flash run --api-key, flash serve --api-key)"
    assert f"this client sends no API key: {advice}" in str(no_key.value)
    assert f"this client sends an API key the platform refuses: {advice}" in str(wrong_key.value)
    assert "HTTP 404" in str(unknown.value)
    assert (
        f"; is {platform.url} ($FLASH_API_BASE, or flash.connect's URL) the platform serving "
        "this project?"
    ) in str(unknown.value)
