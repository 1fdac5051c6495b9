"""A small asyncio HTTP/1.1 client with keep-alive (standard library only).

Remote calls from inside an endpoint and the worker loop must not depend on packages the
archive may lack, so both speak HTTP with this. It only needs what RunPod-style APIs use:
JSON or raw bodies, Content-Length or chunked responses, and connection reuse.
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["HttpClient", "HttpError", "Response"]

_MAX_IDLE_PER_HOST = 64


class HttpError(OSError):
    """The request did not get an HTTP answer (refused, reset, closed early)."""


class BodyNotJson(ValueError):
    """The body holds a value JSON has no form for; nothing was sent."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpClient:
    """One pool of idle connections per (scheme, host, port), per event loop."""

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        self.headers = dict(headers or {})
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ssl: Any = None  # made on the first https connection: loading CAs takes ~25 ms

    async def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """``body`` is sent as JSON; ``content`` as it is (give its Content-Type in headers)."""
        parts = urlsplit(url)
        scheme = parts.scheme or "http"
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if content is not None:
            payload = content
        elif body is None:
            payload = b""
        else:
            try:
                payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
            except ValueError as exc:  # a NaN, an infinity, an int too long to write
                raise BodyNotJson(str(exc)) from None
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
        for name, value in {**self.headers, **(headers or {})}.items():
            lines.append(f"{name}: {value}")
        if body is not None:
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(payload)}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
        key = (scheme, host, port)
        # A reused connection may have been closed by the server meanwhile: retry once on a
        # fresh one, which is safe because nothing was read from the stale one.
        for attempt in range(2):
            conn, reused = await self._connect(key, timeout)
            try:
                return await asyncio.wait_for(self._exchange(key, conn, raw, method), timeout)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                conn[1].close()
                if reused and attempt == 0:
                    continue
                raise HttpError(f"{method} {url}: {exc or type(exc).__name__}") from exc
            except BaseException:
                conn[1].close()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connect(
        self, key: tuple[str, str, int], timeout: float | None
    ) -> tuple[_Conn, bool]:
        self._check_loop()
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn[1].is_closing() and not conn[0].at_eof():
                return conn, True
            conn[1].close()
        scheme, host, port = key
        context = None
        if scheme == "https":
            if self._ssl is None:
                import ssl  # only for https: it costs ~10 ms of a worker's start-up otherwise

                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            conn = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=context, limit=1 << 24), timeout
            )
        except OSError as exc:
            raise HttpError(f"cannot connect to {host}:{port}: {exc}") from exc
        sock = conn[1].get_extra_info("socket")
        if sock is not None:  # small requests and answers: send them at once
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, False

    def _check_loop(self) -> None:
        # Connections belong to the loop that opened them; a new loop starts a new pool.
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._idle = {}
            self._loop = loop

    async def _exchange(
        self, key: tuple[str, str, int], conn: _Conn, raw: bytes, method: str
    ) -> Response:
        reader, writer = conn
        writer.write(raw)
        await writer.drain()
        status_line = await reader.readuntil(b"\r\n")
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            line = await reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(reader)
        elif "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        else:
            body = await reader.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            idle = self._idle.setdefault(key, [])
            if len(idle) < _MAX_IDLE_PER_HOST:
                idle.append(conn)
            else:
                writer.close()
        return Response(status=status, body=body)

    def close(self) -> None:
        for idle in self._idle.values():
            for _, writer in idle:
                writer.close()
        self._idle = {}


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
