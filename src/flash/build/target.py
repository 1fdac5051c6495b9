"""The machine a build is for, and whether it is this one.

A build vendors wheels for one Python and one uv platform (``--python-version``,
``--platform``); packages with compiled code in them import only on a machine that matches.
The build imports the project only for such a target, and serving warns about any other.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass

from flash.build.dependencies import DependencyOptions

# The default build target: RunPod's workers, glibc 2.28+ x86-64 Linux.
WORKER_PLATFORM = DependencyOptions().platform


@dataclass(frozen=True)
class Machine:
    python: str  # minor version: "3.11"
    processor: str  # as uv platforms spell it: "x86_64", "aarch64"
    system: str  # sys.platform: "linux", "darwin", "win32"

    @property
    def is_linux(self) -> bool:
        return self.system.startswith("linux")


def this_machine() -> Machine:
    """This interpreter's Python and the machine it runs on."""
    processor = platform.machine().lower().replace("amd64", "x86_64").replace("arm64", "aarch64")
    return Machine(f"{sys.version_info.major}.{sys.version_info.minor}", processor, sys.platform)


def minor_version(python_version: str) -> str:
    """``3.11`` for ``3.11.7``: wheels and imports depend on the minor version only."""
    return ".".join(python_version.split(".")[:2])


def builds_for_this_machine(python_version: str, target_platform: str) -> bool:
    """Whether a build for ``python_version`` on ``target_platform`` (a uv platform) imports
    here: the same minor Python, and a Linux platform of this processor."""
    host = this_machine()
    target = target_platform.lower()
    return (
        minor_version(python_version) == host.python
        and host.is_linux
        and target.startswith(host.processor)
        and "linux" in target
    )


def platform_for_this_machine() -> str | None:
    """The uv platform whose builds import here, or None off Linux (Flash's workers, and the
    build's import check, are Linux only)."""
    host = this_machine()
    return f"{host.processor}-manylinux_2_28" if host.is_linux else None
