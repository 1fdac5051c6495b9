"""The `flash init` project's cross-endpoint function, called as a user would."""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path

from tests.helpers import completed_jobs

import flash
from flash.build.pipeline import BuildOptions, build_project
from flash.cli.init import write_starter
from flash.platform.archive import extract_archive
from flash.platform.local import LocalPlatform
from flash.sdk.keys import ensure_signing_key


def test_starter_cross_endpoint_call(tmp_path: Path) -> None:
    root = tmp_path / "starter"
    write_starter(root)
    build = build_project(BuildOptions(project_dir=root))
    state = root / ".flash"
    platform = LocalPlatform(state, echo=None)  # the project's own key, as flash run does
    platform.start()
    sys.path.insert(0, str(root))
    try:
        platform.load_app(extract_archive(build.archive, state / "serve"))
        flash.connect(platform.url, signing_key=ensure_signing_key(state))
        cpu_worker = importlib.import_module("workers.cpu_worker")
        documents = asyncio.run(cpu_worker.embed_documents([" b  a ", "c"]))
        assert list(documents) == ["b a", "c"] and len(documents["c"]) == 26

        # One job on cpu-worker (preprocess ran inside it), one on gpu-worker (embed).
        assert (
            completed_jobs(platform.url, "cpu-worker"),
            completed_jobs(platform.url, "gpu-worker"),
        ) == (1, 1)
    finally:
        flash.disconnect()
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "workers" or m.startswith("workers.")]:
            del sys.modules[name]
        platform.stop()
