"""``flash.disconnect()`` runs calls in this process again, until the next ``connect``:
also in a script given ``FLASH_API_BASE``. Through the local platform."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import Logs
from tests.integration.projects import served_files

FILES = {
    "pyproject.toml": """
        [project]
        name = "disconnectapp"
        version = "0.1.0"
        dependencies = []
    """,
    "disconnectapp/__init__.py": "",
    "disconnectapp/work.py": """
        import os

        from flash import CpuLiveServerless, remote

        far = CpuLiveServerless(name="far", workersMax=1)


        @remote(far)
        def where(tag: str) -> str:
            return f"{tag}@{os.environ.get('FLASH_RESOURCE_NAME') or 'here'}"
    """,
}

SCRIPT = """
import json

import flash
from disconnectapp.work import where

seen = [where.call("env")]
flash.disconnect()
seen.append(where.call("disconnected"))
seen.append(where.call("still"))
flash.connect(URL)
seen.append(where.call("connected"))
flash.disconnect()
seen.append(where.call("again"))
print(json.dumps(seen))
"""


def test_disconnect_runs_calls_here_when_the_environment_names_a_platform(
    tmp_path: Path,
) -> None:
    root = tmp_path / "proj"
    with served_files(root, FILES, echo=Logs()) as platform:
        env = {**os.environ, "FLASH_API_BASE": platform.url}
        if platform.api_key:
            env["FLASH_API_KEY"] = platform.api_key
        script = SCRIPT.replace("URL", repr(platform.url))
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=root,  # run from the project's folder, as the README says
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        "env@far",
        "disconnected@here",
        "still@here",
        "connected@far",
        "again@here",
    ]
