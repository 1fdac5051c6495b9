"""Resource configs: where and how an endpoint runs.

Field names follow RunPod's API (camelCase); snake_case spellings are accepted too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from enum import Enum
from typing import Annotated, Any, ClassVar, NamedTuple, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from flash.runtime.errors import MASKED_MIN_LENGTH, SECRET_REFERENCE
from flash.runtime.protocol import MAX_POLICY_MS
from flash.runtime.resources import CpuInstanceType, GpuGroup, ScalerType
from flash.runtime.signing import ALLOW_UNSIGNED_ENV_VAR, KEY_ENV_VAR

__all__ = [
    "CONFIG_TYPES",
    "MASKED_MIN_LENGTH",
    "SECRET_REFERENCE",
    "CpuInstanceType",
    "CpuLiveServerless",
    "CpuServerlessEndpoint",
    "FilledEnv",
    "GpuGroup",
    "LiveServerless",
    "ResourceConfig",
    "ScalerType",
    "ServerlessEndpoint",
    "check_name",
    "fill_secret_references",
    "validate_config",
]


# RunPod's saveEndpoint takes these fields as GraphQL Int, a signed 32-bit number: anything
# larger could never be deployed (and a huge one overflows the float timers that use it).
_INT_MAX = 2**31 - 1
# The name is a path segment of the endpoint's URL (/v2/<name>/run), sent as it is: only
# these characters need no escaping there (a space is an HTTP 400, a non-ASCII character a
# UnicodeEncodeError), so any other name could never be called.
_NAME_CHARS = re.compile(r"[A-Za-z0-9._-]+")
# Path segments that HTTP clients resolve away (/v2/../run is /run), so never reach the name.
_DOT_SEGMENTS = (".", "..")
_NAME_HINT = "an endpoint name may hold only ASCII letters, digits, '-', '_' and '.'"


class FilledEnv(NamedTuple):
    """An endpoint's ``env`` as its workers on this machine get it."""

    env: dict[str, str]  # each secret reference filled in
    unfilled: dict[str, str]  # variables left out: the first secret each names not set here
    # The values filled in for secret references, never to be shown, each with the variable
    # (its first) that holds it: what stands for it in a text is ``<env NAME>``.
    secrets: dict[str, str]


def fill_secret_references(
    env: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> FilledEnv:
    """``env`` with each ``{{ RUNPOD_SECRET_name }}`` filled in from ``environ`` (this
    process's environment), as RunPod fills it from the account's secrets. A variable naming
    a secret not set here is left out, not failed: RunPod has the secret."""
    source = os.environ if environ is None else environ
    filled: dict[str, str] = {}
    unfilled: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for name, value in sorted(env.items()):
        named = [found[1] for found in SECRET_REFERENCE.finditer(value)]
        missing = [secret for secret in named if secret not in source]
        if missing:
            unfilled[name] = missing[0]
            continue
        filled[name] = SECRET_REFERENCE.sub(lambda found: source[found[1]], value)
        for secret in named:
            secrets.setdefault(source[secret], name)
    return FilledEnv(filled, unfilled, secrets)


_E = TypeVar("_E", bound=Enum)


def _member(enum: type[_E]) -> BeforeValidator:
    """Accept a member of ``enum`` by its name or its value, in any letter case
    (``"ANY"``, ``"any"``, ``"cpu3g-2-8"``, ``"CPU3G_2_8"``); the config keeps the value."""
    lookup: dict[str, _E] = {}
    for member in enum:
        lookup[member.name.lower()] = member
        lookup[str(member.value).lower()] = member

    def pick(value: Any) -> Any:
        if isinstance(value, enum) or not isinstance(value, str):
            return value  # a member already, or a type error pydantic reports
        # ASCII only: str.lower() maps some look-alikes (the Kelvin sign) to ASCII letters.
        member = lookup.get(value.lower()) if value.isascii() else None
        if member is None:
            choices = ", ".join(enum.__members__)
            raise ValueError(f"{value!r} is not a {enum.__name__}; choose one of: {choices}")
        return member

    return BeforeValidator(pick)


_Gpu = Annotated[GpuGroup, _member(GpuGroup)]
_CpuInstance = Annotated[CpuInstanceType, _member(CpuInstanceType)]
_Scaler = Annotated[ScalerType, _member(ScalerType)]


# Endpoint names name files too (handler_<name>.py): well under a file name's 255 bytes.
MAX_NAME_LENGTH = 128
# What the platform gives workers for signed calls: an endpoint's env is applied over it, and
# must not swap the app's key for another or let its workers unpickle unsigned input.
_PLATFORM_SECURITY_ENV = (KEY_ENV_VAR, ALLOW_UNSIGNED_ENV_VAR)


def check_name(name: str) -> None:
    """Raise ValueError, saying why, when ``name`` cannot name an endpoint.

    The name is a path segment of the endpoint's URL (``/v2/<name>/run``), so it must be
    something an HTTP client sends as it is. The scanner calls this too, for ``path:line:col``.
    """
    if not name.strip():
        raise ValueError("name must not be empty")
    if not _NAME_CHARS.fullmatch(name):
        unsafe = sorted({c for c in name if not _NAME_CHARS.fullmatch(c)})
        shown = " ".join(repr(c) for c in unsafe)
        raise ValueError(
            f"name {name!r} contains {shown}, which cannot be part of the endpoint's URL; "
            f"{_NAME_HINT}"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"name is {len(name)} characters long, over {MAX_NAME_LENGTH}: it names the"
            " endpoint's handler file (handler_<name>.py), which the file system would refuse"
        )
    if name in _DOT_SEGMENTS:
        raise ValueError(
            f"name {name!r} is a relative path step in the endpoint's URL (/v2/{name}/run), "
            f"which HTTP clients resolve away, so no call would reach the endpoint; {_NAME_HINT}"
        )


def _field(default: Any, camel: str, snake: str, **kw: Any) -> Any:
    return Field(
        default, validation_alias=AliasChoices(camel, snake), serialization_alias=camel, **kw
    )


class ResourceConfig(BaseModel):
    """Settings shared by every endpoint type."""

    # Errors name the field, never its value: env holds secrets.
    model_config = ConfigDict(
        extra="forbid", frozen=True, use_enum_values=True, hide_input_in_errors=True
    )

    is_gpu: ClassVar[bool] = True

    name: str
    workersMin: int = _field(0, "workersMin", "workers_min", ge=0, le=_INT_MAX)
    workersMax: int = _field(3, "workersMax", "workers_max", ge=0, le=_INT_MAX)
    idleTimeout: int = _field(5, "idleTimeout", "idle_timeout", ge=0, le=_INT_MAX)
    executionTimeoutMs: int | None = _field(
        None, "executionTimeoutMs", "execution_timeout_ms", ge=0, le=MAX_POLICY_MS
    )
    scalerType: _Scaler = _field(ScalerType.QUEUE_DELAY, "scalerType", "scaler_type")
    scalerValue: int = _field(4, "scalerValue", "scaler_value", ge=1, le=_INT_MAX)
    concurrency: int = Field(1, ge=1, le=_INT_MAX)
    env: dict[str, str] = Field(default_factory=dict)
    locations: str | None = None
    networkVolumeId: str | None = _field(None, "networkVolumeId", "network_volume_id")
    imageName: str | None = _field(None, "imageName", "image_name")

    @field_validator("name")
    @classmethod
    def _name_fits_in_a_url(cls, value: str) -> str:
        check_name(value)
        return value

    @field_validator("env")
    @classmethod
    def _env_leaves_signing_alone(cls, value: dict[str, str]) -> dict[str, str]:
        for variable in _PLATFORM_SECURITY_ENV:
            if variable in value:  # its value is never shown: it may be a key
                raise ValueError(
                    f"{variable} is the platform's to give workers (it decides which pickled"
                    " calls they run): an endpoint's env cannot set it"
                )
        return value

    @model_validator(mode="after")
    def _workers_in_order(self) -> ResourceConfig:
        if self.workersMin > self.workersMax:
            raise ValueError(
                f"workersMin ({self.workersMin}) must not exceed workersMax ({self.workersMax})"
            )
        return self

    def to_manifest(self) -> dict[str, Any]:
        """The config as RunPod spells it, for the manifest."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class _GpuConfig(ResourceConfig):
    gpus: list[_Gpu] = Field(default_factory=lambda: [GpuGroup.ANY])
    gpuCount: int = _field(1, "gpuCount", "gpu_count", ge=1, le=_INT_MAX)


class _CpuConfig(ResourceConfig):
    is_gpu: ClassVar[bool] = False

    instanceIds: list[_CpuInstance] = _field(
        [CpuInstanceType.CPU3G_2_8], "instanceIds", "instance_ids"
    )


class LiveServerless(_GpuConfig):
    """A GPU endpoint running Flash's worker image with your code."""


class CpuLiveServerless(_CpuConfig):
    """A CPU endpoint running Flash's worker image with your code."""


class ServerlessEndpoint(_GpuConfig):
    """A GPU endpoint on your own image (``imageName``)."""


class CpuServerlessEndpoint(_CpuConfig):
    """A CPU endpoint on your own image (``imageName``)."""


CONFIG_TYPES: dict[str, type[ResourceConfig]] = {
    cls.__name__: cls
    for cls in (LiveServerless, CpuLiveServerless, ServerlessEndpoint, CpuServerlessEndpoint)
}


def validate_config(type_name: str, values: dict[str, Any]) -> ResourceConfig:
    """Build a config of ``type_name`` from plain values.

    Raises ValueError whose message names each offending field (used by the scanner to
    report ``path:line:col`` errors for configs it reads from source).
    """
    cls = CONFIG_TYPES[type_name]
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc, type_name)) from None


def format_validation_error(exc: ValidationError, type_name: str) -> str:
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "config"
        # Our own checks' messages as written, without pydantic's "Value error, " prefix.
        message = err["msg"].removeprefix("Value error, ")
        problems.append(f"{field}: {message}")
    return f"invalid {type_name}: " + "; ".join(problems)
