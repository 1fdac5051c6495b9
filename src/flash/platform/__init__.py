"""The serverless platform that runs on this machine, behind RunPod's serverless API.

The names below load on first use, so that importing one part (the gateway, the archive
reader) does not import the build as well.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flash.platform.local import LocalPlatform
    from flash.platform.project import serve_archive, serve_project, start_project

__all__ = ["LocalPlatform", "serve_archive", "serve_project", "start_project"]

_HOMES = {
    "LocalPlatform": "flash.platform.local",
    "serve_archive": "flash.platform.project",
    "serve_project": "flash.platform.project",
    "start_project": "flash.platform.project",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'flash.platform' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
