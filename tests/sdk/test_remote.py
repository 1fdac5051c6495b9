import asyncio
import inspect
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from flash import LiveServerless, RemoteFunction, remote, run
from flash.runtime.remote import RemoteInstance, set_invoker

CFG = LiveServerless(name="gpu")


@remote(CFG, dependencies=["numpy"])
async def double(x: int) -> int:
    return 2 * x


@remote(resource_config=CFG)
def add(a: int, b: int = 1) -> int:
    return a + b


@remote(CFG)
class Counter:
    created = 0

    def __init__(self, step: int) -> None:
        Counter.created += 1
        self.step = step
        self.total = 0

    def add(self) -> int:
        self.total += self.step
        return self.total

    async def aadd(self) -> int:
        self.total += self.step
        return self.total

    def steps(self, n: int) -> Iterator[int]:
        for i in range(1, n + 1):
            yield i * self.step

    async def asteps(self, n: int) -> AsyncIterator[int]:
        for i in range(1, n + 1):
            yield i * self.step

    def _reset(self) -> None:
        self.total = 0


def test_calls_are_awaitable_and_run_in_process_without_a_platform() -> None:
    pending = add(1)
    assert inspect.isawaitable(pending)  # the call itself is awaitable, sync function or not
    pending.close()  # type: ignore[attr-defined]

    async def main() -> tuple[int, int, int]:
        return await double(4), await add(1), await add(1, b=5)

    assert asyncio.run(main()) == (8, 2, 6)
    assert run(add(2)) == 3


def test_map_and_starmap_run_in_process_without_a_platform() -> None:
    assert run(double.map([1, 2, 3])) == [2, 4, 6]
    assert run(add.starmap([(1,), (1, 5), [2, 2]], concurrency=2)) == [2, 6, 4]


@remote(CFG)
def countdown(n: int) -> Iterator[int]:
    yield from range(n, 0, -1)


async def _collect(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


def test_a_same_endpoint_generator_call_collects_its_items() -> None:
    from flash.runtime.client import Endpoints, PlatformInvoker

    # Inside the worker of "gpu": no job is made, and the items come back as a list, as
    # they would from another endpoint.
    invoker = PlatformInvoker(Endpoints("http://127.0.0.1:9"), own_resource="gpu")
    previous = set_invoker(invoker)
    try:
        assert run(countdown(3)) == [3, 2, 1]
        assert run(countdown.map([1, 2])) == [[1], [2, 1]]
        # Streamed too: its items come from this process (the platform is unreachable).
        assert run(_collect(countdown.stream(3))) == [3, 2, 1]
    finally:
        set_invoker(previous)


def test_a_generator_method_gives_a_list_in_process_as_it_does_remotely() -> None:
    from flash.runtime.client import Endpoints, PlatformInvoker

    assert run(Counter(2).steps(3)) == [2, 4, 6]
    assert run(Counter(2).asteps(2)) == [2, 4]
    # Inside the worker of "gpu" (no job: the platform is unreachable), the same.
    previous = set_invoker(PlatformInvoker(Endpoints("http://127.0.0.1:9"), own_resource="gpu"))
    try:
        assert run(Counter(3).steps(2)) == [3, 6]
        assert run(Counter(3).asteps(2)) == [3, 6]
    finally:
        set_invoker(previous)


def test_local_calls_the_original() -> None:
    assert add.local(2) == 3
    assert asyncio.run(double.local(3)) == 6
    assert isinstance(Counter.local(2), Counter.__wrapped__)


def test_decorated_function_keeps_metadata() -> None:
    assert isinstance(double, RemoteFunction)
    assert double.__name__ == "double" and double.is_async
    assert double.dependencies == ["numpy"]
    assert double.resource_name == "gpu"


def test_class_handle_keeps_one_instance_across_calls() -> None:
    before = Counter.created
    handle = Counter(3)
    assert isinstance(handle, RemoteInstance)

    async def main() -> list[int]:
        return [await handle.add(), await handle.add(), await handle.aadd()]

    assert asyncio.run(main()) == [3, 6, 9]
    assert Counter.created == before + 1


def test_unknown_method_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="nope"):
        Counter(1).nope()


def test_private_method_says_endpoints_serve_public_ones() -> None:
    with pytest.raises(AttributeError, match=r"Counter\._reset is private: .*public methods"):
        Counter(1)._reset()
    # Not the class's: a plain AttributeError, as copy and pickle expect of a probe.
    with pytest.raises(AttributeError, match=r"^_missing$"):
        Counter(1)._missing  # noqa: B018
    assert not hasattr(Counter(1), "__deepcopy_hook__")


def test_bad_decorator_use_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="resource config"):
        remote()
    with pytest.raises(TypeError, match="LiveServerless"):
        remote("gpu")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dependencies"):
        remote(CFG, dependencies="numpy")  # type: ignore[arg-type]


def test_invoker_seam_receives_calls() -> None:
    seen: list[tuple[str, Any]] = []

    class Recorder:
        async def call_function(self, fn: RemoteFunction, args: Any, kwargs: Any) -> str:
            seen.append((fn.__name__, (args, kwargs)))
            return "remote"

        async def call_method(self, handle: RemoteInstance, method: str, args: Any, kwargs: Any):
            seen.append((method, (handle.args, args)))
            return "remote-method"

    previous = set_invoker(Recorder())
    try:
        assert run(add(1, b=2)) == "remote"
        assert run(Counter(5).add()) == "remote-method"
    finally:
        set_invoker(previous)
    assert seen == [("add", ((1,), {"b": 2})), ("add", ((5,), ()))]


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"retries": -1}, ValueError, "retries must be 0 or more, got -1"),
        ({"retries": 1.5}, TypeError, "retries must be a whole number, got 1.5"),
        ({"retries": True}, TypeError, "retries must be a whole number"),
        ({"timeout": 0}, ValueError, "timeout must be positive seconds, got 0"),
        ({"timeout": -1}, ValueError, "timeout must be positive seconds, got -1"),
        ({"timeout": float("nan")}, ValueError, "timeout must be positive seconds, got nan"),
        ({"timeout": float("inf")}, ValueError, "timeout must be positive seconds, got inf"),
        ({"timeout": "5"}, TypeError, "timeout must be a number of seconds, got '5'"),
    ],
)
def test_options_are_checked_when_given(
    options: dict[str, Any], error: type[Exception], words: str
) -> None:
    # As @remote checks its timeout: the mistake shows where it is made, not at a call.
    with pytest.raises(error, match=re.escape(words)):
        add.options(**options)
    with pytest.raises(error, match=re.escape(words)):
        Counter.options(**options)


def test_valid_options_are_kept() -> None:
    quick = add.options(timeout=2, retries=0)
    assert (quick.call_options.timeout, quick.call_options.retries) == (2.0, 0)
    assert add.call_options.retries is None  # by default: retried while an outage lasts
    with pytest.raises(ValueError, match="timeout must be positive seconds"):
        remote(CFG, timeout=float("nan"))


def test_an_unknown_remote_keyword_is_refused_naming_the_accepted_ones() -> None:
    with pytest.raises(TypeError) as info:
        remote(CFG, dependecies=["numpy"])  # type: ignore[call-arg]
    message = str(info.value)
    assert "'dependecies'" in message and "did you mean 'dependencies'" in message
    assert "system_dependencies" in message and "timeout" in message


def test_the_runtime_decorator_refuses_unknown_keywords_too() -> None:
    # What a worker's archive uses: the same rule, so a module imports alike everywhere.
    from flash.runtime.remote import remote as runtime_remote

    with pytest.raises(TypeError, match="did you mean 'timeout'"):
        runtime_remote(CFG, timeout_s=5)


def test_json_serialization_without_a_schema_gives_the_builds_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flash.runtime.client import Endpoints, PlatformInvoker

    (tmp_path / "td_app.py").write_text(
        "from flash import LiveServerless, remote\n\n\n"
        "@remote(LiveServerless(name='td'))\n"
        "def untyped(x):\n"
        "    return x\n",
        encoding="utf-8",
    )
    reason = "typing.TypedDict needs Python 3.12+ here"
    manifest = {
        "resources": {
            "td": {
                "functions": [
                    {"name": "untyped", "qualified_name": "td_app.untyped", "pickle_only": reason}
                ]
            }
        }
    }
    (tmp_path / ".flash").mkdir()
    (tmp_path / ".flash" / "flash_manifest.json").write_text(json.dumps(manifest))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    import td_app

    previous = set_invoker(PlatformInvoker(Endpoints("http://127.0.0.1:9")))
    try:
        with pytest.raises(TypeError) as info:
            td_app.untyped.options(serialization="json").call(1)
    finally:
        set_invoker(previous)
        sys.modules.pop("td_app", None)
    assert reason in str(info.value) and "annotate every parameter" not in str(info.value)


def _call_with_json(tmp_path: Path, manifest: dict[str, Any], module: str) -> str:
    """What ``app.py`` prints, run as a script in a project built with ``manifest``: it calls
    the functions of ``module`` (``app`` itself, or ``models``) with JSON."""
    (tmp_path / ".flash").mkdir()
    (tmp_path / ".flash" / "flash_manifest.json").write_text(json.dumps(manifest))
    if module == "app":
        script = _DEFINITIONS + _CALLS
    else:
        (tmp_path / f"{module}.py").write_text(_DEFINITIONS, encoding="utf-8")
        script = f"from {module} import Model, untyped\n{_CALLS}"
    (tmp_path / "app.py").write_text(script, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


_DEFINITIONS = """
from flash import LiveServerless, remote


@remote(LiveServerless(name="td"))
def untyped(x):
    return x


@remote(LiveServerless(name="td"))
class Model:
    def predict(self, x):
        return x
"""

_CALLS = """
from flash import run
from flash.runtime.client import Endpoints, PlatformInvoker
from flash.runtime.remote import set_invoker

set_invoker(PlatformInvoker(Endpoints("http://127.0.0.1:9")))
for call in (lambda: untyped.options(serialization="json").call(1),
             lambda: run(Model.options(serialization="json")().predict(1))):
    try:
        call()
    except TypeError as exc:
        print("TypeError:", exc)
"""


def test_a_scripts_function_gets_the_builds_reason_too(tmp_path: Path) -> None:
    reason = "typing.TypedDict needs Python 3.12+ here"
    entry = {"name": "untyped", "qualified_name": "app.untyped", "pickle_only": reason}
    printed = _call_with_json(tmp_path, {"resources": {"td": {"functions": [entry]}}}, "app")
    assert printed.splitlines()[0].startswith("TypeError:") and reason in printed


def test_a_manifest_with_a_schema_of_another_shape_gives_the_general_reason(
    tmp_path: Path,
) -> None:
    entry = {"name": "Model", "qualified_name": "models.Model", "schema": ["not", "a", "dict"]}
    printed = _call_with_json(tmp_path, {"resources": {"td": {"functions": [entry]}}}, "models")
    lines = printed.splitlines()
    assert len(lines) == 2 and all(line.startswith("TypeError:") for line in lines)
    assert "annotate the constructor" in lines[1]
