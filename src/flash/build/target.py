"""The machine a build is for, and whether it is this one.

A build vendors wheels for one Python and one uv platform (``--python-version``,
``--platform``); packages with compiled code in them import only on a machine that matches.
The build imports the project only for such a target, and serving warns about any other.
"""

from __future__ import annotations

import platform
import re
import sys
from dataclasses import dataclass

from flash.build.dependencies import DependencyOptions
from flash.build.errors import BuildError

# The default build target: RunPod's workers, glibc 2.28+ x86-64 Linux.
WORKER_PLATFORM = DependencyOptions().platform


# uv's platform aliases (`uv pip compile --help`, --python-platform) and what they stand for.
_UV_ALIASES = {
    "linux": "x86_64-unknown-linux-gnu",
    "macos": "aarch64-apple-darwin",
    "windows": "x86_64-pc-windows-msvc",
}


# The uv platforms of the machines serverless workers are: x86-64 or aarch64 Linux, glibc
# (manylinux, or uv's unknown-linux-gnu) or musl. uv still judges the spelling
# (manylinux_2_99, say).
_WORKER_PLATFORM = re.compile(
    r"linux|(x86_64|aarch64)-(unknown-linux-(gnu|musl)|manylinux2014|manylinux_2_\d+)",
    re.IGNORECASE,
)


def check_platform(name: str) -> None:
    """Refuse a --platform that is no worker's (Windows, macOS, Android, an unknown name)
    before anything is resolved, naming the choices."""
    if not _WORKER_PLATFORM.fullmatch(name):
        raise BuildError(
            f"--platform {name!r} is not a platform serverless workers run on (x86-64 or "
            f"aarch64 Linux): use {WORKER_PLATFORM} (the default), aarch64-manylinux_2_28, "
            "another <x86_64|aarch64>-manylinux_2_<glibc minor> or -manylinux2014, "
            "<x86_64|aarch64>-unknown-linux-gnu or -unknown-linux-musl, or linux"
        )


@dataclass(frozen=True)
class Machine:
    python: str  # minor version: "3.11"
    processor: str  # as uv platforms spell it: "x86_64", "aarch64"
    system: str  # sys.platform: "linux", "darwin", "win32"
    libc: str = "glibc"  # on Linux, "glibc" or "musl" (Alpine); elsewhere ""

    @property
    def is_linux(self) -> bool:
        return self.system.startswith("linux")


def this_machine() -> Machine:
    """This interpreter's Python and the machine it runs on."""
    processor = platform.machine().lower().replace("amd64", "x86_64").replace("arm64", "aarch64")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not sys.platform.startswith("linux"):
        return Machine(python, processor, sys.platform, libc="")
    # libc_ver knows glibc only; the other Linux libc Python runs on is musl.
    libc = "glibc" if platform.libc_ver()[0] == "glibc" else "musl"
    return Machine(python, processor, sys.platform, libc)


def minor_version(python_version: str) -> str:
    """``3.11`` for ``3.11.7``: wheels and imports depend on the minor version only."""
    return ".".join(python_version.split(".")[:2])


def builds_for_this_machine(python_version: str, target_platform: str) -> bool:
    """Whether a build for ``python_version`` on ``target_platform`` (a uv platform) imports
    here: the same minor Python, and a Linux platform of this processor and libc."""
    host = this_machine()
    target = target_platform.lower()
    processor, _, system = _UV_ALIASES.get(target, target).partition("-")
    return (
        minor_version(python_version) == host.python
        and host.is_linux
        and processor == host.processor
        and _libc(system) == host.libc
    )


def _libc(system: str) -> str | None:
    """The libc a uv platform's wheels link to, from what follows its processor:
    ``manylinux_2_28`` and ``unknown-linux-gnu`` glibc, ``unknown-linux-musl`` musl;
    None for any other system (macOS, Windows, Android, Pyodide, iOS)."""
    if system.startswith("manylinux") or system in ("unknown-linux-gnu", "unknown-linux"):
        return "glibc"
    if system == "unknown-linux-musl":
        return "musl"
    return None


def platform_for_this_machine() -> str | None:
    """The uv platform whose builds import here, or None off Linux (Flash's workers, and the
    build's import check, are Linux only)."""
    host = this_machine()
    if not host.is_linux:
        return None
    system = "unknown-linux-musl" if host.libc == "musl" else "manylinux_2_28"
    return f"{host.processor}-{system}"
