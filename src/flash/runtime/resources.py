"""Resource vocabulary shared by the SDK and the worker (standard library only).

The enums are the single definition of GPU pools and CPU instance types. The ``*Stub``
config classes stand in for the pydantic configs inside a built archive: user modules
construct their configs at import time on the worker, where the config checks nothing
(validation already happened at build time) but reads as the pydantic config does.
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


# The configs' fields as the pydantic models (flash.sdk.resources) have them, in their
# order: (name, its snake_case spelling or None, default; a callable makes each instance
# its own). The stub answers each as an attribute, as the model does.
_Field = tuple[str, str | None, Any]
_COMMON_FIELDS: tuple[_Field, ...] = (
    ("workersMin", "workers_min", 0),
    ("workersMax", "workers_max", 3),
    ("idleTimeout", "idle_timeout", 5),
    ("executionTimeoutMs", "execution_timeout_ms", None),
    ("scalerType", "scaler_type", ScalerType.QUEUE_DELAY),
    ("scalerValue", "scaler_value", 4),
    ("concurrency", None, 1),
    ("env", None, dict),
    ("locations", None, None),
    ("networkVolumeId", "network_volume_id", None),
    ("imageName", "image_name", None),
)
_GPU_FIELDS: tuple[_Field, ...] = (
    ("gpus", None, lambda: [GpuGroup.ANY]),
    ("gpuCount", "gpu_count", 1),
)
_CPU_FIELDS: tuple[_Field, ...] = (
    ("instanceIds", "instance_ids", lambda: [CpuInstanceType.CPU3G_2_8]),
)
_INT_FIELDS = frozenset(
    {"workersMin", "workersMax", "idleTimeout", "executionTimeoutMs", "scalerValue"}
    | {"concurrency", "gpuCount"}
)
_ENUM_FIELDS: dict[str, type[Enum]] = {
    "gpus": GpuGroup,
    "instanceIds": CpuInstanceType,
    "scalerType": ScalerType,
}


def _enum_value(enum: type[Enum], value: Any) -> Any:
    """A member named by itself, its name or its value in any letter case, as the config
    keeps it: its value (the pydantic config's ``use_enum_values``)."""
    if isinstance(value, enum):
        return value.value
    if isinstance(value, str) and value.isascii():
        for member in enum:
            if value.lower() in (member.name.lower(), str(member.value).lower()):
                return member.value
    return value


def _as_int(value: Any) -> Any:
    """A whole number given as a bool, a float or text, as the config's lax int reads it."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def _as_given(name: str, value: Any) -> Any:
    """``value`` as the pydantic config holds it once validated (the build validated it)."""
    if name in _INT_FIELDS:
        return _as_int(value)
    enum = _ENUM_FIELDS.get(name)
    if enum is not None:
        if isinstance(value, list | tuple):
            return [_enum_value(enum, item) for item in value]
        return _enum_value(enum, value)
    if name == "env" and isinstance(value, dict):
        return dict(value)  # as written: a secret reference reads as one, as in the config
    return value


class ResourceStub:
    """Worker-side stand-in for a resource config: keeps the values, checks nothing (the
    build validated them), and answers the config's fields as the pydantic config does:
    given by their RunPod names or snake_case spellings, read by their RunPod names, with
    the same defaults."""

    is_gpu: bool = True
    _FIELDS: tuple[_Field, ...] = _COMMON_FIELDS

    def __init__(self, name: str = "", **fields: Any) -> None:
        self.name = name
        for field, snake, default in self._FIELDS:
            if field in fields:
                value = _as_given(field, fields[field])
            elif snake is not None and snake in fields:
                value = _as_given(field, fields[snake])
            else:
                value = default() if callable(default) else default
            setattr(self, field, value)

    def _values(self) -> list[tuple[str, Any]]:
        return [("name", self.name)] + [(f, getattr(self, f)) for f, _, _ in self._FIELDS]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, ResourceStub)
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # as the config's: its env is a dict

    def __repr__(self) -> str:
        shown = ", ".join(f"{field}={value!r}" for field, value in self._values())
        return f"{type(self).__name__}({shown})"


class _GpuStub(ResourceStub):
    _FIELDS = _COMMON_FIELDS + _GPU_FIELDS


class _CpuStub(ResourceStub):
    is_gpu = False
    _FIELDS = _COMMON_FIELDS + _CPU_FIELDS


class LiveServerless(_GpuStub):
    pass


class CpuLiveServerless(_CpuStub):
    pass


class ServerlessEndpoint(_GpuStub):
    pass


class CpuServerlessEndpoint(_CpuStub):
    pass
