"""Durability, limits, auth, scaling, webhooks, app replacement and clean shutdown."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import runpod
from tests.helpers import Logs, QuietHandler, group_alive, serve_http, wait_for
from tests.platform.apps import AIO, BASIC, LOOPS, ended, use_client, write_app

from flash.platform import supervisor as supervisor_module
from flash.platform.console import ConsoleLines
from flash.platform.local import LocalPlatform
from flash.platform.manifest import read_manifest
from flash.runtime.protocol import MAX_POLICY_MS


def _failure_of_one_job(tmp_path: Path, platform_factory: Any, handler: str) -> str:
    """The error of one job run on an endpoint served by ``handler``, which must fail it."""
    platform = platform_factory(write_app(tmp_path / "app", {"ep": (handler, {})}))
    job = _post(platform, "ep/run", json={"input": {}}).json()
    final = ended(platform, "ep", job["id"])
    assert final["status"] == "FAILED", final
    return str(final["error"])


def _post(
    platform: LocalPlatform,
    path: str,
    key: str = "test-key",
    headers: dict[str, str] | None = None,
    **kw: object,
):
    headers = {"Authorization": f"Bearer {key}", **(headers or {})}
    return requests.post(f"{platform.url}/v2/{path}", headers=headers, timeout=60, **kw)


def _get(platform: LocalPlatform, path: str, key: str = "test-key"):
    return requests.get(
        f"{platform.url}/v2/{path}", headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def _wait_started(platform: LocalPlatform, endpoint: str, job_id: str) -> None:
    wait_for(
        lambda: _get(platform, f"{endpoint}/status/{job_id}").json()["status"] == "IN_PROGRESS",
        30,
        f"job {job_id} to start",
    )


def test_payload_limits_answer_413_with_a_message(tmp_path: Path, platform_factory) -> None:
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))
    big = {"input": {"action": "echo", "pad": "x" * (10 * 1024 * 1024 + 10)}}
    refused = _post(platform, "basic/run", json=big)
    assert refused.status_code == 413
    assert "exceeds the /run limit of 10 MB" in refused.json()["error"]
    # /runsync allows twice as much: the same request runs there.
    accepted = _post(platform, "basic/runsync", json=big)
    assert accepted.status_code == 200 and accepted.json()["output"] == {"echo": None}
    huge = {"input": {"pad": "x" * (20 * 1024 * 1024 + 10)}}
    assert _post(platform, "basic/runsync", json=huge).status_code == 413


def test_malformed_requests_are_400_with_a_message(tmp_path: Path, platform_factory) -> None:
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))
    no_input = _post(platform, "basic/run", json={"inputs": {}})
    assert no_input.status_code == 400 and "'input' field" in no_input.json()["error"]
    bad_json = _post(platform, "basic/run", data=b"{nope")
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]
    bad_policy = _post(platform, "basic/run", json={"input": {}, "policy": {"ttl": "soon"}})
    assert "policy.ttl" in bad_policy.json()["error"]
    not_a_bool = _post(platform, "basic/run", json={"input": {}, "policy": {"lowPriority": 1}})
    assert not_a_bool.status_code == 400
    assert not_a_bool.json()["error"] == "'policy.lowPriority' must be true or false"


def test_a_policy_longer_than_seven_days_is_refused_by_name(
    tmp_path: Path, platform_factory
) -> None:
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))
    week = MAX_POLICY_MS
    huge_ttl = '{"input": {"action": "echo"}, "policy": {"ttl": 1' + "0" * 400 + "}}"
    refused = _post(platform, "basic/run", data=huge_ttl)
    assert refused.status_code == 400
    assert f"'policy.ttl' must be at most {week} ms (7 days)" in refused.json()["error"]
    too_slow = {"input": {}, "policy": {"executionTimeout": week + 1}}
    refused = _post(platform, "basic/runsync", json=too_slow)
    assert refused.status_code == 400 and "'policy.executionTimeout'" in refused.json()["error"]
    assert _get(platform, "basic/health").json()["jobs"]["inQueue"] == 0  # nothing half-queued
    longest = {"ttl": week, "executionTimeout": week}
    job = _post(platform, "basic/run", json={"input": {"action": "echo"}, "policy": longest})
    assert ended(platform, "basic", job.json()["id"])["status"] == "COMPLETED"


@pytest.mark.parametrize("loop", LOOPS)
def test_api_key_guards_every_route_and_workers_use_it(
    tmp_path: Path, platform_factory, loop: str
) -> None:
    app = write_app(tmp_path / "app", {"basic": (BASIC, {})})
    platform = platform_factory(app, api_key="s3cret", worker_loop=loop)
    for path in ("basic/health", "basic/status/x"):
        assert _get(platform, path, key="wrong").status_code == 401
    denied = requests.post(f"{platform.url}/v2/basic/run", json={"input": {}}, timeout=10)
    assert denied.status_code == 401
    assert "API key" in denied.json()["error"]
    stolen = _get(platform, "basic/job-take/anyone?gpu=none", key="wrong")
    assert stolen.status_code == 401
    # The API key is a caller's: it takes no other caller's job as a worker would.
    taken = _get(platform, "basic/job-take/anyone?gpu=none", key="s3cret")
    assert taken.status_code == 401
    use_client(platform, api_key="s3cret")
    assert runpod.Endpoint("basic").run_sync({"action": "echo", "value": 1}, timeout=60) == {
        "echo": 1
    }


def test_restart_keeps_queued_jobs_results_and_requeues_running_ones(
    tmp_path: Path, platform_factory
) -> None:
    app = write_app(tmp_path / "app", {"basic": (BASIC, {"workersMax": 1})})
    state = tmp_path / "state"
    first = platform_factory(app, state)
    done = _post(first, "basic/run", json={"input": {"action": "echo", "value": "kept"}})
    ended(first, "basic", done.json()["id"])
    running = _post(first, "basic/run", json={"input": {"action": "sleep", "seconds": 2}})
    queued = [
        _post(first, "basic/run", json={"input": {"action": "echo", "value": i}}).json()["id"]
        for i in range(3)
    ]
    _wait_started(first, "basic", running.json()["id"])
    first.stop(grace_s=0.2)  # the sleeper cannot finish in time

    second = platform_factory(app, state)
    assert _get(second, f"basic/status/{done.json()['id']}").json()["output"] == {"echo": "kept"}
    assert ended(second, "basic", running.json()["id"])["output"] == {"slept": 2}
    outputs = [ended(second, "basic", job_id)["output"] for job_id in queued]
    assert outputs == [{"echo": i} for i in range(3)]


def test_restart_serves_a_finished_job_whose_stored_input_is_damaged(
    tmp_path: Path, platform_factory
) -> None:
    app = write_app(tmp_path / "app", {"basic": (BASIC, {"workersMax": 1})})
    state = tmp_path / "state"
    first = platform_factory(app, state)
    job_input = {"action": "echo", "value": "kept", "pad": "damage-me " * 100}
    job_id = _post(first, "basic/run", json={"input": job_input}).json()["id"]
    assert ended(first, "basic", job_id)["status"] == "COMPLETED"
    first.stop(grace_s=1)
    # A stray quote inside the stored input, wherever the store keeps it: not JSON any more.
    _damage(state / "jobs.db", "damage-me", 'damage"me')

    second = platform_factory(app, state)
    status = _get(second, f"basic/status/{job_id}").json()
    assert status["status"] == "COMPLETED" and status["output"] == {"echo": "kept"}


def test_restart_fails_queued_jobs_whose_stored_record_is_damaged_and_runs_the_rest(
    tmp_path: Path, platform_factory
) -> None:
    app = write_app(tmp_path / "app", {"basic": (BASIC, {"workersMax": 1})})
    state = tmp_path / "state"
    first = platform_factory(app, state)
    sleeper = _post(first, "basic/run", json={"input": {"action": "sleep", "seconds": 1}})
    _wait_started(first, "basic", sleeper.json()["id"])
    # Values big enough for the store to keep them apart from the job's row.
    values = {part: f"damage-{part} " * 1000 for part in ("request", "state", "input", "nothing")}
    queued = {}
    for part, value in values.items():
        job_input = {"action": "echo", "value": value}
        queued[part] = _post(first, "basic/run", json={"input": job_input}).json()["id"]
    first.stop(grace_s=0.2)  # the sleeper cannot finish in time: the others stay queued
    db = sqlite3.connect(state / "jobs.db")
    for column in ("request", "state"):
        db.execute(f"UPDATE jobs SET {column} = '{{not json' WHERE id = ?", (queued[column],))
    db.commit()
    db.close()
    _damage(state / "jobs.db", "damage-input", 'damage"input')

    second = platform_factory(app, state)
    for part in ("request", "state", "input"):
        failed = ended(second, "basic", queued[part])
        assert failed["status"] == "FAILED", part
        assert queued[part] in failed["error"] and "could not be read" in failed["error"]
    assert ended(second, "basic", queued["nothing"])["output"] == {"echo": values["nothing"]}
    assert ended(second, "basic", sleeper.json()["id"])["output"] == {"slept": 1}
    retried = _post(second, f"basic/retry/{queued['input']}")
    assert retried.status_code == 400 and "could not be read" in retried.json()["error"]
    second.stop(grace_s=1)
    # Stored as failed: the next start reads it again.
    third = platform_factory(app, state)
    again = _get(third, f"basic/status/{queued['request']}").json()
    assert again["status"] == "FAILED" and "could not be read" in again["error"]


def _damage(db_path: Path, text: str, damaged: str) -> None:
    """Replace ``text`` with ``damaged`` in every text column of every table, and in every
    payload file."""
    for path in db_path.with_name(f"{db_path.stem}-payloads").iterdir():
        path.write_text(path.read_text().replace(text, damaged))
    db = sqlite3.connect(db_path)
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        for column in [row[1] for row in db.execute(f"PRAGMA table_info({table})")]:
            db.execute(
                f"UPDATE {table} SET {column} = replace({column}, ?, ?)"
                f" WHERE typeof({column}) = 'text'",
                (text, damaged),
            )
    db.commit()
    db.close()


def _database_of_an_earlier_version(
    tmp_path: Path, *, status: str, request: dict[str, Any], state: dict[str, Any]
) -> Path:
    """A state folder whose jobs.db holds one job, ``old-job``, in the first table layout:
    input inside ``request``, output inside ``state``, no other column or table."""
    folder = tmp_path / "state"
    folder.mkdir()
    settings = {"webhook": None, "execution_timeout_ms": None, "ttl_ms": None, "sync": False}
    with contextlib.closing(sqlite3.connect(folder / "jobs.db")) as db, db:
        db.execute(
            "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
            " endpoint TEXT NOT NULL, status TEXT NOT NULL, request TEXT NOT NULL,"
            " created_at REAL NOT NULL, state TEXT NOT NULL)"
        )
        db.execute(
            "INSERT INTO jobs (id, endpoint, status, request, created_at, state)"
            " VALUES ('old-job', 'basic', ?, ?, ?, ?)",
            (status, json.dumps(settings | request), time.time(), json.dumps(state)),
        )
    return folder


def test_a_job_queued_in_a_database_of_an_earlier_version_runs(
    tmp_path: Path, platform_factory
) -> None:
    # Before inputs had their own column they were kept inside ``request``.
    state = _database_of_an_earlier_version(
        tmp_path,
        status="IN_QUEUE",
        request={"input": {"action": "echo", "value": "old"}},
        state={},
    )
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}), state)
    assert ended(platform, "basic", "old-job")["output"] == {"echo": "old"}


def test_a_result_kept_in_a_database_of_an_earlier_version_is_served(
    tmp_path: Path, platform_factory
) -> None:
    # Before outputs had a table of their own they were kept inside ``state``.
    state = _database_of_an_earlier_version(
        tmp_path,
        status="COMPLETED",
        request={},
        state={"has_output": True, "output": {"echo": "old"}, "expires_at": 4e9},
    )
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}), state)
    status = _get(platform, "basic/status/old-job").json()
    assert status["status"] == "COMPLETED" and status["output"] == {"echo": "old"}


@pytest.mark.parametrize("loop", LOOPS)
def test_stop_leaves_no_worker_processes(tmp_path: Path, platform_factory, loop: str) -> None:
    app = write_app(tmp_path / "app", {"basic": (BASIC, {"workersMin": 2, "workersMax": 2})})
    platform = platform_factory(app, worker_loop=loop)
    workers = wait_for(
        lambda: (w := platform.workers()) and all(x["cold_start_ms"] for x in w) and w,
        60,
        "two workers to be ready",
    )
    assert len(workers) == 2
    _post(platform, "basic/run", json={"input": {"action": "hang"}})
    platform.stop(grace_s=0.5)
    for worker in workers:
        assert not group_alive(worker["pid"]), f"worker {worker['id']} left processes behind"


def test_request_count_scales_up_and_idle_workers_stop(tmp_path: Path, platform_factory) -> None:
    config = {"scalerType": "REQUEST_COUNT", "scalerValue": 1, "workersMax": 3, "idleTimeout": 1}
    logs = Logs()
    app = write_app(tmp_path / "app", {"rc": (AIO, config)})
    platform = platform_factory(app, max_workers=4, echo=logs)
    ep = runpod.Endpoint("rc")
    jobs = [ep.run({"seconds": 1.5}) for _ in range(3)]
    pids = {job.output(timeout=60)["pid"] for job in jobs}
    assert len(pids) == 3
    try:
        wait_for(lambda: not any(w["alive"] for w in platform.workers()), 20, "idle workers' end")
    except AssertionError as exc:  # it failed twice on a loaded machine: say what was left
        raise AssertionError(f"{exc}\n{platform.workers()}\n{logs.text()[-3000:]}") from None


def test_queue_delay_adds_a_worker_when_jobs_wait_too_long(
    tmp_path: Path, platform_factory
) -> None:
    config = {
        "scalerType": "QUEUE_DELAY",
        "scalerValue": 0.5,
        "workersMax": 2,
        "workersMin": 1,
        "idleTimeout": 1,
    }
    platform = platform_factory(write_app(tmp_path / "app", {"qd": (BASIC, config)}))
    wait_for(lambda: platform.workers(), 10, "the minimum worker")
    ep = runpod.Endpoint("qd")
    jobs = [ep.run({"action": "sleep", "seconds": 1}) for _ in range(4)]
    for job in jobs:
        job.output(timeout=60)
    assert len(platform.workers()) == 2
    finished = [_get(platform, f"qd/status/{j.job_id}").json() for j in jobs]
    assert len({f["workerId"] for f in finished}) == 2
    # Once nothing waits, the extra worker stops after idleTimeout; workersMin stays.
    wait_for(
        lambda: sum(w["alive"] for w in platform.workers()) == 1, 20, "the idle worker to stop"
    )


@pytest.mark.parametrize("scaler", ["QUEUE_DELAY", "REQUEST_COUNT"])
def test_a_low_priority_job_starts_no_worker_and_runs_on_one_others_start(
    tmp_path: Path, platform_factory, scaler: str
) -> None:
    # Room for two workers: a low-priority job that counted would have a second started.
    config = {"scalerType": scaler, "scalerValue": 1, "workersMax": 2, "idleTimeout": 600}
    platform = platform_factory(write_app(tmp_path / "app", {"lp": (BASIC, config)}))
    supervisor = platform.supervisor
    assert supervisor is not None
    low = {"input": {"action": "echo", "value": "low"}, "policy": {"lowPriority": True}}
    waiting = _post(platform, "lp/run", json=low).json()["id"]
    # The scaler's decision, taken now on the platform's loop, as its ticks take it.
    platform.call(lambda: supervisor._scale("lp"))
    assert platform.call(lambda: supervisor._starting["lp"]) == 0 and not platform.workers()
    assert _get(platform, f"lp/status/{waiting}").json()["status"] == "IN_QUEUE"
    urgent = _post(platform, "lp/run", json={"input": {"action": "echo", "value": "now"}})
    done = [ended(platform, "lp", job_id) for job_id in (urgent.json()["id"], waiting)]
    assert [job["output"] for job in done] == [{"echo": "now"}, {"echo": "low"}]
    # The low job ran on the worker the urgent job started. (First in the queue, it may run
    # first; while it does and the urgent one waits, REQUEST_COUNT may add a worker.)
    assert done[1]["workerId"] == platform.workers()[0]["id"]


def test_machine_wide_cap_moves_an_idle_worker_to_a_hungry_endpoint(
    tmp_path: Path, platform_factory
) -> None:
    app = write_app(
        tmp_path / "app", {"a": (BASIC, {"idleTimeout": 600}), "b": (BASIC, {"idleTimeout": 600})}
    )
    platform = platform_factory(app, max_workers=1)
    assert runpod.Endpoint("a").run_sync({"action": "echo", "value": "a"}, timeout=30)
    assert runpod.Endpoint("b").run_sync({"action": "echo", "value": "b"}, timeout=30) == {
        "echo": "b"
    }
    workers = platform.workers()
    assert [w["endpoint"] for w in workers] == ["a", "b"]
    assert not workers[0]["alive"]


def test_only_the_latest_workers_are_listed(
    tmp_path: Path, platform_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor_module, "HISTORY_WORKERS", 2)
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))
    ep = runpod.Endpoint("basic")
    # Each job asks for a fresh worker afterwards: three jobs, three workers.
    pids = [ep.run_sync({"action": "refresh"}, timeout=30)["pid"] for _ in range(3)]
    assert len(set(pids)) == 3
    assert [w["pid"] for w in platform.workers()] == pids[1:]


class _Hooks(QuietHandler):
    received: list[dict] = []
    arrived = threading.Event()

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()
        type(self).arrived.set()


def test_webhook_receives_the_final_status(tmp_path: Path, platform_factory) -> None:
    with serve_http(_Hooks) as port:
        platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))
        hook = f"http://127.0.0.1:{port}/done"
        job = _post(
            platform, "basic/run", json={"input": {"action": "echo", "value": 9}, "webhook": hook}
        ).json()
        assert _Hooks.arrived.wait(30)
        body = _Hooks.received[0]
        assert body["id"] == job["id"]
        assert body["status"] == "COMPLETED"
        assert body["output"] == {"echo": 9}


class _FailingHooks(QuietHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(503)
        self.end_headers()


def test_a_failing_webhook_is_logged_without_its_token(tmp_path: Path, platform_factory) -> None:
    with serve_http(_FailingHooks) as port:
        logs = Logs()
        app = write_app(tmp_path / "app", {"basic": (BASIC, {})})
        platform = platform_factory(app, echo=logs, webhook_retry_delay_s=0.05)
        origin = f"http://127.0.0.1:{port}"
        hook = f"http://user:pw-s3cret@127.0.0.1:{port}/hook?token=s3cret"
        body = {"input": {"action": "echo"}, "webhook": hook}
        job = _post(platform, "basic/run", json=body).json()
        wait_for(lambda: "failed 3 times" in logs.text(), 30, "the webhook to be given up")
        assert f"webhook to {origin} for job {job['id']} failed 3 times" in logs.text()
        assert "s3cret" not in logs.text()


VERSIONED = """
import time
from flash.runtime.worker import start

def handler(job):
    time.sleep(job["input"].get("seconds", 0))
    return {"version": VERSION}

if __name__ == "__main__":
    start(handler)
"""


def test_replace_app_finishes_running_jobs_on_old_workers(tmp_path: Path, platform_factory) -> None:
    v1 = write_app(tmp_path / "v1", {"svc": (VERSIONED.replace("VERSION", "1"), {})})
    v2 = write_app(tmp_path / "v2", {"svc": (VERSIONED.replace("VERSION", "2"), {})})
    platform = platform_factory(v1)
    ep = runpod.Endpoint("svc")
    long_job = ep.run({"seconds": 1.5})
    wait_for(lambda: long_job.status() == "IN_PROGRESS", 30, "the long job to start")
    platform.replace_app(v2)
    assert ep.run_sync({"seconds": 0}, timeout=60) == {"version": 2}
    assert long_job.output(timeout=60) == {"version": 1}
    wait_for(lambda: platform.workers()[0]["alive"] is False, 20, "the old worker to exit")


def test_queued_jobs_of_an_endpoint_the_new_build_drops_fail_with_the_reason(
    tmp_path: Path, platform_factory
) -> None:
    v1 = write_app(tmp_path / "v1", {"a": (BASIC, {"workersMax": 1}), "b": (BASIC, {})})
    v2 = write_app(tmp_path / "v2", {"b": (BASIC, {})})
    removed = "endpoint a was removed by the new build"

    def busy_and_queued(platform: LocalPlatform) -> tuple[str, str]:
        busy = _post(platform, "a/run", json={"input": {"action": "hang"}}).json()["id"]
        _wait_started(platform, "a", busy)
        queued = _post(platform, "a/run", json={"input": {"action": "echo"}}).json()["id"]
        return busy, queued

    state = tmp_path / "state"
    platform = platform_factory(v1, state)
    busy, queued = busy_and_queued(platform)
    platform.replace_app(v2)
    # The old worker dies while draining: its job goes back to a queue nobody serves.
    old = next(w for w in platform.workers() if w["endpoint"] == "a")
    os.kill(old["pid"], signal.SIGKILL)
    wait_for(
        lambda: not next(w["alive"] for w in platform.workers() if w["id"] == old["id"]),
        10,
        "the old worker to die",
    )
    for job_id in (busy, queued):  # their status can still be read, though a is gone
        final = ended(platform, "a", job_id)
        assert final["status"] == "FAILED" and removed in final["error"]
    assert _get(platform, "a/health").status_code == 404  # the endpoint itself is gone

    # Queued when the platform stopped, and the next start serves a build without a.
    platform.replace_app(v1)
    busy, queued = busy_and_queued(platform)
    platform.stop(grace_s=0.2)  # the busy job is run again at the next start
    restarted = platform_factory(v2, state)
    for job_id in (busy, queued):
        final = ended(restarted, "a", job_id)
        assert final["status"] == "FAILED" and removed in final["error"]


def test_a_worker_starting_when_the_app_is_replaced_does_not_serve_the_old_build(
    tmp_path: Path, platform_factory
) -> None:
    # v1 starts a worker at once (workersMin 1); v2 replaces it before that worker's process
    # exists. The worker must not go on serving v1 once it has started.
    v0 = write_app(tmp_path / "v0", {"other": (BASIC, {})})
    v1 = write_app(tmp_path / "v1", {"svc": (VERSIONED.replace("VERSION", "1"), {"workersMin": 1})})
    v2 = write_app(tmp_path / "v2", {"svc": (VERSIONED.replace("VERSION", "2"), {"workersMin": 1})})
    platform = platform_factory(v0)

    async def deploy_twice() -> None:
        assert platform.supervisor is not None
        for app in (v1, v2):
            for spec in read_manifest(app).values():
                platform.supervisor.deploy(spec, app)

    platform._call(deploy_twice())
    assert runpod.Endpoint("svc").run_sync({}, timeout=60) == {"version": 2}
    wait_for(
        lambda: next(w["alive"] for w in platform.workers() if w["endpoint"] == "svc") is False,
        30,
        "the worker started for v1 to exit",
    )


def test_ttl_ends_a_job_that_waited_too_long(tmp_path: Path, platform_factory) -> None:
    platform = platform_factory(write_app(tmp_path / "app", {"one": (BASIC, {"workersMax": 1})}))
    busy = _post(platform, "one/run", json={"input": {"action": "sleep", "seconds": 2}}).json()
    late = _post(
        platform, "one/run", json={"input": {"action": "echo"}, "policy": {"ttl": 300}}
    ).json()
    final = ended(platform, "one", late["id"])
    assert final["status"] == "TIMED_OUT"
    assert "ttl of 300 ms" in final["error"]
    assert ended(platform, "one", busy["id"])["status"] == "COMPLETED"


def test_runsync_wait_answers_early_and_the_job_finishes(tmp_path: Path, platform_factory) -> None:
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))
    early = _post(
        platform, "basic/runsync?wait=100", json={"input": {"action": "sleep", "seconds": 1}}
    ).json()
    assert early["status"] in ("IN_QUEUE", "IN_PROGRESS")
    assert "output" not in early
    assert ended(platform, "basic", early["id"])["output"] == {"slept": 1}


def test_a_bad_runsync_wait_is_refused_before_any_job_exists(
    tmp_path: Path, platform_factory
) -> None:
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))
    for wait in ("abc", "-5", "1.5"):
        answer = _post(platform, f"basic/runsync?wait={wait}", json={"input": {"action": "echo"}})
        assert answer.status_code == 400
        assert "'wait' must be a whole number of milliseconds" in answer.json()["error"]
    health = _get(platform, "basic/health").json()
    assert health["jobs"]["completed"] == 0 and health["jobs"]["inQueue"] == 0


def test_a_runsync_wait_of_any_length_is_read_as_its_number(
    tmp_path: Path, platform_factory
) -> None:
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))
    huge = _post(platform, "basic/runsync?wait=99999999999999", json={"input": {"action": "echo"}})
    assert huge.status_code == 200 and huge.json()["status"] == "COMPLETED"
    # Zeros in front change nothing: no wait, however many there are.
    sleeper = {"input": {"action": "sleep", "seconds": 1}}
    none = _post(platform, f"basic/runsync?wait={'0' * 20}", json=sleeper).json()
    assert none["status"] in ("IN_QUEUE", "IN_PROGRESS")


def test_finished_results_expire_as_in_production(tmp_path: Path, platform_factory) -> None:
    import time

    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))
    synced = _post(platform, "basic/runsync", json={"input": {"action": "echo"}}).json()
    queued = _post(platform, "basic/run", json={"input": {"action": "echo"}}).json()
    ended(platform, "basic", queued["id"])
    dispatcher = platform.dispatcher
    assert dispatcher is not None
    platform.call(lambda: dispatcher.prune(time.time() + 61))  # a minute later
    assert _get(platform, f"basic/status/{synced['id']}").status_code == 404
    assert _get(platform, f"basic/status/{queued['id']}").status_code == 200
    platform.call(lambda: dispatcher.prune(time.time() + 31 * 60))  # half an hour later
    assert _get(platform, f"basic/status/{queued['id']}").status_code == 404


def test_a_cancelled_queued_job_that_expires_leaves_the_queue_working(
    tmp_path: Path, platform_factory
) -> None:
    import time

    platform = platform_factory(write_app(tmp_path / "app", {"one": (BASIC, {"workersMax": 1})}))
    busy = _post(platform, "one/run", json={"input": {"action": "hang"}}).json()
    _wait_started(platform, "one", busy["id"])
    synced = _post(platform, "one/runsync?wait=0", json={"input": {"action": "echo"}}).json()
    assert _post(platform, f"one/cancel/{synced['id']}").json()["status"] == "CANCELLED"
    dispatcher = platform.dispatcher
    assert dispatcher is not None
    platform.call(lambda: dispatcher.prune(time.time() + 61))  # its result expires
    assert _post(platform, "one/run", json={"input": {"action": "echo"}}).status_code == 200
    purged = _post(platform, "one/purge-queue")
    assert purged.status_code == 200 and purged.json()["removed"] == 1
    assert _get(platform, "one/health").json()["jobs"]["inQueue"] == 0


def test_scaling_goes_on_after_an_unexpected_error(tmp_path: Path, platform_factory) -> None:
    config = {"scalerType": "REQUEST_COUNT", "scalerValue": 1, "workersMax": 1, "idleTimeout": 1}
    logs = Logs()
    platform = platform_factory(write_app(tmp_path / "app", {"rc": (BASIC, config)}), echo=logs)
    supervisor = platform.supervisor
    assert supervisor is not None
    scale, failed = supervisor._scale, []

    def fails_for_a_while(name: str) -> None:  # a bug that shows up on five ticks running
        if len(failed) < 5:
            failed.append(name)
            raise RuntimeError("an unforeseen state")
        scale(name)

    platform.call(lambda: setattr(supervisor, "_scale", fails_for_a_while))
    wait_for(lambda: len(failed) == 5, 10, "five scaling decisions to fail")
    assert runpod.Endpoint("rc").run_sync({"action": "echo", "value": 1}, timeout=30)
    # Idle workers are stopped only by the scaler's periodic tick: it still runs.
    wait_for(lambda: not any(w["alive"] for w in platform.workers()), 20, "the idle worker to stop")
    # Logged once, not on every tick that failed the same way.
    assert logs.text().count("scaling endpoint rc failed: RuntimeError: an unforeseen state") == 1


def test_openapi_docs_are_served(tmp_path: Path, platform_factory) -> None:
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))
    schema = requests.get(f"{platform.url}/openapi.json", timeout=10).json()
    assert "/v2/{endpoint_id}/runsync" in schema["paths"]
    docs = requests.get(f"{platform.url}/docs", timeout=10)
    assert docs.status_code == 200 and "/openapi.json" in docs.text


def test_api_docs_describe_the_loaded_build_not_the_manifest_file_now(
    tmp_path: Path, platform_factory
) -> None:
    app = write_app(tmp_path / "app", {"basic": (BASIC, {})})
    platform = platform_factory(app)
    manifest = app / "flash_manifest.json"
    # Rewritten in place after loading: what is served is still the build that was loaded.
    manifest.write_text(manifest.read_text().replace("basic.handler", "basic.rewritten"))
    document = requests.get(f"{platform.url}/v2/basic/openapi.json", timeout=10).json()
    assert "basic.handler" in document["info"]["description"]
    page = requests.get(f"{platform.url}/docs", timeout=10).text
    assert "basic.handler" in page and "basic.rewritten" not in page


DEEP = """
from flash.runtime.worker import start

def handler(job):
    out = "leaf"
    for _ in range(job["input"]["depth"]):
        out = [out]
    return out

if __name__ == "__main__":
    start(handler)
"""


def test_a_result_the_gateway_refuses_fails_the_job_and_frees_its_worker(
    tmp_path: Path, platform_factory
) -> None:
    config = {"scalerType": "REQUEST_COUNT", "scalerValue": 1, "workersMax": 1, "idleTimeout": 1}
    platform = platform_factory(write_app(tmp_path / "app", {"deep": (DEEP, config)}))
    job = _post(platform, "deep/run", json={"input": {"depth": 300}}).json()
    final = ended(platform, "deep", job["id"])
    assert final["status"] == "FAILED"
    assert "result was refused" in final["error"] and "deeper than 256" in final["error"]
    assert len(final["error"]) < 300, final["error"]  # not the whole path, 256 levels long
    # Its worker is free again: it runs the next job, then stops once idle.
    nested = _post(platform, "deep/runsync", json={"input": {"depth": 2}}).json()
    assert nested["output"] == [["leaf"]]
    wait_for(lambda: not any(w["alive"] for w in platform.workers()), 20, "the worker to stop")


PROGRESS = """
import time
from pathlib import Path
import runpod

def handler(job):
    # Not JSON (the SDK writes NaN): the gateway refuses this update, and the job goes on.
    runpod.serverless.progress_update(job, {"loss": float("nan")})
    runpod.serverless.progress_update(job, {"step": 1})
    release = Path(job["input"]["release"])
    deadline = time.monotonic() + 30
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"done": True}

if __name__ == "__main__":
    runpod.serverless.start({"handler": handler})
"""


def test_progress_updates_show_in_status(tmp_path: Path, platform_factory) -> None:
    app = write_app(tmp_path / "app", {"prog": (PROGRESS, {})})
    platform = platform_factory(app)
    release = tmp_path / "release"
    job = _post(platform, "prog/run", json={"input": {"release": str(release)}}).json()
    progress = wait_for(
        lambda: (s := _get(platform, f"prog/status/{job['id']}").json()).get("output") and s,
        30,
        "a progress update",
    )
    assert progress["status"] == "IN_PROGRESS"
    assert progress["output"] == {"step": 1}
    release.write_text("go")
    assert ended(platform, "prog", job["id"])["output"] == {"done": True}


def test_our_loop_runs_sync_handlers_concurrently_in_threads(
    tmp_path: Path, platform_factory
) -> None:
    app = write_app(tmp_path / "app", {"threads": (BASIC, {"workersMax": 1, "concurrency": 3})})
    platform = platform_factory(app, worker_loop="flash")
    assert runpod.Endpoint("threads").run_sync({"action": "pid"}, timeout=30)["pid"]
    ids = [
        _post(platform, "threads/run", json={"input": {"action": "sleep", "seconds": 1}}).json()[
            "id"
        ]
        for _ in range(3)
    ]
    finals = [ended(platform, "threads", i) for i in ids]
    assert len({f["workerId"] for f in finals}) == 1
    # Three one-second jobs on one worker: together they took about one second, not three.
    assert max(f["delayTime"] for f in finals) < 500


CRASH_AMONG_OTHERS = """
import os, time
from pathlib import Path
from flash.runtime.worker import start

def handler(job):
    folder = Path(job["input"]["folder"])
    if job["input"]["role"] == "crasher":
        attempt = len(list(folder.glob("crasher-*"))) + 1
        (folder / f"crasher-{attempt}").write_text("")
        # The first time, only once all three bystanders run beside it on this worker.
        while attempt == 1 and len(list(folder.glob("bystander-*"))) < 3:
            time.sleep(0.01)
        os._exit(9)
    (folder / f"bystander-{job['id']}").write_text("")
    # A bystander runs for as long as the crasher has not run again, so one still running
    # beside the crasher's second attempt is charged with its crash too.
    while not (folder / "crasher-2").exists():
        time.sleep(0.05)
    return {"ok": True}

if __name__ == "__main__":
    start(handler)
"""


def test_a_crashing_job_does_not_fail_the_jobs_that_ran_beside_it(
    tmp_path: Path, platform_factory
) -> None:
    app = write_app(
        tmp_path / "app",
        {"pack": (CRASH_AMONG_OTHERS, {"workersMax": 1, "concurrency": 4})},
    )
    platform = platform_factory(app, worker_loop="flash")
    folder = tmp_path / "markers"
    folder.mkdir()
    roles = ["crasher", "bystander", "bystander", "bystander"]
    bodies = [{"input": {"role": role, "folder": str(folder)}} for role in roles]
    ids = [_post(platform, "pack/run", json=body).json()["id"] for body in bodies]
    finals = [ended(platform, "pack", i, timeout=60) for i in ids]
    assert finals[0]["status"] == "FAILED" and "exited with code 9" in finals[0]["error"]
    assert [f["status"] for f in finals[1:]] == ["COMPLETED"] * 3, finals
    assert sorted(p.name for p in folder.glob("crasher-*")) == ["crasher-1", "crasher-2"]


BROKEN = """
raise RuntimeError("this handler cannot even be imported")
"""


def test_workers_that_cannot_start_fail_the_jobs_with_the_reason(
    tmp_path: Path, platform_factory
) -> None:
    error = _failure_of_one_job(tmp_path, platform_factory, BROKEN)
    assert "fail to start" in error
    assert "exited with code 1" in error
    assert "this handler cannot even be imported" in error


def test_idempotency_key_returns_the_first_job(tmp_path: Path, platform_factory) -> None:
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))
    body = {"input": {"action": "echo", "value": 1}}
    key = {"Idempotency-Key": "abc-123"}
    first = _post(platform, "basic/run", json=body, headers=key).json()
    again = _post(platform, "basic/run", json=body, headers=key).json()
    assert again["id"] == first["id"]
    synced = _post(platform, "basic/runsync", json=body, headers=key).json()
    assert synced["id"] == first["id"] and synced["output"] == {"echo": 1}
    other = _post(platform, "basic/run", json=body, headers={"Idempotency-Key": "other"}).json()
    assert other["id"] != first["id"]
    ended(platform, "basic", other["id"])
    assert _get(platform, "basic/health").json()["jobs"]["completed"] == 2


def test_a_runsync_caller_hanging_up_cancels_its_job(tmp_path: Path, platform_factory) -> None:
    import socket

    app = write_app(tmp_path / "app", {"one": (AIO, {"workersMax": 1})})
    platform = platform_factory(app)
    body = json.dumps({"input": {"seconds": 60}}).encode()
    with socket.create_connection(("127.0.0.1", platform.port)) as conn:
        conn.sendall(
            b"POST /v2/one/runsync HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        wait_for(
            lambda: _get(platform, "one/health").json()["jobs"]["inProgress"] == 1,
            30,
            "the job to start",
        )
    dispatcher = platform.dispatcher
    assert dispatcher is not None
    statuses = wait_for(
        lambda: (
            (s := platform.call(lambda: [j.status for j in dispatcher.jobs.values()]))
            == ["CANCELLED"]
            and s
        ),
        10,
        "the job to be cancelled",
    )
    assert statuses == ["CANCELLED"]
    # The worker was told to stop it: the next job runs at once, not after a minute.
    assert runpod.Endpoint("one").run_sync({"seconds": 0}, timeout=10)["pid"]


def test_a_full_queue_answers_429(tmp_path: Path, platform_factory) -> None:
    app = write_app(tmp_path / "app", {"one": (BASIC, {"workersMax": 1})})
    platform = platform_factory(app, max_queue=2)
    busy = _post(platform, "one/run", json={"input": {"action": "sleep", "seconds": 1}}).json()
    _wait_started(platform, "one", busy["id"])
    for _ in range(2):
        assert _post(platform, "one/run", json={"input": {"action": "echo"}}).status_code == 200
    refused = _post(platform, "one/run", json={"input": {"action": "echo"}})
    assert refused.status_code == 429
    assert "2 queued jobs (limit 2)" in refused.json()["error"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"scalerType": "FASTEST"}, "resources.bad.config.scalerType: expected QUEUE_DELAY"),
        ({"workersMax": -1}, "resources.bad.config.workersMax: expected a non-negative number"),
    ],
)
def test_bad_manifest_settings_are_reported_by_field(
    tmp_path: Path, config: dict, message: str
) -> None:
    from flash.platform.manifest import PlatformError, read_manifest

    app = write_app(tmp_path / "app", {"bad": (BASIC, config)})
    with pytest.raises(PlatformError, match=message.replace(".", r"\.")):
        read_manifest(app)


MODIFIED = """
import asyncio, os
from flash.runtime.worker import start

async def handler(job):
    started = asyncio.get_running_loop().time()
    await asyncio.sleep(job["input"]["seconds"])
    return {"pid": os.getpid(), "started": started}

if __name__ == "__main__":
    start(handler, concurrency_modifier=lambda current: 3)
"""


def test_concurrency_modifier_sets_jobs_per_worker(tmp_path: Path, platform_factory) -> None:
    app = write_app(tmp_path / "app", {"mod": (MODIFIED, {"workersMax": 1, "concurrency": 1})})
    platform_factory(app, worker_loop="flash")
    ep = runpod.Endpoint("mod")
    assert ep.run_sync({"seconds": 0}, timeout=30)["pid"]  # the worker is up
    jobs = [ep.run({"seconds": 1}) for _ in range(3)]
    outputs = [job.output(timeout=30) for job in jobs]
    assert len({o["pid"] for o in outputs}) == 1
    starts = sorted(o["started"] for o in outputs)
    assert starts[-1] - starts[0] < 0.9  # three at once on one worker


DEEP_STREAM = """
from flash.runtime.worker import start

def handler(job):
    yield "first"
    out = "leaf"
    for _ in range(300):
        out = [out]
    yield out
    yield "last"

if __name__ == "__main__":
    start(handler)
"""


def test_a_stream_item_the_gateway_refuses_fails_the_job(tmp_path: Path, platform_factory) -> None:
    # A stream that silently lost an item would look complete: the job fails with the reason.
    error = _failure_of_one_job(tmp_path, platform_factory, DEEP_STREAM)
    assert "refused" in error and "deeper than 256" in error


UNSENDABLE_STREAM = """
from flash.runtime.worker import start

def handler(job):
    yield "first"
    yield {1, 2}  # a set: JSON has no form for it
    yield "last"

if __name__ == "__main__":
    start(handler)
"""


def test_a_stream_item_the_worker_cannot_send_fails_the_job(
    tmp_path: Path, platform_factory
) -> None:
    # Not a null item and COMPLETED: the worker reports why, and the job fails with that.
    error = _failure_of_one_job(tmp_path, platform_factory, UNSENDABLE_STREAM)
    assert "a stream item" in error and "cannot be sent as JSON" in error


def test_a_console_that_stops_reading_or_goes_away_never_stops_the_platform(
    tmp_path: Path, platform_factory
) -> None:
    read_end, write_end = os.pipe()  # nobody reads: it fills after 64 KB
    console = ConsoleLines(stream=os.fdopen(write_end, "w"))
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}), echo=console)
    loud = {"input": {"action": "say_many", "lines": 5_000}}  # 0.5 MB of worker output
    assert _post(platform, "basic/runsync", json=loud).json()["output"] == {"said": 5_000}
    assert _get(platform, "basic/health").status_code == 200
    os.close(read_end)  # the console goes away: writing to it fails from now on
    assert _post(platform, "basic/runsync", json=loud).json()["output"] == {"said": 5_000}
    assert _post(platform, "basic/runsync", json=loud).json()["output"] == {"said": 5_000}


def test_jobs_waiting_on_an_endpoint_with_no_worker_get_one_even_at_the_cap(
    tmp_path: Path, platform_factory
) -> None:
    # The busy worker may be waiting for these very jobs (a call from one endpoint to
    # another): at --max-workers 1 they would wait for ever.
    app = write_app(tmp_path / "app", {"busy": (BASIC, {}), "other": (BASIC, {})})
    platform = platform_factory(app, max_workers=1)
    hung = _post(platform, "busy/run", json={"input": {"action": "hang"}}).json()["id"]
    _wait_started(platform, "busy", hung)
    done = _post(platform, "other/runsync", json={"input": {"action": "echo", "value": 1}})
    assert done.json()["output"] == {"echo": 1}
    assert _get(platform, f"busy/status/{hung}").json()["status"] == "IN_PROGRESS"
    _post(platform, f"busy/cancel/{hung}")


def test_a_runpod_secret_reference_in_env_is_filled_from_where_the_platform_runs(
    tmp_path: Path, platform_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNPOD_SECRET_hf", "s3cret-value")
    monkeypatch.setenv("RUNPOD_SECRET_part", "s3cret-va")  # inside the other one
    monkeypatch.setenv("RUNPOD_SECRET_short", "hunter2")  # too short to mask
    monkeypatch.setenv("GONE", "the serving shell's own")  # not what the config asked for
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_the-accounts-own-key")
    monkeypatch.setenv("FLASH_INDEX_URL", "https://user:token@index.example/simple")
    env = {
        "HF_TOKEN": "{{ RUNPOD_SECRET_hf }}",
        "PART": "{{RUNPOD_SECRET_part}}",
        "GONE": "{{RUNPOD_SECRET_nowhere}}",
        "DB_PASS": "{{ RUNPOD_SECRET_short }}",
    }
    logs = Logs()
    app = write_app(tmp_path / "app", {"basic": (BASIC, {"env": env})})
    platform = platform_factory(app, echo=logs)

    def env_of(name: str) -> Any:
        body = {"input": {"action": "env", "name": name}}
        return _post(platform, "basic/runsync", json=body).json()["output"]["value"]

    assert env_of("HF_TOKEN") == "s3cret-value"
    assert env_of("GONE") is None  # started without it, and said so, by name only
    assert any("RUNPOD_SECRET_nowhere" in line for line in logs.lines)
    assert not any("s3cret-value" in line for line in logs.lines)
    # Said once, by name: it was shown as it is with no word.
    short = [line for line in logs.lines if "env DB_PASS: its secret is under 8" in line]
    assert len(short) == 1 and "hunter2" not in short[0], logs.lines
    # Of the shell's secrets a worker gets none: not the RunPod secrets as such (one its
    # endpoint does not name least of all), the account's key, nor the build's index URL.
    for name in ("RUNPOD_SECRET_hf", "RUNPOD_API_KEY", "FLASH_INDEX_URL"):
        assert env_of(name) is None, name
    # What a job prints has the secrets the platform gave its workers masked, each shown as
    # the variable holding it (as a worker shows them in its errors), the longest first.
    key = platform.worker_env["FLASH_SIGNING_KEY"]
    said = {"action": "say", "text": f"token s3cret-value, part s3cret-va and key {key}"}
    assert _post(platform, "basic/runsync", json={"input": said}).json()["status"] == "COMPLETED"
    shown = "token <env HF_TOKEN>, part <env PART> and key <env FLASH_SIGNING_KEY>"
    assert any(shown in line for line in logs.lines), logs.lines[-5:]
    assert not any(key in line for line in logs.lines)


def test_a_stop_answers_waiting_runsync_callers_with_their_job_id(
    tmp_path: Path, platform_factory
) -> None:
    app = write_app(tmp_path / "app", {"basic": (BASIC, {"workersMax": 1})})
    state = tmp_path / "state"
    first = platform_factory(app, state)
    answer = _runsync_across_a_stop(first, seconds=2, grace_s=0.2)  # it cannot finish in time
    # As when the wait runs out: the job's id, to read its result once it has one.
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] in ("IN_QUEUE", "IN_PROGRESS") and "output" not in body

    second = platform_factory(app, state)
    assert ended(second, "basic", body["id"])["output"] == {"slept": 2}
    # Its caller must poll now: the result is kept as a /run's (30 minutes), not a minute.
    job = second.dispatcher.jobs[body["id"]]
    assert job.expires_at - job.finished_at > 60


def test_a_runsync_whose_job_ends_within_a_stops_grace_gets_its_result(
    tmp_path: Path, platform_factory
) -> None:
    platform = platform_factory(write_app(tmp_path / "app", {"basic": (BASIC, {})}))
    answer = _runsync_across_a_stop(platform, seconds=1, grace_s=20)  # ends well within it
    assert answer.json()["output"] == {"slept": 1}, answer.text


def _runsync_across_a_stop(platform: Any, *, seconds: float, grace_s: float) -> requests.Response:
    """The answer of a /runsync of a job sleeping ``seconds``, once the platform was stopped
    with ``grace_s`` while the job ran."""
    answers: list[requests.Response] = []
    body = {"input": {"action": "sleep", "seconds": seconds}}
    caller = threading.Thread(
        target=lambda: answers.append(_post(platform, "basic/runsync", json=body))
    )
    caller.start()
    wait_for(lambda: _get(platform, "basic/health").json()["jobs"]["inProgress"] == 1, 30, "job")
    platform.stop(grace_s=grace_s)
    caller.join(30)
    return answers[0]


SLEEP_ONCE = """
import os, time
from pathlib import Path
from flash.runtime.worker import start

def handler(job):
    marker = Path(job["input"]["marker"])
    if not marker.exists():  # the first attempt sleeps (it is frozen meanwhile)
        marker.write_text(str(os.getpid()))
        time.sleep(job["input"]["seconds"])
    return {"pid": os.getpid()}

if __name__ == "__main__":
    start(handler)
"""


def test_a_frozen_worker_is_killed_and_its_job_runs_again(tmp_path: Path, platform_factory) -> None:
    app = write_app(tmp_path / "app", {"ep": (SLEEP_ONCE, {"workersMax": 1})})
    platform = platform_factory(app, heartbeat_timeout_s=1.0)
    marker = tmp_path / "marker"
    job = _post(platform, "ep/run", json={"input": {"marker": str(marker), "seconds": 600}})
    # Its text, not the file alone: made, it is empty until the pid is written.
    frozen = int(wait_for(lambda: marker.exists() and marker.read_text(), 30, "the job to start"))
    os.kill(frozen, signal.SIGSTOP)
    try:
        final = ended(platform, "ep", job.json()["id"])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(frozen, signal.SIGCONT)
    assert final["status"] == "COMPLETED" and final["output"]["pid"] != frozen, final
    assert "sent no heartbeat" in platform.echo.text()  # type: ignore[union-attr]


def test_a_job_that_holds_its_workers_loop_past_the_heartbeat_timeout_is_not_killed(
    tmp_path: Path, platform_factory
) -> None:
    # A sync function on a one-job worker runs on its event loop, which sends no heartbeat
    # meanwhile: a busy worker, not a frozen one.
    app = write_app(tmp_path / "app", {"ep": (SLEEP_ONCE, {"workersMax": 1})})
    platform = platform_factory(app, heartbeat_timeout_s=0.5)
    marker = tmp_path / "marker"
    job = _post(platform, "ep/run", json={"input": {"marker": str(marker), "seconds": 3}})
    final = ended(platform, "ep", job.json()["id"])
    assert final["status"] == "COMPLETED" and final["output"]["pid"] == int(marker.read_text())
