"""Endpoint settings read from an app directory's ``flash_manifest.json``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flash.runtime.protocol import MANIFEST_FILENAME, MAX_POLICY_MS


class PlatformError(Exception):
    """A problem with what the platform was asked to serve, reported without a traceback."""


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    handler_file: str
    workers_min: int = 0
    workers_max: int = 3
    idle_timeout_s: float = 5.0
    execution_timeout_ms: int | None = None
    scaler_type: str = "QUEUE_DELAY"
    scaler_value: float = 4.0
    concurrency: int = 1
    env: dict[str, str] = field(default_factory=dict)
    functions: tuple[str, ...] = ()
    # Its workers import only the archive and the standard library (no site-packages of the
    # interpreter serving it), as on Flash's worker image: a package the build did not vendor
    # fails here as it would there. Not for an endpoint on an image of its own, nor a build
    # that excluded packages (those come from the image: here, this interpreter's).
    isolated: bool = False
    # The manifest's whole entry for this endpoint (schemas for the API docs).
    resource: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def read_manifest(app_dir: Path) -> dict[str, EndpointSpec]:
    path = app_dir / MANIFEST_FILENAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlatformError(f"{path}: not found; is this an extracted flash build?") from None
    except json.JSONDecodeError as err:
        raise PlatformError(f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from None
    resources = data.get("resources") if isinstance(data, dict) else None
    if not isinstance(resources, dict):
        raise PlatformError(f"{path}: field 'resources' must be an object")
    specs = {}
    for name, res in resources.items():
        where = f"{path}: resources.{name}"
        if not isinstance(res, dict):
            raise PlatformError(f"{where} must be an object")
        handler_file = res.get("handler_file")
        if not isinstance(handler_file, str) or not (app_dir / handler_file).is_file():
            raise PlatformError(
                f"{where}.handler_file: {handler_file!r} is not a file in {app_dir}"
            )
        config = res.get("config") or {}
        if not isinstance(config, dict):
            raise PlatformError(f"{where}.config must be an object")
        specs[name] = EndpointSpec(
            name=name,
            handler_file=handler_file,
            workers_min=_int(config, "workersMin", 0, where),
            workers_max=max(1, _int(config, "workersMax", 3, where)),
            idle_timeout_s=_number(config, "idleTimeout", 5, where),
            # The platform runs no job for longer (see MAX_POLICY_MS): a longer one means that.
            execution_timeout_ms=_optional_int(
                config, "executionTimeoutMs", where, most=MAX_POLICY_MS
            ),
            scaler_type=_scaler(config, where),
            scaler_value=max(_number(config, "scalerValue", 4, where), 0.001),
            concurrency=max(1, _int(config, "concurrency", 1, where)),
            env={str(k): str(v) for k, v in (config.get("env") or {}).items()},
            functions=tuple(
                f.get("qualified_name") or f.get("name", "?")
                for f in res.get("functions") or []
                if isinstance(f, dict)
            ),
            resource=res,
            isolated=_isolated(data, config),
        )
    return specs


def _isolated(manifest: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether the endpoint's workers see only the archive (EndpointSpec.isolated): a
    Flash build (it says what it vendored) that excluded nothing, on Flash's image."""
    dependencies = manifest.get("dependencies")
    if not isinstance(dependencies, dict) or "excluded" not in dependencies:
        return False  # an app laid out by hand may lean on this interpreter's packages
    return not dependencies["excluded"] and not config.get("imageName")


def _number(
    config: dict[str, Any], key: str, default: float, where: str, most: float | None = None
) -> float:
    """The non-negative number at ``key``; one above ``most`` (if given) is ``most``."""
    value = config.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise PlatformError(f"{where}.config.{key}: expected a non-negative number, got {value!r}")
    if most is not None and value > most:
        return most
    # Archives built before the build-time bounds may hold any JSON number: a float cannot
    # hold 10**400, and int() cannot take an Infinity.
    if isinstance(value, int) and value.bit_length() > 1000:
        raise PlatformError(f"{where}.config.{key}: the number is too big")
    if not math.isfinite(value):
        raise PlatformError(f"{where}.config.{key}: expected a finite number, got {value!r}")
    return float(value)


def _int(config: dict[str, Any], key: str, default: int, where: str) -> int:
    return int(_number(config, key, default, where))


def _optional_int(config: dict[str, Any], key: str, where: str, most: int) -> int | None:
    if config.get(key) in (None, 0):
        return None
    return int(_number(config, key, 0, where, most))


def _scaler(config: dict[str, Any], where: str) -> str:
    value = config.get("scalerType") or "QUEUE_DELAY"
    if value not in ("QUEUE_DELAY", "REQUEST_COUNT"):
        raise PlatformError(
            f"{where}.config.scalerType: expected QUEUE_DELAY or REQUEST_COUNT, got {value!r}"
        )
    return str(value)
