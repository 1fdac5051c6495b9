"""Flash: write ordinary Python, mark what runs elsewhere with ``@remote``."""

from flash.sdk import (
    CpuInstanceType,
    CpuLiveServerless,
    CpuServerlessEndpoint,
    GpuGroup,
    LiveServerless,
    RemoteClass,
    RemoteFunction,
    RemoteInstance,
    ResourceConfig,
    ScalerType,
    ServerlessEndpoint,
    remote,
    run,
)

__version__ = "0.1.0"

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
    "__version__",
    "remote",
    "run",
]
