"""A web page of another site cannot use the local platform: a browser sends its requests
with the page's Origin, and after a DNS rebinding with the page's host name as Host. Without
an API key the platform took both (a text/plain POST needs no CORS preflight), so any page
the developer opened could run, cancel or purge jobs, and read them after a rebinding."""

from __future__ import annotations

import socket
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


def test_a_request_with_two_origins_or_hosts_is_refused(tmp_path: Path, platform_factory) -> None:
    # A browser sends one of each; two could have one judged and the other echoed back.
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))
    port = platform.url.rsplit(":", 1)[1]
    local, foreign = "http://localhost:3000", "https://evil.example"
    twice = [
        ([("Origin", foreign), ("Origin", local)], "2 Origin headers"),
        ([("Origin", local), ("Origin", foreign)], "2 Origin headers"),
    ]
    with httpx.Client(base_url=platform.url, timeout=60) as client:
        for headers, named in twice:
            for method, extra in (
                ("POST", []),
                ("OPTIONS", [("Access-Control-Request-Method", "POST")]),  # a preflight
            ):
                answer = client.request(
                    method, "/v2/basic/runsync", content=BODY, headers=headers + extra
                )
                assert answer.status_code == 403, (headers, method, answer.text)
                assert named in answer.json()["error"], answer.text
                assert "access-control-allow-origin" not in answer.headers, answer.headers
        # Two Hosts: httpx refuses to send them, a raw connection does not.
        request = (
            f"GET /v2/basic/health HTTP/1.1\r\nHost: localhost:{port}\r\n"
            f"Host: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", int(port)), timeout=60) as raw:
            raw.sendall(request.encode())
            answer_text = b"".join(iter(lambda: raw.recv(65536), b"")).decode()
        assert answer_text.split(" ", 2)[1] in ("400", "403"), answer_text  # ours, or uvicorn's
        assert "access-control-allow-origin" not in answer_text.lower()
        assert client.get("/v2/basic/health").json()["jobs"]["completed"] == 0


def test_a_local_front_end_can_call_the_platform_from_a_browser(
    tmp_path: Path, platform_factory
) -> None:
    """A page on http://localhost:3000 calling the platform on another port is cross-origin:
    the browser asks first (a preflight) and shows the page no answer without
    Access-Control-Allow-Origin. The platform took its requests but answered neither."""
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}), api_key="k3y")
    front = "http://localhost:3000"
    preflight = {
        "Origin": front,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    page = {"Origin": front, "Authorization": "Bearer k3y", "Content-Type": "application/json"}
    with httpx.Client(base_url=platform.url, timeout=60) as client:
        for path in ("/v2/basic/runsync", "/v2/basic/status/some-job", "/docs"):
            answer = client.options(path, headers=preflight)
            assert answer.status_code in (200, 204), (path, answer.text)
            assert answer.headers["access-control-allow-origin"] == front, answer.headers
            assert {"GET", "POST"} <= {
                m.strip() for m in answer.headers["access-control-allow-methods"].split(",")
            }, answer.headers
            asked = answer.headers["access-control-allow-headers"].lower()
            assert "authorization" in asked and "content-type" in asked, answer.headers
            assert "origin" in answer.headers["vary"].lower(), answer.headers
            assert int(answer.headers["access-control-max-age"]) > 0, answer.headers

        # The answers, errors included, are the page's to read.
        answers = [
            (client.post("/v2/basic/runsync", content=BODY, headers=page), 200),
            (client.post("/v2/basic/runsync", content="{not json", headers=page), 400),
            (client.post("/v2/basic/runsync", content=BODY, headers={"Origin": front}), 401),
            (client.post("/v2/nowhere/runsync", content=BODY, headers=page), 404),
            (client.get("/v2/basic/health", headers=page), 200),
        ]
        for answer, status in answers:
            assert answer.status_code == status, (answer.request.url, answer.text)
            assert answer.headers["access-control-allow-origin"] == front, answer.headers
            assert "origin" in answer.headers["vary"].lower(), answer.headers
        assert answers[0][0].json()["status"] == "COMPLETED", answers[0][0].text

        # Another site's page is refused as before, its preflight too, and answered nothing
        # it could read.
        evil = "https://evil.example"
        answer = client.options("/v2/basic/runsync", headers={**preflight, "Origin": evil})
        assert answer.status_code == 403, answer.text
        assert "access-control-allow-origin" not in answer.headers, answer.headers
        answer = client.post("/v2/basic/runsync", content=BODY, headers={**page, "Origin": evil})
        assert answer.status_code == 403 and evil in answer.json()["error"], answer.text
        assert "access-control-allow-origin" not in answer.headers, answer.headers
        health = client.get("/v2/basic/health", headers={"Authorization": "Bearer k3y"}).json()
        assert health["jobs"]["completed"] == 1, health
