"""Worker loop entry point (placeholder: the official SDK loop)."""

from __future__ import annotations

from typing import Any


def start(handler: Any) -> None:
    import runpod

    runpod.serverless.start({"handler": handler})
