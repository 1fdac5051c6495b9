"""Hand-written app directories for the platform's tests, and small helpers to drive them.

An app directory is laid out like an extracted build archive: ``flash_manifest.json``, one
``handler_<name>.py`` per endpoint and a vendored ``flash/runtime`` (with an empty
``flash/__init__.py``) that shadows the installed package inside the workers.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import httpx
import runpod
from tests.helpers import final_status

import flash.runtime
from flash.platform.local import LocalPlatform

RUNTIME_DIR = Path(flash.runtime.__file__).parent
LOOPS = ["flash", "runpod"]

BASIC = """
import os, sys, time
from pathlib import Path
from flash.runtime.worker import start

def handler(job):
    inp = job["input"]
    action = inp.get("action", "echo")
    if action == "echo":
        return {"echo": inp.get("value")}
    if action == "scalar":
        return inp.get("value")
    if action == "sleep":
        time.sleep(inp["seconds"])
        return {"slept": inp["seconds"]}
    if action == "raise":
        raise ValueError(inp.get("message", "boom"))
    if action == "error_dict":
        return {"error": "bad thing happened", "partial": 1}
    if action == "pid":
        return {
            "pid": os.getpid(),
            "env": os.environ.get("DEMO_ENV"),
            "api": os.environ.get("FLASH_API_BASE"),
            "resource": os.environ.get("FLASH_RESOURCE_NAME"),
        }
    if action == "env":
        return {"value": os.environ.get(inp["name"])}
    if action == "say":
        print(inp["text"], flush=True)
        return {"said": True}
    if action == "say_many":
        for n in range(inp["lines"]):
            print(f"line {n} " + "x" * 100)
        sys.stdout.flush()
        return {"said": inp["lines"]}
    if action == "crash":
        print("crashing soon", flush=True)
        print("about to crash: last words", file=sys.stderr, flush=True)
        os._exit(inp.get("code", 3))
    if action == "crash_once":
        marker = Path(inp["marker"])
        if not marker.exists():
            marker.write_text("crashed")
            os._exit(5)
        return {"recovered": True}
    if action == "hang":
        while True:
            time.sleep(0.05)
    if action == "refresh":
        return {"pid": os.getpid(), "refresh_worker": True}
    raise RuntimeError(f"unknown action {action}")

if __name__ == "__main__":
    start(handler)
"""

AIO = """
import asyncio, os
from flash.runtime.worker import start

async def handler(job):
    inp = job["input"]
    started = asyncio.get_running_loop().time()
    await asyncio.sleep(inp.get("seconds", 0))
    return {"pid": os.getpid(), "started": started}

if __name__ == "__main__":
    start(handler)
"""

GEN = """
import time
from flash.runtime.worker import start

def handler(job):
    for i in range(job["input"]["n"]):
        time.sleep(job["input"].get("pause", 0))
        yield {"chunk": i}
    if job["input"].get("fail"):
        raise ValueError("stream broke")

if __name__ == "__main__":
    start(handler)
"""

AGEN = """
import asyncio
from flash.runtime.worker import start

async def handler(job):
    for i in range(job["input"]["n"]):
        await asyncio.sleep(0)
        yield f"part-{i}"

if __name__ == "__main__":
    start(handler)
"""


def write_app(root: Path, endpoints: dict[str, tuple[str, dict[str, Any]]]) -> Path:
    """Write an app directory with one endpoint per entry: name -> (handler source, config)."""
    root.mkdir(parents=True, exist_ok=True)
    resources = {}
    for name, (source, config) in endpoints.items():
        handler_file = f"handler_{name.replace('-', '_')}.py"
        (root / handler_file).write_text(textwrap.dedent(source))
        resources[name] = {
            "type": "LiveServerless",
            "handler_file": handler_file,
            "config": {"name": name, "workersMin": 0, "workersMax": 2, **config},
            "functions": [{"name": "handler", "qualified_name": f"{name}.handler"}],
        }
    manifest = {"schema_version": 1, "project": "demo", "resources": resources}
    (root / "flash_manifest.json").write_text(json.dumps(manifest))
    vendored = root / "flash"
    if not vendored.exists():
        vendored.mkdir()
        (vendored / "__init__.py").write_text("")
        shutil.copytree(
            RUNTIME_DIR, vendored / "runtime", ignore=shutil.ignore_patterns("__pycache__")
        )
    return root


STANDARD_ENDPOINTS: dict[str, tuple[str, dict[str, Any]]] = {
    "basic": (BASIC, {"workersMax": 2, "idleTimeout": 60, "env": {"DEMO_ENV": "demo-value"}}),
    "fragile": (BASIC, {"workersMax": 1, "idleTimeout": 60, "executionTimeoutMs": 1500}),
    "aio": (AIO, {"workersMax": 1, "idleTimeout": 60, "concurrency": 4}),
    # Cancelling can cost a worker its life: kept apart so other tests keep theirs.
    "aiocancel": (AIO, {"workersMax": 1, "idleTimeout": 60, "concurrency": 4}),
    "gen": (GEN, {"workersMax": 1, "idleTimeout": 60}),
    "agen": (AGEN, {"workersMax": 1, "idleTimeout": 60}),
}


def ended(
    platform: LocalPlatform, endpoint: str, job_id: str, timeout: float = 30
) -> dict[str, Any]:
    """The job's /status once it has ended, asked with the key the platform tests use."""
    return final_status(platform.url, endpoint, job_id, api_key="test-key", timeout=timeout)


def post(platform: LocalPlatform, path: str, body: Any = None) -> dict[str, Any]:
    """POST ``body`` to the platform's ``/v2/<path>`` with the key the platform tests use;
    its JSON answer (an error status raises)."""
    answer = httpx.post(
        f"{platform.url}/v2/{path}",
        json=body,
        headers={"Authorization": "Bearer test-key"},
        timeout=30,
    )
    answer.raise_for_status()
    return dict(answer.json())


def use_client(platform: LocalPlatform, api_key: str = "test-key") -> None:
    runpod.api_key = api_key
    runpod.endpoint_url_base = f"{platform.url}/v2"
