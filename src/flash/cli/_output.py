"""Console helpers shared by the commands: one place decides how errors look."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

# Text only: no highlighting, and no emoji codes (":100:" in "app.py:100:5" is one).
console = Console(highlight=False, emoji=False)
err_console = Console(stderr=True, highlight=False, emoji=False)


@contextmanager
def user_errors(verbose: bool, *kinds: type[BaseException]) -> Iterator[None]:
    """Turn the listed errors into a one-paragraph message and exit code 1."""
    try:
        yield
    except kinds as exc:
        if verbose:
            err_console.print_exception()
        fail(describe(exc))


def describe(exc: BaseException) -> str:
    """The message for ``exc``; an OSError says which file, without its errno prefix."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def fail(message: str) -> NoReturn:
    """Print a one-paragraph error and exit with code 1."""
    # Messages quote paths, code and TOML tables: their brackets are text, not markup.
    err_console.print(f"[bold red]Error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


def warn(title: str, message: str) -> None:
    """Print a one-paragraph problem the command goes on after."""
    err_console.print(f"[bold red]{escape(title)}:[/] {escape(message)}", soft_wrap=True)


def build_warning(message: str) -> None:
    """Print a warning of the build (a skipped build repeats its build's)."""
    warn("Warning", message)


class Stop(threading.Event):
    """Set by the first stopping signal; ``signum`` says which. A second one sets
    ``forced``: stop at once, without waiting for what is still under way."""

    signum: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.forced = threading.Event()


# SIGHUP too: a closed terminal, or a supervisor's "stop", must stop the workers cleanly.
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def stop_on_signals(interrupt: Callable[[], None] | None = None) -> Iterator[Stop]:
    """An event SIGINT, SIGTERM and SIGHUP set while the block runs; the old handlers come
    back after it; a second signal sets its ``forced``. A signal ignored when the command
    started stays ignored: ``nohup`` ignores SIGHUP, and a shell without job control SIGINT
    for its background jobs. ``interrupt`` is
    called after the event is set, in the main thread: it may raise KeyboardInterrupt there
    to end what the main thread waits on."""
    stop = Stop()

    def handle(signum: int, _frame: object) -> None:
        if stop.signum is None:
            stop.signum = signum
        else:
            stop.forced.set()
        stop.set()
        if interrupt is not None:
            interrupt()

    previous = {
        sig: signal.signal(sig, handle)
        for sig in STOPPING_SIGNALS
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_interrupted(stop: Stop, during: str) -> NoReturn:
    """Say that a signal ended ``during`` and exit as the shell would: 128 + the signal."""
    signum = stop.signum or signal.SIGINT
    err_console.print(f"Interrupted during {escape(during)}", soft_wrap=True)
    raise typer.Exit(128 + signum)


def wait_for_stop(stop: threading.Event) -> None:
    """Wait until a signal handler sets ``stop``, in short waits: the kernel may hand
    SIGTERM to another thread (the event loop's, say), and Python runs the handler only once
    the main thread wakes, which an endless wait never does."""
    while not stop.wait(0.5):
        pass


def check_port(option: str, port: int) -> None:
    # Checked before any state is made (the platform would refuse --port only once it has
    # locked its state folder), and --app-port goes to another process.
    if not 0 <= port <= 65535:
        fail(f"{option} must be a port number from 0 to 65535, got {port}")


def check_can_listen(option: str, host: str, port: int, what: str) -> None:
    """Fail unless ``port`` (0: any free one, when ``host`` can be listened on at all) can be
    listened on now: checked before the build, which may take minutes, and before anything
    is written, rather than when serving starts after it."""
    import errno
    import socket

    from flash.platform.listening import address_family

    try:
        # create_server sets SO_REUSEADDR as servers do: a port in TIME_WAIT is free.
        # "::" is bound dual-stack by the platform (IPv4 too), as Linux binds it by default.
        dualstack = host == "::" and socket.has_dualstack_ipv6()
        family = address_family(host)
        socket.create_server((host, port), family=family, dualstack_ipv6=dualstack).close()
    except OSError as exc:
        # create_server adds the address to strerror: the message names it already.
        # A host that does not resolve fails with a resolver's error number, negative,
        # which os.strerror does not know: its own text says it.
        if exc.errno and exc.errno > 0:
            reason = os.strerror(exc.errno)
        else:
            reason = (exc.strerror or str(exc)).split(" (while attempting to bind")[0]
        # The port is to blame when it is taken or not ours to take; else the host is.
        blamed = option if exc.errno in (errno.EADDRINUSE, errno.EACCES) else "--host"
        fail(f"cannot serve {what} on {host} port {port} ({blamed}): {reason}")


def check_api_key(api_key: str | None) -> None:
    from flash.platform.listening import api_key_problem

    if api_key is None and os.environ.get("FLASH_API_KEY") == "":
        api_key = ""  # click reads an empty variable as unset: serving open was not asked for
    problem = None if api_key is None else api_key_problem(api_key)
    if problem is not None:
        fail(f"--api-key (or FLASH_API_KEY) {problem}")


def check_max_workers(max_workers: int | None) -> None:
    # The platform takes 0 as "all cores" and clamps negatives to 1: neither is what was asked.
    if max_workers is not None and max_workers < 1:
        fail(f"--max-workers must be at least 1, got {max_workers}")


def check_state_folder(folder: Path) -> None:
    # Builds, the signing key and the job store go there; a file in the way would otherwise
    # end the command with a NotADirectoryError traceback.
    if folder.exists() and not folder.is_dir():
        fail(f"{folder} is a file, not a folder: Flash keeps its state there; move the file away")


def stage_printer(enabled: bool) -> Callable[[str, str], None]:
    def report(stage: str, detail: str) -> None:
        if enabled:
            console.print(f"[green]✓[/] [bold]{stage:<13}[/] {escape(detail)}")

    return report


def is_tty() -> bool:
    return sys.stdout.isatty()
