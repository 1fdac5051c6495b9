"""Fixtures for the platform's end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.helpers import Logs
from tests.platform.apps import LOOPS, STANDARD_ENDPOINTS, use_client, write_app

from flash.platform.local import LocalPlatform


@pytest.fixture(scope="module", params=LOOPS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalPlatform]:
    """One platform per worker loop serving the standard endpoints, shared by a module."""
    root = tmp_path_factory.mktemp(f"served-{request.param}")
    app = write_app(root / "app", STANDARD_ENDPOINTS)
    logs = Logs()
    platform = LocalPlatform(root / "state", echo=logs, worker_loop=request.param, max_workers=8)
    platform.logs = logs  # type: ignore[attr-defined]
    platform.start()
    platform.load_app(app)
    use_client(platform)
    try:
        yield platform
    finally:
        platform.stop()
