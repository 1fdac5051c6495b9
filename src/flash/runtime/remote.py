"""``@remote``: marks functions and classes that run on an endpoint.

Standard library only: user modules import this on the worker too. Calling a decorated
function returns an awaitable. Where it runs is decided by the invoker: one set with
:func:`set_invoker` (``flash.connect``), else one made from ``FLASH_API_BASE`` when the
environment names a platform (until :func:`forget_environment`: ``flash.disconnect``), else
none and the call runs in this process, so users can test their code without anything else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import difflib
import functools
import inspect
import math
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, Protocol

from flash.runtime.client import CallOptions, _check_call
from flash.runtime.errors import RemoteTimeoutError, in_daemon_thread
from flash.runtime.errors import settle as _settle
from flash.runtime.serialization import _lookup_qualname

__all__ = [
    "REMOTE_KEYWORDS",
    "CallOptions",
    "Invoker",
    "MapError",
    "RemoteClass",
    "RemoteFunction",
    "RemoteInstance",
    "RemoteMethod",
    "forget_environment",
    "get_invoker",
    "remote",
    "run",
    "set_invoker",
    "unknown_keyword_problem",
]

# What @remote takes; the build reads these same names, and refuses any other.
REMOTE_KEYWORDS = ("resource_config", "dependencies", "system_dependencies", "timeout")


def unknown_keyword_problem(name: str) -> str:
    """Why ``@remote(name=...)`` is refused: an option a typo made would be silently lost
    (``dependecies=["numpy"]``: numpy never vendored)."""
    close = difflib.get_close_matches(name, REMOTE_KEYWORDS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    accepted = ", ".join(f"{keyword}=" for keyword in REMOTE_KEYWORDS)
    return f"@remote got an unknown keyword {name!r}{hint}; it accepts {accepted}"


class Invoker(Protocol):
    """Sends calls to endpoints."""

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

    def stream(
        self, fn: RemoteFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> AsyncIterator[Any]: ...


_invoker: Invoker | None = None
_from_env: Invoker | None = None
_env_checked = False
_env_lock = threading.Lock()  # the first calls may come from several threads at once


def set_invoker(invoker: Invoker | None) -> Invoker | None:
    """Route every remote call through ``invoker`` (None: in-process); returns the previous one."""
    global _invoker
    previous, _invoker = _invoker, invoker
    return previous


def get_invoker() -> Invoker | None:
    """The invoker in force: the one set, else one from the environment, else None."""
    global _from_env, _env_checked
    if _invoker is not None:
        return _invoker
    with _env_lock:
        if not _env_checked:
            from flash.runtime.client import PlatformInvoker, from_environment

            endpoints = from_environment()
            if endpoints is not None:
                own_resource = os.environ.get("FLASH_RESOURCE_NAME") or None
                _from_env = PlatformInvoker(
                    endpoints,
                    own_resource=own_resource,
                    signing_key=_environment_key(own_resource),
                )
            _env_checked = True
    return _from_env


def forget_environment() -> Invoker | None:
    """Calls run in this process when no invoker is set, whatever ``FLASH_API_BASE`` names
    (``flash.disconnect()``); returns the invoker made from it, if any, to close."""
    global _from_env, _env_checked
    with _env_lock:
        forgotten, _from_env, _env_checked = _from_env, None, True
    return forgotten


def _environment_key(own_resource: str | None) -> bytes | None:
    """The key of the invoker the environment names: ``$FLASH_SIGNING_KEY``, else (outside
    a worker) the key of the project this process runs in, as ``flash.connect`` finds it."""
    from flash.runtime.signing import load_signing_key

    if own_resource is None:
        try:  # the SDK, which a worker's archive does not carry in full
            from flash.sdk.keys import find_signing_key
        except ImportError:
            pass
        else:
            return find_signing_key()
    return load_signing_key()


def check_timeout(timeout: Any) -> float:
    """``timeout`` as seconds, or the error a caller should see for it."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
    if not (0 < timeout < math.inf):  # also refuses NaN
        raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
    return float(timeout)


def _resource_name(resource_config: Any) -> str:
    name = getattr(resource_config, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(
            "@remote needs a resource config with a name, "
            'for example @remote(resource_config=LiveServerless(name="gpu-worker"))'
        )
    return name


class MapError(Exception):
    """Some items of a ``map`` failed; ``errors`` maps each failed index to its exception."""

    def __init__(self, results: list[Any], errors: dict[int, BaseException]) -> None:
        first = min(errors)
        super().__init__(
            f"{len(errors)} of {len(results)} items failed; first, item {first}: {errors[first]!r}"
        )
        self.results = results
        self.errors = errors

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its fields (the default passes the message as ``results``), so a
        # MapError raised in an endpoint reaches its caller with them.
        return (type(self), (self.results, self.errors), self.__dict__)


class _Remote:
    """What remote functions and classes share: config, dependencies, call options."""

    __flash_remote__ = True
    __wrapped__: Any

    def __init__(
        self,
        target: Any,
        resource_config: Any,
        dependencies: Sequence[str],
        system_dependencies: Sequence[str],
        options: CallOptions,
    ) -> None:
        self.__wrapped__ = target
        self.resource_config = resource_config
        self.resource_name = _resource_name(resource_config)
        self.dependencies = list(dependencies)
        self.system_dependencies = list(system_dependencies)
        self.call_options = options

    def options(
        self,
        *,
        timeout: float | None = None,
        retries: int | None = None,
        serialization: str | None = None,
    ) -> Any:
        """The same function or class with other call options: ``fn.options(timeout=30)(x)``.

        ``timeout``: seconds for each call. ``retries``: how often a transport failure
        (refused, reset, no answer, 429, 5xx) is retried; by default for as long as it
        lasts, up to about 10 s. ``serialization``: "json" (typed JSON, needs type hints),
        "pickle" (signed cloudpickle) or "auto" (JSON when the types allow it).
        """
        changes: dict[str, Any] = {}
        if serialization is not None:
            if serialization not in ("auto", "json", "pickle"):
                raise ValueError(
                    f"serialization must be 'auto', 'json' or 'pickle', not {serialization!r}"
                )
            changes["serialization"] = serialization
        if timeout is not None:
            changes["timeout"] = check_timeout(timeout)
        if retries is not None:
            if isinstance(retries, bool) or not isinstance(retries, int):
                raise TypeError(f"retries must be a whole number, got {retries!r}")
            if retries < 0:
                raise ValueError(f"retries must be 0 or more, got {retries!r}")
            changes["retries"] = retries
        return self._with_options(dataclasses.replace(self.call_options, **changes))

    def _with_options(self, options: CallOptions) -> Any:
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.call_options = options
        return clone

    def __reduce_ex__(self, protocol: Any) -> Any:
        # By reference, as plain functions and classes pickle (the default would pickle
        # __wrapped__ by reference to its module's global, which is this object, and fail),
        # unless its module goes by value (``__main__``, a module registered with
        # cloudpickle for that) or its names lead to another remote object (a copy of the
        # function on another endpoint): then the object's fields go, the wrapped code too.
        module = getattr(self, "__module__", None)
        qualname = getattr(self, "__qualname__", None)
        if (
            isinstance(module, str)
            and isinstance(qualname, str)
            and self._same_as(_global(module, qualname))
            and not _by_value(self.__wrapped__)
        ):
            return (_restore, (module, qualname, self.call_options))
        return super().__reduce_ex__(protocol)

    def _same_as(self, other: _Remote | None) -> bool:
        """Whether ``other`` is this object or an ``options()`` clone of it: the same code on
        the same endpoint with the same dependencies (call options travel on their own)."""
        if other is self:
            return True
        if type(other) is not type(self) or other.__wrapped__ is not self.__wrapped__:
            return False
        try:
            return bool(
                (
                    other.resource_config is self.resource_config
                    or other.resource_config == self.resource_config
                )
                and other.dependencies == self.dependencies
                and other.system_dependencies == self.system_dependencies
            )
        except Exception:  # a config that cannot be compared: not known to be the same
            return False

    def _local_names(self) -> dict[str, Any]:
        """What a RemoteTimeoutError of an in-process call names, as the client names it."""
        wrapped = self.__wrapped__
        module = getattr(wrapped, "__module__", "__main__")
        name = wrapped.__qualname__ if module == "__main__" else f"{module}.{wrapped.__qualname__}"
        return {"endpoint": self.resource_name, "function": name}


def _global(module: str, qualname: str) -> _Remote | None:
    """The remote object ``module.qualname`` names, in a module already imported."""
    found = _lookup_qualname(sys.modules.get(module), qualname)
    return found if isinstance(found, _Remote) else None


def _restore(module: str, qualname: str, options: CallOptions) -> Any:
    __import__(module)
    found = _global(module, qualname)
    if found is None:
        raise ImportError(f"{module}.{qualname} is not a remote function or class any more")
    return found if found.call_options == options else found._with_options(options)


def _by_value(target: Any) -> bool:
    """Whether cloudpickle takes ``target``'s module by value (``__main__``, or one
    registered with ``register_pickle_by_value``, itself or a package it is in): a worker
    cannot import it by name. Plain pickle cannot pickle such an object either way."""
    module = getattr(target, "__module__", None)
    if module == "__main__":
        return True
    if not isinstance(module, str):
        return False
    inner = getattr(sys.modules.get("cloudpickle"), "cloudpickle", None)
    registered = getattr(inner, "_is_registered_pickle_by_value", None)
    if registered is not None and module in sys.modules:
        with contextlib.suppress(Exception):  # a private helper: its parent walk below
            return bool(registered(sys.modules[module]))
    by_value = getattr(inner, "_PICKLE_BY_VALUE_MODULES", ())
    parts = module.split(".")
    return any(".".join(parts[:n]) in by_value for n in range(len(parts), 0, -1))


class RemoteFunction(_Remote):
    """A function that runs on its endpoint's workers: ``await fn(...)``."""

    def __init__(
        self,
        fn: Callable[..., Any],
        resource_config: Any,
        dependencies: Sequence[str],
        system_dependencies: Sequence[str],
        options: CallOptions | None = None,
    ) -> None:
        functools.update_wrapper(self, fn)
        super().__init__(
            fn, resource_config, dependencies, system_dependencies, options or CallOptions()
        )
        self.is_async = inspect.iscoroutinefunction(fn)
        self.is_generator = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)

    def __call__(self, /, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        invoker = get_invoker()
        if invoker is not None:
            return invoker.call_function(self, args, kwargs)
        timeout = self.call_options.timeout
        names = self._local_names() if timeout is not None else None
        return _run_local(
            self.__wrapped__, args, kwargs, collect=self.is_generator, timeout=timeout, names=names
        )

    def local(self, /, *args: Any, **kwargs: Any) -> Any:
        """Call the original function here, exactly as if it were not decorated."""
        return self.__wrapped__(*args, **kwargs)

    def call(self, /, *args: Any, **kwargs: Any) -> Any:
        """Blocking call, for code that is not async: ``result = fn.call(x)``."""
        return run(self(*args, **kwargs))

    async def map(
        self,
        items: Iterable[Any],
        *,
        concurrency: int = 16,
        return_exceptions: bool = False,
        chunk_size: int | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        """``[await fn(item, **kwargs) for item in items]``, ``concurrency`` jobs at a time,
        in order; ``kwargs``, the same keyword arguments for every item.

        On a platform, items travel ``chunk_size`` per job (by default enough chunks to keep
        every slot busy a few times over; a chunk whose items' size would pass the body limit
        goes as several jobs, one after another),
        which saves most of the per-job cost. Each item keeps the call's ``timeout`` to itself,
        in a chunk's job too, counted from its start (not the time it waits for a worker); the
        config's ``executionTimeoutMs`` bounds a chunk's job as its
        items' limits added up.
        A chunk's job that crashes its worker runs
        again as one job per item, so only an item that crashes a worker on its own fails
        (the others run more than once). A failed
        item (or a chunk's failed job, for each of its items) does not stop the others; then
        MapError lists every failure, unless ``return_exceptions`` puts each exception in its
        item's place instead.
        """
        return await self._map_calls(
            _calls(((item,) for item in items), kwargs), concurrency, return_exceptions, chunk_size
        )

    async def starmap(
        self,
        items: Iterable[Iterable[Any]],
        *,
        concurrency: int = 16,
        return_exceptions: bool = False,
        chunk_size: int | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        """``[await fn(*args, **kwargs) for args in items]``: :meth:`map` for several
        arguments."""
        return await self._map_calls(
            _calls(map(tuple, items), kwargs), concurrency, return_exceptions, chunk_size
        )

    async def _map_calls(
        self,
        work: list[tuple[tuple[Any, ...], dict[str, Any]]],
        concurrency: int,
        return_exceptions: bool,
        chunk_size: int | None,
    ) -> list[Any]:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size!r}")
        invoker = get_invoker()
        batch = getattr(invoker, "call_map", None)
        batches = getattr(invoker, "batches", None)
        if batch is None or self.is_generator or (batches is not None and not batches(self)):
            batch = None
            size = 1  # one call per job, as many in flight as concurrency allows
        else:
            # Map jobs, one-item ones too: the worker holds each item to its timeout.
            size = chunk_size or max(1, min(64, -(-len(work) // (concurrency * 4))))
        mapped = self._with_options(_item_options(self.call_options))
        chunks = [work[i : i + size] for i in range(0, len(work), size)]
        outcomes: list[list[tuple[bool, Any]]] = [[] for _ in chunks]
        gate = asyncio.Semaphore(concurrency)

        async def run_chunk(
            index: int, chunk: list[tuple[tuple[Any, ...], dict[str, Any]]]
        ) -> None:
            async with gate:
                if batch is not None:
                    try:
                        outcomes[index] = await batch(mapped, chunk)
                    except Exception as exc:
                        # The chunk's job failed as a whole (timed out, refused, ...): that
                        # is every one of its items' failure, not the end of the map.
                        outcomes[index] = [(False, exc)] * len(chunk)
                    return
                args, kwargs = chunk[0]
                try:
                    outcomes[index] = [(True, await mapped(*args, **kwargs))]
                except Exception as exc:
                    outcomes[index] = [(False, exc)]

        await asyncio.gather(*(run_chunk(i, chunk) for i, chunk in enumerate(chunks)))
        flat = [outcome for chunk in outcomes for outcome in chunk]
        results = [value for _, value in flat]
        errors: dict[int, BaseException] = {
            i: value for i, (ok, value) in enumerate(flat) if not ok
        }
        if errors and not return_exceptions:
            raise MapError(results, errors)
        return results

    def stream(self, /, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """Items of a generator function as they are produced: ``async for x in fn.stream()``."""
        if not self.is_generator:
            raise TypeError(f"{self.__wrapped__.__qualname__} is not a generator function")
        invoker = get_invoker()
        if invoker is not None:
            return invoker.stream(self, args, kwargs)
        timeout = self.call_options.timeout
        names = self._local_names() if timeout is not None else None
        return _stream_local(self.__wrapped__, args, kwargs, timeout=timeout, names=names)

    def __repr__(self) -> str:
        return f"<remote function {self.__wrapped__.__qualname__} on {self.resource_name!r}>"


class RemoteClass(_Remote):
    """A class whose instances live on its endpoint: ``m = Model(...); await m.method(...)``."""

    def __init__(
        self,
        cls: type,
        resource_config: Any,
        dependencies: Sequence[str],
        system_dependencies: Sequence[str],
        options: CallOptions | None = None,
    ) -> None:
        functools.update_wrapper(self, cls, updated=())
        super().__init__(
            cls, resource_config, dependencies, system_dependencies, options or CallOptions()
        )

    def __call__(self, /, *args: Any, **kwargs: Any) -> RemoteInstance:
        # Wrong constructor arguments fail where the handle is made, not at its first call.
        _check_call(self.__wrapped__, None, args, kwargs)
        return RemoteInstance(self, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        # Class attributes (constants, static helpers) read through to the original class.
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.__dict__["__wrapped__"], name)

    def local(self, /, *args: Any, **kwargs: Any) -> Any:
        """An instance of the original class, here."""
        return self.__wrapped__(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<remote class {self.__wrapped__.__qualname__} on {self.resource_name!r}>"


class RemoteInstance:
    """A handle on an instance of a remote class; each method call is awaitable.

    The endpoint keeps one instance per constructor arguments; in-process, this handle
    creates its instance on first use and keeps it.
    """

    def __init__(self, remote_class: RemoteClass, args: tuple[Any, ...], kwargs: dict[str, Any]):
        self.remote_class = remote_class
        self.args = args
        self.kwargs = kwargs
        self._local: Any = None
        self._root: RemoteInstance | None = None  # the handle an options() clone came from

    def local_instance(self) -> Any:
        root = self.__dict__.get("_root")  # absent from a handle an older Flash pickled
        if root is not None:
            return root.local_instance()
        if self._local is None:
            self._local = self.remote_class.__wrapped__(*self.args, **self.kwargs)
        return self._local

    def __getattr__(self, method: str) -> RemoteMethod:
        remote_class: RemoteClass | None = self.__dict__.get("remote_class")  # unpickling: none
        if remote_class is None:
            raise AttributeError(method)
        cls = remote_class.__wrapped__
        if method.startswith("_"):
            if not method.startswith("__") and callable(getattr(cls, method, None)):
                raise AttributeError(
                    f"{cls.__qualname__}.{method} is private: an endpoint serves a class's "
                    "public methods (and __call__); call it from one of them"
                )
            raise AttributeError(method)
        if not callable(getattr(cls, method, None)):
            raise AttributeError(f"{cls.__qualname__} has no method {method!r}")
        return RemoteMethod(self, method)

    def __call__(self, /, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """``await handle(x)``: the class's own ``__call__`` (a callable model), run as
        any method is."""
        cls = self.remote_class.__wrapped__
        if not any("__call__" in vars(base) for base in cls.__mro__[:-1]):  # not object's
            raise TypeError(f"{cls.__qualname__} instances are not callable (no __call__)")
        return RemoteMethod(self, "__call__")(*args, **kwargs)

    def _with_class(self, remote_class: RemoteClass) -> RemoteInstance:
        """This handle, its calls made with ``remote_class``'s options; in-process, on the
        same instance (the endpoint keeps one per constructor arguments, whatever the call's
        timeout)."""
        clone = RemoteInstance(remote_class, self.args, self.kwargs)
        clone._root = self.__dict__.get("_root") or self
        return clone

    def __getstate__(self) -> dict[str, Any]:
        # Not the in-process instance: a copy makes its own on first use, as a handle does.
        return {**self.__dict__, "_local": None, "_root": None}

    def __repr__(self) -> str:
        return f"<remote {self.remote_class.__wrapped__.__qualname__} instance>"


class RemoteMethod:
    """A method of a remote instance: ``await handle.method(x)``, and as a remote function
    has them, ``.call``, ``.stream`` (generator methods), ``.map``/``.starmap`` and
    ``.options``."""

    def __init__(self, handle: RemoteInstance, name: str) -> None:
        self.handle = handle
        self.__name__ = name
        cls = handle.remote_class.__wrapped__
        self.__qualname__ = f"{cls.__qualname__}.{name}"
        found = getattr(cls, name, None)
        self.is_generator = inspect.isgeneratorfunction(found) or inspect.isasyncgenfunction(found)

    def __call__(self, /, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        handle, method = self.handle, self.__name__
        invoker = get_invoker()
        if invoker is not None:
            return invoker.call_method(handle, method, args, kwargs)
        # A generator method's items come as a list, as they do from the endpoint.
        remote_class = handle.remote_class
        timeout = remote_class.call_options.timeout
        names = remote_class._local_names() if timeout is not None else None
        bound = getattr(handle.local_instance(), method)
        return _run_local(bound, args, kwargs, collect=True, timeout=timeout, names=names)

    def call(self, /, *args: Any, **kwargs: Any) -> Any:
        """Blocking call, for code that is not async: ``result = handle.method.call(x)``."""
        return run(self(*args, **kwargs))

    def stream(self, /, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """Items of a generator method: ``async for x in handle.method.stream()``, each as it
        is produced, from the instance the handle's other calls reach.
        """
        if not self.is_generator:
            raise TypeError(f"{self.__qualname__} is not a generator method")
        handle, method = self.handle, self.__name__
        invoker = get_invoker()
        if invoker is not None:
            stream_method = getattr(invoker, "stream_method", None)
            if stream_method is not None:
                items: AsyncIterator[Any] = stream_method(handle, method, args, kwargs)
                return items
            # An invoker that cannot stream a method: its items come once it has finished.
            return _items_of(invoker.call_method(handle, method, args, kwargs))
        remote_class = handle.remote_class
        timeout = remote_class.call_options.timeout
        names = remote_class._local_names() if timeout is not None else None
        bound = getattr(handle.local_instance(), method)
        return _stream_local(bound, args, kwargs, timeout=timeout, names=names)

    def options(
        self,
        *,
        timeout: float | None = None,
        retries: int | None = None,
        serialization: str | None = None,
    ) -> RemoteMethod:
        """This method with other call options, as ``Model.options(...)`` gives them to every
        method: ``await handle.method.options(timeout=30)(x)``. A different ``serialization``
        reaches another instance on the endpoint (JSON calls and pickled ones keep theirs
        apart)."""
        remote_class = self.handle.remote_class.options(
            timeout=timeout, retries=retries, serialization=serialization
        )
        return RemoteMethod(self.handle._with_class(remote_class), self.__name__)

    async def map(
        self,
        items: Iterable[Any],
        *,
        concurrency: int = 16,
        return_exceptions: bool = False,
        kwargs: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        """``[await handle.method(item, **kwargs) for item in items]``, ``concurrency`` calls
        at a time, in order; each call is a job of its own. Failures and timeouts as for a
        function's map."""
        work = _calls(((item,) for item in items), kwargs)
        return await _map_each(self._mapped(), work, concurrency, return_exceptions)

    async def starmap(
        self,
        items: Iterable[Iterable[Any]],
        *,
        concurrency: int = 16,
        return_exceptions: bool = False,
        kwargs: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        """``[await handle.method(*args, **kwargs) for args in items]``: :meth:`map` for
        several arguments."""
        work = _calls(map(tuple, items), kwargs)
        return await _map_each(self._mapped(), work, concurrency, return_exceptions)

    def _mapped(self) -> RemoteMethod:
        """This method as a map calls it: each call's timeout from its start."""
        remote_class = self.handle.remote_class
        options = _item_options(remote_class.call_options)
        return RemoteMethod(
            self.handle._with_class(remote_class._with_options(options)), self.__name__
        )

    def __repr__(self) -> str:
        return f"<remote method {self.__qualname__} of {self.handle!r}>"


def _calls(
    each_args: Iterable[tuple[Any, ...]], kwargs: Mapping[str, Any] | None
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """A map's calls: each item's positional arguments with the keyword arguments they all
    share (a dict of its own for each, as separate calls would have)."""
    if kwargs is None:
        kwargs = {}
    elif not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise TypeError(
            f"kwargs must be a mapping of argument names to values, got {type(kwargs).__name__}"
        )
    return [(args, dict(kwargs)) for args in each_args]


def _item_options(options: CallOptions) -> CallOptions:
    """The options of a map's calls: each item's timeout counts from when it starts, as
    in-process, not from the map's call (an item may wait for a worker behind the others)."""
    return dataclasses.replace(options, timeout_from_start=True)


async def _items_of(result: Awaitable[Any]) -> AsyncIterator[Any]:
    for item in await result:
        yield item


async def _map_each(
    call: Callable[..., Awaitable[Any]],
    work: list[tuple[tuple[Any, ...], dict[str, Any]]],
    concurrency: int,
    return_exceptions: bool,
) -> list[Any]:
    """``call(*args, **kwargs)`` for each of ``work``, ``concurrency`` at a time, in order;
    MapError for the failures, unless ``return_exceptions``."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    gate = asyncio.Semaphore(concurrency)
    outcomes: list[tuple[bool, Any]] = [(True, None)] * len(work)

    async def one(index: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        async with gate:
            try:
                outcomes[index] = (True, await call(*args, **kwargs))
            except Exception as exc:
                outcomes[index] = (False, exc)

    await asyncio.gather(*(one(i, args, kwargs) for i, (args, kwargs) in enumerate(work)))
    results = [value for _, value in outcomes]
    errors = {i: value for i, (ok, value) in enumerate(outcomes) if not ok}
    if errors and not return_exceptions:
        raise MapError(results, errors)
    return results


def _run_local(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    collect: bool = False,
    timeout: float | None = None,
    names: dict[str, Any] | None = None,
) -> Awaitable[Any]:
    if timeout is not None:
        return _run_local_within(fn, args, kwargs, collect, timeout, names or {})
    if inspect.iscoroutinefunction(fn):
        return fn(*args, **kwargs)  # type: ignore[no-any-return,unused-ignore]
    return _call_sync(fn, args, kwargs, collect)


async def _call_sync(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], collect: bool
) -> Any:
    result = fn(*args, **kwargs)
    if collect and inspect.isasyncgen(result):
        return [item async for item in result]
    if collect and inspect.isgenerator(result):
        return list(result)
    if inspect.isawaitable(result):
        return await result
    return result


async def _run_local_within(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    collect: bool,
    timeout: float,
    names: dict[str, Any],
) -> Any:
    """An in-process call that keeps to ``timeout`` as a job would: RemoteTimeoutError at
    the deadline. A coroutine runs in the caller's task (its context, as without a
    timeout) and is cancelled; sync code runs in a thread of its own, as nothing can stop
    it, and runs on after the caller has its error."""
    deadline = time.monotonic() + timeout
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return await _within(_call_sync(fn, args, kwargs, collect), deadline, timeout, names)

    def call() -> Any:
        result = fn(*args, **kwargs)
        return list(result) if collect and inspect.isgenerator(result) else result

    result = await _within(in_daemon_thread(call, "flash-local-call"), deadline, timeout, names)
    if collect and inspect.isasyncgen(result):
        result = _collect(result)
    if inspect.isawaitable(result):
        return await _within(result, deadline, timeout, names)
    return result


async def _collect(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


async def _within(
    awaitable: Awaitable[Any], deadline: float, timeout: float, names: dict[str, Any]
) -> Any:
    """``await awaitable`` in this task, cancelled at ``deadline`` (time.monotonic). Not
    wait_for: a TimeoutError the function raises itself must reach the caller as its own."""
    with _Deadline(deadline, timeout, names):
        return await awaitable


class _Deadline:
    """Cancels the current task at ``deadline`` (time.monotonic) and turns that into
    RemoteTimeoutError, as ``asyncio.timeout`` (3.11+) does into TimeoutError. In the
    caller's own task, so context variables, cancel scopes and ``asyncio.timeout`` blocks
    of the code inside are those of the caller, as without a timeout.

    Code that swallows the cancellation and returns is still too late: RemoteTimeoutError.
    Code that swallows it and goes on waiting keeps its caller until it ends, as it would
    any cancelled task's. Before Python 3.11 (no ``Task.uncancel``) a cancellation of the
    caller that comes with the deadline counts as the timeout."""

    def __init__(self, deadline: float, timeout: float, names: dict[str, Any]) -> None:
        self._deadline = deadline
        self._timeout = timeout
        self._names = names
        self._fired = False

    def __enter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("an in-process call with a timeout must run in an asyncio task")
        self._task = task
        # Cancellations requested before this one (3.11+): those are not the deadline's.
        self._cancelling = task.cancelling() if hasattr(task, "cancelling") else 0
        loop = asyncio.get_running_loop()
        when = loop.time() + (self._deadline - time.monotonic())
        self._handle = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        self._handle.cancel()
        if not self._fired:
            return
        uncancel = getattr(self._task, "uncancel", None)
        others = uncancel() > self._cancelling if uncancel is not None else False
        if exc_type is None or not others or not issubclass(exc_type, asyncio.CancelledError):
            raise _timed_out(self._timeout, self._names) from exc


def _check(deadline: float, timeout: float, names: dict[str, Any]) -> None:
    """No step of a stream starts past its deadline (a step that never waits would not
    be stopped by it)."""
    if time.monotonic() >= deadline:
        raise _timed_out(timeout, names)


def _timed_out(timeout: float, names: dict[str, Any]) -> RemoteTimeoutError:
    return RemoteTimeoutError(f"the call did not finish in time ({timeout:g} s)", **names)


async def _stream_local(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout: float | None = None,
    names: dict[str, Any] | None = None,
) -> AsyncIterator[Any]:
    if timeout is not None:
        # As a remote stream: the whole stream must end by the deadline. Closed with this
        # one, at once: left to the garbage collector, the generator's clean-up would run
        # whenever that came, after aclose() had returned.
        async with contextlib.aclosing(
            _stream_within(fn, args, kwargs, timeout, names or {})
        ) as items:
            async for item in items:
                yield item
        return
    result = fn(*args, **kwargs)
    if inspect.isasyncgen(result):
        async for item in result:
            yield item
    else:
        for item in result:
            yield item


_END = object()  # what a step gives once a sync generator is exhausted


class _GeneratorThread:
    """Drives a sync generator from one daemon thread of its own, a step per request (none
    ahead of the consumer), so what its first step binds to its thread (thread-locals, a
    sqlite3 connection) is there in every later step and in its clean-up. It runs in the
    caller's context, one copy for the whole stream, as the generator's frame is one."""

    def __init__(self, generator: Generator[Any, Any, Any]) -> None:
        self._generator = generator
        self._requests: queue.SimpleQueue[tuple[asyncio.Future[Any], bool]] = queue.SimpleQueue()
        self._context = contextvars.copy_context()
        self._thread: threading.Thread | None = None

    def next(self) -> asyncio.Future[Any]:
        """The next item, or _END."""
        return self._request(close=False)

    def close(self) -> asyncio.Future[Any]:
        """Close the generator once no step is in flight (one a timeout left runs first)."""
        return self._request(close=True)

    def _request(self, close: bool) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._thread is None:
            if close:  # never started: closing it here runs nothing of it
                self._generator.close()
                future.set_result(None)
                return future
            self._thread = threading.Thread(
                target=self._serve, args=(loop,), name="flash-local-stream", daemon=True
            )
            self._thread.start()
        self._requests.put((future, close))
        return future

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            future, close = self._requests.get()
            try:
                work = self._generator.close if close else self._step
                outcome = (True, self._context.run(work))
            except BaseException as exc:  # raised in the caller's task
                outcome = (False, exc)
            with contextlib.suppress(RuntimeError):  # the caller's loop has closed since
                loop.call_soon_threadsafe(_settle, future, *outcome)
            if close or not outcome[0] or outcome[1] is _END:
                return  # the generator is done: nothing more will be asked of it

    def _step(self) -> Any:
        return next(self._generator, _END)


async def _stream_within(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout: float,
    names: dict[str, Any],
) -> AsyncGenerator[Any, None]:
    deadline = time.monotonic() + timeout
    result = fn(*args, **kwargs)  # a generator: nothing of it runs yet
    if inspect.isasyncgen(result):
        # Every step in the consumer's task, each under the stream's one deadline: only
        # while a step runs, so the consumer's own code between items is never cancelled.
        try:
            while True:
                _check(deadline, timeout, names)
                try:
                    item = await _within(result.__anext__(), deadline, timeout, names)
                except StopAsyncIteration:
                    return
                yield item
        finally:
            await result.aclose()
    driver = _GeneratorThread(result)
    finished = False
    try:
        while True:
            # A step that never returns is left running (see README).
            _check(deadline, timeout, names)
            item = await _within(driver.next(), deadline, timeout, names)
            if item is _END:
                finished = True
                return
            yield item
    except GeneratorExit:
        # The consumer stopped early: its clean-up runs (in its thread) before aclose
        # returns, as without a timeout, if it ends by the deadline.
        closed = driver.close()
        finished = True
        await asyncio.wait({closed}, timeout=max(0.0, deadline - time.monotonic()))
        if closed.done():
            closed.result()
        raise
    finally:
        if not finished:  # timed out or failed: closed once its step in flight ends
            driver.close()


def remote(
    resource_config: Any = None,
    *,
    dependencies: Sequence[str] | None = None,
    system_dependencies: Sequence[str] | None = None,
    timeout: float | None = None,
    **unknown: Any,
) -> Callable[[Any], Any]:
    """Mark a function, async function or class to run on the endpoint ``resource_config``.

    ``dependencies`` are pip requirements vendored into the endpoint's archive;
    ``system_dependencies`` are OS packages its image must provide; ``timeout`` (seconds)
    is the default limit of each call.
    """
    if unknown:
        raise TypeError(unknown_keyword_problem(next(iter(unknown))))
    if resource_config is None:
        raise TypeError("@remote needs a resource config: @remote(resource_config=...)")
    if callable(resource_config) and not hasattr(resource_config, "name"):
        raise TypeError("use @remote(resource_config=...), not bare @remote")
    deps = list(dependencies or ())
    sys_deps = list(system_dependencies or ())
    options = CallOptions(timeout=None if timeout is None else check_timeout(timeout))

    def decorate(target: Any) -> Any:
        if inspect.isclass(target):
            return RemoteClass(target, resource_config, deps, sys_deps, options)
        if callable(target):
            return RemoteFunction(target, resource_config, deps, sys_deps, options)
        raise TypeError(f"@remote applies to functions and classes, not {type(target).__name__}")

    return decorate


def run(awaitable: Awaitable[Any]) -> Any:
    """Wait for ``awaitable`` from synchronous code, in any thread.

    Inside a running event loop (a notebook, an async app) the call runs on its own loop
    in a helper thread, so it never deadlocks the caller's loop; Ctrl-C cancels it there
    too.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # run outside this handler: an error raised would get it as its __context__
    else:
        return _run_in_helper_thread(awaitable)
    return asyncio.run(_await(awaitable))


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _run_in_helper_thread(awaitable: Awaitable[Any]) -> Any:
    started: concurrent.futures.Future[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]]
    started = concurrent.futures.Future()
    outcome: concurrent.futures.Future[Any] = concurrent.futures.Future()
    # The caller's context (a worker's call deadline and depth) goes with the call.
    context = contextvars.copy_context()

    async def main() -> Any:
        task = asyncio.current_task()
        assert task is not None
        started.set_result((asyncio.get_running_loop(), task))
        return await awaitable

    def helper() -> None:
        try:
            outcome.set_result(context.run(asyncio.run, main()))
        except BaseException as exc:  # the caller's thread raises it
            outcome.set_exception(exc)

    threading.Thread(target=helper, name="flash-run", daemon=True).start()
    with _ctrl_c_interrupts():
        try:
            return outcome.result()
        except KeyboardInterrupt:
            # Cancel the call (and so its job) and wait for that, not for the call.
            concurrent.futures.wait(
                [started, outcome], return_when=concurrent.futures.FIRST_COMPLETED
            )
            if not outcome.done():
                loop, task = started.result()
                with contextlib.suppress(RuntimeError):  # the loop has just finished
                    loop.call_soon_threadsafe(task.cancel)
                concurrent.futures.wait([outcome])
            raise


@contextlib.contextmanager
def _ctrl_c_interrupts() -> Iterator[None]:
    """While the main thread waits for a helper thread, Ctrl-C raises KeyboardInterrupt
    there. asyncio.run's own handler would only cancel its main task, and that task is the
    one waiting: nothing would happen until the call ends."""
    if not _asyncio_handles_ctrl_c():
        yield  # the default handler raises KeyboardInterrupt anyway; others are left alone
        return
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)


def _asyncio_handles_ctrl_c() -> bool:
    """Whether Ctrl-C goes to asyncio.run's handler (Python 3.11+), in this main thread."""
    if threading.current_thread() is not threading.main_thread():
        return False
    on_sigint = getattr(getattr(asyncio, "Runner", None), "_on_sigint", None)
    handler = signal.getsignal(signal.SIGINT)
    bound = getattr(getattr(handler, "func", None), "__func__", None)  # a partial of a method
    return on_sigint is not None and bound is on_sigint
