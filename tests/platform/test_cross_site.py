"""A web page of another site cannot use the local platform: a browser sends its requests
with the page's Origin, and after a DNS rebinding with the page's host name as Host. Without
an API key the platform took both (a text/plain POST needs no CORS preflight), so any page
the developer opened could run, cancel or purge jobs, and read them after a rebinding."""

from __future__ import annotations

from pathlib import Path

import httpx
from tests.platform.apps import BASIC, write_app

BODY = '{"input": {"action": "echo", "value": 1}}'


def test_a_page_of_another_site_can_neither_call_nor_read_the_platform(
    tmp_path: Path, platform_factory
) -> None:
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))
    port = platform.url.rsplit(":", 1)[1]
    page = {"Content-Type": "text/plain"}  # what a page's form or fetch sends unasked
    refused = [
        ({**page, "Host": f"attacker.example:{port}"}, "Host 'attacker.example:"),
        ({**page, "Origin": "http://attacker.example"}, "http://attacker.example"),
        ({**page, "Origin": "null"}, "Origin 'null'"),  # a sandboxed frame, a file: page
        # Malformed: no name of the platform's (they were a 500, not an answer).
        ({**page, "Host": f"[::1:{port}"}, "Host '[::1:"),
        ({**page, "Origin": "http://[::1"}, "Origin 'http://[::1'"),
    ]
    with httpx.Client(base_url=platform.url, timeout=60) as client:
        for headers, named in refused:
            for method, path in (
                ("POST", "/v2/basic/runsync"),
                ("POST", "/v2/basic/purge-queue"),
                ("GET", "/v2/basic/health"),
                ("GET", "/docs"),
                ("GET", "/v2/basic/openapi.json"),
            ):
                answer = client.request(method, path, content=BODY, headers=headers)
                assert answer.status_code == 403, (headers, path, answer.text)
                assert named in answer.json()["error"], answer.text
        health = client.get("/v2/basic/health").json()
        assert health["jobs"]["completed"] == 0 and health["jobs"]["inQueue"] == 0, health
        # The platform's own pages, local front ends, scripts and curl are served.
        for headers in (
            {},
            {"Host": f"localhost:{port}"},
            {"Origin": platform.url},  # /docs calling its platform
            {"Origin": "http://localhost:3000", "Content-Type": "application/json"},
            {"Origin": "http://127.0.0.1:5173"},
        ):
            answer = client.post("/v2/basic/runsync", content=BODY, headers=headers)
            assert answer.json()["status"] == "COMPLETED", (headers, answer.text)
