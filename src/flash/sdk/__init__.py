"""What users touch: resource configs and ``@remote``."""

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
from flash.sdk import jsoncodec as _jsoncodec
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

_jsoncodec.install()
