"""The web app's process: uvicorn serving ``main:app`` on a socket ``flash run`` holds.

Run by WebApp as ``python -m flash.platform._web_app_child LISTEN READY LIFELINE PARENT DRAIN_S``
in the project folder: LISTEN is the listening socket's descriptor, READY a pipe's write end
that gets one byte once the app takes connections, LIFELINE a pipe's read end whose write end
only the parent (pid PARENT) holds, DRAIN_S how long a SIGTERM (the app was replaced) or a
SIGINT (flash run stops) lets requests finish.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import signal
import socket
import sys
import sysconfig
import threading
import time
from typing import Any, Literal

from flash.build import import_trace

# Exit status when flash run is gone: nothing would stop this process any more.
ORPHANED = 70
# Exit status when the installed uvicorn is not one this module knows how to drive.
UNSUPPORTED = 3
# How long a stopping app waits for the first request of a connection it accepted (a
# browser's speculative connection may send none).
FIRST_REQUEST_WAIT_S = 5.0


def main(argv: list[str]) -> None:
    listen_fd, ready_fd, lifeline_fd, parent = (int(arg) for arg in argv[:4])
    drain_s = round(float(argv[4]))  # whole seconds, as uvicorn types it
    exit_with_parent(parent, lifeline_fd)
    server_class = _server_class()
    import uvicorn

    class Config(uvicorn.Config):
        def load(self) -> None:
            # Where uvicorn loads the app: in the server's event loop, main.py imported
            # there; then how to call its `app`.
            import_main()
            super().load()  # finds main.py imported
            interface = app_interface(getattr(sys.modules.get("main"), "app", None))
            if interface != "auto" and self.interface != interface:
                self.interface = interface
                self.loaded = False
                super().load()  # from the module imported: main.py runs once

    config = Config("main:app", timeout_graceful_shutdown=drain_s)
    # After Config, which sets up uvicorn's logging.
    logging.getLogger("uvicorn.error").addFilter(_without_force_quit_hint)
    server = server_class(config, ready_fd)
    # uvicorn sends itself the signal that stopped it again once it has shut down; SIGINT's
    # Python handler would print a KeyboardInterrupt traceback then (SIGTERM's default
    # action ends the process quietly).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    server.run(sockets=[socket.socket(fileno=listen_fd)])


def import_main() -> None:
    """Import main.py; exit if that fails, saying where in the project's files and why,
    as the build shows a failed import, not in the frames of runpy, uvicorn and importlib
    (a SyntaxError says where in its own lines)."""
    try:
        importlib.import_module("main")
    except Exception as exc:  # not SystemExit: main.py's own exit, or a stop (handle_exit)
        project = os.path.join(os.getcwd(), "")
        # Frames in the project folder that are not the project's: a virtual environment
        # there (.venv), or flash itself installed from a checkout there.
        flash = os.path.join(os.path.dirname(os.path.dirname(__file__)), "")
        paths = sysconfig.get_paths()
        libraries = [paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")]
        installed = [*(os.path.join(path, "") for path in libraries), flash]
        trace = import_trace.describe(exc, [project], installed)
        print(f"main.py failed to import:\n{trace}", file=sys.stderr)
        sys.exit(1)


_FORCE_QUIT_HINT = " (CTRL+C to force quit)"


def _without_force_quit_hint(record: logging.LogRecord) -> bool:
    """uvicorn's "Waiting for connections to close." without its hint: this process runs
    in a session of its own, where no Ctrl-C comes (flash run says what its own does)."""
    if isinstance(record.msg, str) and record.msg.endswith(_FORCE_QUIT_HINT):
        record.msg = record.msg.removesuffix(_FORCE_QUIT_HINT)
    return True


def app_interface(app: Any) -> Literal["auto", "wsgi"]:
    """How uvicorn is to call main.py's ``app``: ``"wsgi"`` for a WSGI app (Flask, Django,
    ``def app(environ, start_response)``), which uvicorn's own guess calls as ASGI and fails
    on every request; else uvicorn's guess, ``"auto"``. Exits, saying why, for an ``app``
    that is not callable at all."""
    if not callable(app):
        print(
            f"main.py's `app` is not a web app (a value of type {type(app).__name__}): flash "
            "run serves an ASGI app (FastAPI, Starlette) or a WSGI app (Flask, Django) bound "
            "to `app`",
            file=sys.stderr,
        )
        sys.exit(1)
    if inspect.isclass(app) or inspect.iscoroutinefunction(app):
        return "auto"  # ASGI 2's class, or an ASGI 3 function
    if inspect.iscoroutinefunction(app.__call__):  # an ASGI 3 object (Starlette)
        return "auto"
    try:
        parameters = list(inspect.signature(app).parameters.values())
    except (TypeError, ValueError):
        return "auto"
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    wsgi = len(parameters) == 2 and all(p.kind in positional for p in parameters)
    return "wsgi" if wsgi else "auto"


def exit_with_parent(parent: int, lifeline_fd: int) -> None:
    """End this process once ``parent`` is gone, however it ended (SIGKILL too): the
    lifeline's end of file says so on any system; on Linux the kernel also kills this
    process right away (PR_SET_PDEATHSIG: when the parent's thread that started this one
    ends, which is why WebApp.start runs on flash run's main thread)."""
    if sys.platform == "linux":
        try:
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
        except (OSError, AttributeError):
            pass  # the lifeline still ends it

    def watch() -> None:
        try:
            while os.read(lifeline_fd, 1):
                pass
        except OSError:
            pass
        os._exit(ORPHANED)

    threading.Thread(target=watch, name="flash-lifeline", daemon=True).start()
    # The parent may have died before the kernel was told to watch it.
    if os.getppid() != parent:
        os._exit(ORPHANED)


def _server_class() -> Any:
    """uvicorn.Server that says "ready" down its pipe; exits with UNSUPPORTED (and says why)
    if uvicorn's API is not the one relied on: a silent mismatch would leave flash run
    waiting for an app that never says it is ready."""
    try:
        import uvicorn

        startup = uvicorn.Server.startup
        run_parameters = inspect.signature(uvicorn.Server.run).parameters
        config_parameters = inspect.signature(uvicorn.Config).parameters
        usable = (
            inspect.iscoroutinefunction(startup)
            and "sockets" in run_parameters
            and "timeout_graceful_shutdown" in config_parameters
        )
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        usable, why = False, f"{type(exc).__name__}: {exc}"
    else:
        why = "Server.startup, Server.run(sockets=) or Config(timeout_graceful_shutdown=) differ"
    if not usable:
        print(
            f"flash run cannot serve main.py's web app with this uvicorn ({why}); "
            "install a uvicorn release from 0.24 on",
            file=sys.stderr,
        )
        sys.exit(UNSUPPORTED)

    class Server(uvicorn.Server):
        def __init__(self, config: uvicorn.Config, ready_fd: int) -> None:
            super().__init__(config)
            self.ready_fd = ready_fd
            self.replaced = False

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            # A failed startup exits or sets should_exit; else the sockets are served.
            if not self.should_exit:
                os.write(self.ready_fd, b"1")
            os.close(self.ready_fd)

        def handle_exit(self, sig: int, frame: Any) -> None:
            # SIGTERM: a restarted app replaces this one; SIGINT: flash run stops.
            self.replaced = sig == signal.SIGTERM
            super().handle_exit(sig, frame)
            # Still starting: nothing to drain, and uvicorn would act only once started (a
            # slow import or startup, a model's download, ran on to its end).
            if not self.config.loaded:
                raise SystemExit(128 + sig)  # unwinds main.py's import
            if not self.started:
                # In the app's lifespan startup, whose task would take a SystemExit for
                # "lifespan unsupported", and start serving.
                os._exit(128 + sig)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # uvicorn closes every connection without a request in progress at once, so a
            # connection this app accepted just before a restart stopped it, its request
            # still on the way, would be closed unanswered while the new app serves. Stop
            # accepting first, then give such connections a moment to send their request
            # (and have it answered).
            for server in self.servers:
                server.close()
            deadline = time.monotonic() + FIRST_REQUEST_WAIT_S
            while (
                self.replaced
                and not self.force_exit  # a second signal: stop now
                and self.awaits_a_request()
                and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.01)
            await super().shutdown(sockets=sockets)

        def awaits_a_request(self) -> bool:
            """Whether a connection has not received its first request yet (uvicorn's HTTP
            protocols make a request's cycle when it comes)."""
            return any(
                getattr(connection, "cycle", False) is None
                for connection in self.server_state.connections
            )

    return Server


if __name__ == "__main__":
    main(sys.argv[1:])
