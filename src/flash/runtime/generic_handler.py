"""The job handler every endpoint runs: ``handler = create_handler(FUNCTION_REGISTRY)``.

A job is ``{"id": ..., "input": {...}}`` in the wire format of RunPod Flash's ``tetra_rp``:
``function_name``, ``execution_type`` ("function" | "class"), ``args``/``kwargs`` (base64
cloudpickle; for a class, the constructor's), ``method_name``/``method_args``/``method_kwargs``
(for a class), and ``protocol_version`` (absent means 1). The handler never raises, except
``asyncio.CancelledError`` when the job itself is cancelled, so job cancellation still works (a
CancelledError user code raises on its own fails the job like any other exception): every
failure becomes
``{"success": False, "error", "error_type", "traceback", "protocol_version"}``.

Standard library and cloudpickle only: this module runs inside every worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import copy
import functools
import inspect
import json
import os
import re
import sys
import threading
import traceback
import types
import typing
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, cast

from flash.runtime import context as _context
from flash.runtime import errors as _errors
from flash.runtime import jsoncall as _jsoncall
from flash.runtime import jsonschema as _jsonschema
from flash.runtime import serialization as _serialization
from flash.runtime import signing as _signing
from flash.runtime.errors import (
    OwnCancelledError,
    RemoteError,
    remote_error_fields,
    run_sync_code,
)
from flash.runtime.protocol import (
    ARGUMENT_DECODE_ERROR,
    DEADLINE_EXCEEDED,
    EXECUTION_TYPE_MISMATCH,
    INVALID_ARGUMENTS,
    INVALID_INPUT,
    INVALID_JOB,
    MANIFEST_ENV_VAR,
    MANIFEST_FILENAME,
    MAX_JSON_DEPTH,
    NOT_JSON_CALLABLE,
    PROTOCOL_VERSION,
    RESULT_NOT_JSON,
    RESULT_NOT_PICKLABLE,
    SIGNATURE_REJECTED,
    SOURCE_DIR_ENV_VAR,
    SUPPORTED_PROTOCOL_VERSIONS,
    UNKNOWN_FUNCTION,
    UNKNOWN_METHOD,
    UNSUPPORTED_PROTOCOL,
    VERSION_MISMATCH,
    WORKER_ERROR,
    call_names,
    unwrap_remote,
    worker_concurrency,
)
from flash.runtime.serialization import (
    SerializationError,
    _lookup_qualname,
    _type_name,
    deserialize_args,
    serialize,
)

__all__ = [
    "Handler",
    "ManifestError",
    "create_handler",
    "find_remote",
    "load_manifest",
    "remote_object",
]


Handler = (
    Callable[[Any], Awaitable[dict[str, Any]]] | Callable[[Any], AsyncIterator[dict[str, Any]]]
)

_EXECUTION_TYPES = ("function", "class", "map")
# One "map" job carries at most this many calls.
MAX_MAP_ITEMS = 1024
# A pickled exception travels with the error only while it is small.
_MAX_PICKLED_EXCEPTION = 64 * 1024
# An answer's error message and traceback text are cut to this many bytes of UTF-8 (head
# and tail kept): a huge message would otherwise be stored, and repeated, at every hop.
_MAX_ERROR_TEXT = _errors.MAX_ERROR_TEXT
_MISSING = object()
_FROM_ENV = object()

# Frames of this machinery, stripped from the front of a user traceback.
_PLUMBING_FILES = frozenset(
    os.path.abspath(f)
    for f in (__file__, _serialization.__file__, _errors.__file__, _context.__file__)
)
_PLUMBING_DIRS: tuple[str, ...] = tuple(
    os.path.dirname(os.path.abspath(mod.__file__ or "")) + os.sep
    for mod in (asyncio, concurrent.futures)
)


# The folder the worker runs the build in (the platform starts it there): tracebacks name
# its files as the project's own where they are there (see _in_source_dir).
_APP_DIR: str | None = None
with contextlib.suppress(OSError):
    _APP_DIR = os.getcwd() + os.sep
# An exception group's lines start with "|" margins: `  |   File "...", line 3, in f`.
_TRACEBACK_FILE = re.compile(r'^([ \t|]*File ")([^"]+)(")', re.MULTILINE)
# Flash's runtime (the served copy of it, in a worker): its frames at the end of a stack are
# those of a nested call that failed, not the user's.
_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class ManifestError(ValueError):
    """``flash_manifest.json`` exists but cannot be read as a JSON object."""


class _JobError(Exception):
    """A job the worker cannot run, reported under a category rather than a class name."""

    def __init__(
        self,
        error_type: str,
        message: str,
        cause: BaseException | None = None,
        issues: list[dict[str, str]] | None = None,
        issues_truncated: bool = False,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.cause = cause
        self.issues = issues
        self.issues_truncated = issues_truncated  # issues stop at MAX_ISSUES: maybe not all


class _Call(NamedTuple):
    """A job that passed every check and may now be decoded and run."""

    name: str
    execution_type: str
    target: Any
    payload: dict[str, Any]
    context: _context.CallContext
    nonce: str | None  # the verified request's, for signing the answer
    # Bytes of big pickles the signature check decoded, by id() of their string.
    decoded: dict[int, bytes] | None = None
    # Digests of the big pickles in the answer, kept for signing it (None: not signed).
    digests: _signing.Digests | None = None

    @property
    def is_json(self) -> bool:
        """A typed JSON call ("json" or "json_method"): it runs no pickle."""
        return self.execution_type.startswith("json")


class _UserCodeError(Exception):
    """Carries an exception raised by user code out to the handler."""

    def __init__(self, label: str, exc: BaseException) -> None:
        super().__init__(label)
        self.label = label
        self.exc = exc


# From Python 3.11 a task says whether it is being cancelled (Task.cancelling()).
_HAS_CANCELLING = hasattr(asyncio.Task, "cancelling")


def _cancelling() -> bool:
    """Whether this task is being cancelled (the job was stopped, timed out, the worker shuts
    down), so a CancelledError must go on; else it is user code's own and fails the job."""
    if not _HAS_CANCELLING:
        # 3.10 cannot tell: user code's own were already told apart where raised.
        return True
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


class _StopIterationError(Exception):
    """Carries a StopIteration sync user code raised in a thread out of it: a future cannot
    hold one (asyncio refuses it, and the job would hang)."""

    def __init__(self, exc: StopIteration) -> None:
        super().__init__("raised StopIteration")
        self.exc = exc


def _user_exception(exc: BaseException) -> BaseException:
    return exc.exc if isinstance(exc, (OwnCancelledError, _StopIterationError)) else exc


def remote_object(imported: types.ModuleType, name: str) -> Any:
    """The @remote function or class ``name`` of the ``imported`` module that ``flash build``
    found, for a generated handler's registry. Decorators above @remote that keep
    ``__wrapped__`` (functools.wraps) are looked through: the endpoint runs the @remote
    function, as its callers' calls reach it. LookupError when the module does not define
    the name (a conditional definition) or rebinds it to something else, so an endpoint
    never serves another object in its place."""
    module = imported.__name__
    found = getattr(imported, name, _NOT_DEFINED)
    if found is _NOT_DEFINED:
        raise LookupError(f"{module}.{name} is not defined when {module} is imported")
    remote = find_remote(found)
    if remote is not None:
        where = (getattr(remote, "__module__", None), getattr(remote, "__qualname__", None))
        # Another @remote object the module (or another) binds under its own name: `name`
        # was rebound to it. Any other name (a decorator under @remote without
        # functools.wraps names its inner function, or its class) is no rebinding.
        if where == (module, name) or not _binds(where, remote):
            return remote
        what = f"the @remote {where[0]}.{where[1]}"
    elif inspect.isclass(found) or inspect.isroutine(found):
        what = "a class" if inspect.isclass(found) else "a function"
    else:
        what = f"a {type(found).__name__}"
    raise LookupError(
        f"{module}.{name} is {what} when {module} is imported, not the @remote one flash "
        "build found: the name is rebound later in the module"
    )


def find_remote(obj: Any) -> Any:
    """The @remote object ``obj`` is, or that decorators wrapping it lead to through
    ``__wrapped__`` (as inspect.unwrap follows it); None when there is none. The mark is read
    from the type, so that an object answering every attribute (a mock) is none."""
    seen: set[int] = set()
    while id(obj) not in seen and len(seen) < sys.getrecursionlimit():
        seen.add(id(obj))
        try:
            if getattr(type(obj), "__flash_remote__", False) is True:
                return obj
            obj = getattr(obj, "__wrapped__", _NOT_DEFINED)
        except Exception:  # an object whose attributes raise wraps nothing we can see
            return None
        if obj is _NOT_DEFINED:
            return None
    return None


def _binds(where: tuple[Any, Any], remote: Any) -> bool:
    """Whether module ``where[0]`` binds ``remote`` under its own name ``where[1]``."""
    module, qualname = where
    obj = sys.modules.get(module) if isinstance(module, str) else None
    if obj is None or not isinstance(qualname, str):
        return False
    try:
        obj = _lookup_qualname(obj, qualname)  # None for <locals> or a name not bound
    except Exception:  # an attribute that raises
        return False
    return find_remote(obj) is remote


_NOT_DEFINED = object()


def _src_twin(name: str) -> str:
    """The other name of a function in a src layout (src/ without __init__.py), where one
    file imports as ``models.train`` or ``src.models.train``: a client that imported it
    the second way names it ``src.models.train.fn``, the build registered the first."""
    return name[len("src.") :] if name.startswith("src.") else f"src.{name}"


# Per endpoint, how the handler serving it in this process finds a class's instance: a
# call made on the class's own endpoint (no job) reaches the one its jobs reach.
_INSTANCES_HERE: dict[str, Callable[[str, type, Any, Any], Awaitable[Any]]] = {}


async def instance_here(endpoint: str | None, function: str, handle: Any) -> Any:
    """The instance a call of ``handle`` (a RemoteInstance of the class the registry names
    ``function``) made on its endpoint reaches: the one this worker keeps for the handle's
    constructor arguments, as a job of theirs would carry them (pickled). Else (no handler
    of the endpoint in this process, arguments no job could carry) the handle's own."""
    find = _INSTANCES_HERE.get(endpoint) if endpoint is not None else None
    if find is not None:
        found = await find(function, handle.remote_class.__wrapped__, handle.args, handle.kwargs)
        if found is not _MISSING:
            return found
    return handle.local_instance()


def create_handler(
    registry: Mapping[str, Any],
    *,
    endpoint: str | None = None,
    signing_key: bytes | object | None = _FROM_ENV,
    allow_unsigned: bool | None = None,
    manifest: Mapping[str, Any] | object | None = _FROM_ENV,
    run_sync_in_thread: bool | None = None,
) -> Handler:
    """Build ``async def handler(job) -> dict`` serving the functions and classes of ``registry``.

    Registry values are plain functions/classes or ``@remote`` wrappers (unwrapped here).
    Sync callables run on the event loop thread unless ``run_sync_in_thread`` (default: when
    the worker runs several jobs at once, ``$FLASH_WORKER_CONCURRENCY`` > 1, so that they
    run side by side and the loop keeps answering the platform). Each class is constructed
    once per distinct constructor arguments and reused by later jobs; the cache lives as long
    as the handler.

    Pickled arguments are code: a job is unpickled only after its signature checks out
    against ``signing_key`` (default: ``$FLASH_SIGNING_KEY``) for this ``endpoint``, and the
    answer is signed back. Without a key, pickled jobs are refused unless ``allow_unsigned``
    (default: ``$FLASH_ALLOW_UNSIGNED=1``), meant for tests and trusted local experiments.

    A job without ``function_name`` is a typed JSON call, ``{"function": name, "kwargs":
    {...}}`` or, on an endpoint with one such function, just ``{...kwargs}``: it is checked
    against the JSON Schema the build recorded in ``manifest`` (default: the archive's
    ``flash_manifest.json``) and answered with JSON. It runs no pickle, so needs no signature.
    """
    endpoint = endpoint or os.environ.get("FLASH_RESOURCE_NAME") or None
    _context.follow_into_thread_pools()  # a job's calls from its pools keep its context
    if run_sync_in_thread is None:
        run_sync_in_thread = worker_concurrency() > 1
    secret = _signing.load_signing_key() if signing_key is _FROM_ENV else signing_key
    if secret is not None and not isinstance(secret, bytes):
        raise TypeError("signing_key must be bytes or None")
    if secret is not None and endpoint is None:
        raise ValueError(
            "a signing handler needs its endpoint name: create_handler(..., endpoint=)"
        )
    if allow_unsigned is None:
        allow_unsigned = _signing.unsigned_allowed()
    replay = _signing.ReplayCache()
    if manifest is _FROM_ENV:
        manifest = load_manifest()
    recorded = manifest if isinstance(manifest, Mapping) else None
    schemas = _json_schemas(recorded, endpoint)
    pickle_only = _pickle_only_reasons(recorded, endpoint)
    # One typed function (under its qualified and short names): it takes bare kwargs, and
    # "function" names it unless it takes an argument of that name.
    typed = list(schemas.values())
    single = len(set(map(id, typed))) == 1 and "input" in typed[0]
    single_takes_function = single and "function" in (
        (typed[0]["input"].get("properties") or {}) if isinstance(typed[0]["input"], dict) else {}
    )
    targets: dict[str, Any] = {}
    for key, value in registry.items():
        if not isinstance(key, str):
            raise TypeError(f"registry keys must be str, got {_type_name(key)} ({key!r})")
        targets[key] = unwrap_remote(value)
    available = ", ".join(sorted(targets)) or "(none)"
    json_classes = ", ".join(sorted(n for n, s in schemas.items() if "methods" in s)) or "(none)"
    class_methods = {
        key: _public_methods(target) for key, target in targets.items() if inspect.isclass(target)
    }
    instances: dict[tuple[Any, ...], Any] = {}
    jobs_loop: list[asyncio.AbstractEventLoop] = []  # the loop jobs run on, once one has
    # The constructions under way, each done when it ends; same-endpoint calls may come
    # from other threads and loops (a sync function's .call()), so no asyncio.Lock.
    constructing: dict[tuple[Any, ...], concurrent.futures.Future[None]] = {}
    constructing_guard = threading.Lock()

    async def instance_for(
        name: str,
        cls: type,
        raw_args: list[str],
        raw_kwargs: dict[str, str],
        decoded: dict[int, bytes] | None,
    ) -> Any:
        # Keyed on the raw payloads: equal arguments pickle to equal strings, and a cache
        # hit then costs no unpickling.
        key = (name, tuple(raw_args), tuple(sorted(raw_kwargs.items())))
        label = f"the constructor of {name!r}"
        return await cached_instance(
            key,
            cls,
            label,
            lambda: _decode(raw_args, raw_kwargs, "args", "kwargs", label, decoded),
        )

    async def cached_instance(
        key: tuple[Any, ...],
        cls: type,
        label: str,
        arguments: Callable[[], tuple[list[Any], dict[str, Any]]],
    ) -> Any:
        # Concurrent first calls construct once; after a failure the next caller waiting
        # tries again, so retries stay one at a time.
        while True:
            instance = instances.get(key, _MISSING)
            if instance is not _MISSING:
                return instance
            with constructing_guard:
                under_way = constructing.get(key)
                if under_way is None:
                    mine = constructing[key] = concurrent.futures.Future()
            if under_way is not None:
                # Shielded: a caller cancelled while it waits leaves the construction be.
                await asyncio.shield(asyncio.wrap_future(under_way))
                continue
            try:
                instance = instances.get(key, _MISSING)  # made since the first look?
                if instance is _MISSING:
                    args, kwargs = arguments()
                    instance = await _invoke(
                        cls, args, kwargs, label, in_thread=run_sync_in_thread, finish=False
                    )
                    instances[key] = instance
                return instance
            finally:
                with constructing_guard:
                    del constructing[key]
                mine.set_result(None)

    def lookup(name: object) -> str | None:
        """The registered name a client's name reaches, or None: pickled and JSON calls
        resolve alike, the src-layout twin (``src.models.train.fn``) included."""
        if not isinstance(name, str):
            return None
        if name in targets:
            return name
        twin = _src_twin(name)  # only for a name not registered: it costs on every call
        return twin if twin in targets else None

    async def instance_here(function: str, cls: type, args: Any, kwargs: Any) -> Any:
        """The instance a pickled call of ``function`` (``cls``) with these constructor
        arguments reaches, for a call made in this worker (no job); _MISSING when no job
        could reach one: another class, arguments that cannot be pickled, or a call from
        another event loop than the jobs' (a sync function's ``.call()`` runs one of its
        own): what an instance binds to a loop (an asyncio.Event, a client's pool) must
        stay on the loop it was made on."""
        if jobs_loop and asyncio.get_running_loop() is not jobs_loop[0]:
            return _MISSING
        name = lookup(function)
        if name is None or targets[name] is not cls:
            return _MISSING
        try:
            raw_args, raw_kwargs = _serialization.serialize_args(args, kwargs)
        except SerializationError:
            return _MISSING
        try:
            return await instance_for(name, cls, raw_args, raw_kwargs, None)
        except _UserCodeError as exc:
            error: BaseException = exc.exc  # raised below: not chained to this wrapper
        except _JobError as exc:
            error = RemoteError(
                exc.message, remote_type=exc.error_type, endpoint=endpoint, function=name
            )
        raise error

    if endpoint is not None:
        _INSTANCES_HERE[endpoint] = instance_here

    def unknown(name: Any, kind: str) -> str:
        """Why ``name`` reaches nothing: a short name several functions share (each is
        called by its qualified name), or no such name."""
        sharing = sorted(t for t in targets if isinstance(name, str) and t.endswith(f".{name}"))
        if len(sharing) > 1:
            return (
                f"{_short_repr(name)} is the name of {len(sharing)} functions on this "
                f"endpoint: call one by its qualified name ({', '.join(sharing)})"
            )
        return f"no {kind} named {_short_repr(name)} on this endpoint (available: {available})"

    def resolve(job: Any) -> _Call:
        if not jobs_loop:  # resolve runs on the loop every job of this handler runs on
            jobs_loop.append(asyncio.get_running_loop())
        if not isinstance(job, dict):
            raise _JobError(INVALID_JOB, f"a job must be a JSON object, got {_type_name(job)}")
        # The platform's id of the job: the same job may run again (a retry), not a replay.
        job_id = job.get("id") if isinstance(job.get("id"), str) else None
        payload = job.get("input")
        if not isinstance(payload, dict):
            raise _JobError(
                INVALID_JOB, f"job 'input' must be a JSON object, got {_type_name(payload)}"
            )
        # JSON null counts as absent throughout: older clients send explicit nulls.
        _check_protocol(_get(payload, "protocol_version", 1))
        if "function_name" not in payload:
            return resolve_json(payload, job_id)
        name = payload.get("function_name")
        if not isinstance(name, str) or not name:
            raise _JobError(
                INVALID_JOB,
                f"'function_name' must be a non-empty string, got {_short_repr(name)} "
                f"(available: {available})",
            )
        execution_type = _get(payload, "execution_type", "function")
        if not isinstance(execution_type, str) or execution_type not in _EXECUTION_TYPES:
            raise _JobError(
                INVALID_JOB,
                "'execution_type' must be 'function' or 'class', "
                f"got {_short_repr(execution_type)}",
            )
        key = lookup(name)
        if key is None:
            raise _JobError(UNKNOWN_FUNCTION, unknown(name, "function or class"))
        target = targets[key]
        decoded: dict[int, bytes] = {}
        # Signed under the name the client sent; served under the one registered.
        nonce = check_signature(name, payload, decoded, job_id)
        call_context = _call_context(payload, name, key, job_id)
        digests: _signing.Digests | None = None if nonce is None else {}
        return _Call(key, execution_type, target, payload, call_context, nonce, decoded, digests)

    def resolve_json(payload: dict[str, Any], job_id: str | None) -> _Call:
        fields = set(payload) - {"context", "protocol_version", "signature"}
        # {"function": ...} names the function, unless the job is the bare arguments of the
        # one function, which takes an argument of that name.
        named = "function" in fields and not (
            single_takes_function and fields != {"function", "kwargs"}
        )
        # A class call: it names a class, or a method (bare arguments of the one function
        # may hold a "method").
        function = payload.get("function")
        function_key = lookup(function)
        names_class = function_key is not None and inspect.isclass(targets[function_key])
        if (named and ("method" in fields or names_class)) or (
            "method" in fields and not named and not single
        ):
            return resolve_json_method(payload, fields, job_id)
        if named and fields <= {"function", "kwargs"}:
            # No kwargs, or null (which a signature does not tell from none): no arguments.
            name, kwargs = payload["function"], payload.get("kwargs")
            kwargs = {} if kwargs is None else kwargs
        elif named:
            extra = sorted(fields - {"function", "kwargs"})
            raise _JobError(
                INVALID_JOB,
                f"unexpected fields beside 'function': {_short_repr(extra)}; a JSON job is "
                '{"function": name, "kwargs": {...}}',
            )
        elif single:
            if "signature" in payload:
                # The signature covers named fields; bare arguments could be swapped under it.
                raise _JobError(
                    INVALID_JOB,
                    'a signed JSON job names its function: {"function": name, "kwargs": {...}}',
                )
            name, kwargs = next(iter(schemas)), payload
        else:
            callable_names = ", ".join(sorted(schemas)) or "(none)"
            raise _JobError(
                INVALID_JOB,
                'a JSON job is {"function": name, "kwargs": {...}}, or for a class '
                '{"function": name, "init": {...}, "method": name, "kwargs": {...}} '
                f"(JSON-callable here: {callable_names}); a pickled job needs 'function_name'",
            )
        key = lookup(name)
        if key is None:
            raise _JobError(UNKNOWN_FUNCTION, unknown(name, "function"))
        schema = schemas.get(key)
        if schema is None:
            # The build says why when it knows (a cross-target build derives no schemas).
            why = pickle_only.get(key) or (
                "its parameters or return value have no JSON-able type hints"
            )
            raise _JobError(NOT_JSON_CALLABLE, f"{name!r} takes pickled calls only: {why}")
        _check_json_depth(kwargs, "kwargs")
        # Signed under the name the client sent; served under the one registered.
        nonce = check_json_signature(name, payload, job_id)
        call_context = _call_context(payload, name, key, job_id)
        exact = _exact(payload, nonce)
        call = {"kwargs": kwargs, "schema": schema, "exact": exact}
        return _Call(key, "json", targets[key], call, call_context, nonce)

    def resolve_json_method(payload: dict[str, Any], fields: set[str], job_id: str | None) -> _Call:
        name, method = payload.get("function"), payload.get("method")
        if name is None:
            raise _JobError(
                INVALID_JOB,
                f"missing 'function': a call of method {_short_repr(method)} names its class"
                ' there, {"function": class, "init": {...}, "method": name, "kwargs": {...}} '
                f"(JSON-callable classes here: {json_classes})",
            )
        key = lookup(name)
        if key is None or not inspect.isclass(targets[key]):
            raise _JobError(
                UNKNOWN_FUNCTION,
                f"no class named {_short_repr(name)} here (JSON-callable classes: {json_classes})",
            )
        extra = sorted(fields - {"function", "method", "init", "kwargs"})
        if extra:
            raise _JobError(
                INVALID_JOB,
                f"unexpected fields in a call of class {name!r}: {_short_repr(extra)}; it is "
                '{"function": class, "init": {...}, "method": name, "kwargs": {...}}',
            )
        schema = schemas.get(key) or {}
        methods = schema.get("methods") or {}
        if method is None:
            raise _JobError(
                INVALID_JOB,
                f"{name!r} is a class: a call of it names one of its methods in 'method' "
                f"(JSON-callable: {', '.join(sorted(methods)) or '(none)'})",
            )
        if method not in methods:
            why = (schema.get("pickle_only_methods") or {}).get(method)
            raise _JobError(
                NOT_JSON_CALLABLE if why else UNKNOWN_METHOD,
                f"{name}.{method} takes pickled calls only: {why}"
                if why
                else f"{name!r} has no JSON-callable method {_short_repr(method)} "
                f"(available: {', '.join(sorted(methods)) or '(none)'})",
            )
        call = {
            "init": payload.get("init") or {},
            "method": method,
            "kwargs": payload.get("kwargs") or {},
            "schema": schema,
        }
        for field in ("init", "kwargs"):
            _check_json_depth(call[field], field)
        nonce = check_json_signature(name, payload, job_id)
        call_context = _call_context(payload, name, key, job_id)
        return _Call(key, "json_method", targets[key], call, call_context, nonce)

    def check_signature(
        name: str,
        payload: dict[str, Any],
        decoded: dict[int, bytes] | None,
        job_id: str | None,
        *,
        pickled: bool = True,
    ) -> str | None:
        """The verified request nonce; raises before anything of the payload is unpickled.

        Big pickles the check decodes go into ``decoded`` (by id() of their string), if
        given: a JSON call unpickles nothing, so keeps none.
        """
        if secret is None:
            if allow_unsigned:
                return None
            raise _JobError(
                SIGNATURE_REJECTED,
                "this endpoint has no signing key (FLASH_SIGNING_KEY), so it refuses pickled "
                "calls: pickles can run code. Serve it with `flash serve`/`flash run`, which "
                "provide the app's key",
            )
        signature = payload.get("signature")
        if signature is None and allow_unsigned:
            return None
        try:
            _signing.verify_request(
                secret,
                signature,
                endpoint=endpoint or "",
                function=name,
                fields=payload,
                replay=replay,
                decoded=decoded,
                job=job_id,
            )
        except _signing.SignatureError as exc:
            raise _JobError(SIGNATURE_REJECTED, f"request refused: {exc.message}") from None
        verified = cast(dict[str, Any], signature)  # verify_request checked its shape
        mismatch = _signing.check_versions(verified["caller"]) if pickled else None
        if mismatch is not None:
            raise _JobError(VERSION_MISMATCH, mismatch)
        return str(verified["nonce"])

    def check_json_signature(name: str, payload: dict[str, Any], job_id: str | None) -> str | None:
        """The verified nonce of a signed typed JSON call, else None.

        A JSON call runs no pickle, so any client may send it unsigned. The Python client
        holding the app's key signs it anyway, so that a failure comes back signed: only a
        signed answer's pickled exception is unpickled by the caller. A signature that does
        not check out is refused, as on a pickled call; without a key there is none to check.
        Caller and worker may run different Pythons: JSON is how they talk.
        """
        if secret is None or payload.get("signature") is None:
            return None
        return check_signature(name, payload, None, job_id, pickled=False)

    def sign(
        answer: dict[str, Any], nonce: str | None, digests: _signing.Digests | None
    ) -> dict[str, Any]:
        if secret is not None and nonce is not None:
            answer["mac"] = _signing.sign_result(
                secret, nonce=nonce, result_fields=answer, digests=digests
            )
        return answer

    async def run_call(call: _Call) -> dict[str, Any]:
        token = _context.use(call.context)
        try:
            if call.execution_type == "json":
                return await _run_json(call.name, call.target, call.payload)
            if call.execution_type == "json_method":
                return await _run_json_method(call.name, call.target, call.payload)
            if call.execution_type == "map":
                return await _run_map(call)
            if call.execution_type == "function":
                result, label = await _run_function(call)
            else:
                result, label = await _run_method(call)
        finally:
            _context.reset(token)
        return _success(result, label, call.digests)

    def streams(call: _Call) -> bool:
        """Whether ``call`` is of a generator function, or of a class's generator method."""
        kind, target = call.execution_type, call.target
        if kind in ("function", "json"):
            return _is_generator_function(target)
        if kind == "class":
            method = _get(call.payload, "method_name", "__call__")
        elif kind == "json_method":
            method = call.payload.get("method")
        else:
            return False
        if (
            not inspect.isclass(target)
            or not isinstance(method, str)
            or method not in class_methods.get(call.name, ())
        ):
            return False  # run_call says what is wrong with it
        return _is_generator_method(target, method)

    async def stream_call(call: _Call) -> AsyncGenerator[dict[str, Any], None]:
        """One answer per item a generator function or method yields; others answer once."""
        if not streams(call):
            yield await run_call(call)
            return
        token = _context.use(call.context)
        try:
            label = repr(call.name)
            args: list[Any] = []
            fn = call.target
            if call.execution_type == "json":
                kwargs = _bind_json(label, call.target, call.payload)
            elif call.execution_type == "json_method":
                fn, kwargs, label = await _json_method(call.name, call.target, call.payload)
            elif call.execution_type == "class":
                fn, args, kwargs, label = await _method(call)
            else:
                args, kwargs = _decode(
                    _list_field(call.payload, "args"),
                    _dict_field(call.payload, "kwargs"),
                    "args",
                    "kwargs",
                    label,
                    call.decoded,
                )
            items = await _invoke(fn, args, kwargs, label, in_thread=False, finish=False)
            async with contextlib.aclosing(
                _iterate(items, label, in_thread=run_sync_in_thread)
            ) as iterated:
                async for item in iterated:
                    if call.is_json:
                        exact = call.execution_type == "json" and call.payload["exact"]
                        yield _json_success(item, label, _yield_hint(fn) if exact else None)
                    else:
                        yield _success(item, label, call.digests)
        finally:
            _context.reset(token)

    async def _run_map(call: _Call) -> dict[str, Any]:
        """Many calls of one function in one job: one answer per item, each failing alone."""
        name, target, payload = call.name, call.target, call.payload
        if inspect.isclass(target) or _is_generator_function(target):
            raise _JobError(
                EXECUTION_TYPE_MISMATCH, f"{name!r} cannot be mapped: only plain functions can"
            )
        items = payload.get("items")
        if not isinstance(items, list) or len(items) > MAX_MAP_ITEMS:
            raise _JobError(INVALID_JOB, f"'items' must be a list of at most {MAX_MAP_ITEMS} calls")
        label = repr(name)
        limit = _context.seconds(payload.get(_context.ITEM_TIMEOUT_KEY))
        limit = limit if limit is not None and limit > 0 else None  # as its caller sent it

        async def one(index: int, item: Any) -> dict[str, Any]:
            # Each item's own limit, from its start: the calls it makes get what is left.
            token = None if limit is None else _context.use(call.context.within(limit))
            try:
                if not isinstance(item, dict):
                    raise _JobError(INVALID_JOB, f"items[{index}] must be an object")
                args, kwargs = _decode(
                    _list_field(item, "args"),
                    _dict_field(item, "kwargs"),
                    "args",
                    "kwargs",
                    label,
                    call.decoded,
                )
                if limit is None:  # a caller that sends none (an older client)
                    result = await _invoke(
                        target, args, kwargs, label, in_thread=run_sync_in_thread
                    )
                else:
                    result = await _invoke_within(target, args, kwargs, label, limit)
                return _success(result, label, call.digests)
            except asyncio.CancelledError:
                raise  # the job's cancellation: _invoke turned user code's own into failures
            except BaseException as exc:
                return _failure(exc)
            finally:
                if token is not None:
                    _context.reset(token)

        if inspect.iscoroutinefunction(target):
            answers = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
        else:
            answers = [await one(i, item) for i, item in enumerate(items)]
        return {"success": True, "results": list(answers), "protocol_version": PROTOCOL_VERSION}

    async def _run_json_method(name: str, cls: type, call: dict[str, Any]) -> dict[str, Any]:
        bound, kwargs, label = await _json_method(name, cls, call)
        result = await _invoke(bound, [], kwargs, label, in_thread=run_sync_in_thread)
        return _json_success(result, label)

    async def _json_method(
        name: str, cls: type, call: dict[str, Any]
    ) -> tuple[Any, dict[str, Any], str]:
        """The bound method a typed call of a class runs, on its cached instance; its
        arguments, label and schema."""
        method, schema = call["method"], call["schema"]
        label = repr(f"{name}.{method}")
        init_label = f"the constructor of {name!r}"
        init = {"kwargs": call["init"], "schema": {"input": schema["init"]}}
        # The method's arguments are checked first and the constructor's just before it
        # runs (the same init JSON is as valid as when its instance was made): a bad call
        # never costs a model load, and a cached instance costs no second check.
        method_call = {"kwargs": call["kwargs"], "schema": schema["methods"][method]}
        issues, kwargs = _json_arguments(label, getattr(cls, method), method_call)
        if issues:
            # The constructor's problems are listed too (checked, nothing built): one answer
            # names every mistake.
            try:
                init_issues, _ = _json_arguments(init_label, cls.__init__, init, "init")  # type: ignore[misc]
            except _JobError:  # its hints do not resolve: the method's issues still stand
                init_issues = []
            raise _invalid_input(label, issues + init_issues)
        key = (name, "json", json.dumps(call["init"], sort_keys=True, separators=(",", ":")))
        instance = await cached_instance(
            key,
            cls,
            init_label,
            lambda: ([], _bind_json(init_label, cls.__init__, init, "init")),  # type: ignore[misc]
        )
        try:
            bound = getattr(instance, method)
        except Exception as exc:
            raise _UserCodeError(label, exc) from None
        return bound, kwargs, label

    async def _run_json(name: str, target: Any, call: dict[str, Any]) -> dict[str, Any]:
        label = repr(name)
        kwargs = _bind_json(label, target, call)
        result = await _invoke(target, [], kwargs, label, in_thread=run_sync_in_thread)
        return _json_success(result, label, _return_hint(target) if call["exact"] else None)

    async def _run_function(call: _Call) -> tuple[Any, str]:
        name, target, payload = call.name, call.target, call.payload
        if inspect.isclass(target):
            raise _JobError(
                EXECUTION_TYPE_MISMATCH,
                f"{name!r} is a class: call it with execution_type 'class' and a method_name",
            )
        label = repr(name)
        args, kwargs = _decode(
            _list_field(payload, "args"),
            _dict_field(payload, "kwargs"),
            "args",
            "kwargs",
            label,
            call.decoded,
        )
        return await _invoke(target, args, kwargs, label, in_thread=run_sync_in_thread), label

    async def _run_method(call: _Call) -> tuple[Any, str]:
        method, args, kwargs, label = await _method(call)
        return await _invoke(method, args, kwargs, label, in_thread=run_sync_in_thread), label

    async def _method(call: _Call) -> tuple[Any, list[Any], dict[str, Any], str]:
        """The bound method a pickled call of a class runs, on the instance cached for its
        constructor arguments; its arguments and label."""
        name, target, payload = call.name, call.target, call.payload
        if not inspect.isclass(target):
            raise _JobError(
                EXECUTION_TYPE_MISMATCH,
                f"{name!r} is a function, not a class: call it with execution_type 'function'",
            )
        method_name = _get(payload, "method_name", "__call__")
        _check_method(name, class_methods[name], method_name)
        raw_args, raw_kwargs = _list_field(payload, "args"), _dict_field(payload, "kwargs")
        raw_method_args = _list_field(payload, "method_args")
        raw_method_kwargs = _dict_field(payload, "method_kwargs")
        label = repr(f"{name}.{method_name}")
        # Decode the method's arguments first: a bad payload should not cost a model load.
        args, kwargs = _decode(
            raw_method_args, raw_method_kwargs, "method_args", "method_kwargs", label, call.decoded
        )
        instance = await instance_for(name, target, raw_args, raw_kwargs, call.decoded)
        if call.decoded:  # the constructor's, when its instance was cached: not needed
            call.decoded.clear()
        try:
            method = getattr(instance, method_name)
        except Exception as exc:  # a property or __getattr__ in user code
            raise _UserCodeError(label, exc) from None
        return method, args, kwargs, label

    async def handler(job: Any) -> dict[str, Any]:
        call = None
        try:
            call = resolve(job)
            answer = await run_call(call)
        except asyncio.CancelledError as exc:
            if _cancelling():
                raise
            # Never let one escape otherwise: the SDK's loop would leave the job unreported.
            answer = _failure(exc, pickle_exception=_checkable(call))
        except BaseException as exc:
            answer = _failure(exc, pickle_exception=_checkable(call))
        if call is None:
            return answer
        return sign(answer, _answer_nonce(call, answer), call.digests)

    async def streaming_handler(job: Any) -> AsyncIterator[dict[str, Any]]:
        # Each signed item is signed under its own position, so none can be dropped or
        # reordered (a JSON success is not signed: see _answer_nonce).
        call = None
        index = 0
        try:
            call = resolve(job)
            # Closed here when this stream is closed: left to the garbage collector, the
            # inner streams (and the user's generator) would be closed in another task.
            async with contextlib.aclosing(stream_call(call)) as answers:
                async for answer in answers:
                    nonce = _item_nonce(_answer_nonce(call, answer), index)
                    yield sign(answer, nonce, call.digests)
                    index += 1
        except GeneratorExit:  # closed by its consumer
            raise
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) and _cancelling():
                raise
            # The worker loop keeps only the text of a failed item's "error": send the whole
            # answer as that text, so the caller still gets the type, traceback and issues.
            answer = _failure(exc, pickle_exception=_checkable(call))
            answer["item"] = index
            signed = sign(answer, _item_nonce(call.nonce, index) if call else None, None)
            yield {"error": json.dumps(signed)}

    # The worker loop streams only from an async generator handler, so an endpoint with a
    # generator function (or a class with a generator method) gets one; its other functions
    # then answer with a single item.
    if any(
        _is_generator_function(t)
        or (inspect.isclass(t) and any(_is_generator_method(t, m) for m in class_methods[key]))
        for key, t in targets.items()
    ):
        return streaming_handler
    return handler


def load_manifest(path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """Read ``flash_manifest.json``; None when there is none.

    Looks at ``path`` (a file, or a directory holding the manifest), else the file or
    directory named by ``$FLASH_MANIFEST_PATH``, else the current directory, then the
    directory of the running handler (``sys.path[0]``).
    """
    location = _manifest_location(path)
    if location is None:
        return None
    try:
        text = location.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{location}: cannot read the Flash manifest: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"{location}:{exc.lineno}:{exc.colno}: the Flash manifest is not valid JSON: {exc.msg}"
        ) from exc
    if not isinstance(data, dict):
        raise ManifestError(
            f"{location}: the Flash manifest must be a JSON object, got {_type_name(data)}"
        )
    return data


def _manifest_location(path: str | os.PathLike[str] | None) -> Path | None:
    if path is None:
        path = os.environ.get(MANIFEST_ENV_VAR) or None
    if path is not None:
        given = Path(path)
        return given / MANIFEST_FILENAME if given.is_dir() else given
    directories = []
    with contextlib.suppress(OSError):  # the working directory may have been deleted
        directories.append(Path.cwd())
    if sys.path and sys.path[0]:
        directories.append(Path(sys.path[0]))
    for directory in directories:
        candidate = directory / MANIFEST_FILENAME
        if candidate.is_file():
            return candidate
    return None


def _json_schemas(manifest: Mapping[str, Any] | None, endpoint: str | None) -> dict[str, Any]:
    """Registry name -> recorded schemas, for this endpoint's JSON-callable functions."""
    schemas: dict[str, Any] = {}
    for names, entry in _function_entries(manifest, endpoint):
        schema = entry.get("schema")
        if isinstance(schema, dict) and (
            isinstance(schema.get("input"), dict) or isinstance(schema.get("methods"), dict)
        ):
            schemas.update(dict.fromkeys(names, schema))
    return schemas


def _pickle_only_reasons(
    manifest: Mapping[str, Any] | None, endpoint: str | None
) -> dict[str, str]:
    """Registry name -> why the build gave the function no JSON Schema, where it says."""
    reasons: dict[str, str] = {}
    for names, entry in _function_entries(manifest, endpoint):
        why = entry.get("pickle_only")
        if isinstance(why, str) and why:
            reasons.update(dict.fromkeys(names, why))
    return reasons


def _function_entries(
    manifest: Mapping[str, Any] | None, endpoint: str | None
) -> list[tuple[list[str], dict[str, Any]]]:
    """The endpoint's function entries in the manifest, each with the registry names it goes
    by: its qualified name, and its short name where no other function has it."""
    if manifest is None or endpoint is None:
        return []
    resource = (manifest.get("resources") or {}).get(endpoint) or {}
    return call_names(resource.get("functions"))


def _get(payload: dict[str, Any], field: str, default: Any) -> Any:
    value = payload.get(field)
    return default if value is None else value


def _check_protocol(version: Any) -> None:
    if type(version) is not int:  # bool is an int subclass, and not a version
        raise _JobError(
            INVALID_JOB, f"'protocol_version' must be an integer, got {_short_repr(version)}"
        )
    if version not in SUPPORTED_PROTOCOL_VERSIONS:
        speaks = ", ".join(str(v) for v in SUPPORTED_PROTOCOL_VERSIONS)
        hint = (
            "; the caller is newer than this worker: rebuild and redeploy the endpoint"
            if version > max(SUPPORTED_PROTOCOL_VERSIONS)
            else ""
        )
        raise _JobError(
            UNSUPPORTED_PROTOCOL,
            f"protocol_version {version} is not supported: this worker speaks "
            f"protocol version {speaks}{hint}",
        )


def _check_method(class_name: str, methods: set[str], method_name: Any) -> None:
    if not isinstance(method_name, str) or not method_name:
        raise _JobError(
            INVALID_JOB, f"'method_name' must be a non-empty string, got {_short_repr(method_name)}"
        )
    if method_name.startswith("_") and method_name != "__call__":
        raise _JobError(
            UNKNOWN_METHOD,
            f"method {method_name!r} of {class_name!r} is private and cannot be called remotely",
        )
    if method_name not in methods:
        raise _JobError(
            UNKNOWN_METHOD,
            f"{class_name!r} has no method {method_name!r} "
            f"(available: {', '.join(sorted(methods)) or '(none)'})",
        )


def _public_methods(cls: type) -> set[str]:
    # The class's own namespace chain only: getattr(cls, name) would also find the
    # metaclass's attributes (every class has type.__call__ and type.mro).
    seen: set[str] = set()
    methods: set[str] = set()
    for klass in cls.__mro__[:-1]:  # object contributes no public methods
        for attr, value in vars(klass).items():
            if attr in seen:  # overridden in a subclass
                continue
            seen.add(attr)
            if (not attr.startswith("_") or attr == "__call__") and (
                callable(value) or isinstance(value, (staticmethod, classmethod))
            ):
                methods.add(attr)
    return methods


def _list_field(payload: dict[str, Any], field: str) -> list[str]:
    value = payload.get(field)
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise _JobError(
            INVALID_JOB, f"{field!r} must be a list of base64 strings, got {_type_name(value)}"
        )
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _JobError(
                INVALID_JOB, f"{field}[{i}] must be a base64 string, got {_type_name(item)}"
            )
    return list(value)


def _dict_field(payload: dict[str, Any], field: str) -> dict[str, str]:
    value = payload.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _JobError(
            INVALID_JOB,
            f"{field!r} must be an object of name -> base64 string, got {_type_name(value)}",
        )
    for key, item in value.items():
        if not isinstance(key, str):
            raise _JobError(
                INVALID_JOB, f"{field!r} keys must be argument names, got {_short_repr(key)}"
            )
        if not isinstance(item, str):
            raise _JobError(
                INVALID_JOB, f"{field}[{key!r}] must be a base64 string, got {_type_name(item)}"
            )
    return value


def _decode(
    raw_args: list[str],
    raw_kwargs: dict[str, str],
    args_field: str,
    kwargs_field: str,
    label: str,
    decoded: dict[int, bytes] | None,
) -> tuple[list[Any], dict[str, Any]]:
    try:
        return deserialize_args(
            raw_args, raw_kwargs, args_field=args_field, kwargs_field=kwargs_field, decoded=decoded
        )
    except SerializationError as exc:
        raise _JobError(
            ARGUMENT_DECODE_ERROR,
            f"cannot decode the arguments for {label}: {exc}",
            exc.__cause__,
        ) from None


async def _invoke(
    fn: Any,
    args: list[Any],
    kwargs: dict[str, Any],
    label: str,
    *,
    in_thread: bool,
    finish: bool = True,
    own_thread: bool = False,
) -> Any:
    """Call user code; awaits coroutines and collects generators unless ``finish`` is False.
    ``own_thread``: sync code runs in a daemon thread of its own, which a cancellation does
    not wait for (a map item past its limit, see _invoke_within)."""
    try:
        sync = not (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn))
        if own_thread and sync:
            result = await _in_own_thread(_call, fn, args, kwargs, label)
        elif in_thread and sync:
            result = await _in_thread(_call, fn, args, kwargs, label)
        else:
            result = _call(fn, args, kwargs, label)
        if not finish:
            return result
        if inspect.isawaitable(result):
            result = await _await_user(result)
        return await _collect_stream(result, in_thread)
    except _JobError:
        raise
    except asyncio.CancelledError as exc:
        if _cancelling():
            raise
        raise _UserCodeError(label, exc) from None
    except BaseException as exc:  # SystemExit & co. from user code must not end the worker
        raise _UserCodeError(label, _user_exception(exc)) from None


async def _await_user(awaitable: Awaitable[Any]) -> Any:
    """``await awaitable`` (user code): a CancelledError it raises while this task is not
    being cancelled is its own (an OwnCancelledError)."""
    if _HAS_CANCELLING:
        return await awaitable  # _cancelling() tells them apart
    # Python 3.10: only a task of its own shows whether the CancelledError came from a
    # cancellation of this task (we cancel the inner one) or from the code.
    inner = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait([inner])
    except asyncio.CancelledError:
        inner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await _ended(inner)
        raise
    try:
        return inner.result()
    except asyncio.CancelledError as exc:
        raise OwnCancelledError(exc) from None


async def _in_thread(
    fn: Callable[..., Any],
    *args: Any,
    executor: concurrent.futures.Executor | None = None,
    context: contextvars.Context | None = None,
) -> Any:
    """``fn(*args)`` in a worker thread (of ``executor``), in a copy of this context (or in
    ``context``). A thread cannot be stopped: a cancelled job waits for it, keeping its slot
    (and a constructor its lock) until it returns, so the worker lists the job as still
    running and the platform replaces the worker if it never does."""
    if context is None:  # not `or`: a Context without variables is empty, so false
        context = contextvars.copy_context()
    future = asyncio.get_running_loop().run_in_executor(
        executor, functools.partial(_run_in, context, fn, *args)
    )
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(asyncio.CancelledError):
            await _ended(future)
        raise


async def _invoke_within(
    fn: Any, args: list[Any], kwargs: dict[str, Any], label: str, limit: float
) -> Any:
    """_invoke for a map item held to its own ``limit`` (seconds), as its call alone would be
    as a job: past it the item fails (DEADLINE_EXCEEDED, its caller's RemoteTimeoutError)
    and the job goes on with its other items. Async code is cancelled at the limit (code
    that swallows that and returns is still too late; code that goes on waiting keeps the
    item until it ends); sync code runs in a daemon thread of its own, which nothing can
    stop: it runs on to its end, its outcome dropped, as an in-process call's does."""
    sync = not inspect.iscoroutinefunction(fn)
    work = asyncio.ensure_future(_invoke(fn, args, kwargs, label, in_thread=False, own_thread=True))
    try:
        await asyncio.wait([work], timeout=limit)
    except asyncio.CancelledError:
        # The job is stopped: async code is cancelled with it, and a thread keeps the job's
        # slot until it returns, as a job's own does (_in_thread).
        if not sync:
            work.cancel()
        await _ended(work)
        raise
    if work.done() and not work.cancelled():
        return work.result()
    work.cancel()  # a thread's outcome is dropped when it comes
    await _ended(work)  # async code may take its time to stop (or the job is stopped)
    if not work.cancelled():
        work.exception()  # retrieved: too late to count
    raise _JobError(
        DEADLINE_EXCEEDED, f"{label} did not finish within its time limit ({limit:g} s)"
    )


async def _ended(task: asyncio.Future[Any]) -> None:
    """Wait until ``task`` has ended, however often this one is cancelled meanwhile; then
    raise CancelledError if it was."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


def _in_own_thread(fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    """``fn(*args)`` (sync user code, as _run_in runs it) in a daemon thread of its own, in
    a copy of this context; its outcome as a future. Cancelling the future leaves the thread
    running, and nothing waits for it: not the worker's pool, nor the worker's exit."""
    return _errors.in_daemon_thread(functools.partial(_sync_code, fn, *args), "flash-map-item")


def _run_in(context: contextvars.Context, fn: Callable[..., Any], *args: Any) -> Any:
    return context.run(_sync_code, fn, *args)


def _sync_code(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return run_sync_code(fn, *args)
    except StopIteration as exc:
        raise _StopIterationError(exc) from None


def _call(fn: Any, args: list[Any], kwargs: dict[str, Any], label: str) -> Any:
    try:
        return fn(*args, **kwargs)
    except TypeError as exc:
        if _is_binding_error(fn, args, kwargs, exc):
            raise _JobError(INVALID_ARGUMENTS, f"wrong arguments for {label}: {exc}") from None
        raise
    except asyncio.CancelledError as exc:  # sync code's own: nothing could cancel it midway
        raise OwnCancelledError(exc) from None


def _is_binding_error(fn: Any, args: list[Any], kwargs: dict[str, Any], exc: TypeError) -> bool:
    """Whether ``exc`` came from matching arguments to parameters, not from the body."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        # No signature (some builtins): the call raised before any Python frame ran.
        return exc.__traceback__ is not None and exc.__traceback__.tb_next is None
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        return True
    return False


async def _collect_stream(result: Any, in_thread: bool) -> Any:
    """Generators answer with the list of everything they yield (until streaming exists)."""
    if isinstance(result, types.AsyncGeneratorType):
        return [item async for item in result]
    if isinstance(result, types.GeneratorType):
        return await _in_thread(list, result) if in_thread else run_sync_code(list, result)
    return result


def _check_json_depth(value: Any, field: str) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH, the issue naming where it got too deep."""
    try:
        _jsonschema.check_depth(value, MAX_JSON_DEPTH, path=field)
    except _jsonschema.JsonInputError as exc:
        raise _JobError(
            INVALID_INPUT,
            exc.message,
            issues=[
                {
                    "path": exc.path or field,
                    "message": f"JSON nested deeper than {MAX_JSON_DEPTH} levels",
                }
            ],
        ) from None


def _json_arguments(
    label: str, target: Any, call: dict[str, Any], field: str = "kwargs"
) -> tuple[list[_jsonschema.Issue], dict[str, Any]]:
    """``bind_json_call`` of the call's kwargs against its recorded input schema."""
    try:
        return _jsoncall.bind_json_call(target, call["kwargs"], call["schema"]["input"], field)
    except _jsoncall.JsonCallError as exc:
        raise _JobError(WORKER_ERROR, f"cannot take JSON calls for {label}: {exc}") from None


def _invalid_input(label: str, issues: list[_jsonschema.Issue]) -> _JobError:
    # Binding gathers one issue past MAX_ISSUES: only then were problems left out.
    cut = len(issues) > _jsonschema.MAX_ISSUES
    issues = issues[: _jsonschema.MAX_ISSUES]
    text = _jsonschema.issues_text([f"{i.path}: {i.message}" for i in issues], shown=5, cut=cut)
    return _JobError(
        INVALID_INPUT,
        f"invalid arguments for {label}: {text}",
        issues=[{"path": i.path, "message": i.message} for i in issues],
        issues_truncated=cut,
    )


def _bind_json(
    label: str, target: Any, call: dict[str, Any], field: str = "kwargs"
) -> dict[str, Any]:
    """The JSON kwargs checked against the recorded schema and turned into the annotated
    types; issues name ``field``, the job field they came from."""
    issues, kwargs = _json_arguments(label, target, call, field)
    if issues:
        raise _invalid_input(label, issues)
    return kwargs


def _json_success(result: Any, label: str, returns: Any = None) -> dict[str, Any]:
    """The answer carrying ``result`` as JSON. Not checked against the return annotation:
    the build's schema is pydantic's, this form is the runtime's own (a subclass's extra
    fields, a bool for an int), and a check costs more than making it (a union of models,
    seconds for a few thousand items); the Python client checks what it decodes.

    ``returns`` (the return annotation, for a Python caller holding the key: see _exact): a
    result JSON cannot carry, or would not carry as itself, is answered pickled instead,
    as a pickled call's is (and signed), so that the caller gets what pickle gives it."""
    try:
        value = _jsoncall.to_json_result(result)
        problem = None
    except _jsoncall.JsonResultError as exc:
        value, problem = None, exc
    if returns is not None and (
        problem is not None or _jsoncall.json_fidelity(result, value, returns) == "changed"
    ):
        with contextlib.suppress(_JobError):  # unpicklable too: JSON's form, or its error
            return _success(result, label)
    if problem is not None:
        raise _JobError(RESULT_NOT_JSON, f"the result of {label}: {problem}") from None
    return {
        "success": True,
        "result": value,
        "encoding": "json",
        "protocol_version": PROTOCOL_VERSION,
    }


def _call_context(
    payload: dict[str, Any], name: str, key: str, job_id: str | None
) -> _context.CallContext:
    """The caller's context, on every path, with the job it runs in (``job_id``); a job
    whose caller gave up does not start. A job no function called (from a script, curl)
    starts the chain of calls with its own function (``key``): the calls it makes name where
    they came from, as the platform reads them."""
    call_context = _context.from_wire(payload.get("context"), job=job_id, function=key)
    remaining = call_context.remaining()
    if remaining is not None and remaining <= 0:
        raise _JobError(
            DEADLINE_EXCEEDED,
            f"the caller's deadline passed {-remaining:.3f} s before {name!r} could start",
        )
    return call_context


def _success(result: Any, label: str, digests: _signing.Digests | None = None) -> dict[str, Any]:
    """The answer carrying ``result``; ``digests`` when it will be signed (see serialize)."""
    try:
        encoded = serialize(result, digests=digests)
    except SerializationError as exc:
        cause = exc.__cause__ or exc
        raise _JobError(
            RESULT_NOT_PICKLABLE,
            f"the result of {label} cannot be pickled (type {_type_name(result)}): "
            f"{type(cause).__name__}: {_safe_str(cause)}",
            cause,
        ) from None
    return {"success": True, "result": encoded, "protocol_version": PROTOCOL_VERSION}


def _exact(payload: dict[str, Any], nonce: str | None) -> bool:
    """Whether the result of a typed JSON call (its job input ``payload``) may be answered
    pickled (_json_success): asked for in its context by a Python caller whose request is
    signed (``nonce``: it holds the key) and whose Python and cloudpickle can load this
    worker's pickles. A generator's items are each answered so, one by one."""
    context = payload.get("context")
    if nonce is None or not isinstance(context, dict):
        return False
    if context.get(_context.EXACT_KEY) is not True:
        return False
    signature = payload.get("signature")
    caller = signature.get("caller") if isinstance(signature, dict) else None
    return isinstance(caller, dict) and _signing.check_versions(caller) is None


@functools.lru_cache(maxsize=512)
def _return_hint(target: Any) -> Any:
    """The return annotation of ``target`` (a registered, unwrapped function) as this
    worker resolves it; Any where none."""
    try:
        return typing.get_type_hints(target).get("return", Any)
    except Exception:  # hints that do not resolve here: the result is checked as Any
        return Any


@functools.lru_cache(maxsize=512)
def _yield_hint(target: Any) -> Any:
    """What each item of generator ``target`` is: T of its Iterator[T], AsyncGenerator[T,
    ...] and the like (the build's rule); Any where it does not say."""
    args = typing.get_args(_return_hint(target))
    return args[0] if args else Any


def _answer_nonce(call: _Call, answer: dict[str, Any]) -> str | None:
    """The nonce to sign ``answer`` under; None: not signed. A JSON call's result is data,
    and its caller checks only a failure's signature (only a failure carries a pickle):
    signing a big result nobody checks would cost a walk over all of it (80 ms for 100k
    floats)."""
    if call.is_json and answer.get("success") is True and answer.get("encoding") == "json":
        return None
    return call.nonce


def _checkable(call: _Call | None) -> bool:
    """Whether a caller may unpickle an exception in the answer to ``call``: not for an
    unsigned JSON call, whose answer nobody can check came from here."""
    return call is None or call.nonce is not None or not call.is_json


def _failure(exc: BaseException, *, pickle_exception: bool = True) -> dict[str, Any]:
    if isinstance(exc, _JobError):
        tb = _format_traceback(exc.cause) if exc.cause is not None else ""
        answer = _error(exc.error_type, exc.message, tb)
        if exc.issues is not None:
            answer["issues"] = exc.issues
        if exc.issues_truncated:  # only then: other answers keep their fields
            answer["issues_truncated"] = True
        return answer
    if isinstance(exc, _UserCodeError):
        exc_name = type(exc.exc).__name__
        text = f"{exc.label} raised {exc_name}"
        message = _safe_str(exc.exc)  # cut with the rest of the text (_error)
        if message:
            text = f"{text}: {message}"
        # The traceback text shows the exception's notes (remote tracebacks of nested
        # calls); a caller that unpickles it leaves them out (client._remote_exception).
        answer = _error(exc_name, text, _format_traceback(exc.exc))
        pickled, why = _pickled_exception(exc.exc) if pickle_exception else (None, "")
        if pickled is not None:
            answer["exception"] = pickled
        elif why:  # its caller's error says why it is not the exception itself
            answer["exception_not_sent"] = why
        flash_error = remote_error_fields(exc.exc)
        if flash_error is not None:  # a nested call's: its caller raises it as itself
            if isinstance(flash_error.get("message"), str):
                flash_error["message"] = _cut(flash_error["message"])
            answer["remote_error"] = flash_error
        return answer
    # a bug in the worker itself: still answer the job
    return _error(
        WORKER_ERROR,
        f"internal worker error: {type(exc).__name__}: {_safe_str(exc)}",
        _format_traceback(exc, strip=False),
    )


def _pickled_exception(exc: BaseException) -> tuple[str | None, str]:
    """The exception itself, so the caller can raise the original type; else None, and why
    it won't go (empty: it is not one to send). The exceptions it was raised from (or while
    handling) go with it where they pickle and fit; else it goes alone. One too big for its
    long text arguments goes with them cut. A StopIteration does not go: raised in the
    caller's coroutine, Python would turn it into a RuntimeError."""
    if not isinstance(exc, Exception) or isinstance(exc, StopIteration):
        return None, ""
    chain = _errors.chain_of(exc)
    masks = _errors.secret_masks()
    # What goes is masked as the error's text is: a copy, where a secret is in its arguments.
    sent = [_masked(e, masks) for e in chain]
    exc = sent[0]
    # Each link pickled once: the check that it pickles, and what goes if it fits.
    pickled = [_serialized(e) for e in sent[1:]]
    if any(text is not None for text in pickled):
        encoded = _serialized(_errors.chained_pickle(chain, exc, pickled))
        if encoded is not None and len(encoded) <= _MAX_PICKLED_EXCEPTION:
            return encoded, ""
        # Too big whole: each link gets a fair share, its text cut to fit it, or stays out
        # (a link that cannot be cut, such as one holding megabytes of bytes).
        share = _MAX_PICKLED_EXCEPTION // len(chain)
        budget = share // 4  # base64 and the rest of the pickle need room
        fitted = [
            _fitted(e, text, share, budget) for e, text in zip(sent[1:], pickled, strict=True)
        ]
        encoded = _serialized(_errors.chained_pickle(chain, _cut_args(exc, budget), fitted))
        if encoded is not None and len(encoded) <= _MAX_PICKLED_EXCEPTION:
            return encoded, ""
    encoded, why = _pickled(exc)
    if encoded is not None and len(encoded) > _MAX_PICKLED_EXCEPTION:
        encoded = _serialized(_shortened(exc))
        why = f"its pickle is over {_MAX_PICKLED_EXCEPTION // 1024} KiB"
    if encoded is not None and len(encoded) <= _MAX_PICKLED_EXCEPTION:
        return encoded, ""
    return None, why


def _masked(exc: BaseException, masks: list[tuple[str, str]]) -> BaseException:
    """``exc``, or a copy whose text arguments and notes (a group's message and members)
    have ``masks``' secrets masked (errors.mask_secrets): the caller raises the copy, of the
    same type. A secret held elsewhere in it is found in its pickle by the worker, which
    then sends the text alone."""
    if not masks:
        return exc
    try:
        notes: Any = getattr(exc, "__notes__", None)
        new_notes = _masked_texts(notes, masks) if isinstance(notes, list) else notes
        if _errors.is_exception_group(exc):
            group: Any = exc
            members = [_masked(member, masks) for member in group.exceptions]
            message = _errors.mask_secrets(group.message, masks)
            unchanged = message is group.message and _same_items(members, group.exceptions)
            if new_notes is notes and unchanged:
                return exc
            copied: BaseException = type(exc)(message, members)  # what a group is made of
            copied.__dict__.update(exc.__dict__)  # a subclass's attributes
        else:
            args = list(exc.args)  # a property of the user's class may raise
            new_args = _masked_texts(args, masks)
            if new_notes is notes and new_args is args:
                return exc
            copied = copy.copy(exc)
            copied.args = tuple(new_args)
        if new_notes is not notes:
            copied.__notes__ = new_notes
    except Exception:  # one that cannot be copied: the worker checks its pickle
        return exc
    return copied


def _masked_texts(items: list[Any], masks: list[tuple[str, str]]) -> list[Any]:
    """``items`` with their texts masked; ``items`` itself where none held a secret."""
    masked = [_errors.mask_secrets(i, masks) if isinstance(i, str) else i for i in items]
    return items if _same_items(masked, items) else masked


def _same_items(a: list[Any], b: Any) -> bool:
    return all(x is y for x, y in zip(a, b, strict=True))


def _serialized(obj: Any) -> str | None:
    return None if obj is None else _pickled(obj)[0]


def _pickled(error: Any) -> tuple[str | None, str]:
    """``error`` (or a chain of them, errors.chained_pickle) pickled so that its caller can
    load it without calling any __init__ of the user's again (serialize's
    ``errors_without_init``); else None, and why not."""
    try:
        return serialize(error, errors_without_init=True), ""
    except SerializationError as exc:
        return None, _errors.pickle_problem(exc)


def _fitted(exc: BaseException, encoded: str | None, share: int, budget: int) -> str | None:
    """A link's pickle (``encoded``) within ``share``: as it is, else with its str arguments
    cut to ``budget`` bytes; None where neither fits."""
    if encoded is None or len(encoded) <= share:
        return encoded
    encoded = _serialized(_shortened(exc, budget))
    return encoded if encoded is not None and len(encoded) <= share else None


def _cut_args(exc: BaseException, budget: int) -> BaseException:
    """``exc``, or its copy with its str arguments cut to ``budget`` bytes."""
    shortened = _shortened(exc, budget)
    return exc if shortened is None else shortened


def _shortened(
    exc: BaseException, budget: int = _MAX_PICKLED_EXCEPTION // 4
) -> BaseException | None:
    """A copy of ``exc`` with its str arguments over ``budget`` bytes cut to it (the default
    leaves room for base64 and the rest of the pickle); None when it has none."""
    try:
        args = tuple(exc.args)  # a property of the user's class may raise: the answer may not
        if not any(isinstance(a, str) and _errors.text_size(a) > budget for a in args):
            return None
        copied = copy.copy(exc)
        copied.args = tuple(_cut(a, budget) if isinstance(a, str) else a for a in args)
    except Exception:  # an exception that cannot be copied goes by its type name
        return None
    return copied


def _item_nonce(nonce: str | None, index: int) -> str | None:
    return None if nonce is None else f"{nonce}:{index}"


def _is_generator_function(target: Any) -> bool:
    return inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target)


def _is_generator_method(cls: type, name: str) -> bool:
    try:
        found = getattr(cls, name)
    except Exception:  # a descriptor in user code: not one to stream
        return False
    return _is_generator_function(found)


async def _iterate(items: Any, label: str, *, in_thread: bool) -> AsyncGenerator[Any, None]:
    """Items of a (async) generator; an exception raised while producing one is user code's.
    With ``in_thread``, a sync generator runs in a thread of its own, all of it in one
    context: it may keep thread-local or context state across its yields (a contextvar
    reset, ``torch.inference_mode()``). Closed early (cancelled, or its consumer gone), it
    closes ``items`` at once, not whenever the garbage collector gets to it."""
    executor = context = None
    if in_thread and inspect.isgenerator(items):
        executor = concurrent.futures.ThreadPoolExecutor(1, "flash-stream")
        context = contextvars.copy_context()
    try:
        if inspect.isasyncgen(items):
            async for item in items:
                yield item
        elif executor is not None:
            step = functools.partial(_in_thread, executor=executor, context=context)
            while (item := await step(next, items, _EXHAUSTED)) is not _EXHAUSTED:
                yield item
        else:
            iterator = iter(items)
            while (item := run_sync_code(next, iterator, _EXHAUSTED)) is not _EXHAUSTED:
                yield item
    except GeneratorExit:
        raise
    except asyncio.CancelledError as exc:
        if _cancelling():
            raise
        raise _UserCodeError(label, exc) from None
    except BaseException as exc:
        raise _UserCodeError(label, _user_exception(exc)) from None
    finally:
        try:
            with contextlib.suppress(Exception):
                if inspect.isasyncgen(items):
                    await items.aclose()
                elif executor is not None:
                    await _in_thread(items.close, executor=executor, context=context)
                elif inspect.isgenerator(items):
                    items.close()
        finally:
            if executor is not None:
                executor.shutdown(wait=False)


_EXHAUSTED = object()


def _error(error_type: str, message: str, tb: str) -> dict[str, Any]:
    return {
        "success": False,
        "error": _cut(message),
        "error_type": error_type,
        "traceback": _cut(tb),
        "protocol_version": PROTOCOL_VERSION,
    }


def _format_traceback(exc: BaseException, *, strip: bool = True) -> str:
    """The traceback from the first user frame on: the worker's own frames are noise."""
    try:
        summary = traceback.TracebackException.from_exception(exc)
        if strip:
            frames = list(summary.stack)
            start = 0
            while start < len(frames) and _is_plumbing(frames[start].filename):
                start += 1
            summary.stack = traceback.StackSummary.from_list(frames[start:])
            _strip_trailing(summary)
        return _in_source_dir(_cut("".join(summary.format())))
    except Exception:  # a broken __str__ must not lose the job's answer
        return f"{type(exc).__name__} (traceback unavailable)\n"


def _strip_trailing(summary: traceback.TracebackException) -> None:
    """Strip the frames Flash's runtime adds at the end of each stack in ``summary`` (the
    exception, what it was raised from, an exception group's members): those of a nested
    call that failed (``call_function``, ``_call``, ``_raise_for``), with the asyncio ones
    between them. Only after the user's last frame, and only where Flash's are among them."""
    seen: set[int] = set()
    todo = [summary]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        frames = list(current.stack)
        end = len(frames)
        while end > 0 and (
            _in_runtime(frames[end - 1].filename) or _is_plumbing(frames[end - 1].filename)
        ):
            end -= 1
        if 0 < end < len(frames) and any(_in_runtime(f.filename) for f in frames[end:]):
            current.stack = traceback.StackSummary.from_list(frames[:end])
        todo.extend(
            t
            for t in (
                current.__cause__,
                current.__context__,
                *(getattr(current, "exceptions", None) or ()),
            )
            if t is not None
        )


def _in_runtime(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_RUNTIME_DIR)


def _cut(text: str, limit: int = _MAX_ERROR_TEXT) -> str:
    """``text`` within ``limit`` bytes of UTF-8, its middle cut (errors.cut_text)."""
    return _errors.cut_text(text, limit)


def _in_source_dir(text: str) -> str:
    """``text`` with the build's files named as the project's, where the platform says
    where the project is ($FLASH_SOURCE_DIR, ``flash run``) and the file is there: an
    editor opens the project's file, not the copy being served (a vendored package's stay
    as they are: the project has no such file)."""
    source = os.environ.get(SOURCE_DIR_ENV_VAR)
    if not source or _APP_DIR is None:
        return text

    def named(found: re.Match[str]) -> str:
        path = found[2]
        if path.startswith(_APP_DIR):
            candidate = os.path.join(source, path[len(_APP_DIR) :])
            if os.path.isfile(candidate):
                path = candidate
        return f"{found[1]}{path}{found[3]}"

    return _TRACEBACK_FILE.sub(named, text)


def _is_plumbing(filename: str) -> bool:
    path = os.path.abspath(filename)
    return path in _PLUMBING_FILES or path.startswith(_PLUMBING_DIRS)


_safe_str = _errors.safe_str


def _short_repr(value: Any, limit: int = 80) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{_type_name(value)}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
