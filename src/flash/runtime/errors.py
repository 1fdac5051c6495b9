"""Exceptions a remote call raises in the caller (standard library only)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import contextlib
import contextvars
import functools
import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from flash.runtime.serialization import unpickle
from flash.runtime.signing import KEY_ENV_VAR

__all__ = [
    "MASKED_MIN_LENGTH",
    "MAX_ERROR_TEXT",
    "SECRET_ENV_VARS",
    "SECRET_REFERENCE",
    "CallDepthError",
    "EndpointUnavailableError",
    "InvalidResultError",
    "PayloadTooLargeError",
    "RemoteCancelledError",
    "RemoteError",
    "RemoteExecutionError",
    "RemoteTimeoutError",
    "attach_remote_traceback",
    "chain_of",
    "chained_pickle",
    "cut_text",
    "is_exception_group",
    "mask_secrets",
    "masked_failure",
    "masks_for",
    "pickle_problem",
    "remote_error_fields",
    "remote_error_from_fields",
    "safe_str",
    "secret_masks",
    "text_size",
]


class RemoteError(Exception):
    """A remote call failed. ``remote_type`` names the failure on the worker's side."""

    def __init__(
        self,
        message: str,
        *,
        remote_type: str | None = None,
        remote_traceback: str = "",
        endpoint: str | None = None,
        function: str | None = None,
        job_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback
        self.endpoint = endpoint
        self.function = function
        self.job_id = job_id
        if remote_traceback:
            attach_remote_traceback(self, remote_traceback, endpoint, job_id)

    def __str__(self) -> str:
        kind = self.remote_type
        # Not where the message names it already: "'fn' raised QuotaError: ...".
        if kind and not re.search(rf" raised {re.escape(kind)}(?::|$)", self.message):
            return f"{kind}: {self.message}{self._where()}"
        return f"{self.message}{self._where()}"

    def _where(self) -> str:
        """`` [fn on endpoint, job id]``, as much of it as is known: the call each error
        belongs to, also when no job was made (refused, unreachable, out of time)."""
        parts = []
        if self.function:
            parts.append(f"{self.function} on {self.endpoint}" if self.endpoint else self.function)
        elif self.endpoint:
            parts.append(f"endpoint {self.endpoint}")
        if self.job_id:
            parts.append(f"job {self.job_id}")
        return f" [{', '.join(parts)}]" if parts else ""

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the keyword-only fields when the error itself crosses a process boundary.
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls: type[RemoteError], message: str, state: dict[str, Any]) -> RemoteError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class RemoteExecutionError(RemoteError):
    """The function raised; its exception type could not be recreated here."""


class RemoteTimeoutError(RemoteError, TimeoutError):
    """The call ran out of time (its own timeout, or what its caller had left)."""


class InvalidResultError(RemoteError):
    """A typed function's result does not match its return annotation."""


class RemoteCancelledError(RemoteError):
    """The job was cancelled."""


class EndpointUnavailableError(RemoteError):
    """The platform or endpoint could not be reached, or refused the job."""


class PayloadTooLargeError(RemoteError):
    """The call's request is bigger than the platform takes; nothing ran."""


class CallDepthError(RemoteError):
    """Remote calls nested deeper than the limit: endpoints calling each other in a loop."""


def attach_remote_traceback(
    error: BaseException, remote_traceback: str, endpoint: str | None, job_id: str | None
) -> None:
    """Show the worker's traceback under the local one (PEP 678 notes)."""
    header = f"Remote traceback (endpoint {endpoint}, job {job_id}):"
    note = f"{header}\n{remote_traceback.rstrip()}"
    notes = getattr(error, "__notes__", None)
    if notes is None:
        try:
            error.__notes__ = [note]
        except AttributeError:  # pragma: no cover - exceptions with __slots__
            return
    elif note not in notes:
        notes.append(note)


# Flash's own errors, which a worker's answer names so that its caller raises them again.
_FLASH_ERRORS: dict[str, type[RemoteError]] = {
    cls.__name__: cls
    for cls in (
        RemoteError,
        RemoteExecutionError,
        RemoteTimeoutError,
        InvalidResultError,
        RemoteCancelledError,
        EndpointUnavailableError,
        PayloadTooLargeError,
        CallDepthError,
    )
}


def remote_error_fields(error: BaseException) -> dict[str, Any] | None:
    """Flash's own error (a nested call's) as JSON-able fields, for a worker's answer: its
    caller raises it again as itself, also when the pickled exception cannot go (too big, or
    an answer nobody signed). None for any other exception, a subclass of ours included."""
    if not isinstance(error, RemoteError):
        return None
    if _FLASH_ERRORS.get(type(error).__name__) is not type(error):
        return None
    fields = {
        "type": type(error).__name__,
        "message": error.message,
        "remote_type": error.remote_type,
        "endpoint": error.endpoint,
        "function": error.function,
        "job_id": error.job_id,
    }
    return {k: v if v is None else str(v) for k, v in fields.items()}


def remote_error_from_fields(fields: Any) -> RemoteError | None:
    """The error remote_error_fields described; None if ``fields`` describe none. Only our
    own classes are made, with text only: nothing in the answer runs."""
    if not isinstance(fields, dict):
        return None
    name = fields.get("type")
    cls = _FLASH_ERRORS.get(name) if isinstance(name, str) else None
    message = fields.get("message")
    if cls is None or not isinstance(message, str):
        return None

    def text(name: str) -> str | None:
        value = fields.get(name)
        return value if isinstance(value, str) else None

    return cls(
        message,
        remote_type=text("remote_type"),
        endpoint=text("endpoint"),
        function=text("function"),
        job_id=text("job_id"),
    )


# An error's message and traceback text are cut to this many bytes of UTF-8 (head and tail
# kept): a huge message would otherwise be stored, and repeated, at every hop.
MAX_ERROR_TEXT = 64 * 1024
# Room for the note that says what was cut: what is cut once is not cut again.
_CUT_NOTE_ROOM = 60
# The smallest limit cut_text takes: room for the note and some of each end.
_MIN_CUT_LIMIT = 2 * _CUT_NOTE_ROOM
# Why an exception could not be rebuilt, as a note of its caller's error says it: a line.
_MAX_PROBLEM_TEXT = 500
# The most exceptions of a chain (causes, contexts) that travel with the one raised.
_MAX_CHAIN = 16


def safe_str(error: BaseException) -> str:
    """``str(error)``; a broken __str__ must not lose the job's answer."""
    try:
        return str(error)
    except Exception:
        return f"<unprintable {type(error).__name__}>"


def pickle_problem(error: BaseException) -> str:
    """Why pickling or unpickling failed (``error``, a SerializationError: what it was
    raised from), short: ``TypeError: cannot pickle '_thread.lock' object``."""
    cause = error.__cause__ or error
    return cut_text(f"{type(cause).__name__}: {safe_str(cause)}", _MAX_PROBLEM_TEXT)


def text_size(text: str) -> int:
    """``text``'s size in UTF-8 (a lone surrogate counted as 3 bytes)."""
    return len(text.encode("utf-8", "surrogatepass"))


def cut_text(text: str, limit: int = MAX_ERROR_TEXT) -> str:
    """``text`` as an error carries it out of this process: the secrets this process holds
    masked (mask_secrets), then its middle cut when its UTF-8 is over ``limit`` bytes, never
    inside a character: the head says where it starts, the tail (a traceback's exception
    line) how it ends. A ``limit`` under _MIN_CUT_LIMIT raises ValueError: the note alone is
    over it."""
    if limit < _MIN_CUT_LIMIT:
        raise ValueError(f"cut_text's limit is {limit} bytes, under {_MIN_CUT_LIMIT}")
    # Masked before it is cut: a secret astride the cut would leave its head and tail.
    text = mask_secrets(text)
    # A character is 1 to 4 bytes: most texts need no encoding to know.
    if len(text) * 4 <= limit or (len(text) <= limit and text_size(text) <= limit):
        return text
    half = (limit - _CUT_NOTE_ROOM) // 2
    head = _utf8_head(text, half)
    tail = _utf8_tail(text, half)
    cut = len(text) - len(head) - len(tail)
    return f"{head} ... {cut:,} characters cut ... {tail}"


def _utf8_head(text: str, size: int) -> str:
    """The longest start of ``text`` within ``size`` bytes of UTF-8."""
    encoded = text[:size].encode("utf-8", "surrogatepass")
    end = min(size, len(encoded))
    while end < len(encoded) and encoded[end] & 0xC0 == 0x80:  # inside a character
        end -= 1
    return encoded[:end].decode("utf-8", "surrogatepass")


def _utf8_tail(text: str, size: int) -> str:
    """The longest end of ``text`` within ``size`` bytes of UTF-8."""
    encoded = text[-size:].encode("utf-8", "surrogatepass")
    start = max(0, len(encoded) - size)
    while start < len(encoded) and encoded[start] & 0xC0 == 0x80:  # inside a character
        start += 1
    return encoded[start:].decode("utf-8", "surrogatepass")


# --------------------------------------------------------------------------- secrets

# Secrets shorter than this are not masked where they are shown (a worker's errors, the
# platform's worker output, the build's import check): they would blank out ordinary words
# and numbers.
MASKED_MIN_LENGTH = 8
# A worker's variables that hold a credential, whatever their value: the app's signing key,
# the worker's key for the platform's worker API, the API keys it calls endpoints with.
SECRET_ENV_VARS = frozenset({KEY_ENV_VAR, "RUNPOD_AI_API_KEY", "FLASH_API_KEY", "RUNPOD_API_KEY"})
# A RunPod secret under its own name.
_SECRET_ENV_PREFIX = "RUNPOD_SECRET_"
# An env value naming one of the RunPod account's secrets, as RunPod's templates take it
# (group 1: the variable RunPod fills, which the local platform reads from its own env).
SECRET_REFERENCE = re.compile(r"\{\{\s*(RUNPOD_SECRET_[^\s{}]+)\s*\}\}")
_OWN_MANIFEST = object()


def secret_masks(
    environ: Mapping[str, str] | None = None, manifest: Any = _OWN_MANIFEST
) -> list[tuple[str, str]]:
    """Each secret in ``environ`` (default: this process's environment) and what stands for
    it in a text, ``<env NAME>`` (the variable holding it, as the build's import check shows
    a secret), longest first: a secret inside another is replaced after it. A secret is the
    value of a variable of SECRET_ENV_VARS, of a RunPod secret's own (``RUNPOD_SECRET_x``),
    or of a variable an endpoint's ``env`` in ``manifest`` (default: the worker's
    flash_manifest.json) fills from a secret, ``{{ RUNPOD_SECRET_x }}``. Values under
    MASKED_MIN_LENGTH characters are not masked."""
    env = os.environ if environ is None else environ
    filled = _manifest_secret_names() if manifest is _OWN_MANIFEST else _filled_names(manifest)
    holders: dict[str, str] = {}
    for name in sorted(env):
        if name in SECRET_ENV_VARS or name.startswith(_SECRET_ENV_PREFIX) or name in filled:
            holders.setdefault(env[name], name)
    return masks_for(holders)


def masks_for(holders: Mapping[str, str]) -> list[tuple[str, str]]:
    """The masks of secrets (each with the variable holding it): ``(text, "<env NAME>")``
    for each secret of MASKED_MIN_LENGTH characters or more and for each way code commonly
    writes it, longest first, so that a secret inside another is replaced after it.

    repr(), ascii() and JSON escape quotes, backslashes and non-ASCII letters, and a text
    is often written so twice: an exception's message is the repr of its arguments, one of
    which may be JSON text."""
    shown: dict[str, str] = {}
    for secret, name in holders.items():
        if len(secret) < MASKED_MIN_LENGTH:
            continue
        forms = {secret}
        for _ in range(2):
            forms |= {escaped for form in forms for escaped in _escaped_forms(form)}
        for form in forms:
            shown.setdefault(form, f"<env {name}>")
    return sorted(shown.items(), key=lambda item: len(item[0]), reverse=True)


def _escaped_forms(text: str) -> tuple[str, ...]:
    """``text`` as the inside of the literals repr(), ascii() and json.dumps() write."""
    return (
        repr(text)[1:-1],
        ascii(text)[1:-1],
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
    )


def mask_secrets(text: str, masks: list[tuple[str, str]] | None = None) -> str:
    """``text`` with each secret of ``masks`` (default: secret_masks(), this process's)
    replaced by what stands for it: what leaves a worker as an error or a log line."""
    for secret, shown in secret_masks() if masks is None else masks:
        if secret in text:
            text = text.replace(secret, shown)
    return text


def masked_failure(value: Any, mask: Callable[[str], str] | None = None) -> Any:
    """A failed job's error or answer (JSON data) with ``mask`` applied to each of its texts;
    ``value`` itself is left as it is. A failure answer's pickled exception
    (``"exception"``) that holds a secret is left out (``"exception_not_sent"`` says so),
    and then its signature (``"mac"``), which no longer matches: its caller raises the error
    from the answer's text, masked. A failure answer sent as JSON text (a streamed item's
    error) is masked inside it."""
    if mask is None:  # this process's secrets, found once for all the texts of the failure
        masks = secret_masks()
        mask = lambda text: mask_secrets(text, masks)  # noqa: E731
    if isinstance(value, str):
        if value.startswith("{") and '"success"' in value:
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                masked = masked_failure(parsed, mask)
                return value if masked == parsed else json.dumps(masked)
        return mask(value)
    if isinstance(value, list):
        return [masked_failure(item, mask) for item in value]
    if not isinstance(value, dict):
        return value
    result: dict[Any, Any] = {}
    for key, item in value.items():
        if key == "exception" and isinstance(item, str) and _is_pickle(item):
            if not _holds_secret(item, mask):
                result[key] = item
            else:  # its caller's error says why it is not the exception itself
                result["exception_not_sent"] = "it holds a secret of the worker's"
            continue
        result[mask(key) if isinstance(key, str) else key] = masked_failure(item, mask)
    if result != value:
        result.pop("mac", None)
    return result


def _is_pickle(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _holds_secret(pickled: str, mask: Callable[[str], str]) -> bool:
    """Whether the base64 of a pickle holds a text ``mask`` masks (a pickle keeps a str as
    its UTF-8: decoded, whatever is around it, the str's characters are there as they are)."""
    text = base64.b64decode(pickled).decode("utf-8", "replace")
    return mask(text) != text


def _filled_names(manifest: Any) -> frozenset[str]:
    """The variables the endpoints' ``env`` of ``manifest`` fill from secrets."""
    resources = manifest.get("resources") if isinstance(manifest, Mapping) else None
    names = set()
    for resource in resources.values() if isinstance(resources, Mapping) else ():
        config = resource.get("config") if isinstance(resource, Mapping) else None
        env = config.get("env") if isinstance(config, Mapping) else None
        for name, value in env.items() if isinstance(env, Mapping) else ():
            if isinstance(value, str) and SECRET_REFERENCE.search(value):
                names.add(str(name))
    return frozenset(names)


@functools.lru_cache(maxsize=1)
def _manifest_secret_names() -> frozenset[str]:
    """_filled_names of the worker's own flash_manifest.json, read once (where the handler
    reads it); none where there is none or it cannot be read (the handler says why)."""
    try:
        from flash.runtime.generic_handler import load_manifest

        return _filled_names(load_manifest())
    except Exception:
        return frozenset()


def chain_of(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions it was raised from or while handling (``__cause__``,
    ``__context__``), an exception group's members, and theirs in turn, each once: a cycle
    ends, and at most _MAX_CHAIN."""
    found: list[BaseException] = []
    seen: set[int] = set()
    todo = [error]
    while todo and len(found) < _MAX_CHAIN:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        todo.extend(_members(current))
    return found


# BaseExceptionGroup (Python 3.11+); None before it.
_GROUP: Any = getattr(builtins, "BaseExceptionGroup", None)


def is_exception_group(error: BaseException | None) -> bool:
    return _GROUP is not None and isinstance(error, _GROUP)


def _members(error: BaseException | None) -> tuple[BaseException, ...]:
    """An exception group's exceptions; none for any other exception."""
    if is_exception_group(error):
        return tuple(error.exceptions)  # type: ignore[union-attr]
    return ()


# Where a link is a member of a group in the chain: (its index, its group's, its place there).
_Member = tuple[int, int, int]


class _Chain:
    """An exception with the exceptions it was raised from or while handling: unpickled, it
    is the exception with its ``__cause__`` and ``__context__`` set again (pickle leaves them
    out), and those of an exception group's members. The exception must unpickle, as it had
    to alone; each other link is pickled on its own, so one the caller cannot unpickle (its
    class only on the worker) is a missing link, not a lost error. A group's members come
    back inside it: their links are set on those (``members``)."""

    def __init__(
        self,
        error: BaseException,
        pickled: list[bytes | None],
        links: list[tuple[int | None, int | None, bool]],
        members: list[_Member],
    ) -> None:
        self.error = error
        self.pickled = pickled
        self.links = links
        self.members = members

    def __reduce__(self) -> tuple[Any, ...]:
        # Without members, as before they were sent: a caller of an older Flash reads it.
        if not self.members:
            return (_rechained, (self.error, self.pickled, self.links))
        return (_rechained, (self.error, self.pickled, self.links, self.members))


def chained_pickle(
    chain: list[BaseException], sent: BaseException, pickled: list[str | None]
) -> Any:
    """What to pickle for ``chain[0]`` (chain_of's list) with its chain: ``sent`` for it
    (itself, or a copy with its text cut), and ``pickled[i]`` (serialize's text) for
    ``chain[i + 1]``; where that is None (it does not pickle, or is too big), a link to it
    is None in the caller. An exception group's members go inside it, not on their own."""
    where = {id(error): n for n, error in enumerate(chain)}
    links = [
        (
            where.get(id(error.__cause__)),
            where.get(id(error.__context__)),
            error.__suppress_context__,
        )
        for error in chain
    ]
    members = [
        (where[id(member)], n, place)
        for n, error in enumerate(chain)
        for place, member in enumerate(_members(error))
        if where.get(id(member), 0) > n
    ]
    inner = {member for member, _, _ in members}
    raw = [
        None if text is None or n in inner else base64.b64decode(text)
        for n, text in enumerate(pickled, start=1)
    ]
    # Only a member with links of its own, or one that is a link, needs its place said.
    linked = any(
        (n in inner and (cause is not None or context is not None))
        or cause in inner
        or context in inner
        for n, (cause, context, _) in enumerate(links)
    )
    return _Chain(sent, raw, links, members if linked else [])


def _rechained(
    error: BaseException,
    pickled: list[bytes | None],
    links: list[tuple[int | None, int | None, bool]],
    members: list[_Member] | None = None,
) -> BaseException:
    errors: list[BaseException | None] = [error, *(_link(raw) for raw in pickled)]
    for member, group, place in members or ():
        # The member inside its group (unpickled with it), not a copy of its own.
        inside = _members(errors[group]) if 0 <= group < len(errors) else ()
        if 0 < member < len(errors) and 0 <= place < len(inside):
            errors[member] = inside[place]
    for current, (cause, context, suppress) in zip(errors, links, strict=True):
        if current is None:
            continue
        current.__cause__ = None if cause is None else errors[cause]
        current.__context__ = None if context is None else errors[context]
        current.__suppress_context__ = suppress  # last: setting __cause__ sets it too
    return error


def _link(raw: bytes | None) -> BaseException | None:
    """A link of a chain, unpickled; None where it does not unpickle here (its class is not
    installed, or its __init__ does not take its own args)."""
    if raw is None:
        return None
    try:
        # The loader serialization.deserialize uses: these bytes are part of the payload it
        # is unpickling now (and whose signature it checked).
        link = unpickle(raw)
    except Exception:
        return None
    return link if isinstance(link, BaseException) else None


class OwnCancelledError(Exception):
    """A CancelledError that user code raised itself (sync code: nothing can cancel it
    midway, in a thread or not), as an Exception, so that nothing on its way takes it for a
    cancellation of the job; ``exc`` is the original. The worker loop and the generic
    handler both fail the job with it."""

    def __init__(self, exc: asyncio.CancelledError) -> None:
        super().__init__(str(exc))
        self.exc = exc


def run_sync_code(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, sync user code: a CancelledError from it is its own."""
    try:
        return fn(*args)
    except asyncio.CancelledError as exc:
        raise OwnCancelledError(exc) from None


def settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """``future``'s outcome, from a thread's work, in the loop's thread; never left pending."""
    if future.done():  # a timeout cancelled it
        return
    if ok:
        future.set_result(value)
        return
    if isinstance(value, StopIteration):
        # A future cannot hold one (asyncio refuses it): as a coroutine's would be, and as
        # the call without a timeout gives it, it becomes a RuntimeError.
        problem: BaseException = RuntimeError("the call raised StopIteration")
        problem.__cause__ = value
        value = problem
    try:
        future.set_exception(value)
    except Exception as refused:  # the caller must hear of the failure all the same
        problem = RuntimeError(f"the call failed with {value!r}, which a future cannot hold")
        problem.__cause__ = refused
        future.set_exception(problem)


def in_daemon_thread(work: Callable[[], Any], name: str) -> asyncio.Future[Any]:
    """``work()`` in a daemon thread ``name`` (not the loop's executor, whose shutdown would
    wait for a call that never returns), with the caller's context; its outcome as a future.
    Cancelling the future leaves the thread running, and nothing waits for it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def run_it() -> None:
        try:
            outcome = (True, context.run(work))
        except BaseException as exc:  # raised in the caller's task
            outcome = (False, exc)
        with contextlib.suppress(RuntimeError):  # the caller's loop has closed since
            loop.call_soon_threadsafe(settle, future, *outcome)

    threading.Thread(target=run_it, name=name, daemon=True).start()
    return future
