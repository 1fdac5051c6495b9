"""Fixtures the tests of several folders share."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def worker_processes() -> Iterator[list[subprocess.Popen[Any]]]:
    """Worker processes a test starts: killed at its end if still running."""
    started: list[subprocess.Popen[Any]] = []
    yield started
    for worker in started:
        if worker.poll() is None:
            worker.kill()
            worker.communicate(timeout=30)
