"""The `flash init` project's cross-endpoint function, called as a user would."""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading
from pathlib import Path

from tests.calls.support import connections_to
from tests.helpers import completed_jobs, processes_under, wait_for

from flash.cli.init import write_starter
from flash.platform import serve_project
from flash.runtime.remote import get_invoker


def test_starter_cross_endpoint_call(tmp_path: Path) -> None:
    root = tmp_path / "starter"
    write_starter(root)
    sys.path.insert(0, str(root))
    before = get_invoker()
    # An app's event loop that outlives the block (a web server's, say).
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
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
            cleaned = asyncio.run_coroutine_threadsafe(cpu_worker.preprocess(["x"]), loop)
            assert cleaned.result(60) == ["x"]
            assert connections_to(platform.port) == 1  # kept for that loop's next call
        # Afterwards calls run in this process again, no worker is left behind, and no
        # connection waits for the garbage collector.
        assert get_invoker() is before
        wait_for(lambda: not processes_under(root), 10, "the workers to exit")
        wait_for(lambda: connections_to(platform.port) == 0, 10, "the connection to close")
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "workers" or m.startswith("workers.")]:
            del sys.modules[name]
