"""The SDK's ``@remote``: the runtime decorator, with the config type checked up front."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flash.runtime import remote as _runtime_remote
from flash.sdk.resources import ResourceConfig


def remote(
    resource_config: ResourceConfig | None = None,
    *,
    dependencies: Sequence[str] | None = None,
    system_dependencies: Sequence[str] | None = None,
    timeout: float | None = None,
    **unknown: Any,
) -> Callable[[Any], Any]:
    """Mark a function, async function or class to run on the endpoint ``resource_config``.

    ``await fn(...)`` then runs it there (in this process when no platform is connected);
    ``fn.local(...)`` always calls the original. ``dependencies`` are pip requirements
    vendored into the endpoint's archive; ``system_dependencies`` are OS packages;
    ``timeout`` is each call's default limit in seconds.
    """
    if unknown:  # the build refuses these too, with the same words and where they are
        raise TypeError(_runtime_remote.unknown_keyword_problem(next(iter(unknown))))
    if resource_config is not None and not isinstance(resource_config, ResourceConfig):
        raise TypeError(
            "resource_config must be a LiveServerless, CpuLiveServerless, ServerlessEndpoint or "
            f"CpuServerlessEndpoint, not {type(resource_config).__name__}"
        )
    for label, values in (
        ("dependencies", dependencies),
        ("system_dependencies", system_dependencies),
    ):
        if values is not None and (
            isinstance(values, str) or not all(isinstance(v, str) for v in values)
        ):
            raise TypeError(f"{label} must be a list of strings, got {values!r}")
    return _runtime_remote.remote(  # which checks the timeout
        resource_config,
        dependencies=dependencies,
        system_dependencies=system_dependencies,
        timeout=timeout,
    )
