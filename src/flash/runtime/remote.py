"""``@remote``: marks functions and classes that run on an endpoint.

Standard library only: user modules import this on the worker too. Calling a decorated
function returns an awaitable. Where it runs is decided by the installed invoker
(:func:`set_invoker`); with none, it runs in this process, so users can test their code.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

__all__ = ["Invoker", "RemoteClass", "RemoteFunction", "get_invoker", "remote", "set_invoker"]


class Invoker(Protocol):
    """Sends calls to endpoints. The seam that client routing plugs into."""

    async def call_function(
        self, fn: RemoteFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any: ...

    async def call_method(
        self,
        handle: RemoteInstance,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any: ...


_invoker: Invoker | None = None


def set_invoker(invoker: Invoker | None) -> Invoker | None:
    """Route every remote call through ``invoker`` (None: in-process); returns the previous one."""
    global _invoker
    previous, _invoker = _invoker, invoker
    return previous


def get_invoker() -> Invoker | None:
    return _invoker


def _resource_name(resource_config: Any) -> str:
    name = getattr(resource_config, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(
            "@remote needs a resource config with a name, "
            'for example @remote(resource_config=LiveServerless(name="gpu-worker"))'
        )
    return name


class RemoteFunction:
    """A function that runs on its endpoint's workers: ``await fn(...)``."""

    __flash_remote__ = True

    def __init__(
        self,
        fn: Callable[..., Any],
        resource_config: Any,
        dependencies: Sequence[str],
        system_dependencies: Sequence[str],
    ) -> None:
        functools.update_wrapper(self, fn)
        self.__wrapped__ = fn
        self.resource_config = resource_config
        self.resource_name = _resource_name(resource_config)
        self.dependencies = list(dependencies)
        self.system_dependencies = list(system_dependencies)
        self.is_async = inspect.iscoroutinefunction(fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        invoker = _invoker
        if invoker is not None:
            return invoker.call_function(self, args, kwargs)
        return _run_local(self.__wrapped__, args, kwargs)

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Call the original function here, exactly as if it were not decorated."""
        return self.__wrapped__(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<remote function {self.__wrapped__.__qualname__} on {self.resource_name!r}>"


class RemoteClass:
    """A class whose instances live on its endpoint: ``m = Model(...); await m.method(...)``."""

    __flash_remote__ = True

    def __init__(
        self,
        cls: type,
        resource_config: Any,
        dependencies: Sequence[str],
        system_dependencies: Sequence[str],
    ) -> None:
        functools.update_wrapper(self, cls, updated=())
        self.__wrapped__ = cls
        self.resource_config = resource_config
        self.resource_name = _resource_name(resource_config)
        self.dependencies = list(dependencies)
        self.system_dependencies = list(system_dependencies)

    def __call__(self, *args: Any, **kwargs: Any) -> RemoteInstance:
        return RemoteInstance(self, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        # Class attributes (constants, static helpers) read through to the original class.
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.__dict__["__wrapped__"], name)

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """An instance of the original class, here."""
        return self.__wrapped__(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<remote class {self.__wrapped__.__qualname__} on {self.resource_name!r}>"


class RemoteInstance:
    """A handle on an instance of a remote class; each method call is awaitable.

    In-process, the instance is created on first use and kept, as a worker keeps one
    instance per constructor arguments.
    """

    def __init__(self, remote_class: RemoteClass, args: tuple[Any, ...], kwargs: dict[str, Any]):
        self.remote_class = remote_class
        self.args = args
        self.kwargs = kwargs
        self._local: Any = None

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        if method.startswith("_"):
            raise AttributeError(method)
        cls = self.remote_class.__wrapped__
        if not callable(getattr(cls, method, None)):
            raise AttributeError(f"{cls.__qualname__} has no method {method!r}")

        def call(*args: Any, **kwargs: Any) -> Awaitable[Any]:
            invoker = _invoker
            if invoker is not None:
                return invoker.call_method(self, method, args, kwargs)
            if self._local is None:
                self._local = cls(*self.args, **self.kwargs)
            return _run_local(getattr(self._local, method), args, kwargs)

        call.__name__ = method
        return call

    def __repr__(self) -> str:
        return f"<remote {self.remote_class.__wrapped__.__qualname__} instance>"


def _run_local(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Awaitable[Any]:
    if inspect.iscoroutinefunction(fn):
        return fn(*args, **kwargs)  # type: ignore[no-any-return,unused-ignore]
    return _call_sync(fn, args, kwargs)


async def _call_sync(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


def remote(
    resource_config: Any = None,
    *,
    dependencies: Sequence[str] | None = None,
    system_dependencies: Sequence[str] | None = None,
    **_reserved: Any,
) -> Callable[[Any], Any]:
    """Mark a function, async function or class to run on the endpoint ``resource_config``.

    ``dependencies`` are pip requirements vendored into the endpoint's archive;
    ``system_dependencies`` are OS packages its image must provide.
    """
    if resource_config is None:
        raise TypeError("@remote needs a resource config: @remote(resource_config=...)")
    if callable(resource_config) and not hasattr(resource_config, "name"):
        raise TypeError("use @remote(resource_config=...), not bare @remote")
    deps = list(dependencies or ())
    sys_deps = list(system_dependencies or ())

    def decorate(target: Any) -> Any:
        if inspect.isclass(target):
            return RemoteClass(target, resource_config, deps, sys_deps)
        if callable(target):
            return RemoteFunction(target, resource_config, deps, sys_deps)
        raise TypeError(f"@remote applies to functions and classes, not {type(target).__name__}")

    return decorate


def run(awaitable: Awaitable[Any]) -> Any:
    """Run an awaitable from synchronous code (a script's top level)."""
    return asyncio.run(_await(awaitable))


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
