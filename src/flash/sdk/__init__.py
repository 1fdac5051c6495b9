"""What users touch: resource configs and ``@remote``."""

from flash.runtime.remote import RemoteClass, RemoteFunction, RemoteInstance, run
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
    "CpuInstanceType",
    "CpuLiveServerless",
    "CpuServerlessEndpoint",
    "GpuGroup",
    "LiveServerless",
    "RemoteClass",
    "RemoteFunction",
    "RemoteInstance",
    "ResourceConfig",
    "ScalerType",
    "ServerlessEndpoint",
    "remote",
    "run",
]
