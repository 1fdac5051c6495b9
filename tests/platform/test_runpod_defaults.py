"""RunPod's documented defaults and the /status ttl: limits a job gets without asking."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from tests.helpers import wait_for
from tests.platform.apps import BASIC, ended, write_app

from flash.platform.local import LocalPlatform
from flash.platform.manifest import PlatformError

HEADERS = {"Authorization": "Bearer test-key"}


def _post(platform: LocalPlatform, path: str, body: dict[str, object]) -> dict[str, object]:
    response = requests.post(f"{platform.url}/v2/{path}", json=body, headers=HEADERS, timeout=60)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _status(platform: LocalPlatform, path: str) -> requests.Response:
    return requests.get(f"{platform.url}/v2/{path}", headers=HEADERS, timeout=60)


def test_a_job_with_no_timeout_set_gets_the_default_one(tmp_path: Path, platform_factory) -> None:
    app = write_app(
        tmp_path / "app",
        {"plain": (BASIC, {}), "patient": (BASIC, {"executionTimeoutMs": 60_000})},
    )
    platform = platform_factory(app, default_execution_timeout_ms=1000)
    hung = _post(platform, "plain/run", {"input": {"action": "hang"}})
    final = ended(platform, "plain", str(hung["id"]))
    assert final["status"] == "TIMED_OUT", final
    assert "execution timeout of 1000 ms" in final["error"]
    # The endpoint's own timeout wins over the default.
    slow = _post(platform, "patient/runsync", {"input": {"action": "sleep", "seconds": 2}})
    assert slow["status"] == "COMPLETED", slow


def test_a_job_no_worker_takes_times_out_after_the_default_ttl(
    tmp_path: Path, platform_factory
) -> None:
    platform = platform_factory(
        write_app(tmp_path / "app", {"basic": (BASIC, {})}), default_ttl_ms=500
    )
    # Low priority: it starts no worker, and none is running, so it waits for good.
    job = _post(platform, "basic/run", {"input": {}, "policy": {"lowPriority": True}})
    final = ended(platform, "basic", str(job["id"]))
    assert final["status"] == "TIMED_OUT", final
    assert "ttl of 500 ms" in final["error"]


def test_status_ttl_removes_a_result_sooner_also_after_a_restart(
    tmp_path: Path, platform_factory
) -> None:
    app = write_app(tmp_path / "app", {"basic": (BASIC, {}), "idle": (BASIC, {})})
    platform = platform_factory(app)
    done = _post(platform, "basic/runsync", {"input": {"value": 1}})
    assert done["status"] == "COMPLETED", done
    kept = _status(platform, f"basic/status/{done['id']}?ttl=3000")
    assert kept.status_code == 200 and kept.json()["output"] == {"echo": 1}
    # Asked while the job waits: counted from its end.
    waiting = _post(platform, "idle/run", {"input": {}, "policy": {"lowPriority": True}})
    assert _status(platform, f"idle/status/{waiting['id']}?ttl=3000").json()["status"] == (
        "IN_QUEUE"
    )
    platform.stop()
    restarted = platform_factory(app, tmp_path / "state")
    cancelled = requests.post(
        f"{restarted.url}/v2/idle/cancel/{waiting['id']}", headers=HEADERS, timeout=60
    )
    assert cancelled.json()["status"] == "CANCELLED"
    # Usually kept for 1 and 30 minutes.
    for path in (f"basic/status/{done['id']}", f"idle/status/{waiting['id']}"):
        wait_for(lambda path=path: _status(restarted, path).status_code == 404, 20, f"{path} to go")


def test_a_bad_status_ttl_is_a_400_naming_it(tmp_path: Path, platform_factory) -> None:
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))
    done = _post(platform, "basic/runsync", {"input": {"value": 1}})
    for bad in ("soon", "0", "-5", "1.5"):
        refused = _status(platform, f"basic/status/{done['id']}?ttl={bad}")
        assert refused.status_code == 400, (bad, refused.text)
        assert "'ttl'" in refused.json()["error"]
    assert _status(platform, f"basic/status/{done['id']}").json()["output"] == {"echo": 1}


def test_an_idempotency_key_of_a_job_whose_result_expired_queues_a_new_one(
    tmp_path: Path, platform_factory
) -> None:
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))

    def run() -> str:
        response = requests.post(
            f"{platform.url}/v2/basic/run",
            json={"input": {"value": 1}},
            headers={**HEADERS, "Idempotency-Key": "key-1"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    first = run()
    assert ended(platform, "basic", first)["status"] == "COMPLETED"
    assert run() == first  # while its result is kept, the key names that job
    assert _status(platform, f"basic/status/{first}?ttl=1").status_code == 200
    wait_for(lambda: _status(platform, f"basic/status/{first}").status_code == 404, 10, "expiry")
    second = run()
    assert second != first and ended(platform, "basic", second)["status"] == "COMPLETED"


@pytest.mark.parametrize("limit", ["default_execution_timeout_ms", "default_ttl_ms"])
def test_a_default_limit_under_a_millisecond_is_refused(tmp_path: Path, limit: str) -> None:
    with pytest.raises(PlatformError, match=f"^{limit} must be at least 1 ms, got 0$"):
        LocalPlatform(tmp_path / "state", **{limit: 0})
