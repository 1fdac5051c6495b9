"""What the call tests share: this process's connections, and a platform that restarts."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from tests.helpers import QuietHandler, listening_on, port_holder

from flash.platform import LocalPlatform
from flash.runtime.client import Endpoints, PlatformInvoker
from flash.runtime.remote import set_invoker


def connections_to(port: int) -> int:
    """How many TCP connections to ``port`` this process holds open (its sockets only)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        if remote_port == port and fields[9] in inodes:
            count += 1
    return count


class Answering(QuietHandler):
    """A platform's gateway, scripted: ``answer(method, path, headers, body)`` gives the
    status and the JSON body, or None to hang up without answering."""

    answer: Callable[[str, str, dict[str, str], Any], tuple[int, Any] | None]

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        outcome = type(self).answer(method, self.path, dict(self.headers), body)
        if outcome is None:
            self.close_connection = True
            return
        status, data = outcome
        payload = b"" if data is None else json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")


class Restartable:
    """A scripted gateway on a port of its own that can go down (connections refused) and
    come back on that port, as a platform restarted in place does. The port stays held while
    it is down, so no other process takes it meanwhile; ``close`` frees it."""

    def __init__(
        self,
        answer: Callable[[str, str, dict[str, str], Any], tuple[int, Any] | None],
        *,
        keep_alive: bool = False,
    ) -> None:
        attributes: dict[str, Any] = {"answer": staticmethod(answer)}
        if keep_alive:  # HTTP/1.1: connections stay open between requests
            attributes["protocol_version"] = "HTTP/1.1"
        self.handler = type("Handler", (Answering,), attributes)
        self._held: socket.socket | None = port_holder()
        self.port: int = self._held.getsockname()[1]
        self._server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self._held is not None, "closed"
        self._server = listening_on(self._held, self.handler, ThreadingHTTPServer)
        self._held = None
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Go down: connections are refused until ``start``."""
        if self._server is not None:
            self._held = port_holder(self.port)  # before its listening socket closes
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self) -> None:
        self.stop()
        if self._held is not None:
            self._held.close()
            self._held = None


@contextlib.contextmanager
def keyless(platform: Any) -> Iterator[None]:
    """Calls in the block go to ``platform`` (a LocalPlatform) from a client without the
    app's key that refuses unsigned pickles: it sends no pickle."""
    client = PlatformInvoker(Endpoints(platform.url, platform.api_key), allow_unsigned=False)
    previous = set_invoker(client)
    try:
        yield
    finally:
        set_invoker(previous)
        client.close()


@contextlib.contextmanager
def inputs_sent(platform: LocalPlatform) -> Iterator[list[tuple[str, str]]]:
    """(endpoint, input JSON) of each job the platform takes in the block, as it took it (a
    finished job's stored input is dropped unless it can be retried)."""
    dispatcher = platform.dispatcher
    assert dispatcher is not None
    sent: list[tuple[str, str]] = []
    submit = dispatcher.submit

    def recording(endpoint: str, input_json: str, **options: Any) -> Any:
        sent.append((endpoint, input_json))
        return submit(endpoint, input_json, **options)

    dispatcher.submit = recording  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        del dispatcher.submit  # the class's own again


def runsync(platform: LocalPlatform, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{platform.url}/v2/{endpoint}/runsync", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return dict(response.json())
