"""The keep-alive HTTP client: a request keeps going however its task is referenced."""

from __future__ import annotations

import asyncio
import gc
import threading

from tests.helpers import QuietHandler, serve_http

from flash.runtime.http import HttpClient


class _SlowServer(QuietHandler):
    """Answers each request only once ``release`` is set."""

    arrived = threading.Event()
    release = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        _SlowServer.arrived.set()
        _SlowServer.release.wait(30)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def test_a_request_whose_task_nobody_holds_still_gets_its_answer() -> None:
    # As a worker's job task reporting its result once its slot is free: started, then
    # referenced by nothing but the event loop (which holds tasks weakly).
    _SlowServer.arrived = threading.Event()
    _SlowServer.release = threading.Event()

    async def main(port: int) -> bytes:
        client = HttpClient()
        answered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def post() -> None:
            response = await client.request("POST", f"http://127.0.0.1:{port}/done", {"x": 1})
            answered.set_result(response.body)

        asyncio.ensure_future(post())  # noqa: RUF006 (no reference kept, on purpose)
        await asyncio.get_running_loop().run_in_executor(None, _SlowServer.arrived.wait, 30)
        gc.collect()  # while the request waits for its answer
        _SlowServer.release.set()
        return await asyncio.wait_for(answered, 10)

    with serve_http(_SlowServer) as port:
        try:
            assert asyncio.run(main(port)) == b"ok"
        finally:
            _SlowServer.release.set()
