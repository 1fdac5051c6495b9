"""A small asyncio HTTP/1.1 client with keep-alive (standard library only).

Remote calls from inside an endpoint and the worker loop must not depend on packages the
archive may lack, so both speak HTTP with this. It only needs what RunPod-style APIs use:
JSON or raw bodies, Content-Length or chunked responses, and connection reuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import AsyncGenerator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "HEADER_UNFIT",
    "BodyNotJson",
    "HttpClient",
    "HttpError",
    "Response",
    "check_base_url",
    "has_control_character",
    "json_body",
    "redact_url",
    "unfit_for_header",
]

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
_Key = tuple[str, str, int]
_T = TypeVar("_T")


class _Pool:
    """The idle connections of one event loop, per (scheme, host, port). Used on that loop's
    thread only: a connection belongs to the loop that opened it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: dict[_Key, list[_Conn]] = {}
        # Connections a request is using. asyncio's protocol holds a stream's reader only
        # weakly, so without this a request whose task nobody else references (a task
        # started and forgotten) would be collected, waiter and all, while it waits for the
        # answer: the request then never ends, and a retry it owed never happens.
        self.active: set[_Conn] = set()
        self.closer: AsyncGenerator[None, None] | None = None
        self.shut = False  # the loop is shutting down: no connection is kept any more

    def take(self, key: _Key) -> _Conn | None:
        idle = self.idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn[1].is_closing() and not conn[0].at_eof():
                return conn
            conn[1].close()
        return None

    def keep(self, key: _Key, conn: _Conn) -> None:
        idle = self.idle.setdefault(key, [])
        if not self.shut and len(idle) < _MAX_IDLE_PER_HOST:
            idle.append(conn)
        else:
            conn[1].close()

    def close_idle(self) -> list[asyncio.StreamWriter]:
        writers = [writer for idle in self.idle.values() for _, writer in idle]
        self.idle = {}
        for writer in writers:
            writer.close()
        return writers


class HttpClient:
    """Keep-alive connections for any number of event loops and threads: each loop has its
    own pool of idle connections, closed when the loop shuts down (asyncio.run) or by
    :meth:`close`."""

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        self.headers = dict(headers or {})
        self._pools: dict[asyncio.AbstractEventLoop, _Pool] = {}
        self._lock = threading.Lock()  # _pools: blocking calls run loops in any thread
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
            payload = json_body(body)
        # Host names the server only: a URL's user:password@ is no part of it.
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc.rpartition('@')[2]}"]
        for name, value in {**self.headers, **(headers or {})}.items():
            lines.append(_header_line(name, value))
        if body is not None:
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(payload)}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
        key = (scheme, host, port)
        pool = await self._pool()
        ends = None if timeout is None else time.monotonic() + timeout  # for both attempts
        # A reused connection may have been closed by the server meanwhile: retry once on a
        # fresh one. (The server may have acted on the request already: callers that must
        # not run a job twice send an idempotency key.)
        for attempt in range(2):
            conn, reused = await self._connect(pool, key, _left(ends))
            pool.active.add(conn)
            try:
                return await _within(self._exchange(pool, key, conn, raw, method), _left(ends))
            # asyncio.TimeoutError: 3.10's is no OSError
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                conn[1].close()
                shown = redact_url(url)
                if isinstance(exc, asyncio.TimeoutError) and _timed_out(exc):  # our limit
                    raise HttpError(f"{method} {shown}: no answer within {timeout:g} s") from None
                if reused and attempt == 0:
                    continue
                raise HttpError(f"{method} {shown}: {_reason(exc)}") from exc
            except BaseException:
                conn[1].close()
                raise
            finally:
                pool.active.discard(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _pool(self) -> _Pool:
        loop = asyncio.get_running_loop()
        with self._lock:
            pool = self._pools.get(loop)
            if pool is None:
                # A loop closed without asyncio.run's clean-up: its connections can no longer
                # be closed (that takes the loop); the garbage collector closes them.
                for closed in [other for other in self._pools if other.is_closed()]:
                    del self._pools[closed]
                pool = self._pools[loop] = _Pool(loop)
        if pool.closer is None:
            # asyncio.run closes every async generator before it closes the loop: the last
            # moment this loop's connections can be closed cleanly. (Runs to its yield at
            # once, so no other task gets in between.)
            pool.closer = self._close_at_shutdown(pool)
            await pool.closer.__anext__()
        return pool

    async def _close_at_shutdown(self, pool: _Pool) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            # The pool stays this loop's: a request made while the loop shuts down (a
            # stream's clean-up cancelling its job) finds it, and its connection is closed
            # after use. A new pool would start a closer the shut-down loop never runs.
            pool.shut = True
            for writer in pool.close_idle():
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _connect(self, pool: _Pool, key: _Key, timeout: float | None) -> tuple[_Conn, bool]:
        reused = pool.take(key)
        if reused is not None:
            return reused, True
        scheme, host, port = key
        context = None
        if scheme == "https":
            if self._ssl is None:
                import ssl  # only for https: it costs ~10 ms of a worker's start-up otherwise

                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            conn = await _within(
                asyncio.open_connection(host, port, ssl=context, limit=1 << 24), timeout
            )
        except asyncio.TimeoutError as exc:  # before OSError: from 3.11 it is one
            if not _timed_out(exc):  # the kernel's ETIMEDOUT
                raise HttpError(f"cannot connect to {host}:{port}: {_reason(exc)}") from exc
            raise HttpError(f"cannot connect to {host}:{port} within {timeout:g} s") from None
        except OSError as exc:
            raise HttpError(f"cannot connect to {host}:{port}: {_reason(exc)}") from exc
        sock = conn[1].get_extra_info("socket")
        # Small requests and answers: send them at once. (A connection the other side reset
        # straight away has no socket left to set: the exchange on it says so.)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, False

    async def _exchange(
        self, pool: _Pool, key: _Key, conn: _Conn, raw: bytes, method: str
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
        connection = headers.get("connection", "").lower()
        # HTTP/1.0 closes after each answer unless it says otherwise: a request sent on
        # such a connection can cross its close.
        if connection == "close" or (parts[0] == "HTTP/1.0" and connection != "keep-alive"):
            writer.close()
            with contextlib.suppress(OSError):  # closed by the time the caller goes on
                await writer.wait_closed()
        else:
            pool.keep(key, conn)
        return Response(status=status, body=body)

    def close(self) -> None:
        """Close the idle connections of every loop; from any thread. A loop running in
        another thread closes its own, at its next turn. The client stays usable."""
        with self._lock:
            pools = list(self._pools.values())
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for pool in pools:
            if pool.loop is current:
                pool.close_idle()
            else:
                with contextlib.suppress(RuntimeError):  # closed meanwhile: nothing left to do
                    pool.loop.call_soon_threadsafe(pool.close_idle)


def redact_url(url: str) -> str:
    """``url`` as messages show it: a ``user:password@`` in it is a credential, masked."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="****@" + parts.netloc.rpartition("@")[2]))


def check_base_url(url: str, name: str, key_advice: str) -> None:
    """Refuse a platform URL (``name`` says where it came from) that calls cannot go to, or
    that holds credentials: they would show wherever the URL does, and the platform takes
    its key as a bearer token only (``key_advice``: where the key goes instead)."""
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # not a number, or out of range
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ValueError(
            f"{name} must be an http:// or https:// URL such as http://127.0.0.1:8000, "
            f"got {redact_url(url)!r}"
        )
    if "@" in parts.netloc:
        raise ValueError(f"{name} must not hold credentials (user:password@): {key_advice}")


def has_control_character(text: str) -> bool:
    """Whether ``text`` holds a control character (CR, LF, ...), which in a header would end
    it and start another: a request smuggled into this one."""
    return _CONTROL.search(text) is not None


_CONTROL = re.compile("[\x00-\x1f\x7f]")

# Why a value cannot be sent as an HTTP header (see ``unfit_for_header``).
HEADER_UNFIT = "holds a control character or a non-ASCII one: it cannot go in an HTTP header"


def unfit_for_header(text: str) -> bool:
    """Whether ``text`` cannot be a header's value as it is: a control character would
    end the header (``has_control_character``), and headers are sent as ASCII."""
    return has_control_character(text) or not text.isascii()


def _header_line(name: str, value: str) -> str:
    if has_control_character(name) or has_control_character(value):
        # The value may be a credential: named, never quoted.
        raise ValueError(f"the {name!r} header holds a control character (CR, LF, ...)")
    return f"{name}: {value}"


def _left(ends: float | None) -> float | None:
    """The seconds left until ``ends`` (monotonic), or None for no limit."""
    return None if ends is None else max(0.0, ends - time.monotonic())


async def _within(awaitable: Awaitable[_T], seconds: float | None) -> _T:
    """``await awaitable``, given up after ``seconds`` (a TimeoutError without an errno).
    asyncio.timeout where there is one (3.11): wait_for wraps each request in a task of its
    own, which costs twice as much per call."""
    if seconds is None:
        return await awaitable
    if _TIMEOUT is None:  # Python 3.10
        return await asyncio.wait_for(awaitable, seconds)
    async with _TIMEOUT(seconds):
        return await awaitable


_TIMEOUT = getattr(asyncio, "timeout", None)


def _timed_out(exc: BaseException) -> bool:
    """Whether a TimeoutError is our limit's rather than the kernel's (ETIMEDOUT,
    which carries an errno): from Python 3.11 the two are one class."""
    return getattr(exc, "errno", None) is None


def _reason(exc: BaseException) -> str:
    """Why a request failed, in words (some exceptions have none)."""
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the connection closed before the answer was complete"
    return str(exc) or type(exc).__name__


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


def json_body(body: Any) -> bytes:
    """``body`` as a request's JSON, or BodyNotJson (the call may go pickled instead)."""
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as exc:  # a NaN, an infinity, an int too long to write
        raise BodyNotJson(str(exc)) from None
