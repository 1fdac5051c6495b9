"""Resource vocabulary shared by the SDK and the worker (standard library only).

The enums are the single definition of GPU pools and CPU instance types. The ``*Stub``
config classes stand in for the pydantic configs inside a built archive: user modules
construct their configs at import time on the worker, where the config is only a label
(validation already happened at build time).
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class GpuGroup(str, Enum):
    """RunPod GPU pools."""

    ANY = "any"
    AMPERE_16 = "AMPERE_16"
    AMPERE_24 = "AMPERE_24"
    AMPERE_48 = "AMPERE_48"
    AMPERE_80 = "AMPERE_80"
    ADA_24 = "ADA_24"
    ADA_32_PRO = "ADA_32_PRO"
    ADA_48_PRO = "ADA_48_PRO"
    ADA_80_PRO = "ADA_80_PRO"
    HOPPER_141 = "HOPPER_141"
    BLACKWELL_96 = "BLACKWELL_96"
    BLACKWELL_180 = "BLACKWELL_180"


class CpuInstanceType(str, Enum):
    """RunPod CPU instance types: generation, vCPUs, memory in GB."""

    CPU3G_1_4 = "cpu3g-1-4"
    CPU3G_2_8 = "cpu3g-2-8"
    CPU3G_4_16 = "cpu3g-4-16"
    CPU3G_8_32 = "cpu3g-8-32"
    CPU3C_1_2 = "cpu3c-1-2"
    CPU3C_2_4 = "cpu3c-2-4"
    CPU3C_4_8 = "cpu3c-4-8"
    CPU3C_8_16 = "cpu3c-8-16"
    CPU5C_1_2 = "cpu5c-1-2"
    CPU5C_2_4 = "cpu5c-2-4"
    CPU5C_4_8 = "cpu5c-4-8"
    CPU5C_8_16 = "cpu5c-8-16"


class ScalerType(str, Enum):
    QUEUE_DELAY = "QUEUE_DELAY"
    REQUEST_COUNT = "REQUEST_COUNT"


class ResourceStub:
    """Worker-side stand-in for a resource config: keeps the values, checks nothing."""

    def __init__(self, name: str = "", **fields: Any) -> None:
        self.name = name
        self.fields = fields

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class LiveServerless(ResourceStub):
    pass


class CpuLiveServerless(ResourceStub):
    pass


class ServerlessEndpoint(ResourceStub):
    pass


class CpuServerlessEndpoint(ResourceStub):
    pass
