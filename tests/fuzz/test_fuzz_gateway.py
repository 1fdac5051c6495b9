"""Fuzz the gateway over real HTTP, with a real worker running the generic handler behind it.

Random bodies, methods, paths, headers and content types go to the client routes and to
the worker-facing routes (with right, wrong and missing credentials). Nothing may answer
5xx, every job the gateway accepted must reach a final state within a deadline, no hostile
pickle may run, and afterwards the gateway still serves and a valid job still completes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from tests.fuzz import strategies as fz
from tests.helpers import Logs

from flash.platform.gateway import MAX_JSON_DEPTH
from flash.platform.jobs import FINAL
from flash.platform.local import LocalPlatform
from flash.runtime.signing import KEY_ENV_VAR, generate_key, key_to_text

REQUESTS = 300
FINAL_DEADLINE_S = 60.0
HTTP_TIMEOUT_S = 30.0


class GatewayFuzzer:
    """Sends request specs from :func:`fz.http_requests` and remembers the jobs accepted."""

    def __init__(self, platform: LocalPlatform, key: bytes, marker: Path) -> None:
        self.platform = platform
        self.key = key
        self.marker = marker
        self.http = httpx.Client(base_url=platform.url, timeout=HTTP_TIMEOUT_S)
        self.accepted: list[str] = []
        self.statuses: dict[int, int] = {}
        self.sent = 0
        self._workers: list[str] = []
        # How each job ended, as the platform ends it: a finished job's result may be gone
        # from /status before it is asked for (a runsync's after 60 s, or sooner by a
        # status call's ?ttl=), which is RunPod's contract, not a lost job.
        self.ended: dict[str, str] = {}
        assert platform.dispatcher is not None
        on_final = platform.dispatcher.on_final

        def record(job: Any) -> None:
            self.ended[job.id] = job.status
            on_final(job)

        platform.dispatcher.on_final = record

    def close(self) -> None:
        self.http.close()

    def send(self, spec: dict[str, Any]) -> httpx.Response:
        if self.sent % 50 == 0:
            self._workers = [w["id"] for w in self.platform.workers() if w["alive"]]
        self.sent += 1
        path = spec["path"].replace("{job}", self._job_id(spec["job"]))
        path = path.replace("{worker}", self._worker_id(spec["worker"]))
        # Bytes: header values are not always ASCII here, and httpx encodes str as ASCII.
        headers = {k: v.encode("utf-8") for k, v in spec["headers"].items()}
        if spec["auth"] == "worker":
            headers["authorization"] = f"Bearer {self.platform.worker_token}".encode()
        elif spec["auth"] == "garbage":
            headers["authorization"] = b"Bearer wrong-key"
        response = self.http.request(
            spec["method"],
            path,
            params=spec["query"],
            headers=headers,
            content=spec.get("body") or b"",
        )
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (
            f"{spec['method']} {path} answered {response.status_code}: {response.text[:500]}"
            f"\nrequest: {fz.clip(spec, 600)}"
        )
        route = path.split("/")[3] if path.count("/") >= 3 else ""
        if route in ("run", "runsync") and response.status_code == 200:
            self.accepted.append(response.json()["id"])
        assert not self.marker.exists(), f"a hostile pickle ran: {fz.clip(spec, 600)}"
        return response

    def _job_id(self, index: int | None) -> str:
        if index is None or not self.accepted:
            return f"no-such-job-{index}"
        return self.accepted[index % len(self.accepted)]

    def _worker_id(self, index: int | None) -> str:
        if index is None or not self._workers:
            return f"no-such-worker-{index}"
        return self._workers[index % len(self._workers)]

    def wait_all_final(self, deadline_s: float = FINAL_DEADLINE_S) -> dict[str, int]:
        """Poll until every accepted job is final; returns the count per final status."""
        pending = set(self.accepted)
        finals: dict[str, int] = {}
        end = time.monotonic() + deadline_s
        while pending:
            for job_id in sorted(pending):
                response = self.http.get(f"/v2/{fz.ENDPOINT}/status/{job_id}")
                status = response.json().get("status") or self.ended.get(job_id)
                if status in FINAL:
                    pending.discard(job_id)
                    finals[status] = finals.get(status, 0) + 1
                else:  # a job /status does not know must have ended, or it was lost
                    assert response.status_code != 404, f"job {job_id} was lost"
            if pending and time.monotonic() > end:
                raise AssertionError(
                    f"{len(pending)} accepted jobs not final after {deadline_s} s: "
                    f"{sorted(pending)[:5]}"
                )
            if pending:
                time.sleep(0.05)  # polling interval, not synchronisation: the loop re-checks
        # Jobs run after their request returned: only now has every hostile pickle had its go.
        assert not self.marker.exists(), "a hostile pickle ran in a job"
        return finals

    def check_still_serving(self) -> None:
        health = self.http.get(f"/v2/{fz.ENDPOINT}/health")
        assert health.status_code == 200, health.text
        answer = self.http.post(
            f"/v2/{fz.ENDPOINT}/runsync",
            json={"input": fz.good_pickled_input(self.key, 2, 3)},
        ).json()
        assert answer["status"] == "COMPLETED", answer
        assert fz.unpickle_result(answer["output"]) == 5, answer
        answer = self.http.post(
            f"/v2/{fz.ENDPOINT}/runsync", json={"input": fz.good_json_input(4, 5)}
        ).json()
        assert answer["status"] == "COMPLETED" and answer["output"]["result"] == 9, answer


def start_platform(root: Path) -> tuple[LocalPlatform, bytes]:
    """A platform serving the fuzz app with one worker, and the app's signing key."""
    key = generate_key()
    app = fz.write_served_app(root / "app")
    platform = LocalPlatform(
        root / "state", echo=Logs(), max_workers=2, worker_env={KEY_ENV_VAR: key_to_text(key)}
    )
    platform.start()
    platform.load_app(app)
    return platform, key


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayFuzzer]:
    root = tmp_path_factory.mktemp("fuzz-gateway")
    platform, key = start_platform(root)
    fuzzer = GatewayFuzzer(platform, key, root / "pwned")
    try:
        yield fuzzer
    finally:
        fuzzer.close()
        platform.stop()


def test_gateway_survives_random_requests(fuzzer: GatewayFuzzer) -> None:
    fuzzer.check_still_serving()

    @settings(
        max_examples=REQUESTS,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(spec=fz.http_requests(key=fuzzer.key, marker=fuzzer.marker))
    def fuzz(spec: dict[str, Any]) -> None:
        fuzzer.send(spec)

    fuzz()
    finals = fuzzer.wait_all_final()
    print(f"statuses {sorted(fuzzer.statuses.items())}, {len(fuzzer.accepted)} jobs: {finals}")
    assert len(fuzzer.accepted) >= REQUESTS // 10, fuzzer.statuses
    fuzzer.check_still_serving()


def test_gateway_limits_and_deep_bodies(fuzzer: GatewayFuzzer) -> None:
    """The extremes, every time: an oversize body gets 413, a body nested deeper than the
    gateway parses gets 400 on the client and the worker routes, one within the limit is
    accepted and its job ends."""
    url = f"/v2/{fz.ENDPOINT}"
    oversize = b'{"input": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    response = fuzzer.http.post(f"{url}/run", content=oversize)
    assert response.status_code == 413, response.text
    for depth in (MAX_JSON_DEPTH + 1, 100_000):
        for kind in ("list", "dict"):
            body = '{"input": ' + fz.deep_json_text(depth, kind) + "}"
            response = fuzzer.http.post(f"{url}/run", content=body.encode())
            assert response.status_code == 400, (response.status_code, response.text[:300])
            assert "nested deeper" in response.text
            # The error names where, but must not grow with the body.
            assert len(response.text) < 4096, len(response.text)
    worker = next(w["id"] for w in fuzzer.platform.workers() if w["alive"])
    response = fuzzer.http.post(
        f"{url}/job-done/{worker}/no-such-job",
        content=fz.deep_json_text(100_000).encode(),
        headers={"authorization": f"Bearer {fuzzer.platform.worker_token}"},
    )
    assert response.status_code == 400, (response.status_code, response.text[:300])
    within = MAX_JSON_DEPTH - 10
    for job_input in (
        fz.nested(within),
        {"function": "tree", "kwargs": {"node": fz.nested(within - 5, kind="dict")}},
        {"function_name": "add", "args": fz.nested(within - 5)},
    ):
        response = fuzzer.http.post(f"{url}/run", content=json.dumps({"input": job_input}))
        assert response.status_code == 200, response.text[:300]
        fuzzer.accepted.append(response.json()["id"])
    fuzzer.wait_all_final()
    fuzzer.check_still_serving()


def test_a_job_whose_answer_cannot_be_written_still_ends(fuzzer: GatewayFuzzer) -> None:
    nines = "9" * 4300  # the most digits the gateway's JSON parser takes; the sum has one more
    body = '{"input": {"function": "add", "kwargs": {"a": ' + nines + ', "b": ' + nines + "}}}"
    answer = fuzzer.http.post(f"/v2/{fz.ENDPOINT}/runsync?wait=3000", content=body).json()
    assert answer["status"] in FINAL, answer
