"""The platform's console lines: never in the way of serving, and never silently lost."""

from __future__ import annotations

import io
import threading

from flash.platform.console import ConsoleLines


def test_a_line_the_console_cannot_show_is_escaped_and_the_next_ones_still_come() -> None:
    shown = io.BytesIO()
    stream = io.TextIOWrapper(shown, encoding="ascii", write_through=True)
    console = ConsoleLines(stream=stream)
    console("✓ built")
    console("serving")
    console.flush()
    assert shown.getvalue().decode() == "\\u2713 built\nserving\n"


class _Stalled(io.StringIO):
    """A console that reads nothing until released."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = threading.Event()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.writing.set()
        self.release.wait(20)
        return super().write(text)


def test_lines_a_stalled_console_missed_are_counted_where_they_went_missing() -> None:
    stream = _Stalled()
    console = ConsoleLines(stream=stream, backlog=2)
    console("line 0")
    assert stream.writing.wait(20)  # the writer holds line 0, waiting on the console
    for n in range(1, 11):
        console(f"line {n}")  # 1 and 2 wait; 3 to 10 find no room
    stream.release.set()
    console.flush()
    console("line 11")
    console.flush()
    assert stream.getvalue().splitlines() == [
        "line 0",
        "line 1",
        "line 2",
        "... 8 lines not shown: the console was not reading",
        "line 11",
    ]
