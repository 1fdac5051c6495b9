"""The client keeps credentials out of what it sends by mistake and out of what it shows:
a URL's ``user:password@``, the API key. Real requests to a server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers import QuietHandler, serve_http

import flash
from flash import CpuLiveServerless, remote
from flash.runtime.client import Endpoints, PlatformInvoker, from_environment
from flash.runtime.errors import EndpointUnavailableError
from flash.runtime.http import HttpClient, HttpError
from flash.runtime.remote import get_invoker, set_invoker

PASSWORD = "pw-" + "5" * 12
API_KEY = "k-" + "3" * 20


@remote(CpuLiveServerless(name="api"))
def typed(x: int) -> int:  # called with JSON: no key needed
    return x


class Refusing(QuietHandler):
    """Answers every request 401, keeping the Host header each one came with."""

    hosts: list[str] = []

    def do_POST(self) -> None:
        self.hosts.append(self.headers["Host"])
        body = json.dumps({"error": "unauthorized"}).encode()
        self.send_response(401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Hanging(QuietHandler):
    """Closes every connection without an answer."""

    def do_POST(self) -> None:
        self.close_connection = True


@pytest.fixture
def refusing() -> Iterator[int]:
    Refusing.hosts = []
    with serve_http(Refusing) as port:
        yield port


def test_the_host_header_and_errors_leave_out_a_urls_credentials(refusing: int) -> None:
    # An invoker made directly: neither connect() nor FLASH_API_BASE vetted this URL.
    invoker = PlatformInvoker(Endpoints(f"http://user:{PASSWORD}@127.0.0.1:{refusing}"))
    previous = set_invoker(invoker)
    try:
        with pytest.raises(EndpointUnavailableError) as caught:
            asyncio.run(typed(1))
    finally:
        set_invoker(previous)
        invoker.close()
    assert Refusing.hosts == [f"127.0.0.1:{refusing}"]
    message = str(caught.value)
    assert PASSWORD not in message
    assert f"POST http://****@127.0.0.1:{refusing}/v2/api/runsync" in message


def test_a_transport_error_masks_the_urls_credentials() -> None:
    with serve_http(Hanging) as port:
        url = f"http://user:{PASSWORD}@127.0.0.1:{port}/v2/api/run"
        with pytest.raises(HttpError) as caught:
            asyncio.run(HttpClient().request("POST", url, {}))
    assert PASSWORD not in str(caught.value)
    assert f"http://****@127.0.0.1:{port}/v2/api/run" in str(caught.value)


def test_connect_refuses_a_url_with_credentials_and_names_api_key() -> None:
    before = get_invoker()
    with pytest.raises(ValueError, match=r"api_key=") as caught:
        flash.connect(f"http://user:{PASSWORD}@127.0.0.1:9")
    assert PASSWORD not in str(caught.value)
    assert get_invoker() is before


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "not a url", "http://"])
def test_connect_refuses_what_is_no_http_url(url: str) -> None:
    with pytest.raises(ValueError, match="base_url must be an http:// or https:// URL"):
        flash.connect(url)


@pytest.mark.parametrize("url", ["127.0.0.1:8200", "ftp://x", "http://", "http://h:99999"])
def test_flash_api_base_that_is_no_http_url_is_refused_naming_it(url: str) -> None:
    # Not sent to port 80 of some host, to fail after every retry.
    with pytest.raises(ValueError, match=r"^\$FLASH_API_BASE must be an http:// or https:// URL"):
        from_environment({"FLASH_API_BASE": url})
    with pytest.raises(ValueError, match=r"FLASH_API_KEY") as caught:
        from_environment({"FLASH_API_BASE": f"http://user:{PASSWORD}@127.0.0.1:9"})
    assert PASSWORD not in str(caught.value)
    with pytest.raises(ValueError, match=r"^\$FLASH_ENDPOINTS is not valid JSON"):
        from_environment({"FLASH_API_BASE": "http://127.0.0.1:9", "FLASH_ENDPOINTS": "{"})


def test_a_script_with_a_bad_flash_api_base_fails_at_its_first_call(tmp_path: Path) -> None:
    script = (
        "from flash import CpuLiveServerless, remote\n"
        "@remote(CpuLiveServerless(name='cpu'))\n"
        "def add(a: int, b: int) -> int:\n"
        "    return a + b\n"
        "add.call(1, 2)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASH_")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**env, "FLASH_API_BASE": "127.0.0.1:8200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.rstrip().splitlines()[-1] == (
        "ValueError: $FLASH_API_BASE must be an http:// or https:// URL such as "
        "http://127.0.0.1:8000, got '127.0.0.1:8200'"
    )


@pytest.mark.parametrize("key", [f"{API_KEY}\r\nX-Injected: 1", f"{API_KEY}\n", f"{API_KEY}\x00"])
def test_an_api_key_that_would_break_the_headers_is_refused_unquoted(key: str) -> None:
    before = get_invoker()
    with pytest.raises(ValueError, match="api_key") as caught:
        flash.connect("http://127.0.0.1:9", api_key=key)
    assert API_KEY not in str(caught.value)
    assert get_invoker() is before


def test_the_http_client_sends_no_header_with_a_line_break() -> None:
    # Refused before any connection: port 9 would refuse one.
    client = HttpClient({"Authorization": f"Bearer {API_KEY}\r\nX-Injected: 1"})
    with pytest.raises(ValueError, match="'Authorization' header") as caught:
        asyncio.run(client.request("GET", "http://127.0.0.1:9/ping"))
    assert API_KEY not in str(caught.value)


def test_reprs_show_neither_the_api_key_nor_a_urls_password() -> None:
    endpoints = Endpoints(
        f"http://user:{PASSWORD}@127.0.0.1:9",
        API_KEY,
        {"api": "ep-1"},
        {"api": f"https://u:{PASSWORD}@example.com/"},
    )
    invoker = PlatformInvoker(endpoints)
    for shown in (repr(endpoints), repr(vars(invoker))):
        assert API_KEY not in shown
        assert PASSWORD not in shown
    assert repr(endpoints) == (
        "Endpoints(base_url='http://****@127.0.0.1:9', api_key='****', ids={'api': 'ep-1'}, "
        "urls={'api': 'https://****@example.com/'})"
    )
