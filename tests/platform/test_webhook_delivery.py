"""Webhooks survive restarts: one a job owed when the platform stopped is sent at the next
start, one delivered is not sent again, one given up stays given up."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from tests.helpers import Logs, QuietHandler, listening_on, port_holder, wait_for
from tests.platform.apps import BASIC, ended, write_app

from flash.platform.local import WEBHOOK_ATTEMPTS, LocalPlatform

# Long enough that a test's platform makes one attempt only before it is stopped.
NO_RETRY_YET_S = 600.0


class Inbox:
    """A webhook receiver's record: each POST's path (without its query) and body, and what
    it was answered. Paths in ``refused`` are answered 503; paths in ``held`` get no answer
    until ``release`` is set."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posts: list[tuple[str, int, dict[str, Any]]] = []
        self.refused: set[str] = set()
        self.held: set[str] = set()
        self.release = threading.Event()
        self.in_flight = self.most_in_flight = 0  # held POSTs not answered yet

    def bodies(self, path: str, answered: int | None = None) -> list[dict[str, Any]]:
        """The bodies POSTed to ``path`` (only those answered ``answered``, if given)."""
        with self.lock:
            return [
                body
                for p, code, body in self.posts
                if p == path and (answered is None or code == answered)
            ]

    def handler(self) -> type[QuietHandler]:
        inbox = self

        class Receiver(QuietHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                path = self.path.split("?")[0]
                if path in inbox.held:
                    with inbox.lock:
                        inbox.posts.append((path, 0, body))  # 0: not answered in time
                        inbox.in_flight += 1
                        inbox.most_in_flight = max(inbox.most_in_flight, inbox.in_flight)
                    inbox.release.wait(60)
                    with inbox.lock:
                        inbox.in_flight -= 1
                    code = 200
                else:
                    code = 503 if path in inbox.refused else 200
                    with inbox.lock:
                        inbox.posts.append((path, code, body))
                self.send_response(code)
                self.end_headers()

        return Receiver


class _Receiver(ThreadingHTTPServer):
    request_queue_size = 64  # the platform's POSTs in flight at once, and more


@contextlib.contextmanager
def receiving(inbox: Inbox, held: socket.socket | None = None) -> Iterator[int]:
    """Serve ``inbox`` on 127.0.0.1 (on the port ``held``, a ``port_holder``, if given)
    while the block runs."""
    server = listening_on(held or port_holder(), inbox.handler(), _Receiver)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        inbox.release.set()
        server.shutdown()
        server.server_close()


def _run(platform: LocalPlatform, hook: str, value: int = 1) -> dict[str, Any]:
    """Submit a job with ``hook`` as its webhook; its /status once it has ended."""
    answer = requests.post(
        f"{platform.url}/v2/basic/run",
        headers={"Authorization": "Bearer test-key"},
        json={"input": {"action": "echo", "value": value}, "webhook": hook},
        timeout=60,
    )
    answer.raise_for_status()
    return ended(platform, "basic", answer.json()["id"])


def _webhook_state(platform: LocalPlatform, job_id: str) -> tuple[bool, int]:
    """Whether the platform still owes the job's webhook, and its failed attempts."""
    dispatcher = platform.dispatcher
    assert dispatcher is not None

    def state() -> tuple[bool, int]:
        job = dispatcher.jobs[job_id]
        return job.webhook_pending, job.webhook_attempts

    return platform.call(state)


def _after_a_marker(platform: LocalPlatform, inbox: Inbox, port: int) -> None:
    """Return once a job submitted now has had its webhook delivered. Owed webhooks are sent
    as the platform starts, before it takes requests: one that would be sent again has been
    by then."""
    marker = _run(platform, f"http://127.0.0.1:{port}/marker", value=99)
    wait_for(
        lambda: any(b["id"] == marker["id"] for b in inbox.bodies("/marker")),
        30,
        "the marker job's webhook",
    )


def test_a_webhook_owed_at_stop_arrives_once_after_a_restart(
    tmp_path: Path, platform_factory: Callable[..., LocalPlatform]
) -> None:
    app = write_app(tmp_path / "app", {"basic": (BASIC, {})})
    held = port_holder()  # nothing listens there yet: the receiver is down
    port = held.getsockname()[1]
    hook = f"http://127.0.0.1:{port}/done?token=t0k3n"
    first = platform_factory(app, webhook_retry_delay_s=NO_RETRY_YET_S)
    final = _run(first, hook, value=7)
    wait_for(lambda: _webhook_state(first, final["id"]) == (True, 1), 30, "a failed attempt")
    first.stop(grace_s=1)

    inbox = Inbox()
    with receiving(inbox, held):
        second = platform_factory(app, webhook_retry_delay_s=NO_RETRY_YET_S)
        wait_for(lambda: inbox.bodies("/done"), 30, "the owed webhook")
        wait_for(lambda: _webhook_state(second, final["id"]) == (False, 1), 30, "it stored")
        assert inbox.bodies("/done") == [final]  # once, with the job's final status
        assert final["status"] == "COMPLETED" and final["output"] == {"echo": 7}


def test_only_undelivered_webhooks_are_sent_after_a_restart(
    tmp_path: Path, platform_factory: Callable[..., LocalPlatform]
) -> None:
    app = write_app(tmp_path / "app", {"basic": (BASIC, {})})
    inbox = Inbox()
    inbox.refused.add("/later")
    with receiving(inbox) as port:
        first = platform_factory(app, webhook_retry_delay_s=NO_RETRY_YET_S)
        delivered = _run(first, f"http://127.0.0.1:{port}/now", value=1)
        owed = _run(first, f"http://127.0.0.1:{port}/later", value=2)
        wait_for(lambda: _webhook_state(first, delivered["id"]) == (False, 0), 30, "delivery")
        wait_for(lambda: _webhook_state(first, owed["id"]) == (True, 1), 30, "a refusal")
        first.stop(grace_s=1)

        inbox.refused.clear()
        second = platform_factory(app, webhook_retry_delay_s=NO_RETRY_YET_S)
        wait_for(lambda: inbox.bodies("/later", answered=200), 30, "the owed webhook")
        _after_a_marker(second, inbox, port)
        assert inbox.bodies("/now") == [delivered]
        assert inbox.bodies("/later", answered=503) == [owed]
        assert inbox.bodies("/later", answered=200) == [owed]
        assert _webhook_state(second, owed["id"]) == (False, 1)


def test_a_webhook_given_up_is_logged_once_and_not_sent_after_a_restart(
    tmp_path: Path,
    platform_factory: Callable[..., LocalPlatform],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # INFO on, as a program (or the runpod package) may turn it: httpx logs each request.
    caplog.set_level(logging.INFO, logger="httpx")
    app = write_app(tmp_path / "app", {"basic": (BASIC, {})})
    inbox = Inbox()
    inbox.refused.add("/hook/s3cret")
    with receiving(inbox) as port:
        logs = Logs()
        first = platform_factory(app, echo=logs, webhook_retry_delay_s=0.05)
        hook = f"http://user:pw-s3cret@127.0.0.1:{port}/hook/s3cret?token=s3cret"
        final = _run(first, hook)
        wait_for(lambda: "given up" in logs.text(), 30, "the webhook to be given up")
        given_up = [line for line in logs.lines if "webhook" in line]
        assert given_up == [
            f"[platform] webhook to http://127.0.0.1:{port} for job {final['id']}"
            f" failed {WEBHOOK_ATTEMPTS} times; given up"
        ]
        assert len(inbox.bodies("/hook/s3cret", answered=503)) == WEBHOOK_ATTEMPTS
        assert _webhook_state(first, final["id"]) == (False, WEBHOOK_ATTEMPTS)
        first.stop(grace_s=1)

        inbox.refused.clear()  # it would be delivered now, were it sent
        later_logs = Logs()
        second = platform_factory(app, echo=later_logs, webhook_retry_delay_s=0.05)
        _after_a_marker(second, inbox, port)
        assert inbox.bodies("/hook/s3cret", answered=200) == []
        assert len(inbox.bodies("/hook/s3cret")) == WEBHOOK_ATTEMPTS
        assert "webhook" not in later_logs.text()
        assert "s3cret" not in logs.text() + later_logs.text()
    posts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("HTTP Request")]
    assert any(f"http://127.0.0.1:{port}/****" in post for post in posts), posts
    assert "s3cret" not in caplog.text


def test_a_stop_does_not_wait_for_a_slow_receiver(
    tmp_path: Path, platform_factory: Callable[..., LocalPlatform]
) -> None:
    app = write_app(tmp_path / "app", {"basic": (BASIC, {})})
    inbox = Inbox()
    inbox.held.add("/slow")  # it takes the POST and does not answer
    with receiving(inbox) as port:
        first = platform_factory(app)
        final = _run(first, f"http://127.0.0.1:{port}/slow", value=3)
        wait_for(lambda: inbox.bodies("/slow"), 30, "the webhook to reach the receiver")
        began = time.monotonic()
        first.stop(grace_s=1)
        # Well short of the POST's own 10 s timeout: the stop gave up on the receiver.
        assert time.monotonic() - began < 8

        inbox.held.clear()
        second = platform_factory(app)
        wait_for(lambda: inbox.bodies("/slow", answered=200), 30, "the owed webhook")
        # The POST the stop cut short counted: one that never answers ends given up.
        wait_for(lambda: _webhook_state(second, final["id"]) == (False, 1), 30, "it stored")
        assert inbox.bodies("/slow", answered=200) == [final]


def test_many_owed_webhooks_are_posted_a_few_at_a_time(
    tmp_path: Path, platform_factory: Callable[..., LocalPlatform]
) -> None:
    # Thousands of POSTs at once jammed the HTTP client's connection pool: most timed out
    # there unsent and were given up, and start-up waited on them.
    app = write_app(tmp_path / "app", {"basic": (BASIC, {})})
    held = port_holder()
    port = held.getsockname()[1]
    first = platform_factory(app, webhook_retry_delay_s=NO_RETRY_YET_S)
    jobs = [_run(first, f"http://127.0.0.1:{port}/burst", value=i) for i in range(40)]
    for job in jobs:  # the receiver is down: one failed attempt each, then the stop
        wait_for(lambda: _webhook_state(first, job["id"]) == (True, 1), 30, "an attempt")  # noqa: B023
    first.stop(grace_s=1)

    inbox = Inbox()
    inbox.held.add("/burst")
    with receiving(inbox, held):
        platform_factory(app, webhook_retry_delay_s=NO_RETRY_YET_S)
        wait_for(lambda: inbox.in_flight == 16, 30, "sixteen POSTs in flight")
        inbox.release.set()
        wait_for(lambda: len(inbox.bodies("/burst")) == len(jobs), 30, "every owed webhook")
        assert inbox.most_in_flight == 16
        delivered = sorted(body["output"]["echo"] for body in inbox.bodies("/burst"))
        assert delivered == list(range(40))  # each once
