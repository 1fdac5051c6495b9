"""``flash.connect``: send every ``@remote`` call to a platform instead of running it here."""

from __future__ import annotations

import os

from flash.runtime.client import Endpoints, PlatformInvoker
from flash.runtime.http import check_base_url
from flash.runtime.remote import forget_environment, set_invoker
from flash.sdk.keys import find_signing_key


def connect(
    base_url: str,
    api_key: str | None = None,
    *,
    endpoint_ids: dict[str, str] | None = None,
    signing_key: bytes | None = None,
) -> PlatformInvoker:
    """Route calls to ``{base_url}/v2/{endpoint}``.

    ``endpoint_ids`` maps resource names to endpoint ids where they differ (a deployed
    app). ``api_key`` (sent as a bearer token) is by default ``$FLASH_API_KEY``, as for a
    script given only ``FLASH_API_BASE``. Pickled calls are signed with ``signing_key`` (the
    app's 32-byte key), by default ``$FLASH_SIGNING_KEY`` or the key of the project this
    process runs in; without a key only typed functions can be called (as JSON). Returns
    the invoker now in force. A ``user:password@`` in ``base_url`` is refused: the key
    goes in ``api_key``.
    """
    check_base_url(base_url, "base_url", "pass the key as flash.connect(url, api_key=...)")
    if api_key is None:
        api_key = os.environ.get("FLASH_API_KEY") or None
    invoker = PlatformInvoker(
        Endpoints(base_url, api_key, dict(endpoint_ids or {})),
        signing_key=signing_key if signing_key is not None else find_signing_key(),
    )
    _close(set_invoker(invoker))
    return invoker


def disconnect() -> None:
    """Run calls in this process again, closing the connections to the platform, until the
    next :func:`connect`: ``FLASH_API_BASE`` is no longer read either."""
    _close(set_invoker(None))
    _close(forget_environment())


def _close(invoker: object) -> None:
    """Close the connections of an invoker no longer in force."""
    close = getattr(invoker, "close", None)
    if close is not None:
        close()
