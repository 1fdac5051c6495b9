"""Processes a worker started outside its process group (a new session, a daemon's double
fork) end with the worker, as in a container; nobody else's processes do."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from tests.helpers import Logs, alive, wait_for
from tests.platform.apps import ended, write_app

from flash.platform import processes
from flash.platform.local import LocalPlatform
from flash.platform.processes import TAG_ENV_VAR

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="only Linux finds a worker's escaped processes (/proc)"
)

SLEEP = shutil.which("sleep") or "/bin/sleep"

ESCAPING = f"""
import os, subprocess, sys, time
from pathlib import Path
from flash.runtime.worker import start

SLEEP = {SLEEP!r}
# A daemon's double fork: the middle process exits and the sleeper is re-parented to init.
DAEMON = (
    "import subprocess; print(subprocess.Popen([{SLEEP!r}, '600'], start_new_session=True,"
    " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)"
)

def handler(job):
    inp = job["input"]
    action = inp["action"]
    if action == "escape":
        # Its own session, as a model server holding a GPU or a port may be started.
        env = {{}} if inp.get("clear_env") else None
        pid = subprocess.Popen([SLEEP, "600"], start_new_session=True, env=env).pid
    elif action == "daemon":
        made = subprocess.run([sys.executable, "-c", DAEMON], capture_output=True, check=True)
        pid = int(made.stdout)
    elif action == "crash":
        os._exit(3)
    else:
        raise RuntimeError(f"unknown action {{action}}")
    if inp.get("pid_file"):
        Path(inp["pid_file"]).write_text(str(pid))
        while True:  # a job that never ends: the worker is killed at stop
            time.sleep(0.05)
    return {{"pid": pid, "worker": os.getpid()}}

if __name__ == "__main__":
    start(handler)
"""


@pytest.fixture
def app(tmp_path: Path) -> Path:
    config = {"workersMax": 1, "idleTimeout": 60}
    return write_app(tmp_path / "app", {"esc": (ESCAPING, config)})


@pytest.fixture
def sleepers() -> Iterator[list[int]]:
    """Pids of ``sleep`` processes a test expects to be killed: killed here if they were not
    (a failing test leaves no process behind)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(SLEEP.encode()):
                os.kill(pid, signal.SIGKILL)


def _submit(platform: LocalPlatform, job_input: dict[str, Any]) -> str:
    answer = requests.post(f"{platform.url}/v2/esc/run", json={"input": job_input}, timeout=60)
    job_id: str = answer.json()["id"]
    return job_id


def _run(platform: LocalPlatform, job_input: dict[str, Any]) -> dict[str, Any]:
    """The final status of a job run with ``job_input``."""
    return ended(platform, "esc", _submit(platform, job_input), timeout=60)


def _escape(platform: LocalPlatform, sleepers: list[int]) -> dict[str, Any]:
    """Run a job that leaves a sleeper outside the worker's process group; its output."""
    final = _run(platform, {"action": "escape"})
    assert final["status"] == "COMPLETED", final
    output: dict[str, Any] = final["output"]
    sleepers.append(output["pid"])
    assert alive(output["pid"])
    assert os.getpgid(output["pid"]) != output["worker"]  # out of reach of the group's kill
    return output


def _gone(pid: int) -> bool:
    return not alive(pid)


def test_a_process_in_a_new_session_ends_when_the_platform_stops(
    app: Path, platform_factory: Any, sleepers: list[int]
) -> None:
    platform = platform_factory(app)
    escaped = _escape(platform, sleepers)
    platform.stop(grace_s=1)
    wait_for(lambda: _gone(escaped["pid"]), 10, "the escaped process to be killed")


def test_a_daemon_re_parented_to_init_ends_when_the_platform_stops(
    app: Path, platform_factory: Any, sleepers: list[int]
) -> None:
    platform = platform_factory(app)
    final = _run(platform, {"action": "daemon"})
    assert final["status"] == "COMPLETED", final
    daemon = final["output"]["pid"]
    sleepers.append(daemon)
    parent = int(Path(f"/proc/{daemon}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert parent != final["output"]["worker"]  # no longer below the worker
    platform.stop(grace_s=1)
    wait_for(lambda: _gone(daemon), 10, "the daemon to be killed")


def test_a_process_in_a_new_session_ends_when_its_worker_crashes(
    app: Path, platform_factory: Any, sleepers: list[int]
) -> None:
    platform = platform_factory(app)
    escaped = _escape(platform, sleepers)
    tag = _environ(escaped["pid"]).get(TAG_ENV_VAR)
    crashed = _run(platform, {"action": "crash"})  # on the same worker (workersMax 1)
    assert crashed["status"] == "FAILED", crashed
    # The platform goes on: the worker's exit, not a stop, ended it.
    wait_for(lambda: _gone(escaped["pid"]), 10, "the escaped process to be killed")
    assert isinstance(platform.echo, Logs)
    logs = platform.echo.text()
    assert "killed 1 process(es) it started that outlived it" in logs
    assert tag and tag not in logs  # the tag sits beside secrets in the environment


def test_a_killed_worker_takes_along_a_child_that_cleared_its_environment(
    app: Path, platform_factory: Any, sleepers: list[int], tmp_path: Path
) -> None:
    platform = platform_factory(app)
    pid_file = tmp_path / "pid"
    _submit(platform, {"action": "escape", "clear_env": True, "pid_file": str(pid_file)})
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60, "the escape")
    escaped = int(pid_file.read_text())
    sleepers.append(escaped)
    assert TAG_ENV_VAR not in _environ(escaped)  # only the worker's tree leads to it
    platform.stop(grace_s=0.5)  # the job never ends: the worker is killed
    wait_for(lambda: _gone(escaped), 10, "the escaped process to be killed")


def test_only_the_stopped_platforms_processes_end(
    app: Path, platform_factory: Any, sleepers: list[int], tmp_path: Path
) -> None:
    mine = subprocess.Popen([SLEEP, "600"], start_new_session=True)
    try:
        first = platform_factory(app, tmp_path / "first")
        second = platform_factory(app, tmp_path / "second")
        escaped_first = _escape(first, sleepers)["pid"]
        escaped_second = _escape(second, sleepers)["pid"]
        first.stop(grace_s=1)
        wait_for(lambda: _gone(escaped_first), 10, "the first platform's process to be killed")
        # Stopping it is over: whatever it was going to kill is dead by now.
        assert alive(escaped_second), "another platform's process was killed"
        assert alive(mine.pid), "a process no worker started was killed"
        second.stop(grace_s=1)
        wait_for(lambda: _gone(escaped_second), 10, "the second platform's process")
        assert alive(mine.pid), "a process no worker started was killed"
    finally:
        mine.kill()
        mine.wait()


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode("utf-8", "replace")
    return dict(entry.split("=", 1) for entry in raw.split("\0") if "=" in entry)


def test_a_stuck_sweep_holds_up_neither_the_crashed_workers_jobs_nor_the_stop(
    app: Path, platform_factory: Any, sleepers: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reading a process's /proc/<pid>/environ waits on its memory map lock, which a process
    # stuck in the kernel (NFS, a GPU driver) can hold for as long as it likes.
    release = threading.Event()
    sweeping = threading.Event()
    real = processes.kill_tagged

    def stuck(*args: Any, **kwargs: Any) -> set[int]:
        sweeping.set()
        release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(processes, "kill_tagged", stuck)
    sweepers = lambda: sum(t.name == "flash-sweeper" for t in threading.enumerate())  # noqa: E731
    before = sweepers()
    platform = platform_factory(app)
    escaped = _escape(platform, sleepers)
    try:
        crashed = _run(platform, {"action": "crash"})  # runs again on a new worker: crashes
        assert crashed["status"] == "FAILED", crashed
        assert sweeping.is_set() and not release.is_set()  # answered while the sweep hung
        assert sweepers() == before + 1  # the second worker's sweep queued, no new thread
        started = time.monotonic()
        platform.stop(grace_s=1)
        assert time.monotonic() - started < 15  # the stop waits for sweeps a bounded time
    finally:
        release.set()
    wait_for(lambda: _gone(escaped["pid"]), 10, "the escaped process to be killed")


def test_a_failing_sweep_is_logged_and_the_platform_goes_on(
    app: Path, platform_factory: Any, monkeypatch: pytest.MonkeyPatch, sleepers: list[int]
) -> None:
    def failing(*args: Any, **kwargs: Any) -> set[int]:
        raise OSError("/proc is not mounted")

    monkeypatch.setattr(processes, "kill_tagged", failing)
    platform = platform_factory(app)
    crashed = _run(platform, {"action": "crash"})
    assert crashed["status"] == "FAILED", crashed
    wait_for(
        lambda: "could not look for processes it started" in platform.echo.text(),
        10,
        "the failed sweep to be logged",
    )
    went_on = _run(platform, {"action": "daemon"})
    assert went_on["status"] == "COMPLETED", went_on
    sleepers.append(went_on["output"]["pid"])  # no sweep will find it: the fixture ends it
