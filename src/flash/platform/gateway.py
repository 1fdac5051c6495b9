"""The HTTP gateway: RunPod's client API and its worker-facing protocol, on Starlette."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from flash.platform import jobs as js
from flash.platform import openapi
from flash.platform.dispatch import Dispatcher
from flash.platform.store import NonceUsed
from flash.platform.supervisor import Supervisor
from flash.runtime.jsonschema import JsonInputError, parse_json_member
from flash.runtime.protocol import MAX_POLICY_MS, RUN_LIMIT, RUNSYNC_LIMIT
from flash.runtime.signing import CLOCK_SKEW_S, MAX_TTL_S, signed_nonce

# Deeper JSON is refused with 400 before anything else looks at it.
MAX_JSON_DEPTH = 256
RUNSYNC_DEFAULT_WAIT_MS = 90_000
RUNSYNC_MAX_WAIT_MS = 300_000
STREAM_HOLD_S = 1.0
# Queued jobs per endpoint beyond which submissions get 429, as production does when
# the queue is far beyond what the workers can take.
DEFAULT_MAX_QUEUE = 100_000

Handler = Callable[[Request], Awaitable[Response]]
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class _Router:
    """Dispatches ``/v2/...`` by a dictionary lookup (the hot path of every job); anything
    else goes to a Starlette app. A regex router and middleware stack per request cost
    more than the job bookkeeping itself."""

    def __init__(
        self,
        table: dict[str, tuple[tuple[str, ...], tuple[str, ...], Handler]],
        rest: Starlette,
        loopback_only: bool,
    ) -> None:
        self.table = table
        self.rest = rest
        self.loopback_only = loopback_only
        self.cors = _AcceptedOrigins(self._route)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refusal = _cross_site(scope["headers"], self.loopback_only)
            if refusal is not None:
                await _error(403, refusal)(scope, receive, send)
                return
            # A page's request (its Origin accepted above) gets CORS answers; the rest,
            # scripts and workers, skip that layer.
            if any(name == b"origin" for name, _ in scope["headers"]):
                await self.cors(scope, receive, send)
                return
        await self._route(scope, receive, send)

    async def _route(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            parts = scope["path"].split("/")
            if len(parts) >= 4 and parts[1] == "v2" and parts[3] in self.table:
                names, methods, handler = self.table[parts[3]]
                values = parts[4:]
                if len(values) != len(names) or not all(values):
                    response = _error(404, f"no such route: {_named(scope['path'])}")
                elif scope["method"] not in methods:
                    response = _error(405, f"use {' or '.join(methods)} for {parts[3]}")
                    response.headers["Allow"] = ", ".join(methods)  # RFC 9110 asks for it
                else:
                    scope["path_params"] = {
                        "endpoint": parts[2],
                        **dict(zip(names, values, strict=True)),
                    }
                    response = await handler(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.rest(scope, receive, send)


class _AcceptedOrigins(CORSMiddleware):
    """Answers CORS for the pages the platform takes requests from (its own, local front
    ends such as http://localhost:3000): their preflights, and Access-Control-Allow-Origin on
    every answer, errors included, so the page can read it. The router hands it only requests
    whose Origin ``_cross_site`` accepted, so that one rule decides which pages may call."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(
            app,  # type: ignore[arg-type]  # Starlette types scope as a MutableMapping
            allow_methods=("GET", "POST"),  # all the API's routes take
            # Mirrors what the preflight asks (authorization, content-type, a page's own):
            # a page whose Origin passed may send anything a script may.
            allow_headers=("*",),
        )

    def is_allowed_origin(self, origin: str) -> bool:
        return True  # the router refused every other Origin before


def _cross_site(headers: list[tuple[bytes, bytes]], loopback_only: bool) -> str | None:
    """Why a request comes from a web page of another site, if it does: a browser sends its
    page's Origin, and after a DNS rebinding (the page's name resolving to this machine)
    the page's host name as Host. Without an API key anything else would let any page the
    developer opens run, cancel or purge jobs (a text/plain POST needs no CORS preflight).
    Scripts, curl and workers send no Origin; the platform's own pages and local front ends
    send a local one. ``loopback_only``: the platform listens on a loopback address, so a
    Host naming anything else is a rebinding (one listening on all interfaces is reached by
    names it cannot know)."""
    hosts = [value.decode("latin-1") for name, value in headers if name == b"host"]
    origins = [value.decode("latin-1") for name, value in headers if name == b"origin"]
    for name, values in (("Host", hosts), ("Origin", origins)):
        if len(values) > 1:  # a browser sends one: judged one, another could be echoed
            return f"a request with {len(values)} {name} headers: send one"
    host = hosts[0] if hosts else None
    origin = origins[0] if origins else None
    if host is not None and loopback_only and not _is_local(_hostname(f"//{host}")):
        return (
            f"Host {host!r} is no name of this platform, which listens on a loopback address:"
            " a web page of another site may be calling it (DNS rebinding); call it as"
            " 127.0.0.1 or localhost"
        )
    if origin is None:
        return None
    same = host is not None and origin.partition("://")[2] == host
    if origin != "null" and (same or _is_local(_hostname(origin))):
        return None
    return (
        f"a web page of Origin {origin!r} sent this request: the platform takes none from"
        " another site's pages (call it from a script or a server)"
    )


def _hostname(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:  # "[::1" or a port that is no number: no name of ours
        return None


def _is_local(hostname: str | None) -> bool:
    if hostname is None:
        return False
    if hostname == "localhost" or hostname.endswith(".localhost"):  # browsers keep it local
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _json(data: Any, status: int = 200) -> Response:
    return _json_text(json.dumps(data), status)


def _json_text(text: str, status: int = 200) -> Response:
    return Response(text, status_code=status, media_type="application/json")


def _job_to_take(job: js.Job) -> str:
    """A job as job-take answers it: its input's text is spliced in, not encoded again."""
    return f'{{"id": {json.dumps(job.id)}, "input": {job.input_json}}}'


def _milliseconds(name: str, text: str, *, positive: bool = False) -> int | Response:
    """A query parameter's whole number of milliseconds (a huge one as 10**15: both uses
    clamp it), or the 400 naming it."""
    if text.isascii() and text.isdigit() and (text.strip("0") or not positive):
        digits = text.lstrip("0") or "0"
        return int(digits) if len(digits) <= 15 else 10**15
    what = "a positive whole number" if positive else "a whole number"
    return _error(400, f"'{name}' must be {what} of milliseconds, got {text[:40]!r}")


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def _named(text: str, limit: int = 100) -> str:
    """``text`` from a request (a path, an id) cut to ``limit`` characters for a message:
    a 20 KB id is not echoed whole."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's 404 (no such path) and 405 (a method the path does not take), as JSON."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 404:
        message = f"no such route: {_named(path)}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed for {_named(path)}"
    else:
        message = exc.detail
    response = _error(exc.status_code, message)
    response.headers.update(exc.headers or {})  # a 405's Allow
    return response


async def _body_within(request: Request, limit: int) -> bytes | int:
    """The request's body, or how many bytes of it were read once they passed ``limit``:
    read no further, so a body sent without Content-Length (chunked) that is too large is
    refused as it arrives rather than held in memory whole."""
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            return size
        parts.append(part)
    return b"".join(parts)


_NO_CONTENT = 204


class Gateway:
    def __init__(
        self,
        dispatcher: Dispatcher,
        supervisor: Supervisor,
        *,
        api_key: str | None,
        worker_token: str,
        recorder: Callable[[dict[str, Any]], None] | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        host: str = "127.0.0.1",
    ) -> None:
        self.max_queue = max_queue
        self.host = host  # the address it listens on
        self.dispatcher = dispatcher
        self.supervisor = supervisor
        self.api_key = api_key
        self.worker_token = worker_token
        # Sees every worker request (route, query, headers, body): for protocol tests.
        self.recorder = recorder

    def app(self) -> ASGIApp:
        c, w = self._client, self._worker
        # /v2/{endpoint}/{route}/{params...}: route name -> (path params, methods, handler)
        table: dict[str, tuple[tuple[str, ...], tuple[str, ...], Handler]] = {
            "job-take": (("worker",), ("GET",), w(self.take)),
            "job-done": (("worker", "job_id"), ("POST",), w(self.done)),
            "runsync": ((), ("POST",), c(self.runsync)),
            "run": ((), ("POST",), c(self.run)),
            # A job outlives its endpoint's removal by a new build: it can still be read.
            "status": (("job_id",), ("GET", "POST"), c(self.status, jobs=True)),
            "stream": (("job_id",), ("GET", "POST"), c(self.stream, jobs=True)),
            "cancel": (("job_id",), ("POST",), c(self.cancel)),
            "retry": (("job_id",), ("POST",), c(self.retry)),
            "purge-queue": ((), ("POST",), c(self.purge)),
            "health": ((), ("GET",), c(self.health)),
            "job-take-batch": (("worker",), ("GET",), w(self.take_batch)),
            "job-stop": (("worker",), ("GET",), w(self.stop_signals)),
            "job-stream": (("worker", "job_id"), ("POST",), w(self.chunk)),
            "ping": (("worker",), ("GET",), w(self.ping)),
            # Documentation, open like /docs: the schemas of the endpoint's functions.
            "openapi.json": ((), ("GET",), self.endpoint_openapi),
        }
        rest = Starlette(
            routes=[
                Route("/openapi.json", self.openapi, methods=["GET"]),
                Route("/docs", self.docs, methods=["GET"]),
            ],
            # Starlette's own 404 and 405 are plain text: every answer of ours is JSON.
            exception_handlers={HTTPException: _http_error},
        )
        return _Router(table, rest, loopback_only=_is_local(self.host))

    # ------------------------------------------------------------------ guards

    def _client(self, fn: Handler, *, jobs: bool = False) -> Handler:
        """``fn`` for callers with the API key, on a deployed endpoint (``jobs``: or on
        one that still has the job the path names)."""

        async def guarded(request: Request) -> Response:
            if self.api_key is not None and not _authorized(request, self.api_key):
                return _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")
            endpoint = request.path_params["endpoint"]
            if endpoint not in self.supervisor.deployments and not (
                jobs and self.dispatcher.get(endpoint, request.path_params["job_id"]) is not None
            ):
                known = ", ".join(sorted(self.supervisor.deployments)) or "none"
                return _error(404, f"endpoint '{_named(endpoint)}' not found (endpoints: {known})")
            return await fn(request)

        return guarded

    def _worker(self, fn: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            if not _authorized(request, self.worker_token):
                return _error(401, "missing or wrong worker key")
            worker = request.path_params["worker"]
            state = self.dispatcher.workers.get(worker)
            if state is None or state.endpoint != request.path_params["endpoint"]:
                return _error(404, f"worker '{worker}' is not a worker of this endpoint")
            if self.recorder is not None:
                self.recorder(
                    {
                        "method": request.method,
                        "route": request.url.path.split("/")[3],
                        "path_params": dict(request.path_params),
                        "query": dict(request.query_params),
                        "headers": dict(request.headers),
                        "body": await request.body(),
                    }
                )
            return await fn(request)

        return guarded

    def _job(self, request: Request) -> js.Job | Response:
        endpoint, job_id = request.path_params["endpoint"], request.path_params["job_id"]
        job = self.dispatcher.get(endpoint, job_id)
        if job is None:
            return _error(404, f"job '{_named(job_id)}' not found on endpoint '{endpoint}'")
        return job

    # ------------------------------------------------------------------ client API

    async def run(self, request: Request) -> Response:
        return await self._submit(request, RUN_LIMIT, sync=False)

    async def runsync(self, request: Request) -> Response:
        return await self._submit(request, RUNSYNC_LIMIT, sync=True)

    async def _submit(self, request: Request, limit: int, sync: bool) -> Response:
        route = "runsync" if sync else "run"
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return _too_large(route, int(declared), limit)
        raw = await _body_within(request, limit)
        if isinstance(raw, int):
            return _too_large(route, raw, limit)
        parsed = _parse_request(raw)
        if isinstance(parsed, Response):
            return parsed
        wait_ms = RUNSYNC_DEFAULT_WAIT_MS
        wait = request.query_params.get("wait")
        if sync and wait is not None:
            given = _milliseconds("wait", wait)
            if isinstance(given, Response):
                return given
            wait_ms = min(given, RUNSYNC_MAX_WAIT_MS)
        endpoint = request.path_params["endpoint"]
        queued = self.dispatcher.queued[endpoint]
        if queued >= self.max_queue:
            return _error(
                429,
                f"endpoint '{endpoint}' already has {queued} queued jobs (limit {self.max_queue});"
                " retry later",
            )
        try:
            job = self.dispatcher.submit(
                request.path_params["endpoint"],
                parsed.input_json,
                webhook=parsed.webhook,
                execution_timeout_ms=parsed.execution_timeout_ms,
                ttl_ms=parsed.ttl_ms,
                sync=sync,
                idempotency_key=request.headers.get("idempotency-key") or None,
                low_priority=parsed.low_priority,
                nonce=parsed.nonce,
            )
        except NonceUsed:
            return _error(
                409,
                "input.signature: this signed request was submitted before, and a signed"
                " request runs once (the Python client signs every call anew)",
            )
        if not sync:
            # Accepted into the queue, even if a waiting worker took it this very moment.
            return _json({"id": job.id, "status": js.IN_QUEUE})
        if await self._wait_or_disconnect(request, job, wait_ms / 1000):
            return _json_text(self.dispatcher.status_json(job))
        return _json({"id": job.id, "status": job.status})

    async def _wait_or_disconnect(self, request: Request, job: js.Job, timeout: float) -> bool:
        """Wait for the job to end; if the caller hangs up first, cancel it.

        A /runsync caller that leaves before the answer never learnt the job id, so nobody
        could ever read the result or cancel the job: it is cancelled (unless a webhook is
        waiting for it). This is how a cancelled ``await fn()`` reaches the running job.
        """
        if job.final or timeout <= 0:
            return job.final
        hung_up = await _hung_up(request, self.dispatcher.wait_final(job, timeout))
        if hung_up and job.webhook is None:
            self.dispatcher.cancel(job)
        return job.final

    async def status(self, request: Request) -> Response:
        job = self._job(request)
        if isinstance(job, Response):
            return job
        ttl = request.query_params.get("ttl")
        if ttl is not None:
            # RunPod's: remove the result sooner than its usual retention.
            given = _milliseconds("ttl", ttl, positive=True)
            if isinstance(given, Response):
                return given
            self.dispatcher.keep_result_for(job, given)
        return _json_text(self.dispatcher.status_json(job))

    async def stream(self, request: Request) -> Response:
        job = self._job(request)
        if isinstance(job, Response):
            return job
        # Only when there is something to wait for: a reader's hang-up is watched for.
        waits = not self.dispatcher.has_unread(job)
        if waits and await _hung_up(request, self.dispatcher.wait_stream(job, STREAM_HOLD_S)):
            return Response(status_code=_NO_CONTENT)  # nobody reads it: no chunk is handed out
        read = self.dispatcher.claim_stream(job)
        items = ", ".join(f'{{"output": {chunk}}}' for chunk in read.chunks)
        head = json.dumps({"id": job.id, "status": job.status})
        return _AfterSent(
            f'{head[:-1]}, "stream": [{items}]}}',  # the chunks' texts spliced in
            lambda: self.dispatcher.mark_streamed(job, read),
        )

    async def cancel(self, request: Request) -> Response:
        job = self._job(request)
        if isinstance(job, Response):
            return job
        self.dispatcher.cancel(job)
        return _json({"id": job.id, "status": job.status})

    async def retry(self, request: Request) -> Response:
        job = self._job(request)
        if isinstance(job, Response):
            return job
        try:
            self.dispatcher.retry(job)
        except ValueError as err:
            return _error(400, str(err))
        return _json({"id": job.id, "status": js.IN_QUEUE})

    async def purge(self, request: Request) -> Response:
        removed = self.dispatcher.purge(request.path_params["endpoint"])
        return _json({"removed": removed, "status": "completed"})

    async def health(self, request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        d = self.dispatcher
        return _json(
            {
                "jobs": {
                    "completed": d.completed[endpoint],
                    "failed": d.failed[endpoint],
                    "inProgress": d.running[endpoint],
                    "inQueue": d.queued[endpoint],
                    "retried": d.retried[endpoint],
                },
                "workers": self.supervisor.counts(endpoint),
            }
        )

    # ------------------------------------------------------------------ worker protocol

    async def take(self, request: Request) -> Response:
        jobs = await self._take(request, 1)
        if not jobs:
            return Response(status_code=_NO_CONTENT)
        return _json_text(_job_to_take(jobs[0]))

    async def take_batch(self, request: Request) -> Response:
        try:
            size = max(1, int(request.query_params.get("batch_size", "1")))
        except ValueError:
            return _error(400, "batch_size must be an integer")
        jobs = await self._take(request, size)
        if not jobs:
            return Response(status_code=_NO_CONTENT)
        return _json_text(f"[{', '.join(_job_to_take(j) for j in jobs)}]")

    async def _take(self, request: Request, size: int) -> list[js.Job]:
        in_progress = request.query_params.get("job_in_progress", "0") not in ("0", "", "false")
        return await self.dispatcher.take(request.path_params["worker"], size, in_progress)

    async def stop_signals(self, request: Request) -> Response:
        stops = await self.dispatcher.stop_signals(request.path_params["worker"])
        if not stops:
            return Response(status_code=_NO_CONTENT)
        return _json({"jobsToStop": stops})

    async def done(self, request: Request) -> Response:
        parsed = await _worker_body(request)
        if isinstance(parsed, str):
            # A final report the worker will not send again: end the job with the reason, or
            # it would stay IN_PROGRESS and keep its worker busy forever. A progress update
            # (the SDK's progress_update posts here too) is only refused: the job goes on.
            if _PROGRESS_REPORT.match(await request.body()):
                return _error(400, parsed)
            return self._refuse(request, parsed)
        body, output_json = parsed
        is_stream = request.query_params.get("isStream", "false").lower() == "true"
        accepted = self.dispatcher.done(
            request.path_params["worker"],
            request.path_params["job_id"],
            body,
            is_stream,
            output_json,
        )
        return _json({"accepted": accepted})

    def _refuse(self, request: Request, reason: str) -> Response:
        """Fail the reporting worker's job with ``reason``, and answer 400."""
        self.dispatcher.refuse(request.path_params["worker"], request.path_params["job_id"], reason)
        return _error(400, reason)

    async def chunk(self, request: Request) -> Response:
        parsed = await _worker_body(request)
        if isinstance(parsed, str):
            # The item is lost: a stream that went on without it would look complete.
            return self._refuse(request, parsed)
        output_json = parsed[1]  # None: the body has no output
        if output_json is None:  # a stream that went on without it would look complete
            return self._refuse(request, "a stream item without 'output'")
        accepted = self.dispatcher.chunk(
            request.path_params["worker"], request.path_params["job_id"], output_json
        )
        return _json({"accepted": accepted})

    async def ping(self, request: Request) -> Response:
        raw = request.query_params.get("job_id")
        ids = [i for i in raw.split(",") if i] if raw else []
        # Flash's worker loop pings from the loop that takes jobs (flash.runtime.worker).
        own_loop = request.query_params.get("runpod_version", "").startswith("flash-")
        self.dispatcher.ping(request.path_params["worker"], ids, lists_taken=own_loop)
        return _json({"ok": True})

    # ------------------------------------------------------------------ docs

    async def openapi(self, request: Request) -> Response:
        return _json(openapi_schema())

    async def docs(self, request: Request) -> Response:
        endpoints = [
            (name, dep.spec.resource) for name, dep in sorted(self.supervisor.deployments.items())
        ]
        return HTMLResponse(openapi.docs_page(endpoints))

    async def endpoint_openapi(self, request: Request) -> Response:
        name = request.path_params["endpoint"]
        deployment = self.supervisor.deployments.get(name)
        if deployment is None:
            return _error(404, f"no endpoint named {name!r}")
        base = f"{request.url.scheme}://{request.url.netloc}"
        return _json(openapi.endpoint_document(name, deployment.spec.resource, base))


class _AfterSent(Response):
    """A JSON answer that calls ``sent`` once it was handed to the server: also when the
    reader left meanwhile (the server does not say), so only a reader that hangs up while
    /stream waits takes no chunk."""

    def __init__(self, text: str, sent: Callable[[], None]) -> None:
        super().__init__(text, media_type="application/json")
        self.sent = sent

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await super().__call__(scope, receive, send)
        self.sent()


async def _hung_up(request: Request, waiting: Awaitable[Any]) -> bool:
    """Await ``waiting``, unless the caller hangs up first (``waiting`` is then cancelled);
    whether it did."""
    hangup = asyncio.ensure_future(_disconnected(request))
    done = asyncio.ensure_future(waiting)
    await asyncio.wait([hangup, done], return_when=asyncio.FIRST_COMPLETED)
    if done.done():
        hangup.cancel()
        return False
    done.cancel()
    return True


async def _disconnected(request: Request) -> bool:
    """Return True once the client has closed the connection (the body is already read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return True


def _authorized(request: Request, key: str) -> bool:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        header = header[7:]
    return hmac.compare_digest(header.strip().encode(), key.encode())


def _too_large(route: str, size: int, limit: int) -> Response:
    return _error(
        413,
        f"request body of {size} bytes exceeds the /{route} limit of {limit // (1024 * 1024)} MB",
    )


def _load_json(raw: bytes, member: str) -> tuple[Any, str | None]:
    """The body as JSON, and the JSON text of its ``member`` (see ``parse_json_member``);
    a ValueError names what is wrong (never quoting the body)."""
    try:
        return parse_json_member(
            raw or b"null", max_bytes=len(raw) + 4, max_depth=MAX_JSON_DEPTH, member=member
        )
    except JsonInputError as err:
        raise ValueError(err.message) from None


def _member_json(data: dict[str, Any], member: str, text: str | None) -> str:
    """The member's JSON text: as it was sent, or encoded when that text cannot be used."""
    return text if text is not None else json.dumps(data[member])


class _JobRequest(NamedTuple):
    input_json: str
    webhook: str | None
    execution_timeout_ms: int | None
    ttl_ms: int | None
    low_priority: bool
    nonce: tuple[str, float] | None  # a signed request's, and until when it counts


def _parse_request(raw: bytes) -> _JobRequest | Response:
    """The input's JSON text, the webhook and the policy, or a 400 answer."""
    try:
        data, input_text = _load_json(raw, "input")
    except ValueError as err:
        return _error(400, f"request body: {err}")
    if not isinstance(data, dict) or "input" not in data:
        return _error(400, "request body must be a JSON object with an 'input' field")
    webhook = data.get("webhook")
    if webhook is not None and (
        not isinstance(webhook, str) or not webhook.startswith(("http://", "https://"))
    ):
        return _error(400, "'webhook' must be an http(s) URL")
    policy = data.get("policy", {})
    if policy is None:
        policy = {}
    if not isinstance(policy, dict):
        return _error(400, "'policy' must be an object")
    limits: list[int | None] = []
    for key in ("executionTimeout", "ttl"):
        value = policy.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value <= 0
        ):
            return _error(400, f"'policy.{key}' must be a positive integer (milliseconds)")
        if value is not None and value > MAX_POLICY_MS:
            return _error(400, f"'policy.{key}' must be at most {MAX_POLICY_MS} ms (7 days)")
        limits.append(value)
    low_priority = policy.get("lowPriority", False)
    if not isinstance(low_priority, bool):
        return _error(400, "'policy.lowPriority' must be true or false")
    return _JobRequest(
        _member_json(data, "input", input_text),
        webhook,
        limits[0],
        limits[1],
        low_priority,
        _signed_nonce(data["input"]),
    )


def _signed_nonce(job_input: Any) -> tuple[str, float] | None:
    """The nonce of a signed request, and until when a worker could take the request.

    Each worker also refuses a nonce it has seen, but a replay sent to another worker, or
    after a restart, would pass there: the platform takes each nonce once. A block without
    a usable nonce and deadline is left to the worker, which refuses it."""
    # A user's own "signature" field of a JSON call is no well-formed block: it claims nothing.
    found = signed_nonce(job_input.get("signature")) if isinstance(job_input, dict) else None
    if found is None:
        return None
    nonce, deadline = found
    return nonce, min(deadline, time.time() + MAX_TTL_S) + CLOCK_SKEW_S


# What marks a job-done body as a progress update, found without parsing it: the SDK writes
# the status first (an output holding the same text must not pass for one).
_PROGRESS_REPORT = re.compile(rb'\A\s*\{\s*"status"\s*:\s*"IN_PROGRESS"')


async def _worker_body(request: Request) -> tuple[dict[str, Any], str | None] | str:
    """The body, and its output's JSON text (None without one), or what is wrong with it."""
    # The SDK sends JSON labelled application/x-www-form-urlencoded: read it raw.
    try:
        body, output_text = _load_json(await request.body(), "output")
    except ValueError as err:
        return f"body: {err}"
    if not isinstance(body, dict):
        return "body must be a JSON object"
    output_json = _member_json(body, "output", output_text) if "output" in body else None
    return body, output_json


def openapi_schema() -> dict[str, Any]:
    """The platform's routes as OpenAPI 3.0: every path parameter and query option declared,
    and the job body's shape (each endpoint's own document types its ``input``)."""
    ms = {"type": "integer", "minimum": 1, "maximum": MAX_POLICY_MS}
    job_body = {
        "type": "object",
        "required": ["input"],
        "properties": {
            "input": {"description": "what the endpoint's handler receives"},
            "webhook": {"type": "string", "description": "URL POSTed the final job"},
            "policy": {
                "type": "object",
                "properties": {
                    "executionTimeout": {**ms, "description": "ms the job may run"},
                    "ttl": {**ms, "description": "ms the job is kept, queued time included"},
                    "lowPriority": {
                        "type": "boolean",
                        "description": "starts no worker: waits for one other jobs started",
                    },
                },
            },
        },
    }

    def path_param(name: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}

    def query(name: str, description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "description": description, "schema": ms}

    def op(
        summary: str, body: bool = False, params: tuple[dict[str, Any], ...] = ()
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {"summary": summary, "responses": {"200": {"description": "OK"}}}
        if body:
            spec["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": job_body}},
            }
        if params:
            spec["parameters"] = list(params)
        return spec

    def route(method: str, operation: dict[str, Any], *names: str) -> dict[str, Any]:
        return {"parameters": [path_param(n) for n in names], method: operation}

    ep = "/v2/{endpoint_id}"
    job = ("endpoint_id", "job_id")
    wait = query("wait", "ms to wait for the result before answering with the job's status")
    ttl = query("ttl", "ms to keep the result from now, at most")
    return {
        "openapi": "3.0.3",
        "info": {"title": "Flash local serverless platform", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            f"{ep}/run": route("post", op("Queue a job (max 10 MB)", body=True), "endpoint_id"),
            f"{ep}/runsync": route(
                "post",
                op("Run a job and wait (max 20 MB)", body=True, params=(wait,)),
                "endpoint_id",
            ),
            f"{ep}/status/{{job_id}}": route(
                "get", op("Job status and output", params=(ttl,)), *job
            ),
            f"{ep}/stream/{{job_id}}": route("get", op("Stream chunks not yet returned"), *job),
            f"{ep}/cancel/{{job_id}}": route("post", op("Cancel a queued or running job"), *job),
            f"{ep}/retry/{{job_id}}": route("post", op("Requeue a FAILED or TIMED_OUT job"), *job),
            f"{ep}/purge-queue": route("post", op("Remove every queued job"), "endpoint_id"),
            f"{ep}/health": route("get", op("Job and worker counts"), "endpoint_id"),
        },
    }
