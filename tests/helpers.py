"""Helpers the test folders share: waiting on a condition, ports and URLs, job counts,
processes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx

from flash.platform.jobs import FINAL


class Logs:
    """An ``echo`` for LocalPlatform that keeps the lines instead of printing them."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines)


def wait_for(
    condition: Callable[[], Any],
    timeout: float = 20.0,
    what: str | Callable[[], str] = "condition",
) -> Any:
    """Poll ``condition`` until it is truthy (returning its value) or fail after ``timeout``,
    saying ``what`` was waited for (a callable: as it stands then, not when the wait began)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {said}")
        time.sleep(0.02)


# What flash run and flash serve print before the URL they listen on: given port 0 they
# find a free port themselves, and say which (a port picked here first could be taken by
# another process before they bind it).
PLATFORM_AT = "Flash platform on"
WEB_APP_AT = "Web app (main.py) on"


def printed_url(text: str, label: str) -> str | None:
    """The URL printed last after ``label`` (PLATFORM_AT, WEB_APP_AT) in ``text``, if any."""
    found = re.findall(rf"{re.escape(label)} (http://\S+)", text)
    return found[-1] if found else None


def port_holder(port: int = 0) -> socket.socket:
    """A socket bound to ``port`` (0: a free one) on 127.0.0.1 that does not listen:
    connections are refused, yet the port stays this test's until the socket closes, or
    listens (``listening_on``). SO_REUSEPORT lets a test bind one beside its own listening
    socket, to hold the port as that one closes; sockets without it cannot bind there."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        holder.bind(("127.0.0.1", port))
    except BaseException:
        holder.close()
        raise
    return holder


_ServerT = TypeVar("_ServerT", bound=ThreadingHTTPServer)


def listening_on(
    holder: socket.socket,
    handler: Callable[..., BaseHTTPRequestHandler],
    server: type[_ServerT],
) -> _ServerT:
    """A ``server`` for ``handler`` listening on ``holder`` (a ``port_holder``, which it
    then owns): not bound anew, its port never free for another process to take."""
    served = server(holder.getsockname(), handler, bind_and_activate=False)
    served.socket.close()
    served.socket = holder
    served.server_activate()
    return served


def completed_jobs(url: str, endpoint: str) -> int:
    """How many jobs ``endpoint`` of the platform at ``url`` has completed (its /health)."""
    return _job_count(url, endpoint, "completed")


def jobs_in_progress(url: str, endpoint: str) -> int:
    """How many jobs ``endpoint`` of the platform at ``url`` is running (its /health)."""
    return _job_count(url, endpoint, "inProgress")


def failed_jobs(url: str, endpoint: str) -> int:
    """How many jobs ``endpoint`` of the platform at ``url`` has failed (its /health)."""
    return _job_count(url, endpoint, "failed")


def _job_count(url: str, endpoint: str, which: str) -> int:
    health = httpx.get(f"{url}/v2/{endpoint}/health", timeout=30).json()
    return int(health["jobs"][which])


def final_status(
    url: str, endpoint: str, job_id: str, *, api_key: str | None = None, timeout: float = 30
) -> dict[str, Any]:
    """The job's /status answer once the job has ended."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def ended() -> dict[str, Any] | None:
        status = httpx.get(f"{url}/v2/{endpoint}/status/{job_id}", headers=headers, timeout=30)
        answer: dict[str, Any] = status.json()
        return answer if answer["status"] in FINAL else None

    result: dict[str, Any] = wait_for(ended, timeout, f"job {job_id} to end")
    return result


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes in process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        fields = _stat(entry) if entry.isdigit() else None
        if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def group_alive(pgid: int) -> bool:
    """Whether any live process is left in process group ``pgid``."""
    return bool(group_members(pgid))


def processes_under(folder: Path) -> list[int]:
    """Pids of processes whose working directory is inside ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if Path(cwd).is_relative_to(folder):  # /x/app2 is not inside /x/app
            found.append(int(entry.name))
    return found


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (a worker killed mid-poll) is no error of the test's.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve_http(handler: Callable[..., BaseHTTPRequestHandler]) -> Iterator[int]:
    """Serve ``handler`` on 127.0.0.1 in a thread while the block runs; yields the port."""
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing (tests read their own output)."""

    def log_message(self, *args: object) -> None:
        pass

    def answer(self, status: int, body: bytes) -> None:
        """Answer with ``body`` as JSON (the SDK's worker loop wants the content type)."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class CollectedProcess:
    """A process whose output (stderr with its stdout) is collected line by line as it
    comes, in a thread, for a test to wait on."""

    def __init__(self, command: list[str], **popen: Any) -> None:
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **popen,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def count(self, words: str) -> int:
        return self.text().count(words)

    def printed_url(self, label: str, timeout: float = 60) -> str:
        """The URL printed last after ``label`` (PLATFORM_AT, WEB_APP_AT), once one is."""
        url: str = self.wait(lambda: printed_url(self.text(), label), timeout, repr(label))
        return url

    def wait_for_output(self, words: str, times: int = 1, timeout: float = 60) -> None:
        self.wait(lambda: self.count(words) >= times, timeout, repr(words))

    def wait(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        """``wait_for``, failing with the output as it is then."""
        return wait_for(condition, timeout, lambda: f"{what} in:\n{self.text()}")

    def exit_code(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        self.reader.join(10)
        return code

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.exit_code()


class JobQueue:
    """The jobs a fake worker API hands out (``jobs``, taken in order) and the reports it
    got back (``done``: each /job-done body by job id, read; ``bodies``: as sent);
    ``all_done`` is set once every job has been reported."""

    def __init__(self, jobs: list[dict[str, Any]]) -> None:
        self.jobs = list(jobs)
        self.done: dict[str, dict[str, Any]] = {}
        self.bodies: dict[str, bytes] = {}
        self.expected = len(jobs)
        self.all_done = threading.Event()
        self.lock = threading.Lock()


class _JobQueueHandler(QuietHandler):
    queue: JobQueue

    def do_GET(self) -> None:
        with self.queue.lock:
            taking = "/job-take" in self.path and self.queue.jobs
            job = self.queue.jobs.pop(0) if taking else None
        if job is None:
            self.answer(204, b"")
        else:
            self.answer(200, json.dumps(job).encode())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if "/job-done/" in self.path:
            job_id = self.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[1]
            with self.queue.lock:
                self.queue.done[job_id] = json.loads(body)
                self.queue.bodies[job_id] = body
                if len(self.queue.done) == self.queue.expected:
                    self.queue.all_done.set()
        self.answer(200, b"{}")


@contextlib.contextmanager
def serve_jobs(jobs: list[dict[str, Any]]) -> Iterator[tuple[int, JobQueue]]:
    """Serve the worker API of a platform holding ``jobs`` (each ``{"id", "input"}``) on
    127.0.0.1 while the block runs, as a worker loop polls it; yields its port and queue."""
    queue = JobQueue(jobs)
    handler = type("JobQueueHandler", (_JobQueueHandler,), {"queue": queue})
    with serve_http(handler) as port:
        yield port, queue


class SixFailsIndex(QuietHandler, SimpleHTTPRequestHandler):
    """Serves a folder as a package index whose pages for ``six`` fail with a 500 (what uv
    then prints names the URL it asked for)."""

    def do_GET(self) -> None:
        if "/six/" in self.path:
            self.send_error(500)
        else:
            super().do_GET()


class CreatesFile:
    """Unpickling this creates the file ``path``: the stand-in for any code a pickle can run,
    and the proof that a payload was unpickled."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (open, (self.path, "w"))


def worker_env(port: int, **extra: str) -> dict[str, str]:
    """The environment of a worker process polling a platform on 127.0.0.1:``port``
    (unsigned jobs allowed; Flash's own loop unless ``extra`` names one)."""
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "RUNPOD_POD_ID": "w1",
        "RUNPOD_WEBHOOK_GET_JOB": f"{base}/job-take/$ID?gpu=none",
        "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base}/job-done/$RUNPOD_POD_ID/$ID?gpu=none",
        "RUNPOD_WEBHOOK_PING": f"{base}/ping/$RUNPOD_POD_ID",
        "FLASH_ALLOW_UNSIGNED": "1",
        **extra,
    }
    env.pop("FLASH_SIGNING_KEY", None)
    if "FLASH_WORKER_LOOP" not in extra:
        env.pop("FLASH_WORKER_LOOP", None)
    return env


def run_isolated(script: str, app_dir: Path, cases: Any, tmp_path: Path) -> Any:
    """Run ``script`` in an isolated interpreter (``-I``: no site-packages of the user, no
    PYTHON* variables) with ``app_dir`` and a file of ``cases`` (JSON) as its arguments, as a
    worker without this environment's packages would; what it printed, read as JSON."""
    cases_file = tmp_path / "cases.json"
    cases_file.write_text(json.dumps(cases))
    proc = subprocess.run(
        [sys.executable, "-I", "-c", script, str(app_dir), str(cases_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
