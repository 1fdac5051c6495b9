"""What users touch: resource configs and ``@remote``.

Names load on first use (PEP 562): ``flash build`` reads ``flash.sdk.resources`` and
``flash.sdk.keys`` without paying for the call path (asyncio, the client) on every start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flash.runtime.errors import (
        CallDepthError,
        EndpointUnavailableError,
        InvalidResultError,
        PayloadTooLargeError,
        RemoteCancelledError,
        RemoteError,
        RemoteExecutionError,
        RemoteTimeoutError,
    )
    from flash.runtime.remote import MapError, RemoteClass, RemoteFunction, RemoteInstance, run
    from flash.sdk.connect import connect, disconnect
    from flash.sdk.remote import remote
    from flash.sdk.resources import (
        CpuInstanceType,
        CpuLiveServerless,
        CpuServerlessEndpoint,
        GpuGroup,
        LiveServerless,
        ResourceConfig,
        ScalerType,
        ServerlessEndpoint,
    )

# Where each public name lives.
_HOMES = {
    **dict.fromkeys(
        (
            "CallDepthError",
            "EndpointUnavailableError",
            "InvalidResultError",
            "PayloadTooLargeError",
            "RemoteCancelledError",
            "RemoteError",
            "RemoteExecutionError",
            "RemoteTimeoutError",
        ),
        "flash.runtime.errors",
    ),
    **dict.fromkeys(
        ("MapError", "RemoteClass", "RemoteFunction", "RemoteInstance", "run"),
        "flash.runtime.remote",
    ),
    **dict.fromkeys(("connect", "disconnect"), "flash.sdk.connect"),
    "remote": "flash.sdk.remote",
    **dict.fromkeys(
        (
            "CpuInstanceType",
            "CpuLiveServerless",
            "CpuServerlessEndpoint",
            "GpuGroup",
            "LiveServerless",
            "ResourceConfig",
            "ScalerType",
            "ServerlessEndpoint",
        ),
        "flash.sdk.resources",
    ),
}

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
    "connect",
    "disconnect",
    "remote",
    "run",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
