"""What caller, handler, build and platform agree on: the manifest's name, the protocol
version, the ``error_type`` values, and how an ``@remote`` wrapper leads to the user's code.

Its own module so that the client reads them without importing the handler.
Standard library only: this module runs inside every worker.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "ARGUMENT_DECODE_ERROR",
    "DEADLINE_EXCEEDED",
    "ERROR_CATEGORIES",
    "EXECUTION_TYPE_MISMATCH",
    "INVALID_ARGUMENTS",
    "INVALID_INPUT",
    "INVALID_JOB",
    "MANIFEST_ENV_VAR",
    "MANIFEST_FILENAME",
    "MAX_JSON_DEPTH",
    "MAX_POLICY_MS",
    "NOT_JSON_CALLABLE",
    "PROTOCOL_VERSION",
    "RESULT_NOT_JSON",
    "RESULT_NOT_PICKLABLE",
    "RUNSYNC_LIMIT",
    "RUN_LIMIT",
    "SIGNATURE_REJECTED",
    "SOURCE_DIR_ENV_VAR",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "UNKNOWN_FUNCTION",
    "UNKNOWN_METHOD",
    "UNSUPPORTED_PROTOCOL",
    "VERSION_MISMATCH",
    "WORKER_CONCURRENCY_ENV_VAR",
    "WORKER_ERROR",
    "call_names",
    "unwrap_remote",
    "worker_concurrency",
]

# The manifest every archive carries at its top, and the variable that can point elsewhere.
MANIFEST_FILENAME = "flash_manifest.json"
MANIFEST_ENV_VAR = "FLASH_MANIFEST_PATH"
# A project's build state (the manifest, the archive, the signing key) lives in this folder.
FLASH_DIR = ".flash"

# The project folder a build served on this machine came from (``flash run``): a worker's
# tracebacks name the project's files there, which an editor opens, not the served copy's.
SOURCE_DIR_ENV_VAR = "FLASH_SOURCE_DIR"

# Jobs a worker runs at once: the resource's ``concurrency``, set by the platform.
WORKER_CONCURRENCY_ENV_VAR = "FLASH_WORKER_CONCURRENCY"

# JSON arguments of a job nested deeper than this are refused before validation.
MAX_JSON_DEPTH = 64
PROTOCOL_VERSION = 1
# The longest a job may run or wait (policy.executionTimeout and ttl): RunPod's 7 days.
# The gateway refuses more and the store caps what an older version stored: a bigger
# number overflows a float, which would fail a job half-submitted, or start-up.
MAX_POLICY_MS = 7 * 24 * 3600 * 1000
# The biggest request body each submission route takes (RunPod's limits): the gateway
# refuses a bigger one with 413, and the client refuses to send it.
RUN_LIMIT = 10 * 1024 * 1024
RUNSYNC_LIMIT = 20 * 1024 * 1024
SUPPORTED_PROTOCOL_VERSIONS: tuple[int, ...] = (1,)

# error_type values for failures that are not an exception raised by user code
# (those report the exception's class name instead).
INVALID_JOB = "InvalidJob"
UNSUPPORTED_PROTOCOL = "UnsupportedProtocol"
UNKNOWN_FUNCTION = "UnknownFunction"
EXECUTION_TYPE_MISMATCH = "ExecutionTypeMismatch"
UNKNOWN_METHOD = "UnknownMethod"
INVALID_ARGUMENTS = "InvalidArguments"
ARGUMENT_DECODE_ERROR = "ArgumentDecodeError"
RESULT_NOT_PICKLABLE = "ResultNotPicklable"
WORKER_ERROR = "WorkerError"
DEADLINE_EXCEEDED = "DeadlineExceeded"
SIGNATURE_REJECTED = "SignatureRejected"
VERSION_MISMATCH = "VersionMismatch"
INVALID_INPUT = "InvalidInput"
NOT_JSON_CALLABLE = "NotJsonCallable"
RESULT_NOT_JSON = "ResultNotJson"
ERROR_CATEGORIES = frozenset(
    {
        INVALID_INPUT,
        NOT_JSON_CALLABLE,
        RESULT_NOT_JSON,
        SIGNATURE_REJECTED,
        VERSION_MISMATCH,
        DEADLINE_EXCEEDED,
        INVALID_JOB,
        UNSUPPORTED_PROTOCOL,
        UNKNOWN_FUNCTION,
        EXECUTION_TYPE_MISMATCH,
        UNKNOWN_METHOD,
        INVALID_ARGUMENTS,
        ARGUMENT_DECODE_ERROR,
        RESULT_NOT_PICKLABLE,
        WORKER_ERROR,
    }
)


def call_names(functions: Any) -> list[tuple[list[str], dict[str, Any]]]:
    """An endpoint's function entries (its manifest ``functions``), each with the names a
    job may call it by: its qualified name, and its short name where no other function of
    the endpoint has it (a short name two share reaches neither)."""
    entries = [f for f in functions or [] if isinstance(f, dict)]
    short_names = [f.get("name") for f in entries]
    return [
        (
            [str(f.get("qualified_name"))]
            + ([str(f.get("name"))] if short_names.count(f.get("name")) == 1 else []),
            f,
        )
        for f in entries
    ]


def unwrap_remote(obj: Any) -> Any:
    """The user's function or class behind an ``@remote`` wrapper; anything else as it is."""
    return obj.__wrapped__ if getattr(obj, "__flash_remote__", False) else obj


def worker_concurrency() -> int:
    """Jobs this worker runs at once, as the platform asks (``$FLASH_WORKER_CONCURRENCY``);
    1 when unset or not a number."""
    try:
        return max(1, int(os.environ.get(WORKER_CONCURRENCY_ENV_VAR, "1")))
    except ValueError:
        return 1
