"""Endpoint settings read from an app's manifest, as ``flash serve`` reads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flash.platform.manifest import PlatformError, read_manifest
from flash.runtime.protocol import MANIFEST_FILENAME, MAX_POLICY_MS


def _app(tmp_path: Path, config: dict[str, Any]) -> Path:
    (tmp_path / "handler.py").write_text("", encoding="utf-8")
    manifest = {"resources": {"gpu": {"handler_file": "handler.py", "config": config}}}
    (tmp_path / MANIFEST_FILENAME).write_text(json.dumps(manifest), encoding="utf-8")
    return tmp_path


def test_a_huge_execution_timeout_from_an_older_build_means_the_longest_one(
    tmp_path: Path,
) -> None:
    # Builds before the build-time bounds wrote any integer; a float cannot hold 10**400.
    specs = read_manifest(_app(tmp_path, {"executionTimeoutMs": 10**400}))
    assert specs["gpu"].execution_timeout_ms == MAX_POLICY_MS


@pytest.mark.parametrize(
    ("key", "text"),
    [("idleTimeout", str(10**400)), ("workersMax", str(10**400)), ("scalerValue", "Infinity")],
)
def test_a_number_too_big_to_use_is_an_error_naming_endpoint_and_field(
    tmp_path: Path, key: str, text: str
) -> None:
    app = _app(tmp_path, {key: 0})
    path = app / MANIFEST_FILENAME
    path.write_text(path.read_text(encoding="utf-8").replace(f'"{key}": 0', f'"{key}": {text}'))
    with pytest.raises(PlatformError) as caught:
        read_manifest(app)
    message = str(caught.value)
    assert f"resources.gpu.config.{key}: " in message
    assert "too big" in message or "expected a finite number" in message
    assert len(message) < 300  # not the 400 digits
