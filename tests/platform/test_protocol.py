"""Both worker loops send the platform the same information for the same jobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import runpod
from tests.helpers import Logs, wait_for
from tests.platform.apps import BASIC, GEN, use_client, write_app

from flash.platform.local import LocalPlatform

JOBS: list[tuple[str, dict[str, Any]]] = [
    ("basic", {"action": "echo", "value": {"nested": [1, 2]}}),
    ("basic", {"action": "scalar", "value": "plain"}),
    ("basic", {"action": "error_dict"}),
    ("basic", {"action": "raise", "message": "kaput"}),
    ("gen", {"n": 2}),
    ("gen", {"n": 1, "fail": True}),
]


def _record(tmp_path: Path, loop: str) -> list[dict[str, Any]]:
    requests: list[dict[str, Any]] = []
    app = write_app(tmp_path / loop / "app", {"basic": (BASIC, {}), "gen": (GEN, {})})
    platform = LocalPlatform(
        tmp_path / loop / "state", echo=Logs(), worker_loop=loop, recorder=requests.append
    )
    platform.start()
    try:
        platform.load_app(app)
        use_client(platform)
        for endpoint, job_input in JOBS:
            job = runpod.Endpoint(endpoint).run(job_input)
            wait_for(
                lambda job=job: job.status() in ("COMPLETED", "FAILED"), 60, f"{job_input} to end"
            )
            requests.append({"job": job.job_id})
    finally:
        platform.stop()
    return requests


def _summarise(records: list[dict[str, Any]]) -> list[list[tuple[Any, ...]]]:
    """Per job, the job-done and job-stream requests reduced to what must match."""
    per_job: list[list[tuple[Any, ...]]] = []
    current: list[tuple[Any, ...]] = []
    for record in records:
        if "job" in record:
            per_job.append(current)
            current = []
            continue
        if record["route"] not in ("job-done", "job-stream"):
            continue
        headers = record["headers"]
        assert headers["x-request-id"] == record["path_params"]["job_id"]
        assert headers["content-type"] == "application/x-www-form-urlencoded"
        assert not headers["authorization"].startswith("Bearer")  # the raw worker key
        current.append(
            (record["route"], record["query"]["isStream"], _shape(json.loads(record["body"])))
        )
    return per_job


def _shape(body: dict[str, Any]) -> dict[str, Any]:
    """The body with host- and version-specific details of errors left out."""
    error = body.get("error")
    if isinstance(error, str) and error.startswith("{"):
        info = json.loads(error)
        body = {**body, "error": {k: info[k] for k in ("error_type", "error_message")}}
        body["error_keys"] = sorted(info)
    elif isinstance(error, str) and "traceback:" in error:
        body = {**body, "error": error.split("traceback:")[0]}
    return body


def test_both_loops_report_the_same_results(tmp_path: Path) -> None:
    ours = _summarise(_record(tmp_path, "flash"))
    sdk = _summarise(_record(tmp_path, "runpod"))
    assert ours == sdk
    # And what they carry is what the protocol says, job by job.
    assert ours[0] == [("job-done", "false", {"output": {"echo": {"nested": [1, 2]}}})]
    assert ours[2] == [
        ("job-done", "false", {"output": {"partial": 1}, "error": "bad thing happened"})
    ]
    assert ours[3][0][2]["error"] == {
        "error_type": "<class 'ValueError'>",
        "error_message": "kaput",
    }
    assert ours[4] == [
        ("job-stream", "false", {"output": {"chunk": 0}}),
        ("job-stream", "false", {"output": {"chunk": 1}}),
        ("job-done", "true", {"output": []}),
    ]
