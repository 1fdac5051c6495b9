"""Flash: write ordinary Python, mark what runs elsewhere with ``@remote``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flash.sdk import (
        CallDepthError,
        CpuInstanceType,
        CpuLiveServerless,
        CpuServerlessEndpoint,
        EndpointUnavailableError,
        GpuGroup,
        InvalidResultError,
        LiveServerless,
        MapError,
        PayloadTooLargeError,
        RemoteCancelledError,
        RemoteClass,
        RemoteError,
        RemoteExecutionError,
        RemoteFunction,
        RemoteInstance,
        RemoteTimeoutError,
        ResourceConfig,
        ScalerType,
        ServerlessEndpoint,
        connect,
        disconnect,
        remote,
        run,
    )
__version__ = "0.1.0"

__all__ = [
    "CallDepthError",
    "CpuInstanceType",
    "CpuLiveServerless",
    "CpuServerlessEndpoint",
    "EndpointUnavailableError",
    "GpuGroup",
    "InvalidResultError",
    "LiveServerless",
    "MapError",
    "PayloadTooLargeError",
    "RemoteCancelledError",
    "RemoteClass",
    "RemoteError",
    "RemoteExecutionError",
    "RemoteFunction",
    "RemoteInstance",
    "RemoteTimeoutError",
    "ResourceConfig",
    "ScalerType",
    "ServerlessEndpoint",
    "__version__",
    "connect",
    "disconnect",
    "remote",
    "run",
]


def __getattr__(name: str) -> Any:
    # The SDK loads on first use (PEP 562): `flash --help` and `flash build` do not pay
    # for the call path.
    if name in __all__:
        value = getattr(importlib.import_module("flash.sdk"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
