"""Routes ``await fn(...)`` to the function's endpoint through a RunPod-style API.

Standard library only: the same code runs in a user's script and inside an endpoint
calling another one. A call becomes ``POST /v2/{endpoint}/runsync``; a job not finished in
that window is followed with ``/status`` polls (capped, jittered backoff). Transport
failures are retried under one idempotency key, so a retried submission never runs twice;
by default for as long as a platform restart takes (``_OUTAGE_S``, or $FLASH_CALL_OUTAGE_S
seconds), never past the call's deadline. Every request is bounded in time, so a platform
that stops answering fails the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import os
import random
import re
import sys
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TypeVar

from flash.runtime import context as _context
from flash.runtime.errors import (
    CallDepthError,
    EndpointUnavailableError,
    InvalidResultError,
    PayloadTooLargeError,
    RemoteCancelledError,
    RemoteError,
    RemoteExecutionError,
    RemoteTimeoutError,
    attach_remote_traceback,
    chain_of,
    pickle_problem,
    remote_error_from_fields,
)
from flash.runtime.http import (
    HEADER_UNFIT,
    BodyNotJson,
    HttpClient,
    HttpError,
    Response,
    check_base_url,
    json_body,
    redact_url,
    unfit_for_header,
)
from flash.runtime.jsoncall import JsonResultError, check_json_arguments
from flash.runtime.protocol import (
    DEADLINE_EXCEEDED,
    ERROR_CATEGORIES,
    FLASH_DIR,
    MANIFEST_ENV_VAR,
    MANIFEST_FILENAME,
    MAX_POLICY_MS,
    PROTOCOL_VERSION,
    RESULT_NOT_JSON,
    RUN_LIMIT,
    RUNSYNC_LIMIT,
)
from flash.runtime.serialization import (
    SerializationError,
    deserialize,
    serialize_args,
    set_main_module_resolver,
)
from flash.runtime.signing import (
    CLOCK_SKEW_S,
    DEFAULT_TTL_S,
    KEY_BYTES,
    KEY_ENV_VAR,
    MAX_TTL_S,
    Digests,
    SignatureError,
    UnsignablePayload,
    key_source,
    sign_request,
    unsigned_allowed,
    verify_result,
)

__all__ = ["CallOptions", "Endpoints", "PlatformInvoker", "from_environment"]

MAX_CALL_DEPTH = int(os.environ.get("FLASH_MAX_CALL_DEPTH", "16"))
RUNSYNC_WAIT_MS = 30_000
_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
_FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
# Transport failures are retried for this long from the start of the first failed attempt
# (by default): a platform restarting takes a few seconds.
_OUTAGE_S = 10.0
OUTAGE_ENV_VAR = "FLASH_CALL_OUTAGE_S"  # seconds; overrides _OUTAGE_S
# How long a request may go unanswered beyond what the platform holds it (runsync's wait).
_ANSWER_WITHIN_S = 30.0
# A request may outlast the call's deadline by this much: the platform's own answer about
# the deadline (a timed-out job) is clearer than ours.
_DEADLINE_GRACE_S = 1.0
# What each submission route takes: a bigger body is refused here, before it is sent.
_BODY_LIMITS = {"run": RUN_LIMIT, "runsync": RUNSYNC_LIMIT}
# A job's limit where neither the call nor its config sets one: RunPod's default.
_DEFAULT_EXECUTION_S = 600.0
# A map job's limit is its items' added up, and this for what the job does around them.
_MAP_SLACK_S = 5.0
# A map job's items stop short of the limit by a margin for the rest of the body (the
# signature, the context, JSON's quotes); one item alone may use the whole of it.
_MAP_JOB_BYTES = RUNSYNC_LIMIT * 3 // 4


# What a call's sending gives back: _call's answer, or _open_stream's job.
_Sent = TypeVar("_Sent")


@dataclass(frozen=True)
class CallOptions:
    timeout: float | None = None  # seconds for the whole call; None: the endpoint's limit
    # Transport retries (never for an exception the function raised); None: as many as fit
    # in _OUTAGE_S.
    retries: int | None = None
    serialization: str = "auto"  # "json" | "pickle" | "auto": JSON when both sides allow it
    # The timeout counts from the job's start, not from the call: a map's item, which may
    # wait for a worker behind the map's other items (the platform holds the job to it).
    timeout_from_start: bool = False


class JsonCodec(Protocol):
    @property
    def loose(self) -> bool: ...  # a parameter typed Any/object: "auto" pickles the call

    # BodyNotJson for a value JSON has no form for (the call may go pickled instead).
    def encode(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]: ...

    # encode, or None where JSON would change an argument (5.0 for ``int | float`` arriving
    # as 5, a subclass as its base): "auto" with the key then pickles the call.
    def encode_exact(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, Any] | None: ...

    def decode(self, value: Any) -> Any: ...  # a generator's: the list of its items

    # A generator's codec (``stream``) decodes each item it yields with decode_item.
    @property
    def stream(self) -> bool: ...

    def decode_item(self, value: Any) -> Any: ...


@dataclass(frozen=True)
class _Opened:
    """A job submitted to /run, whose items are read through /stream."""

    url: str
    job_id: str
    deadline: float | None
    nonce: str | None
    submitted: float  # when it was sent (epoch seconds)
    start_by: float | None  # see _start_by


# Set by the SDK (it needs pydantic); inside a worker there is none and calls use pickle.
_json_codec_factory: Callable[[Any], JsonCodec | None] | None = None
_json_method_codec_factory: Callable[[type, str], tuple[JsonCodec, JsonCodec] | None] | None = None


def set_json_codec_factory(
    factory: Callable[[Any], JsonCodec | None] | None,
    method_factory: Callable[[type, str], tuple[JsonCodec, JsonCodec] | None] | None = None,
) -> None:
    """``factory(fn)``: a function's codec; ``method_factory(cls, name)``: codecs for a
    class's constructor and one of its methods. None (from either) means pickle."""
    global _json_codec_factory, _json_method_codec_factory
    _json_codec_factory = factory
    _json_method_codec_factory = method_factory


@dataclass(frozen=True)
class Endpoints:
    """Where each resource's endpoint is: ``{base_url}/v2/{endpoint_id}`` (a base that
    ends in ``/v2`` already, as the runpod SDK's does, gets no second one).

    Locally the endpoint id is the resource name; a deploy step fills ``ids`` (and
    per-resource ``urls``) with production values via ``FLASH_ENDPOINTS``.
    """

    base_url: str
    api_key: str | None = None
    ids: Mapping[str, str] = field(default_factory=dict)
    urls: Mapping[str, str] = field(default_factory=dict)

    def url(self, resource: str) -> str:
        base = self.urls.get(resource, self.base_url).rstrip("/")
        # The runpod SDK's base (endpoint_url_base) ends in /v2: taken as it is.
        base = base.removesuffix("/v2")
        return f"{base}/v2/{self.ids.get(resource, resource)}"

    def __repr__(self) -> str:
        # Reprs end up in logs and tracebacks: the key and any password in a URL stay out.
        key = None if self.api_key is None else "****"
        urls = {name: redact_url(url) for name, url in self.urls.items()}
        return (
            f"Endpoints(base_url={redact_url(self.base_url)!r}, api_key={key!r}, "
            f"ids={dict(self.ids)!r}, urls={urls!r})"
        )


def from_environment(environ: Mapping[str, str] = os.environ) -> Endpoints | None:
    """``FLASH_API_BASE`` (+ ``FLASH_API_KEY``, ``FLASH_ENDPOINTS`` JSON) or None."""
    base = environ.get("FLASH_API_BASE")
    if not base:
        return None
    check_base_url(base, "$FLASH_API_BASE", "put the key in $FLASH_API_KEY")
    try:
        overrides = json.loads(environ.get("FLASH_ENDPOINTS") or "{}")
    except ValueError as exc:
        raise ValueError(f"$FLASH_ENDPOINTS is not valid JSON: {exc}") from None
    ids = {name: spec["id"] for name, spec in overrides.items() if "id" in spec}
    urls = {name: spec["url"] for name, spec in overrides.items() if "url" in spec}
    return Endpoints(base, environ.get("FLASH_API_KEY") or None, ids, urls)


@dataclass(frozen=True)
class _Target:
    resource: str
    function: str  # the name the endpoint's registry knows
    timeout_ms: int | None  # the resource's executionTimeoutMs, if its config says
    # The function or class called, whose parameters name a pickled call's arguments.
    owner: Any = field(default=None, compare=False, repr=False)


class PlatformInvoker:
    """The invoker that sends calls to endpoints; same-endpoint calls stay in-process.

    Pickles are code: without ``signing_key`` (the app's key) it sends no pickled call and
    unpickles no answer, unless ``allow_unsigned`` (default: ``$FLASH_ALLOW_UNSIGNED`` is
    "1", as for workers; for trusted local experiments only). Safe to use from any thread.
    """

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        own_resource: str | None = None,
        signing_key: bytes | None = None,
        allow_unsigned: bool | None = None,
    ) -> None:
        _check_signing_key(signing_key)
        _check_api_key(endpoints.api_key)
        self.endpoints = endpoints
        self.own_resource = own_resource
        self.signing_key = signing_key
        if allow_unsigned is None:
            allow_unsigned = unsigned_allowed()
        self.allow_unsigned = allow_unsigned
        headers = {"Authorization": f"Bearer {endpoints.api_key}"} if endpoints.api_key else {}
        self.http = HttpClient(headers)

    def close(self) -> None:
        """Close the idle connections to the platform (the invoker stays usable)."""
        self.http.close()

    def _digests(self) -> Digests | None:
        """Where serialize keeps the digests of a signed call's big pickles (None: unsigned)."""
        return None if self.signing_key is None else {}

    def _may_pickle(self, target: _Target) -> None:
        """Refuse a pickled call this caller cannot sign: the answer would be unsigned too,
        and unpickling it would run whatever the gateway (or whoever answers) put there."""
        if self.signing_key is not None or self.allow_unsigned:
            return
        raise RemoteError(
            "a pickled call needs the app's signing key, and this client has none: run it "
            "in the project (its .flash/secrets/signing_key is found from the current "
            "folder up), set FLASH_SIGNING_KEY to that file's text, or pass "
            "flash.connect(signing_key=...); or "
            "annotate every parameter and the return value with JSON-able types, and the "
            "function is called with JSON",
            endpoint=target.resource,
            function=target.function,
        )

    # -- the Invoker protocol (flash.runtime.remote) ---------------------------------

    async def call_function(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if fn.resource_name == self.own_resource:
            return await _local(fn, fn.__wrapped__, args, kwargs, collect=fn.is_generator)
        _check_call(fn.__wrapped__, None, args, kwargs)
        target = _target(fn)
        codec = _codec(fn, self.signing_key)
        if codec is not None:
            # In auto mode with the key the worker may answer with a signed pickle where
            # JSON cannot carry the result as it is (a NaN, a date key, a subclass).
            exact = _may_auto_pickle(fn.call_options.serialization, self.signing_key)
            sent = await self._send_json(
                fn,
                target,
                codec,
                args,
                kwargs,
                lambda p: self._call(target, p, fn.call_options, exact=exact),
            )
            if sent is not None:
                output, nonce, job_id = sent
                if exact and codec.stream and isinstance(output, list):
                    return [
                        self._json_or_pickled_item(codec, answer, target, job_id, nonce, index)
                        for index, answer in enumerate(output)
                    ]
                if exact and nonce is not None and _pickled_success(output):
                    return self._unpack(output, target, job_id, nonce, generator=False)
                return _decode_json(codec, output, target, job_id)
        self._may_pickle(target)
        digests = self._digests()
        wire_args, wire_kwargs = serialize_args(args, kwargs, digests=digests)
        payload = {"function_name": target.function, "args": wire_args, "kwargs": wire_kwargs}
        output, nonce, job_id = await self._call(target, payload, fn.call_options, digests)
        return self._unpack(output, target, job_id, nonce, generator=fn.is_generator)

    def batches(self, fn: Any) -> bool:
        """Whether calls of ``fn`` can share a job (call_map): a pickled job can, a JSON job
        carries one call. JSON is chosen when forced, or when the types allow it and this
        caller has no key (no endpoint takes its unsigned pickles)."""
        if fn.resource_name == self.own_resource:
            return True
        # Forced pickle has no codec; auto mode with the key batches typed calls too.
        auto_with_key = fn.call_options.serialization == "auto" and self.signing_key is not None
        return auto_with_key or _codec(fn, self.signing_key) is None

    async def call_map(
        self, fn: Any, calls: list[tuple[tuple[Any, ...], dict[str, Any]]]
    ) -> list[tuple[bool, Any]]:
        """Run several calls of ``fn`` as one job, or as few as the body limit allows:
        ``(True, result)`` or ``(False, exception)`` per call, in order (the caller decides
        whether to raise)."""
        if fn.resource_name == self.own_resource:
            results: list[tuple[bool, Any]] = []
            for args, kwargs in calls:
                try:  # each under the call's timeout, as a call of its own
                    item = await _local(fn, fn.__wrapped__, args, kwargs, collect=fn.is_generator)
                    results.append((True, item))
                except Exception as exc:
                    results.append((False, exc))
            return results
        target = _target(fn)
        self._may_pickle(target)
        items = []
        digests = self._digests()
        for args, kwargs in calls:
            wire_args, wire_kwargs = serialize_args(args, kwargs, digests=digests)
            items.append({"args": wire_args, "kwargs": wire_kwargs})
        # As many jobs as the body limit asks, one after the other (they hold one slot of
        # the map's concurrency); a job's failure is each of its items' failure, unless the
        # job crashed its worker.
        outcomes: list[tuple[bool, Any]] = []
        for job_items in _by_size(items, _MAP_JOB_BYTES):
            try:
                outcomes += await self._map_job(fn, target, job_items, digests)
            except Exception as exc:
                if len(job_items) == 1 or not _worker_crashed(exc):
                    outcomes += [(False, exc)] * len(job_items)
                    continue
                # The job crashed its worker, alone, twice (the platform runs such a job
                # once more, by itself): one of its items did, maybe only one. Each item
                # runs again as a job of its own, so only those that crash a worker fail;
                # after a few such crashes (a config every item fails on: out of memory),
                # the rest fail with the chunk, unrun: each crash costs two worker restarts.
                crashed = 0
                for item in job_items:
                    if crashed >= _MAX_MAP_CRASHES:
                        outcomes.append((False, exc))
                        continue
                    try:
                        outcomes += await self._map_job(fn, target, [item], digests)
                    except Exception as item_exc:
                        outcomes.append((False, item_exc))
                        crashed += _worker_crashed(item_exc)
        return outcomes

    async def _map_job(
        self,
        fn: Any,
        target: _Target,
        items: list[dict[str, Any]],
        digests: Digests | None,
    ) -> list[tuple[bool, Any]]:
        """Run pickled calls (``items``) of ``fn`` as one job; the outcome of each. Each
        item keeps the call's ``timeout`` as its own: the worker fails an item past it alone;
        the job may run as long as its items may, one after another."""
        options = fn.call_options
        payload: dict[str, Any] = {
            "function_name": target.function,
            "execution_type": "map",
            "items": items,
        }
        if options.timeout is not None:
            # Each item held to it, as in-process (a sync one then runs in a thread of its
            # own); a config's executionTimeoutMs bounds the job, its items together.
            payload[_context.ITEM_TIMEOUT_KEY] = options.timeout
        output, nonce, job_id = await self._call(
            target, payload, options, digests, batch=len(items)
        )
        streamed = isinstance(output, list) and len(output) == 1
        if streamed:  # a streaming endpoint's answer: one item, signed as item 0
            output = output[0]
        decoded: dict[int, bytes] = {}
        if isinstance(output, dict) and nonce is not None:
            self._check_mac(output, f"{nonce}:0" if streamed else nonce, decoded, target, job_id)
        answers = output.get("results") if isinstance(output, dict) else None
        if not isinstance(answers, list) or len(answers) != len(items):
            raise RemoteError(
                f"unexpected answer to a map job: {output!r:.200}", **_names(target, job_id)
            )
        unpacked: list[tuple[bool, Any]] = []
        for answer in answers:
            try:
                result = self._unpack_checked(
                    answer, target, job_id, decoded, signed=nonce is not None
                )
                unpacked.append((True, result))
            except Exception as exc:
                unpacked.append((False, exc))
        return unpacked

    async def call_method(
        self, handle: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        remote_class = handle.remote_class
        if remote_class.resource_name == self.own_resource:
            bound = getattr(await _instance_here(handle, self.own_resource), method)
            return await _local(
                remote_class, bound, args, kwargs, collect=True
            )  # generators: a list
        cls = remote_class.__wrapped__
        _check_call(cls, None, handle.args, handle.kwargs)
        _check_call(cls, method, args, kwargs)
        target = _target(remote_class)
        codecs = _method_codecs(remote_class, method, self.signing_key)
        if codecs is not None:
            json_payload = _json_method_payload(target, handle, method, args, kwargs, codecs)
            try:
                output, _, job_id = await self._call(
                    target, json_payload, remote_class.call_options
                )
            except BodyNotJson as exc:
                raise _not_json_method(target, exc, json_payload) from None
            return _decode_json(codecs[1], output, target, job_id)
        self._may_pickle(target)
        digests = self._digests()
        payload = _class_payload(target, handle, method, args, kwargs, digests)
        output, nonce, job_id = await self._call(
            target, payload, remote_class.call_options, digests
        )
        # A generator method's items: streamed by the endpoint, the list of their answers.
        generator = _is_generator_method(cls, method)
        return self._unpack(output, target, job_id, nonce, generator=generator)

    async def stream_method(
        self, handle: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> AsyncIterator[Any]:
        """Yield a generator method's items as the endpoint produces them, from the instance
        the handle's other calls reach (the same job as call_method sends, read through
        /stream)."""
        remote_class = handle.remote_class
        if remote_class.resource_name == self.own_resource:
            bound = getattr(await _instance_here(handle, self.own_resource), method)
            async for item in _stream_here(remote_class, bound, args, kwargs):
                yield item
            return
        cls = remote_class.__wrapped__
        _check_call(cls, None, handle.args, handle.kwargs)
        _check_call(cls, method, args, kwargs)
        target = _target(remote_class)
        options = remote_class.call_options
        codecs = _method_codecs(remote_class, method, self.signing_key)
        if codecs is not None:
            json_payload = _json_method_payload(target, handle, method, args, kwargs, codecs)
            try:
                opened = await self._open_stream(target, json_payload, options)
            except BodyNotJson as exc:
                raise _not_json_method(target, exc, json_payload) from None
            async with contextlib.aclosing(self._follow(target, opened, pickled=False)) as chunks:
                async for _, chunk in chunks:
                    yield _json_item(codecs[1], chunk, target, opened.job_id)
            return
        self._may_pickle(target)
        digests = self._digests()
        payload = _class_payload(target, handle, method, args, kwargs, digests)
        opened = await self._open_stream(target, payload, options, digests)
        async with contextlib.aclosing(self._follow(target, opened, pickled=True)) as chunks:
            async for index, chunk in chunks:
                yield self._unpack_one(chunk, target, opened.job_id, opened.nonce, index)

    async def stream(
        self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> AsyncIterator[Any]:
        """Yield a generator function's items as the endpoint produces them."""
        if fn.resource_name == self.own_resource:
            # This worker serves the endpoint: a job could wait for this very worker.
            async for item in _stream_here(fn, fn.__wrapped__, args, kwargs):
                yield item
            return
        _check_call(fn.__wrapped__, None, args, kwargs)
        target = _target(fn)
        codec = _codec(fn, self.signing_key)
        if codec is not None:
            exact = _may_auto_pickle(fn.call_options.serialization, self.signing_key)
            opened = await self._send_json(
                fn,
                target,
                codec,
                args,
                kwargs,
                lambda p: self._open_stream(target, p, fn.call_options, exact=exact),
            )
            if opened is not None:
                nonce = opened.nonce if exact else None
                async with contextlib.aclosing(
                    self._follow(target, opened, pickled=False)
                ) as chunks:
                    async for index, chunk in chunks:
                        yield self._json_or_pickled_item(
                            codec, chunk, target, opened.job_id, nonce, index
                        )
                return
        self._may_pickle(target)
        digests = self._digests()
        wire_args, wire_kwargs = serialize_args(args, kwargs, digests=digests)
        payload = {"function_name": target.function, "args": wire_args, "kwargs": wire_kwargs}
        opened = await self._open_stream(target, payload, fn.call_options, digests)
        async with contextlib.aclosing(self._follow(target, opened, pickled=True)) as chunks:
            async for index, chunk in chunks:
                yield self._unpack_one(chunk, target, opened.job_id, opened.nonce, index)

    async def _send_json(
        self,
        fn: Any,
        target: _Target,
        codec: JsonCodec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        send: Callable[[dict[str, Any]], Awaitable[_Sent]],
    ) -> _Sent | None:
        """``send`` a function's call as JSON; None when it is to go pickled instead, from a
        caller holding the key in auto mode (a function keeps no state, so it does not
        notice): a value JSON cannot carry, or a body the route refused before it ran (its
        pickle may fit: JSON writes a byte of bytes as up to 6 characters)."""
        mode = fn.call_options.serialization
        arguments: dict[str, Any] = {}
        try:
            if not _may_auto_pickle(mode, self.signing_key):
                arguments = codec.encode(args, kwargs)
            else:
                exact = codec.encode_exact(args, kwargs)
                if exact is None:
                    return None  # JSON would change an argument: pickled, it does not
                arguments = exact
            return await send({"function": target.function, "kwargs": arguments})
        except BodyNotJson as exc:
            if self.signing_key is None or mode == "json":
                raise _not_json(target, exc, mode, arguments) from None
        except PayloadTooLargeError:
            if not _may_auto_pickle(mode, self.signing_key):
                raise
        return None

    async def _open_stream(
        self,
        target: _Target,
        payload: dict[str, Any],
        options: CallOptions,
        digests: Digests | None = None,
        *,
        exact: bool = False,
    ) -> _Opened:
        """Submit ``payload`` as a job to /run, whose items are then read through /stream.
        ``exact``: a typed JSON call's items may come back as signed pickles."""
        body, deadline, nonce = self._job_body(target, payload, options, digests, exact=exact)
        url = self.endpoints.url(target.resource)
        job = await self._submit(url, "run", body, deadline, target, options)
        submitted = time.time()  # the job's time queued counts from about now
        job_id = job.get("id")
        if not isinstance(job_id, str):
            raise EndpointUnavailableError(
                f"{redact_url(url)}/run answered without a job id: {job!r:.200}",
                **_names(target),
            )
        return _Opened(url, job_id, deadline, nonce, submitted, _start_by(body))

    async def _follow(
        self, target: _Target, opened: _Opened, *, pickled: bool
    ) -> AsyncGenerator[tuple[int, Any], None]:
        """Each stream chunk's output with its position, as the endpoint produces them; the
        job's failure raised once its stream ends. Closed early, it cancels the job.

        The deadline is the job's, not the reader's: a job that ended by then gives all its
        chunks, however slowly they are read; one still running then is timed out."""
        url, job_id, nonce = opened.url, opened.job_id, opened.nonce
        finished = False
        index = 0
        poll = _Poll(target, job_id, opened.deadline, opened.submitted, opened.start_by)
        try:
            while True:
                answer = await self._get(url, "stream", poll.deadline, target, job_id)
                chunks = answer.get("stream") or []
                for chunk in chunks:
                    yield index, chunk.get("output") if isinstance(chunk, dict) else None
                    index += 1
                status = answer.get("status")
                if status in _FINAL:
                    finished = True
                    if status != "COMPLETED":  # it has ended: its outcome, however late
                        final = await self._get(url, "status", None, target, job_id)
                        details = self._failure_details(final, target, nonce, pickled=pickled)
                        _raise_for(final, target, details)
                    return
                if poll.cannot_start(answer):
                    raise poll.timed_out("stream", answer)  # the finally cancels the job
                if poll.past_deadline():
                    # Maybe only because the reader took its time over the chunks: the job's
                    # end, as the platform tells it, says whether it ended in time.
                    job = await self._get(url, "status", time.time(), target, job_id)
                    if not _ended_by(job, opened.submitted, poll.deadline):
                        raise poll.timed_out("stream", job)  # the finally cancels the job
                    poll.deadline = None  # it has ended: the rest of its chunks are there
                if chunks:
                    poll.restart()  # items are flowing: ask again soon
                else:  # nothing yet: back off as _call does, not a busy loop
                    await poll.wait()
        finally:
            if not finished:
                await self._cancel(url, job_id)

    # -- the call itself --------------------------------------------------------------

    def _job_body(
        self,
        target: _Target,
        payload: dict[str, Any],
        options: CallOptions,
        digests: Digests | None = None,
        *,
        exact: bool = False,
        batch: int | None = None,
    ) -> tuple[dict[str, Any], float | None, str | None]:
        """The job's body, the caller's deadline for it and the nonce its answer is signed
        with. ``batch``: the number of calls a map job carries, each with the call's limit."""
        caller = _context.current()
        if caller.depth + 1 > MAX_CALL_DEPTH:
            chain = " -> ".join((*caller.chain, target.function))
            raise CallDepthError(
                f"remote calls nested more than {MAX_CALL_DEPTH} deep ({chain}); "
                "endpoints are probably calling each other in a loop",
                **_names(target),
            )
        deadline = _deadline(options, caller, batch)
        if deadline is not None and deadline <= time.time():
            raise RemoteTimeoutError(
                "no time left for this call (the caller's deadline has passed)",
                **_names(target),
            )
        payload["protocol_version"] = PROTOCOL_VERSION
        payload["context"] = _context.CallContext(
            deadline=deadline,
            depth=caller.depth + 1,
            chain=(*caller.chain, target.function),
            parent=caller.job,
        ).to_wire()
        limit_ms = _execution_limit_ms(options, target, deadline, batch)
        if limit_ms is not None:
            # The job's own limit, from its start (the platform's policy): the worker counts
            # it from there, so a call the job makes gets at most what is left of it.
            payload["context"][_context.TIME_LIMIT_KEY] = limit_ms / 1000
        if exact:
            # In the context, which every worker reads leniently: one whose runtime predates
            # it ignores it and answers JSON, as before.
            payload["context"][_context.EXACT_KEY] = True
        nonce = None
        if self.signing_key is not None:
            # A typed JSON call is signed too, though it runs no pickle: so is its failure,
            # whose pickled exception is only unpickled once its signature checks out.
            # The signature's deadline bounds how long the job may wait to start.
            # Without a deadline, as long as the job may run once started (its limit), at
            # least the default: a job of an hour's limit may queue as long as it did when
            # its limit was a deadline counted from the call.
            waits_s = max(DEFAULT_TTL_S, (limit_ms or 0) / 1000)
            signed_until = deadline if deadline is not None else time.time() + waits_s
            # A map job's deadline may be far (its items' limits added up): the signature
            # bounds only its start, and a worker refuses one further off than MAX_TTL_S.
            signed_until = min(signed_until, time.time() + MAX_TTL_S - CLOCK_SKEW_S)
            try:
                signature = sign_request(
                    self.signing_key,
                    endpoint=target.resource,
                    function=target.function,
                    fields=payload,
                    deadline=signed_until,
                    digests=digests,
                )
            except UnsignablePayload as exc:  # a typed call's value: JSON could not carry it
                raise BodyNotJson(str(exc)) from None
            payload["signature"] = signature
            nonce = signature["nonce"]
        body: dict[str, Any] = {"input": payload}
        if limit_ms is not None:
            body["policy"] = {"executionTimeout": limit_ms}
        return body, deadline, nonce

    async def _call(
        self,
        target: _Target,
        payload: dict[str, Any],
        options: CallOptions,
        digests: Digests | None = None,
        *,
        exact: bool = False,
        batch: int | None = None,
    ) -> tuple[Any, str | None, str | None]:
        """The job's output, the nonce its answer is signed with, and the job's id.
        ``exact``: a typed JSON call's result may come back as a signed pickle. ``batch``:
        the number of calls a map job carries."""
        body, deadline, nonce = self._job_body(
            target, payload, options, digests, exact=exact, batch=batch
        )
        url = self.endpoints.url(target.resource)
        start_by = _start_by(body)
        wait_ms = RUNSYNC_WAIT_MS
        for bound in (deadline, start_by):  # the answer comes back by then, to be checked
            if bound is not None:
                wait_ms = max(1, min(wait_ms, int((bound - time.time()) * 1000)))
        submitted = time.time()
        job = await self._submit(
            url, f"runsync?wait={wait_ms}", body, deadline, target, options, wait_ms / 1000
        )
        job_id = job.get("id")
        try:
            poll = _Poll(target, job_id, deadline, submitted, start_by)
            while job.get("status") not in _FINAL:
                if poll.past_deadline() or poll.cannot_start(job):
                    await self._cancel(url, job_id)
                    raise poll.timed_out("call", job)
                await poll.wait()
                job = await self._get(url, "status", deadline, target, job_id)
        except asyncio.CancelledError:
            await self._cancel(url, job_id)
            raise
        if job.get("status") != "COMPLETED":  # a success's answer is checked when unpacked
            details = self._failure_details(job, target, nonce, pickled="function_name" in payload)
            _raise_for(job, target, details)
        return job.get("output"), nonce, job_id if isinstance(job_id, str) else None

    def _failure_details(
        self,
        job: Mapping[str, Any],
        target: _Target,
        nonce: str | None,
        *,
        pickled: bool = True,
    ) -> dict[str, Any]:
        """The worker's answer for a failed job; its pickled exception only if the worker
        signed the answer, or the call was an unsigned pickled one from a caller allowed to
        send those (whose results it unpickles anyway).

        A plain handler's failure is the job's ``output``, less its ``error``, which the
        worker loop moves to the job (as RunPod's SDK does); a streaming handler's is its
        ``error`` as JSON (the worker loop keeps only the error text of a streamed item).
        """
        answer: Any = job.get("output")
        if isinstance(answer, list):
            answer = answer[-1] if answer else None
        error = job.get("error")
        if not isinstance(answer, dict) and isinstance(error, str) and error.startswith("{"):
            with contextlib.suppress(ValueError):
                answer = json.loads(error)
        if not isinstance(answer, dict) or "success" not in answer:
            return {}
        if "error" not in answer and isinstance(error, str):
            answer = {**answer, "error": error}  # signed with it
        if nonce is not None:
            item = answer.get("item")
            try:
                self._check_mac(answer, nonce if item is None else f"{nonce}:{item}", None)
            except RemoteError:  # a worker without the key, or refused before checking
                return _naming_key_source(_without_pickle(answer), self.signing_key)
        elif not (pickled and self.allow_unsigned):  # anyone may have written this answer
            return _without_pickle(answer)
        return answer

    def _check_mac(
        self,
        response: dict[str, Any],
        nonce: str,
        decoded: dict[int, bytes] | None,
        target: _Target | None = None,
        job_id: str | None = None,
    ) -> None:
        """Raise RemoteError unless the worker signed ``response``; big pickles the check
        decodes go into ``decoded`` (by id() of their string), for unpacking."""
        if self.signing_key is None:
            return
        fields = {k: v for k, v in response.items() if k != "mac"}
        try:
            verify_result(
                self.signing_key,
                response.get("mac"),
                nonce=nonce,
                result_fields=fields,
                decoded=decoded,
            )
        except SignatureError as exc:
            raise RemoteError(
                f"the answer failed its signature check: {exc.message}", **_names(target, job_id)
            ) from None

    def _unpack(
        self,
        output: Any,
        target: _Target,
        job_id: str | None,
        nonce: str | None,
        *,
        generator: bool,
    ) -> Any:
        if isinstance(output, list):
            # A streaming endpoint answers with every item it produced.
            items = [
                self._unpack_one(answer, target, job_id, nonce, index)
                for index, answer in enumerate(output)
            ]
            return items if generator else (items[0] if items else None)
        return self._unpack_one(output, target, job_id, nonce, None)

    def _json_or_pickled_item(
        self,
        codec: JsonCodec,
        answer: Any,
        target: _Target,
        job_id: str | None,
        nonce: str | None,
        index: int,
    ) -> Any:
        """One item of a typed generator's call: the signed pickle the endpoint answered
        with where JSON would not carry it as it is (a call made exact, ``nonce`` set),
        else its JSON."""
        if nonce is not None and _pickled_success(answer):
            return self._unpack_one(answer, target, job_id, nonce, index)
        return _json_item(codec, answer, target, job_id)

    def _unpack_one(
        self,
        response: Any,
        target: _Target,
        job_id: str | None,
        nonce: str | None,
        index: int | None,
    ) -> Any:
        decoded: dict[int, bytes] = {}
        if isinstance(response, dict) and nonce is not None:
            key = nonce if index is None else f"{nonce}:{index}"
            self._check_mac(response, key, decoded, target, job_id)
        return self._unpack_checked(response, target, job_id, decoded, signed=nonce is not None)

    def _unpack_checked(
        self,
        response: Any,
        target: _Target,
        job_id: str | None,
        decoded: dict[int, bytes],
        *,
        signed: bool,
    ) -> Any:
        """Unpickle an answer whose signature checked out (``signed``), or one this caller
        was allowed to ask for unsigned; never any other."""
        if not signed and not self.allow_unsigned:
            raise RemoteError(
                "refusing to unpickle an answer nobody signed", **_names(target, job_id)
            )
        return _unpack_one(response, target, job_id, decoded)

    async def _submit(
        self,
        url: str,
        route: str,
        body: dict[str, Any],
        deadline: float | None,
        target: _Target,
        options: CallOptions,
        held_s: float = 0.0,
    ) -> dict[str, Any]:
        """Submit a job to ``url``'s ``route`` (with its query): a body bigger than the
        route takes is refused here, not sent to be refused."""
        content = json_body(body)
        name = route.partition("?")[0]
        limit = _BODY_LIMITS[name]
        if len(content) > limit:
            words = f"the /{name} limit of {_size(limit)}"
            raise _too_large(target, body["input"], len(content), words)
        # One key for every attempt: the platform answers a retried submission with the
        # job the first attempt created (also after a restart: it keeps the keys).
        headers = {"Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/json"}
        try:
            return await self._request(
                "POST",
                f"{url}/{route}",
                content,
                deadline,
                target,
                None,
                headers,
                options.retries,
                held_s,
            )
        except PayloadTooLargeError as exc:  # a platform whose limit is lower than ours
            refused = f"what the platform takes ({exc.message})"
            raise _too_large(target, body["input"], len(content), refused) from None

    async def _get(
        self, url: str, route: str, deadline: float | None, target: _Target, job_id: str | None
    ) -> dict[str, Any]:
        """GET ``route`` (status, stream) of the job ``job_id`` the endpoint at ``url`` took."""
        # The job was accepted: ride out an outage as long as by default, whatever the
        # caller's retries, rather than leave the job running with nobody waiting for it.
        return await self._request(
            "GET",
            f"{url}/{route}/{job_id}",
            None,
            deadline,
            target,
            job_id,
            {},
            None,
            job_url=url if job_id else None,
        )

    async def _request(
        self,
        method: str,
        url: str,
        content: bytes | None,
        deadline: float | None,
        target: _Target,
        job_id: str | None,
        headers: dict[str, str],
        retries: int | None,
        held_s: float = 0.0,
        *,
        job_url: str | None = None,
    ) -> dict[str, Any]:
        """The answer to one request, retrying transport failures (refused, reset, no
        answer, 429, 5xx): ``retries`` times, or while they last under the outage limit.
        ``held_s``: how long the platform may hold the request before answering.
        ``job_url``: the endpoint that accepted the job ``job_id``, which a request about
        it names; an outage that outlasts the retries leaves the job there, and says so."""
        names = _names(target, job_id)
        shown = redact_url(url)
        delay = 0.05
        attempts = 0
        first_failure: float | None = None
        while True:
            attempts += 1
            try:
                response: Response | None = await self.http.request(
                    method,
                    url,
                    content=content,
                    headers=headers,
                    timeout=_request_timeout(held_s, deadline),
                )
            except HttpError as exc:
                problem = str(exc)
                response = None
            if response is not None:
                if response.status < 300:
                    return _json_object(response, shown, names)
                problem = f"{method} {shown}: {_describe(response)}"
                if response.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
                    raise PayloadTooLargeError(problem, **names)
                if response.status not in _TRANSIENT_STATUS:
                    hint = self._refusal_hint(response.status, job_id)
                    raise EndpointUnavailableError(problem + hint, **names)
            if first_failure is None:  # the outage is timed from when it showed
                first_failure = time.monotonic()
            tried = f"{attempts} attempt{'s' if attempts > 1 else ''}"
            if not _may_retry(retries, attempts, first_failure):
                if _past(deadline):
                    break
                kept = "" if job_url is None else _kept_job_note(job_url, job_id)
                raise EndpointUnavailableError(
                    f"failed after {tried}; the last: {problem}{kept}", **names
                )
            await asyncio.sleep(_jitter(delay, deadline))
            delay = min(delay * 2, 1.0)
            if _past(deadline):
                break
        raise RemoteTimeoutError(
            f"the call ran out of time after {tried}; the last: {problem}", **names
        )

    def _refusal_hint(self, status: int, job_id: str | None) -> str:
        """What to check when the platform refuses a request with ``status``, if anything
        on this side can be: the API key this client sends, or which platform it calls."""
        if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
            sent = "an API key the platform refuses" if self.endpoints.api_key else "no API key"
            return (
                f"; this client sends {sent}: set $FLASH_API_KEY to the platform's "
                "(flash run --api-key, flash serve --api-key), or pass "
                "flash.connect(url, api_key=...)"
            )
        if status == HTTPStatus.NOT_FOUND and job_id is None:
            return (
                f"; is {redact_url(self.endpoints.base_url)} ($FLASH_API_BASE, or "
                "flash.connect's URL) the platform serving this project?"
            )
        return ""

    async def _cancel(self, url: str, job_id: str | None) -> None:
        if not job_id:
            return
        # Shielded: the caller is being cancelled, but the job must still be told to stop.
        with contextlib.suppress(HttpError, asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.shield(self.http.request("POST", f"{url}/cancel/{job_id}", timeout=5))


def _by_size(items: list[dict[str, Any]], budget: int) -> list[list[dict[str, Any]]]:
    """``items`` (pickled calls) in order, in runs whose sizes as sent add up to ``budget``
    at most; an item bigger than that on its own (whether it fits, the limit says)."""
    runs: list[list[dict[str, Any]]] = []
    total = 0
    for item in items:
        size = sum(map(len, item["args"])) + sum(map(len, item["kwargs"].values()))
        if not runs or (runs[-1] and total + size > budget):
            runs.append([])
            total = 0
        runs[-1].append(item)
        total += size
    return runs


def _too_large(
    target: _Target, payload: Mapping[str, Any], size: int, limit: str
) -> PayloadTooLargeError:
    """The error for a request over ``limit`` (its words), naming its biggest argument."""
    sizes: dict[str, int] = {}
    for name, size in _argument_sizes(payload, target.owner):
        sizes[name] = max(size, sizes.get(name, 0))  # a map job's items share names
    biggest = max(sizes, key=sizes.__getitem__, default=None)
    which = (
        ""
        if biggest is None
        else f"; its biggest argument is {biggest} ({_size(sizes[biggest])} as sent)"
    )
    return PayloadTooLargeError(
        f"the request is {_size(size)}, over {limit}{which}. Pass big data by reference "
        "(a URL, or a file on a network volume, that the function reads) or split the call",
        **_names(target),
    )


def _argument_sizes(payload: Mapping[str, Any], owner: Any) -> Iterator[tuple[str, int]]:
    """Each argument of a job's input (a map job's items' too) by name, with its size as
    sent. Positional arguments of a pickled call are named by the parameters of ``owner``
    (the function, or the class and its method) they bind to."""
    for item in payload.get("items") or ():
        yield from _argument_sizes(item, owner)
    method = payload.get("method_name")
    for field_name, values in payload.items():
        if field_name in ("args", "method_args") and isinstance(values, list):
            names = _positional_names(owner, method if field_name == "method_args" else None)
            for index, value in enumerate(values):
                label = names[index] if index < len(names) else f"{field_name}[{index}]"
                yield label, len(json_body(value))
        elif field_name in ("kwargs", "init", "method_kwargs") and isinstance(values, dict):
            for name, value in values.items():
                yield name, len(json_body(value))


def _positional_names(owner: Any, method: str | None) -> tuple[str, ...]:
    """The names a function's (a class constructor's, or its ``method``'s) positional
    arguments bind to."""
    found = (
        None if owner is None else _signature(owner, method if isinstance(method, str) else None)
    )
    if found is None:
        return ()
    signature, bound = found
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = tuple(p.name for p in signature.parameters.values() if p.kind in positional)
    return names[1:] if bound else names  # the instance takes the first


def _size(n: int) -> str:
    """A byte count as people read it: ``25.2 MiB``, ``400 KiB``."""
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB".replace(".0 MiB", " MiB")
    if n >= 1024:
        return f"{n / 1024:.0f} KiB"
    return f"{n} bytes"


def _not_json(
    target: _Target, error: BodyNotJson, mode: str, arguments: dict[str, Any]
) -> ValueError:
    """Why a typed call cannot go as JSON (it has no NaN, no infinity), naming the argument,
    and how it can go instead; found only once the body failed to encode."""
    what = str(error)
    try:
        check_json_arguments(arguments)
    except JsonResultError as exc:
        what = f"argument {exc.path}: {exc.message}"
    how = {
        "json": "serialization='json' was asked for",
        "class": "a class's calls go one way (options(serialization='pickle') for them all)",
    }.get(mode, "only a caller holding the app's key may send it pickled")
    return ValueError(f"{target.function}: {what}, so the call cannot go as JSON, and {how}")


def check_arguments(
    signature: inspect.Signature, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> inspect.BoundArguments:
    """The arguments bound as the worker will bind them, or TypeError naming ``name``: a
    call the endpoint would refuse fails here, before any job is sent."""
    try:
        return signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"wrong arguments for {name}: {exc}") from None


def _check_call(
    owner: Any, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """check_arguments for a call of ``owner`` (a function, or a class's constructor) or of
    its ``method``, as the worker makes it."""
    found = _signature(owner, method)
    if found is not None:
        signature, bound = found
        name = owner.__qualname__ if method is None else f"{owner.__qualname__}.{method}"
        check_arguments(signature, name, (_INSTANCE, *args) if bound else args, kwargs)


_INSTANCE = object()  # stands for the worker's instance, bound to a method's first parameter


@functools.lru_cache(maxsize=1024)
def _signature(owner: Any, method: str | None) -> tuple[inspect.Signature, bool] | None:
    """What a call of ``owner`` or of its ``method`` takes, and whether the worker's
    instance is bound to its first parameter; None where Python cannot say (a C wrapper
    such as functools.cache) or a class states its own (pydantic's, by alias): the worker
    judges those. The callable itself is read, not what it wraps: a decorator's wrapper
    may take other arguments than the function it wraps."""
    if method is None:
        if inspect.getattr_static(owner, "__signature__", None) is not None:
            return None
        target = owner
        bound = False
    else:
        target = getattr(owner, method)
        static = inspect.getattr_static(owner, method, None)
        # A plain method, or any descriptor the instance binds (a decorated method), takes
        # the instance first; a static or class method, or a bound one, does not.
        bound = (
            hasattr(type(static), "__get__")
            and not isinstance(static, (staticmethod, classmethod))
            and not inspect.ismethod(target)
        )
    try:
        return inspect.signature(target, follow_wrapped=False), bound
    except (TypeError, ValueError):
        return None


def _codec(fn: Any, signing_key: bytes | None) -> JsonCodec | None:
    mode = fn.call_options.serialization
    if mode == "pickle":
        return None
    codec = _json_codec_factory(fn.__wrapped__) if _json_codec_factory is not None else None
    if codec is not None and codec.loose and _may_auto_pickle(mode, signing_key):
        return None
    if codec is None and mode == "json":
        why = _recorded_reason(fn.__wrapped__) or (
            "annotate every parameter and the return value with JSON-able types"
        )
        raise TypeError(
            f"{fn.__wrapped__.__qualname__} cannot be called with JSON: {why} "
            "(or use serialization='pickle')"
        )
    return codec


def _may_auto_pickle(mode: str, signing_key: bytes | None) -> bool:
    """Whether a typed call may go pickled where JSON would serve it badly (an Any argument
    would not arrive as itself, a tuple as a list; big bytes would swell): in auto mode,
    from a caller with the key. Without it the call goes as JSON, the only kind an endpoint
    takes from such a caller."""
    return mode == "auto" and signing_key is not None


def _method_codecs(
    remote_class: Any, method: str, signing_key: bytes | None
) -> tuple[JsonCodec, JsonCodec] | None:
    """The codecs of a JSON call of ``method``; None: it goes as a signed pickle.

    A worker keeps the instances of JSON calls apart from those of pickled ones, so all the
    calls of a class go one way: pickled from a caller holding the app's key (any method,
    typed or not, and from inside a worker too, which has no JSON codecs), as JSON from one
    without it (the only calls an endpoint takes from it) or when JSON is forced.
    """
    mode = remote_class.call_options.serialization
    if mode == "pickle" or _may_auto_pickle(mode, signing_key):
        return None
    factory = _json_method_codec_factory
    codecs = factory(remote_class.__wrapped__, method) if factory is not None else None
    if codecs is None and mode == "json":
        why = _recorded_reason(remote_class.__wrapped__, method) or (
            "annotate the constructor's parameters, and the method's parameters and return "
            "value, with JSON-able types"
        )
        raise TypeError(
            f"{remote_class.__wrapped__.__qualname__}.{method} cannot be called with JSON: "
            f"{why} (or use serialization='pickle')"
        )
    return codecs


def _json_method_payload(
    target: _Target,
    handle: Any,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    codecs: tuple[JsonCodec, JsonCodec],
) -> dict[str, Any]:
    """A class's call as a JSON job's input; what JSON cannot carry fails here (see
    _not_json_method)."""
    init_codec, method_codec = codecs
    payload: dict[str, Any] = {"function": target.function, "init": {}, "method": method}
    payload["kwargs"] = {}
    try:
        payload["init"] = init_codec.encode(handle.args, handle.kwargs)
        payload["kwargs"] = method_codec.encode(args, kwargs)
    except BodyNotJson as exc:
        raise _not_json_method(target, exc, payload) from None
    return payload


def _not_json_method(target: _Target, exc: BodyNotJson, payload: dict[str, Any]) -> ValueError:
    # Never pickled instead: the worker keeps the instances of JSON calls apart from those of
    # pickled ones, and this call would reach another one.
    return _not_json(target, exc, "class", {**payload["init"], **payload["kwargs"]})


def _recorded_reason(wrapped: Any, method: str | None = None) -> str | None:
    """Why the build gave ``wrapped`` (or its ``method``) no JSON schema, as its manifest
    records (``pickle_only``): this process's types may allow what the build's did not.
    Read only on the way to an error, from the manifest of the project ``wrapped`` is in."""
    qualname = getattr(wrapped, "__qualname__", "")
    for manifest, entries in _manifest_functions(wrapped):
        names = {f"{module}.{qualname}" for module in _module_names(wrapped, manifest)}
        for entry in entries:
            if entry.get("qualified_name") not in names:
                continue
            why = entry.get("pickle_only")
            if method is not None and not why:
                schema = entry.get("schema")
                methods = schema.get("pickle_only_methods") if isinstance(schema, dict) else None
                why = methods.get(method) if isinstance(methods, dict) else None
            return why if isinstance(why, str) and why else None
    return None


def _manifest_functions(owner: Any) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    """Each manifest of the project ``owner`` (a function, a module) is in that this can
    read, nearest first, with the function entries of all its endpoints."""
    for manifest in _manifest_candidates(owner):
        try:
            resources = json.loads(manifest.read_text(encoding="utf-8"))["resources"].values()
            entries = [
                entry
                for resource in resources
                if isinstance(resource, dict) and isinstance(resource.get("functions"), list)
                for entry in resource["functions"]
                if isinstance(entry, dict)
            ]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # none there, or not one this can read: the next candidate
        yield manifest, entries


def _module_names(wrapped: Any, manifest: Path) -> list[str]:
    """The names the build may know ``wrapped``'s module by: its own, and for a script run
    as ``__main__``, the one its file has in the project of ``manifest``, as the build names
    modules (``pkg/mod.py``: ``pkg.mod``; ``src/pkg/mod.py``: ``pkg.mod`` in a src layout)."""
    module = getattr(wrapped, "__module__", "")
    if module != "__main__":
        return [module]
    try:
        return [module, *_file_module_names(inspect.getfile(wrapped), manifest)]
    except TypeError:
        return [module]


def _file_module_names(file: str, manifest: Path) -> list[str]:
    """The names the project of ``manifest`` may know the module of ``file`` by (see
    _module_names); none where it is not one of its files."""
    root = manifest.parent.parent if manifest.parent.name == FLASH_DIR else manifest.parent
    try:
        relative = Path(file).resolve().relative_to(root.resolve())
    except (OSError, ValueError):
        return []  # not a file of that project
    parts = list(relative.with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    names = []
    if parts and relative.suffix == ".py":
        names.append(".".join(parts))
        if len(parts) > 1 and parts[0] == "src":  # a "src layout" project, or not
            names.append(".".join(parts[1:]))
    return names


def _script_module_names(main: ModuleType) -> list[str]:
    """The names the workers of a built project import the file of ``main`` (this process's
    ``__main__``: ``python main.py``) by, the build's own first, where the build serves
    functions of that module (its workers import it); else none. The script's classes then
    travel as that module's, and come back as the script's (flash.runtime.serialization)."""
    file = getattr(main, "__file__", None)
    if not isinstance(file, str):
        return []
    for manifest, entries in _manifest_functions(main):
        served = {entry.get("module") for entry in entries}
        names = _file_module_names(file, manifest)
        return sorted(names, key=lambda name: name not in served) if served & set(names) else []
    return []


set_main_module_resolver(_script_module_names)


def _main_module_name(wrapped: Any) -> str | None:
    """The dotted name the build knows a script's (``__main__``'s) module by, where it can be
    known: from its file's place in the project of the manifest found first, else the name
    ``python -m`` ran it by."""
    for manifest in _manifest_candidates(wrapped):
        if manifest.is_file():
            names = _module_names(wrapped, manifest)
            if len(names) > 1:
                return names[1]  # the worker resolves the src-layout twin as well
    main = sys.modules.get("__main__")
    if getattr(wrapped, "__globals__", None) is getattr(main, "__dict__", False):
        spec = getattr(main, "__spec__", None)
        name = getattr(spec, "name", None)
        if isinstance(name, str) and name and name != "__main__":
            return name
    return None


def _manifest_candidates(wrapped: Any) -> Iterator[Path]:
    """$FLASH_MANIFEST_PATH, then a worker's ``flash_manifest.json`` or a project's
    ``.flash/flash_manifest.json`` in the folders from ``wrapped``'s file up, then from the
    working directory up."""
    named = os.environ.get(MANIFEST_ENV_VAR)
    if named:
        yield Path(named) / MANIFEST_FILENAME if Path(named).is_dir() else Path(named)
    starts = []
    with contextlib.suppress(TypeError, OSError):
        starts.append(Path(inspect.getfile(wrapped)).resolve().parent)
    with contextlib.suppress(OSError):
        starts.append(Path.cwd())
    for start in starts:
        for folder in (start, *start.parents):
            yield folder / MANIFEST_FILENAME
            yield folder / FLASH_DIR / MANIFEST_FILENAME


def _pickled_success(output: Any) -> bool:
    """Whether a typed JSON call's answer carries its result pickled (``exact``), not as
    JSON; a streaming endpoint's answer is the list of one."""
    if isinstance(output, list) and len(output) == 1:
        output = output[0]
    return isinstance(output, dict) and output.get("success") is True and "encoding" not in output


def _json_result(output: Any, target: _Target, job_id: str | None) -> Any:
    """The result of a typed JSON call's answer."""
    if isinstance(output, list) and len(output) == 1:  # a streaming endpoint's answer
        output = output[0]
    if not isinstance(output, dict) or output.get("encoding") != "json":
        raise RemoteError(f"expected a JSON answer, got {output!r:.200}", **_names(target, job_id))
    return output.get("result")


def _decode_json(codec: JsonCodec, output: Any, target: _Target, job_id: str | None) -> Any:
    """A typed call's result as its return annotation says, or InvalidResultError. A
    generator's: the list of its items, each an answer of its own from a streaming endpoint."""
    if codec.stream and isinstance(output, list):
        return [_json_item(codec, answer, target, job_id) for answer in output]
    result = _json_result(output, target, job_id)
    try:
        return codec.decode(result)
    except ValueError as exc:  # pydantic's ValidationError is one; this module cannot name it
        raise InvalidResultError(str(exc), **_names(target, job_id)) from None


def _json_item(codec: JsonCodec, answer: Any, target: _Target, job_id: str | None) -> Any:
    """One item a typed generator yielded, from its answer (a stream chunk's output)."""
    if isinstance(answer, dict) and answer.get("success") is False:
        common = _names(target, job_id)
        # Unsigned (a JSON success is not signed): its pickled exception stays unread.
        raise _remote_exception(str(answer.get("error", "")), _without_pickle(answer), common)
    if not isinstance(answer, dict) or answer.get("encoding") != "json":
        raise RemoteError(f"expected a JSON answer, got {answer!r:.200}", **_names(target, job_id))
    try:
        return codec.decode_item(answer.get("result"))
    except ValueError as exc:  # pydantic's ValidationError is one; this module cannot name it
        raise InvalidResultError(str(exc), **_names(target, job_id)) from None


def _class_payload(
    target: _Target,
    handle: Any,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    digests: Digests | None,
) -> dict[str, Any]:
    """A pickled call of ``method`` on the instance ``handle`` stands for: the worker keeps
    one per constructor arguments as pickled, so each call of the handle reaches it."""
    ctor_args, ctor_kwargs = serialize_args(
        handle.args, handle.kwargs, digests=digests, label="constructor "
    )
    method_args, method_kwargs = serialize_args(args, kwargs, digests=digests)
    return {
        "function_name": target.function,
        "execution_type": "class",
        "args": ctor_args,
        "kwargs": ctor_kwargs,
        "method_name": method,
        "method_args": method_args,
        "method_kwargs": method_kwargs,
    }


def _is_generator_method(cls: Any, method: str) -> bool:
    found = getattr(cls, method, None)
    return inspect.isgeneratorfunction(found) or inspect.isasyncgenfunction(found)


def _names(target: _Target | None, job_id: str | None = None) -> dict[str, Any]:
    """What a RemoteError says about the call it belongs to."""
    if target is None:
        return {"job_id": job_id}
    return {"endpoint": target.resource, "function": target.function, "job_id": job_id}


def _check_signing_key(key: Any) -> None:
    """A key that could sign nothing is a mistake to report now, not at every call."""
    if key is None:
        return
    if not isinstance(key, bytes):
        hint = " (bytes.fromhex of the key's text)" if isinstance(key, str) else ""
        raise TypeError(f"signing_key must be bytes, not {type(key).__name__}{hint}")
    if len(key) != KEY_BYTES:
        raise ValueError(
            f"signing_key must be the app's {KEY_BYTES}-byte key (bytes.fromhex of the text in "
            f".flash/secrets/signing_key, or of FLASH_SIGNING_KEY), got {len(key)} bytes"
        )


def _check_api_key(key: str | None) -> None:
    """A key that would break the request's headers (a newline ends one and starts another)
    is refused now. Never quoted: it is a secret."""
    if key is not None and unfit_for_header(key):
        raise ValueError(f"api_key (or FLASH_API_KEY) {HEADER_UNFIT}")


def _target(remote: Any) -> _Target:
    wrapped = remote.__wrapped__
    module = getattr(wrapped, "__module__", "__main__")
    if module == "__main__":
        # The short name is ambiguous where two modules on the endpoint define it.
        module = _main_module_name(wrapped) or module
    name = wrapped.__qualname__ if module == "__main__" else f"{module}.{wrapped.__qualname__}"
    config_timeout = getattr(remote.resource_config, "executionTimeoutMs", None)
    return _Target(remote.resource_name, name, config_timeout, wrapped)


def _deadline(
    options: CallOptions, caller: _context.CallContext, batch: int | None = None
) -> float | None:
    """When the caller stops waiting (epoch seconds): its call's ``timeout`` from now, and
    no later than its own caller's deadline. A map's items count theirs from their start
    instead (a map job, ``batch``, whose worker holds each item to it; an item as a job of
    its own, ``timeout_from_start``): an item waiting for a worker behind the map's other
    items is not failed for that, and the platform ends the job at its execution limit.
    Not the config's ``executionTimeoutMs``: that is the platform's limit on the job once it
    runs (see _execution_limit_ms), and the time the job waits for a worker does not count
    against it."""
    candidates = [caller.deadline] if caller.deadline is not None else []
    if options.timeout is not None and batch is None and not options.timeout_from_start:
        candidates.append(time.time() + options.timeout)
    return min(candidates) if candidates else None


def _execution_limit_ms(
    options: CallOptions, target: _Target, deadline: float | None, batch: int | None = None
) -> int | None:
    """The job's ``policy.executionTimeout`` (ms from its start): the call's ``timeout``
    (it wins over the config's, as a policy does on the platform), else the config's
    ``executionTimeoutMs``, and never past the caller's deadline; None leaves the platform's
    own limit (the endpoint's, or its default). A map job may run as long as its items may,
    one after another: the worker holds each to the limit of one call (_item_limit_s)."""
    limits: list[float] = []
    # A map job's items have RunPod's default each at least: the job runs them one by one.
    each = _item_limit_s(options, target, _DEFAULT_EXECUTION_S if batch is not None else None)
    if each is not None:
        limits.append(_job_s(each, batch))
    if deadline is not None:
        limits.append(deadline - time.time())
    if not limits:
        return None
    return max(1, min(MAX_POLICY_MS, int(min(limits) * 1000)))


def _item_limit_s(options: CallOptions, target: _Target, default: float | None) -> float | None:
    """Seconds one call may run: the call's ``timeout``, else the config's
    ``executionTimeoutMs``, else ``default``."""
    if options.timeout is not None:
        return options.timeout
    if target.timeout_ms:
        return target.timeout_ms / 1000
    return default


def _job_s(each: float, batch: int | None) -> float:
    """Seconds a job of ``batch`` calls (None: one, not a map job) may take, each ``each``."""
    return each if batch is None else each * batch + _MAP_SLACK_S


def _request_timeout(held_s: float, deadline: float | None) -> float:
    """How long one request may take: what the platform may hold it plus time to answer,
    and not much past the call's deadline."""
    limit = held_s + _ANSWER_WITHIN_S
    if deadline is not None:
        limit = min(limit, max(0.001, deadline - time.time() + _DEADLINE_GRACE_S))
    return limit


def _outage_s() -> float:
    """How long transport failures are retried by default: $FLASH_CALL_OUTAGE_S seconds,
    else ``_OUTAGE_S`` (read at each call, so a process may change it)."""
    try:
        return max(0.0, float(os.environ.get(OUTAGE_ENV_VAR) or _OUTAGE_S))
    except ValueError:
        return _OUTAGE_S


def _may_retry(retries: int | None, attempts: int, first_failure: float) -> bool:
    if retries is not None:
        return attempts <= retries
    return time.monotonic() - first_failure < _outage_s()


def _kept_job_note(url: str, job_id: str | None) -> str:
    """What becomes of a job the platform accepted when its caller gives up on an outage:
    the platform keeps it and runs it once back, so calling again would run it twice."""
    shown = redact_url(url)
    return (
        f"; the platform accepted job {job_id} and keeps it: it runs when the platform is "
        f"back, so calling again runs it twice. Its result: GET {shown}/status/{job_id}; "
        f"to cancel it: POST {shown}/cancel/{job_id}"
    )


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.time() >= deadline


class _Poll:
    """Asking a job how it goes: after 5 ms, then twice as long each time up to 1 s (with
    jitter), never past the call's deadline."""

    def __init__(
        self,
        target: _Target,
        job_id: str | None,
        deadline: float | None,
        submitted: float,
        start_by: float | None = None,
    ) -> None:
        self.target = target
        self.job_id = job_id
        self.deadline = deadline
        self.submitted = submitted
        self.start_by = start_by
        self.delay = 0.005

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def cannot_start(self, job: Mapping[str, Any]) -> bool:
        """Whether the job, queued as ``job`` says, can no longer start (see _start_by)."""
        return (
            self.start_by is not None
            and job.get("status") == "IN_QUEUE"
            and time.time() >= self.start_by
        )

    def timed_out(self, what: str, job: Mapping[str, Any]) -> RemoteTimeoutError:
        """The error for a call whose deadline passed while its job was as ``job`` (its
        last answer) says."""
        message = f"the {what} did not finish in time"
        if job.get("status") == "IN_QUEUE":
            waited = time.time() - self.submitted
            why = f"the {what}'s time ran out"
            if not self.past_deadline():  # cannot_start
                why = "its signature no longer lets a worker start it"
            message = (
                f"the {what}'s job never started: it waited in the queue for {waited:.1f} s, "
                f"and {why}"
            )
        return RemoteTimeoutError(message, **_names(self.target, self.job_id))

    def restart(self) -> None:
        self.delay = 0.005

    async def wait(self) -> None:
        await asyncio.sleep(_jitter(self.delay, self.deadline))
        self.delay = min(self.delay * 2, 1.0)


def _start_by(body: Mapping[str, Any]) -> float | None:
    """Until when a worker may start the job: a signed one, until its signature's deadline
    (and the clock skew a worker allows); past it a worker refuses the job, so a caller
    whose own deadline is further off (a map's items, which count theirs from their
    start) or who has none stops waiting for it then. None: unsigned, no bound."""
    signature = body.get("input", {}).get("signature")
    deadline = signature.get("deadline") if isinstance(signature, dict) else None
    return deadline + CLOCK_SKEW_S if isinstance(deadline, float) else None


def _ended_by(job: Mapping[str, Any], submitted: float, deadline: float | None) -> bool:
    """Whether a job (its /status answer) had ended by ``deadline``: its time queued and
    running (``delayTime``, ``executionTime``) counted from when it was ``submitted``. A
    job that does not report them (it never ran) is not known to have."""
    delay, ran = job.get("delayTime"), job.get("executionTime")
    if job.get("status") not in _FINAL or deadline is None:
        return False
    if not isinstance(delay, int) or not isinstance(ran, int):
        return False
    return submitted + (delay + ran) / 1000 <= deadline


def _jitter(delay: float, deadline: float | None) -> float:
    wait = delay * random.uniform(0.8, 1.2)
    if deadline is not None:
        wait = max(0.0, min(wait, deadline - time.time()))
    return wait


def _json_object(response: Response, url: str, names: dict[str, Any]) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise EndpointUnavailableError(
            f"{url} answered with invalid JSON: {exc}", **names
        ) from None
    if not isinstance(data, dict):
        raise EndpointUnavailableError(
            f"{url} answered with {type(data).__name__}, not an object", **names
        )
    return data


def _describe(response: Response) -> str:
    try:
        detail = response.json()
    except ValueError:
        detail = response.body[:200].decode("utf-8", "replace").strip()
    if isinstance(detail, dict) and "error" in detail:
        detail = detail["error"]
    if detail in (None, "", {}):  # no body: the status's own words
        try:
            return f"HTTP {response.status} {HTTPStatus(response.status).phrase}"
        except ValueError:
            return f"HTTP {response.status}"
    return f"HTTP {response.status}: {detail}"


def _raise_for(job: Mapping[str, Any], target: _Target, output: Any) -> None:
    """Raise the error for a job that did not complete (callers check COMPLETED first)."""
    status = job.get("status")
    job_id = job.get("id")
    common = _names(target, job_id)
    if status == "TIMED_OUT":
        # The platform's words say which limit ended it (its execution timeout, or its ttl
        # while it waited) and how long that was.
        reason = job.get("error")
        if not isinstance(reason, str) or not reason:
            reason = "it ran past its execution timeout"
        raise RemoteTimeoutError(f"the job timed out: {reason}", **common)
    if status == "CANCELLED":
        raise RemoteCancelledError("the job was cancelled", **common)
    details = output if isinstance(output, dict) else {}
    message = details.get("error") or job.get("error") or "the job failed"
    if not details and isinstance(message, str) and message.startswith("{"):
        # The RunPod SDK reports a crashed handler as a JSON string.
        try:
            parsed = json.loads(message)
            details = {
                "error_type": parsed.get("error_type"),
                "traceback": parsed.get("error_traceback", ""),
            }
            message = parsed.get("error_message", message)
        except ValueError:
            pass
    raise _remote_exception(str(message), details, common)


# Items of a map chunk run again one by one after its job crashed a worker, at most this
# many of them crashing a worker again before the rest fail with the chunk.
_MAX_MAP_CRASHES = 3
# How the platform fails a job that a worker's process died running (it exited, or a
# signal killed it), as nothing the worker answered: "worker <id> exited with code 7; ...".
_WORKER_CRASH = re.compile(r"worker \S+ (?:exited with code -?\d+|was killed by signal \d+)")


def _worker_crashed(exc: BaseException) -> bool:
    """Whether ``exc`` is the failure of a job whose worker process died running it."""
    return (
        type(exc) is RemoteExecutionError
        and exc.remote_type is None
        and _WORKER_CRASH.match(exc.message) is not None
    )


def _without_pickle(answer: Mapping[str, Any]) -> dict[str, Any]:
    """An answer nobody vouches for: its message, type, traceback and issues (text), but not
    its pickled exception, which only a signed answer's gets unpickled, nor the Flash error
    it names (a forged one would steer the caller's handling, a retry on a timeout say)."""
    return {k: v for k, v in answer.items() if k not in ("exception", "remote_error")}


# What a worker refusing a request signed with another key advises (flash.runtime.signing):
# the caller names the source of its own key instead, the one the user may have to fix.
_KEY_ADVICE = f"check {KEY_ENV_VAR} on caller and worker"


def _naming_key_source(answer: dict[str, Any], key: bytes | None) -> dict[str, Any]:
    """A refusal of a request signed with another key, naming where this caller's key came
    from (a key file, ``$FLASH_SIGNING_KEY``, flash.connect), never the key."""
    error = answer.get("error")
    if key is None or not isinstance(error, str) or _KEY_ADVICE not in error:
        return answer
    mine = f"this caller's key came from {key_source(key)}: check it against the workers' key"
    return {**answer, "error": error.replace(_KEY_ADVICE, mine, 1)}


def _remote_exception(
    message: str, details: Mapping[str, Any], common: dict[str, Any]
) -> BaseException:
    remote_type = details.get("error_type")
    remote_tb = details.get("traceback") or ""
    pickled = details.get("exception")
    why = details.get("exception_not_sent")  # the worker's reason, where it sent none
    if isinstance(pickled, str):
        try:
            original = deserialize(pickled)
        except SerializationError as exc:  # its class is not here, say
            original, why = None, pickle_problem(exc)
        if isinstance(original, BaseException):
            # The traceback text shows the notes of the exception and of those it was raised
            # from (remote tracebacks of the calls they came through), which they carry
            # themselves: noted again, they would double at every hop of a chain of calls.
            for link in chain_of(original):
                for note in getattr(link, "__notes__", None) or ():
                    if isinstance(note, str):
                        remote_tb = remote_tb.replace(note + "\n", "", 1)
            attach_remote_traceback(original, remote_tb, common["endpoint"], common["job_id"])
            return original
    # Flash's own error, raised by a call the function made: raised as itself, not wrapped.
    nested = remote_error_from_fields(details.get("remote_error"))
    if nested is not None:
        nested.remote_traceback = remote_tb  # noted under this call's job, not the nested one's
        attach_remote_traceback(nested, remote_tb, common["endpoint"], common["job_id"])
        return nested
    kind = RemoteExecutionError if remote_type not in ERROR_CATEGORIES else RemoteError
    if remote_type == DEADLINE_EXCEEDED:  # the caller's time ran out before the job started
        kind = RemoteTimeoutError
    elif remote_type == RESULT_NOT_JSON:  # the worker's check of a typed result, as ours
        kind = InvalidResultError
    error = kind(message, remote_type=remote_type, remote_traceback=remote_tb, **common)
    if remote_type and isinstance(why, str) and why:
        # First: under the message, above the remote traceback.
        notes = getattr(error, "__notes__", [])
        error.__notes__ = [f"{remote_type} could not be rebuilt here: {why}", *notes]
    return error


def _unpack_one(
    response: Any, target: _Target, job_id: str | None, decoded: dict[int, bytes] | None
) -> Any:
    common = _names(target, job_id)
    if not isinstance(response, dict) or "success" not in response:
        raise RemoteError(f"unexpected answer from the endpoint: {response!r:.200}", **common)
    if not response["success"]:
        raise _remote_exception(str(response.get("error", "")), response, common)
    try:
        return deserialize(response["result"], decoded)
    except SerializationError as exc:
        raise RemoteError(f"cannot decode the result: {exc}", **common) from None


async def _local(
    remote: Any,
    fn: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    collect: bool = False,
) -> Any:
    """A same-endpoint call of ``fn`` (what ``remote``, a remote function or class, runs),
    run here as an in-process call would run it: under its timeout, and no longer than its
    caller has left, as a job would be."""
    from flash.runtime.remote import _run_local  # remote imports this module

    timeout, names = _local_limit(remote, fn)
    return await _run_local(fn, args, kwargs, collect, timeout, names)


async def _instance_here(handle: Any, endpoint: str | None) -> Any:
    """The instance a same-endpoint call of ``handle`` reaches: the one the worker's jobs
    reach for its constructor arguments (one per worker per arguments as sent)."""
    from flash.runtime.generic_handler import instance_here  # it is the worker's

    return await instance_here(endpoint, _target(handle.remote_class).function, handle)


def _stream_here(
    remote: Any, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> AsyncIterator[Any]:
    """A same-endpoint stream, run here as an in-process stream would run it: to end
    within its timeout, and no later than its caller's deadline."""
    from flash.runtime.remote import _stream_local  # remote imports this module

    timeout, names = _local_limit(remote, fn)
    return _stream_local(fn, args, kwargs, timeout, names)


def _local_limit(remote: Any, fn: Any) -> tuple[float | None, dict[str, Any]]:
    """The seconds a same-endpoint call of ``remote`` (running ``fn``) may take (None: no
    limit) and what its RemoteTimeoutError names: the call's ``timeout``, at most what the
    caller has left (its job's deadline, which the config's ``executionTimeoutMs`` sets from
    its start). Not the config's limit itself: that is a job's, and this call is part of its
    caller's job. Sync code given no ``timeout`` runs on the caller's thread, as a call does
    in-process (a limit would move it to a thread of its own, where thread-bound state such
    as an sqlite connection fails): only a deadline already passed stops it, before it runs."""
    names = remote._local_names()
    timeout = remote.call_options.timeout
    remaining = _context.current().remaining()
    if remaining is not None:
        if remaining <= 0:
            raise RemoteTimeoutError(
                "no time left for this call (the caller's deadline has passed)", **names
            )
        is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        if timeout is not None or is_async:
            timeout = remaining if timeout is None else min(timeout, remaining)
    return timeout, names
