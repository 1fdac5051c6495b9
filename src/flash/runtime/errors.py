"""Exceptions a remote call raises in the caller (standard library only)."""

from __future__ import annotations

import asyncio
import base64
import pickle
from collections.abc import Callable
from typing import Any

__all__ = [
    "MAX_ERROR_TEXT",
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
    "remote_error_fields",
    "remote_error_from_fields",
    "safe_str",
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
        kind = f"{self.remote_type}: " if self.remote_type else ""
        return f"{kind}{self.message}{self._where()}"

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
# The most exceptions of a chain (causes, contexts) that travel with the one raised.
_MAX_CHAIN = 16


def safe_str(error: BaseException) -> str:
    """``str(error)``; a broken __str__ must not lose the job's answer."""
    try:
        return str(error)
    except Exception:
        return f"<unprintable {type(error).__name__}>"


def text_size(text: str) -> int:
    """``text``'s size in UTF-8 (a lone surrogate counted as 3 bytes)."""
    return len(text.encode("utf-8", "surrogatepass"))


def cut_text(text: str, limit: int = MAX_ERROR_TEXT) -> str:
    """``text``, its middle cut when its UTF-8 is over ``limit`` bytes, never inside a
    character: the head says where it starts, the tail (a traceback's exception line) how
    it ends. A ``limit`` under _MIN_CUT_LIMIT raises ValueError: the note alone is over it."""
    if limit < _MIN_CUT_LIMIT:
        raise ValueError(f"cut_text's limit is {limit} bytes, under {_MIN_CUT_LIMIT}")
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


def chain_of(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions it was raised from or while handling (``__cause__``,
    ``__context__``, theirs in turn), each once: a cycle ends, and at most _MAX_CHAIN."""
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
    return found


class _Chain:
    """An exception with the exceptions it was raised from or while handling: unpickled, it
    is the exception with its ``__cause__`` and ``__context__`` set again (pickle leaves them
    out). The exception must unpickle, as it had to alone; each other link is pickled on its
    own, so one the caller cannot unpickle (its class only on the worker) is a missing link,
    not a lost error."""

    def __init__(
        self,
        error: BaseException,
        pickled: list[bytes | None],
        links: list[tuple[int | None, int | None, bool]],
    ) -> None:
        self.error = error
        self.pickled = pickled
        self.links = links

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rechained, (self.error, self.pickled, self.links))


def chained_pickle(
    chain: list[BaseException], sent: BaseException, pickled: list[str | None]
) -> Any:
    """What to pickle for ``chain[0]`` (chain_of's list) with its chain: ``sent`` for it
    (itself, or a copy with its text cut), and ``pickled[i]`` (serialize's text) for
    ``chain[i + 1]``; where that is None (it does not pickle, or is too big), a link to it
    is None in the caller."""
    where = {id(error): n for n, error in enumerate(chain)}
    links = [
        (
            where.get(id(error.__cause__)),
            where.get(id(error.__context__)),
            error.__suppress_context__,
        )
        for error in chain
    ]
    raw = [None if text is None else base64.b64decode(text) for text in pickled]
    return _Chain(sent, raw, links)


def _rechained(
    error: BaseException,
    pickled: list[bytes | None],
    links: list[tuple[int | None, int | None, bool]],
) -> BaseException:
    errors: list[BaseException | None] = [error, *(_link(raw) for raw in pickled)]
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
        link = pickle.loads(raw)
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
