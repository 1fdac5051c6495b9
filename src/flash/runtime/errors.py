"""Exceptions a remote call raises in the caller (standard library only)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = [
    "CallDepthError",
    "EndpointUnavailableError",
    "InvalidResultError",
    "PayloadTooLargeError",
    "RemoteCancelledError",
    "RemoteError",
    "RemoteExecutionError",
    "RemoteTimeoutError",
    "attach_remote_traceback",
    "remote_error_fields",
    "remote_error_from_fields",
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
