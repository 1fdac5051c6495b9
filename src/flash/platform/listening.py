"""Where and how the platform listens: the socket family and URL of its address, and the API
key it can require. Light on purpose: the CLI checks its options with these before it loads
the platform."""

from __future__ import annotations

import socket

from flash.runtime.http import HEADER_UNFIT, unfit_for_header

__all__ = ["address_family", "api_key_problem", "http_url"]


def address_family(host: str) -> socket.AddressFamily:
    """The family of the sockets serving on ``host``: IPv6 for an IPv6 address (``::1``)."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def http_url(host: str, port: int) -> str:
    """The URL a client on this machine reaches ``host:port`` at: the loopback address for
    all interfaces, an IPv6 address in brackets."""
    shown = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def api_key_problem(key: str) -> str | None:
    """Why no caller could send ``key`` as the platform's API key, if so (never quoting
    it: it is a secret). An empty one (a CI secret that resolved to nothing) would let
    every request in."""
    if not key.strip():
        return "is empty: give a key, or unset FLASH_API_KEY to serve without one"
    if key != key.strip():  # the Authorization header is read without them
        return "begins or ends with whitespace, which an Authorization header does not keep"
    if unfit_for_header(key):
        return HEADER_UNFIT
    return None
