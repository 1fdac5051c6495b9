"""Fixtures for the platform's end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

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


@pytest.fixture
def platform_factory(tmp_path: Path) -> Iterator[Callable[..., LocalPlatform]]:
    """Start platforms serving an app (state in ``tmp_path / "state"`` unless ``state``
    says), each stopped at the end of the test."""
    started: list[LocalPlatform] = []

    def make(app: Path, state: Path | None = None, **kw: object) -> LocalPlatform:
        kw.setdefault("echo", Logs())
        platform = LocalPlatform(state or tmp_path / "state", **kw)  # type: ignore[arg-type]
        platform.start()
        platform.load_app(app)
        started.append(platform)
        use_client(platform)
        return platform

    yield make
    for platform in started:
        platform.stop(grace_s=1)
