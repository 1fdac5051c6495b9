"""A project's ``main.py`` web app, served by uvicorn in a child process next to the platform.

As with ``uvicorn --reload``, this process holds the listening socket across restarts:
while the app restarts, connections wait for the new one instead of being refused, and the
old one finishes the requests it has (at most WEB_APP_DRAIN_S) once the new one is ready. A
restart that fails leaves the old app serving; one that a newer restart supersedes while it
starts, or that is stopped then, ends at once (even inside main.py's import or the app's
startup). With no app serving and none starting (it was stopped, crashed, or failed to
start), the port is freed once no replaced app holds it: connections are refused, not left
waiting, and the next start binds it again (on port 0, "any free port", another one if it
was taken meanwhile).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from flash.build.scanner import module_bindings
from flash.platform import processes
from flash.platform.listening import address_family, http_url

__all__ = [
    "WEB_APP_DRAIN_S",
    "WEB_APP_SLOW_S",
    "WEB_APP_STOP_S",
    "WebApp",
    "WebAppError",
    "defines_web_app",
]

# How long a replaced web app may take to finish the requests it is answering.
WEB_APP_DRAIN_S = 30.0
# How long stopping waits for the web app's processes, all together, before killing them:
# uvicorn's own limit on finishing requests, after a replaced app's wait for requests on
# their way (_web_app_child.FIRST_REQUEST_WAIT_S), and time to exit after it.
WEB_APP_STOP_S = WEB_APP_DRAIN_S + 5.0 + 5.0
# How long flash run's stop waits for the web app to exit before it says that it waits.
_SAY_WAITING_S = 1.0
# How long an app may take to start before a warning says it is still starting.
WEB_APP_SLOW_S = 60.0

_CHILD = "flash.platform._web_app_child"


class WebAppError(Exception):
    pass


def defines_web_app(main: Path) -> bool | None:
    """Whether ``main.py`` binds ``app`` at module level (read, not imported); None when
    that cannot be told (unreadable, or a syntax error)."""
    try:
        return "app" in module_bindings(main.read_text(encoding="utf-8"), str(main))
    except FileNotFoundError:
        return False
    except (OSError, SyntaxError, ValueError):  # ValueError: not UTF-8, or a NUL byte
        return None


class WebApp:
    """``main:app`` of the project in ``root`` on ``host``:``port``, with ``env`` added to
    its environment. ``say`` gets news, ``warn`` (title, message) problems; ``stop`` is set
    when the app fails to start with ``fatal_if_it_fails``, and, once set, exits of the app
    are no longer reported (the caller is stopping)."""

    def __init__(
        self,
        root: Path,
        host: str,
        port: int,
        env: dict[str, str],
        stop: threading.Event,
        *,
        say: Callable[[str], None],
        warn: Callable[[str, str], None],
    ):
        self.main = root / "main.py"
        self.host = host
        self.port = port
        self._any_port = port == 0  # the port found is kept only while it stays free
        self.env = {**os.environ, **env}
        self.stop_requested = stop
        self.say = say
        self.warn = warn
        self.failure: WebAppError | None = None  # a fatal start failed
        # When the last start ended, ready or failed (wall clock, as files' times are).
        self.settled_at = 0.0
        self._lock = threading.Lock()  # the fields below change in the watching threads too
        self._down = False  # no app serves after a failure: the next change starts one
        self._stale = False  # the last start failed, an older app serves on
        self._closed = False
        self._listener: socket.socket | None = None
        self._lifeline: tuple[int, int] | None = None  # a pipe: its write end only here
        self._latest: subprocess.Popen[bytes] | None = None  # the last started
        self._serving: subprocess.Popen[bytes] | None = None  # the one taking connections
        self._draining: set[subprocess.Popen[bytes]] = set()

    @property
    def running(self) -> bool:
        with self._lock:
            return self._latest is not None or self._serving is not None

    @property
    def serving(self) -> int | None:
        """The pid of the app taking connections, once it has said that it is ready."""
        with self._lock:
            return None if self._serving is None else self._serving.pid

    @property
    def starting(self) -> bool:
        """Whether the last app started is not yet ready, nor failed."""
        with self._lock:
            return self._latest is not None and self._latest is not self._serving

    @property
    def needs_start(self) -> bool:
        """Whether the last app failed (to start, or later) and none is starting: any
        change should retry."""
        with self._lock:
            return self._down or self._stale

    def start(self, *, fatal_if_it_fails: bool = False) -> None:
        """Start the app anew; the one serving goes once the new one is ready. Raises
        WebAppError if the port cannot be had, OSError if no process can be started (the
        port is then held only for an app still running). A failure to start is reported
        (``fatal_if_it_fails``: it is kept in ``failure`` and sets ``stop``). Call from the
        main thread: on Linux the kernel kills the app when the thread that started it ends
        (PR_SET_PDEATHSIG), not only with this process."""
        assert threading.current_thread() is threading.main_thread(), "start the app from main"
        with self._lock:
            if self._closed:
                return
            was_running = self._latest is not None or self._serving is not None
            port_before = self.port
            listener = self._listen()
            try:
                proc, ready = self._spawn(listener)
            except BaseException:
                if not was_running:
                    self._free_port()  # no app comes to take its connections
                raise
            if self._latest is not self._serving:
                self._drain(self._latest)  # superseded while starting: it will not serve
            self._latest = proc
            # A retry on its way: asked for again only if it fails in turn.
            self._down = self._stale = False
        threading.Thread(
            target=self._watch, args=(proc, ready, fatal_if_it_fails), daemon=True
        ).start()
        if not was_running:
            moved = port_before not in (0, self.port)
            note = f" (port {port_before} was taken meanwhile)" if moved else ""
            self.say(f"Web app (main.py) on {http_url(self.host, self.port)}{note}")

    def stop(self, forced: threading.Event | None = None) -> None:
        """Stop every app process (at most WEB_APP_STOP_S for all), then free the port. With
        ``forced`` (flash run stopping): an app still finishing its requests after
        _SAY_WAITING_S is said to be awaited, and once ``forced`` is set the apps are killed
        at once, their process trees with them."""
        with self._lock:
            procs = {p for p in (self._latest, self._serving, *self._draining) if p is not None}
            # From here their exits are ours, not failures.
            self._latest = self._serving = None
            self._draining.clear()
            self._down = self._stale = False
        for proc in procs:
            # SIGINT, not a restart's SIGTERM: no wait for requests still to come (see
            # _web_app_child); uvicorn takes either as "finish what you answer and exit".
            if sys.platform == "win32":
                proc.terminate()
            else:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + WEB_APP_STOP_S
        if forced is not None and procs:
            self._await_or_force(procs, deadline, forced)
        for proc in procs:
            _wait_or_kill(proc, deadline - time.monotonic())
        with self._lock:
            if self._latest is None and self._serving is None:  # none started meanwhile
                self._free_port()

    def _await_or_force(
        self, procs: set[subprocess.Popen[bytes]], deadline: float, forced: threading.Event
    ) -> None:
        """Wait for ``procs`` to exit until ``deadline``, saying so if they take a while,
        or until ``forced`` is set: then kill them at once."""
        say_at = time.monotonic() + _SAY_WAITING_S
        while any(proc.poll() is None for proc in procs) and time.monotonic() < deadline:
            if forced.is_set():
                self.say("Stopping at once: main.py's web app is killed, its requests cut off")
                for proc in procs:
                    _kill_tree(proc)
                return
            if time.monotonic() > say_at:
                say_at = deadline  # said once
                self.say(
                    f"Waiting up to {WEB_APP_DRAIN_S:g} s for main.py's web app to finish its "
                    "requests (Ctrl+C again stops it at once)"
                )
            # Polled, not an Event's wait: the signal handler that sets ``forced`` runs in
            # this thread, and could not take the lock such a wait holds at times.
            time.sleep(0.02)

    def close(self, forced: threading.Event | None = None) -> None:
        """``stop``; no app starts after it."""
        with self._lock:
            self._closed = True
        self.stop(forced)
        with self._lock:
            if self._lifeline is not None:
                for fd in self._lifeline:
                    os.close(fd)
                self._lifeline = None

    def _spawn(self, listener: socket.socket) -> tuple[subprocess.Popen[bytes], int]:
        """With the lock: uvicorn on ``listener``, and the pipe end it says "ready" on."""
        if self._lifeline is None:
            self._lifeline = os.pipe()
        lifeline = self._lifeline[0]
        ready, ready_w = os.pipe()
        fds = (listener.fileno(), ready_w, lifeline)
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    _CHILD,
                    *map(str, fds),
                    str(os.getpid()),
                    str(WEB_APP_DRAIN_S),
                ],
                cwd=self.main.parent,
                env=self.env,
                stdin=subprocess.DEVNULL,
                pass_fds=fds,
                # Out of our process group: a terminal's Ctrl-C or hangup is ours to handle
                # (a graceful stop), not a KeyboardInterrupt in the middle of a request.
                start_new_session=True,
            )
        except BaseException:
            os.close(ready)
            raise
        finally:
            os.close(ready_w)
        return proc, ready

    def _listen(self) -> socket.socket:
        """With the lock: the listening socket, bound when none is and kept across restarts
        (a new one could find the port taken)."""
        if self._listener is not None:
            return self._listener
        try:
            try:
                listener = _listening(self.host, self.port)
            except OSError as exc:
                # --app-port 0: the port found before was taken while no app held it; any
                # other free one will do (the start says where).
                if not (self._any_port and exc.errno == errno.EADDRINUSE):
                    raise
                listener = _listening(self.host, 0)
        except (OSError, OverflowError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise WebAppError(
                f"cannot serve main.py's web app on {self.host} port {self.port} "
                f"(--app-port): {reason}"
            ) from None
        # Port 0: the one found here, so the address shown (and restarts) are right.
        self.port = listener.getsockname()[1]
        self._listener = listener
        return listener

    def _free_port(self) -> None:
        """With the lock, once no app serves or starts: close the listening socket, so that
        connections are refused rather than left waiting for an app that will not come.
        Not while a replaced app still runs: it holds the socket too, so the port would
        stay taken, and the next start could not bind it (see ``_reap``)."""
        if self._listener is not None and not self._draining:
            self._listener.close()
            self._listener = None

    def _watch(self, proc: subprocess.Popen[bytes], ready: int, fatal: bool) -> None:
        """Until ``proc`` exits: once ready it replaces the one serving; an exit we did not
        cause is reported."""
        started = self._wait_ready(proc, ready)
        with self._lock:
            self.settled_at = time.time()
            current = proc is self._latest
            if started and current:
                self._drain(self._serving)
                self._serving = proc
                self._down = self._stale = False
            elif started:
                self._drain(proc)  # a newer one is starting, or it was stopped
        if not started:
            self._failed_to_start(proc, fatal)
        elif current:
            self._serve_until_exit(proc)

    def _wait_ready(self, proc: subprocess.Popen[bytes], ready: int) -> bool:
        """Whether ``proc`` says it is ready (end of file: it exited first); a warning if it
        takes over WEB_APP_SLOW_S."""
        with os.fdopen(ready, "rb") as pipe:
            if not select.select([pipe], [], [], WEB_APP_SLOW_S)[0]:
                with self._lock:
                    waited_for = proc is self._latest
                if waited_for and not self.stop_requested.is_set():
                    self.warn(
                        "Warning",
                        f"main.py's web app (pid {proc.pid}) has not started after "
                        f"{WEB_APP_SLOW_S:g} s; still waiting for it",
                    )
            return pipe.read(1) == b"1"

    def _failed_to_start(self, proc: subprocess.Popen[bytes], fatal: bool) -> None:
        code = proc.wait()
        with self._lock:
            if proc is not self._latest or self.stop_requested.is_set():
                return  # replaced or stopped by us
            self._latest = self._serving  # the one serving, if any, serves on
            still_serving = self._serving is not None
            self._stale = still_serving
            self._down = not still_serving
            if self._down:
                self._free_port()
        failure = WebAppError(
            f"main.py's web app (--app-port {self.port}) exited with code {code} while "
            "starting; its output is above"
        )
        if fatal:
            self.failure = failure
            self.stop_requested.set()
        elif still_serving:
            self.warn("Error", f"{failure}. Still serving the previous web app")
        else:
            self.warn("Error", f"{failure}. The web app is down until the next change")

    def _serve_until_exit(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        with self._lock:
            if proc is not self._serving or self.stop_requested.is_set():
                return  # drained or stopped by us
            self._serving = None
            restarting = self._latest is not proc
            if not restarting:
                self._latest = None
                self._down = True
                self._free_port()
        then = (
            "a restarted one is starting"
            if restarting
            else "it is down (its port refuses connections) until the next change"
        )
        self.warn(
            "Error",
            f"main.py's web app (--app-port {self.port}) exited with code {code} while "
            f"serving; its output is above. The endpoints serve on; {then}",
        )

    def _drain(self, proc: subprocess.Popen[bytes] | None) -> None:
        """With the lock: let ``proc`` finish its requests and exit (SIGTERM makes uvicorn
        stop taking connections), killed if it takes too long."""
        if proc is None or proc in self._draining:
            return
        self._draining.add(proc)
        proc.terminate()
        threading.Thread(target=self._reap, args=(proc,), daemon=True).start()

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        _wait_or_kill(proc, WEB_APP_STOP_S)
        with self._lock:
            self._draining.discard(proc)
            if self._latest is None and self._serving is None:
                self._free_port()  # the port a failure left to it


def _listening(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port`` as uvicorn would (raises if it cannot)."""
    listener = socket.socket(address_family(host))  # as the platform binds its own
    try:
        # Bound as uvicorn binds: a port left in TIME_WAIT is free, a listened one is not.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(2048)  # uvicorn's backlog
    except BaseException:
        listener.close()
        raise
    return listener


def _wait_or_kill(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Wait for ``proc`` to exit, killing it if it has not after ``timeout_s``."""
    try:
        proc.wait(max(timeout_s, 0.0))
    except subprocess.TimeoutExpired:
        _kill_tree(proc)


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc``, its process group (its session's: see _spawn) and every process
    below it now (one the app started in a session of its own too), then reap it."""
    if proc.returncode is None and sys.platform != "win32":  # reaped: its pid may be reused
        below = processes.descendants([proc.pid])[proc.pid]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        processes.kill(below, spare_group=proc.pid)
    proc.kill()
    proc.wait()
