"""The `flash init` project's cross-endpoint function, called as a user would."""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path

from tests.helpers import completed_jobs, processes_under, wait_for

from flash.cli.init import write_starter
from flash.platform import serve_project
from flash.runtime.remote import get_invoker


def test_starter_cross_endpoint_call(tmp_path: Path) -> None:
    root = tmp_path / "starter"
    write_starter(root)
    sys.path.insert(0, str(root))
    before = get_invoker()
    try:
        with serve_project(root) as platform:  # the project's own key, as flash run uses
            cpu_worker = importlib.import_module("workers.cpu_worker")
            documents = asyncio.run(cpu_worker.embed_documents([" b  a ", "c"]))
            assert list(documents) == ["b a", "c"] and len(documents["c"]) == 26
            # One job on cpu-worker (preprocess ran inside it), one on gpu-worker (embed).
            assert (
                completed_jobs(platform.url, "cpu-worker"),
                completed_jobs(platform.url, "gpu-worker"),
            ) == (1, 1)
        # Afterwards calls run in this process again, and no worker is left behind.
        assert get_invoker() is before
        wait_for(lambda: not processes_under(root), 10, "the workers to exit")
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "workers" or m.startswith("workers.")]:
            del sys.modules[name]
