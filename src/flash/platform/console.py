"""Where the platform's lines (worker output, its own messages) go: stdout, never in the way.

The event loop that serves every request also pumps the workers' output. Writing that to a
console that stopped reading (a full pipe) would block the loop, and one that went away (a
closed pipe) would raise in it; either way no request would be answered again. So lines are
written by a thread of their own; past a bounded backlog they are dropped and counted, and
once the console is gone they are dropped without a word.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from typing import TextIO

__all__ = ["ConsoleLines", "print_line"]

_BACKLOG = 10_000  # lines held for a console that is slow to read


class ConsoleLines:
    """A callable taking one line of text, as ``LocalPlatform(echo=...)`` takes; ``stream``
    defaults to ``sys.stdout`` as it is at each write."""

    def __init__(self, stream: TextIO | None = None, backlog: int = _BACKLOG) -> None:
        self._stream = stream
        # Lines, and the events flush() waits on, in the order they came.
        self._lines: queue.Queue[str | threading.Event] = queue.Queue(maxsize=backlog)
        self._lock = threading.Lock()
        self._dropped = 0
        self._closed = False  # the console went away
        self._thread: threading.Thread | None = None

    def __call__(self, text: str) -> None:
        if self._closed:
            return
        self._start()
        with self._lock:
            try:
                if self._dropped:  # said where the lines went missing, after those before
                    self._lines.put_nowait(_not_shown(self._dropped))
                    self._dropped = 0
                self._lines.put_nowait(text)
            except queue.Full:
                self._dropped += 1

    def flush(self, timeout: float = 2.0) -> None:
        """Wait up to ``timeout`` seconds for the lines so far to be written (at stop: the
        last lines of a run are the ones that say why it ended)."""
        if self._thread is None or self._closed:
            return
        ends = time.monotonic() + timeout
        written = threading.Event()  # set once every line before it is out
        with self._lock:
            dropped, self._dropped = self._dropped, 0
        try:
            if dropped:
                self._lines.put(_not_shown(dropped), timeout=timeout)
            self._lines.put(written, timeout=max(0.0, ends - time.monotonic()))
        except queue.Full:  # still not reading: nothing to wait for
            return
        written.wait(max(0.0, ends - time.monotonic()))

    def _start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="flash-console")
                self._thread.daemon = True  # a console that never reads must not hold the exit
                self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._lines.get()
            stream = self._stream or sys.stdout
            try:
                if isinstance(item, str):
                    _write(stream, item)
                if not isinstance(item, str) or self._lines.empty():
                    stream.flush()
            except (OSError, ValueError):  # a closed pipe, or a closed stream
                self._closed = True
                return
            finally:
                if not isinstance(item, str):
                    item.set()


def _not_shown(count: int) -> str:
    return f"... {count} lines not shown: the console was not reading"


def _write(stream: TextIO, text: str) -> None:
    try:
        stream.write(text + "\n")
    except UnicodeEncodeError:  # a console that cannot show a character gets an escape
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(encoding, "backslashreplace").decode(encoding) + "\n")


print_line = ConsoleLines()
