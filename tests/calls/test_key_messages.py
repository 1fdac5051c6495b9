"""A call refused for its signature names where the caller's key came from: the key file
it read, ``$FLASH_SIGNING_KEY``, or the key given to ``flash.connect``; that is what the
user has to fix, not always the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cli.test_cli_fixes import _script_call
from tests.cli.test_serve_key_changes import FlashServe, _built_starter

CONNECTED_CALL = (
    "import asyncio, os, flash\n"
    "from workers.cpu_worker import preprocess\n"
    "flash.connect(os.environ['URL'], signing_key=bytes.fromhex(os.environ['KEY']))\n"
    "print(asyncio.run(preprocess.options(serialization='pickle')(['  a   b '])))\n"
)
OLD_ADVICE = "check FLASH_SIGNING_KEY on caller and worker"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    """A built starter project served with a key of its own ($FLASH_SIGNING_KEY), not the
    one its key file holds: the project, its key file, the platform's URL."""
    project, key_file = _built_starter(tmp_path_factory.mktemp("keys"))
    serve = FlashServe(
        project / ".flash" / "archive.tar.gz",
        cwd=project,
        env={"FLASH_SIGNING_KEY": os.urandom(32).hex()},
    )
    try:
        yield project, key_file, serve.url()
    finally:
        serve.end()


def _refusal(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done.stdout
    lines = [line for line in done.stderr.splitlines() if "SignatureRejected" in line]
    assert lines, done.stderr
    return lines[-1]


def test_a_key_read_from_the_project_file_is_named_by_its_path(
    served: tuple[Path, Path, str],
) -> None:
    project, key_file, url = served
    message = _refusal(_script_call(project, url))
    assert str(key_file) in message, message
    assert OLD_ADVICE not in message and "FLASH_SIGNING_KEY" not in message, message
    assert key_file.read_text().strip() not in message  # never the key


def test_a_key_from_flash_signing_key_is_named_as_the_variable(
    served: tuple[Path, Path, str],
) -> None:
    project, key_file, url = served
    other = os.urandom(32).hex()
    message = _refusal(_script_call(project, url, FLASH_SIGNING_KEY=other))
    assert "$FLASH_SIGNING_KEY" in message, message
    assert str(key_file) not in message and other not in message, message


def test_a_key_given_to_flash_connect_is_named_so(served: tuple[Path, Path, str]) -> None:
    project, key_file, url = served
    other = os.urandom(32).hex()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASH_")}
    done = subprocess.run(
        [sys.executable, "-c", CONNECTED_CALL],
        cwd=project,
        env={**env, "URL": url, "KEY": other},
        capture_output=True,
        text=True,
        timeout=120,
    )
    message = _refusal(done)
    assert "flash.connect(signing_key=...)" in message, message
    assert str(key_file) not in message and OLD_ADVICE not in message, message
    assert other not in message
