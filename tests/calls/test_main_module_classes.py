"""The project's main.py run as a script (``python main.py``): its classes and exceptions
travel pickled as the worker's ``main`` module's and come back as the script's own
(``__main__``'s), without the script importing main.py a second time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration.projects import write_files

from flash.platform import LocalPlatform, serve_project

_MAIN = """
    import asyncio
    from dataclasses import dataclass

    from flash import CpuLiveServerless, remote

    cpu = CpuLiveServerless(name="mainmod-cpu", workersMax=1)
    relay_cpu = CpuLiveServerless(name="mainmod-relay", workersMax=1)

    print("module body runs as", __name__)


    @dataclass
    class Res:
        value: int


    class AppError(Exception):
        pass


    @remote(cpu)
    def untyped_double(x):
        return Res(x * 2)


    @remote(cpu)
    def typed_double(x: int) -> Res:
        return Res(x * 2)


    @remote(cpu)
    def fail(msg: str) -> int:
        raise AppError(msg)


    @remote(cpu)
    def fail_chained(msg):
        try:
            raise AppError("inner")
        except AppError as exc:
            raise AppError(msg) from exc


    @remote(cpu)
    def is_res(r):
        return isinstance(r, Res)


    @remote(cpu)
    def describe(r):
        return type(r).__name__, r.value


    @remote(relay_cpu)
    async def relay(x):
        # A worker calling another endpoint: its own main module's classes, both ways.
        doubled = await untyped_double(Res(x).value)
        try:
            await fail("nested")
        except AppError:
            caught = True
        else:
            caught = False
        return isinstance(doubled, Res), await is_res(Res(x)), caught, doubled


    async def run() -> None:
        result = await untyped_double(1)
        print("untyped result is Res:", isinstance(result, Res), result.value)
        pickled = await typed_double.options(serialization="pickle")(2)
        print("pickled typed result is Res:", isinstance(pickled, Res), pickled.value)
        typed = await typed_double(3)
        print("json typed result is Res:", isinstance(typed, Res), typed.value)
        for how in ("json", "pickle"):
            try:
                await fail.options(serialization=how)("boom")
            except AppError as exc:
                print(f"caught AppError ({how}):", exc)
        try:
            await fail_chained("outer")
        except AppError as exc:
            print("caught chained AppError:", exc, isinstance(exc.__cause__, AppError))
        print("worker sees Res:", await is_res(Res(1)))
        doubled_ok, seen_ok, caught, doubled = await relay(4)
        print("nested:", doubled_ok, seen_ok, caught, isinstance(doubled, Res), doubled.value)


    if __name__ == "__main__":

        @dataclass
        class OnlyHere:
            value: int

        # A class no worker has (main.py's guarded block never runs there) goes by value.
        print("guarded class travels:", asyncio.run(describe(OnlyHere(5))))
        asyncio.run(run())
"""


def _script_env(platform: LocalPlatform) -> dict[str, str]:
    """What `flash run` gives a script: the platform's address (the key is the project's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASH_")}
    env["FLASH_API_BASE"] = platform.url
    if platform.api_key:
        env["FLASH_API_KEY"] = platform.api_key
    return env


def test_main_py_classes_and_exceptions_round_trip_as_the_scripts_own(tmp_path: Path) -> None:
    root = write_files(tmp_path / "proj", {"main.py": _MAIN})
    with serve_project(root) as platform:
        done = subprocess.run(
            [sys.executable, "main.py"],
            cwd=root,
            env=_script_env(platform),
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        "module body runs as __main__",  # once: main.py is not imported again as main
        "guarded class travels: ('OnlyHere', 5)",
        "untyped result is Res: True 2",
        "pickled typed result is Res: True 4",
        "json typed result is Res: True 6",
        "caught AppError (json): boom",
        "caught AppError (pickle): boom",
        "caught chained AppError: outer True",
        "worker sees Res: True",
        "nested: True True True True 8",
    ], done.stderr[-3000:]
